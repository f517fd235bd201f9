"""Curves of robust accuracy against radius from minimal-norm attacks (CW, DeepFool,
FAB-T): a record's per-point smallest norms give the accuracy at every radius, drawn
with the checkpoint's fixed-radius records at the same norm and space beside it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .columns import attack_order, column_name, split_sources, threat_key
from .figure_base import MARKERS, RC, ReportFigure, pct_err, pixel_ratio, png_bytes, slug, tab_colors
from .load import ReportData, newest_largest
from .radii import eps_key
from .table_parts import WORST

# An eps-curves- name, so the report treats the file as its own (examples.OWN).
MIN_NORM = "eps-curves-min-norm-"


@dataclass
class Marker:
    """A fixed-radius record drawn beside a minimal-norm curve."""

    label: str  # its table column
    eps: float  # in the curve's norm and space
    acc: float
    lo: float
    hi: float
    n: int
    same_points: bool  # evaluated on the curve's points (same indices digest and n)
    record: str


@dataclass
class MinNormCurve:
    """Robust accuracy against radius from one minimal-norm record: a point is robust
    at radius e when the attack found no adversarial within e (norm None or > e)."""

    checkpoint: str
    dataset: str
    attack: str
    norm: str
    space: str
    n: int
    eps: float  # the record's radius, in its space
    robust_acc: float  # the record's own number at eps
    robust_lo: float
    robust_hi: float
    record: str
    norms: list  # the record's min_norms: float, or None where none was found
    ratio: str  # pixel eps / normalized eps (a scalar std), or 'per-channel' / '?'
    degenerate: bool
    markers: list[Marker]
    name: str = ""  # the figure's file name

    def acc_at(self, e: float) -> float:
        return sum(1 for v in self.norms if v is None or v > e) / self.n

    def steps(self) -> tuple[np.ndarray, np.ndarray]:
        """The step function's corners (drawn with where='post'): x from 0 through every
        norm found to the largest of them (at least eps), y the accuracy from x on."""
        found = {float(v) for v in self.norms if v is not None}
        xs = np.array(sorted({0.0, self.eps, *found}), dtype=float)
        return xs, np.array([self.acc_at(x) for x in xs], dtype=float)

    def value_at(self, e: float) -> float:
        """The plotted curve's value at e (within its x range)."""
        xs, ys = self.steps()
        return float(ys[np.searchsorted(xs, e, side="right") - 1])


def _space_eps(row) -> float | None:
    """A record's radius in its own attack space (a scalar there by construction)."""
    v = row["eps_pixel"] if row["eps_space"] == "pixel" else row["eps_normalized"]
    return None if isinstance(v, str) or v is None or math.isnan(v) else float(v)


def min_norm_series(data: ReportData) -> list[MinNormCurve]:
    """One curve per (checkpoint, minimal-norm attack, norm, space), from its record
    with the largest n (then the newest), with the checkpoint's fixed-radius records
    at that norm and space as markers (worst-case rows left out: they are not one attack)."""
    df = data.evals
    if df.empty:
        return []
    df = df.assign(_col=df.apply(column_name, axis=1), _threat=df.apply(threat_key, axis=1))
    df = df.assign(_col=split_sources(df))  # the table's column names: one per transfer source
    has_norms = df["min_norms"].map(lambda v: isinstance(v, list))
    mn = df[(df["attack_kind"] == "minimal-norm") & has_norms & (df["eps_space"].isin(["pixel", "normalized"]))]
    fixed = df[(df["attack_kind"] != "minimal-norm") & (df["attack_name"] != WORST)]
    out, names = [], set()
    groups = mn.groupby(["ckpt_key", "_col", "norm", "eps_space"], sort=False)
    for _, g in sorted(
        groups,
        key=lambda kv: (str(kv[1]["dataset"].iloc[0]), str(kv[1]["checkpoint"].iloc[0]), tuple(str(k) for k in kv[0])),
    ):
        r = newest_largest(g)
        eps = _space_eps(r)
        if eps is None:
            continue
        curve = MinNormCurve(
            str(r["checkpoint"]),
            str(r["dataset"]),
            r["_col"],
            str(r["norm"]),
            str(r["eps_space"]),
            int(r["n"]),
            eps,
            float(r["robust_acc"]),
            float(r["robust_lo"]),
            float(r["robust_hi"]),
            r["record"],
            list(r["min_norms"]),
            pixel_ratio(r),
            isinstance(r["degenerate"], str),
            _markers(fixed, r),
        )
        base = f"{MIN_NORM}{slug(curve.checkpoint)}-{slug(curve.attack)}-{slug(curve.norm)}-{slug(curve.space)}"
        name, i = base, 1
        while name in names:  # two checkpoints whose names differ only in characters slug() drops
            i += 1
            name = f"{base}-{i}"
        names.add(name)
        curve.name = name + ".png"
        out.append(curve)
    return out


def _markers(fixed: pd.DataFrame, r: pd.Series) -> list[Marker]:
    """The checkpoint's fixed-radius records at r's norm and space: per attack column
    and radius the one with the largest n (then the newest)."""
    same = fixed[
        (fixed["ckpt_key"] == r["ckpt_key"]) & (fixed["norm"] == r["norm"]) & (fixed["eps_space"] == r["eps_space"])
    ]
    if same.empty:
        return []
    same = same.assign(_e=same.apply(_space_eps, axis=1)).dropna(subset=["_e"])
    out = []
    for (col, _), g in sorted(
        same.groupby(["_col", same["_e"].map(eps_key)], sort=False),
        key=lambda kv: (attack_order(kv[0][0]), kv[1]["_e"].iloc[0]),
    ):
        m = newest_largest(g)
        out.append(
            Marker(
                col,
                float(m["_e"]),
                float(m["robust_acc"]),
                float(m["robust_lo"]),
                float(m["robust_hi"]),
                int(m["n"]),
                m["indices_sha256"] == r["indices_sha256"] and int(m["n"]) == int(r["n"]),
                m["record"],
            )
        )
    return out


def min_norm_curves(data: ReportData) -> list[ReportFigure]:
    out = []
    for c in min_norm_series(data):
        with matplotlib.rc_context(RC):
            out.append(_min_norm_figure(c))
    return out


def _min_norm_figure(c: MinNormCurve) -> ReportFigure:
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    xs, ys = c.steps()
    ax.step(
        xs,
        100 * ys,
        where="post",
        color="tab:blue",
        linewidth=1.5,
        label=f"{c.attack}: accuracy at each radius, from its norms (n={c.n})",
    )
    ax.axvline(c.eps, color="grey", linestyle=":", linewidth=1)
    ax.errorbar(
        [c.eps],
        [100 * c.robust_acc],
        yerr=pct_err(c.robust_acc, c.robust_lo, c.robust_hi),
        color="tab:blue",
        marker="*",
        markersize=10,
        capsize=3,
        linestyle="none",
        zorder=5,
        label=f"{c.attack} at its eps {_radius(c, c.eps)}: {100 * c.robust_acc:.1f}% (record, 95% interval)",
    )
    colors = tab_colors(len({m.label for m in c.markers}) + 1)[1:]
    style = {
        lab: (colors[i], MARKERS[(i + 1) % len(MARKERS)])
        for i, lab in enumerate(dict.fromkeys(m.label for m in c.markers))
    }
    for m in c.markers:
        color, marker = style[m.label]
        pts = "same points" if m.same_points else "other points"
        ax.errorbar(
            [m.eps],
            [100 * m.acc],
            yerr=pct_err(m.acc, m.lo, m.hi),
            color=color,
            marker=marker,
            markersize=6,
            capsize=3,
            linestyle="none",
            label=f"{m.label} at {_radius(c, m.eps)} (n={m.n}, {pts})",
        )
    right = max([xs[-1], *(m.eps for m in c.markers)])
    ax.set_xlim(0, right * 1.05 if right > 0 else 1)
    ax.set_ylim(0, 100)
    ax.set_ylabel("robust accuracy (%)")
    where = "pixel space ([0,1] images)" if c.space == "pixel" else "normalized space ((x - mean) / std)"
    norm = NORM_NAMES.get(c.norm, c.norm)
    ax.set_xlabel(f"{norm} radius, {where}; dotted: the record's eps")
    _other_axis(ax, c)
    deg = " (degenerate)" if c.degenerate else ""
    fig.suptitle(
        f"{c.dataset}: {c.checkpoint}{deg}, accuracy vs {norm} radius from {c.attack} (n={c.n})", fontsize=10, y=1.06
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    return ReportFigure(
        c.name, f"{c.checkpoint}: accuracy vs {norm} radius from {c.attack} minimal norms", png_bytes(fig)
    )


NORM_NAMES = {"linf": "L-inf", "l2": "L2", "l1": "L1"}


def _radius(c: MinNormCurve, e: float) -> str:
    """A radius in the curve's space; an L-inf pixel one also as k/255."""
    return f"{e:.4g}" + (f" ({e * 255:.3g}/255)" if c.space == "pixel" and c.norm == "linf" else "")


def _other_axis(ax, c: MinNormCurve) -> None:
    """The top axis: L-inf pixel radii also as k/255; otherwise the radius in the other
    space where one std converts it."""
    f = None if c.ratio in ("per-channel", "?") else float(c.ratio)
    if c.space == "pixel" and c.norm == "linf":
        top = ax.secondary_xaxis("top", functions=(lambda e: e * 255, lambda p: p / 255))
        top.set_xlabel("radius, pixel space (x 1/255)")
    elif c.space == "pixel" and f:
        top = ax.secondary_xaxis("top", functions=(lambda e, f=f: e / f, lambda z, f=f: z * f))
        top.set_xlabel("radius, normalized space")
    elif c.space == "normalized" and f:
        s = f * (255 if c.norm == "linf" else 1)
        top = ax.secondary_xaxis("top", functions=(lambda e, s=s: e * s, lambda p, s=s: p / s))
        top.set_xlabel("radius, pixel space" + (" (x 1/255)" if c.norm == "linf" else ""))

"""Report figures as PNG bytes: accuracy against eps (both spaces on the axes),
training curves and per-class accuracy heatmaps.

A minimal-norm attack's record (its per-point smallest norms) also gives a whole
curve of robust accuracy against radius, drawn with the checkpoint's fixed-radius
records beside it.

Figures are drawn on matplotlib's Agg canvas without pyplot (no global state,
no display needed) and saved without the 'Software' stamp, so the same records
give byte-identical PNGs."""
from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .load import ReportData, TrainRun, eps_first, eps_key, newest_largest, robust_key
from .tables import WORST, Comparison, _split_sources, _threat_key, attack_order, column_name

DPI = 110
RC = {
    "svg.hashsalt": "robustbench_local",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.facecolor": "white",
}
STYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
CLEAN_MARKER = "h"  # clean accuracy at eps 0: hollow, and no attack's marker


@dataclass
class ReportFigure:
    name: str  # file name under figures/
    title: str
    png: bytes


def png_bytes(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None}, bbox_inches="tight")
    return buf.getvalue()


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(text)).strip("_") or "x"


def _colors(n: int):
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


# ----------------------------------------------------------------------------- accuracy vs eps


def _ratio(row) -> str:
    """How a checkpoint's normalized eps maps to pixels (its std), as a group key."""
    n, p = row["eps_normalized"], row["eps_pixel"]
    if isinstance(n, str) or isinstance(p, str):
        return "per-channel"
    return f"{p / n:.6g}" if n else "?"


def eps_curves(data: ReportData) -> list[ReportFigure]:
    """One figure per (dataset, norm, normalization): per checkpoint and attack the
    radii it was evaluated at, joined by a line only between measured radii, each
    checkpoint's clean accuracy a marker of its own at eps 0; 95% intervals as error
    bars. A single radius stays a lone marker: nothing joins it to clean accuracy."""
    out = []
    for name, title, fig in eps_curve_figures(data):
        out.append(ReportFigure(name, title, png_bytes(fig)))
    return out


def eps_curve_figures(data: ReportData) -> list[tuple[str, str, Figure]]:
    """eps_curves' figures before they are drawn to PNG: (file name, title, Figure)."""
    df = data.evals
    if df.empty:
        return []
    df = df.assign(_col=df.apply(column_name, axis=1), _ratio=df.apply(_ratio, axis=1))
    out = []
    for (dataset, norm, ratio), g in sorted(df.groupby(["dataset", "norm", "_ratio"], dropna=False, sort=False),
                                            key=lambda kv: tuple(str(k) for k in kv[0])):
        with matplotlib.rc_context(RC):
            out.append(_eps_figure(str(dataset), str(norm), ratio, g))
    return out


def _eps_figure(dataset: str, norm: str, ratio: str, g: pd.DataFrame) -> tuple[str, str, Figure]:
    use_pixel = g["eps_normalized"].map(lambda v: isinstance(v, str)).any()
    xcol = "eps_pixel" if use_pixel else "eps_normalized"
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    ckpts = sorted(set(g["checkpoint"]))
    attacks = sorted(set(g["_col"]), key=attack_order)
    colors = dict(zip(ckpts, _colors(len(ckpts))))
    for ckpt in ckpts:
        rows = g[g["checkpoint"] == ckpt]
        degenerate = " (degenerate)" if rows["degenerate"].notna().any() else ""
        ref = newest_largest(rows)
        ax.errorbar([0.0], [100 * ref["clean_acc"]], yerr=_pct_err(ref["clean_acc"], ref["clean_lo"], ref["clean_hi"]),
                    color=colors[ckpt], linestyle="none", marker=CLEAN_MARKER, markerfacecolor="white", markersize=6,
                    capsize=2.5, label=f"{ckpt}{degenerate} · clean")
        for ai, att in enumerate(attacks):
            line = rows[rows["_col"] == att]
            if line.empty:
                continue
            pts = []
            for e, eg in line.groupby(line[xcol].map(lambda v: eps_first(eps_key(v))), sort=True):
                r = newest_largest(eg)
                pts.append((e, r["robust_acc"], r["robust_lo"], r["robust_hi"]))
            x, acc, lo, hi = (np.array(v, dtype=float) for v in zip(*pts))
            # a line only between radii that were measured; one radius is a marker alone
            ax.errorbar(x, 100 * acc, yerr=_pct_err(acc, lo, hi), color=colors[ckpt],
                        linestyle=STYLES[ai % len(STYLES)] if len(pts) > 1 else "none",
                        marker=MARKERS[ai % len(MARKERS)], markersize=4, capsize=2.5, linewidth=1.3,
                        label=f"{ckpt}{degenerate} · {att}")
    ax.set_ylim(0, 100)
    right = ax.get_xlim()[1]
    ax.set_xlim(-0.03 * right, right)  # the clean markers at eps 0 whole, not cut by the axis
    ax.set_ylabel("accuracy (%), 95% interval")
    space = "pixel space ([0,1] images)" if use_pixel else "normalized space ((x - mean) / std)"
    ax.set_xlabel(f"{norm} eps, {space}; markers: measured radii, eps 0 = clean accuracy")
    if ratio not in ("per-channel", "?"):
        f = float(ratio)
        if use_pixel:
            top = ax.secondary_xaxis("top", functions=(lambda e, f=f: e / f, lambda z, f=f: z * f))
            top.set_xlabel("eps, normalized space")
        else:
            top = ax.secondary_xaxis("top", functions=(lambda e, f=f: e * f * 255, lambda p, f=f: p / (f * 255)))
            top.set_xlabel(f"eps, pixel space (x 1/255; pixel = normalized x {f:.4g})")
    else:
        ax.set_title("per-channel std: the pixel-space radius differs per channel (see report.csv)", fontsize=8)
    fig.suptitle(f"{dataset}: accuracy vs {norm} eps", fontsize=10, y=1.06)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    name = f"eps-curves-{slug(dataset)}-{slug(norm)}" + ("" if ratio in ("per-channel", "?") else f"-px{slug(ratio)}")
    return name + ".png", f"{dataset}: accuracy vs {norm} eps", fig


# ----------------------------------------------------------------------------- training curves


def _series(history: list[dict], key: str) -> tuple[np.ndarray, np.ndarray] | None:
    pts = [(h.get("epoch", i + 1), h[key]) for i, h in enumerate(history)
           if isinstance(h.get(key), (int, float)) and not isinstance(h.get(key), bool) and math.isfinite(h[key])]
    if not pts:
        return None
    e, v = zip(*pts)
    return np.array(e, dtype=float), np.array(v, dtype=float)


def training_curves(trains: list[TrainRun]) -> list[ReportFigure]:
    runs = [t for t in trains if t.history]
    if not runs:
        return []
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(11, 3.4))
        axes = [fig.add_subplot(1, 3, i + 1) for i in range(3)]
        colors = _colors(len(runs))
        panels = [
            ("loss", [("train_loss", "-", "train"), ("val_loss", "--", "val")], 1.0),
            ("clean accuracy (%)", [("train_acc", "-", "train"), ("val_acc", "--", "val")], 100.0),
            ("validation robust accuracy (%)", [("val_robust_acc", "-", "val robust")], 100.0),
        ]
        for ax, (title, keys, scale) in zip(axes, panels):
            drawn = False
            for color, t in zip(colors, runs):
                for key, style, what in keys:
                    if key == "val_robust_acc":
                        key = robust_key(t.history) or key
                    s = _series(t.history, key)
                    if s is None:
                        continue
                    ax.plot(s[0], scale * s[1], color=color, linestyle=style, marker="o", markersize=3,
                            linewidth=1.2, label=f"{t.name} ({what})")
                    drawn = True
            ax.set_title(title)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if not drawn:
                ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, color="grey")
        handles, labels = [], []
        for ax in axes:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        fig.legend(handles, labels, loc="lower center", ncol=min(4, max(1, len(labels))), fontsize=7, frameon=False,
                   bbox_to_anchor=(0.5, -0.02 - 0.045 * math.ceil(len(labels) / 4)))
        fig.suptitle("training curves (solid: train, dashed: validation)", fontsize=10)
        return [ReportFigure("training-curves.png", "training curves", png_bytes(fig))]


# ----------------------------------------------------------------------------- per-class heatmaps


def _class_order(names) -> list[str]:
    names = list(names)
    if all(str(n).isdigit() for n in names):
        return sorted(names, key=int)
    return names


def per_class_heatmaps(data: ReportData, comp: Comparison) -> list[ReportFigure]:
    """Per dataset, the first (headline-most) table holding its checkpoints: a row
    per checkpoint and column (clean, each attack), a column per class."""
    out = []
    done: set[str] = set()
    for t in comp.tables:
        by_ds: dict[str, list] = {}
        for r in t.rows:
            by_ds.setdefault(r.dataset, []).append(r)
        for ds, rows in sorted(by_ds.items()):
            if ds in done:
                continue
            labels, values, classes = [], [], None
            for r in rows:
                for col in t.columns:
                    c = r.cells.get(col)
                    pc = data.per_class.get(c.record) if c and c.record else None
                    if not pc:
                        continue
                    if classes is None:
                        classes = _class_order(pc.keys())
                    key = "clean_acc" if col == "clean" else "robust_acc"
                    values.append([_num((pc.get(k) or {}).get(key)) for k in classes])
                    labels.append(f"{r.checkpoint} · {col}")
            if not values:
                continue
            done.add(ds)
            with matplotlib.rc_context(RC):
                out.append(_heatmap(ds, t.title, labels, classes, np.array(values, dtype=float)))
    return out


def _num(v) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def _heatmap(dataset: str, threat: str, labels: list[str], classes: list[str], values: np.ndarray) -> ReportFigure:
    h = max(2.2, 0.32 * len(labels) + 1.6)
    w = max(6.0, 0.55 * len(classes) + 3.5)
    fig = Figure(figsize=(w, h))
    ax = fig.add_subplot(1, 1, 1)
    ax.grid(False)
    im = ax.imshow(100 * values, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(classes)), labels=[str(c) for c in classes], rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels=labels)
    if len(classes) <= 20 and len(labels) <= 40:
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                v = values[i, j]
                ax.text(j, i, "-" if math.isnan(v) else f"{100 * v:.0f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, label="accuracy (%)", fraction=0.04)
    ax.set_title(f"{dataset}: per-class accuracy\n{threat}", fontsize=9)
    return ReportFigure(f"per-class-{slug(dataset)}.png", f"{dataset}: per-class accuracy", png_bytes(fig))


# ----------------------------------------------------------------------------- minimal-norm curves

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
    df = df.assign(_col=df.apply(column_name, axis=1), _threat=df.apply(_threat_key, axis=1))
    df = df.assign(_col=_split_sources(df))  # the table's column names: one per transfer source
    has_norms = df["min_norms"].map(lambda v: isinstance(v, list))
    mn = df[(df["attack_kind"] == "minimal-norm") & has_norms & (df["eps_space"].isin(["pixel", "normalized"]))]
    fixed = df[(df["attack_kind"] != "minimal-norm") & (df["attack_name"] != WORST)]
    out, names = [], set()
    groups = mn.groupby(["ckpt_key", "_col", "norm", "eps_space"], sort=False)
    for _, g in sorted(groups, key=lambda kv: (str(kv[1]["dataset"].iloc[0]), str(kv[1]["checkpoint"].iloc[0]),
                                                tuple(str(k) for k in kv[0]))):
        r = newest_largest(g)
        eps = _space_eps(r)
        if eps is None:
            continue
        curve = MinNormCurve(str(r["checkpoint"]), str(r["dataset"]), r["_col"], str(r["norm"]), str(r["eps_space"]),
                             int(r["n"]), eps, float(r["robust_acc"]), float(r["robust_lo"]), float(r["robust_hi"]),
                             r["record"], list(r["min_norms"]), _ratio(r), isinstance(r["degenerate"], str),
                             _markers(fixed, r))
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
    same = fixed[(fixed["ckpt_key"] == r["ckpt_key"]) & (fixed["norm"] == r["norm"])
                 & (fixed["eps_space"] == r["eps_space"])]
    if same.empty:
        return []
    same = same.assign(_e=same.apply(_space_eps, axis=1)).dropna(subset=["_e"])
    out = []
    for (col, _), g in sorted(same.groupby(["_col", same["_e"].map(eps_key)], sort=False),
                              key=lambda kv: (attack_order(kv[0][0]), kv[1]["_e"].iloc[0])):
        m = newest_largest(g)
        out.append(Marker(col, float(m["_e"]), float(m["robust_acc"]), float(m["robust_lo"]), float(m["robust_hi"]),
                          int(m["n"]), m["indices_sha256"] == r["indices_sha256"] and int(m["n"]) == int(r["n"]),
                          m["record"]))
    return out


def min_norm_curves(data: ReportData) -> list[ReportFigure]:
    out = []
    for c in min_norm_series(data):
        with matplotlib.rc_context(RC):
            out.append(_min_norm_figure(c))
    return out


def _pct_err(acc, lo, hi) -> np.ndarray:
    """Error-bar lengths in percent; records written before interval bounds were pinned to
    the estimate can hold a bound a rounding hair past it, which matplotlib refuses."""
    return np.maximum(100 * np.array([np.atleast_1d(acc - lo), np.atleast_1d(hi - acc)], dtype=float), 0.0)


def _min_norm_figure(c: MinNormCurve) -> ReportFigure:
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    xs, ys = c.steps()
    ax.step(xs, 100 * ys, where="post", color="tab:blue", linewidth=1.5,
            label=f"{c.attack}: accuracy at each radius, from its norms (n={c.n})")
    ax.axvline(c.eps, color="grey", linestyle=":", linewidth=1)
    ax.errorbar([c.eps], [100 * c.robust_acc], yerr=_pct_err(c.robust_acc, c.robust_lo, c.robust_hi),
                color="tab:blue", marker="*", markersize=10, capsize=3, linestyle="none", zorder=5,
                label=f"{c.attack} at its eps {_radius(c, c.eps)}: {100 * c.robust_acc:.1f}% (record, 95% interval)")
    colors = _colors(len({m.label for m in c.markers}) + 1)[1:]
    style = {lab: (colors[i], MARKERS[(i + 1) % len(MARKERS)])
             for i, lab in enumerate(dict.fromkeys(m.label for m in c.markers))}
    for m in c.markers:
        color, marker = style[m.label]
        pts = "same points" if m.same_points else "other points"
        ax.errorbar([m.eps], [100 * m.acc], yerr=_pct_err(m.acc, m.lo, m.hi), color=color, marker=marker,
                    markersize=6, capsize=3, linestyle="none",
                    label=f"{m.label} at {_radius(c, m.eps)} (n={m.n}, {pts})")
    right = max([xs[-1], *(m.eps for m in c.markers)])
    ax.set_xlim(0, right * 1.05 if right > 0 else 1)
    ax.set_ylim(0, 100)
    ax.set_ylabel("robust accuracy (%)")
    where = "pixel space ([0,1] images)" if c.space == "pixel" else "normalized space ((x - mean) / std)"
    norm = NORM_NAMES.get(c.norm, c.norm)
    ax.set_xlabel(f"{norm} radius, {where}; dotted: the record's eps")
    _other_axis(ax, c)
    deg = " (degenerate)" if c.degenerate else ""
    fig.suptitle(f"{c.dataset}: {c.checkpoint}{deg}, accuracy vs {norm} radius from {c.attack} (n={c.n})",
                 fontsize=10, y=1.06)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    return ReportFigure(c.name, f"{c.checkpoint}: accuracy vs {norm} radius from {c.attack} minimal norms",
                        png_bytes(fig))


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


def all_figures(data: ReportData, comp: Comparison) -> list[ReportFigure]:
    return eps_curves(data) + min_norm_curves(data) + training_curves(data.trains) + per_class_heatmaps(data, comp)



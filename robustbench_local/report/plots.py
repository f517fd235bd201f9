"""Report figures as PNG bytes: accuracy against eps (both spaces on the axes) and
training curves; the per-class heatmaps are per_class.py's, the curves from
minimal-norm attacks min_norm_plots.py's. all_figures() gathers them all."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from .columns import attack_order, column_name
from .figure_base import (
    MARKERS,
    OKABE_ITO,
    RC,
    STYLES,
    ReportFigure,
    palette,
    pct_err,
    pixel_ratio,
    png_bytes,
    slug,
    tab_colors,
)
from .load import ReportData, newest_largest
from .min_norm_plots import min_norm_curves
from .per_class import per_class_heatmaps
from .radii import eps_first, eps_key
from .seeds import checkpoint_groups
from .table_parts import Comparison
from .train_runs import TrainRun, robust_key

CLEAN_MARKER = "h"  # clean accuracy at eps 0: hollow, and no attack's marker
FAMILIES = ("no adversarial training", "adversarial training", "models from elsewhere")  # the eps-curve panels


# ----------------------------------------------------------------------------- accuracy vs eps


def eps_curves(data: ReportData) -> list[ReportFigure]:
    """One figure per (dataset, norm, normalization), a panel per family of models
    (FAMILIES) sharing one y-axis fitted to the numbers drawn. A colour per method: the
    checkpoints of a method trained with several seeds (grouped as the report's seed
    tables group them) share one, drawn as their mean with a band from the lowest to the
    highest seed; any other checkpoint has its own, with 95% intervals as error bars.
    Per attack (a line style and marker) the radii it was evaluated at, joined by a line
    only between measured radii, clean accuracy a marker of its own at eps 0. A single
    radius stays a lone marker: nothing joins it to clean accuracy. Two small legends:
    methods in each panel, attacks once below."""
    out = []
    for name, title, fig in eps_curve_figures(data):
        out.append(ReportFigure(name, title, png_bytes(fig)))
    return out


def eps_curve_figures(data: ReportData) -> list[tuple[str, str, Figure]]:
    """eps_curves' figures before they are drawn to PNG: (file name, title, Figure)."""
    df = data.evals
    if df.empty:
        return []
    df = df.assign(_col=df.apply(column_name, axis=1), _ratio=df.apply(pixel_ratio, axis=1))
    out = []
    for (dataset, norm, ratio), g in sorted(
        df.groupby(["dataset", "norm", "_ratio"], dropna=False, sort=False), key=lambda kv: tuple(str(k) for k in kv[0])
    ):
        with matplotlib.rc_context(RC):
            out.append(_eps_figure(str(dataset), str(norm), ratio, g))
    return out


def family(rows: pd.DataFrame) -> str:
    """Which panel a checkpoint's curves go to: by whether it was trained adversarially."""
    ref = newest_largest(rows)
    adv, method = ref["adv"], ref["method"]
    if isinstance(adv, str) and adv not in ("", "none", "None", "-"):
        return FAMILIES[1]
    return FAMILIES[0] if isinstance(method, str) and method else FAMILIES[2]


def _entries(g: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """(legend label, checkpoints) per colour: a method trained with several seeds, or
    one checkpoint (a lone seed keeps its checkpoint's name)."""
    groups = checkpoint_groups(g)
    grouped = {c for members in groups.values() for c in members}
    out = [(f"{name} ({len(m)} seeds)", m) if len(m) > 1 else (m[0], m) for name, m in groups.items()]
    return sorted(out + [(c, [c]) for c in sorted(set(g["checkpoint"])) if c not in grouped])


def _curve_points(line: pd.DataFrame, xcol: str) -> tuple[np.ndarray, ...]:
    """(eps, acc, lo, hi) at each measured radius, the record with the largest n there."""
    pts = []
    for e, eg in line.groupby(line[xcol].map(lambda v: eps_first(eps_key(v))), sort=True):
        r = newest_largest(eg)
        pts.append((e, r["robust_acc"], r["robust_lo"], r["robust_hi"]))
    return tuple(np.array(v, dtype=float) for v in zip(*pts))


def _y_range(lows: list[float], highs: list[float]) -> tuple[float, float]:
    """The accuracy axis (percent) fitted to the intervals drawn, with a margin, within 0-100."""
    if not np.isfinite(lows).any() or not np.isfinite(highs).any():
        return 0.0, 100.0
    lo, hi = 100 * np.nanmin(lows), 100 * np.nanmax(highs)
    pad = max(2.0, 0.06 * (hi - lo))
    return max(0.0, lo - pad), min(100.0, hi + 2 * pad)  # more room on top, where the legend goes


def _eps_figure(dataset: str, norm: str, ratio: str, g: pd.DataFrame) -> tuple[str, str, Figure]:
    # models normalized differently give one pixel radius different normalized ones:
    # only the pixel axis then puts the same ball at the same x
    ratios = {
        round(n / p, 6) if not isinstance(n, str) and not isinstance(p, str) and p else None
        for n, p in zip(g["eps_normalized"], g["eps_pixel"])
    }
    use_pixel = None in ratios or len(ratios) > 1
    xcol = "eps_pixel" if use_pixel else "eps_normalized"
    attacks = sorted(set(g["_col"]), key=attack_order)
    style = {att: (STYLES[i % len(STYLES)], MARKERS[i % len(MARKERS)]) for i, att in enumerate(attacks)}
    panels: dict[str, list[tuple[str, list[str]]]] = {}
    for label, ckpts in _entries(g):
        panels.setdefault(family(g[g["checkpoint"].isin(ckpts)]), []).append((label, ckpts))
    names = [f for f in FAMILIES if f in panels]
    seeded = any(len(ckpts) > 1 for entries in panels.values() for _, ckpts in entries)
    fig = Figure(figsize=(2.6 + 4.2 * len(names), 4.6), layout="constrained")
    axes = fig.subplots(1, len(names), sharey=True, squeeze=False)[0]
    lows, highs = [], []
    # a colour of its own for each method while Okabe-Ito's last, else colours per panel
    shown = [len(panels[name]) for name in names]
    everyone = palette(sum(shown)) if sum(shown) <= len(OKABE_ITO) else None
    for i, (ax, name) in enumerate(zip(axes, names)):
        colors = everyone[sum(shown[:i]) : sum(shown[: i + 1])] if everyone else palette(shown[i])
        labels = []
        for color, (label, ckpts) in zip(colors, panels[name]):
            members = [g[g["checkpoint"] == c] for c in ckpts]
            draw = _draw_model if len(members) == 1 else _draw_seeds
            draw(ax, members, color, [(att, *style[att]) for att in attacks], xcol, lows, highs)
            degenerate = [c for c in ckpts if g.loc[g["checkpoint"] == c, "degenerate"].notna().any()]
            if degenerate:
                label += " (degenerate)" if len(ckpts) == 1 else f" ({len(degenerate)} degenerate)"
            labels.append(label)
        handles = [Line2D([], [], color=c, linewidth=2) for c in colors]
        ax.legend(handles, labels, loc="upper right", fontsize=7, ncol=1 + (len(labels) > 6), framealpha=0.85)
        ax.set_title(name, fontsize=9)
        right = ax.get_xlim()[1]
        ax.set_xlim(-0.03 * right, right)  # the clean markers at eps 0 whole, not cut by the axis
        _pixel_axis(ax, ratio, use_pixel)
        space = "pixel space ([0,1] images)" if use_pixel else "normalized space ((x - mean) / std)"
        ax.set_xlabel(f"{norm} eps, {space}", fontsize=8)
    axes[0].set_ylim(*_y_range(lows, highs))
    axes[0].set_ylabel("accuracy (%)" if seeded else "accuracy (%), 95% interval")
    how = "marker and line: the attack; lines join measured radii only"
    if seeded:
        how += "\nseveral seeds: their mean, band and bars from lowest to highest seed; one model: 95% interval"
    fig.legend(
        [Line2D([], [], color="black", linestyle="none", marker=CLEAN_MARKER, markerfacecolor="white")]
        + [Line2D([], [], color="black", linestyle=style[a][0], marker=style[a][1]) for a in attacks],
        ["clean (eps 0)"] + attacks,
        loc="outside lower center",
        ncol=len(attacks) + 1,
        fontsize=8,
        frameon=False,
        title=how,
        title_fontsize=8,
    )
    fig.suptitle(f"{dataset}: accuracy vs {norm} eps" + _per_channel(ratio), fontsize=10)
    name = f"eps-curves-{slug(dataset)}-{slug(norm)}" + ("" if ratio in ("per-channel", "?") else f"-px{slug(ratio)}")
    return name + ".png", f"{dataset}: accuracy vs {norm} eps", fig


def _clean_marker(ax, acc, yerr, color) -> None:
    """Clean accuracy: a hollow marker at eps 0, never joined to the attacks' lines."""
    ax.errorbar(
        [0.0],
        acc,
        yerr=yerr,
        color=color,
        linestyle="none",
        marker=CLEAN_MARKER,
        markerfacecolor="white",
        markersize=6,
        capsize=2.5,
    )


def _draw_model(ax, members: list[pd.DataFrame], color, attacks: list[tuple], xcol: str, lows, highs) -> None:
    """One checkpoint: its numbers with their 95% intervals."""
    (rows,) = members
    ref = newest_largest(rows)
    _clean_marker(ax, [100 * ref["clean_acc"]], pct_err(ref["clean_acc"], ref["clean_lo"], ref["clean_hi"]), color)
    lows.append(ref["clean_lo"])
    highs.append(ref["clean_hi"])
    for att, linestyle, marker in attacks:
        line = rows[rows["_col"] == att]
        if line.empty:
            continue
        x, acc, lo, hi = _curve_points(line, xcol)
        lows.append(float(np.nanmin(lo)))
        highs.append(float(np.nanmax(hi)))
        # a line only between radii that were measured; one radius is a marker alone
        ax.errorbar(
            x,
            100 * acc,
            yerr=pct_err(acc, lo, hi),
            color=color,
            linestyle=linestyle if len(x) > 1 else "none",
            marker=marker,
            markersize=4,
            capsize=2.5,
            linewidth=1.3,
        )


def _draw_seeds(ax, members: list[pd.DataFrame], color, attacks: list[tuple], xcol: str, lows, highs) -> None:
    """A method's seeds: at each radius some seed was measured at, the mean of those
    measured, with a band (bars at a lone radius) from the lowest to the highest."""
    clean = np.array([newest_largest(rows)["clean_acc"] for rows in members], dtype=float)
    mean, lo, hi = clean.mean(keepdims=True), clean.min(keepdims=True), clean.max(keepdims=True)
    _clean_marker(ax, 100 * mean, pct_err(mean, lo, hi), color)
    lows.append(float(lo[0]))
    highs.append(float(hi[0]))
    for att, linestyle, marker in attacks:
        at: dict[float, list[float]] = {}  # radius -> each seed's accuracy there
        for rows in members:
            line = rows[rows["_col"] == att]
            if not line.empty:
                x, acc, _, _ = _curve_points(line, xcol)
                for e, a in zip(x, acc):
                    at.setdefault(float(e), []).append(float(a))
        if not at:
            continue
        x = np.array(sorted(at))
        mean = np.array([np.mean(at[e]) for e in x])
        lo, hi = np.array([min(at[e]) for e in x]), np.array([max(at[e]) for e in x])
        lows.append(float(lo.min()))
        highs.append(float(hi.max()))
        if len(x) > 1:  # a line and a band only between radii that were measured
            ax.fill_between(x, 100 * lo, 100 * hi, color=color, alpha=0.18, linewidth=0)
            ax.plot(x, 100 * mean, color=color, linestyle=linestyle, marker=marker, markersize=4, linewidth=1.3)
        else:
            ax.errorbar(
                x,
                100 * mean,
                yerr=pct_err(mean, lo, hi),
                color=color,
                linestyle="none",
                marker=marker,
                markersize=4,
                capsize=2.5,
            )


def _per_channel(ratio: str) -> str:
    return " (per-channel std: the pixel radius differs per channel, see report.csv)" if ratio == "per-channel" else ""


def _pixel_axis(ax, ratio: str, use_pixel: bool) -> None:
    """The radius in the other space on the top axis, where one std converts it."""
    if ratio in ("per-channel", "?"):
        return
    f = float(ratio)
    if use_pixel:
        top = ax.secondary_xaxis("top", functions=(lambda e, f=f: e / f, lambda z, f=f: z * f))
        top.set_xlabel("eps, normalized space", fontsize=8)
    else:
        top = ax.secondary_xaxis("top", functions=(lambda e, f=f: e * f * 255, lambda p, f=f: p / (f * 255)))
        top.set_xlabel(f"eps, pixel space (x 1/255; pixel = normalized x {f:.4g})", fontsize=8)


# ----------------------------------------------------------------------------- training curves


def _series(history: list[dict], key: str) -> tuple[np.ndarray, np.ndarray] | None:
    pts = [
        (h.get("epoch", i + 1), h[key])
        for i, h in enumerate(history)
        if isinstance(h.get(key), (int, float)) and not isinstance(h.get(key), bool) and math.isfinite(h[key])
    ]
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
        colors = tab_colors(len(runs))
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
                    ax.plot(
                        s[0],
                        scale * s[1],
                        color=color,
                        linestyle=style,
                        marker="o",
                        markersize=3,
                        linewidth=1.2,
                        label=f"{t.name} ({what})",
                    )
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
        fig.legend(
            handles,
            labels,
            loc="lower center",
            ncol=min(4, max(1, len(labels))),
            fontsize=7,
            frameon=False,
            bbox_to_anchor=(0.5, -0.02 - 0.045 * math.ceil(len(labels) / 4)),
        )
        fig.suptitle("training curves (solid: train, dashed: validation)", fontsize=10)
        return [ReportFigure("training-curves.png", "training curves", png_bytes(fig))]


def all_figures(data: ReportData, comp: Comparison) -> list[ReportFigure]:
    return eps_curves(data) + min_norm_curves(data) + training_curves(data.trains) + per_class_heatmaps(data, comp)

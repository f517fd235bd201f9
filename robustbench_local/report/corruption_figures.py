"""The common-corruption section's figures: per model, a heatmap of accuracy by
corruption and severity, and mean accuracy against severity; in colour-blind-safe
colours (cividis, Okabe & Ito), at most PER_FIGURE models per figure."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from .figure_base import MARKERS, STYLES, ReportFigure, png_bytes, slug

if TYPE_CHECKING:  # the section's types, for annotations only: corruptions.py imports this module
    from .corruptions import CorruptionTable, ModelRow

FIG_PREFIX = "corruption-"  # figure names this section owns
HEATMAP_CMAP = "cividis"  # sequential and readable with every common colour-vision deficiency
# Okabe & Ito's colour-blind-safe palette; black first and yellow last (weakest on white)
OKABE_ITO = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442")
PER_FIGURE = 8  # models per heatmap or curve figure: one Okabe-Ito colour each


def _short(name: str) -> str:
    """A legend's model name: 'runs/seed0/best.pth' -> 'runs/seed0'."""
    for tail in ("/best.pth", "/last.pth"):
        if name.endswith(tail) and len(name) > len(tail):
            return name[: -len(tail)]
    return name


def corruption_label(c: str, differs: dict[str, str]) -> str:
    return c.replace("_", " ") + (f" †{list(differs).index(c) + 1}" if c in differs else "")


def _chunks(rows: list[ModelRow]) -> list[list[ModelRow]]:
    return [rows[i : i + PER_FIGURE] for i in range(0, len(rows), PER_FIGURE)]


def section_figures(t: CorruptionTable) -> list[ReportFigure]:
    base = slug(t.dataset) + ("" if t.split == "test" else f"-{slug(t.split)}")
    out = []
    parts = _chunks(t.rows)
    for i, rows in enumerate(parts, 1):
        part = "" if len(parts) == 1 else f"-{i}"
        of = "" if len(parts) == 1 else f" ({i} of {len(parts)})"
        title = f"{t.title}: accuracy by corruption and severity{of}"
        out.append(
            ReportFigure(
                f"{FIG_PREFIX}heatmap-{base}{part}.png",
                title,
                png_bytes(heatmap_figure(rows, t.names, t.severities, t.differs, title)),
            )
        )
    for i, rows in enumerate(parts, 1):
        part = "" if len(parts) == 1 else f"-{i}"
        of = "" if len(parts) == 1 else f" ({i} of {len(parts)})"
        title = f"{t.title}: mean corruption accuracy vs severity{of}"
        out.append(
            ReportFigure(f"{FIG_PREFIX}severity-{base}{part}.png", title, png_bytes(severity_figure(rows, title)))
        )
    return out


def _fitted(lo: float, hi: float, step: float) -> tuple[float, float]:
    """A range around [lo, hi] on multiples of ``step`` within [0, 100], never empty."""
    a, b = max(0.0, math.floor(lo / step) * step), min(100.0, math.ceil(hi / step) * step)
    if b <= a:
        a, b = max(0.0, a - step), min(100.0, b + step)
    return a, b


def heatmap_figure(
    rows: list[ModelRow], names: list[str], severities: list[int], differs: dict[str, str], title: str
) -> Figure:
    """One panel per model: corruptions (rows) by severity (columns), accuracy in % written
    in each cell, on one colour scale (cividis) fitted to the values shown."""
    grids = [np.array([[100 * r.grid.get((c, s), math.nan) for s in severities] for c in names]) for r in rows]
    values = np.concatenate([g.ravel() for g in grids])
    values = values[~np.isnan(values)]
    vmin, vmax = _fitted(float(values.min()), float(values.max()), 10.0) if values.size else (0.0, 100.0)
    norm = Normalize(vmin, vmax)
    cmap = matplotlib.colormaps[HEATMAP_CMAP]
    ncols = min(4, len(rows))
    nrows = math.ceil(len(rows) / ncols)
    fig = Figure(figsize=(2.2 + (0.3 * len(severities) + 0.5) * ncols, 0.6 + nrows * (0.24 * len(names) + 1.1)))
    axes = fig.subplots(nrows, ncols, squeeze=False, gridspec_kw={"hspace": 0.35})
    im = None
    for k, ax in enumerate(axes.ravel()):
        if k >= len(rows):
            ax.set_visible(False)
            continue
        r, g = rows[k], grids[k]
        ax.grid(False)
        im = ax.imshow(g, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
        for i in range(g.shape[0]):
            for j in range(g.shape[1]):
                v = g[i, j]
                dark = not math.isnan(v) and norm(v) < 0.5  # cividis is dark at the low end
                ax.text(
                    j,
                    i,
                    "-" if math.isnan(v) else f"{v:.0f}",
                    ha="center",
                    va="center",
                    fontsize=6.5,
                    color="white" if dark else "black",
                )
        ax.set_xticks(range(len(severities)), labels=[str(s) for s in severities])
        ax.set_yticks(range(len(names)), labels=[corruption_label(c, differs) if k % ncols == 0 else "" for c in names])
        ax.tick_params(length=0)
        ax.set_xlabel("severity", fontsize=8)
        ax.set_title(f"{_short(r.name)}\nclean {100 * r.clean.acc:.1f}, mean {100 * r.mean.acc:.1f}", fontsize=8)
    fig.colorbar(im, ax=axes.ravel().tolist(), label="accuracy (%)", fraction=0.03, pad=0.02)
    fig.suptitle(title, fontsize=10)
    return fig


def severity_figure(rows: list[ModelRow], title: str) -> Figure:
    """Mean accuracy over corruptions against severity per model, severity 0 being clean
    accuracy; a line joins only the severities measured, error bars are 95% intervals,
    the y-axis is fitted to the data."""
    fig = Figure(figsize=(6.8, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    lows, highs = [], []
    for i, r in enumerate(rows):
        xs = [0] + sorted(r.by_severity)
        ys = [r.clean.acc] + [r.by_severity[s] for s in xs[1:]]
        cis = [(r.clean.lo, r.clean.hi)] + [r.severity_ci[s] or (r.by_severity[s],) * 2 for s in xs[1:]]
        acc = np.array(ys, dtype=float)
        lo, hi = np.array([c[0] for c in cis], dtype=float), np.array([c[1] for c in cis], dtype=float)
        err = np.maximum(100 * np.array([acc - lo, hi - acc]), 0.0)
        ax.errorbar(
            xs,
            100 * acc,
            yerr=err,
            color=OKABE_ITO[i % len(OKABE_ITO)],
            marker=MARKERS[i % len(MARKERS)],
            linestyle=STYLES[(i // len(OKABE_ITO)) % len(STYLES)],
            markersize=4.5,
            capsize=2.5,
            linewidth=1.4,
            label=_short(r.name),
        )
        lows.append(100 * float(lo.min()))
        highs.append(100 * float(hi.max()))
    a, b = _fitted(min(lows) - 2, max(highs) + 2, 5.0)
    ax.set_ylim(a, b)
    ax.set_xticks(range(6), labels=["clean", "1", "2", "3", "4", "5"])
    ax.set_xlim(-0.3, 5.3)
    ax.set_xlabel("severity (clean = uncorrupted); points only where measured")
    ax.set_ylabel("mean accuracy over corruptions (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    return fig

"""The per-class accuracy figure: per dataset, one heatmap panel per table column
(clean, each attack), a row per model and a column per class, the numbers written in
the cells. A method trained with several seeds (grouped as the report's seed tables
group them) is one row, the mean over its seeds; any other checkpoint is a row of its
own.

It stays readable at any count of models: a panel holds at most MAX_ROWS rows (more
go to further panels), each row keeps its height, and the panels sit side by side in
a grid. Colours come from cividis, which reads the same with every common
colour-vision deficiency and in grey."""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from .figure_base import RC, ReportFigure, png_bytes, slug
from .load import ReportData
from .seeds import group_labels, group_rows
from .table_parts import Comparison, Row

CMAP = "cividis"
MAX_ROWS = 24  # checkpoints in one panel
MAX_WIDTH = 11.0  # inches: the figure fits the report's page without shrinking its text
ROW_H = 0.26  # inches per checkpoint
LABEL_W = 1.9  # inches for the checkpoint names left of a grid row


@dataclass
class PerClass:
    dataset: str
    threat: str  # the table's title
    checkpoints: list[str]  # a row's name: a checkpoint, or a method and its count of seeds
    columns: list[str]  # clean, then the attacks
    classes: list[str]
    values: np.ndarray  # accuracy in [0, 1], shape (columns, checkpoints, classes); NaN where not recorded


def _class_order(names) -> list[str]:
    names = list(names)
    if all(str(n).isdigit() for n in names):
        return sorted(names, key=int)
    return names


def _num(v) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def _by_method(rows: list[Row]) -> list[tuple[str, list[int]]]:
    """The figure's rows in the table's order, each (name, indices into rows): a method
    trained with several seeds, or one checkpoint."""
    groups = group_rows(rows)
    labels = group_labels(groups)
    member_of = {id(r): key for key, by_seed in groups.items() if len(by_seed) > 1 for r in by_seed.values()}
    out: list[tuple[str, list[int]]] = []
    at: dict[tuple, int] = {}
    for i, r in enumerate(rows):
        key = member_of.get(id(r))
        if key is None:
            out.append((r.checkpoint, [i]))
            continue
        if key not in at:
            at[key] = len(out)
            out.append((f"{labels[key]} (mean, {len(groups[key])} seeds)", []))
        out[at[key]][1].append(i)
    return out


def per_class_tables(data: ReportData, comp: Comparison) -> list[PerClass]:
    """Per dataset, the first (headline-most) table holding its checkpoints, with the
    per-class accuracy of each of its cells that recorded one (a method's seeds: their mean)."""
    out = []
    done: set[str] = set()
    for t in comp.tables:
        by_ds: dict[str, list] = {}
        for r in t.rows:
            by_ds.setdefault(r.dataset, []).append(r)
        for ds, rows in sorted(by_ds.items()):
            if ds in done:
                continue
            found: dict[tuple[str, int], dict] = {}  # (column, row) -> per-class numbers
            for i, r in enumerate(rows):
                for col in t.columns:
                    c = r.cells.get(col)
                    pc = data.per_class.get(c.record) if c and c.record else None
                    if pc:
                        found[(col, i)] = pc
            if not found:
                continue
            done.add(ds)
            classes = _class_order(next(iter(found.values())).keys())
            kept = [(name, members) for name, members in _by_method(rows) if any(k[1] in members for k in found)]
            cols = [c for c in t.columns if any(k[0] == c for k in found)]
            values = np.full((len(cols), len(kept), len(classes)), math.nan)
            for j, col in enumerate(cols):
                key = "clean_acc" if col == "clean" else "robust_acc"
                for m, (_, members) in enumerate(kept):
                    got = [
                        [_num((found[(col, i)].get(k) or {}).get(key)) for k in classes]
                        for i in members
                        if (col, i) in found
                    ]
                    if got:
                        values[j, m] = np.mean(got, axis=0)
            out.append(PerClass(ds, t.title, [name for name, _ in kept], cols, classes, values))
    return out


def per_class_heatmaps(data: ReportData, comp: Comparison) -> list[ReportFigure]:
    out = []
    for pc in per_class_tables(data, comp):
        with matplotlib.rc_context(RC):
            fig = per_class_figure(pc)
            out.append(
                ReportFigure(f"per-class-{slug(pc.dataset)}.png", f"{pc.dataset}: per-class accuracy", png_bytes(fig))
            )
    return out


def per_class_figure(pc: PerClass) -> Figure:
    n_cls = len(pc.classes)
    cell_w = min(0.34, 8.0 / n_cls)  # many classes: narrower cells, no numbers
    panel_w = cell_w * n_cls + 0.4
    per_row = max(1, min(len(pc.columns), int((MAX_WIDTH - LABEL_W) // panel_w)))
    n = len(pc.checkpoints)
    chunks = [list(range(i, min(i + MAX_ROWS, n))) for i in range(0, n, MAX_ROWS)]
    grid_rows = [(chunk, pc.columns[j : j + per_row]) for chunk in chunks for j in range(0, len(pc.columns), per_row)]
    heights = [ROW_H * len(chunk) + 1.0 for chunk, _ in grid_rows]
    fig = Figure(figsize=(LABEL_W + per_row * panel_w + 0.9, sum(heights) + 0.6), layout="constrained")
    grid = fig.add_gridspec(len(grid_rows), per_row, height_ratios=heights)
    image = None
    for gi, (rows, cols) in enumerate(grid_rows):
        for j, col in enumerate(cols):
            ax = fig.add_subplot(grid[gi, j])
            image = _panel(ax, pc, pc.columns.index(col), rows, show_names=j == 0)
            part = f", checkpoints {rows[0] + 1}-{rows[-1] + 1}" if len(chunks) > 1 else ""
            ax.set_title(f"{col}{part}", fontsize=9)
    fig.colorbar(image, ax=fig.axes, label="accuracy (%)", shrink=min(1.0, 4.0 / max(sum(heights), 1.0)), aspect=25)
    fig.suptitle(f"{pc.dataset}: per-class accuracy (%) at {pc.threat}", fontsize=10)
    return fig


def _panel(ax, pc: PerClass, col: int, rows: list[int], show_names: bool):
    ax.grid(False)
    values = 100 * pc.values[col][rows]
    image = ax.imshow(values, cmap=CMAP, vmin=0, vmax=100, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(pc.classes)), labels=[str(c) for c in pc.classes], rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), labels=[pc.checkpoints[i] for i in rows] if show_names else [], fontsize=8)
    ax.tick_params(length=0)
    if len(pc.classes) <= 20:
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                v = values[i, j]
                # cividis runs dark blue to yellow: light text on its dark half
                ax.text(
                    j,
                    i,
                    "-" if math.isnan(v) else f"{v:.0f}",
                    ha="center",
                    va="center",
                    fontsize=6.5,
                    color="white" if not math.isnan(v) and v < 55 else "black",
                )
    return image

"""What every report figure shares: the PNG it becomes, its style and its colours.

Figures are drawn on matplotlib's Agg canvas without pyplot (no global state, no
display needed) and saved without the 'Software' stamp, so the same records give
byte-identical PNGs."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

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
# Okabe and Ito's eight colours, told apart with every common colour-vision deficiency (yellow, faint on
# white, last)
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442"]


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


def palette(n: int) -> list:
    """n colours: Okabe-Ito's while they last, then tab20's."""
    if n <= len(OKABE_ITO):
        return OKABE_ITO[:n]
    cmap = matplotlib.colormaps["tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def tab_colors(n: int) -> list:
    """n colours from tab10 (tab20 past ten)."""
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def pixel_ratio(row) -> str:
    """How a checkpoint's normalized eps maps to pixels (its std), as a group key."""
    n, p = row["eps_normalized"], row["eps_pixel"]
    if isinstance(n, str) or isinstance(p, str):
        return "per-channel"
    return f"{p / n:.6g}" if n else "?"


def pct_err(acc, lo, hi) -> np.ndarray:
    """Error-bar lengths in percent; records written before interval bounds were pinned to
    the estimate can hold a bound a rounding hair past it, which matplotlib refuses."""
    return np.maximum(100 * np.array([np.atleast_1d(acc - lo), np.atleast_1d(hi - acc)], dtype=float), 0.0)

"""Example grids and confusion matrices that `robust visualize` and `robust analyze`
left in the results folder, for the checkpoints the report shows. The report
links them (REPORT.md) and embeds them (report.html); it never runs a model."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .load import ReportData

# figure names the report writes itself (never shown as examples)
OWN = ("eps-curves-", "training-curves", "per-class-", "corruption-")


@dataclass
class Example:
    title: str
    link: str  # relative to the report's folder, '/' separated
    png: bytes


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", s).strip("_") or "x"


def _run(checkpoint_name: str) -> str:
    p = Path(str(checkpoint_name))
    return _slug(p.parent.name if p.parent.name not in ("", ".") else p.stem)


def find_examples(results: str | Path, out: str | Path, data: ReportData) -> list[Example]:
    """figures/<run>-*.png (visualize) and analysis/<run>/*-confusion.png (analyze)
    for the runs of the report's checkpoints, sorted by path."""
    results, out = Path(results), Path(out)
    runs = sorted({_run(c) for c in data.evals["checkpoint"]}, key=len, reverse=True)
    found: list[tuple[Path, str]] = []
    fig_dir = results / "figures"
    if fig_dir.is_dir():
        for p in sorted(fig_dir.glob("*.png")):
            if p.name.startswith(OWN) or p.name.startswith("."):
                continue
            run = next((r for r in runs if p.name.startswith(r + "-")), None)
            if run:
                found.append((p, f"{run}: {p.stem[len(run) + 1 :]} examples (clean | adversarial | perturbation)"))
    for run in sorted(runs):
        for p in sorted((results / "analysis" / run).glob("*-confusion.png")):
            found.append((p, f"{run}: {p.stem[: -len('-confusion')]} confusion matrix"))
    return [Example(title, Path(os.path.relpath(p, out)).as_posix(), p.read_bytes()) for p, title in found]

"""`robust report`: reads only the ResultsStore and writes REPORT.md, report.csv,
a self-contained report.html and PNG figures.

    from robustbench_local.report import build_report
    report = build_report("results", attack=["pgd"])   # pure: nothing written yet
    report.write()                                    # every file atomically, to results/

Deterministic: the same records give the same bytes; the only time in the output
is the newest record's 'created' field, stated as such."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd

from ..fileio import write_bytes
from .html import render_html
from .examples import OWN, Example, find_examples
from .load import ReportData, load_report_data
from .markdown import render_markdown
from .plots import ReportFigure, all_figures
from .tables import Comparison, build_comparison, csv_frame

FIG_DIR = "figures"


@dataclass
class Report:
    data: ReportData
    comparison: Comparison
    table: pd.DataFrame  # what report.csv holds
    markdown: str
    html: str
    figures: list[ReportFigure]
    examples: list[Example]
    out: Path  # the folder the links in REPORT.md are relative to

    def csv_bytes(self) -> bytes:
        buf = io.StringIO()
        self.table.to_csv(buf, index=False, lineterminator="\n")
        return buf.getvalue().encode("utf-8")

    def files(self) -> dict[str, bytes]:
        """Relative path -> content, everything the report writes."""
        out = {f"{FIG_DIR}/{f.name}": f.png for f in self.figures}
        out["report.csv"] = self.csv_bytes()
        out["report.html"] = self.html.encode("utf-8")
        out["REPORT.md"] = self.markdown.encode("utf-8")
        return out

    def write(self) -> list[Path]:
        """Writes each file atomically to ``out`` (content fully rendered first, so
        an error leaves the previous report intact); REPORT.md goes last."""
        out = self.out
        files = self.files()
        paths = []
        for rel, content in files.items():
            p = out / rel
            write_bytes(p, content)
            paths.append(p)
        # figures of an earlier report that this one no longer draws would look current
        for old in sorted((out / FIG_DIR).glob("*.png")):
            if old.name.startswith(OWN) and f"{FIG_DIR}/{old.name}" not in files:
                old.unlink()
        return paths


def build_report(
    results: str | Path = "results",
    out: str | Path | None = None,
    *,
    dataset: Iterable[str] = (),
    attack: Iterable[str] = (),
    checkpoint: Iterable[str] = (),
    skip_bad: bool = False,
    warn: Callable[[str], None] | None = None,
    notes: str | None = None,
) -> Report:
    """Everything `robust report` writes to ``out`` (default: the results
    folder), rendered in memory; filters as in load_report_data."""
    out = Path(out if out is not None else results)
    data = load_report_data(results, dataset=dataset, attack=attack, checkpoint=checkpoint, skip_bad=skip_bad, warn=warn)
    data.notes = notes or ""
    comp = build_comparison(data)
    figures = all_figures(data, comp)
    examples = find_examples(results, out, data)
    return Report(data, comp, csv_frame(data), render_markdown(data, comp, figures, examples, FIG_DIR),
                  render_html(data, comp, figures, examples), figures, examples, out)


def write_report(results: str | Path = "results", out: str | Path | None = None, **kw) -> Report:
    report = build_report(results, out, **kw)
    report.write()
    return report


__all__ = ["Report", "build_report", "write_report", "load_report_data"]

"""`robust report`: reads only the ResultsStore and writes REPORT.md, report.csv,
a self-contained report.html and PNG figures.

    from robustbench_local.report import build_report
    report = build_report("results", attack=["pgd"])   # pure: nothing written yet
    report.write()                                    # every file atomically, to results/

Deterministic: the same records give the same bytes; the only time in the output
is the newest record's 'created' field, stated as such.

report-manifest.json records what a report was made from (the results folder and
each record's digest) and the digest of every file written. A folder holding report
files that this tool did not write from that results folder, or that were changed
since, is someone's work: write() refuses it unless forced. A report of the same
results folder is rewritten, and the change in its records is stated."""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import RobustError
from ..fileio import write_files
from ..outputs import cannot_write
from ..results import ResultsStore
from ..text import plural
from .corruptions import CorruptionSection, build_corruptions
from .examples import OWN, Example, find_examples
from .figure_base import ReportFigure
from .html import render_html
from .leaderboard import Leaderboard, build_leaderboard
from .load import ReportData, load_report_data
from .markdown import render_markdown
from .plots import all_figures
from .report_csv import csv_frame
from .table_parts import Comparison
from .tables import build_comparison

FIG_DIR = "figures"
MANIFEST = "report-manifest.json"
MAIN_FILES = ("REPORT.md", "report.html", "report.csv")  # a folder holding one of these holds a report


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
    results: Path | None = None  # the results folder the records came from
    sources: dict[str, str] = field(default_factory=dict)  # record file name -> sha256, at build time
    note: str | None = None  # after write(): what was replaced, when something was
    leaderboard: Leaderboard | None = None  # our models beside published RobustBench entries
    corruptions: CorruptionSection | None = None  # accuracy under common corruptions

    def csv_bytes(self) -> bytes:
        buf = io.StringIO()
        self.table.to_csv(buf, index=False, lineterminator="\n")
        return buf.getvalue().encode("utf-8")

    def files(self) -> dict[str, bytes]:
        """Relative path -> content, everything the report writes."""
        out = {f"{FIG_DIR}/{f.name}": f.png for f in self.figures}
        out["report.csv"] = self.csv_bytes()
        if self.corruptions is not None:
            out.update(self.corruptions.files())
        out["report.html"] = self.html.encode("utf-8")
        out["REPORT.md"] = self.markdown.encode("utf-8")
        if self.results is not None:  # last: it vouches for the files before it
            out[MANIFEST] = _manifest(self.results, self.out, self.sources, out)
        return out

    def write(self, force: bool = False) -> list[Path]:
        """Writes every file to ``out`` as one (all complete before any is renamed into
        place, so a full disk leaves the previous report intact); REPORT.md and the
        manifest go last. Refuses a folder holding a report that is not ours to
        replace (see check_target) unless ``force``; ``note`` then says what was replaced."""
        out = self.out
        self.note = check_target(out, self.results, self.sources, force) if self.results is not None else None
        files = self.files()
        try:
            paths = write_files({out / rel: content for rel, content in files.items()})
        except OSError as e:
            raise RobustError(f"{cannot_write(out, None, e)}; the folder was left as it was") from None
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
    skip_bad: bool = True,
    warn: Callable[[str], None] | None = None,
    notes: str | None = None,
) -> Report:
    """Everything `robust report` writes to ``out`` (default: the results
    folder), rendered in memory; filters as in load_report_data."""
    out = Path(out if out is not None else results)
    sources = record_digests(results)
    data = load_report_data(
        results, dataset=dataset, attack=attack, checkpoint=checkpoint, skip_bad=skip_bad, warn=warn
    )
    data.notes = notes or ""
    comp = build_comparison(data)
    figures = all_figures(data, comp)
    examples = find_examples(results, out, data)
    board = build_leaderboard(data, results)
    corr = build_corruptions(data, comp, results, skip_bad=skip_bad, warn=warn)
    return Report(
        data,
        comp,
        csv_frame(data),
        render_markdown(data, comp, figures, examples, FIG_DIR, board, corr),
        render_html(data, comp, figures, examples, board, corr),
        figures + corr.figures,
        examples,
        out,
        Path(results),
        sources,
        leaderboard=board,
        corruptions=corr,
    )


def write_report(
    results: str | Path = "results", out: str | Path | None = None, *, force: bool = False, **kw
) -> Report:
    report = build_report(results, out, **kw)
    report.write(force=force)
    return report


# ----------------------------------------------------------------------------- what a report was made from
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_digests(results: str | Path) -> dict[str, str]:
    """Record file name -> sha256 of its bytes, for every record in the store."""
    out = {}
    for p in ResultsStore(results).paths():
        try:
            out[p.name] = _sha256(p.read_bytes())
        except OSError:
            continue  # the report names unreadable records itself
    return out


def _manifest(results: Path, out: Path, sources: dict[str, str], files: dict[str, bytes]) -> bytes:
    body = {
        "made_by": "robust report (robustbench_local)",
        # relative, so a committed report and its records keep matching in any clone
        "results": Path(os.path.relpath(Path(results).resolve(), Path(out).resolve())).as_posix(),
        "records": dict(sorted(sources.items())),
        "files": {rel: _sha256(content) for rel, content in sorted(files.items())},
    }
    return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _read_manifest(out: Path) -> dict | None:
    try:
        m = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(m, dict) and all(
        isinstance(m.get(k), t) for k, t in (("results", str), ("records", dict), ("files", dict))
    )
    return m if ok else None


def _changed_files(out: Path, manifest: dict) -> list[str]:
    changed = []
    for rel, sha in sorted(manifest["files"].items()):
        p = out / rel
        try:
            if p.is_file() and _sha256(p.read_bytes()) != sha:
                changed.append(rel)
        except OSError:
            changed.append(rel)
    return changed


def check_target(out: str | Path, results: str | Path, sources: dict[str, str], force: bool = False) -> str | None:
    """Whether a report of the records ``sources`` in ``results`` may be written to
    ``out``. None: nothing is replaced, or the same report again. A line saying what
    is replaced: the report of this results folder from other records (their report,
    kept up to date), or anything under ``force``. A RobustError (one line): the folder
    holds a report not written by `robust report`, written from another results
    folder, or changed since it was written."""
    out = Path(out)
    present = [n for n in MAIN_FILES if (out / n).exists()]
    if not present:
        return None
    manifest = _read_manifest(out)
    problem = None
    if manifest is None:
        problem = f"{out} already holds {', '.join(present)} that `robust report` did not write (no valid {MANIFEST})"
    else:
        changed = _changed_files(out, manifest)
        made_from = (out / manifest["results"]).resolve()
        if changed:
            problem = f"{changed[0]} was changed after `robust report` wrote it in {out}" + (
                f" (and {plural(len(changed) - 1, 'more file')})" if len(changed) > 1 else ""
            )
        elif made_from != Path(results).resolve():
            problem = f"{out} holds a report made from the records in {os.path.relpath(made_from)}"
    if problem:
        if not force:
            raise RobustError(f"{problem}; pass --out DIR for a folder of its own, or --force to overwrite it")
        return f"{problem}; overwritten because of --force"
    old, new = manifest["records"], sources
    if old == new:
        return None
    added = sum(1 for k in new if k not in old)
    gone = sum(1 for k in old if k not in new)
    edited = sum(1 for k in new if k in old and old[k] != new[k])
    parts = [f"{added} added"] * bool(added) + [f"{gone} gone"] * bool(gone) + [f"{edited} changed"] * bool(edited)
    return f"replaced the report made from {plural(len(old), 'record')} in {out} ({', '.join(parts)})"


__all__ = ["MANIFEST", "Report", "build_report", "check_target", "record_digests", "write_report", "load_report_data"]

"""The common-corruption section of the report: the models' accuracy under the 15
corruptions of CIFAR-10-C (Hendrycks & Dietterich 2019) beside their clean and
adversarial accuracy, a heatmap of corruption by severity per model, and mean
accuracy against severity.

Records of kind 'corruption' (corruptions/evaluate.py) are read from the store; among
repeats of one measurement (same checkpoint, data, points, corruptions, severities and
source) the newest is kept, as load.py does for evaluations. A model's row shows the
record covering the most corruption-severity pairs, then the largest n, then the newest;
corruptions.csv lists every kept record in long form.

The adversarial column reuses the comparison table the report already built: at the
report's main radius (the first table), AutoAttack where the model has a standard
AutoAttack record there, else the worst case over the attacks run, labelled which.

Nothing here is drawn or written when the store holds no corruption record, so such a
report is byte-identical to one made without this section.

The records are read in corruption_records.py, the adversarial column is built in
corruption_adversarial.py and corruptions.csv in corruption_csv.py."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field

import matplotlib
import numpy as np
import pandas as pd

from ..corruptions import CORRUPTIONS
from ..errors import RobustError
from ..results import mean_interval, unpack_flags
from .corruption_adversarial import Adversarial, adversarial_of, comparison_rows
from .corruption_csv import long_form
from .corruption_figures import section_figures
from .corruption_records import load_corruption_rows, newest_only
from .figure_base import RC, ReportFigure
from .load import ReportData, newest_largest
from .table_parts import Cell, Comparison, Row, method_text

CSV_NAME = "corruptions.csv"


@dataclass
class ModelRow:
    name: str  # as the report's tables name the checkpoint
    method: str
    ckpt_key: str
    sha256: str | None
    dataset: str
    split: str
    record: str
    source: str  # 'generated' or 'real'
    n: int
    clean: Cell
    mean: Cell
    relative_drop: float | None
    names: list[str]
    severities: list[int]
    by_corruption: dict[str, float]
    by_family: dict[str, float] | None  # the record's per-family means; None in records written without them
    by_severity: dict[int, float]
    severity_ci: dict[int, tuple[float, float] | None]
    grid: dict[tuple[str, int], float]  # (corruption, severity) -> accuracy
    differs: dict[str, str]
    adversarial: Adversarial | None = None
    degenerate: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class CorruptionTable:
    dataset: str
    split: str
    rows: list[ModelRow]
    names: list[str]  # union over rows, in the benchmark's order
    severities: list[int]
    differs: dict[str, str]  # corruption -> why it differs from CIFAR-10-C (footnote i is list(differs)[i - 1])
    figures: list[ReportFigure] = field(default_factory=list)

    @property
    def title(self) -> str:
        return self.dataset + ("" if self.split == "test" else f" ({self.split} split)")


@dataclass
class CorruptionSection:
    tables: list[CorruptionTable] = field(default_factory=list)
    radius: str | None = None  # the report's main radius (its first comparison table)
    figures: list[ReportFigure] = field(default_factory=list)
    csv: pd.DataFrame | None = None
    superseded: list[tuple[str, str]] = field(default_factory=list)  # (older record, newer kept)

    @property
    def empty(self) -> bool:
        return not self.tables

    def csv_bytes(self) -> bytes:
        buf = io.StringIO()
        self.csv.to_csv(buf, index=False, lineterminator="\n")
        return buf.getvalue().encode("utf-8")

    def files(self) -> dict[str, bytes]:
        """What the section adds beside its figures (which the report writes with its own)."""
        return {} if self.empty else {CSV_NAME: self.csv_bytes()}


# ----------------------------------------------------------------------------- building


def _order(names) -> list[str]:
    names = list(dict.fromkeys(names))
    known = [c for c in CORRUPTIONS if c in names]
    return known + [c for c in names if c not in CORRUPTIONS]


def _severity_ci(results: list[dict], s: int, n: int) -> tuple[float, float] | None:
    """95% interval of the mean over corruptions at one severity, over test points (as the
    record's mean_ci95 is), from the per-point flags; None where a result has none."""
    at = [r for r in results if int(r["severity"]) == s]
    if not at or any(not isinstance(r.get("flags"), str) for r in at) or n < 2:
        return None
    try:
        scores = np.mean([unpack_flags(r["flags"], n) for r in at], axis=0)
    except (RobustError, ValueError):
        return None
    return mean_interval(scores)[1]


def _by_family(v) -> dict[str, float] | None:
    """The record's per-family means, where it holds them as an object of accuracies."""
    if not isinstance(v, dict) or not all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x <= 1 for x in v.values()
    ):
        return None
    return {str(f): float(x) for f, x in v.items()}


def _model_row(f: dict, evals: pd.DataFrame, adv: dict[str, tuple[Row, str, bool]]) -> ModelRow:
    rec = f["rec"]
    m, about = rec["metrics"], rec["corruptions"]
    results = m["results"]
    names = _order(f["names"])
    severities = sorted(set(f["severities"]))
    mine = evals[evals["ckpt_key"] == f["ckpt_key"]] if not evals.empty else evals
    name, method = f["checkpoint"], f["method"]
    if not mine.empty:  # named as the report's tables name it
        ref = newest_largest(mine)
        name, method = str(ref["checkpoint"]), method_text(ref["method"], ref["adv"], ref.get("model_source"))
    n = f["n"]
    by_sev = {int(k): float(v) for k, v in m["by_severity"].items()}
    row = ModelRow(
        name=name,
        method=method,
        ckpt_key=f["ckpt_key"],
        sha256=f["checkpoint_sha256"],
        dataset=f["dataset"],
        split=f["split"],
        record=f["record"],
        source=f["source"],
        n=n,
        clean=Cell(float(m["clean_acc"]), *map(float, m["clean_ci95"]), n, record=f["record"]),
        mean=Cell(float(m["mean_acc"]), *map(float, m["mean_ci95"]), n, record=f["record"]),
        relative_drop=float(m["relative_drop"]) if m.get("relative_drop") is not None else None,
        names=names,
        severities=severities,
        by_corruption={c: float(v) for c, v in m["by_corruption"].items()},
        by_family=_by_family(m.get("by_family")),
        by_severity=by_sev,
        severity_ci={s: _severity_ci(results, s, n) for s in by_sev},
        grid={(r["corruption"], int(r["severity"])): float(r["acc"]) for r in results},
        differs=dict(about.get("differs_from_cifar10c") or {}) if f["source"] == "generated" else {},
    )
    own = (rec.get("degenerate") or {}).get("reason") if isinstance(rec.get("degenerate"), dict) else None
    if own:  # a model that guesses or predicts one class keeps its accuracy under any corruption
        row.degenerate = True
        row.notes.append(f"degenerate model ({own}): its corruption accuracies and drop are meaningless")
    hit = adv.get(f["ckpt_key"])
    if hit is None:
        row.notes.append("no adversarial evaluation of this model in this report")
    else:
        table_row, title, main = hit
        row.degenerate = row.degenerate or bool(table_row.degenerate)
        row.adversarial = adversarial_of(table_row, evals, title, main)
        if row.adversarial is None:
            row.notes.append(f"no attack at {title}")
        elif not main:
            row.notes.append(f"not evaluated at the main radius; adversarial accuracy at {title}")
        if table_row.degenerate:
            row.notes.append(f"degenerate model ({table_row.degenerate}): its adversarial accuracy is meaningless")
    return row


def _shown(records: list[dict]) -> tuple[dict, list[dict]]:
    """The record a model's row shows (most corruption-severity pairs, then largest n, then
    newest) and the others."""
    ranked = sorted(records, key=lambda r: (r["pairs"], r["n"], r["created"], r["record"]))
    return ranked[-1], ranked[:-1]


def build_corruptions(
    data: ReportData, comp: Comparison, results, *, skip_bad: bool = True, warn: Callable[[str], None] | None = None
) -> CorruptionSection:
    """The section from the store's corruption records (empty when there are none);
    records it cannot use are added to ``data.skipped`` and passed to ``warn``."""
    section = CorruptionSection(radius=comp.tables[0].title if comp.tables else None)
    rows = load_corruption_rows(results, data, skip_bad, warn)
    if not rows:
        return section
    rows, section.superseded = newest_only(rows)
    evals = data.evals
    adv = comparison_rows(comp, evals) if not evals.empty else {}
    groups: dict[tuple[str, str], dict[str, list[dict]]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["split"]), {}).setdefault(r["ckpt_key"], []).append(r)
    for (dataset, split), by_model in sorted(groups.items(), key=lambda kv: (kv[0][1] != "test", kv[0])):
        model_rows = []
        for recs in by_model.values():
            shown, others = _shown(recs)
            mr = _model_row(shown, evals, adv)
            if others:
                mr.notes.append(
                    f"{len(others)} other corruption record{'s' if len(others) > 1 else ''} of this "
                    f"model (other points or corruptions) in {CSV_NAME}"
                )
            if shown["pairs"] < len(CORRUPTIONS) * 5:
                mr.notes.append(
                    f"{len(mr.names)} of {len(CORRUPTIONS)} corruptions at severities "
                    f"{', '.join(map(str, mr.severities))}, not the full benchmark"
                )
            model_rows.append(mr)
        model_rows.sort(key=lambda r: (r.name, r.ckpt_key))
        names = _order(c for r in model_rows for c in r.names)
        why = {c: w for r in model_rows for c, w in r.differs.items()}
        differs = {c: why[c] for c in names if c in why}
        section.tables.append(
            CorruptionTable(
                dataset, split, model_rows, names, sorted({s for r in model_rows for s in r.severities}), differs
            )
        )
    section.csv = long_form(rows, section)
    with matplotlib.rc_context(RC):
        for t in section.tables:
            t.figures = section_figures(t)
            section.figures += t.figures
    return section

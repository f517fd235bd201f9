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
report is byte-identical to one made without this section."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

from ..corruptions import CORRUPTIONS
from ..errors import RobustError
from ..results import ResultsStore, mean_interval, unpack_flags
from .corruption_figures import section_figures
from .load import ReportData, dataset_matches, glob_any, newest_largest, source_label
from .plots import RC, ReportFigure
from .robustbench_info import is_standard_aa
from .tables import WORST, Cell, Comparison, Row, attack_order, method_text

CSV_NAME = "corruptions.csv"
DEDUP = ("ckpt_key", "dataset", "split", "n", "seed", "indices_sha256", "names", "severities", "source")


# ----------------------------------------------------------------------------- what the section holds


@dataclass
class Adversarial:
    """The model's adversarial accuracy at the report's main radius (or the first radius it has)."""

    cell: Cell
    label: str  # 'AutoAttack' or 'worst case over FGSM, PGD-20'
    autoattack: bool
    radius: str  # the comparison table's title
    main: bool  # at the report's main radius


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


# ----------------------------------------------------------------------------- reading the records


def _frac(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 1


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _pair(v) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(_frac(x) for x in v)


def corruption_problem(rec: dict) -> str | None:
    """Why a corruption record cannot be shown (the first problem found), or None."""
    for key in ("checkpoint", "data", "corruptions", "metrics"):
        if not isinstance(rec.get(key), dict):
            return f"{key} is missing" if rec.get(key) is None else f"{key} is not an object"
    ck, about, m = rec["checkpoint"], rec["corruptions"], rec["metrics"]
    if not any(isinstance(ck.get(k), str) and ck[k] for k in ("name", "path", "sha256")):
        return "checkpoint has no name, path or sha256"
    if about.get("source") not in ("generated", "real"):
        return f"corruptions.source is {about.get('source')!r}, not 'generated' or 'real'"
    names = about.get("names")
    if not (isinstance(names, list) and names and all(isinstance(c, str) for c in names)):
        return "corruptions.names is not a list of corruption names"
    if not (
        isinstance(about.get("severities"), list)
        and about["severities"]
        and all(_count(s) for s in about["severities"])
    ):
        return "corruptions.severities is not a list of levels"
    if not _count(m.get("n")):
        return "metrics.n is not a positive count"
    for key in ("clean_acc", "mean_acc"):
        if not _frac(m.get(key)):
            return f"metrics.{key} is not a fraction in [0, 1]"
    for key in ("clean_ci95", "mean_ci95"):
        if not _pair(m.get(key)):
            return f"metrics.{key} is not a [low, high] pair"
    if m.get("relative_drop") is not None and not isinstance(m["relative_drop"], (int, float)):
        return "metrics.relative_drop is not a number"
    res = m.get("results")
    if not (isinstance(res, list) and res):
        return "metrics.results is not a list of results"
    for r in res:
        if not (
            isinstance(r, dict)
            and isinstance(r.get("corruption"), str)
            and _count(r.get("severity"))
            and _count(r.get("n"))
            and _frac(r.get("acc"))
            and _pair(r.get("ci95"))
        ):
            return "metrics.results holds an entry without corruption, severity, n, acc and ci95"
    for key in ("by_corruption", "by_severity"):
        v = m.get(key)
        if not (isinstance(v, dict) and all(_frac(x) for x in v.values())):
            return f"metrics.{key} is not an object of accuracies"
    return None


def _flat(rec: dict) -> dict:
    ck, data, about, m = rec["checkpoint"], rec["data"], rec["corruptions"], rec["metrics"]
    sha, path, name = ck.get("sha256"), ck.get("path"), ck.get("name") or ck.get("path") or "?"
    src = ck.get("source") if isinstance(ck.get("source"), dict) else {}
    return {
        "rec": rec,
        "ckpt_key": str(sha or path or name),
        "checkpoint": str(name),
        "checkpoint_path": path,
        "checkpoint_sha256": sha,
        "method": method_text(
            ck.get("method"),
            ck.get("adv"),
            source_label(src.get("route"), src.get("zoo_name"), src.get("file"), src.get("factory")),
        ),
        "dataset": str(ck.get("dataset") or data.get("dataset") or "unknown"),
        "split": str(data.get("split") or "test"),
        "n": int(m["n"]),
        "seed": data.get("seed", about.get("seed")),
        "indices_sha256": data.get("indices_sha256"),
        "names": tuple(about["names"]),
        "severities": tuple(int(s) for s in about["severities"]),
        "source": about["source"],
        "pairs": len({(r["corruption"], int(r["severity"])) for r in m["results"]}),
        "created": str(rec.get("created") or ""),
        "record": Path(rec.get("_path", "?")).name,
    }


def _load(results, data: ReportData, skip_bad: bool, warn: Callable[[str], None] | None) -> list[dict]:
    """The usable corruption records that pass the report's dataset and checkpoint filters."""
    try:  # records that are no JSON were named (or refused) when the report read the store
        records = ResultsStore(results).load(skip_bad=True)
    except RobustError:
        return []
    out = []
    for rec in records:
        if rec.get("kind") != "corruption":
            continue
        why = corruption_problem(rec)
        if why:
            msg = f"cannot use record {rec.get('_path')}: {why}"
            if not skip_bad:
                raise RobustError(msg + " (fix or delete it, or pass --skip-bad to leave it out)")
            msg += "; left out"
            data.skipped.append(msg)
            if warn:
                warn(msg)
            continue
        row = _flat(rec)
        wanted_ds, wanted_ck = data.filters.get("dataset") or (), data.filters.get("checkpoint") or ()
        if wanted_ds and not dataset_matches(row["dataset"], tuple(wanted_ds)):
            continue
        if wanted_ck and not any(glob_any(p, [row["checkpoint"], row["checkpoint_path"]]) for p in wanted_ck):
            continue
        out.append(row)
    return out


def _newest_only(rows: list[dict]) -> tuple[list[dict], list[tuple[str, str]]]:
    """Among repeats of one measurement the newest record (created time, then file name);
    returns the kept ones and (dropped, kept) pairs."""
    kept: dict[tuple, dict] = {}
    dropped: list[tuple[str, tuple]] = []
    for r in sorted(rows, key=lambda r: (r["created"], r["record"])):
        key = tuple(repr(r[k]) for k in DEDUP)
        if key in kept:
            dropped.append((kept[key]["record"], key))
        kept[key] = r
    return list(kept.values()), sorted((old, kept[key]["record"]) for old, key in dropped)


# ----------------------------------------------------------------------------- adversarial accuracy


def _adversarial(row: Row, evals: pd.DataFrame, radius: str, main: bool) -> Adversarial | None:
    """From a comparison-table row: its standard AutoAttack cell (the autoattack package's
    before AutoAttack-native), else its worst-case cell, else its only (or lowest) attack."""
    attacks = {c: cell for c, cell in row.cells.items() if c != "clean"}
    by_record = {r: evals[evals["record"] == r].iloc[0] for r in {c.record for c in attacks.values() if c.record}}
    aa = [
        (by_record[c.record]["attack_name"] == "autoattack", c.n, col)
        for col, c in attacks.items()
        if c.record and is_standard_aa(by_record[c.record])
    ]
    if aa:
        col = max(aa)[2]
        return Adversarial(attacks[col], col, True, radius, main)
    worst = attacks.get(WORST)
    singles = sorted((c for c in attacks if c != WORST), key=attack_order)
    if worst is not None:
        members = by_record[worst.record]["attack_members"] if worst.record else None
        over = members.replace("+", ", ") if isinstance(members, str) and members else ", ".join(singles)
        return Adversarial(worst, f"worst case over {over}", False, radius, main)
    if len(singles) == 1:
        return Adversarial(attacks[singles[0]], singles[0], False, radius, main)
    if singles:
        low = min(singles, key=lambda c: (attacks[c].acc, attack_order(c)))
        return Adversarial(
            attacks[low], f"{low}, the lowest of {', '.join(singles)} (not per-example)", False, radius, main
        )
    return None


def _comparison_rows(comp: Comparison, evals: pd.DataFrame) -> dict[str, tuple[Row, str, bool]]:
    """ckpt_key -> (its row in the first comparison table holding it, that table's title, is it the main one)."""
    out: dict[str, tuple[Row, str, bool]] = {}
    for i, t in enumerate(comp.tables):
        for r in t.rows:
            rec = r.cells["clean"].record
            hit = evals[evals["record"] == rec]
            if not hit.empty:
                out.setdefault(str(hit.iloc[0]["ckpt_key"]), (r, t.title, i == 0))
    return out


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
        row.adversarial = _adversarial(table_row, evals, title, main)
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
    rows = _load(results, data, skip_bad, warn)
    if not rows:
        return section
    rows, section.superseded = _newest_only(rows)
    evals = data.evals
    adv = _comparison_rows(comp, evals) if not evals.empty else {}
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
    section.csv = _csv(rows, section)
    with matplotlib.rc_context(RC):
        for t in section.tables:
            t.figures = section_figures(t)
            section.figures += t.figures
    return section


# ----------------------------------------------------------------------------- CSV

CSV_COLUMNS = [
    "dataset",
    "split",
    "model",
    "checkpoint_sha256",
    "method",
    "source",
    "corruption",
    "family",
    "severity",
    "n",
    "acc",
    "ci_low",
    "ci_high",
    "differs_from_cifar10c",
    "record",
]


def _csv(rows: list[dict], section: CorruptionSection) -> pd.DataFrame:
    """Long form, every kept record: one line per corruption and severity, and its clean
    accuracy as corruption 'clean' at severity 0."""
    names = {r.ckpt_key: (r.name, r.method) for t in section.tables for r in t.rows}
    out = []
    for f in rows:
        m, about = f["rec"]["metrics"], f["rec"]["corruptions"]
        name, method = names.get(f["ckpt_key"], (f["checkpoint"], f["method"]))
        differs = (about.get("differs_from_cifar10c") or {}) if f["source"] == "generated" else {}
        base = {
            "dataset": f["dataset"],
            "split": f["split"],
            "model": name,
            "checkpoint_sha256": f["checkpoint_sha256"],
            "method": method,
            "source": f["source"],
            "record": f["record"],
        }
        lo, hi = m["clean_ci95"]
        out.append(
            {
                **base,
                "corruption": "clean",
                "family": "clean",
                "severity": 0,
                "n": f["n"],
                "acc": m["clean_acc"],
                "ci_low": lo,
                "ci_high": hi,
                "differs_from_cifar10c": False,
            }
        )
        for r in m["results"]:
            out.append(
                {
                    **base,
                    "corruption": r["corruption"],
                    "family": r.get("family") or "",
                    "severity": int(r["severity"]),
                    "n": int(r["n"]),
                    "acc": r["acc"],
                    "ci_low": r["ci95"][0],
                    "ci_high": r["ci95"][1],
                    "differs_from_cifar10c": r["corruption"] in differs,
                }
            )
    rank = {c: i for i, c in enumerate(CORRUPTIONS)}
    df = pd.DataFrame(out, columns=CSV_COLUMNS)
    df["_c"] = df["corruption"].map(lambda c: -1 if c == "clean" else rank.get(c, len(rank)))
    df = df.sort_values(["dataset", "split", "model", "record", "_c", "corruption", "severity"], kind="stable")
    return df.drop(columns="_c").reset_index(drop=True)

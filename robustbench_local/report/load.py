"""Read the ResultsStore into flat rows for the report: one row per evaluation
record (newest wins among repeats), training runs with their histories, and the
filters of `robust report`. A record becomes a row in eval_rows.py, a training run
in train_runs.py; record_checks.py says why one cannot be used.

Everything here is plain Python and pandas; nothing touches a model."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import RobustError
from ..results import ResultsStore
from .eval_rows import eval_row, eval_row_columns
from .radii import eps_key
from .record_checks import eval_problem, train_problem
from .train_runs import TrainRun, match_train, train_run

# What makes two evaluation records repeats of one measurement.
DEDUP_KEY = (
    "ckpt_key",
    "attack",
    "attack_members",
    "cumulative",
    "norm",
    "eps_normalized",
    "eps_pixel",
    "step_normalized",
    "split",
    "n",
    "indices_sha256",
    "transfer_from",
    "replayed_from",
)


@dataclass
class ReportData:
    evals: pd.DataFrame  # one row per kept evaluation record (columns: see eval_rows.eval_row)
    per_class: dict[str, dict]  # record file name -> per_class metrics
    trains: list[TrainRun]
    superseded: list[tuple[str, str]] = field(default_factory=list)  # (older record, newer record kept)
    skipped: list[str] = field(default_factory=list)  # warnings about records that were left out
    newest_created: str = ""
    filters: dict = field(default_factory=dict)
    notes: str = ""  # the experiment's own words (budget, data), shown under the header


# ----------------------------------------------------------------------------- filters


def glob_any(pattern: str, values: Iterable) -> bool:
    return any(
        isinstance(v, str) and (fnmatch.fnmatchcase(v, pattern) or fnmatch.fnmatchcase(Path(v).as_posix(), pattern))
        for v in values
    )


def _attack_matches(row: dict, wanted: tuple[str, ...]) -> bool:
    label, name = str(row["attack"]).lower(), str(row["attack_name"]).lower()
    return any(w.lower() in (label, name) or fnmatch.fnmatchcase(label, w.lower()) for w in wanted)


def dataset_matches(value, wanted: tuple[str, ...]) -> bool:
    return isinstance(value, str) and any(fnmatch.fnmatchcase(value.lower(), w.lower()) for w in wanted)


# ----------------------------------------------------------------------------- entry point


def load_report_data(
    results: str | Path = "results",
    *,
    dataset: Iterable[str] = (),
    attack: Iterable[str] = (),
    checkpoint: Iterable[str] = (),
    skip_bad: bool = True,
    warn: Callable[[str], None] | None = None,
) -> ReportData:
    """Loads, filters and deduplicates the store. Filters: dataset names (globs
    allowed), attack names or labels (e.g. pgd, PGD-20, 'PGD-*', worst-case) and
    checkpoint globs matched against the checkpoint's name and path.

    A record the report cannot use (not JSON, non-finite numbers, missing keys, wrong
    types) is left out and named through ``warn`` and in ``skipped`` (skip_bad), or
    is a RobustError naming it (skip_bad False)."""
    dataset, attack, checkpoint = tuple(dataset), tuple(attack), tuple(checkpoint)
    skipped: list[str] = []

    def note(msg: str) -> None:
        skipped.append(msg)
        if warn:
            warn(msg)

    def reduce(rec: dict, problem: Callable[[dict], str | None], make: Callable[[dict], object]):
        """make(rec), or None (named) when the record cannot be used."""
        why = problem(rec)
        if why is None:
            try:
                return make(rec)
            except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:  # a case the checks missed
                why = f"{type(e).__name__}: {e}"
        msg = f"cannot use record {rec.get('_path')}: {why}"
        if not skip_bad:
            raise RobustError(msg + " (fix or delete it, or pass --skip-bad to leave it out)")
        note(msg + "; left out")
        return None

    records = ResultsStore(results).load(skip_bad=skip_bad, warn=note)
    evals = [
        (r, row)
        for r in records
        if r.get("kind") == "eval"
        for row in [reduce(r, eval_problem, eval_row)]
        if row is not None
    ]
    trains = [
        t for r in records if r.get("kind") == "train" for t in [reduce(r, train_problem, train_run)] if t is not None
    ]

    rows, per_class = [], {}
    for rec, row in evals:
        if dataset and not dataset_matches(row["dataset"], dataset):
            continue
        if attack and not _attack_matches(row, attack):
            continue
        if checkpoint and not _glob_any_ckpt(row, checkpoint):
            continue
        rows.append(row)
        per_class[row["record"]] = (rec.get("metrics") or {}).get("per_class") or {}

    if dataset:
        trains = [t for t in trains if dataset_matches(t.dataset, dataset)]
    if checkpoint:
        trains = [t for t in trains if any(glob_any(p, [t.name, *t.paths]) for p in checkpoint)]
    filters = {"dataset": dataset, "attack": attack, "checkpoint": checkpoint}
    if not rows and not trains and not any(r.get("kind") == "corruption" for r in records):
        active = ", ".join(f"--{k} {' '.join(v)}" for k, v in filters.items() if v)
        raise RobustError(
            f"no records in {Path(results) / 'records'} match {active}"
            if active
            else f"no usable evaluation or training records in {Path(results) / 'records'}"
            + (f" ({len(skipped)} could not be used)" if skipped else "")
        )

    for row in rows:  # the training seed of an experiment's record that does not state it
        if row["group"] is not None and row["train_seed"] is None:
            train = match_train(row, trains)
            row["train_seed"] = train.seed if train else None
    df = pd.DataFrame(rows, columns=list(eval_row_columns()))
    df, superseded = _newest_only(df)
    for old, _new in superseded:
        per_class.pop(old, None)
    created = [c for c in list(df["created"]) + [t.created for t in trains] if c]
    return ReportData(
        evals=df,
        per_class=per_class,
        trains=sorted(trains, key=lambda t: (t.name, t.created, t.record)),
        superseded=superseded,
        skipped=skipped,
        newest_created=max(created) if created else "",
        filters=filters,
    )


def _glob_any_ckpt(row: dict, patterns: tuple[str, ...]) -> bool:
    return any(glob_any(p, [row["checkpoint"], row["checkpoint_path"]]) for p in patterns)


def _newest_only(df: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Among repeats of one measurement keep the newest record (by its created
    time, then file name); returns the kept rows and (dropped, kept) pairs."""
    if df.empty:
        return df.reset_index(drop=True), []
    df = df.sort_values(["created", "record"], kind="stable").reset_index(drop=True)
    eps_cols = {i for i, c in enumerate(DEDUP_KEY) if c.startswith(("eps_", "step_"))}
    key = pd.Series(
        [
            "\x1f".join(eps_key(v) if i in eps_cols else repr(v) for i, v in enumerate(t))
            for t in df[list(DEDUP_KEY)].itertuples(index=False)
        ],
        index=df.index,
    )
    keep = ~key.duplicated(keep="last")
    kept_by_key = dict(zip(key[keep], df.loc[keep, "record"]))
    superseded = sorted((r, kept_by_key[k]) for r, k in zip(df.loc[~keep, "record"], key[~keep]))
    return df[keep].reset_index(drop=True), superseded


def newest_largest(rows: pd.DataFrame) -> pd.Series:
    """The row of the record with the largest n, the newest among equals (ties: file name)."""
    return rows.sort_values(["n", "created", "record"], kind="stable").iloc[-1]

"""Corruption records for the report: why one cannot be shown (corruption_problem),
each usable one as a flat row that passes the report's dataset and checkpoint filters,
and the newest among repeats of one measurement (same checkpoint, data, points,
corruptions, severities and source), as load.py keeps for evaluations."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from ..errors import RobustError
from ..results import ResultsStore
from .eval_rows import source_label
from .load import ReportData, dataset_matches, glob_any
from .table_parts import method_text

DEDUP = ("ckpt_key", "dataset", "split", "n", "seed", "indices_sha256", "names", "severities", "source")


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


def corruption_row(rec: dict) -> dict:
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


def load_corruption_rows(results, data: ReportData, skip_bad: bool, warn: Callable[[str], None] | None) -> list[dict]:
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
        row = corruption_row(rec)
        wanted_ds, wanted_ck = data.filters.get("dataset") or (), data.filters.get("checkpoint") or ()
        if wanted_ds and not dataset_matches(row["dataset"], tuple(wanted_ds)):
            continue
        if wanted_ck and not any(glob_any(p, [row["checkpoint"], row["checkpoint_path"]]) for p in wanted_ck):
            continue
        out.append(row)
    return out


def newest_only(rows: list[dict]) -> tuple[list[dict], list[tuple[str, str]]]:
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

"""Read the ResultsStore into flat rows for the report: one row per evaluation
record (newest wins among repeats), training runs with their histories, and the
filters of `robust report`.

Everything here is plain Python and pandas; nothing touches a model."""

from __future__ import annotations

import fnmatch
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pandas as pd

from ..errors import RobustError
from ..results import ResultsStore

# Checks that concern the model as a whole (run once per checkpoint and copied
# into every record): the report shows them beside the checkpoint, not a cell.
MODEL_CHECKS = ("outputs_are_logits", "deterministic", "input_gradients", "no_collapse_at_large_eps")

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
class TrainRun:
    """One training record, reduced to what the report shows."""

    name: str
    record: str
    created: str
    dataset: str | None
    arch: str | None
    method: str | None
    adv: str | None
    minutes: float | None
    epochs: int | None
    sha256s: frozenset[str]
    paths: frozenset[str]
    history: list[dict]
    warning: str | None = None  # the last epoch's training warning (e.g. validation predicts one class)
    seed: int | None = None  # the training seed


@dataclass
class ReportData:
    evals: pd.DataFrame  # one row per kept evaluation record (columns: see _eval_row)
    per_class: dict[str, dict]  # record file name -> per_class metrics
    trains: list[TrainRun]
    superseded: list[tuple[str, str]] = field(default_factory=list)  # (older record, newer record kept)
    skipped: list[str] = field(default_factory=list)  # warnings about records that were left out
    newest_created: str = ""
    filters: dict = field(default_factory=dict)
    notes: str = ""  # the experiment's own words (budget, data), shown under the header


# ----------------------------------------------------------------------------- small helpers


def _get(d, *keys, default=None):
    cur = d
    for k in keys:
        if not isinstance(cur, dict) or k not in cur:
            return default
        cur = cur[k]
    return cur


def eps_value(v):
    """A radius as stored in a row: a float, or a ';'-joined string for per-channel
    radii (a ball in one space that is an ellipsoid/box of different sides in the other)."""
    if v is None:
        return math.nan
    if isinstance(v, (list, tuple)):
        vals = [float(x) for x in v]
        if len({round(x, 12) for x in vals}) == 1:
            return vals[0]
        return ";".join(repr(x) for x in vals)
    return float(v)


def eps_key(v) -> str:
    """A radius to 6 significant digits, so float32 round-off from different code
    paths (pixel 8/255 given, or 0.0313 normalized x 0.5) does not split one threat."""
    if isinstance(v, str):
        return ";".join(f"{float(x):.6g}" for x in v.split(";"))
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{float(v):.6g}"


def eps_first(v) -> float:
    """A sortable number for a radius (the first channel of a per-channel one)."""
    if isinstance(v, str):
        return float(v.split(";")[0])
    return float(v)


def fmt_eps(v, digits: int = 4) -> str:
    if isinstance(v, str):
        return "[" + ", ".join(f"{float(x):.{digits}g}" for x in v.split(";")) + "]"
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}g}"


def fmt_eps_255(pixel) -> str:
    if isinstance(pixel, str):
        return "[" + ", ".join(f"{float(x) * 255:.3g}" for x in pixel.split(";")) + "]/255"
    return f"{pixel * 255:.3g}/255"


def threat_label(norm: str, eps_normalized, eps_pixel) -> str:
    """'L-inf eps 0.0313 normalized = 0.0157 pixel (3.99/255)'."""
    n = {"linf": "L-inf", "l2": "L2", "l1": "L1"}.get(str(norm), str(norm))
    text = f"{n} eps {fmt_eps(eps_normalized)} normalized = {fmt_eps(eps_pixel)} pixel"
    return text + (f" ({fmt_eps_255(eps_pixel)})" if str(norm) == "linf" else "")  # x/255 suits a per-pixel bound


def _train_eps(ckpt: dict) -> tuple[object, object]:
    """The adversarial-training radius of a checkpoint in (normalized, pixel) space,
    from whatever the checkpoint metadata recorded."""
    adv = ckpt.get("adv")
    if not adv or adv == "none":
        return math.nan, math.nan
    threat = ckpt.get("train_threat") or {}
    kw = ckpt.get("adv_kwargs") or {}
    if isinstance(threat, dict) and "eps_normalized" in threat and "eps_pixel" in threat:
        return eps_value(threat["eps_normalized"]), eps_value(threat["eps_pixel"])
    src = threat if isinstance(threat, dict) and "eps" in threat else kw
    if "eps" not in src:
        return math.nan, math.nan
    eps = float(src["eps"])
    space = src.get("space") or src.get("eps_space") or "normalized"
    std = ckpt.get("std")
    if not std:
        return (eps, math.nan) if space == "normalized" else (math.nan, eps)
    std = [float(s) for s in (std if isinstance(std, (list, tuple)) else [std])]
    if space == "normalized":
        return eps, eps_value([eps * s for s in std])
    return eps_value([eps / s for s in std]), eps


def _source(v) -> str | None:
    """A model or file named in a record (a describe() object or a plain string): its path, else its name."""
    if isinstance(v, dict):
        v = v.get("path") or v.get("name")
    return v if isinstance(v, str) and v else None


def _created(rec: dict) -> str:
    return str(rec.get("created") or "")


def _text(v) -> str | None:
    return v if isinstance(v, str) and v else None


def _seed(v) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def source_label(route, zoo_name=None, file=None, factory=None) -> str | None:
    """How a model we did not train came in, for the tables' method column: 'RobustBench zoo:
    Wong2020Fast', 'weights: sd.pth', 'TorchScript: model.pt', 'model-fn: net.py:make'; None for ours."""
    if not _text(route):
        return None
    if route == "robustbench":
        return f"RobustBench zoo: {zoo_name or '?'}"
    if route == "model-fn":
        return f"model-fn: {factory or (Path(file).name if _text(file) else '?')}"
    what = {"weights": "weights", "torchscript": "TorchScript"}.get(route, route)
    return f"{what}: {Path(file).name}" if _text(file) else what


# ----------------------------------------------------------------------------- records -> rows


def _eval_row(rec: dict) -> dict:
    ck = rec.get("checkpoint") or {}
    data = rec.get("data") or {}
    att = rec.get("attack") or {}
    m = rec.get("metrics") or {}
    name = ck.get("name") or ck.get("path") or "?"
    sha = ck.get("sha256")
    path = ck.get("path")
    t_norm, t_pix = _train_eps(ck)
    clean_ci = m.get("clean_ci95") or [math.nan, math.nan]
    rob_ci = m.get("robust_ci95") or [math.nan, math.nan]
    model_warn, cell_warn = [], []
    for c in rec.get("checks") or []:
        if isinstance(c, dict) and c.get("ok") is False and c.get("name") != "not_degenerate":  # see "degenerate"
            (model_warn if c.get("name") in MODEL_CHECKS else cell_warn).append(str(c.get("detail") or c.get("name")))
    deg = rec.get("degenerate")
    members = att.get("members")
    src = ck.get("source") if isinstance(ck.get("source"), dict) else {}  # models we did not train
    exp = rec.get("experiment") if isinstance(rec.get("experiment"), dict) else {}
    return {
        "checkpoint": str(name),
        # an experiment's cells that differ only in their training seed share a group; records written before
        # they said so have their cell's name as the group (and the seed of their training record, see below)
        "experiment": _text(exp.get("name")),
        "group": _text(exp.get("group")) or _text(exp.get("cell")),
        "train_seed": _seed(exp.get("seed")),
        "ckpt_key": str(sha or path or name),
        "checkpoint_path": path,
        "checkpoint_sha256": sha,
        "dataset": ck.get("dataset") or data.get("dataset"),
        "arch": ck.get("arch"),
        "method": ck.get("method"),
        "adv": ck.get("adv") if ck.get("adv") not in (None, "") else "none",
        "model_source": source_label(
            src.get("route"), _text(src.get("zoo_name")), src.get("file"), _text(src.get("factory"))
        ),
        "source_route": _text(src.get("route")),
        "source_file": _text(src.get("file")),
        "zoo_name": _text(src.get("zoo_name")),
        "zoo_dataset": _text(src.get("zoo_dataset")),
        "zoo_threat_model": _text(src.get("zoo_threat_model")),
        "normalization": _text(ck.get("normalization")),
        "normalization_source": _text(ck.get("normalization_source")),
        "train_eps_normalized": t_norm,
        "train_eps_pixel": t_pix,
        "attack": att.get("label") or att.get("name") or "?",
        "attack_name": att.get("name") or att.get("label") or "?",
        "attack_members": "+".join(members) if members else None,
        "cumulative": bool(att.get("cumulative", False)),
        "norm": att.get("norm"),
        "eps_space": att.get("space"),
        "eps_normalized": eps_value(att.get("eps_normalized")),
        "eps_pixel": eps_value(att.get("eps_pixel")),
        "step_normalized": eps_value(att.get("step_normalized")),
        "step_pixel": eps_value(att.get("step_pixel")),
        "attack_version": _text(att.get("version")),
        "k": att.get("k"),
        "restarts": att.get("restarts"),
        "attack_kind": att.get("kind") if isinstance(att.get("kind"), str) else None,
        "step_rule": att.get("step_rule") if isinstance(att.get("step_rule"), str) else None,
        # where the adversarial images came from, when not crafted on this model
        "transfer_from": _source(rec.get("transfer_from")),
        "replayed_from": _source(rec.get("replayed_from")),
        "crafted_on": _source(_get(rec, "replayed_from", "crafted_on")),
        "min_norms": m.get("min_norms"),  # minimal-norm attacks: per point, checked by eval_problem
        "split": data.get("split"),
        "n": int(m.get("n", data.get("n", 0)) or 0),
        "selection": data.get("selection"),
        "data_seed": data.get("seed"),
        "indices_sha256": data.get("indices_sha256"),
        "clean_acc": float(m.get("clean_acc", math.nan)),
        "clean_lo": float(clean_ci[0]),
        "clean_hi": float(clean_ci[1]),
        "robust_acc": float(m.get("robust_acc", math.nan)),
        "robust_lo": float(rob_ci[0]),
        "robust_hi": float(rob_ci[1]),
        "robust_flags": m.get("robust_flags") if isinstance(m.get("robust_flags"), str) else None,
        "eval_seconds": float(m["seconds"]) if m.get("seconds") is not None else math.nan,
        "clean_seconds": float(m["clean_seconds"]) if m.get("clean_seconds") is not None else math.nan,
        "model_warnings": " | ".join(dict.fromkeys(model_warn)) or None,
        # why the model's robust numbers are meaningless (it guesses or predicts one class), or None
        "degenerate": (
            str(deg.get("reason") or "degenerate model") if isinstance(deg, dict) else str(deg) if deg else None
        ),
        "warnings": " | ".join(dict.fromkeys(cell_warn)) or None,
        "created": _created(rec),
        "record": Path(rec.get("_path", "?")).name,
    }


def robust_key(history: list[dict]) -> str | None:
    """The validation robust-accuracy column of a history (val_robust_acc, or any
    val_* column naming robust accuracy)."""
    keys = [k for h in history for k in h]
    if "val_robust_acc" in keys:
        return "val_robust_acc"
    cands = sorted({k for k in keys if k.startswith("val_") and "rob" in k and "acc" in k})
    return cands[0] if cands else None


def _train_run(rec: dict) -> TrainRun:
    """Tolerant of missing keys: a record from robust train holds checkpoint{path,
    sha256, last_path, last_sha256, out_dir, ...}, spec, data, history, minutes."""
    spec = rec.get("spec") if isinstance(rec.get("spec"), dict) else {}
    ck = rec.get("checkpoint") if isinstance(rec.get("checkpoint"), dict) else {}
    shas = {v for v in (ck.get("sha256"), ck.get("last_sha256")) if isinstance(v, str)}
    paths = {v for v in (ck.get("path"), ck.get("last_path")) if isinstance(v, str)}
    minutes = rec.get("minutes", _get(rec, "metrics", "minutes"))
    if minutes is None:
        secs = rec.get("seconds")
        secs = secs.get("total") if isinstance(secs, dict) else secs
        minutes = secs / 60 if isinstance(secs, (int, float)) else None
    history = [h for h in (rec.get("history") or []) if isinstance(h, dict)]
    name = (
        ck.get("out_dir")
        or spec.get("out")
        or (Path(sorted(paths)[0]).parent.as_posix() if paths else None)
        or Path(rec.get("_path", "train")).stem
    )
    ds = _get(rec, "data", "dataset") or _get(spec, "data", "dataset")
    if isinstance(ds, dict):
        ds = ds.get("name")
    epochs = rec.get("epochs_run") or len(history) or spec.get("epochs")
    return TrainRun(
        name=Path(str(name)).name,
        record=Path(rec.get("_path", "?")).name,
        created=_created(rec),
        dataset=ds,
        arch=ck.get("arch") or _get(spec, "model", "arch"),
        method=ck.get("method") or spec.get("method"),
        adv=ck.get("adv") or spec.get("adv"),
        minutes=float(minutes) if isinstance(minutes, (int, float)) else None,
        epochs=int(epochs) if isinstance(epochs, (int, float)) else None,
        sha256s=frozenset(shas),
        paths=frozenset(paths),
        history=history,
        warning=str(history[-1]["warning"]) if history and history[-1].get("warning") else None,
        seed=_seed(spec.get("seed")),
    )


@lru_cache(maxsize=4096)
def _resolved(p) -> str | None:
    """A checkpoint path made absolute (against the current folder, links followed)."""
    if not isinstance(p, str) or not p:
        return None
    try:
        return str(Path(p).expanduser().resolve())
    except (OSError, RuntimeError, ValueError):
        return os.path.abspath(p)


def match_train(row: dict | pd.Series, trains: list[TrainRun]) -> TrainRun | None:
    """The newest training run that wrote this checkpoint: by the sha256 of its
    best.pth or last.pth. Only where the evaluation or the training record holds no
    hash, by the checkpoint's full resolved path; never by a shorter part of it, since
    different studies name their runs alike (runs/quick/standard/best.pth and
    runs/seeds/standard/best.pth are different models)."""
    sha = row.get("checkpoint_sha256")
    sha = sha if isinstance(sha, str) and sha else None
    path = _resolved(row.get("checkpoint_path"))

    def wrote(t: TrainRun) -> bool:
        if sha and t.sha256s:
            return sha in t.sha256s
        return path is not None and any(_resolved(p) == path for p in t.paths)

    hits = [t for t in trains if wrote(t)]
    return max(hits, key=lambda t: (t.created, t.record)) if hits else None


# ----------------------------------------------------------------------------- records the report cannot use


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _radius_ok(v) -> bool:
    """A radius or step: a finite number >= 0, or a non-empty list of them (per channel)."""
    if isinstance(v, (list, tuple)):
        return bool(v) and all(_finite(x) and x >= 0 for x in v)
    return _finite(v) and v >= 0


def _wrong(place: str, v, want: str) -> str:
    """'metrics.n is missing' or "metrics.n is 'many', not a positive count"."""
    if v is None:
        return f"{place} is missing"
    shown = repr(v) if isinstance(v, (int, float, str, bool)) else f"a {type(v).__name__}"
    return f"{place} is {shown}, not {want}"


def eval_problem(rec: dict) -> str | None:
    """Why an evaluation record cannot be shown (the first problem found), or None.
    The report needs the checkpoint's identity, the attack's norm and radius and the
    accuracies with their n; everything else is optional but must have its type."""
    for key in ("checkpoint", "attack", "metrics"):
        if not isinstance(rec.get(key), dict):
            return _wrong(key, rec.get(key), "an object")
    if rec.get("data") is not None and not isinstance(rec["data"], dict):
        return _wrong("data", rec["data"], "an object")
    if rec.get("degenerate") is not None and not isinstance(rec["degenerate"], (dict, str)):
        return _wrong("degenerate", rec["degenerate"], "an object")
    if rec.get("checks") is not None and not isinstance(rec["checks"], list):
        return _wrong("checks", rec["checks"], "a list")
    ck, att, m = rec["checkpoint"], rec["attack"], rec["metrics"]
    if not any(isinstance(ck.get(k), str) and ck[k] for k in ("name", "path", "sha256")):
        return "checkpoint has no name, path or sha256"
    if not any(isinstance(att.get(k), str) and att[k] for k in ("name", "label")):
        return "attack has no name or label"
    if not isinstance(att.get("norm"), str):
        return _wrong("attack.norm", att.get("norm"), "a norm name")
    for key in ("eps_normalized", "eps_pixel"):
        if not _radius_ok(att.get(key)):
            return _wrong(f"attack.{key}", att.get(key), "a finite radius")
    for key in ("step_normalized", "step_pixel"):
        if att.get(key) is not None and not _radius_ok(att[key]):
            return _wrong(f"attack.{key}", att[key], "a finite step")
    if att.get("members") is not None and not (
        isinstance(att["members"], list) and all(isinstance(x, str) for x in att["members"])
    ):
        return "attack.members is not a list of labels"
    n = m.get("n")
    if not (isinstance(n, int) and not isinstance(n, bool) and n > 0):
        return _wrong("metrics.n", n, "a positive count")
    for key in ("clean_acc", "robust_acc"):
        if not (_finite(m.get(key)) and 0 <= m[key] <= 1):
            return _wrong(f"metrics.{key}", m.get(key), "a fraction in [0, 1]")
    for key in ("clean_ci95", "robust_ci95"):
        v = m.get(key)
        if v is not None and not (isinstance(v, list) and len(v) == 2 and all(_finite(x) for x in v)):
            return _wrong(f"metrics.{key}", v, "a [low, high] pair")
    for key in ("seconds", "clean_seconds"):
        if m.get(key) is not None and not _finite(m[key]):
            return _wrong(f"metrics.{key}", m[key], "a number of seconds")
    mn = m.get("min_norms")
    if mn is not None and not (
        isinstance(mn, list) and len(mn) == n and all(v is None or (_finite(v) and v >= 0) for v in mn)
    ):
        return _wrong("metrics.min_norms", mn, f"a list of {n} norms (>= 0) or nulls")
    if m.get("per_class") is not None and not (
        isinstance(m["per_class"], dict) and all(isinstance(v, dict) for v in m["per_class"].values())
    ):
        return "metrics.per_class is not an object of per-class objects"
    return None


def train_problem(rec: dict) -> str | None:
    """Why a training record cannot be shown, or None (the report is tolerant of
    missing parts, not of parts of the wrong type)."""
    if not isinstance(rec.get("checkpoint"), dict):
        return _wrong("checkpoint", rec.get("checkpoint"), "an object")
    for key in ("spec", "data", "metrics"):
        if rec.get(key) is not None and not isinstance(rec[key], dict):
            return _wrong(key, rec[key], "an object")
    if rec.get("history") is not None and not (
        isinstance(rec["history"], list) and all(isinstance(h, dict) for h in rec["history"])
    ):
        return _wrong("history", rec["history"], "a list of epoch rows")
    if rec.get("minutes") is not None and not _finite(rec["minutes"]):
        return _wrong("minutes", rec["minutes"], "a number")
    return None


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
        for row in [reduce(r, eval_problem, _eval_row)]
        if row is not None
    ]
    trains = [
        t for r in records if r.get("kind") == "train" for t in [reduce(r, train_problem, _train_run)] if t is not None
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
    df = pd.DataFrame(rows, columns=list(_eval_row_columns()))
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


def _eval_row_columns() -> list[str]:
    return list(_eval_row({"_path": "x.json"}).keys())


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

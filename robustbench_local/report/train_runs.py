"""Training records for the report: each reduced to a TrainRun (name, cost, history),
and the run that wrote a given checkpoint (match_train)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from .record_fields import as_seed, created_of, dig


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
    # minutes crafting the adversarial examples, in the rest of the training steps, validating
    split: tuple[float, float, float] | None = None
    budget_minutes: float | None = None  # the wall-clock budget it trained against (train.budget_minutes)


def robust_key(history: list[dict]) -> str | None:
    """The validation robust-accuracy column of a history (val_robust_acc, or any
    val_* column naming robust accuracy)."""
    keys = [k for h in history for k in h]
    if "val_robust_acc" in keys:
        return "val_robust_acc"
    cands = sorted({k for k in keys if k.startswith("val_") and "rob" in k and "acc" in k})
    return cands[0] if cands else None


def train_run(rec: dict) -> TrainRun:
    """Tolerant of missing keys: a record from robust train holds checkpoint{path,
    sha256, last_path, last_sha256, out_dir, ...}, spec, data, history, minutes."""
    spec = rec.get("spec") if isinstance(rec.get("spec"), dict) else {}
    ck = rec.get("checkpoint") if isinstance(rec.get("checkpoint"), dict) else {}
    shas = {v for v in (ck.get("sha256"), ck.get("last_sha256")) if isinstance(v, str)}
    paths = {v for v in (ck.get("path"), ck.get("last_path")) if isinstance(v, str)}
    minutes = rec.get("minutes", dig(rec, "metrics", "minutes"))
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
    ds = dig(rec, "data", "dataset") or dig(spec, "data", "dataset")
    if isinstance(ds, dict):
        ds = ds.get("name")
    epochs = rec.get("epochs_run") or len(history) or spec.get("epochs")
    secs = rec.get("seconds") if isinstance(rec.get("seconds"), dict) else {}
    parts = [secs.get(k) for k in ("attack", "update", "validation")]
    split = tuple(v / 60 for v in parts) if all(isinstance(v, (int, float)) for v in parts) else None
    return TrainRun(
        name=Path(str(name)).name,
        record=Path(rec.get("_path", "?")).name,
        created=created_of(rec),
        dataset=ds,
        arch=ck.get("arch") or dig(spec, "model", "arch"),
        method=ck.get("method") or spec.get("method"),
        adv=ck.get("adv") or spec.get("adv"),
        minutes=float(minutes) if isinstance(minutes, (int, float)) else None,
        epochs=int(epochs) if isinstance(epochs, (int, float)) else None,
        sha256s=frozenset(shas),
        paths=frozenset(paths),
        history=history,
        warning=str(history[-1]["warning"]) if history and history[-1].get("warning") else None,
        seed=as_seed(spec.get("seed")),
        split=split,
        budget_minutes=float(budget) if isinstance(budget := spec.get("budget_minutes"), (int, float)) else None,
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

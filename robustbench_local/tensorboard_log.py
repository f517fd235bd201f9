"""TensorBoard scalars for `robust train --tensorboard DIR`, `robust eval --tensorboard
DIR` and ``tensorboard = "DIR"`` in an experiment's [train] table.

Training writes one point per epoch (the step is the epoch): train/loss, train/accuracy,
val/loss, val/accuracy, val/robust_accuracy (adversarial training), lr (at the epoch's
start) and throughput/images_per_s. Evaluation writes eval/clean_accuracy and one
eval/robust_accuracy/<attack> per attack and radius, at the step of the checkpoint's
epoch, so they line up with its training curves. Accuracies are fractions in [0, 1],
as in the records.

It uses torch.utils.tensorboard, which needs the tensorboard package (an optional
extra: pip install tensorboard); nothing here is imported or written when it is off."""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Iterable
from pathlib import Path

from .errors import RobustError

# epoch-row column -> tag; other numeric columns go under epoch/<column>
EPOCH_TAGS = {
    "train_loss": "train/loss",
    "train_acc": "train/accuracy",
    "val_loss": "val/loss",
    "val_acc": "val/accuracy",
    "val_robust_acc": "val/robust_accuracy",
    "lr": "lr",
    "images_per_s": "throughput/images_per_s",
}
SKIP = {"epoch", "seconds", "attack_seconds", "val_robust_n"}  # the step, and what is no curve worth drawing


def require(option: str = "--tensorboard") -> None:
    """Fail in one line, before any work, when the tensorboard package is missing."""
    if importlib.util.find_spec("tensorboard") is None:
        raise RobustError(
            f"{option} needs the tensorboard package, which is not installed: "
            "pip install tensorboard (or the project's tensorboard extra)"
        )


def _writer(folder: str | os.PathLike):
    require()
    from torch.utils.tensorboard import SummaryWriter  # deferred: optional dependency (tensorboard)

    return SummaryWriter(log_dir=str(folder))


def _number(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


class EpochLog:
    """fit's hook: ``epoch(row)`` after each epoch, ``close()`` at the end. The writer is
    made at the first epoch, so a run refused on its inputs leaves no folder."""

    def __init__(self, folder: str | os.PathLike):
        require()
        self.folder = Path(folder)
        self._w = None

    def epoch(self, row: dict) -> None:
        if self._w is None:
            self._w = _writer(self.folder)
        step = int(row["epoch"])
        for key, value in row.items():
            v = _number(value)
            if key in SKIP or v is None:
                continue
            self._w.add_scalar(EPOCH_TAGS.get(key, f"epoch/{key}"), v, step)
        self._w.flush()

    def close(self) -> None:
        if self._w is not None:
            self._w.close()
            self._w = None


def eval_tag(rec: dict) -> str:
    """eval/robust_accuracy/<label>_<norm>_eps<eps><space>, e.g. PGD-10_linf_eps0.0313normalized."""
    a = rec.get("attack") or {}
    label = str(a.get("label") or a.get("name") or "attack").replace(" ", "_")
    return f"eval/robust_accuracy/{label}_{a.get('norm', '')}_eps{a.get('eps', 0):g}{a.get('space') or ''}"


def write_evaluations(folder: str | os.PathLike, records: Iterable[dict]) -> None:
    """Clean and robust accuracy of evaluation records (other kinds are skipped)."""
    records = [r for r in records if r.get("kind") == "eval"]
    if not records:
        return
    w = _writer(folder)
    try:
        clean_steps = set()
        for rec in records:
            m = rec.get("metrics") or {}
            step = int((rec.get("checkpoint") or {}).get("epoch") or 0)
            clean = _number(m.get("clean_acc"))
            if clean is not None and step not in clean_steps:
                w.add_scalar("eval/clean_accuracy", clean, step)
                clean_steps.add(step)
            robust = _number(m.get("robust_acc"))
            if robust is not None:
                w.add_scalar(eval_tag(rec), robust, step)
    finally:
        w.close()

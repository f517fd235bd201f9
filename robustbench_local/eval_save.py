"""Saving adversarial examples (``--save-adv``): what each attack adds to the file, and
the file itself, written atomically."""

from __future__ import annotations

import torch

from .attacks import AttackSpec
from .eval_inputs import Points, Target
from .fileio import atomic_path
from .outputs import UnsavedWork, cannot_write


def adv_entries(spec: AttackSpec, eps: float, run, attack: dict) -> dict:
    """One attack's part of the file: its images, predictions, flags and settings, keyed 'LABEL@EPS/...'."""
    key = f"{spec.label}@{eps:g}"
    return {
        f"{key}/x_adv": run.x_adv.cpu(),
        f"{key}/adv_pred": run.adv_pred.cpu(),
        f"{key}/fooled": run.fooled.cpu(),
        f"{key}/attack": {k: v for k, v in attack.items() if not isinstance(v, torch.Tensor)},
    }


def write_adv_file(path, points: Points, clean_pred, saved: dict, target: Target, records: list[dict]) -> None:
    """Writes the file; on a full disk raises UnsavedWork carrying ``records``, so the
    caller still gets the records to keep."""
    try:
        _write(path, points, clean_pred, saved, target)
    except OSError as e:
        raise UnsavedWork(str(cannot_write(path, "--save-adv", e, "FILE")), records) from None


def _write(path, points: Points, clean_pred, saved: dict, target: Target) -> None:
    payload = {
        "x_clean": points.x.cpu(),
        "y": points.y.cpu(),
        "clean_pred": clean_pred.cpu(),
        "index": points.index.cpu(),
        "split": points.split,
        "dataset": points.dataset,
        "checkpoint": target.path or target.name,
        "classes": list(points.classes),
        "selection": points.selection,
        "seed": points.seed,
        **saved,
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)  # through a Python file, a full disk is an OSError (ENOSPC)

"""Checkpoints: one .pth file with the weights and everything needed to rebuild the
model, written atomically and read without running code from it.

File layout (a dict of tensors and plain Python values only, so that
``torch.load(path, weights_only=True)`` reads it)::

    {"format": "robustbench_local/1",
     "state_dict": {...},          # the NormalizedModel's, normalization buffers included
     "meta": {...},                # see REQUIRED_META and save_checkpoint
     "train_state": {...} | None}  # optimizer/schedule/scaler state, epoch, history, best

A file that would need more than ``weights_only`` (a pickle that references code)
is refused, never loaded with ``weights_only=False``.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError, first_line
from .fileio import atomic_path, to_jsonable
from .models import build_model
from .runtime import git_commit, package_versions
from .torchfile import load_weights_only

FORMAT = "robustbench_local/1"
# enough to rebuild the model from the file alone
REQUIRED_META = ("arch", "arch_kwargs", "num_classes", "input_shape", "mean", "std")


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _plain(obj: Any, where: str, allow_tensors: bool) -> Any:
    """Check that ``obj`` holds only what weights_only can read (and, for meta, what
    JSON can hold), so a bad value fails at save time rather than at load time."""
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    # subclasses (e.g. torch.__version__, a TorchVersion) would be pickled as their class
    if isinstance(obj, bool):
        return bool(obj)
    for base in (int, float, str):
        if isinstance(obj, base):
            return base(obj)
    if isinstance(obj, torch.Tensor):
        if allow_tensors:
            return obj.detach()
        return _plain(to_jsonable(obj), where, allow_tensors)
    if isinstance(obj, dict):
        return {
            (k if isinstance(k, (int, str)) else str(k)): _plain(v, f"{where}.{k}", allow_tensors)
            for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [_plain(v, f"{where}[{i}]", allow_tensors) for i, v in enumerate(obj)]
    converted = to_jsonable(obj)
    if converted is not obj:
        return _plain(converted, where, allow_tensors)
    raise CheckpointError(
        f"cannot store {type(obj).__name__} at {where} in a checkpoint: only tensors and plain values"
    )


def save_checkpoint(path: str | os.PathLike, model: nn.Module, meta: dict, *, train_state: dict | None = None) -> Path:
    """Write ``model``'s weights with ``meta`` (and optionally the training state for
    resume) atomically to ``path``. meta must hold REQUIRED_META; versions, git
    commit and creation time are added when missing."""
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise CheckpointError(f"checkpoint metadata lacks {', '.join(missing)}; it could not be rebuilt")
    meta = dict(meta)
    meta.setdefault("versions", package_versions())
    meta.setdefault("git_commit", git_commit())
    meta.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "state_dict": state_dict,
        "meta": _plain(meta, "meta", allow_tensors=False),
        "train_state": None if train_state is None else _plain(train_state, "train_state", allow_tensors=True),
    }
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)  # through a Python file, a full disk is an OSError (ENOSPC)
    return path


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The whole checkpoint dict, read with ``weights_only=True``. Raises
    CheckpointError (one line) for a missing, truncated, unsafe or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}" + (" (it is a folder)" if path.is_dir() else ""))
    ckpt = load_weights_only(path, label=str(path), what="checkpoint", error=CheckpointError, map_location=map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{path} is not a robustbench_local checkpoint (format {found!r}, expected {FORMAT!r}); if it holds "
            f"plain weights, evaluate them with --arch NAME --weights {path} --dataset NAME"
        )
    meta = ckpt.get("meta")
    if not isinstance(meta, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{path} lacks its metadata or state_dict")
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise CheckpointError(f"{path} metadata lacks {', '.join(missing)}; the model cannot be rebuilt")
    return ckpt


def build_from_meta(meta: dict) -> nn.Module:
    """A freshly initialised model with the architecture and normalization in ``meta``."""
    return build_model(
        meta["arch"],
        num_classes=int(meta["num_classes"]),
        input_shape=tuple(int(v) for v in meta["input_shape"]),
        mean=meta["mean"],
        std=meta["std"],
        **dict(meta.get("arch_kwargs") or {}),
    )


def load_state(model: nn.Module, state_dict: dict, source: str | os.PathLike) -> None:
    """Load weights, turning a mismatch into one line naming the first offending keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong = [k for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else ""))
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}" + (" ..." if len(unexpected) > 3 else ""))
        if wrong:
            k = wrong[0]
            parts.append(
                f"shape of {k} is {tuple(state_dict[k].shape)} in the file but {tuple(own[k].shape)} in the model"
            )
        raise CheckpointError(f"the weights in {source} do not fit the model: {'; '.join(parts)}")
    model.load_state_dict(state_dict)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """(model in eval mode on ``device``, taking [0,1] pixels; its metadata), rebuilt
    from the file alone."""
    ckpt = read_checkpoint(path)
    meta = ckpt["meta"]
    try:
        model = build_from_meta(meta)
    except CheckpointError:
        raise
    except Exception as e:  # a RobustError from the zoo, or an architecture that no longer builds
        raise CheckpointError(f"cannot rebuild the model of {path} ({meta.get('arch')!r}): {first_line(e)}") from None
    load_state(model, ckpt["state_dict"], path)
    model.to(device)
    model.eval()
    return model, meta

"""Plain weight files as researchers save them: a state_dict, or a dict holding one
under a usual key, with the prefixes DataParallel, DDP and torch.compile add.

Read with ``torch.load(weights_only=True)`` only: a weights file never runs code."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..torchfile import load_weights_only

# where training scripts put the state_dict, first match wins
STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "state", "model_state")
# DataParallel/DDP ("module."), torch.compile ("_orig_mod.")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# a state_dict of our NormalizedModel holds its normalization as these buffers
NORMALIZE_KEYS = ("normalize.mean", "normalize.std")


def _is_state_dict(obj) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def unwrap(obj, source: str, keys: tuple[str, ...] = STATE_KEYS) -> tuple[dict[str, torch.Tensor], str | None]:
    """(state_dict, the key it sat under or None), wrapper prefixes stripped."""
    found = None
    if not _is_state_dict(obj) and isinstance(obj, dict):
        for key in keys:
            if _is_state_dict(obj.get(key)):
                obj, found = obj[key], key
                break
    if not _is_state_dict(obj):
        what = f"a dict with keys {', '.join(map(str, list(obj)[:6]))}" if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(
            f"{source} holds no state_dict (a dict of name -> tensor, or one under "
            f"{', '.join(repr(k) for k in keys[:4])} ...): it holds {what}"
        )
    return strip_prefixes(obj), found


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drops a wrapper prefix that every key carries (repeatedly: DDP around compile)."""
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return state


def read_state_dict(
    path: str | os.PathLike, keys: tuple[str, ...] = STATE_KEYS
) -> tuple[dict[str, torch.Tensor], str | None]:
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"weights file {p} does not exist" + (" (it is a folder)" if p.is_dir() else ""))
    obj = load_weights_only(p, label=f"weights file {p}", what="state_dict file", error=CheckpointError)
    return unwrap(obj, f"weights file {p}", keys)


def split_normalized(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], tuple | None]:
    """A NormalizedModel's state_dict ('normalize.mean', 'normalize.std', 'net.*') as the
    network's own state_dict and its (mean, std); any other state_dict unchanged, None."""
    if not all(k in state for k in NORMALIZE_KEYS):
        return state, None
    mean, std = (tuple(float(v) for v in state[k].flatten()) for k in NORMALIZE_KEYS)
    net = {k.removeprefix("net."): v for k, v in state.items() if k not in NORMALIZE_KEYS}
    return net, (mean, std)

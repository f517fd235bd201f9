"""Reading a file written by torch.save without running code from it, every failure
told in one line of our own words. torch's own texts advise re-running with
weights_only=False, which would run whatever code the file holds, and they run to a
paragraph; they are never shown."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from .errors import RobustError

# what torch's weights-only unpickler says when a file references code (a class or a call)
_CODE_MARKERS = ("GLOBAL", "allowlist", "safe_globals", "reduce")


def load_weights_only(
    path: str | os.PathLike,
    *,
    label: str,
    what: str,
    error: type[RobustError] = RobustError,
    map_location: str | torch.device = "cpu",
) -> Any:
    """``torch.load(path, weights_only=True)``. ``label`` names the file in messages
    (e.g. "weights file x.pth"), ``what`` is what it should have been (e.g.
    "checkpoint"); failures raise ``error`` with one line."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable, foreign or unsafe file gets one line
        raise error(explain(Path(path), e, label=label, what=what)) from None


def explain(path: Path, e: BaseException, *, label: str, what: str) -> str:
    """Why torch could not read ``path``, judged from the file's first bytes and the
    error: empty, text, code inside, or damaged."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as err:
        return f"cannot read {label} ({err.strerror or err})"
    if not head:
        return f"{label} is corrupt or truncated: it is empty (0 bytes)"
    # deferred: import cycle (torchfile -> foreign -> checkpoint -> torchfile)
    from .foreign.code import TRUST_FLAG, is_torchscript

    if is_torchscript(path):
        return (
            f"{label} is a TorchScript archive, whose code runs when it is loaded; to evaluate it, pass it to "
            f"robust eval with {TRUST_FLAG} (and --dataset NAME)"
        )
    if _looks_like_text(head):
        first = head.decode("utf-8", "replace").strip().splitlines()[0][:40]
        return f"{label} is not a {what}: it holds text (it starts {first!r}), not the data torch.save writes"
    detail = str(e).split("WeightsUnpickler error:", 1)[-1]
    if isinstance(e, pickle.UnpicklingError) and any(k in detail for k in _CODE_MARKERS):
        return (
            f"refused {label}: it holds Python objects beyond tensors and plain values (more than a "
            "weights_only=True load reads), which could run code when loaded; only load it yourself if you "
            "trust its source"
        )
    return f"{label} is corrupt or truncated ({_reason(e)})"


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head or head[:1] == b"\x80":  # pickles from torch.save start with \x80 (protocol >= 2)
        return False
    chars = head.decode("utf-8", "replace")
    readable = sum(c.isprintable() or c in "\t\n\r" for c in chars)
    return readable >= 0.95 * len(chars)


def _reason(e: BaseException) -> str:
    """A short cause from torch's text, or a plain one where that text is advice."""
    text = str(e).split("WeightsUnpickler error:", 1)[-1]
    text = re.sub(r"\x1b\[[0-9;]*m", "", text).strip()
    line = text.splitlines()[0].strip() if text else ""
    if not line or "weights_only" in line or isinstance(e, KeyError):
        return "not data that torch.save writes"
    return line[:200]

"""The decode cache: JPEG/PNG sources are decoded once into a torch file of uint8
tensors, keyed by the source's content, the image size and the format version.

Files are written atomically and read with ``torch.load(weights_only=True)``, so a
cache file can never run code; an unreadable one is decoded again and replaced."""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from ..fileio import atomic_path

# bump when the decoded layout or the decoding itself changes: old entries are then ignored
FORMAT_VERSION = 1


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """cache_dir, else $ROBUST_CACHE, else ~/.cache/robustbench_local."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("ROBUST_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "robustbench_local"


def cache_file(source: Path, fingerprint: str, image_size: int | None, cache_dir=None) -> Path:
    key = hashlib.sha256(f"v{FORMAT_VERSION}|{fingerprint}|size={image_size}".encode()).hexdigest()[:24]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", source.name) or "data"
    return cache_root(cache_dir) / f"{stem}-{key}.pt"


def _valid(entry: object) -> bool:
    if not isinstance(entry, dict) or entry.get("format_version") != FORMAT_VERSION:
        return False
    tensors = ("train_x", "train_y", "test_x", "test_y", "mean", "std")
    return all(isinstance(entry.get(k), torch.Tensor) for k in tensors) and isinstance(entry.get("classes"), list)


def load_or_build(path: Path, build: Callable[[], dict], describe: str) -> dict:
    """The cached dict at ``path``, or ``build()`` saved there first. ``describe`` names
    the source in the one-line note printed while decoding (it happens once)."""
    if path.is_file():
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            if _valid(entry):
                return entry
        except Exception:  # truncated or foreign file: rebuild it below
            pass
    print(f"decoding {describe} once into the cache {path} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    entry = build()
    entry["format_version"] = FORMAT_VERSION
    entry["decode_seconds"] = time.perf_counter() - t0
    try:
        with atomic_path(path) as tmp:
            torch.save(entry, tmp)
    except OSError as e:  # a read-only cache still gives the data, just slower next time
        warnings.warn(f"could not write the data cache {path}: {e}", stacklevel=2)
    return entry

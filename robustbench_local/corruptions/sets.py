"""Corrupted copies of a split's images: generated locally (seeded per image and per
corruption, cached as uint8 in the data cache), or read from the real CIFAR-10-C /
CIFAR-100-C ``.npy`` files when a user has them.

Generation: image i of the split, corruption c at severity s and seed k draws its
random numbers from ``np.random.default_rng([k, c, s, index_i])``, index_i being the
image's position in the original split. So an image's corrupted version never depends
on which other images were asked for, the same data and seed give byte-identical sets,
and a cache built for 1,000 points is extended, not rebuilt, for 10,000. Results are
rounded to uint8 as CIFAR-10-C stores them.

Real files: RobustBench's layout, ``<data root>/CIFAR-10-C/<corruption>.npy`` (50,000 x
32 x 32 x 3 uint8, severities 1-5 stacked in blocks of 10,000 test images: test image
i at severity s is row (s - 1) * 10,000 + i) and ``labels.npy``, found through the data
search path (--data-root, $ROBUST_DATA, ./data, ../shared/data)."""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.cache import cache_root
from ..data.search import data_search_roots
from ..errors import RobustError
from ..fileio import atomic_path
from .functions import NAMES, corrupt

# bump when a corruption's output changes, so that old caches are not mixed with new images
GENERATOR_VERSION = 1
REAL_FOLDERS = {"cifar10": "CIFAR-10-C", "cifar100": "CIFAR-100-C"}
REAL_TEST_SIZE = 10_000
_CHECK_WEIGHTS = torch.randint(1, 2**20, (64 * 64 * 3,), generator=torch.Generator().manual_seed(0))


def image_checks(x: torch.Tensor) -> torch.Tensor:
    """A cheap per-image checksum of uint8 images (N, C, H, W): a cached corrupted image
    is reused only if the clean image it came from is still the same."""
    flat = x.reshape(len(x), -1).long()
    w = (
        _CHECK_WEIGHTS[: flat.shape[1]]
        if flat.shape[1] <= len(_CHECK_WEIGHTS)
        else torch.randint(1, 2**20, (flat.shape[1],), generator=torch.Generator().manual_seed(0))
    )
    return (flat * w).sum(1)


def corrupt_images(x: torch.Tensor, index: torch.Tensor, name: str, severity: int, seed: int) -> torch.Tensor:
    """uint8 (N, C, H, W) clean images -> uint8 corrupted ones, each seeded by its index."""
    c = NAMES.index(name)
    out = np.empty((len(x), x.shape[2], x.shape[3], x.shape[1]), dtype=np.uint8)
    images = x.permute(0, 2, 3, 1).cpu().numpy()
    for i, (img, idx) in enumerate(zip(images, index.tolist())):
        rng = np.random.default_rng([seed, c, severity, int(idx)])
        y = corrupt(img.astype(np.float32) / 255.0, name, severity, rng)
        out[i] = np.clip(np.rint(y * 255.0), 0, 255).astype(np.uint8)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


@dataclass(frozen=True)
class SetKey:
    """What a cached corrupted set depends on, besides the images themselves."""

    dataset: str  # DatasetInfo.name
    source: str  # DatasetInfo.source
    shape: tuple[int, int, int]
    split: str
    name: str
    severity: int
    seed: int

    def path(self, cache_dir=None) -> Path:
        digest = hashlib.sha256(
            repr((self.dataset, self.source, self.shape, self.split, GENERATOR_VERSION)).encode()
        ).hexdigest()[:12]
        stem = self.dataset.split(":")[0].replace("/", "-")
        return (
            cache_root(cache_dir)
            / "corruptions"
            / f"{stem}-{self.split}-{digest}"
            / f"{self.name}-s{self.severity}-seed{self.seed}.pt"
        )


def _read_cache(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torn or foreign: generate again and replace it
        return None
    ok = isinstance(entry, dict) and all(isinstance(entry.get(k), torch.Tensor) for k in ("index", "x", "check"))
    return entry if ok and entry.get("version") == GENERATOR_VERSION else None


def _write_cache(path: Path, entry: dict) -> None:
    try:
        with atomic_path(path) as tmp:
            torch.save(entry, tmp)
    except OSError as e:  # a read-only cache still gives the images, generated again next time
        print(f"warning: could not write the corruption cache {path}: {e}", file=sys.stderr)


def generated_set(
    key: SetKey,
    x: torch.Tensor,
    index: torch.Tensor,
    *,
    cache_dir=None,
    on_generated: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, float]:
    """The corrupted images of ``x`` (uint8, positions ``index`` in the original split),
    from the cache where it has them, generated (and added to the cache) where not.
    Returns the images and the seconds spent generating."""
    path = key.path(cache_dir)
    checks = image_checks(x)
    entry = _read_cache(path) or {
        "index": torch.zeros(0, dtype=torch.int64),
        "x": torch.zeros((0, *x.shape[1:]), dtype=torch.uint8),
        "check": torch.zeros(0, dtype=torch.int64),
    }
    where = {int(i): j for j, i in enumerate(entry["index"].tolist())}
    pos = torch.tensor([where.get(int(i), -1) for i in index.tolist()], dtype=torch.int64)
    have = pos >= 0
    if have.any():  # a clean image changed under the cache: regenerate it
        have[have.clone()] = entry["check"][pos[have]] == checks[have]
    out = torch.empty_like(x, device="cpu")
    out[have] = entry["x"][pos[have]]
    missing = (~have).nonzero().flatten()
    seconds = 0.0
    if len(missing):
        t0 = time.perf_counter()
        made = []
        for chunk in missing.split(256):
            made.append(corrupt_images(x[chunk].cpu(), index[chunk].cpu(), key.name, key.severity, key.seed))
            if on_generated is not None:
                on_generated(len(chunk))
        fresh = torch.cat(made)
        seconds = time.perf_counter() - t0
        out[missing] = fresh
        keep = ~torch.isin(entry["index"], index[missing].cpu())
        entry = {
            "version": GENERATOR_VERSION,
            "index": torch.cat([entry["index"][keep], index[missing].cpu()]),
            "x": torch.cat([entry["x"][keep], fresh]),
            "check": torch.cat([entry["check"][keep], checks[missing]]),
        }
        _write_cache(path, entry)
    return out, seconds


# ----------------------------------------------------------------------------- real CIFAR-10-C files
def find_real_folder(dataset: str, data_root=None) -> Path | None:
    """The CIFAR-10-C / CIFAR-100-C folder for ``dataset`` on the data search path, if any
    (it must hold labels.npy)."""
    folder = REAL_FOLDERS.get(dataset)
    if folder is None:
        return None
    for root in data_search_roots(data_root):
        cand = root / folder
        if (cand / "labels.npy").is_file():
            return cand
    return None


def real_set(folder: Path, name: str, severity: int, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (uint8 N, C, H, W) and labels of the real corrupted test set at the test
    positions ``index``."""
    path = folder / f"{name}.npy"
    if not path.is_file():
        raise RobustError(
            f"{path} is missing: the {folder.name} folder needs one .npy file per corruption "
            "(RobustBench's layout); remove the folder or use --corruption-source generated"
        )
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    labels = np.load(folder / "labels.npy", allow_pickle=False)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8 or len(arr) % 5:
        raise RobustError(
            f"{path} holds {arr.dtype} {tuple(arr.shape)}; CIFAR-10-C files hold uint8 "
            f"(5 x N, H, W, 3): severities 1-5 in blocks of N test images (N = {REAL_TEST_SIZE})"
        )
    block = len(arr) // 5
    if len(labels) != len(arr):
        raise RobustError(f"{folder / 'labels.npy'} holds {len(labels)} labels for the {len(arr)} images of {path}")
    idx = index.cpu().numpy()
    if len(idx) and idx.max() >= block:
        raise RobustError(
            f"{path} holds {block} test images per severity; test position {int(idx.max())} is past its end"
        )
    rows = (severity - 1) * block + idx
    x = torch.from_numpy(np.ascontiguousarray(arr[rows])).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(labels[rows].astype(np.int64))
    return x, y

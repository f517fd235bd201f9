"""The DATASETS registry of loaders: what a loader gets (LoadRequest) and returns
(RawData), and what every loader shares (channel statistics, resizing, downloads, the
decoded-image cache, the not-found message)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import DataNotFound, RobustError
from ..registry import Registry
from . import formats
from .cache import cache_file, load_or_build
from .search import download_into, download_root


@dataclass(frozen=True)
class LoadRequest:
    """What a registry loader gets: where to look and how to read."""

    roots: list[Path]
    data_root: str | None
    image_size: int | None
    download: bool
    cache_dir: str | None
    arg: str | None  # the PATH of 'imagefolder:PATH'


@dataclass
class RawData:
    """What a registry loader returns: both original splits, before statistics and the val split."""

    classes: list[str]
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str
    mean: tuple[float, ...] | None = None  # filled from the decode cache when it has them
    std: tuple[float, ...] | None = None


DATASETS: Registry[Callable[[LoadRequest], RawData]] = Registry("dataset")


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std of uint8 images, as pixels in [0,1]. Computed
    exactly from a 256-bin histogram per channel (fast, and independent of batching)."""
    if len(x) == 0:
        raise RobustError("cannot compute channel statistics of an empty train split")
    values = torch.arange(256, dtype=torch.float64)
    means, stds = [], []
    for c in range(x.shape[1]):
        counts = torch.bincount(x[:, c].reshape(-1), minlength=256).to(torch.float64)
        total = counts.sum()
        mean = (counts * values).sum() / total
        var = (counts * (values - mean).square()).sum() / total
        means.append(float(mean) / 255)
        stds.append(float(var.sqrt()) / 255)
    return tuple(means), tuple(stds)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    from torchvision.transforms.v2.functional import resize  # deferred: start-up time (torchvision)

    out = [resize(chunk, [size, size], antialias=True) for chunk in x.split(4096)]
    return torch.cat(out).contiguous() if out else x.new_empty((0, x.shape[1], size, size))


def resized(raw: RawData, image_size: int | None) -> RawData:
    """Resizes tensor-format datasets (pickle, IDX) when an image size was asked for;
    decoded image trees are resized by PIL at decode time already."""
    if image_size is not None and raw.train_x.shape[-1] != image_size:
        raw.train_x = _resize(raw.train_x, image_size)
        raw.test_x = _resize(raw.test_x, image_size)
        raw.mean = raw.std = None
    return raw


def not_found(name: str, looked_for: list[str], req: LoadRequest, download_note: str, how: str) -> DataNotFound:
    places = ", ".join(str(r) for r in req.roots)
    return DataNotFound(f"{name} not found: looked for {', '.join(looked_for)} in {places}; {download_note}; {how}")


def try_download(what: str, req: LoadRequest, folder: str, fetch: Callable[[Path], None]) -> tuple[Path | None, str]:
    """(saved folder, '') on success, or (None, a note on why not) for the error message."""
    if not req.download:
        return None, "download not tried (downloading was turned off)"
    target = download_root(req.data_root)
    try:
        return download_into(target, folder, fetch), ""
    except Exception as e:  # no network, refused, bad checksum: all end in one clear line
        reason = str(e).replace("\n", " ").strip() or type(e).__name__
        return None, f"download of {what} into {target} failed ({reason})"


def load_image_tree(source: Path, image_size: int | None, cache_dir: str | None) -> RawData:
    """Decodes an ImageFolder source once into the cache; later loads read the cache."""
    path = cache_file(source, formats.source_fingerprint(source), image_size, cache_dir)

    def build() -> dict:
        tree = formats.decode_image_tree(source, image_size)
        mean, std = channel_stats(tree.train_x)
        return {
            "classes": list(tree.classes),
            "layout": tree.layout,
            "source": str(source),
            "train_x": tree.train_x,
            "train_y": tree.train_y,
            "test_x": tree.test_x,
            "test_y": tree.test_y,
            "mean": torch.tensor(mean, dtype=torch.float64),
            "std": torch.tensor(std, dtype=torch.float64),
        }

    entry = load_or_build(path, build, str(source))
    return RawData(
        classes=list(entry["classes"]),
        train_x=entry["train_x"],
        train_y=entry["train_y"],
        test_x=entry["test_x"],
        test_y=entry["test_y"],
        source=str(source),
        mean=tuple(entry["mean"].tolist()),
        std=tuple(entry["std"].tolist()),
    )


def require_files(folder: Path, names: list[str]) -> None:
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise RobustError(f"{folder} is incomplete: missing {', '.join(missing)}; remove it or complete it")

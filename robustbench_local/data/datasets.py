"""The dataset registry and ``load_dataset``: every dataset loads to uint8 tensors in
(N, C, H, W) plus a DatasetInfo (classes, per-channel mean/std, input shape, source).

A registry entry is a loader callable ``fn(request) -> RawData`` that finds the data
in the search roots (or downloads it) and reads train and test. ``load_dataset`` then
computes the channel statistics on the whole original train split and carves a
deterministic validation split out of train; the test split is never touched.

The pieces: splits.py (DatasetInfo, Split, DatasetBundle), sources.py (the registry,
LoadRequest, RawData and what every loader shares), and one module per dataset family
(cifar.py, fashion_mnist.py, imagefolder.py), imported here for their registrations."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import RobustError
from ..values import ValueProblem
from . import cifar, fashion_mnist, imagefolder  # noqa: F401  each registers its datasets in DATASETS
from .search import data_search_roots
from .sources import DATASETS, LoadRequest, channel_stats
from .splits import DatasetBundle, DatasetInfo, Split, carve_val

DATA = ("data",)  # the key paths of load_dataset's value errors: data.image_size (specs.DataSpec)


def dataset_names() -> list[str]:
    """The registry's names as a user gives them: a dataset that is not built in takes
    a path (imagefolder:PATH)."""
    return [n if DATASETS.meta(n).get("builtin") else f"{n}:PATH" for n in DATASETS.names()]


def _parse_name(name: str) -> tuple[str, str | None]:
    key, sep, arg = name.partition(":")
    key = key.strip().lower()
    if key not in DATASETS:
        raise RobustError(f"unknown dataset '{name}'; valid datasets: {', '.join(dataset_names())}")
    if DATASETS.meta(key).get("builtin") and sep:
        raise ValueProblem(DATA + ("dataset",), f"'{key}' takes no ':PATH'; say where it is with data.data_root")
    return key, (arg if sep else None)


def _check_image_size(image_size: int | None) -> None:
    if image_size is not None and image_size < 1:
        raise ValueProblem(DATA + ("image_size",), f"must be a positive number of pixels, got {image_size}")


def load_dataset(
    name: str,
    *,
    data_root: str | None = None,
    image_size: int | None = None,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    download: bool = True,
    cache_dir: str | None = None,
) -> DatasetBundle:
    """Loads a dataset by registry name ('cifar10', 'cifar100', 'fashion-mnist',
    'imagefolder:PATH') into uint8 train/val/test splits and its DatasetInfo.

    mean/std are computed on the whole original train split, before val is carved out
    (so they do not depend on split_seed). val is ``val_fraction`` of train, chosen by
    ``split_seed``; val_fraction=0 leaves it empty. test is the original test split."""
    key, arg = _parse_name(name)
    _check_image_size(image_size)
    if not (0.0 <= val_fraction < 1.0) or math.isnan(val_fraction):
        raise RobustError(f"the validation fraction must be in [0, 1), got {val_fraction}")
    roots = data_search_roots(data_root)
    req = LoadRequest(
        roots,
        None if data_root is None else str(data_root),
        image_size,
        download,
        None if cache_dir is None else str(cache_dir),
        arg,
    )
    raw = DATASETS.get(key)(req)
    if len(raw.train_y) == 0:
        raise RobustError(f"{name} at {raw.source} has no training examples")
    if raw.mean is None or raw.std is None:
        raw.mean, raw.std = channel_stats(raw.train_x)
    full_name = f"imagefolder:{raw.source}" if key == "imagefolder" else key
    info = DatasetInfo(
        name=full_name,
        classes=tuple(raw.classes),
        mean=tuple(float(m) for m in raw.mean),
        std=tuple(float(s) for s in raw.std),
        input_shape=tuple(int(d) for d in raw.train_x.shape[1:]),  # type: ignore[arg-type]
        source=raw.source,
    )
    train, val = carve_val(raw.train_x, raw.train_y, val_fraction, split_seed)
    test = Split(raw.test_x.contiguous(), raw.test_y, torch.arange(len(raw.test_y)), "test")
    return DatasetBundle(info, train, val, test)


def describe_datasets(
    data_root: str | None = None, names: list[str] | None = None, image_size: int | None = None
) -> list[dict]:
    """One dict per dataset for `robust data`: where it was found, split sizes and classes;
    a dataset that is absent gives found=False and the searched places, never an exception.
    ``names`` defaults to every built-in dataset; nothing is downloaded."""
    if names is None:
        names = [n for n in DATASETS.names() if DATASETS.meta(n).get("builtin")]
    for name in names:
        _parse_name(name)  # an unknown name is a usage error, not an absent dataset
    _check_image_size(image_size)  # and so is a bad size, said once rather than per dataset
    out = []
    for name in names:
        row: dict[str, Any] = {"name": name, "found": False, "source": "not found"}
        try:
            b = load_dataset(name, data_root=data_root, image_size=image_size, download=False)
        except RobustError as e:
            row["detail"] = str(e)
        else:
            row.update(
                name=b.info.name,
                found=True,
                source=b.info.source,
                train=len(b.train),
                val=len(b.val),
                test=len(b.test),
                num_classes=b.info.num_classes,
                classes=list(b.info.classes),
                input_shape=list(b.info.input_shape),
                mean=list(b.info.mean),
                std=list(b.info.std),
            )
        out.append(row)
    return out

"""Datasets as uint8 tensors plus a DatasetInfo, a device-resident batch loader, and
batched on-device augmentation.

    bundle = load_dataset("cifar10")                  # train / val / test Splits + info
    loader = TensorLoader(bundle.train, 128, device=dev, shuffle=True,
                          augment=build_augment("basic", bundle.info))
"""

from .augment import (
    AUGMENT_POLICIES,
    build_augment,
    color_jitter,
    cutout,
    default_augment,
    hflip,
    random_crop,
)
from .cache import cache_root
from .datasets import describe_datasets, load_dataset
from .loader import TensorLoader
from .search import data_search_roots
from .sources import DATASETS, channel_stats
from .splits import DatasetBundle, DatasetInfo, Split

__all__ = [
    "AUGMENT_POLICIES",
    "DATASETS",
    "DatasetBundle",
    "DatasetInfo",
    "Split",
    "TensorLoader",
    "build_augment",
    "cache_root",
    "channel_stats",
    "color_jitter",
    "cutout",
    "data_search_roots",
    "default_augment",
    "describe_datasets",
    "hflip",
    "load_dataset",
    "random_crop",
]

"""What load_dataset returns: the DatasetInfo, uint8 Splits with their original positions,
the DatasetBundle of train, val and test, and how val is carved out of train."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import RobustError


@dataclass(frozen=True)
class DatasetInfo:
    name: str  # 'cifar10', 'cifar100', 'fashion-mnist', 'imagefolder:/abs/path'
    classes: tuple[str, ...]  # class names in label order
    mean: tuple[float, ...]  # per channel, over the whole original train split, pixels in [0,1]
    std: tuple[float, ...]  # population std per channel, same pixels
    input_shape: tuple[int, int, int]  # (C, H, W)
    source: str  # path the data was read from

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "classes": list(self.classes),
            "num_classes": self.num_classes,
            "mean": [float(m) for m in self.mean],
            "std": [float(s) for s in self.std],
            "input_shape": list(self.input_shape),
            "source": self.source,
        }


@dataclass
class Split:
    x: torch.Tensor  # uint8 (N, C, H, W), contiguous
    y: torch.Tensor  # int64 (N,)
    index: torch.Tensor  # int64 (N,): position of each example in the original train or test split
    name: str  # 'train' | 'val' | 'test'

    def __post_init__(self) -> None:
        if self.x.dtype != torch.uint8 or self.x.dim() != 4:
            raise ValueError(f"Split.x must be uint8 (N, C, H, W), got {self.x.dtype} {tuple(self.x.shape)}")
        if not (len(self.x) == len(self.y) == len(self.index)):
            raise ValueError("Split.x, y and index must have the same length")

    def __len__(self) -> int:
        return len(self.y)

    def take(self, idx: torch.Tensor) -> Split:
        idx = torch.as_tensor(idx)
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        idx = idx.to(device=self.x.device, dtype=torch.int64)
        return Split(self.x[idx].contiguous(), self.y[idx], self.index[idx], self.name)

    def subset(self, n: int, seed: int = 0) -> Split:
        """The first n of a seeded permutation: the same n and seed always pick the same examples."""
        if n < 1:
            raise RobustError(f"a subset needs at least 1 example, got {n}")
        if n > len(self):
            raise RobustError(f"subset of {n} asked for, but the {self.name} split has only {len(self)} examples")
        perm = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        return self.take(perm[:n])


@dataclass
class DatasetBundle:
    info: DatasetInfo
    train: Split
    val: Split
    test: Split

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise RobustError(f"unknown split '{name}'; valid splits: train, val, test")
        return getattr(self, name)


def carve_val(x: torch.Tensor, y: torch.Tensor, val_fraction: float, seed: int) -> tuple[Split, Split]:
    """Splits train into train and val by a seeded permutation; both keep original order
    and their positions in the original train split."""
    n = len(y)
    n_val = int(round(val_fraction * n))
    if val_fraction > 0 and n_val == 0 and n >= 2:
        n_val = 1
    n_val = min(n_val, max(n - 1, 0))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, _ = perm[:n_val].sort()
    train_idx, _ = perm[n_val:].sort()
    train = Split(x[train_idx].contiguous(), y[train_idx], train_idx, "train")
    val = Split(x[val_idx].contiguous(), y[val_idx], val_idx, "val")
    return train, val

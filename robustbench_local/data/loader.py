"""The training loader: the whole split lives on the device as uint8, and a batch is a
slice of a random permutation, turned into float and augmented on the device. No
worker processes and no per-image PIL work (airbench's recipe)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from ..errors import RobustError
from .splits import Split


class TensorLoader:
    """Yields (x float32 in [0,1] on device (B, C, H, W), y int64 on device).

    The permutation is drawn with ``torch.randperm`` from the global CPU generator and the
    augmentation uses the global generator of the device, so reseeding the global RNG at an
    epoch start (as the trainer does) repeats the epoch bit for bit.

    With world_size > 1 (DDP) every rank draws the same permutation and takes
    ``perm[rank::world_size]``, cut to ``len(split) // world_size`` so all ranks run the same
    number of batches; the last ``len(split) % world_size`` examples of the permutation (a
    different few each shuffled epoch) are skipped that epoch."""

    def __init__(
        self,
        split: Split,
        batch_size: int,
        *,
        device,
        shuffle: bool,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
    ):
        if batch_size < 1:
            raise RobustError(f"batch size must be at least 1, got {batch_size}")
        if world_size < 1 or not (0 <= rank < world_size):
            raise RobustError(f"rank {rank} is not valid for world size {world_size}")
        self.device = torch.device(device)
        self.x = split.x.to(self.device)  # once, as uint8: a quarter of the float32 memory
        self.y = split.y.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.channels_last = channels_last
        self.num_examples = len(split) // world_size if world_size > 1 else len(split)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_examples // self.batch_size
        return -(-self.num_examples // self.batch_size)

    def _order(self) -> torch.Tensor:
        n = len(self.y)
        perm = torch.randperm(n) if self.shuffle else torch.arange(n)
        if self.world_size > 1:
            perm = perm[self.rank :: self.world_size][: self.num_examples]
        return perm.to(self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._order()
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = self.x[idx].float().div_(255)
            if self.augment is not None:
                x = self.augment(x)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.y[idx]

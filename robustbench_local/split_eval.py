"""evaluate_split: a model's loss, correct count and accuracy on one data split, and how
often each class is predicted and labelled; sharded over the ranks under torchrun."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from . import distributed
from .data import TensorLoader
from .runtime import module_mode


@torch.no_grad()
def evaluate_split(
    model: nn.Module,
    split,
    device: torch.device,
    *,
    batch_size: int = 512,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    channels_last: bool = False,
    sharded: bool = False,
    progress=None,
    num_classes: int | None = None,
) -> dict:
    """Float32 loss (if a criterion is given), correct count and accuracy on a split,
    model in eval mode (restored afterwards); with ``num_classes`` also how often each
    class is predicted and labelled (pred_counts, label_counts: is the model
    degenerate?). ``sharded``: under torchrun each rank evaluates a contiguous share
    and the sums are all-reduced (every rank returns the whole split's numbers).
    ``progress``: a progress.Task advanced by each batch."""
    n = len(split)
    if sharded and distributed.world_size() > 1:
        part = distributed.my_slice(n)
        split = split.take(torch.arange(part.start, part.stop))
    if progress is not None:
        progress.update(total=len(split))  # this rank's share
    sums = torch.zeros(2, device=device, dtype=torch.float64)  # loss sum, correct count
    counts = torch.zeros(2, num_classes or 0, device=device, dtype=torch.int64)  # predicted, labelled per class
    if len(split):
        with module_mode(model, train=False):
            for x, y in TensorLoader(split, batch_size, device=device, shuffle=False, channels_last=channels_last):
                logits = model(x)
                sums[1] += (logits.argmax(1) == y).sum()
                if num_classes:
                    counts[0] += torch.bincount(logits.argmax(1), minlength=num_classes)[:num_classes]
                    counts[1] += torch.bincount(y, minlength=num_classes)[:num_classes]
                if criterion is not None:
                    sums[0] += criterion(logits, y).double().sum()
                if progress is not None:
                    progress.advance(len(y))
    if sharded:
        distributed.all_reduce_sum(sums)
        if num_classes:
            distributed.all_reduce_sum(counts)
    loss_sum, k = float(sums[0]), int(sums[1])
    out = {
        "n": n,
        "correct": k,
        "acc": k / n if n else float("nan"),
        "loss": loss_sum / n if n and criterion is not None else float("nan"),
    }
    if num_classes:
        out.update(pred_counts=counts[0].tolist(), label_counts=counts[1].tolist())
    return out

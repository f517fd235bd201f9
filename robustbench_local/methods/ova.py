"""One-vs-all training (the seed's OVA loss): one sigmoid per class,

    loss = -log p_y - sum_{i != y} log(1 - p_i),   p_i = sigmoid(z_i).

With log sigmoid(z) = logsigmoid(z) and log(1 - sigmoid(z)) = logsigmoid(-z) the
loss is -(logsigmoid(z_y) + sum_{i != y} logsigmoid(-z_i)), finite for any logits
without epsilon clamps. Predictions are the argmax of the logits, as before."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import METHODS, TrainMethod


def ova_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example OVA loss, float32 even under autocast."""
    z = logits.float()
    is_target = F.one_hot(y, z.shape[1]).bool()
    # pick logsigmoid(z) for the true class and logsigmoid(-z) elsewhere, rather than
    # subtracting the true class's term from a sum (which loses precision at large z)
    return -torch.where(is_target, F.logsigmoid(z), F.logsigmoid(-z)).sum(dim=1)


@METHODS.register("ova", summary="one-vs-all sigmoid loss of the seed")
class OneVsAll(TrainMethod):
    name = "ova"

    def __init__(self):
        pass

    def criterion(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ova_loss(logits, y)

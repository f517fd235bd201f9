"""Standard training: cross-entropy on clean inputs, with optional label smoothing."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import METHODS, TrainMethod, check_label_smoothing


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-example cross-entropy, computed in float32 even under autocast."""
    return F.cross_entropy(logits.float(), y, reduction="none", label_smoothing=label_smoothing)


@METHODS.register("standard", summary="cross-entropy (--label-smoothing)")
class Standard(TrainMethod):
    name = "standard"

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = check_label_smoothing(label_smoothing)

    def criterion(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return cross_entropy(logits, y, self.label_smoothing)

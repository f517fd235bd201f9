"""MixUp (Zhang et al. 2018): train on convex combinations of image pairs,
x = lam * x_i + (1 - lam) * x_j with lam ~ Beta(alpha, alpha), and the same
combination of their losses. Pairs come from a random permutation of the batch."""

from __future__ import annotations

import torch

from .base import METHODS, Batch, TrainMethod, check_alpha, check_label_smoothing, sample_beta
from .standard import cross_entropy


@METHODS.register("mixup", summary="MixUp of image pairs (--alpha, --label-smoothing)")
class MixUp(TrainMethod):
    name = "mixup"

    def __init__(self, alpha: float = 1.0, label_smoothing: float = 0.0):
        self.alpha = check_alpha(alpha)
        self.label_smoothing = check_label_smoothing(label_smoothing)

    def prepare(self, x: torch.Tensor, y: torch.Tensor, lam: float | None = None) -> Batch:
        """Mix the batch with a permutation of itself; ``lam`` fixes the weight
        instead of drawing it."""
        lam = sample_beta(self.alpha) if lam is None else float(lam)
        perm = torch.randperm(x.shape[0], device=x.device)
        x_mix = x.mul(lam).add_(x[perm], alpha=1.0 - lam)
        return Batch(x_mix, y, y[perm], lam)

    def criterion(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return cross_entropy(logits, y, self.label_smoothing)

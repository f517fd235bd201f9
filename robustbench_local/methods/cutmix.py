"""CutMix (Yun et al. 2019): paste a random box from a partner image, and weigh
the partner's label by the box's share of the image. lam ~ Beta(alpha, alpha)
sets the box size, and after clipping the box to the image lam is corrected to
1 - box area / image area, so the label weights match the pixels exactly. Each
batch is mixed with probability ``cutmix_prob`` (else trained as is)."""

from __future__ import annotations

import math

import torch

from ..values import number
from .base import METHODS, Batch, TrainMethod, check_alpha, check_label_smoothing, method_key, sample_beta
from .standard import cross_entropy


def random_box(height: int, width: int, lam: float) -> tuple[int, int, int, int]:
    """A box (top, bottom, left, right) covering about 1 - lam of the image, centred
    uniformly at random (global torch CPU generator) and clipped to the image."""
    r = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * r), int(width * r)
    cy = int(torch.randint(height, ()))
    cx = int(torch.randint(width, ()))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return top, bottom, left, right


@METHODS.register("cutmix", summary="CutMix boxes from image pairs (--alpha, --cutmix-prob, --label-smoothing)")
class CutMix(TrainMethod):
    name = "cutmix"

    def __init__(self, alpha: float = 1.0, cutmix_prob: float = 0.5, label_smoothing: float = 0.0):
        self.alpha = check_alpha(alpha)
        self.cutmix_prob = number(method_key("cutmix_prob"), cutmix_prob, low=0.0, high=1.0)
        self.label_smoothing = check_label_smoothing(label_smoothing)

    def prepare(self, x: torch.Tensor, y: torch.Tensor, lam: float | None = None) -> Batch:
        """``lam`` fixes the drawn weight (and forces mixing); the returned Batch's lam
        is the area-corrected one."""
        if lam is None:
            if float(torch.rand(())) >= self.cutmix_prob:
                return Batch(x, y)
            lam = sample_beta(self.alpha)
        height, width = x.shape[-2:]
        top, bottom, left, right = random_box(height, width, float(lam))
        perm = torch.randperm(x.shape[0], device=x.device)
        x_mix = x.clone()
        x_mix[..., top:bottom, left:right] = x[perm][..., top:bottom, left:right]
        lam = 1.0 - (bottom - top) * (right - left) / (height * width)
        return Batch(x_mix, y, y[perm], lam)

    def criterion(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return cross_entropy(logits, y, self.label_smoothing)

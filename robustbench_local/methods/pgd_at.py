"""PGD adversarial training (Madry et al. 2018): train on PGD-k examples.

loss = w * L(f(x_adv)) + (1 - w) * L(f(x)), with L the base method's per-batch loss
(cross-entropy, OVA, or the MixUp/CutMix mixture: the mixed inputs are attacked with
the mixed loss, as Rice et al. 2020 do) and w = --adv-weight, default 1 (pure
adversarial loss). x_adv maximises the same loss L: k steps of size eta in the
eps-ball, from a random start, last iterate."""

from __future__ import annotations

import torch
from torch import nn

from .adv_options import steps, weight
from .adversarial import AdversarialMethod
from .base import ADV_METHODS, Batch, BatchOutput

DEFAULT_K = 10


@ADV_METHODS.register("pgd", summary="PGD-AT, Madry et al. 2018 (--eps --eta --k --adv-weight)")
class PGDAT(AdversarialMethod):
    name = "pgd"
    EXTRA = {"k": (steps(), DEFAULT_K), "adv_weight": (weight, 1.0)}

    def inner(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, float]:
        return self.attack(model, batch.x, lambda logits: self.base.batch_criterion(logits, batch), steps=self.k)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> BatchOutput:
        batch = self.base.prepare(x, y)
        x_adv, seconds = self.inner(model, batch)
        logits = model(x_adv)
        loss = self.base.batch_criterion(logits, batch).mean()
        if self.adv_weight < 1.0:
            clean = self.base.batch_criterion(model(batch.x), batch).mean()
            loss = self.adv_weight * loss + (1.0 - self.adv_weight) * clean
        return BatchOutput(loss, logits, batch.target, seconds)

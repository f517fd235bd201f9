"""Fast adversarial training, FGSM with a random start (Wong, Rice and Kolter 2020,
"Fast is better than free"): start uniformly in the eps-ball, take one signed
gradient step of eta (default 1.25 * eps), project back into the ball and onto
valid pixels, and train on the result with the base method's loss.

Cheap (one extra forward/backward per batch) but prone to catastrophic
overfitting, so the guard stops the run by default (early_stop) and best.pth is
chosen by PGD robust accuracy on validation data. Pair it with a cyclic learning
rate (schedule onecycle), as the paper does."""

from __future__ import annotations

import torch
from torch import nn

from .adversarial import AdversarialMethod
from .base import ADV_METHODS, Batch, BatchOutput


@ADV_METHODS.register("fgsm-rs", summary="FGSM from a random start, Wong et al. 2020 (--eps --eta=1.25*eps)")
class FGSMRS(AdversarialMethod):
    name = "fgsm-rs"
    STEP_RULE = "1.25*eps"
    STEPS_MUST_REACH = False  # one step from a random start: the start, not the step, spreads it over the ball
    EARLY_STOP_DEFAULT = True
    REFUSED = {"k": "it takes exactly one step (use train.adv pgd for k steps)"}

    def inner(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, float]:
        return self.attack(model, batch.x, lambda logits: self.base.batch_criterion(logits, batch), steps=1)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> BatchOutput:
        batch = self.base.prepare(x, y)
        x_adv, seconds = self.inner(model, batch)
        logits = model(x_adv)
        return BatchOutput(self.base.batch_criterion(logits, batch).mean(), logits, batch.target, seconds)

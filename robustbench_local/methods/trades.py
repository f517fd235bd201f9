"""TRADES (Zhang et al. 2019): trade clean accuracy against robustness with

    loss = L(f(x), y) + beta * KL(p(x) || p(x_adv))     (KL averaged over the batch)

where L is the base method's loss (cross-entropy; OVA or a MixUp/CutMix mixture
when combined) and p = softmax. The inner attack maximises the KL term itself:
k signed steps from x + 0.001 * N(0, 1) (pixels, as the reference code), against
the clean distribution computed once with the model in the attack's batch-norm
mode and held fixed. In the outer loss the clean distribution is not detached,
as in the reference code."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import attack_mode
from ..values import ValueProblem, number
from .adv_options import option_key, steps
from .adversarial import AdversarialMethod, sync
from .base import ADV_METHODS, Batch, BatchOutput

DEFAULT_K = 10
DEFAULT_BETA = 6.0
START_NOISE = 0.001  # pixel-space std of the Gaussian start


def kl_per_example(logits_adv: torch.Tensor, p_clean: torch.Tensor) -> torch.Tensor:
    """KL(p_clean || softmax(logits_adv)) per example, float32, >= 0."""
    return F.kl_div(F.log_softmax(logits_adv.float(), dim=1), p_clean.float(), reduction="none").sum(dim=1)


def trades_loss(
    natural: torch.Tensor, logits_clean: torch.Tensor, logits_adv: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, kl): ``natural`` is the per-example clean loss; kl = batch-mean
    KL(p_clean || p_adv); loss = mean(natural) + beta * kl."""
    kl = kl_per_example(logits_adv, F.softmax(logits_clean.float(), dim=1)).mean()
    return natural.mean() + beta * kl, kl


@ADV_METHODS.register("trades", summary="TRADES, Zhang et al. 2019 (--beta --eps --eta --k)")
class TRADES(AdversarialMethod):
    name = "trades"
    # eta default 2.5*eps/k, as PGD-AT (eps/4 at k = 10, as common TRADES reimplementations;
    # the reference code's 0.007 at eps 0.031 and k 10 is 2.26*eps/k)
    STEP_RULE = "2.5*eps/k"
    EXTRA = {
        "k": (steps(), DEFAULT_K),
        "beta": (lambda key, value: number(key, value, low=0.0), DEFAULT_BETA),
    }

    def check_combination(self, options: dict, spec) -> None:
        if not options["random_start"]:
            raise ValueProblem(
                option_key("random_start"),
                "trades needs its random start: at x itself the KL term and its gradient are "
                "zero, so the attack could not move; leave random_start on",
            )

    def inner(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, float]:
        """x_adv maximising KL(p(x) || p(x_adv)) and the seconds it took (the clean
        forward pass included)."""
        x = batch.x
        self.bind(model, x.shape[1:])
        sync(x.device)
        t0 = time.perf_counter()
        with torch.no_grad(), attack_mode(model, train_mode=self.attack_bn == "train"):
            p_clean = F.softmax(model(x).float(), dim=1)
        # drawn by shape, not randn_like: the same start whatever x's memory layout
        start = torch.randn(x.shape, device=x.device, dtype=x.dtype) * START_NOISE / self.attack_scale(x)
        x_adv, _ = self.attack(model, x, kl_per_example, (p_clean,), steps=self.k, init=start)
        return x_adv, time.perf_counter() - t0  # attack() synced at its end

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> BatchOutput:
        batch = self.base.prepare(x, y)
        x_adv, seconds = self.inner(model, batch)
        logits_clean = model(batch.x)
        logits_adv = model(x_adv)
        loss, _ = trades_loss(self.base.batch_criterion(logits_clean, batch), logits_clean, logits_adv, self.beta)
        return BatchOutput(loss, logits_adv, batch.target, seconds)

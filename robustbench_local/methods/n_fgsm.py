"""N-FGSM (de Jorge, Bibi, Volpi, Sanyal, Torr, Rogez and Dokania 2022, "Make some
noise: reliable and efficient single-step adversarial training"): start from uniform
noise of ``noise`` x eps (default 2), take one signed gradient step of eta (default
eps), and do not project back into the eps-ball; only the valid pixel range clips.

The training input may therefore lie up to (noise + 1) x eps from x. The paper finds
that the stronger noise, with no clipping of the step, keeps single-step training
clear of catastrophic overfitting at radii where FGSM-RS collapses, at FGSM-RS's
cost (one extra forward/backward per batch) rather than GradAlign's. L-inf only, as
in the paper. Robust validation (which picks best.pth) still attacks the eps-ball,
and the catastrophic-overfitting guard is on by default, as for fgsm-rs."""

from __future__ import annotations

import torch
from torch import nn

from ..attacks.base import frozen_params
from ..attacks.grad import loss_grad
from ..threat import ThreatModel
from ..values import ValueProblem, number
from .adv_options import option_key
from .base import ADV_METHODS, Batch
from .fgsm_rs import FGSMRS

DEFAULT_NOISE = 2.0  # the paper's k: noise drawn from U(-2 eps, 2 eps)


def _noise(key, value) -> float:
    return number(key, value, low=0.0)


@ADV_METHODS.register(
    "n-fgsm", summary="FGSM from noise of 2 eps, no projection, de Jorge et al. 2022 (--eps --eta=eps --noise)"
)
class NFGSM(FGSMRS):  # FGSM-RS's outer loss; its own start, step and (absent) projection
    name = "n-fgsm"
    STEP_RULE = "eps"  # the paper's alpha = eps
    STEPS_MUST_REACH = False  # one step from noise that already spreads it beyond the ball
    EARLY_STOP_DEFAULT = True
    EXTRA = {"noise": (_noise, DEFAULT_NOISE)}
    REFUSED = {
        "k": "it takes exactly one step (use train.adv pgd for k steps)",
        "random_start": "it always starts from uniform noise of train.adv_kwargs.noise x eps",
    }

    def check_combination(self, options: dict, spec) -> None:
        if options["norm"] != "linf":
            raise ValueProblem(
                option_key("norm"),
                f"adversarial method 'n-fgsm' is defined for linf only, not {options['norm']}; "
                "use fgsm-rs or pgd for l2",
            )

    def inner(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, float]:
        x = batch.x
        self.bind(model, x.shape[1:])  # the std, before the scale is read
        scale = self.attack_scale(x)  # attack space -> pixels, per channel

        def craft(threat: ThreatModel) -> torch.Tensor:
            spread = self.noise * threat.eps
            with frozen_params(model):
                x0 = (x + scale * torch.empty_like(x).uniform_(-spread, spread)).clamp(0.0, 1.0)
                _, _, grad = loss_grad(model, x0, lambda logits: self.base.batch_criterion(logits, batch))
            return (x0 + scale * threat.step * grad.sign()).clamp(0.0, 1.0)

        return self.crafted(model, x, craft)

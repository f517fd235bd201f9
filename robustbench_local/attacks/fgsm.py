"""FGSM (Goodfellow et al. 2015): one signed-gradient step of size eps; with a
random start (R+FGSM / FGSM-RS, Wong et al. 2020) it starts uniformly in the ball
and steps 1.25 eps before projecting back."""
from __future__ import annotations

import torch
from torch import nn

from ..threat import ThreatModel
from .base import AttackResult, attack_mode, check_inputs, make_ball, require_norm
from .losses import ce_loss
from .pgd import run_pgd


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    random_start: bool = False,
    step_size: float | None = None,
    std=None,
    init: torch.Tensor | None = None,
) -> AttackResult:
    check_inputs(x, y)
    require_norm("fgsm", threat.norm)
    if step_size is None:
        step_size = 1.25 * threat.eps if random_start else threat.eps
    with attack_mode(model):
        ball = make_ball(model, x, threat, std)
        x_adv, fooled = run_pgd(
            model, x, ball, steps=1, step_size=step_size, random_start=random_start,
            loss_fn=ce_loss, aux=(y,), labels=y, early_stop=False,
            init=init if random_start else None,
        )
    return AttackResult(x_adv, fooled)

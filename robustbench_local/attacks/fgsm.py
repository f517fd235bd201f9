"""FGSM (Goodfellow et al. 2015): one signed-gradient step of size eps; with a
random start (R+FGSM / FGSM-RS, Wong et al. 2020) it starts uniformly in the ball
and steps 1.25 eps before projecting back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import torch
from torch import nn

from ..threat import ThreatModel
from .base import AttackResult, attack_mode, check_inputs, make_ball, require_norm
from .losses import ce_loss
from .pgd import run_pgd
from .registry import Opt, attack


@attack(
    "fgsm",
    norms=("linf", "l2"),
    kind="white-box",
    single_step=True,
    step_rule=lambda o: "1.25*eps" if o["random_start"] else "eps",
    label=lambda o: "R+FGSM" if o["random_start"] else "FGSM",
    starts=lambda o: 1 if o["random_start"] else 0,
)
def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    random_start: Annotated[
        bool, Opt("FGSM from a uniform random start in the ball, step 1.25 eps (R+FGSM).", flag="fgsm-rs")
    ] = False,
    step_size: float | None = None,
    std=None,
    init: Sequence[torch.Tensor] | torch.Tensor | None = None,
    eot: int = 1,
) -> AttackResult:
    """Fast gradient sign method (Goodfellow et al. 2015): one step of eps, or of 1.25
    eps from a random start (Wong et al. 2020). ``init``: the random start, one tensor
    shaped like x (or a one-element list of it)."""
    if isinstance(init, (list, tuple)):
        init = init[0]
    check_inputs(x, y)
    require_norm("fgsm", threat.norm)
    if step_size is None:
        step_size = 1.25 * threat.eps if random_start else threat.eps
    with attack_mode(model):
        ball = make_ball(model, x, threat, std)
        x_adv, fooled = run_pgd(
            model,
            x,
            ball,
            steps=1,
            step_size=step_size,
            random_start=random_start,
            loss_fn=ce_loss,
            aux=(y,),
            labels=y,
            early_stop=False,
            init=init if random_start else None,
            eot=eot,
        )
    return AttackResult(x_adv, fooled)

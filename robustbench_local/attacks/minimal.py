"""What the minimal-norm attacks (CW-L2, DeepFool, FAB) share: the clean verdict they
start from, and the result they return.

Such an attack searches for the smallest perturbation that fools each point, without a
bound; the threat's eps only decides the verdict. Its result carries per point the
attack-space norm of the adversarial example found (0 for a point misclassified clean,
inf where none was found), so robust accuracy at any eps follows from one run."""

from __future__ import annotations

import torch
from torch import nn

from ..threat import Ball
from .base import AttackResult


def clean_wrong(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Points the model already misclassifies: their smallest perturbation is 0."""
    with torch.no_grad():
        return model(x).argmax(dim=1) != y


def u_box(x: torch.Tensor, ball: Ball) -> tuple[torch.Tensor, torch.Tensor]:
    """The valid pixels [0,1] as bounds on the attack-space perturbation u."""
    scale = ball.scale.to(x.dtype)
    return (0.0 - x) / scale, (1.0 - x) / scale


def minimal_result(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    ball: Ball,
    x_best: torch.Tensor,
    found: torch.Tensor,
    recheck: bool = True,
) -> AttackResult:
    """The AttackResult of a minimal-norm search. ``x_best[i]``: the smallest adversarial
    example found for point i where ``found[i]`` (x itself for a point misclassified
    clean). Norms are measured on the returned pixels, so they agree with x_adv exactly.

    ``recheck`` judges the found examples again in one batch: an iterate kept at the
    decision boundary (CW at kappa 0) can flip back under a different batch's float
    rounding, and a point is only reported fooled if its returned pixels are."""
    found = found.clone()
    if recheck and bool(found.any()):
        idx = found.nonzero().squeeze(1)
        with torch.no_grad():
            still = model(x_best[idx]).argmax(dim=1) != y[idx]
        found[idx[~still]] = False
    norms = torch.full((x.shape[0],), float("inf"), device=x.device)
    if bool(found.any()):
        norms[found] = ball.norms(x_best[found], x[found]).float()
    fooled = norms <= ball.threat.eps
    x_adv = x.detach().clone()  # clone keeps x's memory layout
    x_adv[fooled] = x_best[fooled].to(x_adv.dtype)
    return AttackResult(x_adv, fooled, norms)

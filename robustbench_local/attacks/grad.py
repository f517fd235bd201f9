"""Input gradients for every gradient attack, with Expectation over Transformation
(Athalye et al. 2018): against a randomized defence, the gradient of one forward pass
points in a random direction, so ``eot`` > 1 averages the gradient over that many
passes (the logits and losses returned are the means over the same passes)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn


def loss_grad(
    model: nn.Module,
    x: torch.Tensor,
    loss_fn: Callable[..., torch.Tensor],
    aux: Sequence[torch.Tensor] = (),
    eot: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits, per-example loss, d loss.sum() / d x), each averaged over ``eot``
    forward+backward passes. ``x`` is not modified; everything returned is detached."""
    if eot < 1:
        raise ValueError(f"eot must be >= 1, got {eot}")
    logits_sum = loss_sum = grad_sum = None
    for _ in range(eot):
        xg = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(xg)
            loss = loss_fn(logits, *aux)
            (g,) = torch.autograd.grad(loss.sum(), xg)
        if grad_sum is None:
            logits_sum, loss_sum, grad_sum = logits.detach(), loss.detach(), g
        else:
            logits_sum, loss_sum, grad_sum = logits_sum + logits.detach(), loss_sum + loss.detach(), grad_sum + g
    if eot == 1:
        return logits_sum, loss_sum, grad_sum
    return logits_sum / eot, loss_sum / eot, grad_sum / eot

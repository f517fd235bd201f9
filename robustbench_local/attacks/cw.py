"""Carlini-Wagner L2 (Carlini & Wagner 2017, "Towards Evaluating the Robustness of
Neural Networks"): the smallest L2 perturbation that fools a point, found by
minimising  ||delta||^2 + c * max(Z_y - max_{i != y} Z_i, -kappa)  with Adam over a tanh
change of variables (x_adv = (tanh(w) + 1) / 2 stays in [0,1] without clipping), and a
per-point binary search over c.

The distance is measured in attack space (pixels divided by the per-channel scale), so
normalized-space eps works as pixel-space eps does. A minimal-norm attack: the search is
unbounded and eps only decides the verdict."""

from __future__ import annotations

from typing import Annotated

import torch
from torch import nn

from ..threat import ThreatModel
from .base import attack_mode, check_inputs, make_ball, require_norm
from .grad import loss_grad
from .minimal import clean_wrong, minimal_result
from .registry import Opt, attack

ADAM_BETAS = (0.9, 0.999)  # Adam's defaults, as the paper's code uses
C_MAX = 1e10  # past this c the search gives up on a point (the paper's upper bound)


def _margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Z_y - max_{i != y} Z_i: negative once the point is misclassified."""
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return z_y - other


def _f_loss(kappa: float):
    """The paper's f_6 times the per-point constant c (c rides along as an aux tensor)."""

    def loss(logits: torch.Tensor, y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return c * _margin(logits, y).clamp_min(-kappa)

    return loss


def _to_w(x: torch.Tensor) -> torch.Tensor:
    # atanh is infinite at 0 and 1: shrink by 1e-6 as the paper's code does
    return torch.atanh((2 * x - 1) * (1 - 1e-6))


def _adam_run(model, x, y, w0, c, inv_s2, *, k, lr, kappa, eot):
    """k Adam steps on every point from w0; returns, per point, the smallest squared
    attack-space distance among iterates misclassified with margin kappa, and that iterate."""
    n = x.shape[0]
    w = w0.clone()
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    best_d2 = torch.full((n,), float("inf"), device=x.device)
    best_x = x.clone()
    loss_fn = _f_loss(kappa)
    prev = float("inf")
    b1, b2 = ADAM_BETAS
    for t in range(1, k + 1):
        x_adv = (torch.tanh(w) + 1) / 2
        diff = x_adv - x
        d2 = (diff * diff * inv_s2).flatten(1).sum(dim=1)
        logits, f, g_x = loss_grad(model, x_adv, loss_fn, (y, c), eot)
        # success as the paper's code judges it: the margin is past kappa
        ok = (_margin(logits, y) <= -kappa) & (logits.argmax(dim=1) != y) & (d2 < best_d2)
        if bool(ok.any()):
            best_d2 = torch.where(ok, d2, best_d2)
            best_x[ok] = x_adv[ok]
        # d/dx of ||(x_adv - x) / s||^2 is 2 (x_adv - x) / s^2; chain through tanh
        g_w = (g_x + 2 * diff * inv_s2) * (1 - torch.tanh(w) ** 2) / 2
        m.mul_(b1).add_(g_w, alpha=1 - b1)
        v.mul_(b2).addcmul_(g_w, g_w, value=1 - b2)
        step = lr * (1 - b2**t) ** 0.5 / (1 - b1**t)
        w = w - step * m / (v.sqrt() + 1e-8)
        # abort early (the paper's code): the total loss stopped falling
        if t % max(k // 10, 1) == 0:
            total = float((d2 + f).sum())
            if total > prev * 0.9999:
                break
            prev = total
    return best_d2, best_x


def _search(model, x, y, ball, *, k, search_steps, c0, kappa, lr, eot):
    """The binary search over c: success halves the bracket from above, failure from
    below (or multiplies c by 10 while no success bounds it)."""
    n = x.shape[0]
    inv_s2 = 1.0 / ball.scale.to(x.dtype) ** 2
    w0 = _to_w(x)
    c = torch.full((n,), c0, device=x.device, dtype=x.dtype)
    lo = torch.zeros_like(c)
    hi = torch.full_like(c, C_MAX)
    best_d2 = torch.full((n,), float("inf"), device=x.device)
    best_x = x.clone()
    for _ in range(search_steps):
        d2, xa = _adam_run(model, x, y, w0, c.view(-1), inv_s2, k=k, lr=lr, kappa=kappa, eot=eot)
        better = d2 < best_d2
        best_d2 = torch.where(better, d2, best_d2)
        best_x[better] = xa[better]
        won = torch.isfinite(d2)
        hi = torch.where(won, torch.minimum(hi, c), hi)
        lo = torch.where(won, lo, torch.maximum(lo, c))
        bounded = hi < C_MAX
        c = torch.where(bounded, (lo + hi) / 2, c * 10)
    return best_x, torch.isfinite(best_d2)


@attack(
    "cw",
    norms=("l2",),
    kind="minimal-norm",
    step_rule=None,
    label=lambda o: f"CW-L2-{o['k']}" + (f"x{o['search_steps']}" if o["search_steps"] != 9 else ""),
    quick={"k": 10, "search_steps": 3},
)
def cw(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    k: Annotated[int, Opt("Adam steps per binary-search step (default 100).", min=1)] = 100,
    search_steps: Annotated[int, Opt("Binary-search steps over the constant c (default 9).", min=1)] = 9,
    # 0.01 as ART starts: the paper's code starts at 1e-3 but runs 10,000 steps per search step
    c: Annotated[
        float, Opt("Initial constant c weighing the margin loss against ||delta||^2 (default 0.01).", min=1e-10)
    ] = 1e-2,
    kappa: Annotated[
        float, Opt("Confidence: the logit margin an adversarial example must reach (default 0).", min=0)
    ] = 0.0,
    lr: Annotated[float, Opt("Adam learning rate on the tanh variables (default 0.01).", min=1e-10)] = 1e-2,
    std=None,
    eot: int = 1,
):
    """Carlini-Wagner L2: the smallest L2 perturbation per point (binary search over c).

    Returns norms (attack-space L2, 0 for points misclassified clean, inf where none was
    found); fooled where the norm is within eps."""
    check_inputs(x, y)
    require_norm("cw", threat.norm, ("l2",))
    with attack_mode(model):
        ball = make_ball(model, x, threat, std)
        x = x.detach()
        x_best = x.clone()
        found = clean_wrong(model, x, y)
        todo = (~found).nonzero().squeeze(1)
        if todo.numel():
            xb, ok = _search(
                model, x[todo], y[todo], ball, k=k, search_steps=search_steps, c0=c, kappa=kappa, lr=lr, eot=eot
            )
            x_best[todo] = xb
            found[todo] = ok
        return minimal_result(model, x, y, ball, x_best, found, recheck=eot == 1)

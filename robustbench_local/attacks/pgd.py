"""Projected gradient descent (Madry et al. 2018), L-inf and L2, in either eps
space, with random start, restarts, CE or DLR loss and targeting.

One loop serves evaluation and training:
- evaluation tracks, per example, whether *any* iterate is misclassified and keeps
  that iterate; with ``early_stop`` a fooled point leaves the batch at once, so no
  effort is spent on it and its verdict cannot change;
- training (``perturb``) runs every step on every point and returns the last
  iterate, the standard PGD-AT inner maximisation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Literal

import torch
from torch import nn

from ..errors import RobustError
from ..runtime import module_mode
from ..threat import Ball, ThreatModel
from .base import AttackResult, attack_mode, check_inputs, frozen_params, make_ball, require_norm
from .grad import loss_grad
from .losses import ce_loss, dlr_loss, pick_targets, targeted_ce_loss, targeted_dlr_loss
from .registry import Opt, attack

LossFn = Callable[..., torch.Tensor]


def run_pgd(
    model: nn.Module,
    x: torch.Tensor,
    ball: Ball,
    *,
    steps: int,
    step_size: float,
    random_start: bool,
    loss_fn: LossFn,
    aux: Sequence[torch.Tensor] = (),
    labels: torch.Tensor | None = None,
    early_stop: bool = False,
    init: torch.Tensor | None = None,
    eot: int = 1,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Ascends ``loss_fn(logits, *aux).sum()`` for ``steps`` steps from a random
    (or given ``init`` attack-space) start. Does not touch the model's mode.

    With ``labels``, returns (x_adv, fooled) where fooled marks examples some iterate
    misclassified and x_adv holds that first fooling iterate; otherwise returns the
    last iterate and None. Cost: ``steps`` forward+backward passes (times ``eot``, the
    gradient samples averaged per step), plus one forward to judge the final iterate
    when labels are given."""
    n = x.shape[0]
    x = x.detach()
    if init is not None:  # copied into x's memory layout so every step keeps one layout
        u = torch.empty_like(x).copy_(init.detach())
    elif random_start:
        u = ball.random(x.shape, x.device, x.dtype)
    else:
        u = torch.zeros_like(x)
    x_adv, _ = ball.apply(x, u)
    track = labels is not None
    scale = ball.scale.to(x.dtype)

    out = x_adv.clone() if track else None
    fooled = torch.zeros(n, dtype=torch.bool, device=x.device) if track else None
    ids = torch.arange(n, device=x.device)
    xs, ys, aux_a = x, labels, list(aux)
    # L-inf: the ball and [0,1] make a per-pixel box, so a step is a sign, a multiply-add
    # and one clamp in pixel space (fewer passes over memory than a plain torchattacks step)
    box = ball.box(x) if ball.threat.norm == "linf" else None
    step_px = step_size * scale

    for t in range(steps + 1):
        last = t == steps
        if last and not track:
            break
        x_adv = x_adv.detach()
        if last:
            with torch.no_grad():
                logits = model(x_adv)
        else:
            logits, _, grad = loss_grad(model, x_adv, loss_fn, aux_a, eot)
        if track:
            wrong = logits.argmax(dim=1) != ys
            new = wrong & ~fooled[ids]
            out[ids[new]] = x_adv[new]
            fooled[ids[new]] = True
        if last:
            break
        if early_stop and track:
            keep = ~wrong
            if not bool(keep.all()):  # one host sync per step buys skipping fooled points
                xs, x_adv, grad, ys, ids = xs[keep], x_adv[keep], grad[keep], ys[keep], ids[keep]
                aux_a = [a[keep] for a in aux_a]
                if box is not None:
                    box = (box[0][keep], box[1][keep])
                if ids.numel() == 0:
                    break
        if box is not None:  # sign(g_u) = sign(g_x * scale) = sign(g_x): scale > 0
            x_adv = x_adv.addcmul_(grad.sign_(), step_px).clamp_(box[0], box[1])
        else:
            u = ball.from_pixel(x_adv - xs)
            u = ball.ascend(u, grad * scale, step_size)  # chain rule: d loss / d u = g_x * scale
            x_adv, _ = ball.apply(xs, u)

    if not track:
        return x_adv.detach(), None
    rem = ~fooled[ids]
    out[ids[rem]] = x_adv.detach()[rem]
    return out, fooled


def _loss_setup(model, x, y, loss: str, targeted: str | None):
    """The loss to ascend and its extra arguments."""
    if targeted in (None, "none"):
        return (ce_loss if loss == "ce" else dlr_loss), (y,)
    with torch.no_grad():
        target = pick_targets(model(x), y, targeted)
    if loss == "ce":
        return targeted_ce_loss, (target,)
    return targeted_dlr_loss, (y, target)


def _pgd_label(o: dict) -> str:
    s = f"PGD-{o['k']}"
    if o["restarts"] > 1:
        s += f"x{o['restarts']}"
    if o["loss"] != "ce":
        s += f"-{o['loss'].upper()}"
    if o["targeted"] != "none":
        s += f"-T({o['targeted']})"
    if not o["random_start"]:
        s += "-nors"
    return s


def _pgd_settings(o: dict) -> None:
    if o["restarts"] > 1 and not o["random_start"]:
        raise RobustError("restarts > 1 need a random start (otherwise every restart repeats the first)")


@attack(
    "pgd",
    norms=("linf", "l2"),
    kind="white-box",
    step_rule="2.5*eps/k",
    label=_pgd_label,
    starts=lambda o: o["restarts"] if o["random_start"] else 0,
    check=_pgd_settings,
    quick={"k": 5},
)
def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    k: Annotated[int, Opt("Steps (iterations) of the attack.", min=1)] = 10,
    random_start: Annotated[bool, Opt("Start from a uniform random point in the ball.")] = True,
    restarts: Annotated[int, Opt("Restarts; a point counts as broken if any restart breaks it.", min=1)] = 1,
    loss: Annotated[
        Literal["ce", "dlr"], Opt("Loss: cross-entropy or Croce & Hein's DLR (needs >= 3 classes).")
    ] = "ce",
    targeted: Annotated[
        Literal["none", "random", "least-likely"], Opt("Untargeted, or towards a random / the least-likely class.")
    ] = "none",
    early_stop: bool = True,
    step_size: float | None = None,
    std=None,
    init: Sequence[torch.Tensor] | None = None,
    eot: int = 1,
) -> AttackResult:
    """Projected gradient descent (Madry et al. 2018): k signed (L-inf) or normalized
    (L2) gradient steps from a random start, judged per example over every iterate
    and restart.

    ``std`` overrides the model's own normalization std
    (needed only for a model without a Normalize layer and normalized-space eps).
    ``init`` optionally gives each restart's attack-space start, one tensor shaped
    like x per restart, so that a point's start does not depend on its batch."""
    check_inputs(x, y)
    require_norm("pgd", threat.norm)
    if k < 1:
        raise ValueError(f"PGD needs k >= 1 steps, got {k}")
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    if restarts > 1 and not random_start:
        raise ValueError("restarts > 1 need a random start (without one every restart repeats the first)")
    if loss == "dlr" and _n_classes(model, x) < 3 + (targeted not in (None, "none")):
        raise RobustError("the DLR loss needs at least 3 classes (4 when targeted); use --loss ce")
    step = threat.step if step_size is None else step_size
    with attack_mode(model):
        ball = make_ball(model, x, threat, std)
        loss_fn, aux = _loss_setup(model, x, y, loss, targeted)
        x_best = x.detach().clone()
        fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for r in range(restarts):
            todo = (~fooled).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            xa, fa = run_pgd(
                model,
                x[todo],
                ball,
                steps=k,
                step_size=step,
                random_start=random_start,
                loss_fn=loss_fn,
                aux=[a[todo] for a in aux],
                labels=y[todo],
                early_stop=early_stop,
                init=init[r][todo] if init is not None and random_start else None,
                eot=eot,
            )
            x_best[todo] = xa  # fooling iterate, or this restart's last one
            fooled[todo] = fa
    return AttackResult(x_best, fooled)


def perturb(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    steps: int,
    step_size: float | None = None,
    random_start: bool = True,
    loss_fn: LossFn = ce_loss,
    aux: Sequence[torch.Tensor] | None = None,
    std=None,
    init: torch.Tensor | None = None,
) -> torch.Tensor:
    """The inner maximisation for adversarial training: ``steps`` steps on every
    point, last iterate returned. Leaves the model's mode alone (the caller picks
    batch-norm behaviour) but turns parameter gradients off while it runs."""
    with frozen_params(model):
        ball = make_ball(model, x, threat, std)
        x_adv, _ = run_pgd(
            model,
            x,
            ball,
            steps=steps,
            step_size=threat.step if step_size is None else step_size,
            random_start=random_start,
            loss_fn=loss_fn,
            aux=(y,) if aux is None else aux,
            init=init,
        )
    return x_adv


def _n_classes(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), module_mode(model, train=False):
        return model(x[:1]).shape[1]

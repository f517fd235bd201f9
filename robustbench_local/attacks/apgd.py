"""APGD, Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness
with an ensemble of diverse parameter-free attacks"), in L-inf, L2 and L1; the L1
variant is l1-APGD (Croce & Hein 2021, "Mind the box: l1-APGD for sparse adversarial
attacks on image classifiers").

L-inf and L2: PGD with momentum 0.75 whose step size, per example, starts at 2 eps and
is halved at checkpoints (after 22% of the iterations, then windows shrinking by 3% to
no less than 6%) where the loss stalled: at most a fraction rho of the steps since the
last checkpoint raised it, or neither the step nor the best loss changed since the
checkpoint before. A halving restarts from the best point found so far.
L1: sparse steepest-ascent steps (the top fraction of coordinates by |gradient|), an
exact projection onto the L1 ball intersected with the pixel box, and every 4% of the
iterations the stepped fraction follows the sparsity of the best point (adaptive
sparsity); the step, from eps, is reset when that sparsity fell and shrunk otherwise.

Losses: cross-entropy, DLR, and targeted DLR toward the 2nd..(targets+1)-th most likely
clean classes (APGD-T, as AutoAttack runs it). Each point is judged on every iterate:
the first misclassified one is kept and the point leaves the working batch at once;
every step size and checkpoint is per example, so the others' runs do not change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Literal

import torch
from torch import nn

from ..errors import RobustError
from ..threat import Ball, ThreatModel
from .base import AttackResult, attack_mode, check_inputs, make_ball, require_norm
from .grad import loss_grad
from .losses import ce_loss, dlr_loss, targeted_dlr_loss
from .registry import Opt, attack

NORMS = ("linf", "l2", "l1")
MOMENTUM = 0.75


def _label(o: dict) -> str:
    name = "APGD-T" if o["targeted"] == "top" else f"APGD-{o['loss'].upper()}"
    if o["k"] != 100 or o["restarts"] != 1:
        name += f"-{o['k']}" + (f"x{o['restarts']}" if o["restarts"] != 1 else "")
    if o["targeted"] == "top" and o["targets"] != 9:
        name += f"-{o['targets']}targets"
    if o["rho"] != 0.75:
        name += f"-rho{o['rho']:g}"
    return name


@attack("apgd", norms=NORMS, kind="white-box", step_rule="2*eps", label=_label, quick={"k": 10, "targets": 2})
def apgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    k: Annotated[int, Opt("Iterations per run (each restart, each target class).", min=1)] = 100,
    loss: Annotated[
        Literal["ce", "dlr"],
        Opt("Loss to ascend: cross-entropy or the Difference of Logits Ratio (not used when targeted)."),
    ] = "ce",
    targeted: Annotated[
        Literal["none", "top"],
        Opt("top: APGD-T, the targeted DLR loss toward each of the --targets most likely wrong classes in turn."),
    ] = "none",
    targets: Annotated[
        int,
        Opt("Target classes when targeted: the 2nd to (targets+1)-th highest clean logits (at most classes-1).", min=1),
    ] = 9,
    restarts: Annotated[int, Opt("Random restarts (per target class when targeted).", min=1)] = 1,
    rho: Annotated[
        float,
        Opt(
            "Halve the step at a checkpoint where at most this fraction of the steps since the last one raised "
            "the loss.",
            min=0.0,
            max=1.0,
        ),
    ] = 0.75,
    std=None,
    eot: int = 1,
) -> AttackResult:
    """APGD (Croce & Hein 2020; L1: Croce & Hein 2021), CE, DLR or targeted DLR, with step
    sizes that adapt per example from 2 eps (L1: eps)."""
    check_inputs(x, y)
    require_norm("apgd", threat.norm, NORMS)
    if k < 1 or restarts < 1 or targets < 1:
        raise ValueError(f"APGD needs k, restarts and targets >= 1, got {k}, {restarts}, {targets}")
    if loss not in ("ce", "dlr"):  # APGD-T is targeted="top" (its loss is the targeted DLR)
        raise ValueError(f"APGD's loss is 'ce' or 'dlr', got {loss!r}; for APGD-T pass targeted='top'")
    if targeted not in ("none", "top"):
        raise ValueError(f"APGD's targeted is 'none' or 'top', got {targeted!r}")
    targeted = targeted == "top"
    # a step the user gave is the first step; otherwise AutoAttack's: 2 eps, and eps for L1
    step0 = threat.step if threat.given else threat.eps * (1.0 if threat.norm == "l1" else 2.0)
    with attack_mode(model):
        ball = make_ball(model, x, threat, std)
        x, y = x.detach(), y.detach()
        with torch.no_grad():
            clean = model(x)
        n_cls = clean.shape[1]
        if (targeted or loss == "dlr") and n_cls < 3 + targeted:
            raise RobustError(
                f"APGD's {'targeted ' if targeted else ''}DLR loss needs at least "
                f"{3 + targeted} classes, the model has {n_cls}; use --loss ce"
            )
        x_out = x.clone()
        fooled = clean.argmax(dim=1) != y  # misclassified clean: nothing to attack
        best = torch.full((x.shape[0],), float("-inf"), device=x.device)
        for loss_fn, aux in _runs(clean, y, loss, targeted, targets):
            for _ in range(restarts):
                todo = (~fooled).nonzero().squeeze(1)
                if todo.numel() == 0:
                    break
                xa, fa, lb = run_apgd(
                    model, x[todo], y[todo], ball, loss_fn, [a[todo] for a in aux], k=k, rho=rho, step0=step0, eot=eot
                )
                # a point still robust keeps the highest-loss point of all its runs
                take = fa | (lb > best[todo])
                x_out[todo[take]] = xa[take]
                best[todo] = torch.maximum(best[todo], lb)
                fooled[todo] = fa
    return AttackResult(x_out, fooled)


def _runs(clean: torch.Tensor, y: torch.Tensor, loss: str, targeted: bool, targets: int):
    """(loss, its extra arguments) for each run: one untargeted, or one per target class."""
    if not targeted:
        return [(ce_loss if loss == "ce" else dlr_loss, (y,))]
    order = clean.sort(dim=1)[1]
    top = min(targets, clean.shape[1] - 1)
    return [(targeted_dlr_loss, (y, order[:, -c])) for c in range(2, top + 2)]


def _like(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x).copy_(t)


def _start(x: torch.Tensor, ball: Ball) -> torch.Tensor:
    """AutoAttack's random start, drawn in NCHW order (so the layout does not change it):
    L-inf a uniform draw scaled to touch the ball's faces, L2 a point on the sphere, L1 a
    Gaussian projected onto the ball and the box."""
    eps, norm = ball.threat.eps, ball.threat.norm
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    if norm == "linf":
        t = torch.rand(x.shape, device=x.device, dtype=x.dtype).mul_(2).sub_(1)
        u = t * (eps / t.flatten(1).abs().amax(dim=1).clamp_min(1e-12)).view(shape)
    elif norm == "l2":
        t = torch.randn(x.shape, device=x.device, dtype=x.dtype)
        u = t * (eps / t.flatten(1).norm(dim=1).clamp_min(1e-12)).view(shape)
    else:
        u = ball.project(_like(x, torch.randn(x.shape, device=x.device, dtype=x.dtype)), x)
    return (x + ball.to_pixel(_like(x, u))).clamp_(0.0, 1.0)


class _Batch:
    """The per-example state of the points still attacked; fooled points leave together."""

    def __init__(self, **tensors):
        self.__dict__.update(tensors)

    def keep(self, mask: torch.Tensor) -> None:
        for name, v in list(vars(self).items()):
            setattr(self, name, [a[mask] for a in v] if isinstance(v, list) else v[mask])


def _where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.view(-1, *([1] * (a.dim() - 1))), a, b)


def run_apgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    ball: Ball,
    loss_fn: Callable[..., torch.Tensor],
    aux: Sequence[torch.Tensor],
    *,
    k: int,
    rho: float = 0.75,
    step0: float,
    eot: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One APGD run of ``k`` iterations from a random start on every point of x (k + 1
    gradient evaluations for a point never fooled). Returns (x_adv, fooled, best loss):
    x_adv the first fooling iterate, else the highest-loss one; best loss +inf where
    fooled."""
    n, norm = x.shape[0], ball.threat.norm
    d = x[0].numel()
    x_out = x.clone()
    fooled = torch.zeros(n, dtype=torch.bool, device=x.device)
    best_loss = torch.full((n,), float("inf"), device=x.device)
    x_adv = _start(x, ball)
    logits, loss, grad = loss_grad(model, x_adv, loss_fn, aux, eot)
    lo, hi = ball.box(x) if norm == "linf" else (x, x)  # (x, x): placeholders that keep rows aligned
    b = _Batch(
        ids=torch.arange(n, device=x.device),
        xs=x,
        ys=y,
        aux=list(aux),
        lo=lo,
        hi=hi,
        x_adv=x_adv,
        x_old=x_adv,
        grad=grad,
        loss=loss,
        logits=logits,
        x_best=x_adv.clone(),
        grad_best=grad.clone(),
        loss_best=loss.clone(),
        loss_prev=loss.clone(),
        step=torch.full((n,), step0, device=x.device, dtype=x.dtype),
        n_up=torch.zeros(n, device=x.device),  # steps that raised the loss
        reduced=torch.ones(n, dtype=torch.bool, device=x.device),  # halved at the last checkpoint
        best_at_check=loss.clone(),  # best loss then
        sparsity=torch.full((n,), 0.2, device=x.device),  # L1: fraction of coordinates stepped
        nnz_old=torch.full((n,), float(d), device=x.device),
    )  # L1: best point's nonzeros then
    if _judge(b, x_out, fooled):
        return x_out, fooled, best_loss
    if norm == "l1":
        window, shrink, least = max(int(0.04 * k), 1), 0, max(int(0.04 * k), 1)
    else:
        window, shrink, least = max(int(0.22 * k), 1), max(int(0.03 * k), 1), max(int(0.06 * k), 1)
    since = 0
    for i in range(k):
        x_new = _step(ball, b, MOMENTUM if i > 0 else 1.0)
        b.x_old, b.x_adv = b.x_adv, x_new
        b.logits, b.loss, b.grad = loss_grad(model, b.x_adv, loss_fn, b.aux, eot)
        if _judge(b, x_out, fooled):
            return x_out, fooled, best_loss
        better = b.loss > b.loss_best
        b.x_best = _where(better, b.x_adv, b.x_best)
        b.grad_best = _where(better, b.grad, b.grad_best)
        b.loss_best = torch.where(better, b.loss, b.loss_best)
        b.n_up += (b.loss > b.loss_prev).float()
        b.loss_prev = b.loss
        since += 1
        if since == window:
            (_checkpoint_l1 if norm == "l1" else _checkpoint)(b, window, rho, step0, d)
            window, since = max(window - shrink, least), 0
    x_out[b.ids] = b.x_best
    best_loss[b.ids] = b.loss_best
    return x_out, fooled, best_loss


def _judge(b: _Batch, x_out: torch.Tensor, fooled: torch.Tensor) -> bool:
    """Records the points the current iterate fools and drops them from the batch (one
    host sync per iteration buys skipping them). True when none is left."""
    wrong = b.logits.argmax(dim=1) != b.ys
    if not bool(wrong.any()):
        return False
    x_out[b.ids[wrong]] = b.x_adv[wrong]
    fooled[b.ids[wrong]] = True
    b.keep(~wrong)
    return b.ids.numel() == 0


def _step(ball: Ball, b: _Batch, a: float) -> torch.Tensor:
    """The next iterate: a projected gradient step z, then (L-inf, L2) momentum
    x + a (z - x) + (1 - a) (x - x_old), projected again. L1 takes z as is, as the
    authors' l1-APGD does."""
    s = b.step.view(-1, *([1] * (b.x_adv.dim() - 1)))
    x, x_adv = b.xs, b.x_adv
    if ball.threat.norm == "linf":  # the ball and [0,1] are a per-pixel box: clamp in pixels
        z = torch.addcmul(x_adv, b.grad.sign(), s * ball.scale).clamp_(b.lo, b.hi)
        if a == 1.0:
            return z
        return (x_adv + a * (z - x_adv) + (1 - a) * (x_adv - b.x_old)).clamp_(b.lo, b.hi)
    u = ball.from_pixel(x_adv - x)
    g = b.grad * ball.scale  # chain rule: d loss / d u
    if ball.threat.norm == "l1":
        return ball.apply(x, ball.ascend(u, g, s, b.sparsity))[0]
    z, _ = ball.apply(x, ball.ascend(u, g, s))
    if a == 1.0:
        return z
    m = x_adv + a * (z - x_adv) + (1 - a) * (x_adv - b.x_old)
    return ball.apply(x, ball.from_pixel(m - x))[0]


def _checkpoint(b: _Batch, window: int, rho: float, step0: float, d: int) -> None:
    """L-inf/L2: halve the step where the loss stalled and go back to the best point.
    The count uses <= rho * window, as the authors' code does (the paper writes <; the
    two differ only where rho * window is a whole number)."""
    stalled = b.n_up <= window * rho
    stalled |= ~b.reduced & (b.best_at_check >= b.loss_best)
    b.reduced, b.best_at_check = stalled, b.loss_best.clone()
    b.step = torch.where(stalled, b.step / 2, b.step)
    b.x_adv = _where(stalled, b.x_best, b.x_adv)
    b.grad = _where(stalled, b.grad_best, b.grad)
    b.n_up = torch.zeros_like(b.n_up)


def _checkpoint_l1(b: _Batch, window: int, rho: float, step0: float, d: int) -> None:
    """L1 (adaptive sparsity): step on 1/1.5 of the best point's nonzeros from now on;
    where those fell by 5% or more, reset the step to its start and go back to the best
    point, else shrink the step by 1.5 (never below a tenth of the start)."""
    nnz = (b.x_best != b.xs).flatten(1).sum(dim=1).float()
    sparser = nnz / b.nnz_old < 0.95
    b.sparsity = nnz / d / 1.5
    b.step = torch.where(sparser, torch.full_like(b.step, step0), b.step / 1.5).clamp_(step0 / 10, step0)
    b.nnz_old = nnz
    b.x_adv = _where(sparser, b.x_best, b.x_adv)
    b.grad = _where(sparser, b.grad_best, b.grad)

"""DeepFool (Moosavi-Dezfooli et al. 2016, "DeepFool: a simple and accurate method to
fool deep neural networks"), L2 and L-inf: at each step the classifier is linearised
around the current point, and the point moves to the nearest linearised decision
boundary among the candidate classes (distance |f'_k| / ||w'_k||_q with q the dual norm);
the steps add up, and the total is stretched by (1 + overshoot) so the point lands just
past the boundary. A point leaves the batch as soon as it is misclassified.

Pixels are clipped to [0,1] after each step (the paper has no box); the geometry is in
attack space (pixels divided by the per-channel scale). A minimal-norm attack: eps only
decides the verdict."""

from __future__ import annotations

from typing import Annotated

import torch
from torch import nn

from ..threat import ThreatModel
from .base import attack_mode, check_inputs, make_ball, require_norm
from .minimal import clean_wrong, minimal_result
from .registry import Opt, attack

TINY = 1e-4  # the paper's code adds it to every step, so a step never stops short at 0


def _diff_jacobian(model, x, y, cand, eot):
    """Logits (N, C), the differences Z_j - Z_y (N, K) for the candidate classes and
    their input gradients (N, K, ...): one forward and K backward passes per EOT sample."""
    k = cand.shape[1]
    logits_sum = diff_sum = grad_sum = None
    for _ in range(eot):
        xg = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(xg)
            diffs = logits.gather(1, cand) - logits.gather(1, y[:, None])
            rows = [torch.autograd.grad(diffs[:, j].sum(), xg, retain_graph=j < k - 1)[0] for j in range(k)]
        grads = torch.stack(rows, dim=1)
        if grad_sum is None:
            logits_sum, diff_sum, grad_sum = logits.detach(), diffs.detach(), grads
        else:
            logits_sum, diff_sum, grad_sum = logits_sum + logits.detach(), diff_sum + diffs.detach(), grad_sum + grads
    return logits_sum / eot, diff_sum / eot, grad_sum / eot


def _step(f: torch.Tensor, w: torch.Tensor, norm: str) -> torch.Tensor:
    """The step to the nearest linearised boundary: f (N, K) logit differences, w
    (N, K, ...) their attack-space gradients; returns (N, ...)."""
    wf = w.flatten(2)
    dual = wf.abs().sum(dim=2) if norm == "linf" else wf.norm(p=2, dim=2)
    dist = f.abs() / dual.clamp_min(1e-12)
    best = dist.argmin(dim=1)
    rows = torch.arange(f.shape[0], device=f.device)
    f_l, w_l, q_l = f[rows, best].abs() + TINY, w[rows, best], dual[rows, best].clamp_min(1e-12)
    shape = (-1,) + (1,) * (w_l.dim() - 1)
    if norm == "linf":  # the L-inf projection moves every pixel by the same amount
        return (f_l / q_l).view(shape) * w_l.sign()
    return (f_l / q_l**2).view(shape) * w_l


def _candidates(model, x, y, n_cand):
    """The classes the clean logits rank highest, other than y (the paper's code takes
    the top 10)."""
    with torch.no_grad():
        logits = model(x)
    n_cls = logits.shape[1]
    order = logits.scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True)
    return order[:, : min(n_cand, n_cls) - 1]


def _run(model, x, y, ball, *, k, overshoot, n_cand, eot):
    """DeepFool on points correctly classified; returns (x_best, found)."""
    n = x.shape[0]
    norm = ball.threat.norm
    scale = ball.scale.to(x.dtype)
    cand = _candidates(model, x, y, n_cand)
    found = torch.zeros(n, dtype=torch.bool, device=x.device)
    x_best = x.clone()
    ids = torch.arange(n, device=x.device)
    xs, ys, cs = x, y, cand
    r_tot = torch.zeros_like(x)
    x_adv = x.clone()
    for t in range(k + 1):
        if t == k:  # the last iterate only needs judging
            with torch.no_grad():
                logits = model(x_adv)
        else:
            logits, f, g = _diff_jacobian(model, x_adv, ys, cs, eot)
        wrong = logits.argmax(dim=1) != ys
        if bool(wrong.any()):
            found[ids[wrong]] = True
            x_best[ids[wrong]] = x_adv[wrong]
            keep = ~wrong
            ids, xs, ys, cs, r_tot, x_adv = ids[keep], xs[keep], ys[keep], cs[keep], r_tot[keep], x_adv[keep]
            if t < k:
                f, g = f[keep], g[keep]
        if ids.numel() == 0 or t == k:
            break
        # chain rule: d f / d u = g_x * scale
        r_tot = r_tot + _step(f, g * scale.unsqueeze(1), norm)
        x_adv = (xs + (1 + overshoot) * r_tot * scale).clamp(0.0, 1.0)
    return x_best, found


@attack(
    "deepfool",
    norms=("linf", "l2"),
    kind="minimal-norm",
    step_rule=None,
    label=lambda o: "DeepFool" + (f"-{o['k']}" if o["k"] != 50 else ""),
    quick={"k": 10},
)
def deepfool(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    k: Annotated[int, Opt("Maximum DeepFool iterations per point (default 50).", min=1)] = 50,
    overshoot: Annotated[
        float, Opt("Stretch of the total perturbation past the boundary, as a fraction (default 0.02).", min=0)
    ] = 0.02,
    candidates: Annotated[
        int,
        Opt("Classes considered per step: the top ones by clean logit, the true class included (default 10).", min=2),
    ] = 10,
    std=None,
    eot: int = 1,
):
    """DeepFool, L2 or L-inf: the nearest linearised decision boundary, step by step.

    Returns norms (attack-space, 0 for points misclassified clean, inf where k steps did
    not cross a boundary); fooled where the norm is within eps."""
    check_inputs(x, y)
    require_norm("deepfool", threat.norm, ("linf", "l2"))
    with attack_mode(model):
        ball = make_ball(model, x, threat, std)
        x = x.detach()
        x_best = x.clone()
        found = clean_wrong(model, x, y)
        todo = (~found).nonzero().squeeze(1)
        if todo.numel():
            xb, ok = _run(model, x[todo], y[todo], ball, k=k, overshoot=overshoot, n_cand=candidates, eot=eot)
            x_best[todo] = xb
            found[todo] = ok
        return minimal_result(model, x, y, ball, x_best, found, recheck=eot == 1)

"""FAB-T, the targeted Fast Adaptive Boundary attack (Croce & Hein 2020, "Minimally
distorted adversarial examples with a fast adaptive boundary attack"), as AutoAttack runs
it; L-inf, L2 and L1.

Each step linearises the decision boundary between the true class y and a target class t
(f = Z_t - Z_y) around the current point, and projects both the current point and the
original onto that hyperplane within the valid-pixel box (the smallest such move in the
threat's norm). The next point is a convex combination of the two projections, biased
(weight alpha <= alpha_max) towards the one from the original so that the perturbation
stays small, stretched by eta past the boundary. Once a point is misclassified it is
recorded if smaller than the best so far, and pulled back towards the original by beta,
so the search keeps shrinking the perturbation for all k iterations.

Targets are the classes with the 2nd, 3rd, ... highest clean logits; each target runs on
the points not yet fooled within eps (as AutoAttack's FAB-T), so a norm reported below
eps is from the first target that got there, an upper bound on the smallest. Geometry is
in attack space (pixels divided by the per-channel scale), where the box [0,1] becomes
per-pixel bounds on the perturbation u."""

from __future__ import annotations

from typing import Annotated

import torch
from torch import nn

from ..threat import ThreatModel
from .base import attack_mode, check_inputs, make_ball, require_norm
from .grad import loss_grad
from .minimal import minimal_result, u_box
from .registry import Opt, attack

ALPHA_MAX = 0.1  # the most weight the original's projection gets (AutoAttack's setting)
ETA = 1.05  # overshoot past the linearised boundary
BETA = 0.9  # pull-back towards the original after a success
FAR = 1e12  # a breakpoint that is never reached (coordinates with zero gradient)


def _dual_step(w: torch.Tensor, c: torch.Tensor, norm: str) -> torch.Tensor:
    """The smallest d with w . d = c, box ignored: used when the box cannot reach the
    hyperplane, pixels being clamped afterwards."""
    if norm == "l2":
        return (c / (w * w).sum(dim=1).clamp_min(1e-12))[:, None] * w
    if norm == "linf":
        return (c / w.abs().sum(dim=1).clamp_min(1e-12))[:, None] * w.sign()
    top = w.abs().argmax(dim=1, keepdim=True)  # L1: all of it on the steepest coordinate
    d = torch.zeros_like(w)
    return d.scatter_(1, top, c[:, None] / w.gather(1, top).masked_fill(w.gather(1, top) == 0, 1e-12))


def project_hyperplane_box(
    w: torch.Tensor, c: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, norm: str
) -> torch.Tensor:
    """argmin ||d||_p subject to w . d = c and lo <= d <= hi (lo <= 0 <= hi), per row of
    the (N, D) inputs, exactly.

    With c >= 0 (flip w and c otherwise) the solution moves each coordinate towards the
    side where w . d grows, up to its bound: for L2 d_i = clip(lam * w_i), for L-inf
    d_i = clip(lam * sign w_i), with the smallest lam >= 0 that reaches c. w . d is then
    piecewise linear and increasing in lam, breaking where a coordinate hits its bound,
    so sorting the breakpoints finds lam in closed form. For L1 the cheapest coordinates
    are those with the largest |w_i|: they are filled to their bounds in that order."""
    sgn = torch.where(c < 0, -1.0, 1.0).to(w.dtype)
    w, c = w * sgn[:, None], c * sgn
    bound = torch.where(w > 0, hi, lo)  # how far each coordinate can go in its useful direction
    moving = w != 0
    if norm == "l1":
        return _l1(w, c, bound, moving)
    if norm == "l2":
        a, r, v = w * w, bound / w.masked_fill(~moving, 1.0), w
    else:
        a, r, v = w.abs(), bound.abs(), w.sign()
    r = r.masked_fill(~moving, FAR)
    a = a.masked_fill(~moving, 0.0)
    r_s, order = r.sort(dim=1)
    a_s = a.gather(1, order)
    sat_a = a_s.cumsum(dim=1)  # weight of the coordinates saturated at each breakpoint
    sat_b = (a_s * r_s).masked_fill(a_s == 0, 0.0).cumsum(dim=1)
    total = sat_a[:, -1:]
    reach = r_s * (total - sat_a) + sat_b  # w . d at each breakpoint
    k = (reach < c[:, None]).sum(dim=1, keepdim=True)  # breakpoints passed before reaching c
    feasible = (k < w.shape[1]).squeeze(1)
    prev = (k - 1).clamp_min(0)
    a_prev = torch.where(k > 0, sat_a.gather(1, prev), torch.zeros_like(total))
    b_prev = torch.where(k > 0, sat_b.gather(1, prev), torch.zeros_like(total))
    lam = (c[:, None] - b_prev) / (total - a_prev).clamp_min(1e-30)
    d = torch.minimum(torch.maximum(lam * v, lo), hi)
    if not bool(feasible.all()):
        d = torch.where(feasible[:, None], d, _dual_step(w, c, norm))
    return d


def _l1(w, c, bound, moving):
    """L1: coordinates by decreasing |w|, each filled to its bound until w . d = c."""
    gain = w.abs()
    order = gain.argsort(dim=1, descending=True)
    cap = (w * bound).gather(1, order)  # the most each coordinate can add to w . d
    reach = cap.cumsum(dim=1)
    k = (reach < c[:, None]).sum(dim=1, keepdim=True)
    n, dim = w.shape
    feasible = (k < dim).squeeze(1) & moving.gather(1, order).gather(1, k.clamp_max(dim - 1)).squeeze(1)
    kk = k.clamp_max(dim - 1)
    filled = torch.arange(dim, device=w.device)[None, :] < k
    d_s = torch.where(filled, bound.gather(1, order), torch.zeros_like(w))
    before = torch.where(k > 0, reach.gather(1, (k - 1).clamp_min(0)), torch.zeros_like(k, dtype=w.dtype))
    w_k = w.gather(1, order).gather(1, kk)
    d_s = d_s.scatter(1, kk, (c[:, None] - before) / w_k.masked_fill(w_k == 0, 1.0))
    d = torch.empty_like(w).scatter_(1, order, d_s)
    if not bool(feasible.all()):
        d = torch.where(feasible[:, None], d, _dual_step(w, c, "l1"))
    return d


def _norm(d: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "linf":
        return d.abs().amax(dim=1)
    if norm == "l1":
        return d.abs().sum(dim=1)
    return d.norm(p=2, dim=1)


def _target_margin(logits: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Z_t - Z_y: the linearised boundary is where it is 0."""
    return logits.gather(1, t[:, None]).squeeze(1) - logits.gather(1, y[:, None]).squeeze(1)


def _random_start(x, lo, hi, norm, radius, gen):
    """A start at radius/2 in the threat's norm, as the paper's restarts draw it."""
    shape = x.shape
    if norm == "linf":
        t = torch.rand(shape, generator=gen).mul_(2).sub_(1)
    else:
        t = torch.randn(shape, generator=gen)
    t = t.to(x.device, x.dtype)
    size = _norm(t.flatten(1), norm).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))
    return torch.minimum(torch.maximum(t / size * radius / 2, lo), hi)


def _run(model, x, y, target, ball, *, k, eot, u0):
    """One FAB-T run towards ``target``; returns (best adversarial pixels, found)."""
    n = x.shape[0]
    norm = ball.threat.norm
    scale = ball.scale.to(x.dtype)
    lo, hi = u_box(x, ball)
    lo_f, hi_f = lo.flatten(1), hi.flatten(1)
    u = u0
    best = torch.full((n,), float("inf"), device=x.device)
    x_best = x.clone()
    for _ in range(k):
        x1 = x + u * scale
        _, f, g = loss_grad(model, x1, _target_margin, (y, target), eot)
        w = (g * scale).flatten(1)  # d f / d u, by the chain rule
        uf = u.flatten(1)
        # the hyperplane w . (u' - u) + f = 0, reached from u and from the original (u = 0)
        d1 = project_hyperplane_box(w, -f, lo_f - uf, hi_f - uf, norm)
        d2 = project_hyperplane_box(w, -f + (w * uf).sum(dim=1), lo_f, hi_f, norm)
        a1 = _norm(d1, norm).clamp_min(1e-8)
        a2 = _norm(d2, norm).clamp_min(1e-8)
        alpha = (a1 / (a1 + a2)).clamp(0.0, ALPHA_MAX)[:, None]
        uf = (uf + ETA * d1) * (1 - alpha) + ETA * d2 * alpha
        u = torch.minimum(torch.maximum(uf.view_as(u), lo), hi)
        x1 = x + u * scale
        with torch.no_grad():
            adv = model(x1).argmax(dim=1) != y
        if bool(adv.any()):
            size = _norm(u.flatten(1), norm)
            better = adv & (size < best)
            best = torch.where(better, size, best)
            x_best[better] = x1[better]
            u = torch.where(adv.view(-1, *([1] * (u.dim() - 1))), u * BETA, u)
    return x_best, torch.isfinite(best)


@attack(
    "fab-t",
    norms=("linf", "l2", "l1"),
    kind="minimal-norm",
    step_rule=None,
    label=lambda o: "FAB-T" + (f"-{o['k']}" if o["k"] != 100 else ""),
    quick={"k": 10, "targets": 2},
)
def fab_t(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    k: Annotated[int, Opt("FAB iterations per target class and restart (default 100).", min=1)] = 100,
    restarts: Annotated[
        int, Opt("Runs per target; those after the first start at random within eps/2 (default 1).", min=1)
    ] = 1,
    targets: Annotated[
        int,
        Opt("Target classes tried: those with the highest clean logits after the predicted one (default 9).", min=1),
    ] = 9,
    std=None,
    seed: int = 0,
    eot: int = 1,
):
    """FAB-T (targeted FAB, as in AutoAttack): the smallest perturbation per point found by
    adaptive boundary projections towards the top target classes.

    Returns norms (attack-space, 0 for points misclassified clean, inf where none was
    found); fooled where the norm is within eps."""
    check_inputs(x, y)
    require_norm("fab-t", threat.norm, ("linf", "l2", "l1"))
    eps = threat.eps
    with attack_mode(model):
        ball = make_ball(model, x, threat, std)
        x = x.detach()
        with torch.no_grad():
            logits = model(x)
        n_cls = logits.shape[1]
        ranked = logits.argsort(dim=1, descending=True)
        x_best = x.clone()
        found = logits.argmax(dim=1) != y
        best = torch.where(found, 0.0, float("inf")).to(x.device)
        gen = torch.Generator().manual_seed(seed)
        for j in range(1, min(targets, n_cls - 1) + 1):
            for r in range(restarts):
                todo = (best > eps).nonzero().squeeze(1)
                if todo.numel() == 0:
                    break
                xs = x[todo]
                if r == 0:
                    u0 = torch.zeros_like(xs)
                else:
                    lo, hi = u_box(xs, ball)
                    u0 = _random_start(xs, lo, hi, threat.norm, eps, gen)
                xb, ok = _run(model, xs, y[todo], ranked[todo, j], ball, k=k, eot=eot, u0=u0)
                size = ball.norms(xb, xs).float()
                better = ok & (size < best[todo])
                idx = todo[better]
                best[idx] = size[better]
                x_best[idx] = xb[better]
                found[idx] = True
        return minimal_result(model, x, y, ball, x_best, found, recheck=eot == 1)

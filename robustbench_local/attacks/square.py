"""Square Attack (Andriushchenko, Croce, Flammarion & Hein 2020, "Square Attack: a
query-efficient black-box adversarial attack via random search", ECCV), L-inf and L2.

A random search that uses only the model's scores, so masked or obfuscated gradients
cannot stop it. It starts on the boundary of the ball and, at every iteration, proposes
a change confined to a random square window of side about sqrt(p * h * w), keeping the
proposal only if the loss (the margin z_y - max_{j != y} z_j by default) drops. p follows
the paper's piecewise-constant schedule: halved at fixed fractions of the query budget.

- L-inf: starts from vertical stripes of +-eps (one sign per channel and column); an
  update sets the window, per channel, to +eps or -eps, the signs redrawn until the
  proposal differs from the current point (a repeat would waste a query).
- L2: starts from a grid of "meta" windows (two pseudo-Gaussian bumps of opposite sign,
  random sign per channel); an update moves the perturbation mass of a second window
  into a new meta window at the first, and rescales the whole perturbation to norm eps.

Everything happens in attack space u (threat.py), where the ball is a plain ball of
radius eps and valid pixels are the per-pixel box ((0 - x) / scale, (1 - x) / scale).

Queries are counted as in the paper: the start costs one query and each iteration one
per point still robust, so no point is queried more than ``n_queries`` times per restart
(the clean prediction, which says which points need attacking, is not counted). Each
point draws its own windows, as the paper's algorithm does per image: points' outcomes
are then independent, as the binomial interval of a robust accuracy assumes. Random
draws come from the global torch RNG (evaluate() seeds it before each attack).
"""

from __future__ import annotations

import math
from functools import cache
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..threat import Ball, ThreatModel
from .base import AttackResult, attack_mode, check_inputs, make_ball, require_norm
from .registry import Opt, attack

# Iterations (out of a budget of 10,000) after which p is halved again (paper, App. B).
_P_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
# The paper redraws L-inf signs until the window changes; a bound keeps a degenerate
# ball (eps below float resolution) from looping for ever. With 3 channels a redraw
# is needed with probability <= 1/8, so the bound is never met otherwise.
_MAX_REDRAWS = 64


def _label(o: dict) -> str:
    extra = "" if o["loss"] == "margin" else f"-{o['loss'].upper()}"
    extra += "" if o["p_init"] == 0.8 else f"-p{o['p_init']:g}"
    return f"Square-{o['n_queries']}{extra}" + (f"x{o['restarts']}" if o["restarts"] > 1 else "")


@attack("square", norms=("linf", "l2"), kind="black-box", step_rule=None, label=_label, quick={"n_queries": 50})
def square(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    n_queries: Annotated[
        int, Opt("Square: model queries per point and restart, the start included (AutoAttack uses 5000).", min=1)
    ] = 5000,
    p_init: Annotated[
        float,
        Opt(
            "Square: initial fraction of pixels a window covers, halved on the "
            "paper's schedule (0.8: AutoAttack's choice for L-inf and L2).",
            min=1e-6,
            max=1.0,
        ),
    ] = 0.8,
    loss: Annotated[
        Literal["margin", "ce"], Opt("Square: loss to lower, the logit margin (the paper's) or cross-entropy.")
    ] = "margin",
    restarts: Annotated[int, Opt("Random restarts, each on the points still robust.", min=1)] = 1,
    std=None,
) -> AttackResult:
    """Square Attack: gradient-free random search over square windows on the ball's boundary (Andriushchenko et al. 2020).

    Points misclassified clean are fooled at once (x_adv = x); every other point is
    attacked until it is misclassified or its queries run out, and keeps its fooling
    point, or else its lowest-loss point."""
    check_inputs(x, y)
    require_norm("square", threat.norm, ("linf", "l2"))
    if n_queries < 1:
        raise ValueError(f"Square needs n_queries >= 1, got {n_queries}")
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    if not 0 < p_init <= 1:
        raise ValueError(f"p_init must be in (0, 1], got {p_init}")
    if loss not in ("margin", "ce"):
        raise ValueError(f"unknown Square loss '{loss}'; valid: margin, ce")
    with attack_mode(model), torch.no_grad():
        x = x.detach()
        ball = make_ball(model, x, threat, std)
        x_best = x.clone()
        fooled = model(x).argmax(dim=1) != y
        for _ in range(restarts):
            todo = (~fooled).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            xa, fa = _run(model, x[todo], y[todo], ball, n_queries=n_queries, p_init=p_init, loss=loss)
            x_best[todo] = xa  # the fooling point, or this restart's lowest-loss one
            fooled[todo] = fa
    return AttackResult(x_best, fooled)


def _run(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, ball: Ball, *, n_queries: int, p_init: float, loss: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """One restart on points all classified right; returns (x_adv, fooled)."""
    eps = ball.threat.eps
    scale = ball.scale.to(x.dtype)
    lo, hi = -x / scale, (1 - x) / scale  # valid pixels, in attack space
    linf = ball.threat.norm == "linf"
    if linf:  # the ball and [0,1] make one per-pixel box
        lo, hi = lo.clamp(min=-eps), hi.clamp(max=eps)
        u = _linf_init(x, lo, hi, eps)
    else:
        u = _l2_init(x, lo, hi, eps)

    out = torch.empty_like(x)
    fooled = torch.zeros(len(y), dtype=torch.bool, device=x.device)
    ids = torch.arange(len(y), device=x.device)
    xa = _pixels(x, u, scale)
    best, wrong = _scores(model, xa, y, loss)  # query 1
    xs, ys = x, y
    for i in range(n_queries):
        if bool(wrong.any()):  # record the fooling points and drop them from the batch
            out[ids[wrong]] = xa[wrong]
            fooled[ids[wrong]] = True
            keep = ~wrong
            ids, xs, ys, u, lo, hi, best = ids[keep], xs[keep], ys[keep], u[keep], lo[keep], hi[keep], best[keep]
            if ids.numel() == 0:
                break
        if i == n_queries - 1:  # i + 1 queries made: the budget is spent
            break
        p = _p_schedule(p_init, i, n_queries)
        cand = _linf_step(u, lo, hi, eps, p) if linf else _l2_step(u, lo, hi, eps, p)
        xa = _pixels(xs, cand, scale)
        obj, wrong = _scores(model, xa, ys, loss)  # query i + 2
        take = (obj < best) | wrong
        u = torch.where(take.view(-1, 1, 1, 1), cand, u)
        best = torch.where(take, obj, best)
    if ids.numel():
        out[ids] = _pixels(xs, u, scale)
    return out, fooled


def _pixels(x: torch.Tensor, u: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    # u lies in the valid box already; the clamp only absorbs rounding
    return (x + u * scale).clamp_(0.0, 1.0)


def _scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(the loss to lower, misclassified) from one query."""
    logits = model(x)
    wrong = logits.argmax(dim=1) != y
    if loss == "ce":
        return -F.cross_entropy(logits, y, reduction="none"), wrong
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    z_other = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return z_y - z_other, wrong


def _p_schedule(p_init: float, i: int, n_queries: int) -> float:
    """The fraction of pixels changed at iteration i: p_init halved after each of the
    paper's iterations of a 10,000-query budget, rescaled to ``n_queries``."""
    it = int(i / n_queries * 10000)
    return p_init / 2 ** sum(it > b for b in _P_HALVINGS)


def _side(p: float, h: int, w: int, least: int) -> int:
    """Window side covering about a fraction p of the h x w pixels."""
    return min(max(int(round(math.sqrt(p * h * w))), least), h, w)


def _windows(n: int, s: int, h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per point, the top-left corner of an s x s window, uniform over every position
    that fits (the paper's r, s ~ U{0, ..., w - h})."""
    top = torch.randint(0, h - s + 1, (n,), device=device)
    left = torch.randint(0, w - s + 1, (n,), device=device)
    return top, left


def _mask(top: torch.Tensor, left: torch.Tensor, s: int, h: int, w: int) -> torch.Tensor:
    """(n, 1, h, w) True inside each point's window."""
    r = torch.arange(h, device=top.device)
    c = torch.arange(w, device=top.device)
    rows = (r >= top[:, None]) & (r < top[:, None] + s)
    cols = (c >= left[:, None]) & (c < left[:, None] + s)
    return (rows[:, :, None] & cols[:, None, :])[:, None]


def _signs(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.randint(0, 2, shape, device=like.device).to(like.dtype).mul_(2).sub_(1)


def _box(v: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    return torch.minimum(torch.maximum(v, lo), hi)


# --- L-inf ------------------------------------------------------------------------------
def _linf_init(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, eps: float) -> torch.Tensor:
    """Vertical stripes: +-eps, one sign per point, channel and column."""
    n, c, _, w = x.shape
    return _box(_signs((n, c, 1, w), x) * eps, lo, hi)


def _linf_step(u: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, eps: float, p: float) -> torch.Tensor:
    """u with one random window per point set to +-eps per channel, redrawing the signs
    of the points whose proposal would not change u."""
    n, c, h, w = u.shape
    s = _side(p, h, w, 1)
    mask = _mask(*_windows(n, s, h, w, u.device), s, h, w)
    cand = u
    redraw = torch.ones(n, 1, 1, 1, dtype=torch.bool, device=u.device)
    for _ in range(_MAX_REDRAWS):
        val = _box(_signs((n, c, 1, 1), u) * eps, lo, hi)
        cand = torch.where(mask & redraw, val, cand)
        redraw = ~((cand != u) & mask).flatten(1).any(dim=1).view(-1, 1, 1, 1)
        if not bool(redraw.any()):
            break
    return cand


# --- L2 ---------------------------------------------------------------------------------
@cache
def _bump(a: int, b: int) -> torch.Tensor:
    """An a x b pseudo-Gaussian: concentric rectangles around the centre, the k-th
    weighted 1/(k+1)^2, summed; unit L2 norm."""
    d = torch.zeros(a, b, dtype=torch.float64)
    if d.numel() == 0:
        return d
    ca, cb = a // 2, b // 2
    for k in range(max(ca, cb) + 1):
        d[max(ca - k, 0) : ca + k + 1, max(cb - k, 0) : cb + k + 1] += 1.0 / (k + 1) ** 2
    return d / d.norm()


@cache
def _meta(s: int) -> torch.Tensor:
    """The paper's L2 window, s x s: a bump on the top half and its negative on the
    bottom half, unit L2 norm; returned with its transpose, shape (2, s, s)."""
    d = torch.zeros(s, s, dtype=torch.float64)
    d[: s // 2] = _bump(s // 2, s)
    d[s // 2 :] = -_bump(s - s // 2, s)
    d = d / d.norm()
    return torch.stack([d, d.t()])


def _place(patterns: torch.Tensor, top: torch.Tensor, left: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(n, 1, h, w): each point's s x s pattern at its window, zero elsewhere."""
    n, s = patterns.shape[0], patterns.shape[-1]
    ar = torch.arange(s, device=top.device)
    out = patterns.new_zeros(n, h, w)
    out[
        torch.arange(n, device=top.device)[:, None, None],
        (top[:, None] + ar)[:, :, None],
        (left[:, None] + ar)[:, None, :],
    ] = patterns
    return out[:, None]


def _meta_windows(n: int, s: int, like: torch.Tensor) -> torch.Tensor:
    """n meta windows, each transposed or not at random, as in the paper."""
    pats = _meta(s).to(device=like.device, dtype=like.dtype)
    return pats[torch.randint(0, 2, (n,), device=like.device)]


def _flat_norm(u: torch.Tensor) -> torch.Tensor:
    return u.flatten(1).norm(dim=1).view(-1, 1, 1, 1)


def _l2_init(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, eps: float) -> torch.Tensor:
    """A centred grid of meta windows of side min(h, w) // 5 (5 x 5 of them on a square
    image), each with a random sign per channel, rescaled to norm eps."""
    n, c, h, w = x.shape
    s = max(min(h, w) // 5, 1)
    rows, cols = h // s, w // s
    delta = torch.zeros_like(x)
    for i in range(rows):
        for j in range(cols):
            top = torch.full((n,), (h - rows * s) // 2 + i * s, device=x.device)
            left = torch.full((n,), (w - cols * s) // 2 + j * s, device=x.device)
            delta += _place(_meta_windows(n, s, x), top, left, h, w) * _signs((n, c, 1, 1), x)
    return _box(delta / _flat_norm(delta).clamp_min(1e-12) * eps, lo, hi)


def _l2_step(u: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, eps: float, p: float) -> torch.Tensor:
    """The paper's L2 proposal: window 1 gets a new meta window plus its old content
    (normalized), carrying, per channel, window 1's and window 2's mass and the slack to
    norm eps left by clipping; window 2 is emptied; the whole is rescaled to norm eps."""
    n, c, h, w = u.shape
    s = _side(p, h, w, 3)
    if s % 2 == 0:  # odd sides centre the bumps
        s = min(s + 1, h, w)
    t1, l1 = _windows(n, s, h, w, u.device)
    m1 = _mask(t1, l1, s, h, w)
    m2 = _mask(*_windows(n, s, h, w, u.device), s, h, w)
    sq = u * u
    slack = (eps**2 - sq.flatten(1).sum(dim=1)).clamp_min(0).view(-1, 1, 1, 1) / c
    mass = (sq * (m1 | m2)).sum(dim=(2, 3), keepdim=True)  # per point and channel
    old = u * m1 / (sq * m1).sum(dim=(2, 3), keepdim=True).sqrt().add(1e-12)
    new = _place(_meta_windows(n, s, u), t1, l1, h, w) * _signs((n, c, 1, 1), u) + old
    new = new / new.square().sum(dim=(2, 3), keepdim=True).sqrt().add(1e-12) * (slack + mass).sqrt()
    cand = torch.where(m1, new, torch.where(m2, torch.zeros_like(u), u))
    return _box(cand / _flat_norm(cand).clamp_min(1e-12) * eps, lo, hi)

"""Threat models and the two epsilon spaces.

Models carry their input normalization (mean m_c, std s_c) and take pixels x in
[0,1]. Normalized space is z = (x - m) / s. Attacks work on a perturbation u in
the *attack space*, where the threat ball is a plain ball of radius eps:

    pixel space:      delta_x = u            (scale 1)
    normalized space: delta_x = u * s_c      (scale s_c per channel)

So an L-inf ball of radius eps in normalized space is a per-channel box of radius
eps * s_c in pixel space, and an L2 ball in normalized space is an ellipsoid in
pixel space (a ball only when every s_c is equal). Clamping z to the image of
[0,1] is clamping x to [0,1], so validity is always enforced on pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from fractions import Fraction

import torch
from torch import nn

from .errors import RobustError

NORMS = ("linf", "l2", "l1")
# the norms PGD, FGSM and adversarial training step in (their direct calls and the training
# options check it); Ball itself also has L1 geometry, for APGD-L1
BALL_NORMS = ("linf", "l2")
SPACES = ("normalized", "pixel")
GEOMETRY_NORMS = ("linf", "l2", "l1")  # what Ball can start, step and project in


def parse_number(text: str | float | int, what: str = "value") -> float:
    """Accepts 0.0313, '8/255', '0.4/255' or '1e-3'; refuses inf and nan, which no
    radius, step or rate can be (and which JSON records cannot hold)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        v = float(text)
    else:
        s = str(text).strip()
        try:
            if "/" in s:
                num, den = s.split("/", 1)
                # exact for integer fractions (8/255 is the float nearest 8/255), else a float division
                v = (
                    float(Fraction(int(num), int(den)))
                    if num.strip().isdigit() and den.strip().isdigit()
                    else float(num) / float(den)
                )
            else:
                v = float(s)
        except (ValueError, ZeroDivisionError):
            raise RobustError(f"{what} '{text}' is not a number; write e.g. 0.0313 or 8/255") from None
    if not math.isfinite(v):
        raise RobustError(f"{what} must be a finite number, got {text}")
    return v


# How a step size follows from eps (and an attack's k) when none is given. Each rule
# is linear in eps, so a sweep that keeps step/eps re-derives the step at each radius.
GIVEN = "given"
STEP_RULES: dict[str, Callable[[float, int], float]] = {
    "2.5*eps/k": lambda eps, k: 2.5 * eps / k,  # Madry et al. 2018: k steps cross the ball 2.5 times
    "eps/4": lambda eps, k: eps / 4,  # a threat model alone: 2.5*eps/k at PGD-10
    "eps": lambda eps, k: eps,  # FGSM (Goodfellow et al.), free AT (Shafahi et al.)
    "1.25*eps": lambda eps, k: 1.25 * eps,  # FGSM from a random start (Wong et al. 2020)
    "2*eps": lambda eps, k: 2 * eps,  # APGD's first step, adapted afterwards (Croce & Hein 2020)
}


def _finite_positive(what: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RobustError(f"{what} must be a number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise RobustError(f"{what} must be > 0 and finite, got {value:g}")
    return float(value)


@dataclass(frozen=True)
class ThreatModel:
    """norm, radius eps and step size, both measured in ``space``.

    step_rule says where the step came from: 'given', or a rule of STEP_RULES. Without
    a step the threat takes eps/4; an AttackSpec re-derives a derived step with its
    own attack's rule (e.g. PGD's 2.5*eps/k with its k)."""

    norm: str = "linf"
    eps: float = 0.0313
    step: float | None = None
    space: str = "normalized"
    step_rule: str | None = None

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise RobustError(f"unknown norm '{self.norm}'; valid norms: {', '.join(NORMS)}")
        if self.space not in SPACES:
            raise RobustError(f"unknown eps space '{self.space}'; valid spaces: {', '.join(SPACES)}")
        object.__setattr__(self, "eps", _finite_positive("eps", self.eps))
        rule = self.step_rule
        if self.step is None:
            if rule is not None:
                raise RobustError("a step rule needs its step; use ThreatModel.derived(rule, k)")
            object.__setattr__(self, "step", STEP_RULES["eps/4"](self.eps, 1))
            object.__setattr__(self, "step_rule", "eps/4")
            return
        object.__setattr__(self, "step", _finite_positive("step size (eta)", self.step))
        if rule is None:
            object.__setattr__(self, "step_rule", GIVEN)
        elif rule != GIVEN and rule not in STEP_RULES:
            raise RobustError(f"unknown step rule '{rule}'; valid: {GIVEN}, {', '.join(STEP_RULES)}")

    @property
    def given(self) -> bool:
        """Whether the user chose the step (then no rule replaces it)."""
        return self.step_rule == GIVEN

    def derived(self, rule: str, k: int = 1) -> ThreatModel:
        """This threat with its step set by ``rule`` for an attack of ``k`` steps; a given
        step is kept."""
        if self.given:
            return self
        return replace(self, step=STEP_RULES[rule](self.eps, k), step_rule=rule)

    # --- conversions -----------------------------------------------------------------
    def scale(self, std: Sequence[float] | torch.Tensor) -> torch.Tensor:
        """Per-channel factor from attack space to pixel space."""
        std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
        return std_t if self.space == "normalized" else torch.ones_like(std_t)

    def pixel_eps(self, std: Sequence[float] | torch.Tensor) -> list[float]:
        """Per-channel pixel-space radius of the ball's bounding box (exact for L-inf;
        the ellipsoid's semi-axes for L2 in normalized space)."""
        return [float(v) for v in self.scale(std) * self.eps]

    def pixel_step(self, std: Sequence[float] | torch.Tensor) -> list[float]:
        return [float(v) for v in self.scale(std) * self.step]

    def in_space(self, space: str, std: Sequence[float] | torch.Tensor) -> ThreatModel:
        """The same ball expressed in the other space. Exact only when the ball is a
        ball in both spaces: pixel -> normalized and back needs all s_c equal."""
        if space == self.space:
            return self
        s = torch.as_tensor(std, dtype=torch.float64).flatten()
        if not torch.allclose(s, s[0].expand_as(s)):
            raise RobustError(
                f"eps cannot be converted to {space} space as one number: the per-channel std "
                f"{[round(float(v), 4) for v in s]} differs across channels; give eps in {space} space"
            )
        f = float(s[0])
        if space == "pixel":
            return replace(self, eps=self.eps * f, step=self.step * f, space="pixel")
        return replace(self, eps=self.eps / f, step=self.step / f, space="normalized")

    def describe(self, std: Sequence[float] | torch.Tensor) -> dict:
        """Record fragment: eps and step in both spaces."""
        px_eps, px_step = self.pixel_eps(std), self.pixel_step(std)
        s = [float(v) for v in torch.as_tensor(std, dtype=torch.float32).flatten()]
        if self.space == "normalized":
            norm_eps, norm_step = self.eps, self.step
        else:
            norm_eps = [self.eps / v for v in s]
            norm_step = [self.step / v for v in s]
            norm_eps = norm_eps[0] if len(set(round(v, 12) for v in norm_eps)) == 1 else norm_eps
            norm_step = norm_step[0] if len(set(round(v, 12) for v in norm_step)) == 1 else norm_step
        px_eps_v = px_eps[0] if len(set(round(v, 12) for v in px_eps)) == 1 else px_eps
        px_step_v = px_step[0] if len(set(round(v, 12) for v in px_step)) == 1 else px_step
        return {
            "norm": self.norm,
            "space": self.space,
            "eps": self.eps,
            "step": self.step,
            "eps_normalized": norm_eps,
            "eps_pixel": px_eps_v,
            "step_normalized": norm_step,
            "step_pixel": px_step_v,
            "eps_pixel_255": [round(v * 255, 4) for v in px_eps]
            if isinstance(px_eps_v, list)
            else round(px_eps_v * 255, 4),
            "step_rule": self.step_rule,
        }

    def label(self, std: Sequence[float] | torch.Tensor) -> str:
        """Short human label, e.g. 'linf eps 0.0313 norm = 0.0157 px (3.99/255)'."""
        d = self.describe(std)
        px = d["eps_pixel"]
        if isinstance(px, list):
            px_s = "[" + ", ".join(f"{v:.4g}" for v in px) + "] px"
        else:  # x/255 reads naturally only for a per-pixel bound (L-inf)
            px_s = f"{px:.4g} px" + (f" ({px * 255:.3g}/255)" if self.norm == "linf" else "")
        ne = d["eps_normalized"]
        ne_s = f"{ne:.4g}" if not isinstance(ne, list) else "[" + ", ".join(f"{v:.4g}" for v in ne) + "]"
        return f"{self.norm} eps {ne_s} norm = {px_s}"

    def to_dict(self) -> dict:
        # a given step leaves the rule out: records made before rules existed (all of
        # them given steps) stay equal to today's
        d = asdict(self)
        if self.given:
            d.pop("step_rule")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ThreatModel:
        return cls(**{k: d[k] for k in ("norm", "eps", "step", "space", "step_rule") if k in d})

    def with_eps(self, eps: float) -> ThreatModel:
        """Same threat at another radius, keeping the step's ratio to eps: a given step
        scales with eps, and a derived one is its rule at the new radius."""
        eps = _finite_positive("eps", eps)
        return replace(self, eps=eps, step=self.step * eps / self.eps)


# --- geometry in attack space -----------------------------------------------------------
def _flat_norm(u: torch.Tensor) -> torch.Tensor:
    return u.flatten(1).norm(p=2, dim=1).view(-1, *([1] * (u.dim() - 1)))


def _flat_l1(u: torch.Tensor) -> torch.Tensor:
    return u.flatten(1).abs().sum(dim=1).view(-1, *([1] * (u.dim() - 1)))


def l1_random(shape: torch.Size, eps: float, device, dtype=torch.float32) -> torch.Tensor:
    """Uniform in the L1 ball of radius eps: Laplace directions normalized on the L1
    sphere are uniform on it, and a radius ~ U^(1/d) fills the ball uniformly."""
    lap = -torch.rand(shape, device=device, dtype=dtype).clamp_min(1e-12).log()
    lap = lap * (torch.rand(shape, device=device, dtype=dtype) < 0.5).to(dtype).mul_(2).sub_(1)
    d = lap[0].numel()
    r = torch.rand((shape[0],) + (1,) * (len(shape) - 1), device=device, dtype=dtype) ** (1.0 / d)
    return lap / _flat_l1(lap).clamp_min(1e-12) * r * eps


def l1_sparse_step(grad: torch.Tensor, sparsity: float | torch.Tensor) -> torch.Tensor:
    """The L1 steepest-ascent direction of APGD-L1 (Croce & Hein 2021, "Mind the box"):
    sign(grad) on the coordinates whose |grad| reaches the top ``sparsity`` fraction
    (per example when a tensor), zero elsewhere, scaled to L1 norm 1."""
    n = grad.shape[0]
    a = grad.abs().flatten(1)
    d = a.shape[1]
    q = torch.as_tensor(sparsity, dtype=torch.float32, device=grad.device).expand(n)
    idx = ((1.0 - q) * d).clamp(0, d - 1).long()  # the threshold's rank in ascending order
    thr = a.sort(dim=1).values.gather(1, idx[:, None])
    s = grad.sign() * (grad.abs() >= thr.view(-1, *([1] * (grad.dim() - 1)))).to(grad.dtype)
    return s / (_flat_l1(s) + 1e-10)


def l1_box_project(
    u: torch.Tensor, lo: torch.Tensor | None = None, hi: torch.Tensor | None = None, eps: float = 1.0
) -> torch.Tensor:
    """Exact Euclidean projection of each example of u onto {v: ||v||_1 <= eps, lo <= v <= hi}
    (lo <= 0 <= hi element-wise; None: no box), as in "Mind the box" (Croce & Hein 2021).

    The solution is v_i = sign(u_i) min(max(|u_i| - lam, 0), b_i), b_i the box bound on
    u_i's side, with the smallest lam >= 0 that brings ||v||_1 to eps. ||v(lam)||_1 is
    piecewise linear with breakpoints max(|u_i| - b_i, 0) (coordinate i starts shrinking)
    and |u_i| (it reaches 0): sorting them gives lam exactly. Computed in float64, so the
    cumulative sums over every pixel stay exact to far below float32 rounding."""
    shape, dtype = u.shape, u.dtype
    n = shape[0]
    a = u.detach().flatten(1).double().abs()
    pos = u.flatten(1) > 0
    if lo is None:
        b = torch.full_like(a, float("inf"))
    else:
        hi_f = hi.expand(shape).flatten(1).double()
        lo_f = lo.expand(shape).flatten(1).double()
        b = torch.where(pos, hi_f, -lo_f).clamp_min(0.0)
    start = (a - b).clamp_min(0.0)
    mass0 = torch.minimum(a, b).sum(dim=1)  # ||v(0)||_1: u clipped to the box
    lam = torch.zeros(n, dtype=torch.float64, device=u.device)
    over = mass0 > eps
    if bool(over.any()):
        rows = over.nonzero().squeeze(1)
        pts = torch.cat((start[rows], a[rows]), dim=1)
        w = torch.cat((torch.ones_like(start[rows]), -torch.ones_like(a[rows])), dim=1)
        pts, order = pts.sort(dim=1)
        active = w.gather(1, order).cumsum(dim=1)  # coordinates shrinking just after each breakpoint
        drop = active[:, :-1] * pts.diff(dim=1)
        mass = mass0[rows, None] - torch.cat((torch.zeros_like(pts[:, :1]), drop.cumsum(dim=1)), dim=1)
        j = (mass <= eps).to(torch.int8).argmax(dim=1).clamp_min(1)  # first breakpoint at or under eps
        p0 = pts.gather(1, (j - 1)[:, None]).squeeze(1)
        m0 = mass.gather(1, (j - 1)[:, None]).squeeze(1)
        act = active.gather(1, (j - 1)[:, None]).squeeze(1).clamp_min(1.0)
        lam[rows] = p0 + (m0 - eps) / act
    v = torch.minimum((a - lam[:, None]).clamp_min(0.0), b)
    v = torch.where(pos, v, -v).to(dtype)
    v = v * (eps / v.abs().sum(dim=1, keepdim=True).clamp_min(1e-30)).clamp(max=1.0)  # float32 rounding
    return v.reshape(shape) if u.is_contiguous() else torch.empty_like(u).copy_(v.reshape(shape))


class Ball:
    """The threat ball bound to a model's std: random start, ascent step and
    projection (MadryLab's init/step/project), all in attack space u."""

    def __init__(self, threat: ThreatModel, std: torch.Tensor, device: torch.device, dtype=torch.float32):
        self.threat = threat
        self.scale = threat.scale(std).to(device=device, dtype=dtype).view(1, -1, 1, 1)

    def to_pixel(self, u: torch.Tensor) -> torch.Tensor:
        return u * self.scale

    def from_pixel(self, d: torch.Tensor) -> torch.Tensor:
        return d / self.scale

    def _require_geometry(self) -> None:
        # the L2 formulas below would otherwise run silently for any other norm
        if self.threat.norm not in GEOMETRY_NORMS:
            raise RobustError(
                f"the {self.threat.norm} ball has no random start, step or projection here "
                f"(only {', '.join(GEOMETRY_NORMS)})"
            )

    def random(self, shape: torch.Size, device, dtype=torch.float32) -> torch.Tensor:
        self._require_geometry()
        eps = self.threat.eps
        if self.threat.norm == "linf":  # drawn as torchattacks does, so equal seeds give equal starts
            return torch.empty(shape, device=device, dtype=dtype).uniform_(-eps, eps)
        if self.threat.norm == "l1":
            return l1_random(shape, eps, device, dtype)
        # uniform in the L2 ball: direction from a Gaussian, radius ~ U^(1/d)
        g = torch.randn(shape, device=device, dtype=dtype)
        d = g[0].numel()
        r = torch.rand((shape[0],) + (1,) * (len(shape) - 1), device=device, dtype=dtype) ** (1.0 / d)
        return g / _flat_norm(g).clamp_min(1e-12) * r * eps

    def ascend(
        self, u: torch.Tensor, grad_u: torch.Tensor, step: float | torch.Tensor, sparsity: float | torch.Tensor = 0.2
    ) -> torch.Tensor:
        """One steepest-ascent step of L-norm ``step`` (per example when a tensor). L1
        moves only the top ``sparsity`` fraction of coordinates by |gradient|, as
        APGD-L1 does (0.2 is its starting fraction)."""
        self._require_geometry()
        if self.threat.norm == "linf":
            return u + step * grad_u.sign()
        if self.threat.norm == "l1":
            return u + step * l1_sparse_step(grad_u, sparsity)
        return u + step * grad_u / _flat_norm(grad_u).clamp_min(1e-12)

    def project(self, u: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """Onto the ball. L1 with ``x``: the exact projection onto the ball intersected
        with the valid-pixel box (clamping after an L1 projection would leave mass that
        the box cut off unspent); L-inf and L2 leave the box to ``apply``'s clamp."""
        self._require_geometry()
        eps = self.threat.eps
        if self.threat.norm == "linf":
            return u.clamp(-eps, eps)
        if self.threat.norm == "l1":
            lo, hi = self.u_box(x) if x is not None else (None, None)
            return l1_box_project(u, lo, hi, eps)
        n = _flat_norm(u)
        return u * torch.clamp(eps / n.clamp_min(1e-12), max=1.0)

    def apply(self, x: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected u -> valid pixels; returns (x_adv, u) with u re-read from the
        clamped pixels so that the ball and [0,1] both hold exactly."""
        u = self.project(u, x)
        x_adv = (x + self.to_pixel(u)).clamp(0.0, 1.0)
        return x_adv, self.from_pixel(x_adv - x)

    def u_box(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The valid-pixel box [0,1] around x in attack space: per element (lo, hi)."""
        scale = self.scale.to(x.dtype)
        return (0.0 - x) / scale, (1.0 - x) / scale

    def box(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L-inf only: the ball around x intersected with [0,1], as per-pixel bounds
        (lo, hi). Clamping to them equals ``apply``'s project-then-clamp."""
        r = self.threat.eps * self.scale
        return (x - r).clamp_(min=0.0), (x + r).clamp_(max=1.0)

    def norms(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-example size of the perturbation in attack space."""
        u = self.from_pixel(x_adv - x)
        if self.threat.norm == "linf":
            return u.flatten(1).abs().amax(dim=1)
        if self.threat.norm == "l1":
            return u.flatten(1).abs().sum(dim=1)
        return u.flatten(1).norm(p=2, dim=1)


def find_std(model: nn.Module, channels: int) -> torch.Tensor:
    """The std of the model's own Normalize layer (or ones if it has none)."""
    std = getattr(model, "std", None)
    if isinstance(std, torch.Tensor):
        return std.detach().flatten().float().cpu()
    for m in model.modules():
        s = getattr(m, "std", None)
        if isinstance(s, torch.Tensor) and s.numel() in (1, channels):
            return s.detach().flatten().float().cpu().expand(channels).clone()
    return torch.ones(channels)

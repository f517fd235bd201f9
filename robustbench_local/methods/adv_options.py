"""The options of the adversarial training methods (``spec.adv_kwargs``): their
defaults, their checks and how they resolve into one dict per method, the check that
the radius does not cover every image, and the threat's fields in records. Errors name the key path
``train.adv_kwargs.<option>`` (the CLI shows its flag).

Options shared by every method (COMMON_OPTIONS):

- eps: radius, default 0.0313 in ``eps_space`` units; eps_space 'normalized' (default,
  the seeds' convention: 0.0313 = 0.0157 pixels with std 0.5) or 'pixel'; norm 'linf'
  or 'l2'.
- eta: step size, same units as eps; default: the method's STEP_RULE from eps (and k):
  2.5 * eps / k for pgd and trades (Madry et al. 2018; eps/4 at k = 10), 1.25 * eps for
  fgsm-rs (Wong et al. 2020), eps for free (Shafahi et al. 2019). A given eta with
  k * eta < eps (pgd, trades, robust validation) is warned about once and listed under
  ``warnings`` in the threat record.
- random_start: start the attack at a uniform point of the ball.
- attack_bn: 'eval' (default): the attack runs with the model in eval mode, so batch
  norm uses its running statistics and dropout is off (MadryLab, TRADES' reference
  code); 'train': batch statistics, as Wong et al.'s code, and then the attack's
  forward passes also update the running statistics.
- eps_warmup E: epoch e (0-based) trains at eps * min(1, (e+1)/E); the step size is
  scaled with it. 0 = off.
- early_stop: stop when the catastrophic-overfitting guard fires (default on for
  fgsm-rs only).
- val_n, val_k, val_eta: robust validation is PGD-val_k (default 10) with step val_eta
  (default 2.5 * eps / val_k, Madry et al.'s rule, so the attack can cross the ball
  whatever the training step) at the full training eps, on a fixed subset of val_n
  (default 1000) validation images.

A method adds its own options in ``EXTRA`` (name -> (check(key, value), default)) and
refuses shared ones in ``REFUSED`` (name -> why)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..threat import BALL_NORMS, NORMS, SPACES, STEP_RULES, ThreatModel
from ..values import Key, ValueProblem, boolean, choice, integer, number

DEFAULT_EPS = 0.0313
DEFAULT_VAL_N = 1000
DEFAULT_VAL_K = 10
ATTACK_BN = ("eval", "train")
VAL_STEP_RULE = "2.5*eps/k"  # robust validation: Madry et al.'s rule, so it crosses the ball whatever the training step
COMMON_OPTIONS = (
    "eps",
    "eta",
    "eps_space",
    "norm",
    "random_start",
    "attack_bn",
    "eps_warmup",
    "early_stop",
    "val_n",
    "val_k",
    "val_eta",
)

Check = Callable[[Key, Any], Any]
EPS_KEY: Key = ("train", "adv_kwargs", "eps")  # the radius the training attacks use


def option_key(option: str) -> Key:
    """The key path of an adversarial option, as errors name it."""
    return EPS_KEY[:2] + (option,)


def steps(minimum: int = 1) -> Check:
    """A check for a count of steps or replays: an integer >= ``minimum``."""
    return lambda key, value: integer(key, value, minimum=minimum)


def weight(key: Key, value: Any) -> float:
    """A weight in (0, 1]."""
    return number(key, value, low=0.0, low_open=True, high=1.0)


def resolve(
    method: str,
    given: Mapping[str, Any],
    spec,
    *,
    extra: Mapping[str, tuple[Check, Any]],
    refused: Mapping[str, str],
    step_rule: str,
    early_stop: bool,
) -> dict[str, Any]:
    """Every option of adversarial method ``method`` with its checked value, defaults
    filled in: the shared ones, then ``extra``'s, then eta (its default follows
    ``step_rule`` once k is known). ``spec`` gives the epochs (for eps_warmup)."""
    for name, why in refused.items():
        if name in given:
            raise ValueProblem(option_key(name), f"not taken by adversarial method '{method}': {why}")
    allowed = COMMON_OPTIONS + tuple(extra)
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueProblem(
            option_key(unknown[0]),
            f"adversarial method '{method}' does not take {', '.join(unknown)}; it takes {', '.join(allowed)}",
        )
    o: dict[str, Any] = {}
    o["norm"] = choice(option_key("norm"), given.get("norm", "linf"), NORMS)
    if o["norm"] not in BALL_NORMS:  # the training attacks step and project in these norms only
        raise ValueProblem(
            option_key("norm"),
            f"adversarial training supports {' and '.join(BALL_NORMS)}, not {o['norm']}; "
            f"measure {o['norm']} robustness with robust eval --attack autoattack --norm {o['norm']}",
        )
    o["eps_space"] = choice(option_key("eps_space"), given.get("eps_space", "normalized"), SPACES)
    o["eps"] = number(option_key("eps"), given.get("eps", DEFAULT_EPS), low=0.0, low_open=True)
    o["eta"] = None  # set below, once k is known
    o["random_start"] = boolean(option_key("random_start"), given.get("random_start", True), words=True)
    o["attack_bn"] = choice(option_key("attack_bn"), given.get("attack_bn", "eval"), ATTACK_BN)
    o["eps_warmup"] = integer(option_key("eps_warmup"), given.get("eps_warmup", 0), minimum=0)
    if o["eps_warmup"] > spec.epochs:
        raise ValueProblem(
            option_key("eps_warmup"),
            f"{o['eps_warmup']} epochs must be at most train.epochs ({spec.epochs}), "
            "or eps would never reach its full value",
        )
    o["early_stop"] = boolean(option_key("early_stop"), given.get("early_stop", early_stop), words=True)
    o["val_n"] = integer(option_key("val_n"), given.get("val_n", DEFAULT_VAL_N), minimum=1)
    o["val_k"] = integer(option_key("val_k"), given.get("val_k", DEFAULT_VAL_K), minimum=1)
    val_eta = given.get("val_eta")
    o["val_eta"] = (
        STEP_RULES[VAL_STEP_RULE](o["eps"], o["val_k"])
        if val_eta is None
        else number(option_key("val_eta"), val_eta, low=0.0, low_open=True)
    )
    for name, (check, default) in extra.items():
        o[name] = check(option_key(name), given.get(name, default))
    eta = given.get("eta")
    o["eta"] = (
        STEP_RULES[step_rule](o["eps"], int(o.get("k", 1)))
        if eta is None
        else number(option_key("eta"), eta, low=0.0, low_open=True)
    )
    return o


def normalization_std(normalize: str) -> float | None:
    """The std every channel gets from a named normalization, when it does not depend
    on the data ('seed': 0.5, 'none': 1); None for 'dataset'."""
    return {"seed": 0.5, "none": 1.0}.get(normalize)


def check_radius(
    threat: ThreatModel,
    std: Sequence[float] | torch.Tensor,
    input_shape: Sequence[int] | None = None,
    key: Key = EPS_KEY,
) -> None:
    """Refuse a ball that holds every image: an L-inf radius of 1 or more pixels in a
    channel lets the attack set that channel to anything; an L2 ball whose smallest
    pixel semi-axis reaches sqrt(C*H*W) (the diameter of [0,1]^d) holds every image."""
    radii = threat.pixel_eps(std)
    if threat.norm == "linf":
        if max(radii) >= 1.0:
            raise ValueProblem(
                key,
                f"{threat.eps:g} ({threat.space} space) is {max(radii):.4g} in pixels: an L-inf ball that "
                f"wide holds every image; pixel-space L-inf radii must be < 1 (e.g. 8/255 = 0.0314)",
            )
    elif input_shape is not None:
        diameter = math.sqrt(math.prod(int(d) for d in input_shape))
        if min(radii) >= diameter:
            raise ValueProblem(
                key,
                f"{threat.eps:g} ({threat.space} space) is an L2 radius of {min(radii):.4g} pixels, at "
                f"least the diameter {diameter:.4g} of the image space: the ball holds every image",
            )


def threat_fields(t: ThreatModel, std: torch.Tensor | None) -> dict[str, Any]:
    """The threat's record fields, eps and step in both spaces; with no std yet ('dataset'
    normalization before the model is seen) only the given space is filled in."""
    if std is not None:
        d = t.describe(std)
        d["std"] = [float(v) for v in std]
        return d
    own = (
        {"eps_normalized": t.eps, "step_normalized": t.step}
        if t.space == "normalized"
        else {"eps_pixel": t.eps, "step_pixel": t.step, "eps_pixel_255": round(t.eps * 255, 4)}
    )
    return {
        "norm": t.norm,
        "space": t.space,
        "eps": t.eps,
        "step": t.step,
        "eps_normalized": None,
        "eps_pixel": None,
        "step_normalized": None,
        "step_pixel": None,
        "eps_pixel_255": None,
        "step_rule": t.step_rule,
        "std": None,
        **own,
    }

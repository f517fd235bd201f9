"""What every adversarial training method shares: its options and threat model,
batch-norm behaviour during the attack, the eps warm-up, robust validation, the
catastrophic-overfitting guard and the threat record.

A method (pgd_at.py, trades.py, fgsm_rs.py, free_at.py) subclasses ``AdversarialMethod`` and
writes only ``__call__``: prepare the batch with the base method, call
``self.attack(...)`` for the inner maximisation, and return the outer loss. The
class itself is the factory registered in ``ADV_METHODS``; building it only checks
options (it runs whenever a TrainSpec is built).

Options (``spec.adv_kwargs``; the CLI flag in brackets):

- eps [--eps] radius, default 0.0313 in ``eps_space`` units; eps_space [--eps-space]
  'normalized' (default, the seeds' convention: 0.0313 = 0.0157 pixels with
  std 0.5) or 'pixel'; norm [--norm] 'linf' or 'l2'.
- eta [--eta] step size, same units as eps; default: the method's STEP_RULE from eps
  (and k): 2.5 * eps / k for pgd and trades (Madry et al. 2018; eps/4 at k = 10),
  1.25 * eps for fgsm-rs (Wong et al. 2020), eps for free (Shafahi et al. 2019).
  A given eta with k * eta < eps (pgd, trades, robust validation) is warned about
  once and listed under ``warnings`` in the threat record.
- random_start [--random-start] start the attack at a uniform point of the ball.
- attack_bn [--attack-bn] 'eval' (default): the attack runs with the model in eval
  mode, so batch norm uses its running statistics and dropout is off (MadryLab,
  TRADES' reference code); 'train': batch statistics, as Wong et al.'s code, and
  then the attack's forward passes also update the running statistics.
- eps_warmup [--eps-warmup] E: epoch e (0-based) trains at eps * min(1, (e+1)/E);
  the step size is scaled with it. 0 = off.
- early_stop [--early-stop] stop when the catastrophic-overfitting guard fires
  (default on for fgsm-rs only).
- val_n, val_k, val_eta [--val-robust-n/-k/-eta]: robust validation is PGD-val_k
  (default 10) with step val_eta (default 2.5 * eps / val_k, Madry et al.'s rule, so
  the attack can cross the ball whatever the training step) at the full training
  eps, on a fixed subset of val_n (default 1000) validation images.

Robust validation accuracy counts a point as robust when it is classified
correctly clean and PGD never fools it; it is the column ``val_robust_acc`` and
picks best.pth (``selection``). The test split is never looked at.
"""

from __future__ import annotations

import logging
import math
import time
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..attacks import attack_mode, perturb, pgd
from ..checks import steps_reach_eps
from ..errors import RobustError
from ..threat import BALL_NORMS, GIVEN, NORMS, SPACES, STEP_RULES, Ball, ThreatModel, find_std, parse_number
from .base import Batch, TrainMethod, ValMetric

log = logging.getLogger(__name__)

DEFAULT_EPS = 0.0313
DEFAULT_VAL_N = 1000
DEFAULT_VAL_K = 10
VAL_SEED = 0  # the validation subset and the validation attack's random starts
VAL_BATCH = 256
ROBUST_COLUMN = "val_robust_acc"
GUARD_RATIO = 0.5  # collapse: robust accuracy below this share of its best so far ...
GUARD_FLOOR = 0.05  # ... or below this absolute level (after having been higher)
ATTACK_BN = ("eval", "train")
VAL_STEP_RULE = "2.5*eps/k"  # robust validation: Madry et al.'s rule, so it crosses the ball whatever the training step

# option -> CLI flag, for error messages that name what the user typed
FLAGS = {
    "eps": "--eps",
    "eta": "--eta",
    "k": "--k",
    "eps_space": "--eps-space",
    "norm": "--norm",
    "random_start": "--random-start",
    "adv_weight": "--adv-weight",
    "beta": "--beta",
    "attack_bn": "--attack-bn",
    "eps_warmup": "--eps-warmup",
    "early_stop": "--early-stop",
    "val_n": "--val-robust-n",
    "val_k": "--val-robust-k",
    "val_eta": "--val-robust-eta",
    "replays": "--replays",
}
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


# ----------------------------------------------------------------------------- option checks
def _flag(name: str) -> str:
    return FLAGS.get(name, name)


def check_number(
    name: str, value: Any, *, low: float | None = None, low_open: bool = False, high: float | None = None
) -> float:
    """A finite number ('8/255' strings accepted) within the bounds."""
    if isinstance(value, bool):
        raise RobustError(f"{_flag(name)} must be a number, got {value!r}")
    if isinstance(value, str):
        v = parse_number(value, _flag(name))
    else:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise RobustError(f"{_flag(name)} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise RobustError(f"{_flag(name)} must be finite, got {value!r}")
    if low is not None and (v < low or (low_open and v == low)):
        raise RobustError(f"{_flag(name)} must be {'>' if low_open else '>='} {low:g}, got {v:g}")
    if high is not None and v > high:
        raise RobustError(f"{_flag(name)} must be <= {high:g}, got {v:g}")
    return v


def check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool):
        raise RobustError(f"{_flag(name)} must be an integer, got {value!r}")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise RobustError(f"{_flag(name)} must be an integer, got {value!r}") from None
    if not f.is_integer():
        raise RobustError(f"{_flag(name)} must be an integer, got {value!r}")
    if f < minimum:
        raise RobustError(f"{_flag(name)} must be >= {minimum}, got {int(f)}")
    return int(f)


def check_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("on", "true", "yes", "1", "off", "false", "no", "0"):
        return value.lower() in ("on", "true", "yes", "1")
    raise RobustError(f"{_flag(name)} must be true or false, got {value!r}")


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise RobustError(f"unknown {_flag(name)} {value!r}; valid: {', '.join(choices)}")
    return value


def normalization_std(normalize: str) -> float | None:
    """The std every channel gets from a named normalization, when it does not depend
    on the data ('seed': 0.5, 'none': 1); None for 'dataset'."""
    return {"seed": 0.5, "none": 1.0}.get(normalize)


def check_radius(
    threat: ThreatModel, std: Sequence[float] | torch.Tensor, input_shape: Sequence[int] | None = None
) -> None:
    """Refuse a ball that holds every image: an L-inf radius of 1 or more pixels in a
    channel lets the attack set that channel to anything; an L2 ball whose smallest
    pixel semi-axis reaches sqrt(C*H*W) (the diameter of [0,1]^d) holds every image."""
    radii = threat.pixel_eps(std)
    if threat.norm == "linf":
        if max(radii) >= 1.0:
            raise RobustError(
                f"--eps {threat.eps:g} ({threat.space} space) is {max(radii):.4g} in pixels: an L-inf ball that "
                f"wide holds every image; pixel-space L-inf radii must be < 1 (e.g. 8/255 = 0.0314)"
            )
    elif input_shape is not None:
        diameter = math.sqrt(math.prod(int(d) for d in input_shape))
        if min(radii) >= diameter:
            raise RobustError(
                f"--eps {threat.eps:g} ({threat.space} space) is an L2 radius of {min(radii):.4g} pixels, at "
                f"least the diameter {diameter:.4g} of the image space: the ball holds every image"
            )


def sync(device: torch.device) -> None:
    # attack vs update time is measured on the host; queued GPU work must be done first
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# ----------------------------------------------------------------------------- the guard
def collapse(
    history: Sequence[Mapping[str, Any]],
    *,
    column: str = ROBUST_COLUMN,
    clean: str = "val_acc",
    ratio: float = GUARD_RATIO,
    floor: float = GUARD_FLOOR,
) -> str | None:
    """Whether the LAST row of ``history`` shows catastrophic overfitting; returns a
    description if so, else None. Pure: rows may come from history.csv (strings).

    It fires at epoch t (t >= 2) when robust accuracy r_t has collapsed, i.e.
    r_t < ratio * max(r_1..r_{t-1}) or r_t < floor while the best so far was higher,
    AND clean accuracy kept rising: val_acc_t >= val_acc_{t-1}. The second condition
    separates catastrophic overfitting (the model gets better on clean data while
    the attack stops working on it) from a run that is simply diverging."""
    if len(history) < 2:
        return None
    rows = [
        (float(r[column]), float(r[clean]), r.get("epoch"))
        for r in history
        if r.get(column) not in (None, "") and r.get(clean) not in (None, "")
    ]
    if len(rows) < 2 or rows[-1][2] != history[-1].get("epoch"):
        return None
    r_t, c_t, epoch = rows[-1]
    r_prev = [r for r, _, _ in rows[:-1] if not math.isnan(r)]
    if math.isnan(r_t) or not r_prev:
        return None
    best = max(r_prev)
    best_epoch = next(e for r, _, e in rows[:-1] if r == best)
    collapsed = r_t < ratio * best or (r_t < floor and best > r_t)
    c_prev = rows[-2][1]
    if not collapsed or not c_t >= c_prev:
        return None
    why = f"below {ratio:g} x its best" if r_t < ratio * best else f"under {floor:g}"
    return (
        f"catastrophic overfitting at epoch {epoch}: {column} {r_t:.4f} fell {why} ({best:.4f} at epoch "
        f"{best_epoch}) while val_acc rose {c_prev:.4f} -> {c_t:.4f}"
    )


def guard_epochs(history: Sequence[Mapping[str, Any]], **kwargs) -> list:
    """Epochs at which ``collapse`` fires, scanning a whole recorded history."""
    return [history[i].get("epoch") for i in range(len(history)) if collapse(history[: i + 1], **kwargs)]


# ----------------------------------------------------------------------------- the wrapper base
class AdversarialMethod(TrainMethod):
    """Base of the adversarial wrappers. Subclasses set ``name``, ``EXTRA`` (their own
    options: name -> (check, default)) and write ``inner(model, batch) -> (x_adv,
    seconds)``, the inner maximisation on a prepared batch, and ``__call__``, the
    outer loss."""

    name = ""
    selection = ROBUST_COLUMN
    STEP_RULE = "2.5*eps/k"  # how eta follows from eps and k when not given (threat.STEP_RULES)
    STEPS_MUST_REACH = True  # k steps of a given eta must reach eps (not so for one-step or replayed attacks)
    EXTRA: dict[str, tuple[Callable[[str, Any], Any], Any]] = {}
    EARLY_STOP_DEFAULT = False
    REFUSED: dict[str, str] = {}  # option -> why this method does not take it

    def __init__(self, base: TrainMethod, spec):
        self.base = base
        self.options = self._resolve(dict(spec.adv_kwargs), spec)
        o = self.options
        for key, value in o.items():
            setattr(self, key, value)
        given = {key: key in spec.adv_kwargs for key in ("eta", "val_eta")}
        self.threat_model = ThreatModel(
            norm=o["norm"],
            eps=o["eps"],
            step=o["eta"],
            space=o["eps_space"],
            step_rule=GIVEN if given["eta"] else self.STEP_RULE,
        )
        self.val_threat = ThreatModel(
            norm=o["norm"],
            eps=o["eps"],
            step=o["val_eta"],
            space=o["eps_space"],
            step_rule=GIVEN if given["val_eta"] else VAL_STEP_RULE,
        )
        # std is fixed by the normalization for 'seed'/'none'; for 'dataset' it is read
        # from the model at first use (bind)
        known = normalization_std(spec.model.normalize)
        self._std: torch.Tensor | None = None if known is None else torch.tensor([known])
        if self._std is not None:
            check_radius(self.threat_model, self._std)
        self._input_shape: tuple[int, ...] | None = None
        self._record: dict | None = None
        self._factor = 1.0  # eps warm-up factor of the current epoch
        self._val_subset: tuple[Any, Any] | None = None  # (split, its fixed subset)

    # --- options -----------------------------------------------------------------------
    def _resolve(self, given: dict, spec) -> dict:
        for key, why in self.REFUSED.items():
            if key in given:
                raise RobustError(f"--adv {self.name} does not take {_flag(key)}: {why}")
        allowed = COMMON_OPTIONS + tuple(self.EXTRA)
        unknown = sorted(set(given) - set(allowed))
        if unknown:
            raise RobustError(
                f"adversarial method '{self.name}' does not take {', '.join(unknown)}; it takes {', '.join(allowed)}"
            )
        o: dict[str, Any] = {}
        o["norm"] = check_choice("norm", given.get("norm", "linf"), NORMS)
        if o["norm"] not in BALL_NORMS:  # the training attacks step and project in these norms only
            raise RobustError(
                f"adversarial training supports --norm {' and '.join(BALL_NORMS)}, not {o['norm']}; "
                f"measure {o['norm']} robustness with robust eval --attack autoattack --norm {o['norm']}"
            )
        o["eps_space"] = check_choice("eps_space", given.get("eps_space", "normalized"), SPACES)
        o["eps"] = check_number("eps", given.get("eps", DEFAULT_EPS), low=0.0, low_open=True)
        o["eta"] = None  # set below, once k is known
        o["random_start"] = check_bool("random_start", given.get("random_start", True))
        o["attack_bn"] = check_choice("attack_bn", given.get("attack_bn", "eval"), ATTACK_BN)
        o["eps_warmup"] = check_int("eps_warmup", given.get("eps_warmup", 0), 0)
        if o["eps_warmup"] > spec.epochs:
            raise RobustError(
                f"--eps-warmup ({o['eps_warmup']} epochs) must be at most --epochs ({spec.epochs}), "
                "or eps would never reach its full value"
            )
        o["early_stop"] = check_bool("early_stop", given.get("early_stop", self.EARLY_STOP_DEFAULT))
        o["val_n"] = check_int("val_n", given.get("val_n", DEFAULT_VAL_N), 1)
        o["val_k"] = check_int("val_k", given.get("val_k", DEFAULT_VAL_K), 1)
        val_eta = given.get("val_eta")
        o["val_eta"] = (
            STEP_RULES[VAL_STEP_RULE](o["eps"], o["val_k"])
            if val_eta is None
            else check_number("val_eta", val_eta, low=0.0, low_open=True)
        )
        for key, (check, default) in self.EXTRA.items():
            o[key] = check(key, given.get(key, default))
        eta = given.get("eta")
        o["eta"] = (
            STEP_RULES[self.STEP_RULE](o["eps"], int(o.get("k", 1)))
            if eta is None
            else check_number("eta", eta, low=0.0, low_open=True)
        )
        self.check_combination(o, spec)
        return o

    def check_combination(self, options: dict, spec) -> None:
        """Subclass hook: refuse option combinations the method cannot honour."""

    def config(self) -> dict:
        return dict(self.options)

    # --- the base method's pieces ------------------------------------------------------
    def prepare(self, x: torch.Tensor, y: torch.Tensor) -> Batch:
        return self.base.prepare(x, y)

    def criterion(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.base.criterion(logits, y)

    def batch_criterion(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.base.batch_criterion(logits, batch)

    # --- the model's normalization -------------------------------------------------------
    def bind(self, model: nn.Module, image_shape: Sequence[int] | None = None) -> None:
        """Read the model's std (once) and the image shape (C, H, W): checks the radius
        in pixels and completes the threat record. ``model`` may be a wrapper (fit's
        training forward): the std is found on its Normalize layer."""
        if self._input_shape is not None:
            return
        shape = image_shape if image_shape is not None else getattr(model, "input_shape", None)
        if shape is None:
            raise ValueError("bind() needs the image shape (C, H, W) when the model does not carry input_shape")
        self._input_shape = tuple(int(d) for d in shape)
        self._std = find_std(model, self._input_shape[0])
        check_radius(self.threat_model, self._std, self._input_shape)
        if self._record is not None:
            self._record.update(self._describe())

    @property
    def current_threat(self) -> ThreatModel:
        """The threat of this epoch (smaller during the eps warm-up)."""
        if self._factor >= 1.0:
            return self.threat_model
        return self.threat_model.with_eps(self.threat_model.eps * self._factor)

    def attack(
        self,
        model: nn.Module,
        x: torch.Tensor,
        loss_fn: Callable[..., torch.Tensor],
        aux: Sequence[torch.Tensor] = (),
        *,
        steps: int,
        random_start: bool | None = None,
        init: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, float]:
        """The inner maximisation at this epoch's threat: ``steps`` steps ascending
        ``loss_fn(logits, *aux)`` (per example) from a random start (or ``init``, in
        attack space), in the chosen batch-norm mode. Returns (x_adv, seconds)."""
        self.bind(model, x.shape[1:])
        threat = self.current_threat
        sync(x.device)
        start = time.perf_counter()
        with attack_mode(model, train_mode=self.attack_bn == "train"):
            x_adv = perturb(
                model,
                x,
                None,
                threat,
                steps=steps,
                step_size=threat.step,
                random_start=self.random_start if random_start is None else random_start,
                loss_fn=loss_fn,
                aux=tuple(aux),
                init=init,
            )
        sync(x.device)
        return x_adv, time.perf_counter() - start

    @abstractmethod
    def inner(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, float]:
        """The adversarial inputs for a prepared batch and the seconds they took."""

    def attack_scale(self, x: torch.Tensor) -> torch.Tensor:
        """Per-channel factor from attack space to pixels, shaped (1, C, 1, 1)."""
        return self.threat_model.scale(self._std.expand(x.shape[1])).to(x).view(1, -1, 1, 1)

    # --- hooks for fit -------------------------------------------------------------------
    def start_epoch(self, epoch: int, epochs: int) -> None:
        e = self.eps_warmup
        self._factor = 1.0 if e == 0 else min(1.0, (epoch + 1) / e)

    def validation_metrics(self) -> list[ValMetric]:
        return [ValMetric((ROBUST_COLUMN, "val_robust_n"), self.robust_validation)]

    def robust_validation(self, model: nn.Module, split, device: torch.device) -> dict[str, float]:
        """PGD-val_k robust accuracy at the full training eps on a fixed subset of the
        validation split. Random starts come from a private seeded generator, so the
        same model always gets the same number and the global RNG is untouched."""
        from ..data import TensorLoader

        n = min(self.val_n, len(split))
        if self._val_subset is None or self._val_subset[0] is not split:  # drawn once per split
            self._val_subset = (split, split if n == len(split) else split.subset(n, seed=VAL_SEED))
        sub = self._val_subset[1]
        self.bind(model, sub.x.shape[1:])
        ball = Ball(self.val_threat, self._std.expand(sub.x.shape[1]), torch.device("cpu"))
        robust = 0
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(VAL_SEED)
            for x, y in TensorLoader(sub, VAL_BATCH, device=device, shuffle=False):
                start = ball.random(x.shape, "cpu").to(x)  # drawn for every point: independent of the batch
                with torch.no_grad():
                    ok = model(x).argmax(1) == y
                idx = ok.nonzero().flatten()
                if idx.numel() == 0:
                    continue
                res = pgd(model, x[idx], y[idx], self.val_threat, k=self.val_k, random_start=True, init=[start[idx]])
                robust += int((~res.fooled).sum())
        return {ROBUST_COLUMN: robust / n, "val_robust_n": n}

    def end_epoch(self, row: dict, history: list[dict]) -> str | None:
        row["train_eps"] = self.current_threat.eps
        event = collapse(history)
        row["co_guard"] = int(event is not None)
        if event is None:
            return None
        if self.early_stop:
            return f"{event}; stopped (--early-stop), best.pth kept"
        log.warning("%s; best.pth kept, training goes on (--no-early-stop)", event)
        return None

    # --- records ---------------------------------------------------------------------------
    def _describe(self) -> dict:
        t = self.threat_model
        if self._std is not None:
            d = t.describe(self._std)
            d["std"] = [float(v) for v in self._std]
        else:  # 'dataset' normalization before the model is seen: completed by bind()
            own = (
                {"eps_normalized": t.eps, "step_normalized": t.step}
                if t.space == "normalized"
                else {"eps_pixel": t.eps, "step_pixel": t.step, "eps_pixel_255": round(t.eps * 255, 4)}
            )
            d = {
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
        return d

    def threat(self) -> dict:
        """The threat model trained against, eps and step in both spaces, with the
        attack's settings. The same dict is completed in place once the model's std is
        known (only needed for 'dataset' normalization)."""
        if self._record is None:
            self._record = {
                "method": self.name,
                **self._describe(),
                "eta": self.threat_model.step,
                "k": self.steps,
                **{key: self.options[key] for key in ("random_start", "attack_bn", "eps_warmup", "early_stop")},
                **self.extra_record(),
                "validation": {
                    "attack": "pgd",
                    "k": self.val_k,
                    "step": self.val_eta,
                    "step_rule": self.val_threat.step_rule,
                    "n": self.val_n,
                    "random_start": True,
                    "column": ROBUST_COLUMN,
                },
                "warnings": self.step_warnings(),
            }
            # fit asks for this record once per run, before the first epoch: said once, kept in the record
            for warning in self._record["warnings"]:
                log.warning("warning: %s", warning)
        return self._record

    def step_warnings(self) -> list[str]:
        """Given steps too short for k of them to reach eps (training attack and robust
        validation): such an attack is weaker than its eps says."""
        out = []
        checks = [(self.threat_model, self.steps, f"training attack ({self.name})")] if self.STEPS_MUST_REACH else []
        checks.append((self.val_threat, self.val_k, f"robust validation PGD-{self.val_k}"))
        for threat, k, label in checks:
            if threat.given:
                finding = steps_reach_eps(k, threat.step, threat.eps, label)
                if not finding.ok:
                    out.append(finding.detail)
        return out

    @property
    def steps(self) -> int:
        return int(self.options.get("k", 1))

    def extra_record(self) -> dict:
        return {key: self.options[key] for key in self.EXTRA if key != "k"}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({args}, base={self.base!r})"

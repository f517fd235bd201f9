"""What every adversarial training method shares: batch-norm behaviour during the
attack, the eps warm-up, robust validation, the catastrophic-overfitting guard's hook
and the threat record. The options live in adv_options.py, the guard in
overfitting_guard.py.

A method (pgd_at.py, trades.py, fgsm_rs.py, n_fgsm.py, free_at.py) subclasses ``AdversarialMethod`` and
writes only ``__call__``: prepare the batch with the base method, call
``self.attack(...)`` for the inner maximisation, and return the outer loss. The
class itself is the factory registered in ``ADV_METHODS``; building it only checks
options (it runs whenever a TrainSpec is built).

Robust validation accuracy counts a point as robust when it is classified
correctly clean and PGD never fools it; it is the column ``val_robust_acc`` and
picks best.pth (``selection``). The test split is never looked at.
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..attacks import attack_mode, perturb, pgd
from ..checks import steps_reach_eps
from ..data import TensorLoader
from ..threat import GIVEN, Ball, ThreatModel, find_std
from .adv_options import VAL_STEP_RULE, Check, check_radius, normalization_std, resolve, threat_fields
from .base import Batch, TrainMethod, ValMetric
from .overfitting_guard import ROBUST_COLUMN, collapse

log = logging.getLogger(__name__)

VAL_SEED = 0  # the validation subset and the validation attack's random starts
VAL_BATCH = 256


def sync(device: torch.device) -> None:
    # attack vs update time is measured on the host; queued GPU work must be done first
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class AdversarialMethod(TrainMethod):
    """Base of the adversarial wrappers. Subclasses set ``name``, ``EXTRA`` (their own
    options: name -> (check, default)) and write ``inner(model, batch) -> (x_adv,
    seconds)``, the inner maximisation on a prepared batch, and ``__call__``, the
    outer loss."""

    name = ""
    selection = ROBUST_COLUMN
    STEP_RULE = "2.5*eps/k"  # how eta follows from eps and k when not given (threat.STEP_RULES)
    STEPS_MUST_REACH = True  # k steps of a given eta must reach eps (not so for one-step or replayed attacks)
    EXTRA: dict[str, tuple[Check, Any]] = {}  # option -> (check(key, value), default)
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
        o = resolve(
            self.name,
            given,
            spec,
            extra=self.EXTRA,
            refused=self.REFUSED,
            step_rule=self.STEP_RULE,
            early_stop=self.EARLY_STOP_DEFAULT,
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
        return self.crafted(
            model,
            x,
            lambda threat: perturb(
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
            ),
        )

    def crafted(
        self, model: nn.Module, x: torch.Tensor, craft: Callable[[ThreatModel], torch.Tensor]
    ) -> tuple[torch.Tensor, float]:
        """``craft(threat)`` at this epoch's threat, in the chosen batch-norm mode, with the
        seconds it took (queued GPU work included). Returns (x_adv, seconds)."""
        self.bind(model, x.shape[1:])
        sync(x.device)
        start = time.perf_counter()
        with attack_mode(model, train_mode=self.attack_bn == "train"):
            x_adv = craft(self.current_threat)
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
            return f"{event}; stopped (early_stop is on), best.pth kept"
        log.warning("%s; best.pth kept, training goes on (early_stop is off)", event)
        return None

    # --- records ---------------------------------------------------------------------------
    def _describe(self) -> dict:
        return threat_fields(self.threat_model, self._std)

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

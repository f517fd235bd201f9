"""The interface every training method follows, and the two registries.

A training method gives the loss for one batch. It is split into three parts so
that an adversarial wrapper (PGD-AT, TRADES, FGSM-RS) can reuse any method's
pieces instead of re-implementing them:

``prepare(x, y) -> Batch``
    The inputs the model sees and the labels they carry. The identity for
    standard and OVA training; MixUp and CutMix mix pairs of images here. Random
    choices use the global torch RNG only, so reseeding per epoch makes a resumed
    run bit-identical on CPU.
``criterion(logits, y) -> (N,) tensor``
    The per-example loss against hard labels (cross-entropy, OVA). This is what
    an inner attack maximises.
``batch_criterion(logits, batch) -> (N,) tensor``
    The per-example loss against a prepared batch: for a mixed batch,
    ``lam * criterion(logits, y) + (1 - lam) * criterion(logits, y2)``.
``__call__(model, x, y) -> BatchOutput``
    prepare, forward, mean loss. ``fit`` calls only this.

An adversarial wrapper registered in ``ADV_METHODS`` is a factory
``(base: TrainMethod, spec: TrainSpec) -> TrainMethod``; 'none' returns the base
method unchanged. A typical wrapper's ``__call__`` is::

    batch = base.prepare(x, y)
    x_adv = attack(model, batch.x, loss=lambda logits: base.batch_criterion(logits, batch))
    logits = model(x_adv)
    return BatchOutput(base.batch_criterion(logits, batch).mean(), logits, batch.target, seconds)

A wrapper keeps the base method as ``.base`` (checkpoints record its options from
there) and its ``criterion`` is the base's (``fit`` reports validation loss with it).
Factories run when a TrainSpec is built, to check options early, so they must be
cheap and free of side effects.

Hooks that ``fit`` calls on the method it trains with (defaults do nothing):
``start_epoch(epoch, epochs)`` before each epoch (e.g. an eps ramp),
``validation_metrics()`` extra validation columns (e.g. robust accuracy),
``selection`` the validation column that picks best.pth when the spec says 'auto',
``end_epoch(row, history)`` may return a reason to stop (e.g. catastrophic
overfitting), and ``threat()`` the threat model trained against, for records.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..registry import Registry
from ..values import Key, ValueProblem, number

if TYPE_CHECKING:
    from ..specs import TrainSpec

METHODS: Registry[type[TrainMethod]] = Registry("method")
ADV_METHODS: Registry[Callable[[TrainMethod, TrainSpec], TrainMethod]] = Registry("adversarial method")


@dataclass
class Batch:
    """Inputs and labels after ``prepare``. For a mixed batch the loss weighs ``y``
    by ``lam`` and ``y2`` by ``1 - lam``."""

    x: torch.Tensor
    y: torch.Tensor
    y2: torch.Tensor | None = None
    lam: float = 1.0

    @property
    def mixed(self) -> bool:
        return self.y2 is not None and self.lam < 1.0

    @property
    def target(self) -> torch.Tensor:
        """Labels that train accuracy is measured against: the dominant image's."""
        return self.y if not self.mixed or self.lam >= 0.5 else self.y2


@dataclass
class BatchOutput:
    loss: torch.Tensor  # scalar, what is back-propagated
    logits: torch.Tensor  # (N, classes), for train accuracy
    target: torch.Tensor  # (N,) labels for train accuracy
    attack_seconds: float = 0.0  # time spent generating adversarial inputs


@dataclass(frozen=True)
class ValMetric:
    """Extra validation columns computed each epoch.

    ``fn(model, val_split, device) -> {column: value}`` with the model in eval mode;
    ``columns`` names what it returns, so a selection metric can be checked before
    training starts."""

    columns: tuple[str, ...]
    fn: Callable[[nn.Module, Any, torch.device], dict[str, float]] = field(compare=False)


class TrainMethod(ABC):
    """Base of all training methods; subclasses set ``name`` and take their options
    as keyword arguments with defaults (these are the method's ``--`` options)."""

    name: str = ""
    selection: str = "val_acc"
    replays: int = 1  # optimizer steps fit() takes on each batch (free AT takes several)

    def prepare(self, x: torch.Tensor, y: torch.Tensor) -> Batch:
        return Batch(x, y)

    @abstractmethod
    def criterion(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-example loss, shape (N,), against hard labels y."""

    def batch_criterion(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        loss = self.criterion(logits, batch.y)
        if batch.mixed:
            loss = batch.lam * loss + (1.0 - batch.lam) * self.criterion(logits, batch.y2)
        return loss

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> BatchOutput:
        batch = self.prepare(x, y)
        logits = model(batch.x)
        return BatchOutput(self.batch_criterion(logits, batch).mean(), logits, batch.target)

    # --- hooks for fit -----------------------------------------------------------------
    def start_epoch(self, epoch: int, epochs: int) -> None:  # noqa: B027 (an optional hook: most methods keep it)
        """Called before epoch ``epoch`` (0-based) of ``epochs``."""

    def validation_metrics(self) -> list[ValMetric]:
        return []

    def end_epoch(self, row: dict, history: list[dict]) -> str | None:
        """Called after each epoch's row is complete; a string stops the run, naming why."""
        return None

    def threat(self) -> dict | None:
        return None

    # --- description ---------------------------------------------------------------------
    def config(self) -> dict:
        """The method's options with their resolved values, for checkpoints and records."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {n: getattr(self, n) for n in names}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


def method_key(option: str) -> Key:
    """The key path of a training method's option, as errors name it."""
    return ("train", "method_kwargs", option)


def make_base_method(name: str, kwargs: dict | None = None) -> TrainMethod:
    """The registered method ``name`` with options ``kwargs``; an option the method
    does not take is a one-line error naming the ones it does."""
    cls = METHODS.get(name)
    kwargs = dict(kwargs or {})
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        takes = ", ".join(params) if params else "no options"
        raise ValueProblem(
            method_key(unknown[0]), f"method '{name}' does not take {', '.join(unknown)}; it takes {takes}"
        )
    return cls(**kwargs)


@ADV_METHODS.register("none", summary="no adversarial training: the base method alone")
def no_adversary(base: TrainMethod, spec: TrainSpec) -> TrainMethod:
    if spec.adv_kwargs:
        given = sorted(spec.adv_kwargs)
        adversarial = ", ".join(n for n in ADV_METHODS.names() if n != "none") or "none registered"
        raise ValueProblem(
            ("train", "adv_kwargs", given[0]),
            f"adversarial options ({', '.join(given)}) need an adversarial method; set train.adv (one of: {adversarial})",
        )
    return base


def check_label_smoothing(value: Any) -> float:
    return number(method_key("label_smoothing"), value, low=0.0, high=1.0, high_open=True)


def check_alpha(value: Any) -> float:
    """The Beta(alpha, alpha) mixing parameter of MixUp and CutMix."""
    return number(method_key("alpha"), value, low=0.0, low_open=True)


def sample_beta(alpha: float) -> float:
    """lambda ~ Beta(alpha, alpha) from the global torch CPU generator (no device sync)."""
    a = torch.tensor(float(alpha))
    return float(torch.distributions.Beta(a, a).sample())

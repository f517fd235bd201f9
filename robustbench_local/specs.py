"""What to train, as frozen dataclasses built from CLI options or a TOML table.

Each spec checks its numbers and closed choices in ``__post_init__`` (values.py: a
one-line error naming the key path, such as ``train.lr``), so a typo fails before
anything touches the disk. Names that live in registries owned by other modules
(datasets, architectures, normalizations) are checked when ``fit`` builds them, still
before the run folder is created. The training-method and adversarial-method names
and options are checked by the methods package, which registers that check here
(``register_train_check``): the specs import no module that builds things.

TOML layout (``TrainSpec.from_dict``)::

    epochs = 10
    lr = 0.05
    method = "mixup"
    method_kwargs = { alpha = 1.0 }
    [data]
    dataset = "cifar10"
    subset = 2000
    [model]
    arch = "cnn"
    kwargs = { maps = "16,32,64" }
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, ClassVar

from .errors import RobustError
from .values import AUTO, Key, ValueProblem, boolean, choice, integer, number, table, tristate

OPTIMIZERS = ("sgd", "adam", "adamw")
# cosine and onecycle are stepped per batch; step drops 10x at 50% and 75% of the
# epochs; plateau drops 10x when the selection metric stalls; none keeps lr fixed.
SCHEDULES = ("cosine", "onecycle", "step", "plateau", "none")
# the precision of the inner attack of adversarial training: fp32 whatever --amp says, or
# the training forward's AMP dtype (faster, slightly weaker steps)
ATTACK_PRECISIONS = ("fp32", "amp")

# Checks of a whole TrainSpec registered by the modules that own a part of it (methods:
# its method names and options), so that the spec stays plain data that imports none of them.
_TRAIN_CHECKS: list[Callable[[TrainSpec], None]] = []


def register_train_check(check: Callable[[TrainSpec], None]) -> Callable[[TrainSpec], None]:
    """``check(spec)`` runs on every TrainSpec built from now on and raises RobustError
    for what it refuses."""
    if check not in _TRAIN_CHECKS:
        _TRAIN_CHECKS.append(check)
    return check


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


def _from_dict(cls, d: Mapping | None, what: str):
    d = dict(d or {})
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise RobustError(f"unknown {what} option(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    return cls(**d)


def _name(key: Key, value: Any, example: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueProblem(key, f"must be a name such as {example}, got {value!r}")


@dataclass(frozen=True)
class DataSpec:
    """Which data, how much of it, and how it is split and augmented.

    subset: number of training examples to train on (drawn with ``split_seed``
    after the validation split is carved off); None = all of them.
    augment: none|light|basic|strong, None = the dataset's default policy."""

    dataset: str = "cifar10"
    data_root: str | None = None
    image_size: int | None = None
    subset: int | None = None
    val_fraction: float = 0.1
    augment: str | None = None
    split_seed: int = 0

    KEY: ClassVar[Key] = ("data",)  # key paths of its errors: data.subset, ...

    def __post_init__(self) -> None:
        k = self.KEY
        _name(k + ("dataset",), self.dataset, "cifar10")
        _set(self, "data_root", None if self.data_root is None else str(self.data_root))
        _set(self, "image_size", integer(k + ("image_size",), self.image_size, minimum=1, optional=True))
        _set(self, "subset", integer(k + ("subset",), self.subset, minimum=1, optional=True))
        # a validation split is required: best.pth is chosen on it, never on test
        val = number(k + ("val_fraction",), self.val_fraction, low=0.0, high=1.0, low_open=True, high_open=True)
        _set(self, "val_fraction", val)
        if self.augment is not None and not isinstance(self.augment, str):
            raise ValueProblem(k + ("augment",), f"must be a policy name, got {self.augment!r}")
        _set(self, "split_seed", integer(k + ("split_seed",), self.split_seed, minimum=0))

    @classmethod
    def from_dict(cls, d: Mapping | None) -> DataSpec:
        return _from_dict(cls, d, "data")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ModelSpec:
    """Architecture name, its keyword arguments (e.g. maps, dropout, bn, skip,
    pretrained, weights) and the input normalization (seed: mean = std = 0.5,
    dataset: the dataset's statistics, none: identity)."""

    arch: str = "cnn"
    kwargs: dict = field(default_factory=dict)
    normalize: str = "seed"

    KEY: ClassVar[Key] = ("model",)  # key paths of its errors: model.kwargs, ...

    def __post_init__(self) -> None:
        k = self.KEY
        _name(k + ("arch",), self.arch, "cnn")
        _set(self, "kwargs", {str(n): v for n, v in table(k + ("kwargs",), self.kwargs, optional=True).items()})
        if not isinstance(self.normalize, str):
            raise ValueProblem(k + ("normalize",), f"must be seed, dataset or none, got {self.normalize!r}")

    @classmethod
    def from_dict(cls, d: Mapping | None) -> ModelSpec:
        return _from_dict(cls, d, "model")

    def to_dict(self) -> dict:
        return {"arch": self.arch, "kwargs": dict(self.kwargs), "normalize": self.normalize}


@dataclass(frozen=True)
class TrainSpec:
    """A whole training run. Defaults train the seed CNN on CIFAR-10 with SGD and a
    cosine schedule; every value is saved in config.json, the checkpoints and the
    training record.

    amp / channels_last: True, False or 'auto' (AMP on for CUDA only; channels_last
    on for CUDA and CPU, where it pays off, off on MPS). selection: the validation column that
    picks best.pth ('auto' = the method's choice: val_acc, or robust validation
    accuracy for adversarial methods). init: a checkpoint whose weights start the
    run (fine-tuning).

    compile: torch.compile the model for training steps and the attacks inside them
    (True = the inductor backend, or a backend name such as 'aot_eager'); validation
    runs uncompiled. attack_precision: 'fp32' (default) runs adversarial training's
    inner attack in float32 even with AMP; 'amp' runs it in the AMP dtype. sync_bn:
    batch-norm statistics over the global batch when training on several GPUs.
    budget_minutes: a wall-clock budget for training and validation; epochs is then the
    most the run trains, and the schedule ends on the last epoch that fits (train_budget.py)."""

    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    method: str = "standard"
    method_kwargs: dict = field(default_factory=dict)
    adv: str = "none"
    adv_kwargs: dict = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    grad_clip: float | None = None
    patience: int | None = None
    budget_minutes: float | None = None
    amp: bool | str = AUTO
    channels_last: bool | str = AUTO
    seed: int = 0
    device: str = AUTO
    out: str | None = None
    init: str | None = None
    selection: str = AUTO
    compile: bool | str = False
    attack_precision: str = "fp32"
    sync_bn: bool = False

    KEY: ClassVar[Key] = ("train",)  # key paths of its errors: train.lr, train.adv_kwargs.eps, ...

    def __post_init__(self) -> None:
        if isinstance(self.data, Mapping):
            _set(self, "data", DataSpec.from_dict(self.data))
        if isinstance(self.model, Mapping):
            _set(self, "model", ModelSpec.from_dict(self.model))
        if not isinstance(self.data, DataSpec) or not isinstance(self.model, ModelSpec):
            raise RobustError("data and model must be DataSpec and ModelSpec (or tables in TOML)")
        k = self.KEY
        for name in ("method_kwargs", "adv_kwargs"):
            _set(self, name, {str(n): v for n, v in table(k + (name,), getattr(self, name), optional=True).items()})
        _set(self, "epochs", integer(k + ("epochs",), self.epochs, minimum=1))
        _set(self, "batch_size", integer(k + ("batch_size",), self.batch_size, minimum=1))
        choice(k + ("optimizer",), self.optimizer, OPTIMIZERS)
        _set(self, "lr", number(k + ("lr",), self.lr, low=0.0, low_open=True))
        _set(self, "momentum", number(k + ("momentum",), self.momentum, low=0.0, high=1.0, high_open=True))
        boolean(k + ("nesterov",), self.nesterov)
        if self.nesterov and self.optimizer == "sgd" and self.momentum == 0:
            raise ValueProblem(
                k + ("nesterov",), "needs train.momentum > 0; set nesterov false or a momentum such as 0.9"
            )
        _set(self, "weight_decay", number(k + ("weight_decay",), self.weight_decay, low=0.0))
        choice(k + ("schedule",), self.schedule, SCHEDULES)
        _set(self, "warmup_epochs", number(k + ("warmup_epochs",), self.warmup_epochs, low=0.0))
        if self.warmup_epochs >= self.epochs:
            raise ValueProblem(
                k + ("warmup_epochs",),
                f"{self.warmup_epochs:g} epochs must be shorter than train.epochs ({self.epochs})",
            )
        clip = number(k + ("grad_clip",), self.grad_clip, low=0.0, low_open=True, optional=True)
        _set(self, "grad_clip", clip)
        _set(self, "patience", integer(k + ("patience",), self.patience, minimum=1, optional=True))
        budget = number(k + ("budget_minutes",), self.budget_minutes, low=0.0, low_open=True, optional=True)
        _set(self, "budget_minutes", budget)
        _set(self, "amp", tristate(k + ("amp",), self.amp))
        _set(self, "channels_last", tristate(k + ("channels_last",), self.channels_last))
        _set(self, "seed", integer(k + ("seed",), self.seed, minimum=0))
        if not isinstance(self.device, str):
            raise ValueProblem(k + ("device",), f"must be auto, cpu, cuda or mps, got {self.device!r}")
        for name in ("out", "init"):
            v = getattr(self, name)
            _set(self, name, None if v is None else str(v))
        if not isinstance(self.selection, str) or not self.selection:
            raise ValueProblem(
                k + ("selection",), f"must be a validation column such as val_acc, got {self.selection!r}"
            )
        if isinstance(self.compile, str) and self.compile.lower() in ("true", "false", "on", "off"):
            _set(self, "compile", self.compile.lower() in ("true", "on"))
        if not isinstance(self.compile, (bool, str)) or self.compile == "":
            raise ValueProblem(
                k + ("compile",), f"must be true, false or a torch.compile backend name, got {self.compile!r}"
            )
        choice(k + ("attack_precision",), self.attack_precision, ATTACK_PRECISIONS)
        boolean(k + ("sync_bn",), self.sync_bn)
        # the checks of the modules that own a part of the spec (methods: names and options),
        # before any data is read
        for check in _TRAIN_CHECKS:
            check(self)

    # --- conversions -----------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping | None) -> TrainSpec:
        return _from_dict(cls, d, "train")

    def to_dict(self) -> dict:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.to_dict() if hasattr(v, "to_dict") else (dict(v) if isinstance(v, dict) else v)
        return out

    def replace(self, **changes: Any) -> TrainSpec:
        return replace(self, **changes)

    def run_name(self) -> str:
        """Auto name of the run folder: dataset-model-method[-adv]-s<seed>."""
        ds = self.data.dataset
        if ds.startswith("imagefolder:"):
            tail = re.split(r"[\\/]", ds.split(":", 1)[1].rstrip("/\\"))[-1]
            ds = re.sub(r"\.(tar\.gz|tgz|tar)$", "", tail) or "imagefolder"
        parts = [ds, self.model.arch, self.method] + ([self.adv] if self.adv != "none" else []) + [f"s{self.seed}"]
        return re.sub(r"[^A-Za-z0-9_.+-]", "_", "-".join(parts))

"""What to train, as frozen dataclasses built from CLI options or a TOML table.

Each spec checks its numbers and closed choices in ``__post_init__`` and raises a
one-line RobustError, so a typo fails before anything touches the disk. Names
that live in registries owned by other modules (datasets, architectures,
normalizations) are checked when ``fit`` builds them, still before the run folder
is created; training-method and adversarial-method names are checked here, since
those registries are cheap to import.

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

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .errors import RobustError

OPTIMIZERS = ("sgd", "adam", "adamw")
# cosine and onecycle are stepped per batch; step drops 10x at 50% and 75% of the
# epochs; plateau drops 10x when the selection metric stalls; none keeps lr fixed.
SCHEDULES = ("cosine", "onecycle", "step", "plateau", "none")
# the precision of the inner attack of adversarial training: fp32 whatever --amp says, or
# the training forward's AMP dtype (faster, slightly weaker steps)
ATTACK_PRECISIONS = ("fp32", "amp")
AUTO = "auto"


def _fail(msg: str) -> RobustError:
    return RobustError(msg)


def _int(name: str, value: Any, *, minimum: int | None = None, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _fail(f"{name} must be an integer, got {value!r}")
    try:
        f = float(value)
    except ValueError:
        raise _fail(f"{name} must be an integer, got {value!r}") from None
    if not f.is_integer():
        raise _fail(f"{name} must be an integer, got {value!r}")
    v = int(f)
    if minimum is not None and v < minimum:
        raise _fail(f"{name} must be >= {minimum}, got {v}")
    return v


def _float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    optional: bool = False,
) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool):
        raise _fail(f"{name} must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise _fail(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise _fail(f"{name} must be finite, got {value!r}")
    if low is not None and (v < low or (low_open and v == low)):
        raise _fail(f"{name} must be {'>' if low_open else '>='} {low:g}, got {v:g}")
    if high is not None and (v > high or (high_open and v == high)):
        raise _fail(f"{name} must be {'<' if high_open else '<='} {high:g}, got {v:g}")
    return v


def _choice(name: str, value: Any, choices: tuple) -> Any:
    if value not in choices:
        raise _fail(f"unknown {name} {value!r}; valid: {', '.join(str(c) for c in choices)}")
    return value


def _tristate(name: str, value: Any) -> bool | str:
    """True, False or 'auto' (decided per device when training starts)."""
    if value is None or value == AUTO:
        return AUTO
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("on", "true", "yes", "1", "off", "false", "no", "0"):
        return value.lower() in ("on", "true", "yes", "1")
    raise _fail(f"{name} must be true, false or 'auto', got {value!r}")


def _kwargs(name: str, value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(f"{name} must be a table of name = value pairs, got {value!r}")
    return {str(k): v for k, v in value.items()}


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


def _from_dict(cls, d: Mapping | None, what: str):
    d = dict(d or {})
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise _fail(f"unknown {what} option(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    return cls(**d)


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

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise _fail(f"dataset must be a name such as cifar10, got {self.dataset!r}")
        _set(self, "data_root", None if self.data_root is None else str(self.data_root))
        _set(self, "image_size", _int("--image-size", self.image_size, minimum=1, optional=True))
        _set(self, "subset", _int("--subset", self.subset, minimum=1, optional=True))
        # a validation split is required: best.pth is chosen on it, never on test
        _set(
            self,
            "val_fraction",
            _float("--val-fraction", self.val_fraction, low=0.0, high=1.0, low_open=True, high_open=True),
        )
        if self.augment is not None and not isinstance(self.augment, str):
            raise _fail(f"--augment must be a policy name, got {self.augment!r}")
        _set(self, "split_seed", _int("--split-seed", self.split_seed, minimum=0))

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

    def __post_init__(self) -> None:
        if not isinstance(self.arch, str) or not self.arch.strip():
            raise _fail(f"model must be a name such as cnn, got {self.arch!r}")
        _set(self, "kwargs", _kwargs("model kwargs", self.kwargs))
        if not isinstance(self.normalize, str):
            raise _fail(f"--normalize must be seed, dataset or none, got {self.normalize!r}")

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
    batch-norm statistics over the global batch when training on several GPUs."""

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

    def __post_init__(self) -> None:
        if isinstance(self.data, Mapping):
            _set(self, "data", DataSpec.from_dict(self.data))
        if isinstance(self.model, Mapping):
            _set(self, "model", ModelSpec.from_dict(self.model))
        if not isinstance(self.data, DataSpec) or not isinstance(self.model, ModelSpec):
            raise _fail("data and model must be DataSpec and ModelSpec (or tables in TOML)")
        _set(self, "method_kwargs", _kwargs("method kwargs", self.method_kwargs))
        _set(self, "adv_kwargs", _kwargs("adversarial kwargs", self.adv_kwargs))
        _set(self, "epochs", _int("--epochs", self.epochs, minimum=1))
        _set(self, "batch_size", _int("--batch-size", self.batch_size, minimum=1))
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _set(self, "lr", _float("--lr", self.lr, low=0.0, low_open=True))
        _set(self, "momentum", _float("--momentum", self.momentum, low=0.0, high=1.0, high_open=True))
        if not isinstance(self.nesterov, bool):
            raise _fail(f"nesterov must be true or false, got {self.nesterov!r}")
        if self.nesterov and self.optimizer == "sgd" and self.momentum == 0:
            raise _fail("--nesterov needs --momentum > 0; pass --no-nesterov or a momentum such as 0.9")
        _set(self, "weight_decay", _float("--weight-decay", self.weight_decay, low=0.0))
        _choice("schedule", self.schedule, SCHEDULES)
        _set(self, "warmup_epochs", _float("--warmup", self.warmup_epochs, low=0.0))
        if self.warmup_epochs >= self.epochs:
            raise _fail(f"--warmup ({self.warmup_epochs:g} epochs) must be shorter than --epochs ({self.epochs})")
        _set(self, "grad_clip", _float("--grad-clip", self.grad_clip, low=0.0, low_open=True, optional=True))
        _set(self, "patience", _int("--patience", self.patience, minimum=1, optional=True))
        _set(self, "amp", _tristate("--amp", self.amp))
        _set(self, "channels_last", _tristate("--channels-last", self.channels_last))
        _set(self, "seed", _int("--seed", self.seed, minimum=0))
        if not isinstance(self.device, str):
            raise _fail(f"device must be auto, cpu, cuda or mps, got {self.device!r}")
        for name in ("out", "init"):
            v = getattr(self, name)
            _set(self, name, None if v is None else str(v))
        if not isinstance(self.selection, str) or not self.selection:
            raise _fail(f"selection must be a validation column such as val_acc, got {self.selection!r}")
        if isinstance(self.compile, str) and self.compile.lower() in ("true", "false", "on", "off"):
            _set(self, "compile", self.compile.lower() in ("true", "on"))
        if not isinstance(self.compile, (bool, str)) or self.compile == "":
            raise _fail(f"compile must be true, false or a torch.compile backend name, got {self.compile!r}")
        _choice("attack precision", self.attack_precision, ATTACK_PRECISIONS)
        if not isinstance(self.sync_bn, bool):
            raise _fail(f"sync_bn must be true or false, got {self.sync_bn!r}")
        self._check_methods()

    def _check_methods(self) -> None:
        # methods are cheap to build and own their option checks: fail at once on an
        # unknown name or option, before any data is read (adversarial factories must
        # stay cheap and side-effect free for this)
        from .methods import build_method

        build_method(self)

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

"""What fit() needs, built and checked before anything is written: ``prepare_run``
validates the data, model, method, selection metric, --init checkpoint, resume state
and run folder, and returns a Run made of named parts (where the numbers are
computed, the data, the optimization, the selection), so a bad input leaves no trace
on disk."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import distributed
from .checkpoint import file_sha256, load_state, read_checkpoint
from .data import (
    DatasetBundle,
    DatasetInfo,
    Split,
    TensorLoader,
    build_augment,
    default_augment,
    load_dataset,
)
from .errors import CheckpointError, RobustError
from .methods import TrainMethod, ValMetric, build_method
from .models import build_model, resolve_normalization
from .optim import LRSchedule, build_optimizer, param_groups
from .precision import Precision, resolve_compile, resolve_precision
from .runtime import resolve_channels_last, seed_everything
from .specs import TrainSpec
from .train_folder import RESUMABLE_CHANGES, fresh_folder, run_folder, spec_differences
from .values import AUTO, ValueProblem


@dataclass(frozen=True)
class Placement:
    """Where and how the numbers are computed."""

    device: torch.device
    precision: Precision
    channels_last: bool
    compile_backend: str | None = None  # None: eager
    world_size: int = 1
    local_batch: int = 0  # examples per rank per step (= batch_size in a single process)


@dataclass(frozen=True)
class TrainData:
    bundle: DatasetBundle  # the train / val / test splits and the dataset's info
    train: Split  # what is trained on: bundle.train, or its --subset
    augment_policy: str
    augment: Callable[[torch.Tensor], torch.Tensor] | None

    @property
    def info(self) -> DatasetInfo:
        return self.bundle.info

    @property
    def val(self) -> Split:
        return self.bundle.val

    @property
    def test(self) -> Split:
        return self.bundle.test


@dataclass
class Optimization:
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    scaler: torch.amp.GradScaler | None  # fp16 only
    steps_per_epoch: int  # optimizer steps per epoch (batches x the method's replays)

    def state_dict(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


@dataclass(frozen=True)
class Selection:
    """How best.pth is chosen: a validation column, and the extra validation columns
    (the caller's and the method's) that may be chosen by."""

    metric: str
    minimize: bool
    val_metrics: list[ValMetric] = field(default_factory=list)

    def is_better(self, value: float | None, best: float | None) -> bool:
        if value is None or math.isnan(value):
            return False
        return best is None or (value < best if self.minimize else value > best)


@dataclass
class Run:
    """Everything fit needs, built and validated by ``prepare_run`` before any write."""

    spec: TrainSpec
    out_dir: Path
    placement: Placement
    data: TrainData
    model: nn.Module
    method: TrainMethod
    optim: Optimization
    selection: Selection
    meta_base: dict  # what every checkpoint of the run carries, besides its epoch and metrics
    init_info: dict | None = None  # the --init checkpoint
    resume_state: dict | None = None  # last.pth's training state under --resume
    leftovers: list[Path] = field(default_factory=list)  # files of a first epoch cut off, removed before writing
    net: nn.Module | None = None  # the TrainingModel the method is called with (built by fit)

    @property
    def best_path(self) -> Path:
        return self.out_dir / "best.pth"

    @property
    def last_path(self) -> Path:
        return self.out_dir / "last.pth"

    def resolved(self) -> dict:
        """What the spec's automatic choices became (config.json's "resolved")."""
        p, d = self.placement, self.data
        return {
            "device": str(p.device),
            "precision": p.precision.label,
            "channels_last": p.channels_last,
            "compile": p.compile_backend,
            "attack_precision": self.spec.attack_precision,
            "augment": d.augment_policy,
            "selection": self.selection.metric,
            "n_train": len(d.train),
            "n_val": len(d.val),
            "n_test": len(d.test),
            "steps_per_epoch": self.optim.steps_per_epoch,
            "world_size": p.world_size,
            "batch_per_rank": p.local_batch,
        }


def prepare_run(spec: TrainSpec, *, resume: bool = False, val_metrics: Sequence[ValMetric] = ()) -> Run:
    """Build and check every piece of a run; raises RobustError (one line) before
    anything is written."""
    k = spec.KEY
    device = distributed.init(spec.device, k + ("device",))  # joins the process group under torchrun
    world = distributed.world_size()
    local_batch = distributed.global_to_local_batch(spec.batch_size, world, k + ("batch_size",))
    precision = resolve_precision(spec.amp, device)
    placement = Placement(
        device,
        precision,
        resolve_channels_last(spec.channels_last, device),
        compile_backend=resolve_compile(spec.compile),
        world_size=world,
        local_batch=local_batch,
    )
    if spec.sync_bn and device.type != "cuda":
        raise ValueProblem(k + ("sync_bn",), distributed.SYNC_BN_NEEDS_CUDA)

    out_dir = run_folder(spec)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueProblem(k + ("out",), f"{out_dir} is a file, not a folder")
    if resume and not (out_dir / "last.pth").is_file():
        raise RobustError(f"nothing to resume in {out_dir} (no last.pth); drop --resume to start the run")
    leftovers = [] if resume else fresh_folder(out_dir, spec)

    d = spec.data
    with distributed.main_first():  # rank 0 decodes the data cache once; the others then read it
        bundle = load_dataset(
            d.dataset,
            data_root=d.data_root,
            image_size=d.image_size,
            val_fraction=d.val_fraction,
            split_seed=d.split_seed,
        )
    info = bundle.info
    train = bundle.train if d.subset is None else bundle.train.subset(d.subset, seed=d.split_seed)
    if len(bundle.val) == 0:
        raise ValueProblem(
            spec.data.KEY + ("val_fraction",), f"leaves the validation split of {info.name} empty; raise it"
        )
    augment_policy = d.augment or default_augment(info)
    data = TrainData(bundle, train, augment_policy, build_augment(augment_policy, info))

    seed_everything(spec.seed)  # model initialisation is part of the seeded run
    mean, std = resolve_normalization(spec.model.normalize, info)
    model = build_model(
        spec.model.arch,
        num_classes=info.num_classes,
        input_shape=info.input_shape,
        mean=mean,
        std=std,
        **spec.model.kwargs,
    )
    init_info = _load_init(spec.init, model) if spec.init and not resume else None
    model.to(device)
    if placement.channels_last:
        model.to(memory_format=torch.channels_last)
    if spec.sync_bn:
        model = distributed.convert_sync_bn(model, device)  # same Parameter objects: the optimizer below sees them

    method = build_method(spec)
    extra = list(val_metrics) + list(method.validation_metrics())
    columns = {"val_acc", "val_loss"} | {c for m in extra for c in m.columns}
    metric = method.selection if spec.selection == AUTO else spec.selection
    if metric not in columns:
        raise ValueProblem(
            k + ("selection",), f"unknown selection metric '{metric}'; valid: {', '.join(sorted(columns))}"
        )
    selection = Selection(metric, minimize=metric.endswith("loss"), val_metrics=extra)

    if len(train) < world:
        raise RobustError(f"{len(train)} training examples cannot be shared by {world} processes")
    steps = len(TensorLoader(train, local_batch, device="cpu", shuffle=False, world_size=world))
    steps *= method.replays  # optimizer steps per epoch
    optimizer = build_optimizer(spec, param_groups(model, spec))
    schedule = LRSchedule(optimizer, spec.schedule, spec.lr, spec.epochs, steps, spec.warmup_epochs, selection.minimize)
    optim = Optimization(optimizer, schedule, placement.precision.grad_scaler(), steps)

    resume_state = None
    if resume:
        resume_state, init_info = _resume(out_dir, spec, model, optim)

    meta_base = {
        "arch": spec.model.arch,
        "arch_kwargs": dict(getattr(model, "arch_kwargs", spec.model.kwargs)),
        "init_kwargs": dict(getattr(model, "init_kwargs", {})),
        "num_classes": info.num_classes,
        "input_shape": list(info.input_shape),
        "mean": list(mean),
        "std": list(std),
        "normalization": spec.model.normalize,
        "dataset": {"name": info.name, "info": info.to_dict()},
        "classes": list(info.classes),
        "method": spec.method,
        "method_kwargs": method_config(method),
        "adv": spec.adv,
        "adv_kwargs": dict(spec.adv_kwargs),
        "threat": method.threat(),
        "seed": spec.seed,
        "spec": spec.to_dict(),
        "init": init_info,
    }
    return Run(
        spec=spec,
        out_dir=out_dir,
        placement=placement,
        data=data,
        model=model,
        method=method,
        optim=optim,
        selection=selection,
        meta_base=meta_base,
        init_info=init_info,
        resume_state=resume_state,
        leftovers=leftovers,
    )


def _resume(out_dir: Path, spec: TrainSpec, model: nn.Module, optim: Optimization) -> tuple[dict, dict | None]:
    """Load last.pth's weights and optimizer, schedule and scaler states into the run;
    returns its training state and the --init it started from. The options must be
    the saved run's, but for RESUMABLE_CHANGES."""
    ckpt = read_checkpoint(out_dir / "last.pth")
    diffs = spec_differences(ckpt["meta"].get("spec") or {}, spec.to_dict())
    if diffs:
        raise RobustError(
            f"--resume: options differ from the run in {out_dir}: {'; '.join(diffs[:4])}"
            f"{' ...' if len(diffs) > 4 else ''}; resume with the same options (only "
            f"{', '.join(RESUMABLE_CHANGES[:-1])} may change) or pass --out DIR for a new run"
        )
    if not isinstance(ckpt.get("train_state"), dict):
        raise CheckpointError(f"{out_dir / 'last.pth'} holds no training state to resume from")
    load_state(model, ckpt["state_dict"], out_dir / "last.pth")
    optim.load_state_dict(ckpt["train_state"])
    return ckpt["train_state"], ckpt["meta"].get("init")


def method_config(method: TrainMethod) -> dict:
    """The base method's resolved options (an adversarial wrapper exposes ``base``)."""
    base = getattr(method, "base", method)
    return base.config() if hasattr(base, "config") else {}


INIT = TrainSpec.KEY + ("init",)  # the key of _load_init's errors: the checkpoint given does not fit


def _load_init(path: str, model: nn.Module) -> dict:
    """Start from another checkpoint's weights (fine-tuning); it must have the same
    architecture, classes, input shape and normalization."""
    ckpt = read_checkpoint(path)
    meta = ckpt["meta"]
    for key, ours in (
        ("arch", model.arch),
        ("num_classes", model.num_classes),
        ("input_shape", list(model.input_shape)),
    ):
        theirs = meta.get(key)
        if (list(theirs) if isinstance(theirs, (list, tuple)) else theirs) != ours:
            raise ValueProblem(INIT, f"{path} has {key} {theirs!r} but this run has {ours!r}")
    for key, ours in (("mean", model.mean), ("std", model.std)):
        if not torch.allclose(torch.as_tensor(meta[key], dtype=torch.float32), ours.float().cpu()):
            raise ValueProblem(
                INIT,
                f"{path} was trained with normalization {meta.get('normalization')!r} "
                f"({key} {meta[key]}); set model.normalize to the same",
            )
    load_state(model, ckpt["state_dict"], path)
    return {
        "path": str(path),
        "sha256": file_sha256(path),
        "arch": meta["arch"],
        "method": meta.get("method"),
        "adv": meta.get("adv"),
        "epoch": meta.get("epoch"),
    }

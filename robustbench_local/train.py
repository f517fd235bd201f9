"""fit(): train one model from a TrainSpec, in data-flow order.

    prepare_run(spec)  validate everything (data, model, method, init checkpoint,
                       resume state, out folder) and build the pieces; nothing is
                       written yet, so a bad input leaves no trace on disk
    fit(spec)          seed, then per epoch: reseed, train, validate, extra
                       validation columns, save best.pth (selection metric on the
                       VALIDATION split) and last.pth (with the state to resume),
                       write history.csv; then test accuracy of best.pth, a summary
                       and one training record in the ResultsStore.

Reproducibility: the global RNG is reseeded at every epoch start with
``runtime.epoch_seed(seed, epoch)``, and the loader, augmentation, MixUp/CutMix and
dropout all draw from it, so a run resumed at an epoch boundary ends bit-identical
on CPU to one that was never interrupted.

Under torchrun (see distributed.py) the same fit() runs in every process:
``--batch-size`` stays the GLOBAL batch and each rank trains on batch/world_size
examples of its shard of the permutation, DDP averages the gradients, the epoch's
loss and accuracy sums are all-reduced, validation is sharded and all-reduced (extra
validation columns such as robust accuracy run on rank 0), and rank 0's epoch row is
broadcast so every rank takes the same best / early-stop decisions. Only rank 0
prints and writes. Every rank draws the same permutation (same seed); right after it
each rank switches to its own random stream, so augmentation, MixUp/CutMix, dropout
and attack starts differ between ranks as they would between examples of one batch.
"""
from __future__ import annotations

import csv
import io
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from . import distributed
from .checkpoint import file_sha256, load_checkpoint, load_state, read_checkpoint, save_checkpoint
from .errors import CheckpointError, RobustError
from .fileio import to_jsonable, write_json, write_text
from .lock import FolderLock
from .outputs import save_record
from .methods import TrainMethod, ValMetric, build_method
from .results import ResultsStore, wilson_interval
from .runtime import (configure_backends, cpu_has_native_bf16, environment, epoch_seed, is_interactive, module_mode,
                      resolve_channels_last, seed_everything)
from .specs import AUTO, TrainSpec
from .text import acc_text, duration, method_label, pct, plural

BASE_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s",
                "attack_seconds")
# options that may change when resuming: more epochs, another device, other patience;
# compiling changes no number
RESUMABLE_CHANGES = ("epochs", "device", "patience", "compile", "out")
STEP_MILESTONES = (0.5, 0.75)  # 'step' schedule: x0.1 at these fractions of the epochs
STEP_GAMMA = 0.1
PLATEAU_PATIENCE = 2  # 'plateau': x0.1 after this many epochs without improvement
PLATEAU_GAMMA = 0.1
ONECYCLE_PEAK = 0.3  # 'onecycle': linear from lr/25 up to lr at 30% of the steps, then linear down to 0
ONECYCLE_START = 1 / 25
NUMBERS_EVERY = 1.0  # seconds between readings of the running loss and accuracy (each costs one host sync)


# ----------------------------------------------------------------------------- schedule
class LRSchedule:
    """lr(step) = base_lr * warmup(step) * shape(step) * plateau_scale, set on the
    optimizer before every batch. Its whole state is a few numbers, so it saves in
    a weights_only checkpoint and resumes exactly."""

    def __init__(self, optimizer: torch.optim.Optimizer, kind: str, base_lr: float, epochs: int,
                 steps_per_epoch: int, warmup_epochs: float = 0.0, minimize: bool = False):
        self.optimizer = optimizer
        self.kind = kind
        self.base_lr = base_lr
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.total = epochs * self.steps_per_epoch
        self.warmup = int(round(warmup_epochs * self.steps_per_epoch))
        self.milestones = [max(1, math.floor(f * epochs + 0.5)) * self.steps_per_epoch for f in STEP_MILESTONES]
        self.minimize = minimize
        self.step_count = 0
        self.plateau_scale = 1.0
        self.plateau_best: float | None = None
        self.plateau_bad = 0
        self.apply()

    def factor(self, step: int) -> float:
        f = 1.0
        if step < self.warmup:
            f *= (step + 1) / self.warmup
        if self.kind == "cosine":
            q = min(max((step - self.warmup) / max(self.total - self.warmup, 1), 0.0), 1.0)
            f *= 0.5 * (1.0 + math.cos(math.pi * q))
        elif self.kind == "onecycle":
            q = min(step / max(self.total, 1), 1.0)
            if q < ONECYCLE_PEAK:
                f *= ONECYCLE_START + (1.0 - ONECYCLE_START) * q / ONECYCLE_PEAK
            else:
                f *= (1.0 - q) / (1.0 - ONECYCLE_PEAK)
        elif self.kind == "step":
            f *= STEP_GAMMA ** sum(step >= m for m in self.milestones)
        elif self.kind == "plateau":
            f *= self.plateau_scale
        return f

    @property
    def lr(self) -> float:
        return self.base_lr * self.factor(self.step_count)

    def apply(self) -> None:
        lr = self.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)

    def step(self) -> None:
        """After each optimizer step."""
        self.step_count += 1
        self.apply()

    def epoch_end(self, metric: float) -> None:
        """After each epoch's validation; drives 'plateau'."""
        if self.kind != "plateau" or metric is None or math.isnan(metric):
            return
        if self.plateau_best is None or (metric < self.plateau_best if self.minimize else metric > self.plateau_best):
            self.plateau_best, self.plateau_bad = metric, 0
            return
        self.plateau_bad += 1
        if self.plateau_bad > PLATEAU_PATIENCE:
            self.plateau_scale *= PLATEAU_GAMMA
            self.plateau_bad = 0
            self.apply()

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "plateau_scale": self.plateau_scale,
                "plateau_best": self.plateau_best, "plateau_bad": self.plateau_bad}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        self.plateau_scale = float(state["plateau_scale"])
        self.plateau_best = state["plateau_best"]
        self.plateau_bad = int(state["plateau_bad"])
        self.apply()


def param_groups(model: nn.Module, spec: TrainSpec) -> list[dict]:
    """The optimizer's parameter groups. A network may ask for its own through an
    ``optimizer_groups()`` method (groups with ``lr_scale`` / ``wd_scale`` factors on
    the run's lr and weight decay; LRSchedule keeps ``lr_scale`` on every step);
    otherwise one group of every parameter."""
    net = getattr(model, "net", model)
    if not hasattr(net, "optimizer_groups"):
        return [{"params": list(model.parameters())}]
    groups = net.optimizer_groups()
    out = []
    for g in groups:
        scale, wd_scale = float(g.get("lr_scale", 1.0)), float(g.get("wd_scale", 1.0))
        out.append({"params": list(g["params"]), "lr": spec.lr * scale, "lr_scale": scale,
                    "weight_decay": spec.weight_decay * wd_scale})
    covered = sum(len(g["params"]) for g in out)
    trainable = sum(1 for p in model.parameters() if p.requires_grad)
    if covered != trainable:  # a group hook that drops or repeats parameters is a bug, not a choice
        raise RobustError(f"{type(net).__name__}.optimizer_groups() covers {covered} of {trainable} trainable "
                          f"parameters; every trainable parameter must be in exactly one group")
    return out


def build_optimizer(spec: TrainSpec, params) -> torch.optim.Optimizer:
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov,
                               weight_decay=spec.weight_decay)
    if spec.optimizer == "adam":
        return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    return torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)


# ----------------------------------------------------------------------------- precision
@dataclass(frozen=True)
class Precision:
    """Mixed precision for the training forward pass. CUDA: bf16 where supported,
    else fp16 with a GradScaler; CPU: bf16 when asked for (so the path runs on CPU
    too). Validation and test always run in float32."""

    dtype: torch.dtype | None  # None = float32 throughout
    device_type: str

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    @property
    def label(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    @property
    def needs_scaler(self) -> bool:
        return self.dtype == torch.float16

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype or torch.bfloat16, enabled=self.enabled)


def resolve_precision(amp: bool | str, device: torch.device) -> Precision:
    on = device.type == "cuda" if amp == AUTO else bool(amp)
    if not on:
        return Precision(None, device.type)
    if device.type == "cuda":
        return Precision(torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16, "cuda")
    if device.type == "cpu":
        return Precision(torch.bfloat16, "cpu")
    raise RobustError(f"--amp is not supported on {device.type}; pass --no-amp")


def resolve_compile(value: bool | str) -> str | None:
    """The torch.compile backend, or None for eager."""
    if value is False:
        return None
    backend = "inductor" if value is True else value
    import torch._dynamo

    known = torch._dynamo.list_backends(exclude_tags=())
    if backend not in known:
        raise RobustError(f"unknown torch.compile backend '{backend}'; valid: {', '.join(sorted(known))}")
    return backend


# ----------------------------------------------------------------------------- the training forward
class TrainingModel(nn.Module):
    """What fit() hands to the training method: ``model(x)``, routed by what the
    forward is for, so methods need to know nothing of DDP, compile or AMP.

    - A forward that can give parameter gradients (grad mode on and some parameter
      requiring grad) is a training forward: it goes through DDP (which all-reduces
      the gradients in backward; two forwards before one backward, as TRADES does,
      are fine) and torch.compile when on, under AMP when on, and returns float32
      logits, so every loss is computed in float32.
    - Any other forward is an attack's (attacks turn parameter gradients off, see
      attacks/base.py) or a no-grad one: it runs on the plain module (compiled when
      on) in float32, or in the AMP dtype with attack_precision 'amp'. DDP has nothing
      to synchronise there; bypassing it keeps its reducer out of the k attack steps
      and saves a buffer broadcast per step.

    ``fast`` holds the same weights as the registered ``train_forward`` and is kept
    out of the module tree, so ``parameters()`` and ``train()`` see each weight once."""

    def __init__(self, fast: nn.Module, train_forward: nn.Module, precision: Precision,
                 attack_precision: str = "fp32"):
        super().__init__()
        self.train_forward = train_forward
        self.__dict__["fast"] = fast
        self.precision = precision
        self.attack_amp = attack_precision == "amp" and precision.enabled
        self._params = list(fast.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and any(p.requires_grad for p in self._params):
            with self.precision.autocast():
                return self.train_forward(x).float()
        with torch.autocast(self.precision.device_type, dtype=self.precision.dtype or torch.bfloat16,
                            enabled=self.attack_amp):
            return self.fast(x).float()


def build_training_model(model: nn.Module, device: torch.device, precision: Precision, *,
                         compile_backend: str | None = None, attack_precision: str = "fp32") -> TrainingModel:
    """model -> [torch.compile] -> [DDP under torchrun] -> TrainingModel. ``model``
    keeps the weights (checkpoints and validation use it unwrapped)."""
    fast = torch.compile(model, backend=compile_backend) if compile_backend else model
    return TrainingModel(fast, distributed.wrap_ddp(fast, device), precision, attack_precision)


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate_split(model: nn.Module, split, device: torch.device, *, batch_size: int = 512,
                   criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                   channels_last: bool = False, sharded: bool = False, progress=None,
                   num_classes: int | None = None) -> dict:
    """Float32 loss (if a criterion is given), correct count and accuracy on a split,
    model in eval mode (restored afterwards); with ``num_classes`` also how often each
    class is predicted and labelled (pred_counts, label_counts: is the model degenerate?). ``sharded``: under torchrun each rank
    evaluates a contiguous share and the sums are all-reduced (every rank returns the
    whole split's numbers). ``progress``: a progress.Task advanced by each batch."""
    from .data import TensorLoader

    n = len(split)
    if sharded and distributed.world_size() > 1:
        part = distributed.my_slice(n)
        split = split.take(torch.arange(part.start, part.stop))
    if progress is not None:
        progress.update(total=len(split))  # this rank's share
    sums = torch.zeros(2, device=device, dtype=torch.float64)  # loss sum, correct count
    counts = torch.zeros(2, num_classes or 0, device=device, dtype=torch.int64)  # predicted, labelled per class
    if len(split):
        with module_mode(model, train=False):
            for x, y in TensorLoader(split, batch_size, device=device, shuffle=False, channels_last=channels_last):
                logits = model(x)
                sums[1] += (logits.argmax(1) == y).sum()
                if num_classes:
                    counts[0] += torch.bincount(logits.argmax(1), minlength=num_classes)[:num_classes]
                    counts[1] += torch.bincount(y, minlength=num_classes)[:num_classes]
                if criterion is not None:
                    sums[0] += criterion(logits, y).double().sum()
                if progress is not None:
                    progress.advance(len(y))
    if sharded:
        distributed.all_reduce_sum(sums)
        if num_classes:
            distributed.all_reduce_sum(counts)
    loss_sum, k = float(sums[0]), int(sums[1])
    out = {"n": n, "correct": k, "acc": k / n if n else float("nan"),
           "loss": loss_sum / n if n and criterion is not None else float("nan")}
    if num_classes:
        out.update(pred_counts=counts[0].tolist(), label_counts=counts[1].tolist())
    return out


# ----------------------------------------------------------------------------- progress
class Reporter:
    """What fit() shows: a progress task per epoch, validation and test pass (see
    progress.py: a live bar on a terminal, a plain line every 30 s otherwise), one
    line per epoch and a summary; nothing when quiet."""

    def __init__(self, console=None, interactive: bool | None = None, quiet: bool = False):
        from rich.console import Console

        from .progress import ProgressDisplay

        self.quiet = quiet
        self.console = console or Console(highlight=False)
        self.display = ProgressDisplay(self.console, quiet=quiet,
                                       interactive=is_interactive() if interactive is None else interactive)
        self.interactive = self.display.mode == "terminal"
        self._epoch = None

    def say(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def task(self, description: str, total: int | None = None, unit: str = "images"):
        """A pass with its own progress (validation, test); its result is printed by the caller."""
        return self.display.task(description, total, unit, final=False)

    def begin_epoch(self, epoch: int, epochs: int, batches: int) -> None:
        if self._epoch is not None:
            self._epoch.close()
        self._epoch = self.display.task(f"epoch {epoch}/{epochs}", batches, "batches", final=False)

    @property
    def wants_batches(self) -> bool:
        return not self.quiet

    def batch(self, done: int, loss: float | None = None, acc: float | None = None, ips: float | None = None) -> None:
        """Every batch moves the count; the numbers come when the caller has read them."""
        if self._epoch is not None:
            info = None if loss is None else f"loss {loss:.3f}  acc {pct(acc)}  {ips:,.0f} img/s"
            self._epoch.update(completed=done, info=info)

    def end_epoch(self) -> None:
        if self._epoch is not None:
            self._epoch.close()
            self._epoch = None

    def epoch(self, row: dict, epochs: int, best: bool, extra: Sequence[str], train_seconds: float | None = None,
              val_seconds: float | None = None, n_val: int | None = None) -> None:
        extras = "".join(f"  {c} {_column_text(c, row.get(c))}" for c in extra)
        n = f" (n={n_val:,})" if n_val is not None else ""
        took = (f"train {train_seconds:.1f} s + val {val_seconds:.1f} s" if train_seconds is not None
                else f"{row['seconds']:.1f} s")
        self.say(
            f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} acc {pct(row['train_acc'])}  "
            f"val loss {row['val_loss']:.4f} acc {pct(row['val_acc'])}{n}{extras}  lr {row['lr']:.4g}  "
            f"{took}  {row['images_per_s']:,.0f} img/s" + ("  *best" if best else "")
        )

    def stop(self) -> None:
        self._epoch = None
        self.display.close()

    def summary(self, rows: list[tuple[str, str]], title: str) -> None:
        if self.quiet:
            return
        if self.interactive:
            from rich.table import Table

            table = Table(title=title, show_header=False)
            table.add_column(style="bold")
            table.add_column()
            for k, v in rows:
                table.add_row(k, v)
            self.console.print(table)
        else:
            self.say(title)
            for k, v in rows:
                self.say(f"  {k}: {v}")


def _column_text(name: str, value) -> str:
    """An extra validation column as printed: accuracies as percents."""
    if isinstance(value, float):
        return pct(value) if name.endswith("acc") else f"{value:.4f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def duration_text(seconds: dict | None, epochs: int) -> str:
    """A training run's one duration, from the record's seconds (training and
    validation, every session of a resumed run; the final test pass not included):
    '42.3 s over 2 epochs (train 15.0 s + val 6.2 s per epoch)'."""
    if not seconds or not epochs:
        return "unknown"
    train, val = seconds["train"], seconds["val"]
    return (f"{duration(train + val)} over {plural(epochs, 'epoch')} "
            f"(train {train / epochs:.1f} s + val {val / epochs:.1f} s per epoch)")


# ----------------------------------------------------------------------------- the run
@dataclass
class FitResult:
    out_dir: Path
    best_path: Path
    last_path: Path
    history: list[dict]
    best_epoch: int | None
    metrics: dict
    record_path: Path | None = None
    stopped: str | None = None  # why training stopped before its last epoch
    already_finished: bool = False  # --resume on a run that had finished: nothing was done
    seconds: dict | None = None  # training and validation seconds of every session (see duration_text)


@dataclass
class Run:
    """Everything fit needs, built and validated by ``prepare_run`` before any write."""

    spec: TrainSpec
    device: torch.device
    precision: Precision
    channels_last: bool
    bundle: Any
    train: Any
    augment_policy: str
    augment: Any
    model: nn.Module
    method: TrainMethod
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    scaler: Any
    steps_per_epoch: int
    val_metrics: list[ValMetric]
    selection: str
    minimize: bool
    out_dir: Path
    resume_state: dict | None = None
    init_info: dict | None = None
    meta_base: dict = field(default_factory=dict)
    net: nn.Module | None = None  # the TrainingModel the method is called with (built by fit)
    compile_backend: str | None = None
    world_size: int = 1
    local_batch: int = 0  # examples per rank per step (= batch_size in a single process)
    leftovers: list[Path] = field(default_factory=list)  # files of a first epoch cut off, removed before writing

    @property
    def best_path(self) -> Path:
        return self.out_dir / "best.pth"

    @property
    def last_path(self) -> Path:
        return self.out_dir / "last.pth"


def run_folder(spec: TrainSpec) -> Path:
    """--out, or runs/<dataset>-<model>-<method>[-adv]-s<seed>."""
    return Path(spec.out) if spec.out else Path("runs") / spec.run_name()


def _holds_run(out: Path) -> bool:
    return any((out / name).exists() for name in ("last.pth", "best.pth", "history.csv"))


def first_epoch_leftovers(out: Path) -> list[Path]:
    """What a run cut off inside its first epoch leaves: best.pth and config.json
    (last.pth and history.csv are written after best.pth at every epoch's end), and
    temporary files of interrupted writes. Nothing in them can be resumed. Empty
    when the folder holds last.pth or history.csv: a run that finished an epoch."""
    if not out.is_dir() or (out / "last.pth").exists() or (out / "history.csv").exists():
        return []
    found = [out / n for n in ("best.pth", "config.json") if (out / n).exists()]
    return found + sorted(p for n in ("best.pth", "last.pth", "config.json", "history.csv")
                          for p in out.glob(f".{n}.*.tmp"))


def _fresh_folder(out: Path, spec: TrainSpec) -> list[Path]:
    """Check that ``out`` may receive a new run of ``spec``; returns the leftovers of a
    first epoch that never finished (to be removed). Another configuration's run is
    named by its differing options: two runs never share a folder."""
    if (out / "last.pth").is_file():
        try:
            saved = read_checkpoint(out / "last.pth")["meta"].get("spec") or {}
            diffs = _spec_differences(saved, spec.to_dict())
        except RobustError:
            diffs = []
        if diffs:
            raise RobustError(f"{out} holds a run trained with other options ({'; '.join(diffs[:4])}"
                              f"{' ...' if len(diffs) > 4 else ''}); pass --out DIR for a new run, or delete "
                              f"{out} to start over")
        raise RobustError(f"{out} already holds a run; pass --resume to continue it or --out DIR for a new one")
    if _holds_run(out) and (out / "history.csv").exists():
        raise RobustError(f"{out} holds a run with no last.pth (deleted?), so nothing to resume, and its best.pth "
                          f"is kept; pass --out DIR for a new run, or delete {out} to start over")
    return first_epoch_leftovers(out)


def _lock_folder(spec: TrainSpec):
    """One `robust train` per run folder: the lock is taken by the process that writes
    (rank 0 under torchrun, which sets RANK before any process group exists)."""
    if int(os.environ.get("RANK", "0") or 0) != 0:
        return nullcontext()
    return FolderLock(run_folder(spec), "train", option="--out")


def _cannot_write(run: "Run", e: OSError) -> RobustError:
    then = "continue with --resume" if run.last_path.is_file() else "run the same command again"
    return RobustError(f"cannot write to {run.out_dir} (--out): {e.strerror or e}; once that is fixed, {then}")


def _spec_differences(saved: dict, current: dict) -> list[str]:
    saved, current = to_jsonable(saved), to_jsonable(current)
    # a run saved before an option existed ran with that option's default
    saved = {**{k: v for k, v in to_jsonable(TrainSpec().to_dict()).items() if k not in saved}, **saved}
    diffs = []

    def walk(a, b, prefix):
        for k in sorted(set(a) | set(b)):
            if not prefix and k in RESUMABLE_CHANGES:
                continue
            va, vb = a.get(k), b.get(k)
            if isinstance(va, dict) and isinstance(vb, dict):
                walk(va, vb, f"{prefix}{k}.")
            elif va != vb:
                diffs.append(f"{prefix}{k} {va!r} -> {vb!r}")

    walk(saved, current, "")
    return diffs


def prepare_run(spec: TrainSpec, *, resume: bool = False, val_metrics: Sequence[ValMetric] = ()) -> Run:
    """Build and check every piece of a run; raises RobustError (one line) before
    anything is written."""
    from .data import TensorLoader, build_augment, default_augment, load_dataset
    from .models import build_model, resolve_normalization

    device = distributed.init(spec.device)  # joins the process group under torchrun
    world = distributed.world_size()
    local_batch = distributed.global_to_local_batch(spec.batch_size, world)
    precision = resolve_precision(spec.amp, device)
    channels_last = resolve_channels_last(spec.channels_last, device)
    compile_backend = resolve_compile(spec.compile)
    if spec.sync_bn and device.type != "cuda":
        raise RobustError("--sync-bn needs CUDA GPUs (PyTorch's SyncBatchNorm has no CPU kernels); drop it")

    out_dir = run_folder(spec)
    if out_dir.exists() and not out_dir.is_dir():
        raise RobustError(f"--out {out_dir} is a file, not a folder")
    if resume and not (out_dir / "last.pth").is_file():
        raise RobustError(f"nothing to resume in {out_dir} (no last.pth); drop --resume to start the run")
    leftovers = [] if resume else _fresh_folder(out_dir, spec)

    d = spec.data
    with distributed.main_first():  # rank 0 decodes the data cache once; the others then read it
        bundle = load_dataset(d.dataset, data_root=d.data_root, image_size=d.image_size,
                              val_fraction=d.val_fraction, split_seed=d.split_seed)
    info = bundle.info
    train = bundle.train if d.subset is None else bundle.train.subset(d.subset, seed=d.split_seed)
    if len(bundle.val) == 0:
        raise RobustError(f"the validation split of {info.name} is empty; raise --val-fraction")
    augment_policy = d.augment or default_augment(info)
    augment = build_augment(augment_policy, info)

    seed_everything(spec.seed)  # model initialisation is part of the seeded run
    mean, std = resolve_normalization(spec.model.normalize, info)
    model = build_model(spec.model.arch, num_classes=info.num_classes, input_shape=info.input_shape,
                        mean=mean, std=std, **spec.model.kwargs)
    init_info = _load_init(spec.init, model) if spec.init and not resume else None
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if spec.sync_bn:
        model = distributed.convert_sync_bn(model, device)  # same Parameter objects: the optimizer below sees them

    method = build_method(spec)
    extra = list(val_metrics) + list(method.validation_metrics())
    columns = {"val_acc", "val_loss"} | {c for m in extra for c in m.columns}
    selection = method.selection if spec.selection == AUTO else spec.selection
    if selection not in columns:
        raise RobustError(f"unknown selection metric '{selection}'; valid: {', '.join(sorted(columns))}")
    minimize = selection.endswith("loss")

    if len(train) < world:
        raise RobustError(f"{len(train)} training examples cannot be shared by {world} processes")
    steps = len(TensorLoader(train, local_batch, device="cpu", shuffle=False, world_size=world))
    steps *= method.replays  # optimizer steps per epoch
    optimizer = build_optimizer(spec, param_groups(model, spec))
    schedule = LRSchedule(optimizer, spec.schedule, spec.lr, spec.epochs, steps, spec.warmup_epochs, minimize)
    scaler = torch.amp.GradScaler(device.type) if precision.needs_scaler else None

    resume_state = None
    if resume:
        ckpt = read_checkpoint(out_dir / "last.pth")
        saved_spec = ckpt["meta"].get("spec") or {}
        diffs = _spec_differences(saved_spec, spec.to_dict())
        if diffs:
            raise RobustError(
                f"--resume: options differ from the run in {out_dir}: {'; '.join(diffs[:4])}"
                f"{' ...' if len(diffs) > 4 else ''}; resume with the same options (only "
                f"{', '.join(RESUMABLE_CHANGES[:-1])} may change) or pass --out DIR for a new run"
            )
        if not isinstance(ckpt.get("train_state"), dict):
            raise CheckpointError(f"{out_dir / 'last.pth'} holds no training state to resume from")
        load_state(model, ckpt["state_dict"], out_dir / "last.pth")
        resume_state = ckpt["train_state"]
        optimizer.load_state_dict(resume_state["optimizer"])
        schedule.load_state_dict(resume_state["schedule"])
        if scaler is not None and resume_state.get("scaler"):
            scaler.load_state_dict(resume_state["scaler"])
        init_info = ckpt["meta"].get("init")

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
    return Run(spec, device, precision, channels_last, bundle, train, augment_policy, augment, model, method,
               optimizer, schedule, scaler, steps, extra, selection, minimize, out_dir, resume_state, init_info,
               meta_base, compile_backend=compile_backend, world_size=world, local_batch=local_batch,
               leftovers=leftovers)


def method_config(method: TrainMethod) -> dict:
    """The base method's resolved options (an adversarial wrapper exposes ``base``)."""
    base = getattr(method, "base", method)
    return base.config() if hasattr(base, "config") else {}


def _load_init(path: str, model: nn.Module) -> dict:
    """Start from another checkpoint's weights (fine-tuning); it must have the same
    architecture, classes, input shape and normalization."""
    ckpt = read_checkpoint(path)
    meta = ckpt["meta"]
    for key, ours in (("arch", model.arch), ("num_classes", model.num_classes),
                      ("input_shape", list(model.input_shape))):
        theirs = meta.get(key)
        if (list(theirs) if isinstance(theirs, (list, tuple)) else theirs) != ours:
            raise CheckpointError(f"--init {path} has {key} {theirs!r} but this run has {ours!r}")
    for key, ours in (("mean", model.mean), ("std", model.std)):
        if not torch.allclose(torch.as_tensor(meta[key], dtype=torch.float32), ours.float().cpu()):
            raise CheckpointError(
                f"--init {path} was trained with normalization {meta.get('normalization')!r} "
                f"({key} {meta[key]}); pass the same --normalize"
            )
    load_state(model, ckpt["state_dict"], path)
    return {"path": str(path), "sha256": file_sha256(path), "arch": meta["arch"], "method": meta.get("method"),
            "adv": meta.get("adv"), "epoch": meta.get("epoch")}


def _write_history(path: Path, history: list[dict]) -> None:
    columns: list[str] = []
    for row in history:
        columns += [c for c in row if c not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text(path, buf.getvalue())


class RankStreams:
    """The loader's augment step under DDP. Every rank must draw the same permutation
    (the loader shards it), so all share the epoch seed; the loader draws it just
    before augmenting the epoch's first batch, and at that call each rank reseeds the
    global RNG with its own seed. From there augmentation, MixUp/CutMix, dropout and
    attack starts differ between ranks, as between examples of one batch, and stay
    reproducible (the seed depends only on seed, epoch and rank)."""

    def __init__(self, augment: Callable[[torch.Tensor], torch.Tensor] | None, seed: int, rank: int):
        self.augment = augment
        self.seed = seed
        self.rank = rank
        self._pending: int | None = None

    def start_epoch(self, epoch: int) -> None:
        self._pending = (epoch_seed(self.seed, epoch) + 1_000_033 * (self.rank + 1)) % (2**63 - 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._pending is not None:
            torch.manual_seed(self._pending)
            self._pending = None
        return self.augment(x) if self.augment is not None else x


def _train_epoch(run: Run, loader, reporter: Reporter) -> dict:
    method = run.method
    net = run.net if run.net is not None else run.model
    net.train()
    loss_sum = torch.zeros((), device=run.device, dtype=torch.float64)
    correct = torch.zeros((), device=run.device, dtype=torch.int64)
    seen, attack_seconds = 0, 0.0
    start = read = time.perf_counter()
    for i, (x, y) in enumerate(loader):
        n = y.shape[0]
        for _ in range(method.replays):  # free AT steps several times on each batch
            out = method(net, x, y)  # the TrainingModel applies AMP to training forwards only
            _update(run, out.loss)
            # running sums stay on the device: no host sync per batch
            loss_sum += out.loss.detach().double() * n
            correct += (out.logits.detach().argmax(1) == out.target).sum()
            attack_seconds += out.attack_seconds
        seen += n
        if reporter.wants_batches:
            # the count moves every batch (free); the loss is read off the device about once a second
            now = time.perf_counter()
            if now - read >= NUMBERS_EVERY or i + 1 == len(loader):
                read = now
                judged = seen * method.replays  # every replay's loss and predictions count
                reporter.batch(i + 1, float(loss_sum) / judged, int(correct) / judged, seen / max(now - start, 1e-9))
            else:
                reporter.batch(i + 1)
    reporter.end_epoch()
    # the epoch's numbers over all ranks (exact: float64 holds these counts exactly)
    totals = distributed.all_reduce_sum(torch.stack([loss_sum, correct.double(), loss_sum.new_tensor(float(seen))]))
    loss_sum, n_correct, seen = float(totals[0]), int(totals[1]), int(totals[2])
    judged = max(seen * method.replays, 1)
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    seconds = time.perf_counter() - start
    return {"loss": loss_sum / judged, "acc": n_correct / judged, "seen": seen,
            "seconds": seconds, "attack_seconds": attack_seconds}


def _update(run: Run, loss: torch.Tensor) -> None:
    """One optimizer step on ``loss``: backward (scaled for fp16), optional gradient
    clipping, step, and the learning-rate schedule."""
    optimizer, scaler, clip, params = run.optimizer, run.scaler, run.spec.grad_clip, run.model.parameters()
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        if clip is not None:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(params, clip)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
    run.schedule.step()


def _recorded(store: ResultsStore, best_path: Path) -> bool:
    """Whether the store holds the training record of this best.pth (by its sha256)."""
    sha = file_sha256(best_path)
    return any(True for _ in store.find("train", **{"checkpoint.sha256": sha}))


def _is_better(value: float, best: float | None, minimize: bool) -> bool:
    if value is None or math.isnan(value):
        return False
    return best is None or (value < best if minimize else value > best)


def fit(spec: TrainSpec, *, resume: bool = False, store: ResultsStore | None = None, console=None,
        progress: bool | None = None, quiet: bool = False, val_metrics: Sequence[ValMetric] = (),
        on_epoch_end: Callable[[dict], None] | None = None) -> FitResult:
    """Train ``spec``; see the module docstring. ``store`` receives one training
    record at the end (None: no record). ``progress`` None = a live bar only on a
    terminal. ``val_metrics`` add validation columns (the method's own are added
    too); ``on_epoch_end(row)`` runs after each epoch's files are written. Under
    torchrun every rank calls fit() and gets the same FitResult; rank 0 alone prints,
    writes files and the record, and runs ``val_metrics`` and ``on_epoch_end``.

    The run folder is locked from the first check of what it holds to the last write,
    so a second fit() into it is refused at once (one writer per folder)."""
    with _lock_folder(spec):
        run = prepare_run(spec, resume=resume, val_metrics=val_metrics)
        try:
            return _train(run, resume=resume, store=store, console=console, progress=progress, quiet=quiet,
                          on_epoch_end=on_epoch_end)
        except OSError as e:  # a full disk or a revoked permission mid-run: every file was written atomically
            raise _cannot_write(run, e) from None


def _train(run: Run, *, resume: bool, store: ResultsStore | None, console, progress: bool | None, quiet: bool,
           on_epoch_end: Callable[[dict], None] | None) -> FitResult:
    """fit() once its folder is locked and ``run`` is prepared."""
    from .data import TensorLoader

    main = distributed.is_main()
    reporter = Reporter(console, progress, quiet or not main)
    spec, model, method = run.spec, run.model, run.method
    configure_backends(run.device)
    # every rank has validated its inputs (prepare_run) before rank 0 writes anything
    distributed.barrier()

    state = run.resume_state or {}
    history: list[dict] = list(state.get("history", []))
    start_epoch = int(state.get("epoch", 0))
    best = dict(state.get("best") or {"epoch": None, "value": None, "metric": run.selection})
    bad_epochs = int(state.get("bad_epochs", 0))
    seconds = dict(state.get("seconds") or {"train": 0.0, "attack": 0.0, "val": 0.0})

    if resume and (state.get("stopped") or start_epoch >= spec.epochs):
        why = state.get("stopped") or f"all {start_epoch} epochs done"
        # cut off during the final test pass, or its record never written: finish those now
        unrecorded = bool(main and store is not None and best.get("epoch") is not None
                          and run.best_path.is_file() and not _recorded(store, run.best_path))
        if distributed.broadcast_object(unrecorded):
            reporter.say(f"{run.out_dir} finished training ({why}) but its test pass and record are missing; "
                         "finishing them")
            return _finish(run, history, best, seconds, state.get("stopped"), store, reporter)
        reporter.say(f"{run.out_dir} already finished ({why}); nothing to do")
        return FitResult(run.out_dir, run.best_path, run.last_path, history, best.get("epoch"),
                         {"selection": run.selection, "selection_value": best.get("value")},
                         stopped=state.get("stopped"), already_finished=True)

    # from here on the run folder exists; every file in it is written atomically
    resolved = {"device": str(run.device), "precision": run.precision.label, "channels_last": run.channels_last,
                "compile": run.compile_backend, "attack_precision": spec.attack_precision,
                "augment": run.augment_policy, "selection": run.selection, "n_train": len(run.train),
                "n_val": len(run.bundle.val), "n_test": len(run.bundle.test), "steps_per_epoch": run.steps_per_epoch,
                "world_size": run.world_size, "batch_per_rank": run.local_batch}
    if main:
        if run.leftovers:
            reporter.say(f"removing {', '.join(p.name for p in run.leftovers)} left by a first epoch that "
                         "never finished")
            for f in run.leftovers:
                f.unlink(missing_ok=True)
        run.out_dir.mkdir(parents=True, exist_ok=True)
        write_json(run.out_dir / "config.json", {"spec": spec.to_dict(), "resolved": resolved})

    run.net = build_training_model(model, run.device, run.precision, compile_backend=run.compile_backend,
                                   attack_precision=spec.attack_precision)
    streams = RankStreams(run.augment, spec.seed, distributed.rank()) if run.world_size > 1 else None
    loader = TensorLoader(run.train, run.local_batch, device=run.device, shuffle=True,
                          augment=streams if streams is not None else run.augment,
                          rank=distributed.rank(), world_size=run.world_size, channels_last=run.channels_last)
    extra_columns = [c for m in run.val_metrics for c in m.columns]
    reporter.say(
        f"training {spec.model.arch} on {run.bundle.info.name} ({len(run.train)} train / {len(run.bundle.val)} val) "
        f"with {method_label(spec.method, spec.adv)} for {plural(spec.epochs, 'epoch')} on "
        f"{run.device} ({run.precision.label}) -> {run.out_dir}"
        + (f", {run.world_size} processes x {run.local_batch} images per step" if run.world_size > 1 else "")
        + (f", resuming after epoch {start_epoch}" if start_epoch else "")
    )
    if run.precision.enabled and run.device.type == "cpu" and cpu_has_native_bf16() is False:
        reporter.say("warning: this CPU has no native bf16 instructions (avx512_bf16 or AMX), so --amp emulates "
                     "bf16 and is usually several times slower than fp32 here; drop --amp")
    stopped: str | None = None
    try:
        for epoch in range(start_epoch, spec.epochs):
            torch.manual_seed(epoch_seed(spec.seed, epoch))
            if streams is not None:
                streams.start_epoch(epoch)
            method.start_epoch(epoch, spec.epochs)
            reporter.begin_epoch(epoch + 1, spec.epochs, len(loader))
            lr = run.schedule.lr
            t = _train_epoch(run, loader, reporter)
            if not math.isfinite(t["loss"]):
                raise RobustError(f"training diverged at epoch {epoch + 1} (train loss {t['loss']}); "
                                  "lower --lr or set --grad-clip")
            v_start = time.perf_counter()
            distributed.broadcast_buffers(model)  # one model on every rank: rank 0's, the one saved
            with reporter.task("validation", len(run.bundle.val)) as task:
                val = evaluate_split(model, run.bundle.val, run.device, batch_size=max(spec.batch_size, 256),
                                     criterion=method.criterion, channels_last=run.channels_last, sharded=True,
                                     progress=task, num_classes=run.bundle.info.num_classes)
            row = {"epoch": epoch + 1, "train_loss": t["loss"], "train_acc": t["acc"], "val_loss": val["loss"],
                   "val_acc": val["acc"], "lr": lr}
            # a model that guesses or predicts one class is no model: say so now, and keep it in the history
            from .checks import degenerate_counts

            degenerate = degenerate_counts(val["correct"], val["n"], val["pred_counts"], val["label_counts"],
                                           run.bundle.info.classes)
            if not degenerate.ok:
                row["warning"] = f"degenerate model on validation: {degenerate.detail}"
                reporter.say(f"warning: epoch {epoch + 1}: {row['warning']}")
            if main:
                model.eval()
                try:
                    for m in run.val_metrics:
                        with reporter.task(f"validation: {m.columns[0]}", unit=""):  # no count: elapsed time
                            row.update(m.fn(model, run.bundle.val, run.device))
                finally:
                    model.train()
            v_seconds = time.perf_counter() - v_start
            row.update({"seconds": t["seconds"] + v_seconds, "images_per_s": t["seen"] / max(t["seconds"], 1e-9),
                        "attack_seconds": t["attack_seconds"]})
            row = distributed.broadcast_object(row)  # rank 0's row everywhere: the same decisions below
            seconds["train"] += t["seconds"]  # each rank its own; rank 0's are the ones written
            seconds["attack"] += t["attack_seconds"]
            seconds["val"] += v_seconds
            history.append(row)

            value = row.get(run.selection)
            improved = _is_better(value, best["value"], run.minimize)
            if improved:
                best = {"epoch": epoch + 1, "value": value, "metric": run.selection}
                bad_epochs = 0
                if main:
                    save_checkpoint(run.best_path, model, {**run.meta_base, "epoch": epoch + 1, "metrics": row})
            else:
                bad_epochs += 1
            run.schedule.epoch_end(value)
            reason = method.end_epoch(row, history)
            if reason:
                stopped = reason
            elif spec.patience is not None and bad_epochs >= spec.patience and epoch + 1 < spec.epochs:
                stopped = f"early stop: {run.selection} did not improve for {plural(bad_epochs, 'epoch')}"
            if main:
                train_state = {
                    "epoch": epoch + 1, "optimizer": run.optimizer.state_dict(),
                    "schedule": run.schedule.state_dict(),
                    "scaler": run.scaler.state_dict() if run.scaler is not None else None, "history": history,
                    "best": best, "bad_epochs": bad_epochs, "stopped": stopped, "seconds": seconds,
                }
                save_checkpoint(run.last_path, model, {**run.meta_base, "epoch": epoch + 1, "metrics": row},
                                train_state=train_state)
                _write_history(run.out_dir / "history.csv", history)
                reporter.epoch(row, spec.epochs, improved, extra_columns, t["seconds"], v_seconds, len(run.bundle.val))
                if on_epoch_end is not None:
                    on_epoch_end(row)
            if stopped:
                reporter.say(stopped)
                break
    finally:
        reporter.stop()

    if best["epoch"] is None:
        raise RobustError(f"no epoch produced a finite {run.selection}; best.pth was not written")
    distributed.barrier()  # best.pth and last.pth are complete before any rank reads them
    return _finish(run, history, best, seconds, stopped, store, reporter)


def _finish(run: Run, history: list[dict], best: dict, seconds: dict, stopped: str | None,
            store: ResultsStore | None, reporter: Reporter) -> FitResult:
    """Test accuracy of best.pth (reported, never used for a choice; sharded under
    torchrun), summary, record (rank 0)."""
    spec = run.spec
    best_model, best_meta = load_checkpoint(run.best_path, run.device)
    if run.channels_last:
        best_model.to(memory_format=torch.channels_last)
    with reporter.task("test (best.pth)", len(run.bundle.test)) as task:
        test = evaluate_split(best_model, run.bundle.test, run.device, batch_size=max(spec.batch_size, 256),
                              criterion=run.method.criterion, channels_last=run.channels_last, sharded=True,
                              progress=task)
    row = next(r for r in history if r["epoch"] == best["epoch"])
    n_val = len(run.bundle.val)
    k_val = int(round(row["val_acc"] * n_val))
    metrics = {
        "selection": run.selection, "selection_value": best["value"], "best_epoch": best["epoch"],
        "val_acc": row["val_acc"], "val_loss": row["val_loss"], "val_n": n_val, "val_correct": k_val,
        "val_ci95": list(wilson_interval(k_val, n_val)),
        "test_acc": test["acc"], "test_loss": test["loss"], "test_n": test["n"], "test_correct": test["correct"],
        "test_ci95": list(wilson_interval(test["correct"], test["n"])),
        **{c: row[c] for c in row if c not in BASE_COLUMNS and c not in ("val_acc", "val_loss")},
    }
    total = seconds["train"] + seconds["val"]
    record_path, unsaved = None, None
    if store is not None and distributed.is_main():
        info = run.bundle.info
        record = {
            "kind": "train",
            "checkpoint": {
                "path": str(run.best_path), "sha256": file_sha256(run.best_path),
                "last_path": str(run.last_path), "last_sha256": file_sha256(run.last_path),
                "out_dir": str(run.out_dir), "arch": best_meta["arch"], "arch_kwargs": best_meta["arch_kwargs"],
                "normalization": best_meta["normalization"], "mean": best_meta["mean"], "std": best_meta["std"],
                "method": spec.method, "method_kwargs": best_meta["method_kwargs"], "adv": spec.adv,
                "adv_kwargs": dict(spec.adv_kwargs), "threat": best_meta.get("threat"), "init": run.init_info,
                "params": sum(p.numel() for p in best_model.parameters()),
            },
            "spec": spec.to_dict(),
            "data": {
                "dataset": info.name, "info": info.to_dict(), "n_train": len(run.train), "n_val": n_val,
                "n_test": len(run.bundle.test), "subset": spec.data.subset, "split_seed": spec.data.split_seed,
                "val_fraction": spec.data.val_fraction, "augment": run.augment_policy,
                "chosen": ("first n of a permutation seeded by split_seed" if spec.data.subset else "whole train split")
                + " after carving val_fraction off train",
            },
            "history": history,
            "best_epoch": best["epoch"],
            "epochs_run": len(history),
            "stopped": stopped,
            "metrics": metrics,
            "minutes": total / 60,
            "seconds": {"train": seconds["train"], "attack": seconds["attack"],
                        "update": seconds["train"] - seconds["attack"], "validation": seconds["val"], "total": total},
            "precision": run.precision.label,
            "channels_last": run.channels_last,
            "compile": run.compile_backend,
            "attack_precision": spec.attack_precision,
            "world_size": run.world_size,
            "environment": environment(run.device, spec.seed),
        }
        try:  # a full disk keeps the record in a place the error names
            record_path = save_record(store, record, "--results")
        except RobustError as e:
            unsaved = e

    rows = [
        ("best epoch", f"{best['epoch']} of {len(history)} (by {run.selection} on validation)"),
        ("val acc", acc_text(metrics["val_acc"], n_val, metrics["val_ci95"])),
        ("test acc", acc_text(metrics["test_acc"], test["n"], metrics["test_ci95"]) + " (best.pth, reported only)"),
        ("time", duration_text(seconds, len(history))),
        ("best.pth", str(run.best_path)),
        ("last.pth", str(run.last_path)),
    ] + ([("record", str(record_path))] if record_path else []) + ([("stopped", stopped)] if stopped else [])
    reporter.summary(rows, f"{spec.model.arch} / {method_label(spec.method, spec.adv)} "
                           f"on {run.bundle.info.name}")
    if unsaved is not None:  # after the summary, so the numbers are on screen too
        raise unsaved
    return FitResult(run.out_dir, run.best_path, run.last_path, history, best["epoch"], metrics, record_path, stopped,
                     seconds=dict(seconds))

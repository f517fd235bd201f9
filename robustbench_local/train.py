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
"""
from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .checkpoint import file_sha256, load_checkpoint, load_state, read_checkpoint, save_checkpoint
from .errors import CheckpointError, RobustError
from .fileio import to_jsonable, write_json, write_text
from .methods import TrainMethod, ValMetric, build_method
from .results import ResultsStore, wilson_interval
from .runtime import configure_backends, environment, epoch_seed, is_interactive, resolve_device, seed_everything
from .specs import AUTO, TrainSpec

BASE_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s",
                "attack_seconds")
# options that may change when resuming: more epochs, another device, other patience
RESUMABLE_CHANGES = ("epochs", "device", "patience", "out")
STEP_MILESTONES = (0.5, 0.75)  # 'step' schedule: x0.1 at these fractions of the epochs
STEP_GAMMA = 0.1
PLATEAU_PATIENCE = 2  # 'plateau': x0.1 after this many epochs without improvement
PLATEAU_GAMMA = 0.1
ONECYCLE_PEAK = 0.3  # 'onecycle': linear from lr/25 up to lr at 30% of the steps, then linear down to 0
ONECYCLE_START = 1 / 25
PROGRESS_EVERY = 10  # batches between progress-bar refreshes (each costs one host sync)


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
            group["lr"] = lr

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


def resolve_channels_last(value: bool | str, device: torch.device) -> bool:
    # NHWC pays off with cuDNN's tensor-core kernels; on CPU it was not faster for
    # the small CIFAR networks measured, so 'auto' keeps NCHW there
    return device.type == "cuda" if value == AUTO else bool(value)


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate_split(model: nn.Module, split, device: torch.device, *, batch_size: int = 512,
                   criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                   channels_last: bool = False) -> dict:
    """Float32 loss (if a criterion is given), correct count and accuracy on a split,
    model in eval mode (restored afterwards)."""
    from .data import TensorLoader

    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    try:
        for x, y in TensorLoader(split, batch_size, device=device, shuffle=False, channels_last=channels_last):
            logits = model(x)
            correct += (logits.argmax(1) == y).sum()
            if criterion is not None:
                loss_sum += criterion(logits, y).double().sum()
    finally:
        model.train(was_training)
    n = len(split)
    k = int(correct)
    return {"n": n, "correct": k, "acc": k / n if n else float("nan"),
            "loss": float(loss_sum) / n if n and criterion is not None else float("nan")}


# ----------------------------------------------------------------------------- progress
class Reporter:
    """rich progress bar (loss, accuracy, images/s, ETA) on a terminal; one plain line
    per epoch otherwise; nothing when quiet."""

    def __init__(self, console=None, interactive: bool | None = None, quiet: bool = False):
        from rich.console import Console

        self.quiet = quiet
        self.interactive = (is_interactive() if interactive is None else interactive) and not quiet
        self.console = console or Console(highlight=False)
        self._progress = None
        self._task = None

    def say(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def start(self) -> None:
        if self.interactive:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.3f}  acc {task.fields[acc]:.3f}  {task.fields[ips]:.0f} img/s"),
                TimeRemainingColumn(), console=self.console, transient=True,
            )
            self._progress.start()

    def begin_epoch(self, epoch: int, epochs: int, batches: int) -> None:
        if self._progress is not None:
            if self._task is not None:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task("train", total=batches, epoch=f"{epoch}/{epochs}",
                                                 loss=float("nan"), acc=float("nan"), ips=0.0)

    @property
    def wants_batches(self) -> bool:
        return self._progress is not None

    def batch(self, done: int, loss: float, acc: float, ips: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, loss=loss, acc=acc, ips=ips)

    def epoch(self, row: dict, epochs: int, best: bool, extra: Sequence[str]) -> None:
        extras = "".join(f"  {c} {row[c]:.4f}" if isinstance(row.get(c), float) else f"  {c} {row.get(c)}" for c in extra)
        self.say(
            f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}  "
            f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}{extras}  lr {row['lr']:.4g}  "
            f"{row['seconds']:.1f}s  {row['images_per_s']:.0f} img/s" + ("  *best" if best else "")
        )

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

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

    @property
    def best_path(self) -> Path:
        return self.out_dir / "best.pth"

    @property
    def last_path(self) -> Path:
        return self.out_dir / "last.pth"


def _holds_run(out: Path) -> bool:
    return any((out / name).exists() for name in ("last.pth", "best.pth", "history.csv"))


def _spec_differences(saved: dict, current: dict) -> list[str]:
    saved, current = to_jsonable(saved), to_jsonable(current)
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

    device = resolve_device(spec.device)
    precision = resolve_precision(spec.amp, device)
    channels_last = resolve_channels_last(spec.channels_last, device)

    out_dir = Path(spec.out) if spec.out else Path("runs") / spec.run_name()
    if out_dir.exists() and not out_dir.is_dir():
        raise RobustError(f"--out {out_dir} is a file, not a folder")
    if resume and not (out_dir / "last.pth").is_file():
        raise RobustError(f"nothing to resume in {out_dir} (no last.pth); drop --resume to start the run")
    if not resume and _holds_run(out_dir):
        raise RobustError(f"{out_dir} already holds a run; pass --resume to continue it or --out DIR for a new one")

    d = spec.data
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

    method = build_method(spec)
    extra = list(val_metrics) + list(method.validation_metrics())
    columns = {"val_acc", "val_loss"} | {c for m in extra for c in m.columns}
    selection = method.selection if spec.selection == AUTO else spec.selection
    if selection not in columns:
        raise RobustError(f"unknown selection metric '{selection}'; valid: {', '.join(sorted(columns))}")
    minimize = selection.endswith("loss")

    steps = len(TensorLoader(train, spec.batch_size, device="cpu", shuffle=False))
    optimizer = build_optimizer(spec, model.parameters())
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
               meta_base)


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


def _train_epoch(run: Run, loader, reporter: Reporter) -> dict:
    model, method, optimizer, schedule, scaler = run.model, run.method, run.optimizer, run.schedule, run.scaler
    clip = run.spec.grad_clip
    model.train()
    loss_sum = torch.zeros((), device=run.device, dtype=torch.float64)
    correct = torch.zeros((), device=run.device, dtype=torch.int64)
    seen, attack_seconds = 0, 0.0
    start = time.perf_counter()
    for i, (x, y) in enumerate(loader):
        with run.precision.autocast():
            out = method(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(out.loss).backward()
            if clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            out.loss.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
        schedule.step()
        # running sums stay on the device: no host sync per batch
        n = y.shape[0]
        loss_sum += out.loss.detach().double() * n
        correct += (out.logits.detach().argmax(1) == out.target).sum()
        seen += n
        attack_seconds += out.attack_seconds
        if reporter.wants_batches and ((i + 1) % PROGRESS_EVERY == 0 or i + 1 == len(loader)):
            reporter.batch(i + 1, float(loss_sum) / seen, int(correct) / seen,
                           seen / max(time.perf_counter() - start, 1e-9))
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    seconds = time.perf_counter() - start
    return {"loss": float(loss_sum) / max(seen, 1), "acc": int(correct) / max(seen, 1), "seen": seen,
            "seconds": seconds, "attack_seconds": attack_seconds}


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
    too); ``on_epoch_end(row)`` runs after each epoch's files are written."""
    from .data import TensorLoader

    reporter = Reporter(console, progress, quiet)
    run = prepare_run(spec, resume=resume, val_metrics=val_metrics)
    spec, model, method = run.spec, run.model, run.method
    configure_backends(run.device)

    state = run.resume_state or {}
    history: list[dict] = list(state.get("history", []))
    start_epoch = int(state.get("epoch", 0))
    best = dict(state.get("best") or {"epoch": None, "value": None, "metric": run.selection})
    bad_epochs = int(state.get("bad_epochs", 0))
    seconds = dict(state.get("seconds") or {"train": 0.0, "attack": 0.0, "val": 0.0})

    if resume and (state.get("stopped") or start_epoch >= spec.epochs):
        why = state.get("stopped") or f"all {start_epoch} epochs done"
        reporter.say(f"{run.out_dir} already finished ({why}); nothing to do")
        return FitResult(run.out_dir, run.best_path, run.last_path, history, best.get("epoch"),
                         {"selection": run.selection, "selection_value": best.get("value")},
                         stopped=state.get("stopped"), already_finished=True)

    # from here on the run folder exists; every file in it is written atomically
    run.out_dir.mkdir(parents=True, exist_ok=True)
    resolved = {"device": str(run.device), "precision": run.precision.label, "channels_last": run.channels_last,
                "augment": run.augment_policy, "selection": run.selection, "n_train": len(run.train),
                "n_val": len(run.bundle.val), "n_test": len(run.bundle.test), "steps_per_epoch": run.steps_per_epoch}
    write_json(run.out_dir / "config.json", {"spec": spec.to_dict(), "resolved": resolved})

    loader = TensorLoader(run.train, spec.batch_size, device=run.device, shuffle=True, augment=run.augment,
                          channels_last=run.channels_last)
    extra_columns = [c for m in run.val_metrics for c in m.columns]
    reporter.say(
        f"training {spec.model.arch} on {run.bundle.info.name} ({len(run.train)} train / {len(run.bundle.val)} val) "
        f"with {spec.method}{'' if spec.adv == 'none' else ' + ' + spec.adv} for {spec.epochs} epochs on "
        f"{run.device} ({run.precision.label}) -> {run.out_dir}"
        + (f", resuming after epoch {start_epoch}" if start_epoch else "")
    )
    stopped: str | None = None
    reporter.start()
    try:
        for epoch in range(start_epoch, spec.epochs):
            torch.manual_seed(epoch_seed(spec.seed, epoch))
            method.start_epoch(epoch, spec.epochs)
            reporter.begin_epoch(epoch + 1, spec.epochs, len(loader))
            lr = run.schedule.lr
            t = _train_epoch(run, loader, reporter)
            if not math.isfinite(t["loss"]):
                raise RobustError(f"training diverged at epoch {epoch + 1} (train loss {t['loss']}); "
                                  "lower --lr or set --grad-clip")
            v_start = time.perf_counter()
            val = evaluate_split(model, run.bundle.val, run.device, batch_size=max(spec.batch_size, 256),
                                 criterion=method.criterion, channels_last=run.channels_last)
            row = {"epoch": epoch + 1, "train_loss": t["loss"], "train_acc": t["acc"], "val_loss": val["loss"],
                   "val_acc": val["acc"], "lr": lr}
            model.eval()
            try:
                for m in run.val_metrics:
                    row.update(m.fn(model, run.bundle.val, run.device))
            finally:
                model.train()
            v_seconds = time.perf_counter() - v_start
            row.update({"seconds": t["seconds"] + v_seconds, "images_per_s": t["seen"] / max(t["seconds"], 1e-9),
                        "attack_seconds": t["attack_seconds"]})
            seconds["train"] += t["seconds"]
            seconds["attack"] += t["attack_seconds"]
            seconds["val"] += v_seconds
            history.append(row)

            value = row.get(run.selection)
            improved = _is_better(value, best["value"], run.minimize)
            if improved:
                best = {"epoch": epoch + 1, "value": value, "metric": run.selection}
                bad_epochs = 0
                save_checkpoint(run.best_path, model, {**run.meta_base, "epoch": epoch + 1, "metrics": row})
            else:
                bad_epochs += 1
            run.schedule.epoch_end(value)
            reason = method.end_epoch(row, history)
            if reason:
                stopped = reason
            elif spec.patience is not None and bad_epochs >= spec.patience and epoch + 1 < spec.epochs:
                stopped = f"early stop: {run.selection} did not improve for {bad_epochs} epochs"
            train_state = {
                "epoch": epoch + 1, "optimizer": run.optimizer.state_dict(), "schedule": run.schedule.state_dict(),
                "scaler": run.scaler.state_dict() if run.scaler is not None else None, "history": history,
                "best": best, "bad_epochs": bad_epochs, "stopped": stopped, "seconds": seconds,
            }
            save_checkpoint(run.last_path, model, {**run.meta_base, "epoch": epoch + 1, "metrics": row},
                            train_state=train_state)
            _write_history(run.out_dir / "history.csv", history)
            reporter.epoch(row, spec.epochs, improved, extra_columns)
            if on_epoch_end is not None:
                on_epoch_end(row)
            if stopped:
                reporter.say(stopped)
                break
    finally:
        reporter.stop()

    if best["epoch"] is None:
        raise RobustError(f"no epoch produced a finite {run.selection}; best.pth was not written")
    return _finish(run, history, best, seconds, stopped, store, reporter)


def _finish(run: Run, history: list[dict], best: dict, seconds: dict, stopped: str | None,
            store: ResultsStore | None, reporter: Reporter) -> FitResult:
    """Test accuracy of best.pth (reported, never used for a choice), summary, record."""
    spec = run.spec
    best_model, best_meta = load_checkpoint(run.best_path, run.device)
    if run.channels_last:
        best_model.to(memory_format=torch.channels_last)
    test = evaluate_split(best_model, run.bundle.test, run.device, batch_size=max(spec.batch_size, 256),
                          criterion=run.method.criterion, channels_last=run.channels_last)
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
    record_path = None
    if store is not None:
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
            "environment": environment(run.device, spec.seed),
        }
        record_path = store.add(record)

    lo, hi = metrics["val_ci95"]
    tlo, thi = metrics["test_ci95"]
    rows = [
        ("best epoch", f"{best['epoch']} of {len(history)} (by {run.selection} on validation)"),
        ("val acc", f"{metrics['val_acc']:.4f}  (n={n_val}, 95% CI {lo:.4f}-{hi:.4f})"),
        ("test acc", f"{metrics['test_acc']:.4f}  (n={test['n']}, 95% CI {tlo:.4f}-{thi:.4f}; best.pth, reported only)"),
        ("time", f"{total / 60:.2f} min ({seconds['train'] / max(len(history), 1):.1f} s/epoch training)"),
        ("best.pth", str(run.best_path)),
        ("last.pth", str(run.last_path)),
    ] + ([("record", str(record_path))] if record_path else []) + ([("stopped", stopped)] if stopped else [])
    reporter.summary(rows, f"{spec.model.arch} / {spec.method}{'' if spec.adv == 'none' else ' + ' + spec.adv} "
                           f"on {run.bundle.info.name}")
    return FitResult(run.out_dir, run.best_path, run.last_path, history, best["epoch"], metrics, record_path, stopped)

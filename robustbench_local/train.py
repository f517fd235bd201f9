"""fit(): train one model from a TrainSpec, in data-flow order.

    prepare_run(spec)  validate everything (data, model, method, init checkpoint,
                       resume state, out folder) and build the pieces; nothing is
                       written yet, so a bad input leaves no trace on disk
    fit(spec)          seed, then per epoch: reseed, train, validate, extra
                       validation columns, save best.pth (selection metric on the
                       VALIDATION split) and last.pth (with the state to resume),
                       write history.csv; then test accuracy of best.pth, a summary
                       and one training record in the ResultsStore.

The pieces live next door: train_setup.py (prepare_run and the Run it builds),
train_folder.py (the run folder, its lock and history.csv), optim.py (optimizer and
learning-rate schedule), precision.py (AMP, GradScaler, compile, the training
forward), train_progress.py (what is shown), train_record.py (the record), and
distributed.py (torchrun, and each rank's random stream).

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

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import distributed, tensorboard_log
from .checkpoint import load_checkpoint, save_checkpoint
from .checks import degenerate_counts
from .data import TensorLoader
from .errors import RobustError
from .fileio import write_json
from .methods import ValMetric
from .outputs import save_record
from .precision import build_training_model, scaled_step
from .results import ResultsStore
from .runtime import configure_backends, cpu_has_native_bf16, epoch_seed, module_mode
from .specs import TrainSpec
from .text import acc_text, method_label, plural
from .train_folder import cannot_write, lock_folder, write_history
from .train_progress import Reporter, duration_text
from .train_record import final_metrics, is_recorded, train_record
from .train_setup import Run, prepare_run

NUMBERS_EVERY = 1.0  # seconds between readings of the running loss and accuracy (each costs one host sync)


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


def fit(
    spec: TrainSpec,
    *,
    resume: bool = False,
    store: ResultsStore | None = None,
    console=None,
    progress: bool | None = None,
    quiet: bool = False,
    val_metrics: Sequence[ValMetric] = (),
    on_epoch_end: Callable[[dict], None] | None = None,
    tensorboard: str | os.PathLike | None = None,
) -> FitResult:
    """Train ``spec``; see the module docstring. ``store`` receives one training
    record at the end (None: no record). ``progress`` None = a live bar only on a
    terminal. ``val_metrics`` add validation columns (the method's own are added
    too); ``on_epoch_end(row)`` runs after each epoch's files are written. Under
    torchrun every rank calls fit() and gets the same FitResult; rank 0 alone prints,
    writes files and the record, and runs ``val_metrics`` and ``on_epoch_end``.
    ``tensorboard``: a folder that receives each epoch's scalars (tensorboard_log.py).

    The run folder is locked from the first check of what it holds to the last write,
    so a second fit() into it is refused at once (one writer per folder)."""
    board = tensorboard_log.EpochLog(tensorboard) if tensorboard is not None and distributed.is_main() else None
    with lock_folder(spec):
        run = prepare_run(spec, resume=resume, val_metrics=val_metrics)
        try:
            return _train(
                run,
                resume=resume,
                store=store,
                console=console,
                progress=progress,
                quiet=quiet,
                on_epoch_end=on_epoch_end,
                board=board,
            )
        except OSError as e:  # a full disk or a revoked permission mid-run: every file was written atomically
            raise cannot_write(run.out_dir, e) from None
        finally:
            if board is not None:
                board.close()


def _train(
    run: Run,
    *,
    resume: bool,
    store: ResultsStore | None,
    console,
    progress: bool | None,
    quiet: bool,
    on_epoch_end: Callable[[dict], None] | None,
    board: tensorboard_log.EpochLog | None = None,
) -> FitResult:
    """fit() once its folder is locked and ``run`` is prepared."""
    main = distributed.is_main()
    reporter = Reporter(console, progress, quiet or not main)
    spec, model, method, data, selection = run.spec, run.model, run.method, run.data, run.selection
    device, precision, channels_last, world = (
        run.placement.device,
        run.placement.precision,
        run.placement.channels_last,
        run.placement.world_size,
    )
    configure_backends(device)
    # every rank has validated its inputs (prepare_run) before rank 0 writes anything
    distributed.barrier()

    state = run.resume_state or {}
    history: list[dict] = list(state.get("history", []))
    start_epoch = int(state.get("epoch", 0))
    best = dict(state.get("best") or {"epoch": None, "value": None, "metric": selection.metric})
    bad_epochs = int(state.get("bad_epochs", 0))
    seconds = dict(state.get("seconds") or {"train": 0.0, "attack": 0.0, "val": 0.0})

    if resume and (state.get("stopped") or start_epoch >= spec.epochs):
        why = state.get("stopped") or f"all {start_epoch} epochs done"
        # cut off during the final test pass, or its record never written: finish those now
        unrecorded = bool(
            main
            and store is not None
            and best.get("epoch") is not None
            and run.best_path.is_file()
            and not is_recorded(store, run.best_path)
        )
        if distributed.broadcast_object(unrecorded):
            reporter.say(
                f"{run.out_dir} finished training ({why}) but its test pass and record are missing; finishing them"
            )
            return _finish(run, history, best, seconds, state.get("stopped"), store, reporter)
        reporter.say(f"{run.out_dir} already finished ({why}); nothing to do")
        return FitResult(
            run.out_dir,
            run.best_path,
            run.last_path,
            history,
            best.get("epoch"),
            {"selection": selection.metric, "selection_value": best.get("value")},
            stopped=state.get("stopped"),
            already_finished=True,
        )

    # from here on the run folder exists; every file in it is written atomically
    if main:
        if run.leftovers:
            reporter.say(
                f"removing {', '.join(p.name for p in run.leftovers)} left by a first epoch that never finished"
            )
            for f in run.leftovers:
                f.unlink(missing_ok=True)
        run.out_dir.mkdir(parents=True, exist_ok=True)
        write_json(run.out_dir / "config.json", {"spec": spec.to_dict(), "resolved": run.resolved()})

    run.net = build_training_model(
        model, device, precision, compile_backend=run.placement.compile_backend, attack_precision=spec.attack_precision
    )
    streams = distributed.RankStreams(data.augment, spec.seed, distributed.rank()) if world > 1 else None
    loader = TensorLoader(
        data.train,
        run.placement.local_batch,
        device=device,
        shuffle=True,
        augment=streams if streams is not None else data.augment,
        rank=distributed.rank(),
        world_size=world,
        channels_last=channels_last,
    )
    extra_columns = [c for m in selection.val_metrics for c in m.columns]
    reporter.say(
        f"training {spec.model.arch} on {data.info.name} ({len(data.train)} train / {len(data.val)} val) "
        f"with {method_label(spec.method, spec.adv)} for {plural(spec.epochs, 'epoch')} on "
        f"{device} ({precision.label}) -> {run.out_dir}"
        + (f", {world} processes x {run.placement.local_batch} images per step" if world > 1 else "")
        + (f", resuming after epoch {start_epoch}" if start_epoch else "")
    )
    if precision.enabled and device.type == "cpu" and cpu_has_native_bf16() is False:
        reporter.say(
            "warning: this CPU has no native bf16 instructions (avx512_bf16 or AMX), so --amp emulates "
            "bf16 and is usually several times slower than fp32 here; drop --amp"
        )
    stopped: str | None = None
    try:
        for epoch in range(start_epoch, spec.epochs):
            torch.manual_seed(epoch_seed(spec.seed, epoch))
            if streams is not None:
                streams.start_epoch(epoch)
            method.start_epoch(epoch, spec.epochs)
            reporter.begin_epoch(epoch + 1, spec.epochs, len(loader))
            lr = run.optim.schedule.lr
            t = _train_epoch(run, loader, reporter)
            if not math.isfinite(t["loss"]):
                raise RobustError(
                    f"training diverged at epoch {epoch + 1} (train loss {t['loss']}); lower --lr or set --grad-clip"
                )
            v_start = time.perf_counter()
            distributed.broadcast_buffers(model)  # one model on every rank: rank 0's, the one saved
            with reporter.task("validation", len(data.val)) as task:
                val = evaluate_split(
                    model,
                    data.val,
                    device,
                    batch_size=max(spec.batch_size, 256),
                    criterion=method.criterion,
                    channels_last=channels_last,
                    sharded=True,
                    progress=task,
                    num_classes=data.info.num_classes,
                )
            row = {
                "epoch": epoch + 1,
                "train_loss": t["loss"],
                "train_acc": t["acc"],
                "val_loss": val["loss"],
                "val_acc": val["acc"],
                "lr": lr,
            }
            # a model that guesses or predicts one class is no model: say so now, and keep it in the history
            degenerate = degenerate_counts(
                val["correct"], val["n"], val["pred_counts"], val["label_counts"], data.info.classes
            )
            if not degenerate.ok:
                row["warning"] = f"degenerate model on validation: {degenerate.detail}"
                reporter.say(f"warning: epoch {epoch + 1}: {row['warning']}")
            if main:
                model.eval()
                try:
                    for m in selection.val_metrics:
                        with reporter.task(f"validation: {m.columns[0]}", unit=""):  # no count: elapsed time
                            row.update(m.fn(model, data.val, device))
                finally:
                    model.train()
            v_seconds = time.perf_counter() - v_start
            row.update(
                {
                    "seconds": t["seconds"] + v_seconds,
                    "images_per_s": t["seen"] / max(t["seconds"], 1e-9),
                    "attack_seconds": t["attack_seconds"],
                }
            )
            row = distributed.broadcast_object(row)  # rank 0's row everywhere: the same decisions below
            seconds["train"] += t["seconds"]  # each rank its own; rank 0's are the ones written
            seconds["attack"] += t["attack_seconds"]
            seconds["val"] += v_seconds
            history.append(row)

            value = row.get(selection.metric)
            improved = selection.is_better(value, best["value"])
            if improved:
                best = {"epoch": epoch + 1, "value": value, "metric": selection.metric}
                bad_epochs = 0
                if main:
                    save_checkpoint(run.best_path, model, {**run.meta_base, "epoch": epoch + 1, "metrics": row})
            else:
                bad_epochs += 1
            run.optim.schedule.epoch_end(value)
            reason = method.end_epoch(row, history)
            if reason:
                stopped = reason
            elif spec.patience is not None and bad_epochs >= spec.patience and epoch + 1 < spec.epochs:
                stopped = f"early stop: {selection.metric} did not improve for {plural(bad_epochs, 'epoch')}"
            if main:
                train_state = {
                    "epoch": epoch + 1,
                    **run.optim.state_dict(),
                    "history": history,
                    "best": best,
                    "bad_epochs": bad_epochs,
                    "stopped": stopped,
                    "seconds": seconds,
                }
                save_checkpoint(
                    run.last_path, model, {**run.meta_base, "epoch": epoch + 1, "metrics": row}, train_state=train_state
                )
                write_history(run.out_dir / "history.csv", history)
                reporter.epoch(row, spec.epochs, improved, extra_columns, t["seconds"], v_seconds, len(data.val))
                if on_epoch_end is not None:
                    on_epoch_end(row)
                if board is not None:
                    board.epoch(row)
            if stopped:
                reporter.say(stopped)
                break
    finally:
        reporter.stop()

    if best["epoch"] is None:
        raise RobustError(f"no epoch produced a finite {selection.metric}; best.pth was not written")
    distributed.barrier()  # best.pth and last.pth are complete before any rank reads them
    return _finish(run, history, best, seconds, stopped, store, reporter)


def _train_epoch(run: Run, loader, reporter: Reporter) -> dict:
    method, device = run.method, run.placement.device
    net = run.net if run.net is not None else run.model
    net.train()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
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
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return {
        "loss": loss_sum / judged,
        "acc": n_correct / judged,
        "seen": seen,
        "seconds": seconds,
        "attack_seconds": attack_seconds,
    }


def _update(run: Run, loss: torch.Tensor) -> None:
    """One optimizer step on ``loss`` (scaled for fp16, clipped with --grad-clip),
    then the learning-rate schedule's."""
    optim = run.optim
    scaled_step(loss, optim.optimizer, optim.scaler, run.model.parameters(), run.spec.grad_clip)
    optim.schedule.step()


@torch.no_grad()
def evaluate_split(
    model: nn.Module,
    split,
    device: torch.device,
    *,
    batch_size: int = 512,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    channels_last: bool = False,
    sharded: bool = False,
    progress=None,
    num_classes: int | None = None,
) -> dict:
    """Float32 loss (if a criterion is given), correct count and accuracy on a split,
    model in eval mode (restored afterwards); with ``num_classes`` also how often each
    class is predicted and labelled (pred_counts, label_counts: is the model
    degenerate?). ``sharded``: under torchrun each rank evaluates a contiguous share
    and the sums are all-reduced (every rank returns the whole split's numbers).
    ``progress``: a progress.Task advanced by each batch."""
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
    out = {
        "n": n,
        "correct": k,
        "acc": k / n if n else float("nan"),
        "loss": loss_sum / n if n and criterion is not None else float("nan"),
    }
    if num_classes:
        out.update(pred_counts=counts[0].tolist(), label_counts=counts[1].tolist())
    return out


def _finish(
    run: Run,
    history: list[dict],
    best: dict,
    seconds: dict,
    stopped: str | None,
    store: ResultsStore | None,
    reporter: Reporter,
) -> FitResult:
    """Test accuracy of best.pth (reported, never used for a choice; sharded under
    torchrun), summary, record (rank 0)."""
    spec, data, device, channels_last = run.spec, run.data, run.placement.device, run.placement.channels_last
    best_model, best_meta = load_checkpoint(run.best_path, device)
    if channels_last:
        best_model.to(memory_format=torch.channels_last)
    with reporter.task("test (best.pth)", len(data.test)) as task:
        test = evaluate_split(
            best_model,
            data.test,
            device,
            batch_size=max(spec.batch_size, 256),
            criterion=run.method.criterion,
            channels_last=channels_last,
            sharded=True,
            progress=task,
        )
    row = next(r for r in history if r["epoch"] == best["epoch"])
    metrics = final_metrics(run, best, row, test)
    record_path, unsaved = None, None
    if store is not None and distributed.is_main():
        record = train_record(
            run,
            best_model=best_model,
            best_meta=best_meta,
            history=history,
            best=best,
            stopped=stopped,
            metrics=metrics,
            seconds=seconds,
        )
        try:  # a full disk keeps the record in a place the error names
            record_path = save_record(store, record, "--results")
        except RobustError as e:
            unsaved = e

    rows = (
        [
            ("best epoch", f"{best['epoch']} of {len(history)} (by {run.selection.metric} on validation)"),
            ("val acc", acc_text(metrics["val_acc"], metrics["val_n"], metrics["val_ci95"])),
            ("test acc", acc_text(metrics["test_acc"], test["n"], metrics["test_ci95"]) + " (best.pth, reported only)"),
            ("time", duration_text(seconds, len(history))),
            ("best.pth", str(run.best_path)),
            ("last.pth", str(run.last_path)),
        ]
        + ([("record", str(record_path))] if record_path else [])
        + ([("stopped", stopped)] if stopped else [])
    )
    reporter.summary(rows, f"{spec.model.arch} / {method_label(spec.method, spec.adv)} on {data.info.name}")
    if unsaved is not None:  # after the summary, so the numbers are on screen too
        raise unsaved
    return FitResult(
        run.out_dir,
        run.best_path,
        run.last_path,
        history,
        best["epoch"],
        metrics,
        record_path,
        stopped,
        seconds=dict(seconds),
    )

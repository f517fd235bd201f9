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
train_folder.py (the run folder, its lock and history.csv), train_epoch.py (one
epoch's training steps and its validation row), split_eval.py (loss and accuracy on a
split), optim.py (optimizer and learning-rate schedule), precision.py (AMP,
GradScaler, compile, the training forward), train_progress.py (what is shown),
train_record.py (the record), and distributed.py (torchrun, and each rank's random
stream).

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from . import distributed, tensorboard_log
from .checkpoint import load_checkpoint, save_checkpoint
from .errors import RobustError
from .methods import ValMetric
from .outputs import save_record
from .precision import build_training_model
from .results import ResultsStore
from .runtime import configure_backends, cpu_has_native_bf16, epoch_seed
from .specs import TrainSpec
from .split_eval import evaluate_split  # looked up on this module at the test pass: tests replace it
from .text import method_label, plural
from .train_budget import epoch_seconds, epochs_text, plan_epochs
from .train_epoch import epoch_loader, train_epoch, validate_epoch
from .train_folder import cannot_write, lock_folder, start_folder, write_history
from .train_progress import Reporter, summary_rows
from .train_record import final_metrics, is_recorded, train_record
from .train_setup import Run, prepare_run
from .values import ValueProblem


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
    device, precision, world = run.placement.device, run.placement.precision, run.placement.world_size
    configure_backends(device)
    # every rank has validated its inputs (prepare_run) before rank 0 writes anything
    distributed.barrier()

    state = run.resume_state or {}
    history: list[dict] = list(state.get("history", []))
    start_epoch = int(state.get("epoch", 0))
    best = dict(state.get("best") or {"epoch": None, "value": None, "metric": selection.metric})
    bad_epochs = int(state.get("bad_epochs", 0))
    seconds = dict(state.get("seconds") or {"train": 0.0, "attack": 0.0, "val": 0.0})
    # the epochs the run plans to train: all of them, or those a time budget leaves
    epochs = min(int(state.get("budget_epochs") or spec.epochs), spec.epochs) if spec.budget_minutes else spec.epochs
    if epochs != run.optim.schedule.epochs:
        run.optim.schedule.replan(epochs)

    if resume and (state.get("stopped") or start_epoch >= epochs):
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
        start_folder(run, reporter.say)

    run.net = build_training_model(
        model, device, precision, compile_backend=run.placement.compile_backend, attack_precision=spec.attack_precision
    )
    loader, streams = epoch_loader(run)
    extra_columns = [c for m in selection.val_metrics for c in m.columns]
    reporter.say(
        f"training {spec.model.arch} on {data.info.name} ({len(data.train)} train / {len(data.val)} val) "
        f"with {method_label(spec.method, spec.adv)} for {epochs_text(spec.budget_minutes, epochs)} on "
        f"{device} ({precision.label}) -> {run.out_dir}"
        + (f", {world} processes x {run.placement.local_batch} images per step" if world > 1 else "")
        + (f", resuming after epoch {start_epoch}" if start_epoch else "")
    )
    if precision.enabled and device.type == "cpu" and cpu_has_native_bf16() is False:
        reporter.say(
            "warning: this CPU has no native bf16 instructions (avx512_bf16 or AMX), so mixed precision (amp) "
            "emulates bf16 and is usually several times slower than fp32 here; turn amp off"
        )
    stopped: str | None = None
    try:
        epoch = start_epoch
        while epoch < epochs:
            torch.manual_seed(epoch_seed(spec.seed, epoch))
            if streams is not None:
                streams.start_epoch(epoch)
            method.start_epoch(epoch, epochs)
            reporter.begin_epoch(epoch + 1, epochs, len(loader))
            lr = run.optim.schedule.lr
            t = train_epoch(run, loader, reporter)
            if not math.isfinite(t["loss"]):
                raise ValueProblem(
                    spec.KEY + ("lr",),
                    f"training diverged at epoch {epoch + 1} (train loss {t['loss']}); lower train.lr or set "
                    "train.grad_clip",
                )
            row, v_seconds = validate_epoch(run, reporter, epoch, lr, t)
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
            elif spec.patience is not None and bad_epochs >= spec.patience and epoch + 1 < epochs:
                stopped = f"early stop: {selection.metric} did not improve for {plural(bad_epochs, 'epoch')}"
            if spec.budget_minutes and not stopped:
                plan = plan_epochs(spec.budget_minutes, epoch_seconds(history), spec.epochs)
                plan = distributed.broadcast_object(plan)  # rank 0's clock decides for every rank
                if plan.epochs != epochs:
                    epochs = plan.epochs
                    run.optim.schedule.replan(epochs)
                if plan.reason and epoch + 1 >= epochs:
                    stopped = plan.reason
            if main:
                train_state = {
                    "epoch": epoch + 1,
                    **run.optim.state_dict(),
                    "history": history,
                    "best": best,
                    "bad_epochs": bad_epochs,
                    "stopped": stopped,
                    "seconds": seconds,
                    **({"budget_epochs": epochs} if spec.budget_minutes else {}),
                }
                save_checkpoint(
                    run.last_path, model, {**run.meta_base, "epoch": epoch + 1, "metrics": row}, train_state=train_state
                )
                write_history(run.out_dir / "history.csv", history)
                reporter.epoch(row, epochs, improved, extra_columns, t["seconds"], v_seconds, len(data.val))
                if on_epoch_end is not None:
                    on_epoch_end(row)
                if board is not None:
                    board.epoch(row)
            if stopped:
                reporter.say(stopped)
                break
            epoch += 1
    finally:
        reporter.stop()

    if best["epoch"] is None:
        raise RobustError(f"no epoch produced a finite {selection.metric}; best.pth was not written")
    distributed.barrier()  # best.pth and last.pth are complete before any rank reads them
    return _finish(run, history, best, seconds, stopped, store, reporter)


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

    rows = summary_rows(run, history, best, metrics, test["n"], seconds, record_path, stopped)
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

"""One epoch of fit(): its loader, the training steps (the method's loss, the optimizer and schedule
steps, running numbers read about once a second) and the epoch's validation row."""

from __future__ import annotations

import time

import torch

from . import distributed
from .checks import degenerate_counts
from .data import TensorLoader
from .precision import scaled_step
from .split_eval import evaluate_split
from .train_progress import Reporter
from .train_setup import Run

NUMBERS_EVERY = 1.0  # seconds between readings of the running loss and accuracy (each costs one host sync)


def epoch_loader(run: Run) -> tuple[TensorLoader, distributed.RankStreams | None]:
    """The training loader over this rank's shard, and under torchrun the per-rank
    random streams its augmentation draws from (None in a single process)."""
    spec, data, p = run.spec, run.data, run.placement
    streams = distributed.RankStreams(data.augment, spec.seed, distributed.rank()) if p.world_size > 1 else None
    loader = TensorLoader(
        data.train,
        p.local_batch,
        device=p.device,
        shuffle=True,
        augment=streams if streams is not None else data.augment,
        rank=distributed.rank(),
        world_size=p.world_size,
        channels_last=p.channels_last,
    )
    return loader, streams


def train_epoch(run: Run, loader, reporter: Reporter) -> dict:
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


def validate_epoch(run: Run, reporter: Reporter, epoch: int, lr: float, t: dict) -> tuple[dict, float]:
    """The history row of epoch ``epoch`` (0-based) from its training numbers ``t``:
    validation loss and accuracy (sharded), a warning for a degenerate model, the extra
    validation columns (rank 0) and the seconds; with the validation seconds."""
    spec, model, method, data, selection = run.spec, run.model, run.method, run.data, run.selection
    device, channels_last, main = run.placement.device, run.placement.channels_last, distributed.is_main()
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
    degenerate = degenerate_counts(val["correct"], val["n"], val["pred_counts"], val["label_counts"], data.info.classes)
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
    return row, v_seconds

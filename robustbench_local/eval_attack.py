"""One attack over the points still to attack: run_attack (batched, resumable, spread
over torchrun ranks), its progress task, and the transfer variant crafted on a surrogate."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch

from . import distributed
from .attacks import AttackSpec
from .attacks.base import make_ball
from .errors import RobustError
from .eval_clean import predict, predict_sharded
from .eval_inputs import Points, Target
from .partial import PartialRun, run_key
from .progress import ProgressDisplay
from .threat import find_std


class AttackRun(NamedTuple):
    fooled: torch.Tensor
    adv_pred: torch.Tensor | None
    x_adv: torch.Tensor | None
    norms: torch.Tensor | None  # minimal-norm attacks: NaN not attacked, inf none found
    resumed_seconds: float = 0.0  # spent by earlier, cut-off runs on the batches this one resumed from


def run_attack(
    target: Target,
    spec: AttackSpec,
    x: torch.Tensor,
    y: torch.Tensor,
    todo: torch.Tensor,
    *,
    batch_size: int,
    seed: int,
    keep_adv: bool = False,
    progress: ProgressDisplay | None = None,
    partial: PartialRun | None = None,
) -> AttackRun:
    """Attacks the points flagged in ``todo``; returns an AttackRun: fooled over all
    points, adversarial predictions and images, the last two only with ``keep_adv``
    (else None: the predictions cost a forward pass that only --save-adv needs).
    Untouched points keep their clean image. ``progress`` shows points done and
    robust so far (AutoAttack: its sub-attacks and the points still robust).
    Minimal-norm attacks also give each point's smallest adversarial norm (NaN where
    not attacked, inf where none was found).

    partial: where finished batches are kept so that a cut-off run resumes (single
    process, without ``keep_adv``); attacks that batch internally (AutoAttack) are
    then called once per ``batch_size`` points, so that there are batches to keep."""
    info = spec.info
    torch.manual_seed(seed)  # same random starts whatever ran before
    # every point's random start is drawn up front for the whole point set, so it does not
    # depend on which other points are still being attacked (cascade == AND of standalone runs)
    init = None
    if info.n_starts(spec.options):
        ball = make_ball(target.model, x, spec.threat)
        init = [ball.random(x.shape, x.device, x.dtype) for _ in range(info.n_starts(spec.options))]
    context = {"seed": seed} if info.takes("seed") else {}
    if info.takes("chunk"):
        context["chunk"] = batch_size
    fooled = torch.zeros(len(y), dtype=torch.bool, device=y.device)
    norms = torch.full((len(y),), float("nan"), device=y.device) if info.kind == "minimal-norm" else None
    x_adv = torch.zeros_like(x) if keep_adv else None
    adv_pred = torch.zeros_like(y) if keep_adv else None  # prediction + 1 on attacked points, 0 elsewhere
    ids = todo.nonzero().squeeze(1)
    if keep_adv or distributed.world_size() > 1:
        partial = None
    if info.one_batch and partial is None:  # e.g. AutoAttack: batches internally and keeps its own bookkeeping
        batch_size = max(batch_size, len(ids))
    starts = range(0, len(ids), batch_size)
    mine = list(distributed.my_chunks(len(starts)))  # every batch in a single process
    resumed_seconds = 0.0
    if partial is not None and partial.load(len(y), y.device):
        resumed_seconds = partial.seconds
        fooled = partial.fooled
        if norms is not None and partial.norms is not None:
            norms = partial.norms
        mine = [j for j in mine if j not in partial.done]
    shown = AttackProgress(progress, target, spec, x, sum(min(batch_size, len(ids) - starts[j]) for j in mine))
    with shown:
        for j in mine:
            b = ids[starts[j] : starts[j] + batch_size]
            # each batch's own random stream: a batch draws the same numbers whichever rank runs it
            torch.manual_seed(seed + 7919 * j)
            if init:
                context["init"] = [u[b] for u in init]
            if info.takes("on_progress"):
                context["on_progress"] = shown.on_progress
            res = info.fn(target.model, x[b], y[b], spec.threat, **spec.call_kwargs(), **context)
            fooled[b] = res.fooled
            if norms is not None:
                norms[b] = res.norms.to(norms.dtype)
            shown.batch_done(res.fooled)
            if partial is not None:
                partial.save(j, fooled, norms)
            if keep_adv:
                adv_pred[b] = predict(target.model, res.x_adv, batch_size).argmax(1) + 1
                x_adv[b] = res.x_adv
    if partial is not None:
        partial.finish()
    # each point was filled by one rank and is zero on the others: sums combine them exactly
    distributed.all_reduce_sum(fooled)
    if norms is not None:
        norms = _gather_norms(norms)

    if keep_adv:
        distributed.all_reduce_sum(adv_pred)
        adv_pred -= 1
        distributed.all_reduce_sum(x_adv)
        untouched = ~todo
        x_adv[untouched] = x[untouched]  # untouched points keep their clean image
    return AttackRun(fooled, adv_pred, x_adv, norms, resumed_seconds)


def partial_run(
    resume_dir: str | Path | None,
    target: Target,
    spec: AttackSpec,
    std,
    points: Points,
    todo: torch.Tensor,
    *,
    seed: int,
    batch_size: int,
) -> PartialRun | None:
    """Where this attack keeps its finished batches, keyed by everything that decides
    them (checkpoints only: an in-memory model has no sha256 to key them by)."""
    if resume_dir is None or not target.sha256:
        return None
    return PartialRun(
        resume_dir,
        run_key(
            checkpoint=target.sha256,
            attack=spec.to_dict(),
            threat=spec.threat.describe(std),
            points=points.describe()["indices_sha256"],
            todo=todo,
            seed=seed,
            batch_size=batch_size,
        ),
    )


def _gather_norms(norms: torch.Tensor) -> torch.Tensor:
    """Each rank filled its own points (NaN elsewhere): the all-reduce of (value, filled)
    pairs with NaN and inf kept apart, so the combination is exact."""
    if distributed.world_size() == 1:
        return norms
    filled = (~norms.isnan()).to(norms.dtype)
    inf = norms.isinf().to(norms.dtype)
    vals = torch.where(norms.isfinite(), norms, torch.zeros_like(norms))
    for t in (filled, inf, vals):
        distributed.all_reduce_sum(t)
    out = torch.where(inf > 0, torch.full_like(vals, float("inf")), vals)
    return torch.where(filled > 0, out, torch.full_like(vals, float("nan")))


def transfer_attack(
    source: Target, target: Target, spec: AttackSpec, x, y, todo, batch_size: int, seed: int, progress
) -> AttackRun:
    """Crafts on the surrogate the points the target classifies correctly, then scores
    the adversarial images on the target."""
    crafted = run_attack(source, spec, x, y, todo, batch_size=batch_size, seed=seed, keep_adv=True, progress=progress)
    adv_pred = predict_sharded(target.model, crafted.x_adv, batch_size).argmax(1)
    return AttackRun(todo & (adv_pred != y), adv_pred, crafted.x_adv, None)


def check_same_eps_meaning(source: Target, target: Target, attacks, channels: int) -> None:
    """A normalized-space eps means the same ball for both models only if their stds agree."""
    if all(a.threat.space == "pixel" for a in attacks):
        return
    s1, s2 = find_std(source.model, channels), find_std(target.model, channels)
    if not torch.allclose(s1, s2):
        raise RobustError(
            f"the surrogate's normalization std {[round(float(v), 4) for v in s1]} differs from the "
            f"target's {[round(float(v), 4) for v in s2]}, so a normalized-space eps means two balls; "
            "give eps with --eps-space pixel"
        )


class AttackProgress:
    """One attack's progress task: 'PGD-20 @ L-inf 8/255: 512/812 points, robust so far:
    201 of 512'. AutoAttack, one long batch, instead shows its sub-attack and the points
    still robust (through its runner's on_progress; every runner takes one)."""

    def __init__(
        self, progress: ProgressDisplay | None, target: Target, spec: AttackSpec, x: torch.Tensor, points: int
    ):
        self.task, self.on_progress, self.done, self.robust = None, None, 0, 0
        if progress is None:
            return
        label = f"{spec.label} @ {spec.threat.label(find_std(target.model, x.shape[1]))}"
        one_batch = spec.info.one_batch  # no count moves until it ends: no bar, no ETA
        self.task = progress.task(label, None if one_batch else points, "points")
        self.total = points
        if one_batch:
            self.on_progress = self._sub_attack

    def _sub_attack(self, name: str, still_robust: int, total: int) -> None:
        self.task.update(info=f"{name}: {still_robust:,} of {total:,} points still robust")

    def batch_done(self, fooled: torch.Tensor) -> None:
        if self.task is not None:
            self.done += len(fooled)
            self.robust += int((~fooled).sum())
            self.task.update(
                completed=self.done, total=self.total, info=f"robust so far: {self.robust:,} of {self.done:,}"
            )

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if self.task is not None:
            self.task.close(ok=exc_type is None)

"""evaluate(): clean and robust accuracy of a model under an attack suite.

Pure: returns records and writes nothing (the CLI hands them to the ResultsStore).

How work is saved without changing a number (AutoAttack's organisation):
- clean predictions are computed once;
- no attack spends effort on a point already misclassified clean;
- PGD drops a point as soon as any iterate fools it;
- each attack is seeded the same way whatever runs before it, so its robust
  accuracy is exactly its standalone number. The worst case over the suite comes
  from the per-example flags. With ``cascade`` a later attack runs only on points
  every earlier one failed to break, and its number is labelled cumulative.

Under torchrun (see distributed.py) every rank selects the same points and draws
the same random starts; the batches a single process would run are dealt out
round-robin (batch j to rank j mod world_size), so each batch is computed exactly
as in one process, and the per-point flags, predictions and images are combined by
all-reduce. The records are those of a single-process run, apart from timings and
the environment. AutoAttack runs as one batch (its random draws depend on the
batch), so it is not spread. Only rank 0 logs and saves --save-adv files.

The pieces: eval_inputs.py (Target, Points), eval_clean.py (the clean pass),
eval_attack.py (one attack's run), eval_records.py (records and their metrics),
eval_checks.py (checks across records) and eval_save.py (--save-adv files).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from . import distributed
from .attacks import AttackSpec
from .eval_attack import check_same_eps_meaning, partial_run, run_attack, transfer_attack
from .eval_checks import convergence_checks, pairwise_checks, step_checks, sweep_checks
from .eval_clean import clean_pass
from .eval_inputs import resolve_target, select_points
from .eval_records import attack_metrics, attack_record, min_norm_list, worst_case_record
from .eval_save import adv_entries, write_adv_file
from .progress import ProgressDisplay
from .runtime import environment, resolve_channels_last
from .text import acc_text, plural
from .threat import find_std
from .values import ValueProblem

Log = Callable[[str], None]


def expand_sweep(attacks: Sequence[AttackSpec], eps_list: Sequence[float] | None) -> list[AttackSpec]:
    """Attack x eps, grouped by eps (so a cascade runs per radius)."""
    if not eps_list:
        return list(attacks)
    return [a.with_eps(e) for e in eps_list for a in attacks]


def evaluate(
    model_or_checkpoint,
    attacks: Sequence[AttackSpec],
    data=None,
    *,
    n: int | None = 1000,
    split: str = "test",
    seed: int = 0,
    batch_size: int = 256,
    cascade: bool = False,
    device: str | torch.device = "auto",
    run_checks: bool = True,
    check_convergence: bool = False,
    data_root: str | None = None,
    save_adv: str | Path | None = None,
    log: Log | None = None,
    name: str | None = None,
    channels_last: bool | str = "auto",
    progress: ProgressDisplay | None = None,
    transfer_from=None,
    resume_dir: str | Path | None = None,
) -> list[dict]:
    """Evaluates one model or checkpoint; returns one record per (attack, eps) plus
    a worst-case record per eps when the suite has several attacks.

    progress: a progress.ProgressDisplay that shows each attack as it runs (None:
    silent, as ``log`` None is).

    channels_last: 'auto' (on for CUDA and CPU) converts the model's weights and the
    points to NHWC in place; the values, and so the numbers, do not change.

    transfer_from: a surrogate (checkpoint path or model, as model_or_checkpoint): each
    attack is crafted on the surrogate and scored on the model (a transfer attack);
    records name both models under ``checkpoint`` and ``transfer_from``.

    resume_dir: a folder where each attack keeps its finished batches while it runs
    (partial.py), so that the same call after a cut-off resumes where it stopped
    (checkpoints only: an in-memory model has no sha256 to key them by)."""
    if not attacks:
        raise ValueProblem(("eval", "attack"), "no attack given; name at least one (`robust attacks` lists them)")
    dev = distributed.init(device) if isinstance(device, str) or distributed.launched() else device
    say = log if log is not None and distributed.is_main() else (lambda s: None)
    progress = progress if distributed.is_main() else None
    target = resolve_target(model_or_checkpoint, dev, name)
    model = target.model.eval()
    points = select_points(
        data if data is not None else target.data,
        n=n,
        split=split,
        seed=seed,
        device=dev,
        meta=target.meta,
        data_root=data_root,
    )
    source = None
    if transfer_from is not None:
        source = resolve_target(transfer_from, dev)
        source.model.eval()
        check_same_eps_meaning(source, target, attacks, points.x.shape[1])
    layout = resolve_channels_last(channels_last, dev) and points.x.dim() == 4
    if layout:  # NHWC: faster forward and input-gradient passes (benchmarks/layout.py); same values
        model.to(memory_format=torch.channels_last)
        if source is not None:
            source.model.to(memory_format=torch.channels_last)
        points.x = points.x.contiguous(memory_format=torch.channels_last)
    x, y = points.x, points.y
    std = find_std(model, x.shape[1])

    clean = clean_pass(target, points, batch_size=batch_size, seed=seed, run_checks=run_checks, say=say)
    clean_ok = clean.ok

    by_eps: dict[float, list[AttackSpec]] = {}
    for spec in attacks:
        by_eps.setdefault(spec.threat.eps, []).append(spec)

    env = {**environment(dev, seed), "world_size": distributed.world_size(), "channels_last": layout}
    base = {
        "kind": "eval",
        "checkpoint": target.describe(),
        "data": points.describe(),
        "environment": env,
        "cascade": cascade,
        "degenerate": None if clean.degenerate.ok else {"reason": clean.degenerate.detail},
    }
    if source is not None:
        base["transfer_from"] = source.describe()
    records: list[dict] = []
    saved: dict[str, torch.Tensor] = {}
    for eps, specs in by_eps.items():
        robust_all = clean_ok.clone()  # worst case over this radius's suite
        eps_records = []
        for spec in specs:
            todo = robust_all if cascade else clean_ok
            t1 = time.perf_counter()
            if source is None:
                partial = partial_run(resume_dir, target, spec, std, points, todo, seed=seed, batch_size=batch_size)
                run = run_attack(
                    target,
                    spec,
                    x,
                    y,
                    todo,
                    batch_size=batch_size,
                    seed=seed,
                    keep_adv=save_adv is not None,
                    progress=progress,
                    partial=partial,
                )
            else:
                run = transfer_attack(source, target, spec, x, y, todo, batch_size, seed, progress)
            seconds = time.perf_counter() - t1 + run.resumed_seconds
            robust_ok = todo & ~run.fooled
            robust_all &= robust_ok
            metrics = attack_metrics(
                points, clean_ok, robust_all.clone() if cascade else robust_ok, seconds, int(todo.sum())
            )
            metrics["clean_seconds"] = clean.seconds
            rec = attack_record(
                base, spec, std, cumulative=cascade and len(eps_records) > 0, transfer=source is not None
            )
            if run.norms is not None and not cascade:
                metrics["min_norms"] = min_norm_list(run.norms, clean_ok)
            if source is None:  # checks on the attack's own convergence concern the model attacked
                rec["_spec"] = spec
            rec["checks"] = [f.to_dict() for f in clean.findings]
            rec["_flags"] = robust_ok  # popped before returning
            eps_records.append(rec)
            crafted = "" if source is None else f" (crafted on {source.name})"
            say(
                f"  {spec.label}{crafted} @ {spec.threat.label(std)}: robust "
                f"{acc_text(metrics['robust_acc'], metrics['n'], metrics['robust_ci95'])}; "
                f"{plural(int(todo.sum()), 'point')} attacked in {seconds:.1f} s"
            )
            rec["metrics"] = metrics
            if save_adv is not None:
                saved.update(adv_entries(spec, eps, run, rec["attack"]))
        if run_checks and not cascade:
            pairwise_checks(eps_records, len(y))
        if check_convergence:
            convergence_checks(target, eps_records, x, y, clean_ok, batch_size, seed)
        if len(specs) > 1:
            seconds = sum(r["metrics"]["seconds"] for r in eps_records)
            metrics = attack_metrics(points, clean_ok, robust_all, seconds, int(clean_ok.sum()))
            eps_records.append(worst_case_record(base, specs, std, metrics, [f.to_dict() for f in clean.findings]))
        records.extend(eps_records)

    step_checks(records)
    if run_checks:
        sweep_checks(records, len(y))
    for r in records:
        r.pop("_flags", None)
        r.pop("_spec", None)
    if save_adv is not None and distributed.is_main():
        write_adv_file(save_adv, points, clean.pred, saved, target, records)
    return records

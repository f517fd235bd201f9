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
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from . import checks as C
from . import distributed
from .attacks import AttackSpec
from .errors import RobustError
from .partial import PartialRun, run_key
from .progress import ProgressDisplay
from .results import pack_flags, wilson_interval
from .runtime import environment, module_mode, resolve_channels_last
from .text import acc_text, plural
from .threat import find_std

Log = Callable[[str], None]


@dataclass
class Target:
    """What is evaluated: a model taking [0,1] pixels plus what is known of it."""

    model: nn.Module
    meta: dict
    name: str
    path: str | None = None
    sha256: str | None = None
    data: object | None = None  # a DatasetBundle already loaded for it (foreign models)

    def describe(self) -> dict:
        m = self.meta
        return {
            "name": self.name,
            "path": self.path,
            "sha256": self.sha256,
            "arch": m.get("arch"),
            "arch_kwargs": m.get("arch_kwargs"),
            "method": m.get("method"),
            "method_kwargs": m.get("method_kwargs"),
            "adv": m.get("adv"),
            "adv_kwargs": m.get("adv_kwargs"),
            "train_threat": m.get("threat"),
            "normalization": m.get("normalization"),
            "normalization_source": m.get("normalization_source"),
            "source": m.get("source"),
            "mean": m.get("mean"),
            "std": m.get("std"),
            "dataset": _dataset_name(m),
            "epoch": m.get("epoch"),
            "members": m.get("members"),
        }


@dataclass
class Points:
    """The evaluation points: a fixed, recorded subset of one split."""

    x: torch.Tensor  # float [0,1] on the device
    y: torch.Tensor
    index: torch.Tensor  # positions in the original split
    classes: tuple[str, ...]
    dataset: str
    split: str
    selection: str
    seed: int

    def describe(self) -> dict:
        idx = self.index.cpu().to(torch.int64).numpy().tobytes()
        return {
            "dataset": self.dataset,
            "split": self.split,
            "n": int(len(self.y)),
            "selection": self.selection,
            "seed": self.seed,
            "indices_sha256": hashlib.sha256(idx).hexdigest(),
            "first_indices": self.index[:10].tolist(),
            "classes": list(self.classes),  # label order (per_class keys get sorted in JSON)
        }


def _dataset_name(meta: dict) -> str | None:
    ds = meta.get("dataset")
    if isinstance(ds, dict):
        return ds.get("name")
    return ds


def resolve_target(obj, device: torch.device, name: str | None = None) -> Target:
    """A checkpoint path, a (model, meta) pair or a bare module."""
    from .checkpoint import file_sha256, load_checkpoint

    if isinstance(obj, Target):
        obj.model.to(device)
        return obj
    if isinstance(obj, (str, Path)):
        model, meta = load_checkpoint(obj, device=device)
        p = Path(obj)
        nm = name or (p.parent.name + "/" + p.name if p.parent.name else p.name)
        return Target(model, meta, nm, str(p), file_sha256(p))
    if isinstance(obj, tuple) and len(obj) in (2, 3):  # (model, meta) or (model, meta, name)
        model, meta = obj[0], obj[1]
        nm = name or (obj[2] if len(obj) == 3 else meta.get("name", "model"))
        return Target(model.to(device), dict(meta), nm)
    if isinstance(obj, nn.Module):
        return Target(obj.to(device), {}, name or type(obj).__name__)
    raise TypeError(f"cannot evaluate a {type(obj).__name__}")


def model_dataset(meta: dict | None, data_root: str | None = None):
    """The DatasetBundle a model was trained on, split as its training run split it."""
    from .data import load_dataset

    if not meta or not _dataset_name(meta):
        raise RobustError("no data given and the model's metadata names no dataset; pass data")
    dmeta = (meta.get("spec") or {}).get("data") or meta.get("data") or {}  # the training DataSpec
    return load_dataset(
        _dataset_name(meta),
        data_root=data_root or dmeta.get("data_root"),
        image_size=dmeta.get("image_size"),
        val_fraction=dmeta.get("val_fraction", 0.1),
        split_seed=dmeta.get("split_seed", 0),
    )


def select_points(
    data, *, n: int | None, split: str, seed: int, device, meta: dict | None = None, data_root: str | None = None
) -> Points:
    """``data``: a DatasetBundle, a Split, an (x, y) pair, or None to load the
    checkpoint's own dataset. The subset is the first n of a permutation seeded
    by ``seed``, so the same n and seed give the same points everywhere."""
    from .data import DatasetBundle, Split

    classes: tuple[str, ...] = tuple(meta.get("classes", ())) if meta else ()
    dataset = _dataset_name(meta or {}) or "tensors"
    if data is None:
        data = model_dataset(meta, data_root)
    if isinstance(data, DatasetBundle):
        classes, dataset = data.info.classes, data.info.name
        data = data.split(split)
    if isinstance(data, Split):
        whole = len(data)
        if n is not None and n > whole:
            raise RobustError(f"--n {n} is larger than the {whole} examples of the {split} split")
        sub = data.subset(n, seed=seed) if n is not None and n < whole else data
        sel = (
            f"first {len(sub)} of a permutation of the {whole} {split} examples (torch.Generator seed {seed})"
            if len(sub) < whole
            else f"all {whole} {split} examples"
        )
        x = sub.x.to(device).float().div_(255)
        return Points(x, sub.y.to(device), sub.index.clone(), classes, dataset, split, sel, seed)
    x, y = data
    x, y = x.to(device), y.to(device)
    if x.dtype == torch.uint8:
        x = x.float().div_(255)
    if n is not None and n < len(y):
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(y), generator=g)[:n]
        x, y = x[idx.to(device)], y[idx.to(device)]
        sel = f"first {n} of a permutation of {len(data[1])} given examples (seed {seed})"
    else:
        idx = torch.arange(len(y))
        sel = f"all {len(y)} given examples"
    return Points(x, y, idx, classes, dataset, split, sel, seed)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    with module_mode(model, train=False):
        return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


@torch.no_grad()
def predict_sharded(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``predict`` with its batches dealt out over the ranks and the logits all-reduced
    (each entry is summed with zeros only, so the result is bit-identical)."""
    if distributed.world_size() == 1:
        return predict(model, x, batch_size)
    starts = range(0, len(x), batch_size)
    out = None
    for j in distributed.my_chunks(len(starts)):
        i = starts[j]
        logits = predict(model, x[i : i + batch_size], batch_size)
        if out is None:
            out = logits.new_zeros((len(x), logits.shape[1]))
        out[i : i + batch_size] = logits
    if out is None:  # this rank got no batch: learn the output's width and dtype from one image
        one = predict(model, x[:1], 1)
        out = one.new_zeros((len(x), one.shape[1]))
    return distributed.all_reduce_sum(out)


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
    from .attacks.base import make_ball

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
    shown = _AttackProgress(progress, target, spec, x, sum(min(batch_size, len(ids) - starts[j]) for j in mine))
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


def _transfer(
    source: Target, target: Target, spec: AttackSpec, x, y, todo, batch_size: int, seed: int, progress
) -> AttackRun:
    """Crafts on the surrogate the points the target classifies correctly, then scores
    the adversarial images on the target."""
    crafted = run_attack(source, spec, x, y, todo, batch_size=batch_size, seed=seed, keep_adv=True, progress=progress)
    adv_pred = predict_sharded(target.model, crafted.x_adv, batch_size).argmax(1)
    return AttackRun(todo & (adv_pred != y), adv_pred, crafted.x_adv, None)


def _same_eps_meaning(source: Target, target: Target, attacks, channels: int) -> None:
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


class _AttackProgress:
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


def _per_class(y: torch.Tensor, clean_ok: torch.Tensor, robust_ok: torch.Tensor, classes) -> dict:
    out = {}
    n_cls = max(len(classes), int(y.max().item()) + 1 if len(y) else 0)
    for c in range(n_cls):
        m = y == c
        k = int(m.sum())
        name = classes[c] if c < len(classes) else str(c)
        out[name] = {
            "n": k,
            "clean_acc": float(clean_ok[m].float().mean()) if k else None,
            "robust_acc": float(robust_ok[m].float().mean()) if k else None,
        }
    return out


def _metrics(points: Points, clean_ok, robust_ok, seconds: float, attacked: int) -> dict:
    n = len(points.y)
    kc, kr = int(clean_ok.sum()), int(robust_ok.sum())
    return {
        "n": n,
        "clean_correct": kc,
        "clean_acc": kc / n,
        "clean_ci95": list(wilson_interval(kc, n)),
        "robust_correct": kr,
        "robust_acc": kr / n,
        "robust_ci95": list(wilson_interval(kr, n)),
        "attacked": attacked,
        "seconds": seconds,
        "images_per_s": n / seconds if seconds > 0 else None,
        "per_class": _per_class(points.y, clean_ok, robust_ok, points.classes),
        "robust_flags": pack_flags(robust_ok),  # which points stayed robust, for worst cases across records
    }


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
        raise RobustError("no attack given; use --attack fgsm|pgd|autoattack")
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
        _same_eps_meaning(source, target, attacks, points.x.shape[1])
    layout = resolve_channels_last(channels_last, dev) and points.x.dim() == 4
    if layout:  # NHWC: faster forward and input-gradient passes (benchmarks/layout.py); same values
        model.to(memory_format=torch.channels_last)
        if source is not None:
            source.model.to(memory_format=torch.channels_last)
        points.x = points.x.contiguous(memory_format=torch.channels_last)
    x, y = points.x, points.y
    std = find_std(model, x.shape[1])

    t0 = time.perf_counter()
    clean_logits = predict_sharded(model, x, batch_size)
    clean_pred = clean_logits.argmax(1)
    clean_ok = clean_pred == y
    clean_seconds = time.perf_counter() - t0
    n_clean = int(clean_ok.sum())
    say(f"{target.name}: clean accuracy {acc_text(n_clean / len(y), len(y), wilson_interval(n_clean, len(y)))}")

    model_findings: list[C.Finding] = []
    if run_checks:
        ok_idx = clean_ok.nonzero().squeeze(1)[:200]
        torch.manual_seed(seed)
        model_findings = C.model_checks(model, x[ok_idx], y[ok_idx], clean_logits[:256])
    # arithmetic on the clean predictions, so it runs even without the other checks: a
    # model that guesses or predicts one class makes every robust number meaningless
    degenerate = C.not_degenerate(clean_pred, y, clean_logits.shape[1], points.classes)
    model_findings.append(degenerate)

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
        "degenerate": None if degenerate.ok else {"reason": degenerate.detail},
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
                partial = None
                if resume_dir is not None and target.sha256:
                    partial = PartialRun(
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
                run = _transfer(source, target, spec, x, y, todo, batch_size, seed, progress)
            fooled, adv_pred, x_adv = run.fooled, run.adv_pred, run.x_adv
            seconds = time.perf_counter() - t1 + run.resumed_seconds
            robust_ok = todo & ~fooled
            robust_all &= robust_ok
            metrics = _metrics(points, clean_ok, robust_all.clone() if cascade else robust_ok, seconds, int(todo.sum()))
            metrics["clean_seconds"] = clean_seconds
            rec = dict(base)
            rec["attack"] = {
                **spec.to_dict(),
                **spec.threat.describe(std),
                "kind": spec.info.kind,
                "cumulative": cascade and len(eps_records) > 0,
            }
            if source is not None:  # its own column: a transfer number is not the white-box one
                rec["attack"]["label"] = f"{spec.label} (transfer)"
            if spec.step_rule is None and not spec.threat.given:  # the attack sets its own steps
                rec["attack"]["step_rule"] = None
            if spec.info.nchw:  # e.g. the AutoAttack adapter computes in NCHW whatever the layout
                rec["attack"]["channels_last"] = False
            if run.norms is not None and not cascade:
                metrics["min_norms"] = min_norm_list(run.norms, clean_ok)
            if source is None:  # checks on the attack's own convergence concern the model attacked
                rec["_spec"] = spec
            rec["checks"] = [f.to_dict() for f in model_findings]
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
                key = f"{spec.label}@{eps:g}"
                saved[f"{key}/x_adv"] = x_adv.cpu()
                saved[f"{key}/adv_pred"] = adv_pred.cpu()
                saved[f"{key}/fooled"] = fooled.cpu()
                saved[f"{key}/attack"] = {k: v for k, v in rec["attack"].items() if not isinstance(v, torch.Tensor)}
        if run_checks and not cascade:
            _pairwise_checks(eps_records, len(y))
        if check_convergence:
            _convergence_checks(target, eps_records, x, y, clean_ok, batch_size, seed)
        if len(specs) > 1:
            wc = dict(base)
            wc["attack"] = {
                "name": "worst-case",
                "label": "worst-case",
                "members": [s.label for s in specs],
                **specs[0].threat.describe(std),
                "step_rule": None,
                "cumulative": True,
            }
            wc["metrics"] = _metrics(
                points, clean_ok, robust_all, sum(r["metrics"]["seconds"] for r in eps_records), int(clean_ok.sum())
            )
            wc["checks"] = [f.to_dict() for f in model_findings]
            eps_records.append(wc)
        records.extend(eps_records)

    _step_checks(records)
    if run_checks:
        _sweep_checks(records, len(y))
    for r in records:
        r.pop("_flags", None)
        r.pop("_spec", None)
    if save_adv is not None and distributed.is_main():
        try:
            _save_adv(save_adv, points, clean_pred, saved, target)
        except OSError as e:  # a full disk at the end: the caller still gets the records to keep
            from .outputs import UnsavedWork, cannot_write

            raise UnsavedWork(str(cannot_write(save_adv, "--save-adv", e, "FILE")), records) from None
    return records


def _pairwise_checks(eps_records: list[dict], n: int) -> None:
    """Attacks at one threat that should be ordered: a single-step attack (FGSM) is no
    stronger than an iterative white-box one, and a black-box one (Square) no stronger
    than any white-box one (else gradients are likely masked)."""
    specs = [(r, r["_spec"]) for r in eps_records if "_spec" in r]
    single = [r for r, s in specs if s.info.single_step]
    black = [r for r, s in specs if s.info.kind == "black-box"]
    for r, s in specs:
        if s.info.kind != "white-box":
            continue
        acc = r["metrics"]["robust_acc"]
        found = (
            []
            if s.info.single_step
            else [C.fgsm_stronger_than_pgd(f["metrics"]["robust_acc"], acc, n, r["attack"]["label"]) for f in single]
        )
        found += [C.square_below_whitebox(b["metrics"]["robust_acc"], acc, n, r["attack"]["label"]) for b in black]
        r["checks"] = r["checks"] + [f.to_dict() for f in found]


def _convergence_checks(target, eps_records, x, y, clean_ok, batch_size, seed) -> None:
    """Each iterative white-box attack with a step count k again with 2k steps."""
    for r in eps_records:
        spec = r.get("_spec")
        if spec is None or spec.info.kind != "white-box" or spec.info.one_batch or "k" not in spec.options:
            continue
        doubled = spec.replace(k=2 * spec.k)
        fooled = run_attack(target, doubled, x, y, clean_ok, batch_size=batch_size, seed=seed).fooled
        acc2 = float((clean_ok & ~fooled).float().mean())
        finding = C.pgd_converged(r["metrics"]["robust_acc"], acc2, len(y), spec.k, spec.label)
        r["checks"] = r["checks"] + [finding.to_dict()]


def _sweep_checks(records: list[dict], n: int) -> None:
    """Robust accuracy against eps, per attack: radii are compared only within one
    norm and one eps space (an L2 radius or a normalized one says nothing about a
    pixel L-inf one)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        a = r["attack"]
        groups.setdefault((a["label"], a.get("norm"), a.get("space")), []).append(r)
    for (label, norm, space), rs in groups.items():
        if len(rs) < 2 or len({r["attack"]["eps"] for r in rs}) < 2:
            continue
        sweep = [(r["attack"]["eps"], r["metrics"]["robust_acc"]) for r in rs]
        finding = C.accuracy_rises_with_eps(sweep, n, f"{label} ({norm}, {space} eps)").to_dict()
        for r in rs:
            r["checks"] = r["checks"] + [finding]


def _step_checks(records: list[dict]) -> None:
    """A given fixed step (the 2.5*eps/k family) must let k steps reach eps. Checked
    whatever --checks says: it is about the settings, not the model, and costs nothing."""
    for r in records:
        a, spec = r["attack"], r.get("_spec")
        if spec is not None and a.get("step_rule") == "given" and spec.info.step_rule == "2.5*eps/k":
            k = spec.options[spec.info.steps_option]
            r["checks"] = r["checks"] + [C.steps_reach_eps(k, a["step"], a["eps"], a["label"]).to_dict()]


def min_norm_list(norms: torch.Tensor, clean_ok: torch.Tensor) -> list:
    """A minimal-norm attack's per-point result for the record: 0 for a point
    misclassified clean, the smallest adversarial norm found, or None where none was
    found (robust at every radius the attack reached)."""
    out = []
    for v, ok in zip(norms.tolist(), clean_ok.tolist()):
        out.append(0.0 if not ok else (None if v != v or v == float("inf") else float(v)))
    return out


def _save_adv(path, points: Points, clean_pred, saved: dict, target: Target) -> None:
    from .fileio import atomic_path

    payload = {
        "x_clean": points.x.cpu(),
        "y": points.y.cpu(),
        "clean_pred": clean_pred.cpu(),
        "index": points.index.cpu(),
        "split": points.split,
        "dataset": points.dataset,
        "checkpoint": target.path or target.name,
        "classes": list(points.classes),
        "selection": points.selection,
        "seed": points.seed,
        **saved,
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)  # through a Python file, a full disk is an OSError (ENOSPC)


def summary_rows(records: list[dict]) -> list[dict]:
    """Flat rows for printing: checkpoint, attack, eps in both spaces, accuracies."""
    rows = []
    for r in records:
        a, m = r["attack"], r["metrics"]
        rows.append(
            {
                "checkpoint": r["checkpoint"]["name"],
                "attack": a["label"] + (" (cumulative)" if a.get("cumulative") else ""),
                "norm": a.get("norm"),
                "eps_normalized": a.get("eps_normalized"),
                "eps_pixel": a.get("eps_pixel"),
                "clean_acc": m["clean_acc"],
                "robust_acc": m["robust_acc"],
                "ci95": m["robust_ci95"],
                "n": m["n"],
                "seconds": m["seconds"],
                "images_per_s": m["images_per_s"],
                # a degenerate model is marked by its own column (r["degenerate"])
                "warnings": [c["detail"] for c in r.get("checks", []) if not c["ok"] and c["name"] != "not_degenerate"],
            }
        )
    return rows

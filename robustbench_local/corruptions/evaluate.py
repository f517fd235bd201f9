"""Accuracy of one model under common corruptions: each chosen corruption at each chosen
severity, on the same fixed test points as the clean accuracy, in one record of kind
'corruption'.

The record keeps, per corruption and severity, the accuracy with its n and 95% Wilson
interval and which points were classified correctly (packed flags, for paired
comparisons); and the summaries the benchmark reports: the mean corruption accuracy
over everything evaluated (RobustBench's corruption-track figure when all 15 x 5 are
run), per corruption, per severity and per family, and the relative drop from clean,
(clean - mean) / clean. The interval of the mean is over test points: each point's
share of corrupted versions it got right, mean +- 1.96 standard errors."""

from __future__ import annotations

import time

import torch

from .. import distributed
from ..checks import not_degenerate
from ..data import DatasetBundle
from ..errors import RobustError
from ..eval_clean import predict
from ..eval_inputs import model_dataset, resolve_target, select_points
from ..results import mean_interval, pack_flags, wilson_interval
from ..runtime import environment
from ..text import acc_text
from . import FAMILIES, SOURCES
from .functions import DIFFERS
from .sets import GENERATOR_VERSION, SetKey, find_real_folder, generated_set, real_set


def _choose_source(source: str, info, split: str, data_root) -> tuple[str, object]:
    if source not in SOURCES:
        raise RobustError(f"unknown corruption source '{source}'; valid: {', '.join(SOURCES)}")
    folder = None
    if source in ("auto", "real") and split == "test" and tuple(info.input_shape) == (3, 32, 32):
        folder = find_real_folder(info.name, data_root)
    if source == "real" and folder is None:
        raise RobustError(
            f"no real corrupted test set for {info.name} on the data search path (RobustBench's "
            "layout: <data root>/CIFAR-10-C/<corruption>.npy and labels.npy, 32x32 test split only); "
            "use --corruption-source generated"
        )
    return ("real", folder) if folder is not None else ("generated", None)


def evaluate_corruptions(
    model_or_checkpoint,
    names,
    severities,
    data=None,
    *,
    n: int | None = 1000,
    split: str = "test",
    seed: int = 0,
    batch_size: int = 256,
    device="auto",
    data_root: str | None = None,
    cache_dir=None,
    source: str = "auto",
    log=None,
    name: str | None = None,
    progress=None,
) -> dict:
    """Evaluates one model (checkpoint path, Target, (model, meta) pair) under the
    corruptions ``names`` at ``severities``; returns the record. Points are chosen as
    evaluate() chooses them (first n of a permutation seeded by ``seed``), so clean
    accuracy here equals the attacks' on the same n and seed."""
    say = log or (lambda s: None)
    dev = distributed.init(device) if isinstance(device, str) else device
    target = resolve_target(model_or_checkpoint, dev, name)
    model = target.model.eval()
    bundle = (
        data
        if data is not None
        else (target.data if isinstance(target.data, DatasetBundle) else model_dataset(target.meta, data_root))
    )
    points = select_points(bundle, n=n, split=split, seed=seed, device=dev, meta=target.meta)
    kind, folder = _choose_source(source, bundle.info, split, data_root)
    clean_u8 = (points.x * 255).round().to(torch.uint8).cpu()  # exactly the split's uint8 images
    index = points.index.cpu()

    def predicted(x_u8: torch.Tensor) -> torch.Tensor:
        return predict(model, x_u8.to(dev).float().div_(255), batch_size).argmax(1).cpu()

    def correct(x_u8: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return predicted(x_u8) == y.cpu()

    clean_pred = predicted(clean_u8)
    clean_ok = clean_pred == points.y.cpu()
    n_pts, kc = len(clean_ok), int(clean_ok.sum())
    say(f"{target.name}: clean accuracy {acc_text(kc / n_pts, n_pts, wilson_interval(kc, n_pts))}")
    # a model that guesses or predicts one class keeps its accuracy under every corruption:
    # a zero drop that measures nothing, so the record says so
    degenerate = not_degenerate(clean_pred, points.y, bundle.info.num_classes, points.classes)
    if not degenerate.ok:
        say(f"  warning: degenerate model ({degenerate.detail}); its corruption accuracies are meaningless")
    total = len(names) * len(severities)
    task = progress.task(f"corruptions ({kind})", total, "sets") if progress is not None else None
    results, flags, labels_match = [], [], True
    seconds = {"generate": 0.0, "evaluate": 0.0}
    for c in names:
        for s in severities:
            if kind == "real":
                t0 = time.perf_counter()
                x_c, y_c = real_set(folder, c, s, index)
                labels_match &= bool(torch.equal(y_c, points.y.cpu()))
                seconds["generate"] += time.perf_counter() - t0  # reading the files
            else:
                key = SetKey(bundle.info.name, bundle.info.source, tuple(bundle.info.input_shape), split, c, s, seed)
                x_c, gen = generated_set(key, clean_u8, index, cache_dir=cache_dir)
                y_c = points.y
                seconds["generate"] += gen
            t1 = time.perf_counter()
            ok = correct(x_c, y_c)
            seconds["evaluate"] += time.perf_counter() - t1
            k = int(ok.sum())
            flags.append(ok)
            results.append(
                {
                    "corruption": c,
                    "family": FAMILIES[c],
                    "severity": s,
                    "n": n_pts,
                    "correct": k,
                    "acc": k / n_pts,
                    "ci95": list(wilson_interval(k, n_pts)),
                    "flags": pack_flags(ok),
                }
            )
            if task is not None:
                task.update(completed=len(results), info=f"{c} {s}: {100 * k / n_pts:.1f}%")
    if task is not None:
        task.close(ok=True)
    scores = torch.stack(flags).float().mean(0) if flags else torch.zeros(0)
    mean_acc, mean_ci = mean_interval(scores.numpy())
    mean_ci = list(mean_ci)

    def mean_of(key: str, value) -> float:
        accs = [r["acc"] for r in results if r[key] == value]
        return sum(accs) / len(accs)

    clean_acc = kc / n_pts
    metrics = {
        "n": n_pts,
        "clean_correct": kc,
        "clean_acc": clean_acc,
        "clean_ci95": list(wilson_interval(kc, n_pts)),
        "results": results,
        "by_corruption": {c: mean_of("corruption", c) for c in names},
        "by_severity": {str(s): mean_of("severity", s) for s in severities},
        "by_family": {f: mean_of("family", f) for f in dict.fromkeys(FAMILIES[c] for c in names)},
        "mean_acc": mean_acc,
        "mean_ci95": mean_ci,
        "mean_interval": "over test points: each point's share of corrupted versions right, mean +- 1.96 s.e.",
        "relative_drop": (clean_acc - mean_acc) / clean_acc if clean_acc > 0 else None,
        "seconds": seconds,
    }
    about = {"source": kind, "names": list(names), "severities": list(severities), "seed": seed}
    if kind == "real":
        about.update({"folder": str(folder), "labels_match_split": labels_match})
    else:
        about.update(
            {
                "generator_version": GENERATOR_VERSION,
                "differs_from_cifar10c": {c: DIFFERS[c] for c in names if c in DIFFERS},
            }
        )
    say(
        f"  {total} corrupted sets: mean accuracy {acc_text(mean_acc, n_pts, mean_ci)}, relative drop "
        + (f"{100 * metrics['relative_drop']:.1f}%" if metrics["relative_drop"] is not None else "-")
        + f"; generated in {seconds['generate']:.1f} s, evaluated in {seconds['evaluate']:.1f} s"
    )
    return {
        "kind": "corruption",
        "checkpoint": target.describe(),
        "data": points.describe(),
        "environment": environment(dev, seed),
        "corruptions": about,
        "metrics": metrics,
        "degenerate": None if degenerate.ok else {"reason": degenerate.detail},
        "checks": [degenerate.to_dict()],
    }

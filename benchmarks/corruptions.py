"""Benchmark: common-corruption generation throughput per corruption (images/s, all five
severities), and what a full CIFAR-10-C evaluation of the seed CNN costs on this
machine (15 corruptions x 5 severities x 10,000 test images).

Generation: ``corrupt_images`` (sets.py, what the cache is filled with) on the first N
test images at every severity, timed per corruption; no cache is read or written.
Evaluation: the standard benchmark checkpoint (the seed CNN, common.standard_spec) on
N corrupted images of every corruption and severity, forward passes only. The full
evaluation's cost is extrapolated from these measured rates to the 750,000 images of
CIFAR-10-C: generation (once, then cached) and evaluation, each stated with the n it
was measured on."""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks import common

NAME = "corruptions"
FULL = {"n": 200, "eval_batch": 500}
QUICK = {"n": 4, "eval_batch": 4}
FULL_SET = 10_000  # CIFAR-10-C: the whole test set per corruption and severity


def run(quick: bool = False, out_dir=None) -> dict:
    from robustbench_local.checkpoint import load_checkpoint
    from robustbench_local.corruptions import CORRUPTIONS, SEVERITIES, require_extra
    from robustbench_local.corruptions.sets import corrupt_images
    from robustbench_local.eval_clean import predict

    require_extra()
    cfg = dict(QUICK if quick else FULL)
    common.setup_threads()
    report = common.Report(NAME, quick, settings={**cfg, "threads": torch.get_num_threads()})
    test = common.cifar10().test
    x, index, y = test.x[: cfg["n"]], test.index[: cfg["n"]], test.y[: cfg["n"]]
    model, _ = load_checkpoint(common.bench_checkpoint("standard", **common.standard_spec(quick)), device="cpu")
    model.eval()
    rows, per = [], {}
    for name in CORRUPTIONS:
        t0 = time.perf_counter()
        sets = [corrupt_images(x, index, name, s, seed=0) for s in SEVERITIES]
        gen_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        accs = []
        for xc in sets:
            logits = predict(model, xc.float().div_(255), cfg["eval_batch"])
            accs.append(float((logits.argmax(1) == y).float().mean()))
        eval_s = time.perf_counter() - t1
        images = len(SEVERITIES) * len(x)
        per[name] = {
            "images": images,
            "generate_seconds": gen_s,
            "generate_images_per_s": images / gen_s,
            "eval_seconds": eval_s,
            "eval_images_per_s": images / eval_s,
            "acc_by_severity": accs,
        }
        rows.append([name, images, images / gen_s, images / eval_s, " ".join(f"{100 * a:.0f}" for a in accs)])
    total_images = FULL_SET * len(SEVERITIES) * len(CORRUPTIONS)
    gen_full = sum(FULL_SET * len(SEVERITIES) / p["generate_images_per_s"] for p in per.values())
    eval_full = sum(FULL_SET * len(SEVERITIES) / p["eval_images_per_s"] for p in per.values())
    common.print_table(
        f"corruption generation and seed-CNN evaluation, {cfg['n']} test images x 5 severities each",
        ["corruption", "images", "generated / s", "evaluated / s", "accuracy % (sev 1-5)"],
        rows,
        caption=f"full CIFAR-10-C ({total_images:,} images), extrapolated from these rates: generation "
        f"{gen_full / 60:.1f} min once (then cached), evaluation {eval_full / 60:.1f} min per model",
    )
    report.data.update(
        {
            "per_corruption": per,
            "full_cifar10c": {
                "images": total_images,
                "generate_minutes": gen_full / 60,
                "eval_minutes": eval_full / 60,
                "how": f"extrapolated from {cfg['n']} images x 5 severities per corruption",
            },
        }
    )
    return report.save(out_dir)


if __name__ == "__main__":
    common.script_main(__doc__, run)

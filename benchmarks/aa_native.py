"""Benchmark: the native AutoAttack cascade (`--attack aa-native`) against pyautoattack's
standard version, the same four attacks (APGD-CE, APGD-T, FAB-T, Square).

On the standard and the PGD-AT checkpoint (shared with the other benchmarks through
common.bench_checkpoint), the same test points and threads:

- ours:          evaluate() with AttackSpec("aa-native"), as `robust eval --attack
                 aa-native` runs it (channels-last, batches, each attack only on the
                 points every earlier one left robust), timed by its record: the clean
                 pass and the attack, without loading the checkpoint and the points;
- pyautoattack:  AutoAttack(version="standard").run_standard_evaluation on the model
                 as loaded, then one forward to judge.

Besides seconds and robust accuracy it compares the two per point: a point that
pyautoattack breaks and ours keeps is a failure of ours and is listed by index.
Each case runs once (a whole cascade on the PGD-AT model takes minutes); the order
alternates between the two threats. Targets: pyautoattack / ours >= 2x, and no point
that pyautoattack breaks kept by ours (robust accuracy no higher)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks import common

NAME = "aa_native"
FULL = {"n": 500, "batch_size": 250}
QUICK = {"n": 16, "batch_size": 16}
# quick runs shrink every attack so that the smoke test takes seconds
QUICK_OPTIONS = {"k": 5, "targets": 2, "n_queries": 20}


def _ours(ckpt: Path, n: int, batch_size: int, eps_px: float, quick: bool) -> tuple[torch.Tensor, float]:
    from robustbench_local.attacks import AttackSpec
    from robustbench_local.evaluation import evaluate
    from robustbench_local.results import unpack_flags
    from robustbench_local.threat import ThreatModel

    spec = AttackSpec("aa-native", ThreatModel("linf", eps_px, space="pixel"), QUICK_OPTIONS if quick else {})
    rec = evaluate(
        str(ckpt), [spec], common.cifar10(), n=n, seed=0, batch_size=batch_size, device="cpu", run_checks=False
    )[0]
    seconds = rec["metrics"]["seconds"] + rec["metrics"]["clean_seconds"]  # the clean pass and the attack
    return torch.as_tensor(unpack_flags(rec["metrics"]["robust_flags"], n), dtype=torch.bool), seconds


def _pyautoattack(model, x, y, eps_px: float, batch_size: int, quick: bool) -> tuple[torch.Tensor, float]:
    from pyautoattack import AutoAttack

    adversary = AutoAttack(model, norm="Linf", eps=eps_px, version="standard", seed=0, device=torch.device("cpu"))
    if quick:
        for sub in (adversary.apgd, adversary.apgd_targeted, adversary.fab):
            sub.n_iter = QUICK_OPTIONS["k"]
        adversary.apgd_targeted.n_target_classes = adversary.fab.n_target_classes = QUICK_OPTIONS["targets"]
        adversary.square.n_queries = QUICK_OPTIONS["n_queries"]
    import logging

    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=batch_size)
    with torch.no_grad():
        robust = model(x_adv).argmax(1) == y
    return robust, time.perf_counter() - t0


def run(quick: bool = False, out_dir=None) -> dict:
    from robustbench_local.checkpoint import load_checkpoint
    from robustbench_local.eval_inputs import select_points
    from robustbench_local.threat import ThreatModel, find_std

    cfg = QUICK if quick else FULL
    report = common.Report(
        NAME,
        quick,
        settings={
            "n": cfg["n"],
            "batch_size": cfg["batch_size"],
            "threads": common.setup_threads(),
            "repeats": 1,
            "options": QUICK_OPTIONS if quick else "AutoAttack standard: k 100, 9 targets, 5000 Square queries",
            "points": "select_points(cifar10, n, split='test', seed=0)",
            "robust_acc": "fraction of all n points not fooled (clean-wrong points count as fooled)",
        },
    )
    results, rows, targets = {}, [], []
    for which, eps_name in (("standard", "default"), ("adversarial", "8/255")):
        spec = common.standard_spec(quick) if which == "standard" else common.adversarial_spec(quick)
        tag = f"cnn-{'standard' if which == 'standard' else 'pgd-at'}" + ("-quick" if quick else "")
        ckpt = common.bench_checkpoint(tag, **spec)
        model, _ = load_checkpoint(ckpt)
        model.eval()
        points = select_points(common.cifar10(), n=cfg["n"], split="test", seed=0, device=torch.device("cpu"))
        x, y = points.x, points.y
        std = find_std(model, 3)
        eps_px = ThreatModel("linf", 0.0313).in_space("pixel", std).eps if eps_name == "default" else 8 / 255
        with torch.no_grad():
            clean = float((model(x).argmax(1) == y).float().mean())
        runs = [
            # default arguments bind this iteration's values: the calls run inside this loop body
            ("ours", lambda ckpt=ckpt, eps_px=eps_px: _ours(ckpt, cfg["n"], cfg["batch_size"], eps_px, quick)),
            (
                "pyautoattack",
                lambda model=model, x=x, y=y, eps_px=eps_px: _pyautoattack(
                    model, x, y, eps_px, cfg["batch_size"], quick
                ),
            ),
        ]
        if which == "adversarial":
            runs.reverse()  # alternate which side runs first
        out = {name: fn() for name, fn in runs}
        (ours_rob, ours_s), (ref_rob, ref_s) = out["ours"], out["pyautoattack"]
        kept = (ours_rob & ~ref_rob).nonzero().squeeze(1).tolist()  # ref broke, ours kept: failures
        key = f"{which} eps {eps_px * 255:.3g}/255"
        speed = ref_s / ours_s
        results[key] = {
            "checkpoint": str(ckpt.relative_to(common.ROOT)),
            "train_spec": common.spec_summary(spec),
            "clean_acc": clean,
            "threat": ThreatModel("linf", eps_px, space="pixel").describe(std),
            "ours": {"seconds": ours_s, "robust_acc": float(ours_rob.float().mean())},
            "pyautoattack": {"seconds": ref_s, "robust_acc": float(ref_rob.float().mean())},
            "pyautoattack_over_ours": speed,
            "points_pyautoattack_broke_ours_kept": [int(points.index[i]) for i in kept],
            "points_ours_broke_pyautoattack_kept": int((ref_rob & ~ours_rob).sum()),
        }
        rows.append(
            [key, clean, float(ours_rob.float().mean()), float(ref_rob.float().mean()), ours_s, ref_s, speed, len(kept)]
        )
        targets.append(common.target_line(f"{key}: pyautoattack / ours", speed, ">=", 2.0))
        targets.append(
            common.target_line(f"{key}: points pyautoattack broke that ours kept", float(len(kept)), "<=", 0.0, unit="")
        )
    common.print_table(
        f"AutoAttack standard (L-inf) on {cfg['n']} CIFAR-10 test images: aa-native vs pyautoattack, "
        f"{torch.get_num_threads()} threads",
        [
            "case",
            "clean",
            "ours robust",
            "pyautoattack robust",
            "ours s",
            "pyautoattack s",
            "x pyautoattack",
            "kept by ours only",
        ],
        rows,
        caption="kept by ours only: points pyautoattack broke and ours did not (failures; listed in the JSON).",
    )
    common.print_targets(targets)
    report.data.update({"results": results, "targets": targets})
    return report.save(out_dir)


def main(argv=None) -> None:
    common.script_main(__doc__, run, argv)


if __name__ == "__main__":
    main()

"""Benchmark: APGD-CE alone, ours against pyautoattack's APGDAttack.

On the standard and the PGD-AT checkpoint (the ones eval_cascade trains, shared
through common.bench_checkpoint), the same test points, batch size, threads and
threat, APGD-CE with k iterations and one restart, side by side:

- ours:          robustbench_local apgd(loss="ce") per batch, model and inputs as
                 loaded (NCHW): only clean-correct points are attacked, and a point
                 leaves the batch at the first iterate that fools it;
- ours NHWC:     the same on a channels-last copy with channels-last inputs, as
                 robust eval runs it on CPU;
- pyautoattack:  APGDAttack(loss="ce").perturb per batch (it too attacks only the
                 clean-correct points, every one for all k iterations), then one
                 forward to judge, on the model as loaded (NCHW).

Threats: the suite's default (L-inf, eps 0.0313 normalized = 0.01565 pixel, about
4/255) on both checkpoints, and AutoAttack's usual CIFAR-10 radius 8/255 on the PGD-AT
one; pyautoattack is given the pixel eps. Both sides seed 0 before each batch
(pyautoattack does so itself), so their random starts coincide and the robust
accuracies differ only where the algorithms do. Targets: pyautoattack / ours >= 1.5x,
robust accuracy within 0.5 points or lower."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks import common

NAME = "apgd"
FULL = {"n": 1000, "batch_size": 256, "k": 100, "repeats": 3}
QUICK = {"n": 32, "batch_size": 16, "k": 5, "repeats": 1}
DEFAULT_EPS = 0.0313  # normalized, the suite's default threat
CASES = {
    "ours": "ours APGD-CE (NCHW)",
    "ours_nhwc": "ours APGD-CE (NHWC, as robust eval runs it)",
    "pyautoattack": "pyautoattack APGDAttack ce (NCHW)",
}


def prepare(quick: bool, which: str) -> dict:
    from robustbench_local.checkpoint import load_checkpoint
    from robustbench_local.eval_inputs import select_points

    cfg = QUICK if quick else FULL
    common.setup_threads()
    spec = common.standard_spec(quick) if which == "standard" else common.adversarial_spec(quick)
    tag = f"cnn-{'standard' if which == 'standard' else 'pgd-at'}" + ("-quick" if quick else "")
    ckpt = common.bench_checkpoint(tag, **spec)
    model, meta = load_checkpoint(ckpt)
    model.eval()
    points = select_points(common.cifar10(), n=cfg["n"], split="test", seed=0, device=torch.device("cpu"))
    return {
        "cfg": cfg,
        "which": which,
        "spec": spec,
        "ckpt": ckpt,
        "model": model,
        "meta": meta,
        "x": points.x,
        "y": points.y,
    }


def ours_accuracy(model, x, y, threat, k: int, batch_size: int) -> float:
    from robustbench_local.attacks.apgd import apgd

    robust = 0
    for i in range(0, len(y), batch_size):
        torch.manual_seed(0)  # as pyautoattack seeds each perturb() call
        res = apgd(model, x[i : i + batch_size], y[i : i + batch_size], threat, k=k, loss="ce")
        robust += int((~res.fooled).sum())
    return robust / len(y)


def pyautoattack_accuracy(model, x, y, eps_px: float, k: int, batch_size: int) -> float:
    from pyautoattack.autopgd_base import APGDAttack

    attack = APGDAttack(
        model, n_iter=k, norm="Linf", n_restarts=1, eps=eps_px, seed=0, loss="ce", device=torch.device("cpu")
    )
    correct = 0
    for i in range(0, len(y), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        adv = attack.perturb(xb, yb)
        with torch.no_grad():
            correct += int((model(adv).argmax(1) == yb).sum())
    return correct / len(y)


def cases(ctx: dict, eps_px: float) -> tuple[dict, dict]:
    """The timed cases; each call returns its robust accuracy, recorded in ``accs``."""
    from robustbench_local.threat import ThreatModel

    cfg, model, x, y = ctx["cfg"], ctx["model"], ctx["x"], ctx["y"]
    k, bs = cfg["k"], cfg["batch_size"]
    threat = ThreatModel("linf", eps_px, space="pixel")
    nhwc = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_nhwc = x.contiguous(memory_format=torch.channels_last)
    accs: dict[str, float] = {}

    def recorded(name, fn):
        def case():
            accs[name] = fn()

        return case

    fns = {
        "ours": recorded("ours", lambda: ours_accuracy(model, x, y, threat, k, bs)),
        "ours_nhwc": recorded("ours_nhwc", lambda: ours_accuracy(nhwc, x_nhwc, y, threat, k, bs)),
        "pyautoattack": recorded("pyautoattack", lambda: pyautoattack_accuracy(model, x, y, eps_px, k, bs)),
    }
    return fns, accs


def run(quick: bool = False, out_dir=None) -> dict:
    from robustbench_local.threat import ThreatModel, find_std

    cfg = QUICK if quick else FULL
    report = common.Report(
        NAME,
        quick,
        settings={
            "n": cfg["n"],
            "batch_size": cfg["batch_size"],
            "k": cfg["k"],
            "restarts": 1,
            "loss": "ce",
            "repeats": cfg["repeats"],
            "warmup_calls": 1,
            "threads": common.setup_threads(),
            "points": "select_points(cifar10, n, split='test', seed=0)",
            "seeding": "torch.manual_seed(0) before each batch on both sides (pyautoattack seeds each perturb call)",
            "timing": "interleaved round-robin, rotating order; seconds for all n points, batch by batch",
            "robust_acc": "fraction of all n points not fooled (clean-wrong points count as fooled), from the timed calls",
        },
    )
    results, rows, targets = {}, [], []
    for which, eps_list in (("standard", ("default",)), ("adversarial", ("default", "8/255"))):
        ctx = prepare(quick, which)
        model, x, y = ctx["model"], ctx["x"], ctx["y"]
        with torch.no_grad():
            clean = float((model(x).argmax(1) == y).float().mean())
        std = find_std(model, 3)
        for eps_name in eps_list:
            eps_px = ThreatModel("linf", DEFAULT_EPS).in_space("pixel", std).eps if eps_name == "default" else 8 / 255
            fns, accs = cases(ctx, eps_px)
            times = common.time_cases(fns, cfg["repeats"])
            key = f"{which} eps {eps_px * 255:.3g}/255"
            pa = times["pyautoattack"]
            entry = {
                "checkpoint": str(ctx["ckpt"].relative_to(common.ROOT)),
                "train_spec": common.spec_summary(ctx["spec"]),
                "clean_acc": clean,
                "threat": ThreatModel("linf", eps_px, space="pixel").describe(std),
                "cases": {},
            }
            for name, label in CASES.items():
                t = times[name]
                entry["cases"][name] = {
                    **t,
                    "robust_acc": accs[name],
                    "pyautoattack_over_this": common.ratio(pa, t),
                    "images_per_s": len(y) / t["median"],
                }
                rows.append(
                    [f"{key}: {label}", clean, accs[name], t["median"], t["min"], t["max"], common.ratio(pa, t)]
                )
            results[key] = entry
            targets.append(
                common.target_line(
                    f"{key}: pyautoattack / ours (both NCHW)", common.ratio(pa, times["ours"]), ">=", 1.5
                )
            )
            targets.append(
                common.target_line(
                    f"{key}: pyautoattack as loaded / ours as robust eval runs it (NHWC)",
                    common.ratio(pa, times["ours_nhwc"]),
                    ">=",
                    1.5,
                )
            )
            targets.append(
                common.target_line(
                    f"{key}: ours robust acc - pyautoattack robust acc (points)",
                    100 * (accs["ours"] - accs["pyautoattack"]),
                    "<=",
                    0.5,
                    unit="",
                )
            )
    common.print_table(
        f"APGD-CE-{cfg['k']} (L-inf) on {cfg['n']} CIFAR-10 test images, batch {cfg['batch_size']}, "
        f"{torch.get_num_threads()} threads",
        ["case", "clean acc", "robust acc", "median s", "min s", "max s", "x pyautoattack"],
        rows,
        caption="x pyautoattack: pyautoattack's median time over this case's. Both attack the clean-correct "
        "points only; ours drops a point at its first fooling iterate.",
    )
    common.print_targets(targets)
    report.data.update({"results": results, "targets": targets})
    return report.save(out_dir)


def main(argv=None) -> None:
    common.script_main(__doc__, run, argv)


if __name__ == "__main__":
    main()

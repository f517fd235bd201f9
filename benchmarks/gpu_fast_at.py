"""GPU reproduction of Wong, Rice and Kolter 2020 ("Fast is better than free"): PreAct-ResNet-18
trained with FGSM-RS for 15 epochs on CIFAR-10, then evaluated as RobustBench does.

Training is fit() with Wong et al.'s recipe as far as fit() offers it: ``preact-resnet18``,
``--adv fgsm-rs`` at L-inf eps 8/255 in pixel space with a step of 10/255 from a uniform
random start, the attack run with batch norm in train mode (as their code does), the
catastrophic-overfitting guard on (best.pth is chosen by PGD-10 robust accuracy on 1,000
held-out training images), SGD momentum 0.9 without Nesterov, weight decay 5e-4, batch 128,
fit()'s one-cycle schedule peaking at lr 0.2, the CIFAR-10 mean/std normalization
(``--normalize dataset``), random crop + flip, 15 epochs. On the GPU: AMP autocast for the
training step and its FGSM step (bf16, or fp16 with a loss scaler where bf16 is missing;
Wong et al. ran both in fp16 with apex O2), channels-last, and the device-resident
TensorLoader (the uint8 images sit on the GPU; crop and flip run there per batch).

Evaluation of best.pth through evaluate(): clean accuracy (with FGSM) on all 10,000 test
images; PGD-50 with 10 restarts and step 2/255 (Wong et al.'s PGD-50-10) and standard
AutoAttack on 1,000 test points; every figure with n and a 95% Wilson interval, eps in
both spaces. The JSON sets them beside the published figures.

What differs from the paper: the data is the JPEG q75 copy of CIFAR-10 (lower accuracy);
49,000 training images (Wong et al.: 50,000, early stopping on one training batch);
fit()'s one-cycle rises from lr/25 to 0.2 over 30% of the steps and falls linearly to 0
(theirs: a triangle 0 -> 0.2 -> 0 peaking at 50%).

    python benchmarks/gpu_fast_at.py                  # on a GPU: the whole run, target <= 10 min
    python benchmarks/gpu_fast_at.py --quick          # CPU smoke size: a narrow net, 1 epoch, few points
    python benchmarks/gpu_fast_at.py --device cpu     # the full run forced onto the CPU (hours)"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks import common

NAME = "gpu_fast_at"
EPS = 8 / 255  # L-inf radius in pixels (RobustBench's CIFAR-10 L-inf track)
ETA = 10 / 255  # Wong et al.'s FGSM step (alpha = 10/255)
PGD_STEP = 2 / 255  # their PGD-50-10 evaluation step
RECIPE = {
    "arch": "preact-resnet18",
    "arch_kwargs": {},
    "normalize": "dataset",
    "augment": "basic",
    "adv": "fgsm-rs",
    "eps_pixel": EPS,
    "eta_pixel": ETA,
    "attack_bn": "train",
    "early_stop": True,
    "epochs": 15,
    "batch_size": 128,
    "lr": 0.2,
    "schedule": "onecycle",
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 5e-4,
    "amp": True,
    "attack_precision": "amp",
    "channels_last": True,
    "val_fraction": 0.02,
    "subset": None,
    "val_n": 1000,
    "val_k": 10,
}
FULL = {
    **RECIPE,
    "n": 1000,
    "n_clean": None,
    "eval_batch": 1000,
    "pgd_k": 50,
    "pgd_restarts": 10,
    "aa": "autoattack",
    "aa_options": {"version": "standard"},
}
# CPU smoke size: a narrow net, a few hundred images, one epoch, a few points, a cut-down cascade
QUICK = {
    **RECIPE,
    "arch_kwargs": {"width": 4},
    "epochs": 1,
    "batch_size": 64,
    "subset": 256,
    "val_fraction": 0.002,
    "val_n": 16,
    "val_k": 1,
    "n": 32,
    "n_clean": 50,
    "eval_batch": 64,
    "pgd_k": 5,
    "pgd_restarts": 2,
    "aa": "aa-native",
    "aa_options": {"k": 5, "targets": 2, "n_queries": 20},
}
TARGET_MINUTES = 10.0
PUBLISHED = {
    "robustbench_Wong2020Fast": {
        "model": "Wong2020Fast (RobustBench CIFAR-10 L-inf 8/255 leaderboard)",
        "arch": "PreAct-ResNet-18",
        "method": "FGSM-RS, 15 epochs",
        "clean_acc": 0.8334,
        "autoattack_acc": 0.4321,
        "n": 10000,
        "source": "RobustBench model zoo entry Wong2020Fast (Croce et al. 2021)",
    },
    "paper": {
        "citation": "Wong, Rice, Kolter. Fast is better than free: revisiting adversarial training. ICLR 2020",
        "epochs": 15,
        "train_minutes": 12,
        "hardware": "one GPU of 2019 (the paper's setup)",
        "pgd_50_10_acc": 0.4606,
        "clean_acc": 0.8606,
        "n": 10000,
        "source": "the results table of github.com/locuslab/fast_adversarial (README): FGSM, eps 8/255",
    },
}


# ----------------------------------------------------------------------------- device
def resolve_device(device: str, quick: bool) -> torch.device:
    """cuda when asked or available (auto); the full run refuses a CPU it was not told to use."""
    from robustbench_local.errors import RobustError

    if device not in ("auto", "cuda", "cpu"):
        raise RobustError(f"unknown --device {device!r}; valid: auto, cuda, cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RobustError("--device cuda: no CUDA GPU is visible to PyTorch; run on a GPU machine, or pass --quick")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu" and not quick:
            raise RobustError(
                "gpu_fast_at is meant for a GPU (15 epochs of PreAct-ResNet-18 take hours on a CPU) "
                "and none is visible; pass --quick for a smoke run, or force the full run onto the CPU "
                "with python benchmarks/gpu_fast_at.py --device cpu"
            )
    return torch.device(device)


def describe_device(dev: torch.device) -> dict:
    if dev.type != "cuda":
        return {"type": dev.type, "name": common.cpu_model()}
    p = torch.cuda.get_device_properties(dev)
    return {
        "type": "cuda",
        "name": p.name,
        "count": torch.cuda.device_count(),
        "capability": f"{p.major}.{p.minor}",
        "memory_gib": round(p.total_memory / 2**30, 1),
        "cuda": torch.version.cuda,
        "bf16": torch.cuda.is_bf16_supported(),
    }


# ----------------------------------------------------------------------------- the run
def train_spec(cfg: dict, device: torch.device, out: Path, epochs: int | None = None):
    from robustbench_local.specs import DataSpec, ModelSpec, TrainSpec

    return TrainSpec(
        data=DataSpec(subset=cfg["subset"], val_fraction=cfg["val_fraction"], augment=cfg["augment"]),
        model=ModelSpec(arch=cfg["arch"], kwargs=dict(cfg["arch_kwargs"]), normalize=cfg["normalize"]),
        adv=cfg["adv"],
        adv_kwargs={
            "eps": cfg["eps_pixel"],
            "eta": cfg["eta_pixel"],
            "eps_space": "pixel",
            "attack_bn": cfg["attack_bn"],
            "early_stop": cfg["early_stop"],
            "val_n": cfg["val_n"],
            "val_k": cfg["val_k"],
        },
        epochs=epochs or cfg["epochs"],
        batch_size=cfg["batch_size"],
        lr=cfg["lr"],
        schedule=cfg["schedule"],
        momentum=cfg["momentum"],
        nesterov=cfg["nesterov"],
        weight_decay=cfg["weight_decay"],
        amp=cfg["amp"],
        attack_precision=cfg["attack_precision"],
        channels_last=cfg["channels_last"],
        device=device.type,
        seed=0,
        out=str(out),
    )


def attacks(cfg: dict):
    from robustbench_local.attacks import AttackSpec
    from robustbench_local.threat import ThreatModel

    fgsm = AttackSpec("fgsm", ThreatModel("linf", EPS, space="pixel"))
    pgd = AttackSpec(
        "pgd", ThreatModel("linf", EPS, step=PGD_STEP, space="pixel"), k=cfg["pgd_k"], restarts=cfg["pgd_restarts"]
    )
    aa = AttackSpec(cfg["aa"], ThreatModel("linf", EPS, space="pixel"), cfg["aa_options"])
    return fgsm, pgd, aa


def figure(rec: dict, robust: bool = True) -> dict:
    """One accuracy with its n, interval, minutes and threat (eps in both spaces)."""
    m = rec["metrics"]
    acc, ci = (m["robust_acc"], m["robust_ci95"]) if robust else (m["clean_acc"], m["clean_ci95"])
    a = rec["attack"]
    out = {"acc": acc, "n": m["n"], "ci95": list(ci), "minutes": (m["seconds"] if robust else m["clean_seconds"]) / 60}
    if robust:
        out.update(
            {
                "attack": a.get("label", a.get("name")),
                "options": {k: v for k, v in a.items() if k in ("k", "restarts", "version", "targets", "n_queries")},
                "eps_pixel": a.get("eps_pixel"),
                "eps_pixel_255": a.get("eps_pixel_255"),
                "eps_normalized": a.get("eps_normalized"),
                "step_pixel": a.get("step_pixel"),
            }
        )
    return out


def run(
    quick: bool = False, out_dir=None, device: str = "auto", epochs: int | None = None, n: int | None = None
) -> dict:
    from robustbench_local.checkpoint import load_checkpoint
    from robustbench_local.evaluation import evaluate
    from robustbench_local.train import fit

    cfg = dict(QUICK if quick else FULL)
    if n is not None:
        cfg["n"] = n
    dev = resolve_device(device, quick)
    if dev.type == "cpu":  # the CPU benchmarks' convention; a GPU run keeps torch's own thread count
        common.setup_threads()
    report = common.Report(NAME, quick, settings={**cfg, "device": dev.type, "threads": torch.get_num_threads()})
    bundle = common.cifar10()
    fgsm, pgd, aa = attacks(cfg)
    work = common.scratch("gpu-fast-at-")
    say = None if quick else (lambda line: print(line, flush=True))
    t_start = time.perf_counter()
    try:
        spec = train_spec(cfg, dev, work / "run", epochs)
        print(
            f"gpu_fast_at: {spec.epochs} epochs of {cfg['arch']} FGSM-RS (eps 8/255, step 10/255) on "
            f"{describe_device(dev)['name']}",
            flush=True,
        )
        t0 = time.perf_counter()
        res = fit(spec, store=None, quiet=quick, progress=False)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        train_minutes = (time.perf_counter() - t0) / 60
        meta = load_checkpoint(res.best_path)[1]
        evals = {}
        t1 = time.perf_counter()
        whole = evaluate(
            str(res.best_path),
            [fgsm],
            bundle,
            n=cfg["n_clean"],
            seed=0,
            batch_size=cfg["eval_batch"],
            device=dev,
            run_checks=False,
            log=say,
        )
        evals["clean_fgsm_wall_minutes"] = (time.perf_counter() - t1) / 60
        t1 = time.perf_counter()
        sub = evaluate(
            str(res.best_path), [pgd, aa], bundle, n=cfg["n"], seed=0, batch_size=cfg["eval_batch"], device=dev, log=say
        )
        evals["pgd_aa_wall_minutes"] = (time.perf_counter() - t1) / 60
        if not quick:
            shutil.copyfile(res.best_path, common.TMP / "gpu-fast-at-best.pth")  # git-ignored; for a later look
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total_minutes = (time.perf_counter() - t_start) / 60
    by_name = {r["attack"]["name"]: r for r in sub}
    results = {
        "clean": figure(whole[0], robust=False),
        "fgsm": figure(whole[0]),
        "clean_subset": figure(by_name["pgd"], robust=False),
        "pgd": figure(by_name["pgd"]),
        "autoattack": figure(by_name[cfg["aa"]]),
        "worst_case": figure(by_name["worst-case"]),
    }
    checks = [c for c in by_name["pgd"].get("checks", []) if not c.get("ok", True)]
    history = res.history
    ips = [r["images_per_s"] for r in history if r.get("images_per_s")]
    training = {
        "minutes": train_minutes,
        "epochs_planned": spec.epochs,
        "epochs_run": len(history),
        "stopped": res.stopped,
        "best_epoch": res.best_epoch,
        "seconds": res.seconds,
        "images_per_s_median": common.stats(ips)["median"] if ips else None,
        "val_robust_acc_best": res.metrics.get("val_robust_acc"),
        "fit_test_acc": res.metrics["test_acc"],
        "threat": meta.get("threat"),
        "history": history,
    }
    p, rb = PUBLISHED["paper"], PUBLISHED["robustbench_Wong2020Fast"]
    comparison = [
        {
            "figure": "clean accuracy",
            "ours": results["clean"]["acc"],
            "ours_n": results["clean"]["n"],
            "published": rb["clean_acc"],
            "source": "RobustBench Wong2020Fast",
        },
        {
            "figure": "AutoAttack accuracy",
            "ours": results["autoattack"]["acc"],
            "ours_n": results["autoattack"]["n"],
            "published": rb["autoattack_acc"],
            "source": "RobustBench Wong2020Fast",
        },
        {
            "figure": "PGD-50-10 accuracy",
            "ours": results["pgd"]["acc"],
            "ours_n": results["pgd"]["n"],
            "published": p["pgd_50_10_acc"],
            "source": "Wong et al. 2020 (repository README)",
        },
        {
            "figure": "training minutes",
            "ours": train_minutes,
            "ours_n": None,
            "published": p["train_minutes"],
            "source": "Wong et al. 2020",
        },
    ]
    targets = [
        common.target_line(
            "minutes for the whole run (training and every evaluation) on one GPU",
            total_minutes,
            "<=",
            TARGET_MINUTES,
            unit=" min",
        )
    ]
    rows = [
        [
            "ours" + (" (quick)" if quick else ""),
            spec.epochs,
            len(history),
            train_minutes,
            results["clean"]["acc"],
            results["pgd"]["acc"],
            results["autoattack"]["acc"],
            total_minutes,
        ],
        [
            "Wong et al. 2020 / RobustBench",
            p["epochs"],
            p["epochs"],
            float(p["train_minutes"]),
            rb["clean_acc"],
            p["pgd_50_10_acc"],
            rb["autoattack_acc"],
            None,
        ],
    ]
    common.print_table(
        f"FGSM-RS PreAct-ResNet-18, L-inf 8/255 (pixels), on {describe_device(dev)['name']}",
        [
            "run",
            "epochs",
            "epochs run",
            "train min",
            "clean",
            f"PGD-{cfg['pgd_k']}-{cfg['pgd_restarts']}",
            "AutoAttack",
            "total min",
        ],
        rows,
        caption=f"clean on {results['clean']['n']} test images, PGD and AutoAttack on {results['pgd']['n']}; "
        "published: clean and AutoAttack from RobustBench (Wong2020Fast), PGD-50-10 and minutes "
        "from the paper's repository.",
    )
    common.print_targets(targets)
    machine = {**common.machine(), "device": dev.type}
    if dev.type == "cuda":
        machine["gpu"] = describe_device(dev)["name"]
    report.data.update(
        {
            "machine": machine,
            "device": describe_device(dev),
            "spec": spec.to_dict(),
            "training": training,
            "evaluation": {
                **results,
                "points": f"select_points(cifar10 test, n, seed=0); clean and FGSM on {results['clean']['n']}",
                **evals,
                "failed_checks": checks,
            },
            "minutes": {
                "training": train_minutes,
                "clean": results["clean"]["minutes"],
                "fgsm": results["fgsm"]["minutes"],
                "pgd": results["pgd"]["minutes"],
                "autoattack": results["autoattack"]["minutes"],
                "total": total_minutes,
            },
            "published": PUBLISHED,
            "comparison": comparison,
            "targets": targets,
            "differences": [
                "data: the JPEG q75 copy of CIFAR-10, which lowers accuracy",
                "49,000 training images; best.pth chosen by PGD-10 on 1,000 held-out ones (Wong et al.: 50,000, "
                "early stopping on one training batch)",
                "schedule: fit()'s one-cycle, lr/25 -> 0.2 at 30% of the steps -> 0 (Wong et al.: 0 -> 0.2 at 50% -> 0)",
                "precision: torch autocast (bf16 where supported) for the training step and its FGSM step "
                "(Wong et al.: apex O2 fp16)",
                "n: AutoAttack and PGD on the points given above (RobustBench: all 10,000)",
            ],
        }
    )
    return report.save(out_dir)


def main(argv=None) -> None:
    from robustbench_local.errors import RobustError

    p = common.arg_parser(__doc__, "CPU smoke size: a narrow net, 256 images, 1 epoch, 32 points (measures nothing)")
    p.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cuda", "cpu"),
        help="auto: cuda when visible; the full run refuses the CPU unless --device cpu",
    )
    p.add_argument("--epochs", type=int, default=None, help="epochs instead of Wong et al.'s 15")
    p.add_argument("--n", type=int, default=None, help="test points for PGD and AutoAttack (default 1000)")
    a = p.parse_args(argv)
    try:
        run(a.quick, a.out, a.device, a.epochs, a.n)
    except RobustError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

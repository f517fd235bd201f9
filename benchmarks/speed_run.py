"""Benchmark: the CIFAR-10 speed run's training recipe against PGD-10 adversarial
training of the same model, images/s side by side, with the robustness each reached;
and AutoAttack's cost per 100 points on the speed-run model, pyautoattack's standard
version against the native cascade (aa-native) on the same points.

Both recipes come from experiments/leaderboard_cifar10.toml: the speed run is the cell
fast-fgsm-rs (FGSM-RS, Wong et al. 2020), PGD-10 AT the cell fast-pgd10-at (the same
model, optimizer and schedule; PGD-10 with step 2/255, Madry et al.'s attack at Rice et
al.'s setting). Throughput: both train by fit() on the same SUBSET training images, in
turn (speed run, PGD-10, speed run, PGD-10), 2 epochs each of which the first is a
warm-up; the figure is fit()'s own training images/s (validation excluded).

Robustness and AutoAttack's cost are read from the experiment's records (clean accuracy
and PGD-50x2 on 10,000 test images, AutoAttack on 1,000, with n and 95% intervals); a cell not yet
trained or evaluated is reported as missing, never guessed."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks import common

NAME = "speed_run"
EXPERIMENT = common.ROOT / "experiments" / "leaderboard_cifar10.toml"
SPEED, PGD = "fast-fgsm-rs", "fast-pgd10-at"
FULL = {"subset": 2048, "rounds": 2, "epochs": 2}
QUICK = {"subset": 64, "rounds": 1, "epochs": 1, "batch_size": 32, "widths": "16,32,32"}  # measures nothing


def recipes(cfg: dict) -> dict:
    """The two cells' TrainSpecs, cut to the benchmark's subset (validation kept small:
    it is outside the timed epoch)."""
    from robustbench_local.experiment import load_experiment

    exp = load_experiment(EXPERIMENT, device="cpu")
    cells = {c.name: c.spec for c in exp.cells}
    out = {}
    for name in (SPEED, PGD):
        spec = cells[name]
        adv_kwargs = {**spec.adv_kwargs, "val_n": 16, "val_k": 1}
        changes = {
            "data": spec.data.__class__(**{**spec.data.__dict__, "subset": cfg["subset"]}),
            "adv_kwargs": adv_kwargs,
            "device": "cpu",
            "epochs": cfg["epochs"],
        }
        if "batch_size" in cfg:
            changes["batch_size"] = cfg["batch_size"]
        if "widths" in cfg:
            changes["model"] = spec.model.__class__(
                spec.model.arch, {**spec.model.kwargs, "widths": cfg["widths"]}, spec.model.normalize
            )
        out[name] = spec.replace(**changes)
    return out


def throughput(spec) -> float:
    """fit()'s training images/s in the last epoch (with 2 epochs, the first is a warm-up)."""
    from robustbench_local.train import fit

    work = common.scratch("speed-run-")
    try:
        res = fit(spec.replace(out=str(work / "run")), store=None, quiet=True, progress=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return res.history[-1]["images_per_s"]


def recorded(cell: str) -> dict:
    """Clean and AutoAttack accuracy, training minutes and AutoAttack seconds per 100
    points of one cell, from the experiment's records (None where missing)."""
    from robustbench_local.experiment import load_experiment
    from robustbench_local.results import ResultsStore

    exp = load_experiment(EXPERIMENT, device="cpu")
    records = ResultsStore(exp.results).load(skip_bad=True) if (exp.results / "records").is_dir() else []
    evals = [r for r in records if r.get("kind") == "eval" and (r.get("experiment") or {}).get("cell") == cell]
    shas = {r["checkpoint"].get("sha256") for r in evals}
    train = [r for r in records if r.get("kind") == "train" and (r.get("checkpoint") or {}).get("sha256") in shas]
    out: dict = {"cell": cell}
    if train:  # training and per-epoch validation, as the experiment's budget counts them
        out["train_minutes"] = train[-1]["seconds"]["total"] / 60
    for rec in evals:
        a, m = rec["attack"], rec["metrics"]
        key = {"autoattack": "autoattack", "aa-native": "aa_native", "pgd": "pgd50"}.get(a.get("name"))
        if key is None:
            continue
        out[key] = {
            "acc": m["robust_acc"],
            "n": m["n"],
            "ci95": m["robust_ci95"],
            "seconds": m["seconds"],
            "attacked": m["attacked"],
            "s_per_100_points": 100 * m["seconds"] / m["n"],
        }
        if key == "pgd50":
            out["clean"] = {"acc": m["clean_acc"], "n": m["n"], "ci95": m["clean_ci95"]}
    return out


def run(quick: bool = False, out_dir=None) -> dict:
    cfg = dict(QUICK if quick else FULL)
    common.setup_threads()
    report = common.Report(
        NAME,
        quick,
        settings={**cfg, "experiment": str(EXPERIMENT.relative_to(common.ROOT)), "threads": torch.get_num_threads()},
    )
    specs = recipes(cfg)
    ips: dict[str, list[float]] = {SPEED: [], PGD: []}
    for _ in range(cfg["rounds"]):
        for name in (SPEED, PGD):
            ips[name].append(throughput(specs[name]))
    stats = {name: common.stats(v) for name, v in ips.items()}
    speedup = common.ratio(stats[SPEED], stats[PGD])
    reached = {name: recorded(name) for name in (SPEED, PGD)}
    aa = reached[SPEED].get("autoattack")
    native = reached[SPEED].get("aa_native")
    aa_ratio = aa["seconds"] / native["seconds"] if aa and native else None

    def acc(d: dict | None):
        return (
            None
            if d is None
            else f"{100 * d['acc']:.1f}% [{100 * d['ci95'][0]:.1f}, {100 * d['ci95'][1]:.1f}] n={d['n']}"
        )

    common.print_table(
        "training throughput on this machine (fit(), images/s, median of the timed epochs)",
        ["recipe", "images/s", "ratio", "train min (full run)", "clean", "PGD-50x2", "AutoAttack"],
        [
            [
                name,
                stats[name]["median"],
                stats[name]["median"] / stats[PGD]["median"],
                reached[name].get("train_minutes"),
                acc(reached[name].get("clean")),
                acc(reached[name].get("pgd50")),
                acc(reached[name].get("autoattack")),
            ]
            for name in (SPEED, PGD)
        ],
        caption=f"{cfg['subset']} training images, {cfg['rounds']} round(s) in turn; accuracies from the "
        "experiment's records (missing: not yet run)",
    )
    if aa:
        common.print_table(
            "AutoAttack (standard) on the speed-run model, seconds per 100 test points",
            ["implementation", "s / 100 points", "points attacked", "robust"],
            [["pyautoattack", aa["s_per_100_points"], aa["attacked"], acc(aa)]]
            + ([["aa-native", native["s_per_100_points"], native["attacked"], acc(native)]] if native else []),
            caption=None if aa_ratio is None else f"pyautoattack / native time: {aa_ratio:.2f}x",
        )
    report.data.update(
        {
            "images_per_s": ips,
            "stats": stats,
            "speedup_vs_pgd10": speedup,
            "reached": reached,
            "autoattack_time_ratio_reference_over_native": aa_ratio,
        }
    )
    return report.save(out_dir)


if __name__ == "__main__":
    common.script_main(__doc__, run)

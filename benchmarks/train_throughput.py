"""Benchmark 3, training throughput: our fit() against a plain seed-style loop on the
same model, the same images and the same optimizer settings.

- ours:  fit() with the defaults (whole split as a uint8 tensor on the device,
         batched augmentation, channels_last (NHWC) layout, parameter gradients
         off during attack steps, no per-batch host sync); the epoch time is fit's
         own training time (validation excluded).
- plain: torchvision ImageFolder over the same images as JPEG files, PIL transforms
         (RandomCrop(32, 4), RandomHorizontalFlip, ToTensor, Normalize(0.5, 0.5)),
         a DataLoader with 2 worker processes (2 cores here), NCHW, loss.item() and
         accuracy .item() per batch; for PGD-AT the attack keeps parameter gradients
         on and takes its input gradient with loss.backward().

The two run interleaved: one plain epoch after each fit() epoch (fit's on_epoch_end
hook), so load from other users falls on both alike; the first epoch of each is a
warm-up and is not counted. Targets: standard >= 2x, PGD-10 AT >= 1.5x faster."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.nn.functional as F

from benchmarks import common

NAME = "train_throughput"
FULL = {
    "standard": {"subset": 5000, "epochs": 3},
    "pgd": {"subset": 2000, "epochs": 2, "k": 10},
    "batch_size": 128,
    "num_workers": 2,
}
QUICK = {
    "standard": {"subset": 128, "epochs": 1},
    "pgd": {"subset": 64, "epochs": 1, "k": 1},
    "batch_size": 32,
    "num_workers": 2,
}
MEMORY_CASES = ("ours_standard", "plain_standard", "ours_pgd", "plain_pgd")
WORKER_CASES = ("plain_standard", "plain_pgd")  # DataLoader worker processes
EPS, ETA = 0.0313, 0.002  # normalized space (mean = std = 0.5): the seeds' PGD-AT settings


def train_spec(cfg: dict, method: str, epochs: int, quick: bool, out: str):
    from robustbench_local.specs import DataSpec, TrainSpec

    part = cfg[method]
    data = DataSpec(subset=part["subset"], val_fraction=0.002 if quick else 0.1)
    extra = {}
    if method == "pgd":
        # robust validation is outside the timed epoch; a small one keeps the run short
        extra = {"adv": "pgd", "adv_kwargs": {"eps": EPS, "eta": ETA, "k": part["k"], "val_n": 32, "val_k": 1}}
    return TrainSpec(data=data, epochs=epochs, batch_size=cfg["batch_size"], device="cpu", out=out, seed=0, **extra)


def plain_setup(cfg: dict, method: str, bundle):
    """The seed-style pieces: the same network (raw, without the Normalize layer: the
    transforms normalize), same initial weights, same optimizer settings, and an
    ImageFolder over the JPEGs of exactly the images fit() trains on."""
    from torchvision.datasets import ImageFolder

    from robustbench_local.models import build_model

    part = cfg[method]
    index = bundle.train.subset(part["subset"], seed=0).index.tolist()  # what DataSpec(subset, split_seed=0) takes
    tree = common.jpeg_tree(index)
    dataset = ImageFolder(str(tree / "train"), transform=common.seed_transforms())
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=cfg["batch_size"], shuffle=True, num_workers=cfg["num_workers"]
    )
    torch.manual_seed(0)
    net = build_model("cnn", num_classes=10, input_shape=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3).net
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    return net, opt, loader, len(dataset)


def plain_epoch(net, opt, loader, k: int = 0) -> dict:
    """One seed-style epoch; with k > 0, PGD-k AT in normalized space ([-1, 1])."""
    t0 = time.perf_counter()
    net.train()
    seen, correct, loss_sum = 0, 0, 0.0
    for x, y in loader:
        if k:
            net.eval()
            xa = (x + torch.empty_like(x).uniform_(-EPS, EPS)).clamp(-1, 1)
            for _ in range(k):
                xa.requires_grad_(True)
                loss = F.cross_entropy(net(xa), y)
                loss.backward()  # parameter gradients are computed too (zeroed before the update)
                xa = xa.detach() + ETA * xa.grad.sign()
                xa = torch.min(torch.max(xa, x - EPS), x + EPS).clamp(-1, 1)
            net.train()
            x = xa
        out = net(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_sum += loss.item() * len(y)
        correct += (out.argmax(1) == y).sum().item()
        seen += len(y)
    return {"seconds": time.perf_counter() - t0, "seen": seen, "loss": loss_sum / seen, "acc": correct / seen}


def measure(cfg: dict, method: str, quick: bool, bundle) -> dict:
    """fit() epochs with a plain epoch after each; the first of each is a warm-up."""
    from robustbench_local.train import fit

    epochs = cfg[method]["epochs"] + 1
    net, opt, loader, n_plain = plain_setup(cfg, method, bundle)
    plain: list[dict] = []
    k = cfg[method].get("k", 0)
    out = common.scratch(f"fit-{method}-")
    try:
        res = fit(
            train_spec(cfg, method, epochs, quick, str(out / "run")),
            store=None,
            quiet=True,
            progress=False,
            on_epoch_end=lambda row: plain.append(plain_epoch(net, opt, loader, k)),
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)
    ours_s = [cfg[method]["subset"] / r["images_per_s"] for r in res.history][1:]
    plain_s = [p["seconds"] for p in plain][1:]
    ours, pl = common.stats(ours_s), common.stats(plain_s)
    n = cfg[method]["subset"]
    return {
        "images": n,
        "plain_images": n_plain,
        "epochs_timed": len(ours_s),
        "warmup_epochs": 1,
        "ours": {
            **ours,
            "images_per_s": n / ours["median"],
            "attack_seconds": [r["attack_seconds"] for r in res.history][1:],
            "train_acc": [r["train_acc"] for r in res.history],
        },
        "plain": {**pl, "images_per_s": n_plain / pl["median"], "train_acc": [p["acc"] for p in plain]},
        "speedup": pl["median"] / ours["median"],
    }


def prepare(quick: bool) -> dict:
    common.setup_threads()
    return {"cfg": QUICK if quick else FULL, "quick": quick, "bundle": common.cifar10()}


def cases(ctx: dict) -> dict:
    """One epoch of each, for the memory benchmark (ours: a whole one-epoch fit() run)."""
    from robustbench_local.train import fit

    cfg, quick, bundle = ctx["cfg"], ctx["quick"], ctx["bundle"]

    def ours(method):
        def f():
            out = common.scratch("mem-")
            try:
                fit(train_spec(cfg, method, 1, quick, str(out / "run")), store=None, quiet=True, progress=False)
            finally:
                shutil.rmtree(out, ignore_errors=True)

        return f

    def plain(method):
        net, opt, loader, _ = plain_setup(cfg, method, bundle)
        return lambda: plain_epoch(net, opt, loader, cfg[method].get("k", 0))

    return {
        "ours_standard": ours("standard"),
        "plain_standard": plain("standard"),
        "ours_pgd": ours("pgd"),
        "plain_pgd": plain("pgd"),
    }


def run(quick: bool = False, out_dir=None) -> dict:
    ctx = prepare(quick)
    cfg = ctx["cfg"]
    report = common.Report(
        NAME,
        quick,
        settings={
            **cfg,
            "threads": torch.get_num_threads(),
            "model": "cnn (default maps 16,32,64), seed 0 initial weights",
            "optimizer": "SGD lr 0.05, momentum 0.9, nesterov, weight decay 5e-4 (ours: cosine schedule per step)",
            "pgd_at": f"linf eps {EPS} normalized, eta {ETA}, random start, attack in eval-mode BN (both)",
            "data": "the same CIFAR-10 (JPEG copy) train images: first `subset` of the seeded permutation fit() uses",
            "plain_loader": f"ImageFolder + PIL transforms, DataLoader num_workers={cfg['num_workers']} "
            "(2 cores here), workers restarted each epoch (persistent_workers=False, the default)",
            "timing": "one plain epoch after each fit() epoch; first epoch of each is warm-up; medians of the rest",
        },
    )
    results, rows = {}, []
    for method in ("standard", "pgd"):
        r = measure(cfg, method, quick, ctx["bundle"])
        results[method] = r
        label = "standard" if method == "standard" else f"PGD-{cfg['pgd']['k']} AT"
        for who in ("ours", "plain"):
            t = r[who]
            rows.append(
                [
                    f"{label}: {'ours fit()' if who == 'ours' else 'plain loop'}",
                    r["images"],
                    t["median"],
                    t["min"],
                    t["max"],
                    t["images_per_s"],
                    r["speedup"] if who == "ours" else 1.0,
                ]
            )
    common.print_table(
        f"training epochs, batch {cfg['batch_size']}, {torch.get_num_threads()} threads",
        ["case", "images", "median s/epoch", "min", "max", "img/s", "speedup vs plain"],
        rows,
    )
    targets = [
        common.target_line("standard epoch: plain / ours", results["standard"]["speedup"], ">=", 2.0),
        common.target_line(f"PGD-{cfg['pgd']['k']} AT epoch: plain / ours", results["pgd"]["speedup"], ">=", 1.5),
    ]
    common.print_targets(targets)
    report.data.update({"results": results, "targets": targets})
    return report.save(out_dir)


def main(argv=None) -> None:
    common.script_main(__doc__, run, argv, quick_help="tiny sizes, one timed epoch (a smoke run, not a measurement)")


if __name__ == "__main__":
    main()

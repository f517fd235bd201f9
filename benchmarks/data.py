"""Benchmark 4, data: CIFAR-10 load time from the decode cache, and augmentation
throughput.

- load: ``load_dataset("cifar10")`` with a warm cache (the decoded uint8 tensors in
  ~/.cache/robustbench_local or $ROBUST_CACHE; the first load ever decodes the 60,000
  JPEGs once and is not what is timed here).
- augmentation: ours, ``build_augment("basic")`` (random crop with 4 px padding +
  horizontal flip) on a device-resident batch, including the uint8 -> float step the
  TensorLoader does; against torchvision's PIL transforms per image (RandomCrop(32, 4),
  RandomHorizontalFlip, ToTensor, Normalize(0.5, 0.5)) on already-decoded PIL images,
  and the whole per-image path a seed loop pays (JPEG decode from disk + transforms,
  ImageFolder.__getitem__), all in this process.
- a full pass over the same images: our TensorLoader (with augmentation) against a
  DataLoader over ImageFolder with 2 workers."""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks import common

NAME = "data"
FULL = {"n": 5000, "batch_size": 512, "repeats": 5, "load_repeats": 3, "num_workers": 2}
QUICK = {"n": 64, "batch_size": 32, "repeats": 1, "load_repeats": 1, "num_workers": 2}
MEMORY_CASES = ("load_cifar10", "ours_augment", "pil_transforms", "tensor_loader_pass", "dataloader_pass")
WORKER_CASES = ("dataloader_pass",)  # DataLoader worker processes


def prepare(quick: bool) -> dict:
    from PIL import Image
    from torchvision.datasets import ImageFolder

    cfg = QUICK if quick else FULL
    common.setup_threads()
    bundle = common.cifar10()
    sub = bundle.train.subset(cfg["n"], seed=0)
    tree = common.jpeg_tree(sub.index.tolist())
    pil = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in sub.x]
    return {
        "cfg": cfg,
        "bundle": bundle,
        "sub": sub,
        "tree": tree,
        "pil": pil,
        "folder": ImageFolder(str(tree / "train"), transform=common.seed_transforms()),
    }


def cases(ctx: dict) -> dict:
    from robustbench_local.data import TensorLoader, build_augment

    cfg, bundle, sub = ctx["cfg"], ctx["bundle"], ctx["sub"]
    augment = build_augment("basic", bundle.info)
    tf = common.seed_transforms()
    xs = sub.x  # uint8 (N, C, H, W), resident
    bs = cfg["batch_size"]

    def load():
        return common.cifar10()

    def ours_augment():
        for i in range(0, len(xs), bs):
            augment(xs[i : i + bs].float().div_(255))

    def pil_transforms():
        for img in ctx["pil"]:
            tf(img)

    def folder_getitem():
        folder = ctx["folder"]
        for i in range(len(folder)):
            folder[i]

    def tensor_loader_pass():
        for _ in TensorLoader(sub, bs, device="cpu", shuffle=True, augment=augment):
            pass

    def dataloader_pass():
        loader = torch.utils.data.DataLoader(ctx["folder"], batch_size=bs, shuffle=True, num_workers=cfg["num_workers"])
        for _ in loader:
            pass

    return {
        "load_cifar10": load,
        "ours_augment": ours_augment,
        "pil_transforms": pil_transforms,
        "imagefolder_getitem": folder_getitem,
        "tensor_loader_pass": tensor_loader_pass,
        "dataloader_pass": dataloader_pass,
    }


def run(quick: bool = False, out_dir=None) -> dict:
    ctx = prepare(quick)
    cfg, n = ctx["cfg"], len(ctx["sub"])
    report = common.Report(
        NAME,
        quick,
        settings={
            **cfg,
            "threads": torch.get_num_threads(),
            "images": f"{n} CIFAR-10 (JPEG copy) train images, 32x32 RGB",
            "ours_augment": "build_augment('basic'): random_crop(pad=4) + hflip(p=0.5), batched, incl. uint8->float",
            "pil": "torchvision RandomCrop(32, 4), RandomHorizontalFlip, ToTensor, Normalize(0.5, 0.5) per PIL image",
            "dataloader": f"ImageFolder + the PIL transforms, DataLoader num_workers={cfg['num_workers']}, "
            f"batch {cfg['batch_size']}",
        },
    )
    fns = cases(ctx)
    load = common.time_cases({"load_cifar10": fns.pop("load_cifar10")}, cfg["load_repeats"])["load_cifar10"]
    times = common.time_cases(fns, cfg["repeats"])
    b = ctx["bundle"]
    n_all = len(b.train) + len(b.val) + len(b.test)
    ours = times["ours_augment"]
    rows = [
        [
            "load_dataset('cifar10') from the cache",
            n_all,
            load["median"],
            load["min"],
            load["max"],
            n_all / load["median"],
            None,
        ]
    ]
    labels = {
        "ours_augment": "ours: build_augment('basic'), batched",
        "pil_transforms": "torchvision PIL transforms",
        "imagefolder_getitem": "ImageFolder[i]: JPEG decode + PIL transforms",
        "tensor_loader_pass": "ours: TensorLoader pass (+ augment)",
        "dataloader_pass": f"DataLoader(ImageFolder), {cfg['num_workers']} workers",
    }
    table = {"load_cifar10": {**load, "images": n_all, "images_per_s": n_all / load["median"]}}
    for name, t in times.items():
        ref = ours if name in ("pil_transforms", "imagefolder_getitem", "ours_augment") else times["tensor_loader_pass"]
        table[name] = {**t, "images": n, "images_per_s": n / t["median"], "slower_than_ours": common.ratio(t, ref)}
        rows.append([labels[name], n, t["median"], t["min"], t["max"], n / t["median"], common.ratio(t, ref)])
    common.print_table(
        f"data: load and augmentation, {torch.get_num_threads()} threads",
        ["case", "images", "median s", "min s", "max s", "img/s", "x ours"],
        rows,
        caption="x ours: median time over ours (augment rows: over build_augment; "
        "pass rows: over the TensorLoader pass)",
    )
    report.data.update({"cases": table})
    return report.save(out_dir)


def main(argv=None) -> None:
    common.script_main(__doc__, run, argv)


if __name__ == "__main__":
    main()

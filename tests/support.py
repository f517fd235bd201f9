"""Shared, cached test assets: real CIFAR-10 subsets and small models, each trained
once per test session (a few seconds on 2 CPU cores). conftest.py wraps the common
ones as fixtures."""

from __future__ import annotations

from functools import cache

import torch
import torch.nn.functional as F


@cache
def cifar10():
    """All of CIFAR-10 from the offline copy (never downloaded); conftest's ``cifar10``
    fixture is this same object."""
    from robustbench_local.data import load_dataset

    return load_dataset("cifar10", download=False)


@cache
def trained_cnn(epochs: int = 6, n_train: int = 4000, seed: int = 0):
    """The seed CNN trained plainly on a real CIFAR-10 subset; returns (model, meta).
    Clean test accuracy lands around 40-45%, plenty for attack tests."""
    from robustbench_local.models import build_model

    ds = cifar10()
    torch.manual_seed(seed)
    model = build_model("cnn", num_classes=10, input_shape=ds.info.input_shape, mean=(0.5,) * 3, std=(0.5,) * 3)
    sub = ds.train.subset(n_train, seed=seed)
    x, y = sub.x.float() / 255, sub.y
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y))
        for i in range(0, len(y), 128):
            b = perm[i : i + 128]
            loss = F.cross_entropy(model(x[b]), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    meta = {
        "arch": "cnn",
        "arch_kwargs": {},
        "num_classes": 10,
        "input_shape": list(ds.info.input_shape),
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "normalization": "seed",
        "dataset": {"name": "cifar10"},
        "classes": list(ds.info.classes),
        "method": "standard",
        "adv": "none",
    }
    return model, meta


@cache
def eval_points(n: int = 400, seed: int = 0):
    """n fixed test images (float [0,1]) and labels."""
    sub = cifar10().test.subset(n, seed=seed)
    return sub.x.float() / 255, sub.y


def correct_points(model, n: int = 400):
    x, y = eval_points(n)
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    return x[ok], y[ok]


def image_tree(root, bundle, train_per_class: int, test_per_class: int) -> str:
    """Writes the first images of each class of ``bundle`` (train and test) as PNGs in an
    ImageFolder tree under ``root``; returns the 'imagefolder:PATH' dataset name."""
    from PIL import Image

    for split, name, per_class in ((bundle.train, "train", train_per_class), (bundle.test, "test", test_per_class)):
        for label, cls in enumerate(bundle.info.classes):
            folder = root / name / cls
            folder.mkdir(parents=True)
            for i in (split.y == label).nonzero().flatten()[:per_class].tolist():
                Image.fromarray(split.x[i].permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    return f"imagefolder:{root}"


# A two-attack experiment file on a tiny ImageFolder tree ({tree}: its imagefolder:PATH); cells come after it.
TINY_EXPERIMENT = """\
name = "tiny"
runs = "out/runs"
results = "out/results"
log = "out/tiny.log"

[data]
dataset = "{tree}"
val_fraction = 0.1

[train]
epochs = 1
batch_size = 64
device = "cpu"
model = {{ arch = "cnn", kwargs = {{ maps = "8,8,16" }} }}

[eval]
n = 100
checks = false

[[attacks]]
name = "fgsm"

[[attacks]]
name = "pgd"
k = 2
sweep = [0.0157]
"""

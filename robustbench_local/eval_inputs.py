"""What an evaluation takes in: the Target (a model and what is known of it), the
Points (a fixed, recorded subset of one split), and how each is resolved."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .checkpoint import file_sha256, load_checkpoint
from .data import DatasetBundle, Split, load_dataset
from .errors import RobustError
from .values import ValueProblem


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
            "dataset": dataset_name(m),
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


def dataset_name(meta: dict) -> str | None:
    ds = meta.get("dataset")
    if isinstance(ds, dict):
        return ds.get("name")
    return ds


def resolve_target(obj, device: torch.device, name: str | None = None) -> Target:
    """A checkpoint path, a (model, meta) pair or a bare module."""
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
    if not meta or not dataset_name(meta):
        raise RobustError("no data given and the model's metadata names no dataset; pass data")
    dmeta = (meta.get("spec") or {}).get("data") or meta.get("data") or {}  # the training DataSpec
    return load_dataset(
        dataset_name(meta),
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
    classes: tuple[str, ...] = tuple(meta.get("classes", ())) if meta else ()
    dataset = dataset_name(meta or {}) or "tensors"
    if data is None:
        data = model_dataset(meta, data_root)
    if isinstance(data, DatasetBundle):
        classes, dataset = data.info.classes, data.info.name
        data = data.split(split)
    if isinstance(data, Split):
        whole = len(data)
        if n is not None and n > whole:
            raise ValueProblem(("eval", "n"), f"{n} is larger than the {whole} examples of the {split} split")
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

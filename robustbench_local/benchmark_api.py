"""``benchmark()``: RobustBench's ``robustbench.eval.benchmark`` call, run by our
evaluation (AutoAttack through pyautoattack, our data, our records).

Same signature and meaning: ``model`` takes [0,1] pixels, ``eps`` is in pixel units,
the threat models are RobustBench's "Linf" and "L2", the default device is the CPU,
and (clean accuracy, robust accuracy) come back as fractions. Where it differs:

- the points: fewer than the whole test split are our seeded subset (the first
  ``n_examples`` of a permutation seeded by ``seed``, recorded by their indices).
  RobustBench takes the first n of the test split, which in a class-sorted copy (the
  offline CIFAR-10 JPEG copy is one) would all be one class;
- the output: a record in ``results_dir`` (unless it is None) naming ``model_name``,
  instead of RobustBench's leaderboard JSON (``to_disk``);
- ``log_path`` receives our log lines; ``batch_size`` batches the clean pass (AutoAttack
  keeps its own internal batch); the model is evaluated in eval mode, its own mode put
  back afterwards;
- not supported: the corruptions threat models, ``preprocessing`` (ImageNet's resizing:
  give an imagefolder of images at the model's size) and ``aa_state_path``."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .attacks import AttackSpec
from .data import load_dataset
from .errors import RobustError
from .eval_inputs import Target
from .evaluation import evaluate
from .foreign import check_forward, foreign_meta
from .foreign import normalization as N
from .models.normalize import NormalizedModel
from .outputs import ensure_writable_dir, save_record
from .results import ResultsStore
from .runtime import module_mode
from .threat import ThreatModel

THREATS = {"Linf": "linf", "L2": "l2"}
UNSUPPORTED_THREATS = ("corruptions", "corruptions_3d")


def _value(x) -> str:
    """A RobustBench enum (BenchmarkDataset, ThreatModel) or a plain string, as a string."""
    return str(getattr(x, "value", x))


def _threat_norm(threat_model) -> str:
    name = _value(threat_model)
    if name in UNSUPPORTED_THREATS:
        raise RobustError(f"the {name} threat model is not supported yet; benchmark() runs Linf and L2 (AutoAttack)")
    for key, norm in THREATS.items():
        if name.lower() == key.lower():
            return norm
    raise RobustError(f"unknown threat model '{name}'; valid: {', '.join(THREATS)} (RobustBench's names)")


def _dataset_name(dataset) -> str:
    name = _value(dataset)
    if name.lower() == "imagenet":
        raise RobustError(
            "ImageNet is read from a folder of its validation images: pass "
            "dataset='imagefolder:PATH' (one subfolder per class)"
        )
    return name


def benchmark(
    model: nn.Module,
    n_examples: int = 10000,
    dataset="cifar10",
    threat_model="Linf",
    to_disk: bool = False,
    model_name: str | None = None,
    data_dir: str = "./data",
    device: str | torch.device | None = None,
    batch_size: int = 32,
    eps: float | None = None,
    log_path: str | None = None,
    preprocessing=None,
    aa_state_path: str | Path | None = None,
    *,
    results_dir: str | Path | None = "results",
    seed: int = 0,
    version: str = "standard",
) -> tuple[float, float]:
    """Clean and AutoAttack robust accuracy of ``model`` (taking [0,1] pixels) on
    ``n_examples`` test points of ``dataset`` at radius ``eps`` (pixel units) in
    ``threat_model``; see the module docstring for how it mirrors RobustBench's
    benchmark(). ``dataset`` is RobustBench's cifar10/cifar100 or any of ours
    (fashion-mnist, imagefolder:PATH). ``data_dir`` is searched first when it exists.
    ``to_disk`` needs ``model_name``, as in RobustBench; the record is written to
    ``results_dir`` whenever that is not None. ``seed`` chooses the points, ``version``
    the AutoAttack version (standard, plus, rand)."""
    if isinstance(model, Sequence) or isinstance(device, Sequence) and not isinstance(device, str):
        raise RobustError("benchmark() takes one model on one device")
    if not isinstance(model, nn.Module):
        raise RobustError(f"benchmark() takes a torch nn.Module, got {type(model).__name__}")
    norm = _threat_norm(threat_model)
    if eps is None:
        raise RobustError(
            f"eps must be given for the {_value(threat_model)} threat model, in [0,1] pixel units (e.g. eps=8/255)"
        )
    if to_disk and model_name is None:
        raise RobustError("to_disk=True needs model_name: the record names the model")
    if to_disk and results_dir is None:
        raise RobustError("to_disk=True writes the record to results_dir; give a folder, not None")
    if preprocessing is not None:
        raise RobustError(
            "preprocessing is not supported: the images are taken at the dataset's size (for "
            "ImageNet, give an imagefolder of images already at the model's size)"
        )
    if aa_state_path is not None:
        raise RobustError("aa_state_path (resuming AutoAttack) is not supported by benchmark(); leave it None")
    if isinstance(n_examples, bool) or not isinstance(n_examples, int) or n_examples < 1:
        raise RobustError(f"n_examples must be a positive integer, got {n_examples!r}")
    threat = ThreatModel(norm, float(eps), space="pixel")
    spec = AttackSpec("autoattack", threat, version=version)
    if model.training:
        warnings.warn("The given model is *not* in eval mode; benchmark() evaluates it in eval mode.", stacklevel=2)

    data_root = str(data_dir) if data_dir is not None and Path(data_dir).is_dir() else None
    bundle = load_dataset(_dataset_name(dataset), data_root=data_root)
    info = bundle.info
    shape = tuple(info.input_shape)
    none = N.named("none", shape[0], "benchmark(): the model takes [0,1] pixels, as RobustBench's benchmark() has it")
    wrapped = NormalizedModel(model, none.mean, none.std)
    arch = f"module:{type(model).__name__}"
    name = model_name or type(model).__name__
    meta = foreign_meta(arch, {}, info, none, {"route": "benchmark", "model_name": model_name}, data_root, None)
    n = n_examples if n_examples < len(bundle.test) else None  # RobustBench takes all when asked for more

    log = None
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)

        def log(line: str) -> None:
            with open(log_path, "a") as f:
                f.write(line + "\n")

    store = None
    if results_dir is not None:
        store = ResultsStore(results_dir)
        ensure_writable_dir(store.records_dir, "results_dir", shown=store.root)  # before any attack runs
    dev = str(device) if device is not None else "cpu"
    with module_mode(wrapped, train=False):
        check_forward(wrapped, arch, shape, info)
        records = evaluate(
            Target(wrapped, meta, name, data=bundle), [spec], n=n, seed=seed, batch_size=batch_size, device=dev, log=log
        )
    (rec,) = [r for r in records if r["attack"]["name"] == "autoattack"]
    clean, robust = float(rec["metrics"]["clean_acc"]), float(rec["metrics"]["robust_acc"])
    print(f"Clean accuracy: {clean:.2%}")
    print(f"Adversarial accuracy: {robust:.2%}")
    if store is not None:
        save_record(store, rec, "results_dir")
    return clean, robust

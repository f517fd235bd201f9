"""Device choice, seeding and a description of the environment for records."""

from __future__ import annotations

import os
import platform
import random
import subprocess
from contextlib import contextmanager
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .values import Key, ValueProblem

DEVICES = ("auto", "cpu", "cuda", "mps")
EVAL_DEVICE: Key = ("eval", "device")


def resolve_device(name: str = "auto", key: Key = EVAL_DEVICE) -> torch.device:
    """'auto' picks cuda, then mps, then cpu; an explicit choice that is not
    available is an error rather than a silent fallback, a ValueProblem at ``key``
    (training passes ("train", "device"))."""
    if name not in DEVICES and not name.startswith("cuda:"):
        raise ValueProblem(key, f"unknown device '{name}'; valid devices: {', '.join(DEVICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueProblem(key, f"{name} was asked for but no CUDA GPU is visible; use auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueProblem(key, "mps was asked for but MPS is not available; use auto or cpu")
    return torch.device(name)


def resolve_channels_last(value: bool | str, device: torch.device) -> bool:
    # NHWC pays off with cuDNN's tensor-core kernels and with oneDNN on CPU (measured
    # 1.1-1.4x per training step on the zoo's CIFAR nets, 1.8x in bf16: benchmarks/layout.py);
    # MPS is unmeasured, so 'auto' keeps NCHW there
    return device.type in ("cuda", "cpu") if value == "auto" else bool(value)


# CPU flags of native bf16 arithmetic; without one, autocast to bf16 is emulated and slower than fp32
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@cache
def cpu_has_native_bf16() -> bool | None:
    """Whether this CPU computes bf16 natively (Linux: from /proc/cpuinfo); None where it
    cannot be told."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags = {f for line in text.splitlines() if line.startswith("flags") for f in line.split(":", 1)[1].split()}
    return any(f in flags for f in BF16_CPU_FLAGS) if flags else None


@contextmanager
def module_mode(model: torch.nn.Module, train: bool):
    """``model.train(train)`` for the block, then every submodule's own flag back as it
    was: restoring only the top module's flag would push it down onto submodules whose
    modes differed (e.g. a wrapper built in train mode around an eval-mode model)."""
    flags = [(m, m.training) for m in model.modules()]
    model.train(train)
    try:
        yield
    finally:
        for m, was in flags:
            m.training = was


def configure_backends(device: torch.device) -> None:
    """cudnn autotuning pays off for the fixed shapes of image training."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed for one epoch: reseeding at every epoch start makes a run resumed at an
    epoch boundary bit-identical on CPU to one that was never interrupted."""
    return (seed * 1_000_003 + epoch * 7919) % (2**63 - 1)


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def package_versions() -> dict[str, str]:
    import torchvision  # deferred: start-up time (torchvision is slow to import; only records need its version)

    return {
        "robustbench_local": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def environment(device: torch.device | str | None = None, seed: int | None = None) -> dict:
    dev = torch.device(device) if device is not None else None
    info = {
        "versions": package_versions(),
        "device": str(dev) if dev is not None else None,
        "device_name": (
            torch.cuda.get_device_name(dev)
            if dev is not None and dev.type == "cuda"
            else platform.processor() or platform.machine()
        ),
        "threads": torch.get_num_threads(),
        "hostname": platform.node(),
        "seed": seed,
        "git_commit": git_commit(),
    }
    return info


def is_interactive() -> bool:
    return os.isatty(1) and os.environ.get("CI") is None

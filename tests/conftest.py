"""Settings and shared fixtures of the test session, on the real offline data in ../shared/data.

Decoded data goes to a cache folder of the session ($ROBUST_CACHE points there), never to
the user's ~/.cache/robustbench_local: CIFAR-10's JPEG copy is decoded once per session,
and child processes (torchrun, the CLI as a subprocess) inherit the folder. To keep the
decoded data between runs (handy when running one file at a time), set $ROBUST_TEST_CACHE
to a folder of your choice.

Fixtures shared by several modules; a module that needs a different one under the same
name defines its own, which overrides these:
- cifar10, fmnist: the whole datasets (support.cifar10() is the same object);
- model: the seed CNN trained once per session on CIFAR-10 (support.trained_cnn);
- ckpt: a checkpoint of the quicker CNN (2 epochs on 2,000 images);
- tree: imagefolder:PATH of real CIFAR-10 images, 40 train and 20 test per class.
The models are shared objects: a test that changes one works on a copy."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import support
import torch

from robustbench_local.data import DatasetBundle, load_dataset

_made_cache: str | None = None  # the folder this session created (and removes at the end)


def pytest_configure(config: pytest.Config) -> None:
    global _made_cache
    if hasattr(config, "workerinput"):  # a pytest-xdist worker inherits the controller's $ROBUST_CACHE
        # the workers share the cores: one thread each (torch's is set before every test, below;
        # this one reaches the processes a test starts),
        # as two torch processes with a thread per core each slow each other down many times over
        os.environ["OMP_NUM_THREADS"] = "1"
        return
    folder = os.environ.get("ROBUST_TEST_CACHE")
    if not folder:
        folder = _made_cache = tempfile.mkdtemp(prefix="robust-test-cache-")
    os.environ["ROBUST_CACHE"] = folder


@pytest.fixture(autouse=True)
def _one_thread_per_worker(request):
    """Under pytest-xdist each test starts on one thread, whatever the test before it set
    (the benchmarks take theirs on a fixed count)."""
    if hasattr(request.config, "workerinput"):
        torch.set_num_threads(1)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _made_cache is not None:
        shutil.rmtree(_made_cache, ignore_errors=True)


@pytest.fixture(scope="session")
def cifar10() -> DatasetBundle:
    """All of CIFAR-10 (JPEG copy): 45,000 train / 5,000 val / 10,000 test, uint8 on CPU."""
    return support.cifar10()


@pytest.fixture(scope="session")
def fmnist() -> DatasetBundle:
    """All of Fashion-MNIST: 54,000 train / 6,000 val / 10,000 test, uint8 (N, 1, 28, 28)."""
    return load_dataset("fashion-mnist", download=False)


@pytest.fixture(scope="session")
def model():
    """The seed CNN trained on real CIFAR-10 (clean test accuracy about 40-45%), in eval mode."""
    return support.trained_cnn()[0]


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory) -> Path:
    """best.pth of the CNN trained 2 epochs on 2,000 CIFAR-10 images, with its full meta."""
    from robustbench_local.checkpoint import save_checkpoint

    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pth", *support.trained_cnn(epochs=2, n_train=2000))


@pytest.fixture(scope="session")
def tree(tmp_path_factory, cifar10) -> str:
    """imagefolder:PATH of real CIFAR-10 images, 40 train and 20 test per class."""
    return support.image_tree(tmp_path_factory.mktemp("cifar-tiny"), cifar10, 40, 20)

"""Session-wide fixtures on the real offline data in ../shared/data.

The CIFAR-10 JPEG copy is decoded once per machine into the default cache
(~/.cache/robustbench_local, or $ROBUST_CACHE when set): a per-session cache folder
would decode 60,000 JPEGs on every run."""

from __future__ import annotations

import pytest

from robustbench_local.data import DatasetBundle, load_dataset


@pytest.fixture(scope="session")
def cifar10() -> DatasetBundle:
    """All of CIFAR-10 (JPEG copy): 45,000 train / 5,000 val / 10,000 test, uint8 on CPU."""
    return load_dataset("cifar10", download=False)


@pytest.fixture(scope="session")
def fmnist() -> DatasetBundle:
    """All of Fashion-MNIST: 54,000 train / 6,000 val / 10,000 test, uint8 (N, 1, 28, 28)."""
    return load_dataset("fashion-mnist", download=False)

"""robustbench_local: train image classifiers and measure how robust they are.

Public API (imported lazily so that ``import robustbench_local`` stays cheap)::

    from robustbench_local import load_checkpoint, evaluate, ThreatModel, pgd, fgsm
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "load_checkpoint": ("checkpoint", "load_checkpoint"),
    "save_checkpoint": ("checkpoint", "save_checkpoint"),
    "evaluate": ("evaluation", "evaluate"),
    "ThreatModel": ("threat", "ThreatModel"),
    "pgd": ("attacks", "pgd"),
    "fgsm": ("attacks", "fgsm"),
    "autoattack": ("attacks", "autoattack"),
    "load_dataset": ("data", "load_dataset"),
    "build_model": ("models", "build_model"),
    "benchmark": ("benchmark_api", "benchmark"),  # a module named benchmark would shadow the function
}

__all__ = list(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{mod}", __name__), attr)
    raise AttributeError(f"module 'robustbench_local' has no attribute '{name}'")

"""Training methods: each small module registers one method in ``METHODS`` (the
loss for one batch) or one adversarial wrapper in ``ADV_METHODS``. Every module
in this package is imported here, so a new file registers itself. See base.py
for the interface."""

from __future__ import annotations

import importlib
import pkgutil

from ..specs import TrainSpec, register_train_check
from .base import ADV_METHODS, METHODS, Batch, BatchOutput, TrainMethod, ValMetric, make_base_method, no_adversary

for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _mod != "base":
        importlib.import_module(f".{_mod}", __name__)


def build_method(spec: TrainSpec) -> TrainMethod:
    """The callable ``fit`` trains with: the base method with its options, wrapped
    by the adversarial method ``spec.adv`` ('none' returns the base itself)."""
    base = make_base_method(spec.method, spec.method_kwargs)
    return ADV_METHODS.get(spec.adv)(base, spec)


# every TrainSpec built from now on checks its method names and options at once, before
# any data is read (so building a method must stay cheap and free of side effects)
register_train_check(build_method)


__all__ = [
    "ADV_METHODS",
    "METHODS",
    "Batch",
    "BatchOutput",
    "TrainMethod",
    "ValMetric",
    "build_method",
    "make_base_method",
    "no_adversary",
]

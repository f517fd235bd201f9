"""The attack suite. Each attack is one module of this package that registers one
function with ``registry.attack``; every module is imported here, so adding a file is
all it takes (see registry.py for the contract, CONTRIBUTING.md for a worked example).
evaluate(), the experiment runner, the CLI and the tests read the registry."""

from __future__ import annotations

from .base import AttackResult, attack_mode, frozen_params
from .registry import ATTACKS, AttackInfo, Opt, attack, info, load_all, names

load_all()

from .autoattack import autoattack  # noqa: E402
from .fgsm import fgsm  # noqa: E402
from .losses import ce_loss, dlr_loss  # noqa: E402
from .pgd import perturb, pgd, run_pgd  # noqa: E402
from .spec import AttackSpec  # noqa: E402

__all__ = [
    "ATTACKS",
    "AttackInfo",
    "AttackResult",
    "AttackSpec",
    "Opt",
    "attack",
    "attack_mode",
    "frozen_params",
    "info",
    "names",
    "fgsm",
    "pgd",
    "perturb",
    "run_pgd",
    "autoattack",
    "ce_loss",
    "dlr_loss",
]

"""Adapter over the `pyautoattack` package (Croce & Hein 2020): the standard
version (APGD-CE, APGD-T, FAB-T, Square) by default, with the threat model taken
from the same options as every other attack.

AutoAttack measures eps as one number on [0,1] pixels, so a normalized-space eps
is converted with the model's std; that is exact only when every channel has the
same std (true for the default mean = std = 0.5), and refused otherwise."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from ..errors import RobustError
from ..threat import ThreatModel, find_std
from .base import AttackResult, attack_mode, check_inputs

VERSIONS = ("standard", "plus", "rand")


def _import():
    try:
        from pyautoattack import AutoAttack
    except ImportError:
        raise RobustError(
            "AutoAttack needs the pyautoattack package; install it with "
            "`pip install 'robustbench_local[autoattack]'` (or `pip install pyautoattack`)"
        ) from None
    return AutoAttack


def autoattack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    version: str = "standard",
    seed: int = 0,
    batch_size: int = 500,
    state_path: str | Path | None = None,
    std=None,
) -> AttackResult:
    check_inputs(x, y)
    AutoAttack = _import()
    if version not in VERSIONS:
        raise RobustError(f"unknown AutoAttack version '{version}'; valid: {', '.join(VERSIONS)}")
    std_t = find_std(model, x.shape[1]) if std is None else torch.as_tensor(std)
    px = threat.in_space("pixel", std_t)
    with attack_mode(model):
        with torch.no_grad():
            n_cls = model(x[:1]).shape[1]
        if n_cls < 3:
            raise RobustError(f"AutoAttack's DLR and targeted attacks need >= 3 classes; this model has {n_cls}")
        adversary = AutoAttack(
            model, norm={"linf": "Linf", "l2": "L2"}[px.norm], eps=px.eps,
            version=version, device=x.device, seed=seed,
        )
        # the standard version assumes >= 10 classes for its 9 target classes
        adversary.apgd_targeted.n_target_classes = min(adversary.apgd_targeted.n_target_classes, n_cls - 1)
        adversary.fab.n_target_classes = min(adversary.fab.n_target_classes, n_cls - 1)
        logging.getLogger("auto-attack").setLevel(logging.WARNING)
        x_adv, y_adv = adversary.run_standard_evaluation(
            x, y, batch_size=batch_size, state_path=Path(state_path) if state_path else None
        )
    fooled = y_adv.to(y.device) != y
    return AttackResult(x_adv.to(x.device), fooled)

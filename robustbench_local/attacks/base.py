"""Bookkeeping every attack shares (after torchattacks' base): the model runs in
eval mode with parameter gradients off, and both are restored afterwards; the
device comes from the input; the input is never modified."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import RobustError
from ..runtime import module_mode
from ..threat import BALL_NORMS, Ball, ThreatModel, find_std
from . import registry


@dataclass
class AttackResult:
    """x_adv: adversarial pixels (a fooling iterate where one was found, else the
    attack's last iterate); fooled: True where some iterate or restart was
    misclassified; norms (minimal-norm attacks only): per point, the smallest
    perturbation norm in attack space at which an adversarial example was found, 0
    for a point misclassified clean, inf where none was found; fooled is then
    norms <= eps, and x_adv lies in the ball."""

    x_adv: torch.Tensor
    fooled: torch.Tensor
    norms: torch.Tensor | None = None


@contextmanager
def frozen_params(model: nn.Module) -> Iterator[None]:
    """Turns parameter gradients off (the attack only needs input gradients) and
    restores every flag as it was."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, rg in flags:
            p.requires_grad_(rg)


@contextmanager
def attack_mode(model: nn.Module, train_mode: bool = False) -> Iterator[None]:
    """Eval mode (batch norm on running statistics, no dropout) unless
    ``train_mode``; parameter gradients off; both restored in ``finally``."""
    with module_mode(model, train_mode), frozen_params(model):
        yield


def make_ball(model: nn.Module, x: torch.Tensor, threat: ThreatModel, std=None) -> Ball:
    std_t = find_std(model, x.shape[1]) if std is None else torch.as_tensor(std, dtype=torch.float32)
    return Ball(threat, std_t, x.device)


def require_norm(attack: str, norm: str, supported: tuple[str, ...] = BALL_NORMS) -> None:
    """Refuses, before any work, a norm the attack has no geometry for, naming the
    attacks that do measure it."""
    if norm not in supported:
        others = [n for n in registry.names() if norm in registry.info(n).norms]
        hint = f"; {norm} is measured by {', '.join(others)}" if others else ""
        raise RobustError(f"{attack} supports {' and '.join(supported)}, not {norm}{hint}")


def check_inputs(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"attacks take a batch of images (N, C, H, W), got shape {tuple(x.shape)}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{x.shape[0]} images but {y.shape[0]} labels")

"""The optimizer and its learning-rate schedule: parameter groups, SGD / Adam / AdamW
from a TrainSpec, and LRSchedule (warmup, then cosine, onecycle, step, plateau or
constant), whose state saves in a weights_only checkpoint and resumes exactly."""

from __future__ import annotations

import math

import torch
from torch import nn

from .errors import RobustError
from .specs import TrainSpec

STEP_MILESTONES = (0.5, 0.75)  # 'step' schedule: x0.1 at these fractions of the epochs
STEP_GAMMA = 0.1
PLATEAU_PATIENCE = 2  # 'plateau': x0.1 after this many epochs without improvement
PLATEAU_GAMMA = 0.1
ONECYCLE_PEAK = 0.3  # 'onecycle': linear from lr/25 up to lr at 30% of the steps, then linear down to 0
ONECYCLE_START = 1 / 25


class LRSchedule:
    """lr(step) = base_lr * warmup(step) * shape(step) * plateau_scale, set on the
    optimizer before every batch. Its whole state is a few numbers, so it saves in
    a weights_only checkpoint and resumes exactly."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        kind: str,
        base_lr: float,
        epochs: int,
        steps_per_epoch: int,
        warmup_epochs: float = 0.0,
        minimize: bool = False,
    ):
        self.optimizer = optimizer
        self.kind = kind
        self.base_lr = base_lr
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.warmup = round(warmup_epochs * self.steps_per_epoch)
        self.minimize = minimize
        self.step_count = 0
        self.plateau_scale = 1.0
        self.plateau_best: float | None = None
        self.plateau_bad = 0
        self.replan(epochs)

    def replan(self, epochs: int) -> None:
        """End the schedule after ``epochs`` epochs in all (a time budget shortens a run);
        the steps taken so far keep their place."""
        self.epochs = epochs
        self.total = epochs * self.steps_per_epoch
        self.milestones = [max(1, math.floor(f * epochs + 0.5)) * self.steps_per_epoch for f in STEP_MILESTONES]
        self.apply()

    def factor(self, step: int) -> float:
        f = 1.0
        if step < self.warmup:
            f *= (step + 1) / self.warmup
        if self.kind == "cosine":
            q = min(max((step - self.warmup) / max(self.total - self.warmup, 1), 0.0), 1.0)
            f *= 0.5 * (1.0 + math.cos(math.pi * q))
        elif self.kind == "onecycle":
            q = min(step / max(self.total, 1), 1.0)
            if q < ONECYCLE_PEAK:
                f *= ONECYCLE_START + (1.0 - ONECYCLE_START) * q / ONECYCLE_PEAK
            else:
                f *= (1.0 - q) / (1.0 - ONECYCLE_PEAK)
        elif self.kind == "step":
            f *= STEP_GAMMA ** sum(step >= m for m in self.milestones)
        elif self.kind == "plateau":
            f *= self.plateau_scale
        return f

    @property
    def lr(self) -> float:
        return self.base_lr * self.factor(self.step_count)

    def apply(self) -> None:
        lr = self.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)

    def step(self) -> None:
        """After each optimizer step."""
        self.step_count += 1
        self.apply()

    def epoch_end(self, metric: float) -> None:
        """After each epoch's validation; drives 'plateau'."""
        if self.kind != "plateau" or metric is None or math.isnan(metric):
            return
        if self.plateau_best is None or (metric < self.plateau_best if self.minimize else metric > self.plateau_best):
            self.plateau_best, self.plateau_bad = metric, 0
            return
        self.plateau_bad += 1
        if self.plateau_bad > PLATEAU_PATIENCE:
            self.plateau_scale *= PLATEAU_GAMMA
            self.plateau_bad = 0
            self.apply()

    def state_dict(self) -> dict:
        return {
            "step_count": self.step_count,
            "plateau_scale": self.plateau_scale,
            "plateau_best": self.plateau_best,
            "plateau_bad": self.plateau_bad,
        }

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        self.plateau_scale = float(state["plateau_scale"])
        self.plateau_best = state["plateau_best"]
        self.plateau_bad = int(state["plateau_bad"])
        self.apply()


def param_groups(model: nn.Module, spec: TrainSpec) -> list[dict]:
    """The optimizer's parameter groups. A network may ask for its own through an
    ``optimizer_groups()`` method (groups with ``lr_scale`` / ``wd_scale`` factors on
    the run's lr and weight decay; LRSchedule keeps ``lr_scale`` on every step);
    otherwise one group of every parameter."""
    net = getattr(model, "net", model)
    if not hasattr(net, "optimizer_groups"):
        return [{"params": list(model.parameters())}]
    groups = net.optimizer_groups()
    out = []
    for g in groups:
        scale, wd_scale = float(g.get("lr_scale", 1.0)), float(g.get("wd_scale", 1.0))
        out.append(
            {
                "params": list(g["params"]),
                "lr": spec.lr * scale,
                "lr_scale": scale,
                "weight_decay": spec.weight_decay * wd_scale,
            }
        )
    covered = sum(len(g["params"]) for g in out)
    trainable = sum(1 for p in model.parameters() if p.requires_grad)
    if covered != trainable:  # a group hook that drops or repeats parameters is a bug, not a choice
        raise RobustError(
            f"{type(net).__name__}.optimizer_groups() covers {covered} of {trainable} trainable "
            f"parameters; every trainable parameter must be in exactly one group"
        )
    return out


def build_optimizer(spec: TrainSpec, params) -> torch.optim.Optimizer:
    if spec.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov, weight_decay=spec.weight_decay
        )
    if spec.optimizer == "adam":
        return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    return torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)

"""A native AutoAttack-style cascade (Croce & Hein 2020, the standard version's
attacks and settings): APGD-CE, then APGD-T (targeted DLR towards 9 classes), FAB-T
and Square (5000 queries), each run only on the points every earlier one left robust.

It is the fast option, labelled as such everywhere: `--attack autoattack` remains
pyautoattack's own standard version, the number the field reports. Attacks without
geometry for the threat's norm are skipped, as AutoAttack skips Square under L1."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import torch
from torch import nn

from ..threat import ThreatModel
from .apgd import apgd
from .base import AttackResult, attack_mode, check_inputs
from .fab import fab_t
from .registry import Opt, attack
from .square import square

NORMS = ("linf", "l2", "l1")


def _label(o: dict) -> str:
    s = "AutoAttack-native"
    if (o["k"], o["targets"], o["n_queries"]) != (100, 9, 5000):
        s += f"-{o['k']}-{o['targets']}t-{o['n_queries']}q"
    return s


# one_batch: the cascade is stage-major, as AutoAttack's: each attack runs over every point
# still robust (in chunks of evaluate's batch size) before the next starts, so the few points left
# for the later, long attacks run together instead of a few per batch
@attack(
    "aa-native",
    norms=NORMS,
    kind="white-box",
    step_rule="2*eps",
    label=_label,
    one_batch=True,
    quick={"k": 10, "targets": 2, "n_queries": 50},
)
def aa_native(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    k: Annotated[int, Opt("Iterations of APGD-CE, of APGD-T and of FAB-T per target class.", min=1)] = 100,
    targets: Annotated[int, Opt("Target classes of APGD-T and FAB-T.", min=1)] = 9,
    n_queries: Annotated[int, Opt("Square's model queries per point.", min=1)] = 5000,
    std=None,
    seed: int = 0,
    on_progress=None,
    chunk: int = 256,
) -> AttackResult:
    """Native AutoAttack cascade (APGD-CE, APGD-T, FAB-T, Square on the points still
    robust): AutoAttack's standard version without the pyautoattack package, faster."""
    check_inputs(x, y)
    stages: list[tuple[str, tuple, Callable]] = [
        ("apgd-ce", NORMS, lambda xs, ys: apgd(model, xs, ys, threat, k=k, loss="ce", std=std)),
        ("apgd-t", NORMS, lambda xs, ys: apgd(model, xs, ys, threat, k=k, targeted="top", targets=targets, std=std)),
        (
            "fab-t",
            ("linf", "l2", "l1"),
            lambda xs, ys: fab_t(model, xs, ys, threat, k=k, targets=targets, std=std, seed=seed),
        ),
        ("square", ("linf", "l2"), lambda xs, ys: square(model, xs, ys, threat, n_queries=n_queries, std=std)),
    ]
    with attack_mode(model):
        x_adv = x.detach().clone()
        fooled = torch.zeros(len(y), dtype=torch.bool, device=y.device)
        for name, norms, run in stages:
            if threat.norm not in norms:
                continue
            todo = (~fooled).nonzero().squeeze(1)
            if on_progress is not None:  # at the start and the end of each attack, as AutoAttack's adapter
                on_progress(name, int(todo.numel()), len(y))
            for i in range(0, len(todo), chunk):
                part = todo[i : i + chunk]
                res = run(x[part], y[part])
                hit = part[res.fooled]
                x_adv[hit] = res.x_adv[res.fooled]
                fooled[hit] = True
            if on_progress is not None:
                on_progress(name, int((~fooled).sum()), len(y))
    return AttackResult(x_adv, fooled)

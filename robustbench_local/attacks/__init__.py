"""The attack suite. Each attack is one small module; ATTACKS maps a name to a
runner ``(model, x, y, spec, *, seed, std, init, on_progress) -> AttackResult`` used
by evaluate(); ``norms`` lists the threat-model norms each attack supports. Every
runner takes ``on_progress`` so evaluate() can pass it to all; only AutoAttack,
whose sub-attacks run for minutes, reports through it."""
from __future__ import annotations

from ..registry import Registry
from ..threat import BALL_NORMS
from .autoattack import NORMS as _AA_NORMS, autoattack
from .base import AttackResult, attack_mode, frozen_params
from .fgsm import fgsm
from .losses import ce_loss, dlr_loss
from .pgd import perturb, pgd, run_pgd

ATTACKS: Registry = Registry("attack")


@ATTACKS.register("fgsm", norms=BALL_NORMS)
def _run_fgsm(model, x, y, spec, *, seed=0, std=None, init=None, on_progress=None):
    return fgsm(model, x, y, spec.threat, random_start=spec.fgsm_random_start, std=std,
                init=init[0] if init is not None else None)


@ATTACKS.register("pgd", norms=BALL_NORMS)
def _run_pgd(model, x, y, spec, *, seed=0, std=None, init=None, on_progress=None):
    return pgd(
        model, x, y, spec.threat, k=spec.k, random_start=spec.random_start, restarts=spec.restarts,
        loss=spec.loss, targeted=spec.targeted, std=std, init=init,
    )


@ATTACKS.register("autoattack", norms=tuple(_AA_NORMS))
def _run_autoattack(model, x, y, spec, *, seed=0, std=None, init=None, on_progress=None):  # draws its own starts
    return autoattack(model, x, y, spec.threat, version=spec.version, seed=seed, std=std, on_progress=on_progress)


from .spec import AttackSpec  # noqa: E402  (needs ATTACKS defined)

__all__ = [
    "ATTACKS", "AttackResult", "AttackSpec", "attack_mode", "frozen_params", "fgsm", "pgd", "perturb",
    "run_pgd", "autoattack", "ce_loss", "dlr_loss",
]

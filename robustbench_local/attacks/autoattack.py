"""Adapter over the `pyautoattack` package (Croce & Hein 2020): the standard
version (APGD-CE, APGD-T, FAB-T, Square) by default, with the threat model taken
from the same options as every other attack, in L-inf, L2 or L1.

AutoAttack measures eps as one number on [0,1] pixels, so a normalized-space eps
is converted with the model's std (every norm scales linearly with it); that is
exact only when every channel has the same std (true for the default mean = std =
0.5), and refused otherwise. It always computes in NCHW, whatever the layout of the
model and points it is given, so its numbers do not depend on the layout."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal

import torch
from torch import nn

from ..errors import RobustError
from ..threat import ThreatModel, find_std
from .base import AttackResult, attack_mode, check_inputs
from .registry import Opt, attack

VERSIONS = ("standard", "plus", "rand")
NORMS = {"linf": "Linf", "l2": "L2", "l1": "L1"}  # ours -> pyautoattack's

# on_progress(sub_attack, points_still_robust, points_total)
Progress = Callable[[str, int, int], None]


def _import():
    try:
        from pyautoattack import AutoAttack  # deferred: optional dependency (pyautoattack)
    except ImportError:
        raise RobustError(
            "AutoAttack needs the pyautoattack package; install it with "
            "`pip install 'robustbench_local[autoattack]'` (or `pip install pyautoattack`)"
        ) from None
    return AutoAttack


@contextmanager
def _nchw(model: nn.Module) -> Iterator[None]:
    """Runs the model on plain contiguous (NCHW) weights for the block, then puts every
    tensor's own memory back. pyautoattack calls .view() on input gradients, which an
    NHWC model yields in NHWC strides; computing in NCHW also gives the very numbers the
    NCHW layout gives, so a result does not depend on evaluate()'s layout."""
    moved = []
    for t in [*model.parameters(), *model.buffers()]:
        if not t.is_contiguous():
            moved.append((t, t.data))
            t.data = t.data.contiguous()
    try:
        yield
    finally:
        for t, data in moved:
            t.data = data


@attack(
    "autoattack",
    norms=tuple(NORMS),
    kind="white-box",
    step_rule="2*eps",
    one_batch=True,
    nchw=True,
    label=lambda o: "AutoAttack" if o["version"] == "standard" else f"AutoAttack-{o['version']}",
    quick={"version": "standard"},
)
def autoattack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    version: Annotated[
        Literal["standard", "plus", "rand"],
        Opt("AutoAttack version (pyautoattack): standard = APGD-CE, APGD-T, FAB-T, Square.", flag="aa-version"),
    ] = "standard",
    seed: int = 0,
    batch_size: int = 500,
    state_path: str | Path | None = None,
    std=None,
    on_progress: Progress | None = None,
) -> AttackResult:
    """AutoAttack ``version`` at ``threat`` (L-inf, L2 or L1). ``on_progress``, if given,
    is called as on_progress(sub_attack, points_still_robust, points_total) when each
    sub-attack (apgd-ce, apgd-t, fab-t, square, ...) starts and again when it ends; a
    sub-attack skipped because no point is left is reported as started and ended at once.
    Returns x_adv in x's memory layout."""
    check_inputs(x, y)
    AutoAttack = _import()
    if version not in VERSIONS:
        raise RobustError(f"unknown AutoAttack version '{version}'; valid: {', '.join(VERSIONS)}")
    std_t = find_std(model, x.shape[1]) if std is None else torch.as_tensor(std)
    px = threat.in_space("pixel", std_t)
    x_in = x.detach().contiguous()  # pyautoattack views its inputs and their gradients as (N, -1)
    with attack_mode(model), _nchw(model):
        with torch.no_grad():
            n_cls = model(x_in[:1]).shape[1]
        if n_cls < 3:
            raise RobustError(f"AutoAttack's DLR and targeted attacks need >= 3 classes; this model has {n_cls}")
        adversary = AutoAttack(
            model,
            norm=NORMS[px.norm],
            eps=px.eps,
            version=version,
            device=x.device,
            seed=seed,
        )
        # the standard version assumes >= 10 classes for its 9 target classes
        adversary.apgd_targeted.n_target_classes = min(adversary.apgd_targeted.n_target_classes, n_cls - 1)
        adversary.fab.n_target_classes = min(adversary.fab.n_target_classes, n_cls - 1)
        logging.getLogger("auto-attack").setLevel(logging.WARNING)
        state = Path(state_path) if state_path else None
        tracker = _Tracker(adversary, model, x_in, y, batch_size, state, on_progress) if on_progress else None
        x_adv, y_adv = adversary.run_standard_evaluation(x_in, y, batch_size=batch_size, state_path=state)
        if tracker is not None:
            tracker.finish()
    fooled = y_adv.to(y.device) != y
    return AttackResult(torch.empty_like(x).copy_(x_adv), fooled)


class _Tracker:
    """Reports AutoAttack's progress by wrapping each sub-attack object's ``perturb``:
    AutoAttack calls it once per batch of still-robust points, sub-attack after
    sub-attack, so a call under a new name starts a sub-attack and ends the one before.
    Counting the points each call fools costs one forward pass per batch."""

    def __init__(self, adversary, model, x, y, batch_size: int, state_path: Path | None, report: Progress):
        self.adversary, self.model, self.report = adversary, model, report
        self.total = len(y)
        self.robust = self._robust_at_start(x, y, batch_size, state_path)
        self.current: str | None = None
        self.seen: list[str] = []
        names = {
            "apgd": lambda a: "apgd-ce" if a.loss == "ce" else "apgd-dlr",
            "apgd_targeted": lambda a: "apgd-t",
            "fab": lambda a: "fab-t" if a.targeted else "fab",
            "square": lambda a: "square",
        }
        for attr, name_of in names.items():
            sub = getattr(adversary, attr)
            sub.perturb = self._wrap(sub, sub.perturb, name_of)

    def _robust_at_start(self, x, y, batch_size, state_path) -> int:
        if state_path is not None and state_path.exists():  # resumed: AutoAttack's own flags
            from pyautoattack.state import EvaluationState  # deferred: optional dependency

            flags = EvaluationState.from_disk(state_path).robust_flags
            if flags is not None:
                return int(flags.sum())
        with torch.no_grad():  # the clean pass as AutoAttack batches it
            return sum(
                int((self.model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
                for i in range(0, len(y), batch_size)
            )

    def _wrap(self, sub, perturb, name_of):
        def run(x, y, *args, **kwargs):
            name = name_of(sub)
            if name != self.current:
                self._end()
                self.current = name
                self.seen.append(name)
                self.report(name, self.robust, self.total)
            adv = perturb(x, y, *args, **kwargs)
            with torch.no_grad():
                self.robust -= int((self.model(adv).argmax(1) != y).sum())
            return adv

        return run

    def _end(self) -> None:
        if self.current is not None:
            self.report(self.current, self.robust, self.total)
            self.current = None

    def finish(self) -> None:
        self._end()
        for name in self.adversary.attacks_to_run:  # skipped: no point left (or done before a resume)
            if name not in self.seen:
                self.report(name, self.robust, self.total)
                self.report(name, self.robust, self.total)

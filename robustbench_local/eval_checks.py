"""Checks that compare an evaluation's records: attacks that should be ordered, PGD
with twice the steps, accuracy against eps, and whether a fixed step can reach eps."""

from __future__ import annotations

from . import checks as C
from .eval_attack import run_attack


def pairwise_checks(eps_records: list[dict], n: int) -> None:
    """Attacks at one threat that should be ordered: a single-step attack (FGSM) is no
    stronger than an iterative white-box one, and a black-box one (Square) no stronger
    than any white-box one (else gradients are likely masked)."""
    specs = [(r, r["_spec"]) for r in eps_records if "_spec" in r]
    single = [r for r, s in specs if s.info.single_step]
    black = [r for r, s in specs if s.info.kind == "black-box"]
    for r, s in specs:
        if s.info.kind != "white-box":
            continue
        acc = r["metrics"]["robust_acc"]
        found = (
            []
            if s.info.single_step
            else [C.fgsm_stronger_than_pgd(f["metrics"]["robust_acc"], acc, n, r["attack"]["label"]) for f in single]
        )
        found += [C.square_below_whitebox(b["metrics"]["robust_acc"], acc, n, r["attack"]["label"]) for b in black]
        r["checks"] = r["checks"] + [f.to_dict() for f in found]


def convergence_checks(target, eps_records, x, y, clean_ok, batch_size, seed) -> None:
    """Each iterative white-box attack with a step count k again with 2k steps."""
    for r in eps_records:
        spec = r.get("_spec")
        if spec is None or spec.info.kind != "white-box" or spec.info.one_batch or "k" not in spec.options:
            continue
        doubled = spec.replace(k=2 * spec.k)
        fooled = run_attack(target, doubled, x, y, clean_ok, batch_size=batch_size, seed=seed).fooled
        acc2 = float((clean_ok & ~fooled).float().mean())
        finding = C.pgd_converged(r["metrics"]["robust_acc"], acc2, len(y), spec.k, spec.label)
        r["checks"] = r["checks"] + [finding.to_dict()]


def sweep_checks(records: list[dict], n: int) -> None:
    """Robust accuracy against eps, per attack: radii are compared only within one
    norm and one eps space (an L2 radius or a normalized one says nothing about a
    pixel L-inf one)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        a = r["attack"]
        groups.setdefault((a["label"], a.get("norm"), a.get("space")), []).append(r)
    for (label, norm, space), rs in groups.items():
        if len(rs) < 2 or len({r["attack"]["eps"] for r in rs}) < 2:
            continue
        sweep = [(r["attack"]["eps"], r["metrics"]["robust_acc"]) for r in rs]
        finding = C.accuracy_rises_with_eps(sweep, n, f"{label} ({norm}, {space} eps)").to_dict()
        for r in rs:
            r["checks"] = r["checks"] + [finding]


def step_checks(records: list[dict]) -> None:
    """A given fixed step (the 2.5*eps/k family) must let k steps reach eps. Checked
    whatever --checks says: it is about the settings, not the model, and costs nothing."""
    for r in records:
        a, spec = r["attack"], r.get("_spec")
        if spec is not None and a.get("step_rule") == "given" and spec.info.step_rule == "2.5*eps/k":
            k = spec.options[spec.info.steps_option]
            r["checks"] = r["checks"] + [C.steps_reach_eps(k, a["step"], a["eps"], a["label"]).to_dict()]

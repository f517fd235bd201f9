"""The records evaluate() returns: per-attack and worst-case records, their metrics
(with per-class accuracy and the packed per-point flags), and flat rows for printing."""

from __future__ import annotations

import torch

from .attacks import AttackSpec
from .eval_inputs import Points
from .results import pack_flags, wilson_interval


def _per_class(y: torch.Tensor, clean_ok: torch.Tensor, robust_ok: torch.Tensor, classes) -> dict:
    out = {}
    n_cls = max(len(classes), int(y.max().item()) + 1 if len(y) else 0)
    for c in range(n_cls):
        m = y == c
        k = int(m.sum())
        name = classes[c] if c < len(classes) else str(c)
        out[name] = {
            "n": k,
            "clean_acc": float(clean_ok[m].float().mean()) if k else None,
            "robust_acc": float(robust_ok[m].float().mean()) if k else None,
        }
    return out


def attack_metrics(points: Points, clean_ok, robust_ok, seconds: float, attacked: int) -> dict:
    n = len(points.y)
    kc, kr = int(clean_ok.sum()), int(robust_ok.sum())
    return {
        "n": n,
        "clean_correct": kc,
        "clean_acc": kc / n,
        "clean_ci95": list(wilson_interval(kc, n)),
        "robust_correct": kr,
        "robust_acc": kr / n,
        "robust_ci95": list(wilson_interval(kr, n)),
        "attacked": attacked,
        "seconds": seconds,
        "images_per_s": n / seconds if seconds > 0 else None,
        "per_class": _per_class(points.y, clean_ok, robust_ok, points.classes),
        "robust_flags": pack_flags(robust_ok),  # which points stayed robust, for worst cases across records
    }


def attack_record(base: dict, spec: AttackSpec, std, *, cumulative: bool, transfer: bool) -> dict:
    """One (attack, eps) record before its checks and metrics: the shared fields, and
    the attack as it ran with its radius in both eps spaces."""
    rec = dict(base)
    rec["attack"] = {
        **spec.to_dict(),
        **spec.threat.describe(std),
        "kind": spec.info.kind,
        "cumulative": cumulative,
    }
    if transfer:  # its own column: a transfer number is not the white-box one
        rec["attack"]["label"] = f"{spec.label} (transfer)"
    if spec.step_rule is None and not spec.threat.given:  # the attack sets its own steps
        rec["attack"]["step_rule"] = None
    if spec.info.nchw:  # e.g. the AutoAttack adapter computes in NCHW whatever the layout
        rec["attack"]["channels_last"] = False
    return rec


def worst_case_record(base: dict, specs: list[AttackSpec], std, metrics: dict, checks: list[dict]) -> dict:
    """The worst case over one radius's suite: a point counts as robust only if every attack failed on it."""
    wc = dict(base)
    wc["attack"] = {
        "name": "worst-case",
        "label": "worst-case",
        "members": [s.label for s in specs],
        **specs[0].threat.describe(std),
        "step_rule": None,
        "cumulative": True,
    }
    wc["metrics"] = metrics
    wc["checks"] = checks
    return wc


def min_norm_list(norms: torch.Tensor, clean_ok: torch.Tensor) -> list:
    """A minimal-norm attack's per-point result for the record: 0 for a point
    misclassified clean, the smallest adversarial norm found, or None where none was
    found (robust at every radius the attack reached)."""
    out = []
    for v, ok in zip(norms.tolist(), clean_ok.tolist()):
        out.append(0.0 if not ok else (None if v != v or v == float("inf") else float(v)))
    return out


def summary_rows(records: list[dict]) -> list[dict]:
    """Flat rows for printing: checkpoint, attack, eps in both spaces, accuracies."""
    rows = []
    for r in records:
        a, m = r["attack"], r["metrics"]
        rows.append(
            {
                "checkpoint": r["checkpoint"]["name"],
                "attack": a["label"] + (" (cumulative)" if a.get("cumulative") else ""),
                "norm": a.get("norm"),
                "eps_normalized": a.get("eps_normalized"),
                "eps_pixel": a.get("eps_pixel"),
                "clean_acc": m["clean_acc"],
                "robust_acc": m["robust_acc"],
                "ci95": m["robust_ci95"],
                "n": m["n"],
                "seconds": m["seconds"],
                "images_per_s": m["images_per_s"],
                # a degenerate model is marked by its own column (r["degenerate"])
                "warnings": [c["detail"] for c in r.get("checks", []) if not c["ok"] and c["name"] != "not_degenerate"],
            }
        )
    return rows

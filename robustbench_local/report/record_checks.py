"""Why a record cannot be shown in the report, as one line naming the field (eval_problem,
train_problem), or None: the report needs some fields and the right type in every other."""

from __future__ import annotations

import math


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _radius_ok(v) -> bool:
    """A radius or step: a finite number >= 0, or a non-empty list of them (per channel)."""
    if isinstance(v, (list, tuple)):
        return bool(v) and all(_finite(x) and x >= 0 for x in v)
    return _finite(v) and v >= 0


def _wrong(place: str, v, want: str) -> str:
    """'metrics.n is missing' or "metrics.n is 'many', not a positive count"."""
    if v is None:
        return f"{place} is missing"
    shown = repr(v) if isinstance(v, (int, float, str, bool)) else f"a {type(v).__name__}"
    return f"{place} is {shown}, not {want}"


def eval_problem(rec: dict) -> str | None:
    """Why an evaluation record cannot be shown (the first problem found), or None.
    The report needs the checkpoint's identity, the attack's norm and radius and the
    accuracies with their n; everything else is optional but must have its type."""
    for key in ("checkpoint", "attack", "metrics"):
        if not isinstance(rec.get(key), dict):
            return _wrong(key, rec.get(key), "an object")
    if rec.get("data") is not None and not isinstance(rec["data"], dict):
        return _wrong("data", rec["data"], "an object")
    if rec.get("degenerate") is not None and not isinstance(rec["degenerate"], (dict, str)):
        return _wrong("degenerate", rec["degenerate"], "an object")
    if rec.get("checks") is not None and not isinstance(rec["checks"], list):
        return _wrong("checks", rec["checks"], "a list")
    ck, att, m = rec["checkpoint"], rec["attack"], rec["metrics"]
    if not any(isinstance(ck.get(k), str) and ck[k] for k in ("name", "path", "sha256")):
        return "checkpoint has no name, path or sha256"
    if not any(isinstance(att.get(k), str) and att[k] for k in ("name", "label")):
        return "attack has no name or label"
    if not isinstance(att.get("norm"), str):
        return _wrong("attack.norm", att.get("norm"), "a norm name")
    for key in ("eps_normalized", "eps_pixel"):
        if not _radius_ok(att.get(key)):
            return _wrong(f"attack.{key}", att.get(key), "a finite radius")
    for key in ("step_normalized", "step_pixel"):
        if att.get(key) is not None and not _radius_ok(att[key]):
            return _wrong(f"attack.{key}", att[key], "a finite step")
    if att.get("members") is not None and not (
        isinstance(att["members"], list) and all(isinstance(x, str) for x in att["members"])
    ):
        return "attack.members is not a list of labels"
    n = m.get("n")
    if not (isinstance(n, int) and not isinstance(n, bool) and n > 0):
        return _wrong("metrics.n", n, "a positive count")
    for key in ("clean_acc", "robust_acc"):
        if not (_finite(m.get(key)) and 0 <= m[key] <= 1):
            return _wrong(f"metrics.{key}", m.get(key), "a fraction in [0, 1]")
    for key in ("clean_ci95", "robust_ci95"):
        v = m.get(key)
        if v is not None and not (isinstance(v, list) and len(v) == 2 and all(_finite(x) for x in v)):
            return _wrong(f"metrics.{key}", v, "a [low, high] pair")
    for key in ("seconds", "clean_seconds"):
        if m.get(key) is not None and not _finite(m[key]):
            return _wrong(f"metrics.{key}", m[key], "a number of seconds")
    mn = m.get("min_norms")
    if mn is not None and not (
        isinstance(mn, list) and len(mn) == n and all(v is None or (_finite(v) and v >= 0) for v in mn)
    ):
        return _wrong("metrics.min_norms", mn, f"a list of {n} norms (>= 0) or nulls")
    if m.get("per_class") is not None and not (
        isinstance(m["per_class"], dict) and all(isinstance(v, dict) for v in m["per_class"].values())
    ):
        return "metrics.per_class is not an object of per-class objects"
    return None


def train_problem(rec: dict) -> str | None:
    """Why a training record cannot be shown, or None (the report is tolerant of
    missing parts, not of parts of the wrong type)."""
    if not isinstance(rec.get("checkpoint"), dict):
        return _wrong("checkpoint", rec.get("checkpoint"), "an object")
    for key in ("spec", "data", "metrics"):
        if rec.get(key) is not None and not isinstance(rec[key], dict):
            return _wrong(key, rec[key], "an object")
    if rec.get("history") is not None and not (
        isinstance(rec["history"], list) and all(isinstance(h, dict) for h in rec["history"])
    ):
        return _wrong("history", rec["history"], "a list of epoch rows")
    if rec.get("minutes") is not None and not _finite(rec["minutes"]):
        return _wrong("minutes", rec["minutes"], "a number")
    return None

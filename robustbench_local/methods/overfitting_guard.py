"""The catastrophic-overfitting guard: robust validation accuracy collapses while clean
accuracy keeps rising (Wong et al. 2020 saw it in FGSM training). ``collapse`` judges
the last epoch of a history; adversarial methods call it after every epoch and
``guard_epochs`` scans a recorded one."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

ROBUST_COLUMN = "val_robust_acc"
GUARD_RATIO = 0.5  # collapse: robust accuracy below this share of its best so far ...
GUARD_FLOOR = 0.05  # ... or below this absolute level (after having been higher)


def collapse(
    history: Sequence[Mapping[str, Any]],
    *,
    column: str = ROBUST_COLUMN,
    clean: str = "val_acc",
    ratio: float = GUARD_RATIO,
    floor: float = GUARD_FLOOR,
) -> str | None:
    """Whether the LAST row of ``history`` shows catastrophic overfitting; returns a
    description if so, else None. Pure: rows may come from history.csv (strings).

    It fires at epoch t (t >= 2) when robust accuracy r_t has collapsed, i.e.
    r_t < ratio * max(r_1..r_{t-1}) or r_t < floor while the best so far was higher,
    AND clean accuracy kept rising: val_acc_t >= val_acc_{t-1}. The second condition
    separates catastrophic overfitting (the model gets better on clean data while
    the attack stops working on it) from a run that is simply diverging."""
    if len(history) < 2:
        return None
    rows = [
        (float(r[column]), float(r[clean]), r.get("epoch"))
        for r in history
        if r.get(column) not in (None, "") and r.get(clean) not in (None, "")
    ]
    if len(rows) < 2 or rows[-1][2] != history[-1].get("epoch"):
        return None
    r_t, c_t, epoch = rows[-1]
    r_prev = [r for r, _, _ in rows[:-1] if not math.isnan(r)]
    if math.isnan(r_t) or not r_prev:
        return None
    best = max(r_prev)
    best_epoch = next(e for r, _, e in rows[:-1] if r == best)
    collapsed = r_t < ratio * best or (r_t < floor and best > r_t)
    c_prev = rows[-2][1]
    if not collapsed or not c_t >= c_prev:
        return None
    why = f"below {ratio:g} x its best" if r_t < ratio * best else f"under {floor:g}"
    return (
        f"catastrophic overfitting at epoch {epoch}: {column} {r_t:.4f} fell {why} ({best:.4f} at epoch "
        f"{best_epoch}) while val_acc rose {c_prev:.4f} -> {c_t:.4f}"
    )


def guard_epochs(history: Sequence[Mapping[str, Any]], **kwargs) -> list:
    """Epochs at which ``collapse`` fires, scanning a whole recorded history."""
    return [history[i].get("epoch") for i in range(len(history)) if collapse(history[: i + 1], **kwargs)]

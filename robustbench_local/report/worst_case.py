"""The worst-case column of a comparison table: a per-example worst case taken across
records made on the same points, and what the column is over, said once per table."""

from __future__ import annotations

from collections import Counter

import pandas as pd

from ..results import unpack_flags, wilson_interval
from .columns import attack_order
from .table_parts import WORST, Cell, Comparison, Row


def worst_across_records(comp: Comparison, shown: dict[str, pd.Series], cells: dict[str, Cell]) -> None:
    """The per-example worst case over every attack column of a row, from the records'
    per-point flags, when those records were made by different evaluate() calls on the
    same points (same indices digest and n). It replaces the worst-case cell of a single
    call only when it covers attacks that cell did not."""
    attacks = {c: r for c, r in shown.items() if r["attack_name"] != WORST}
    if len(attacks) < 2 or any(not isinstance(r["robust_flags"], str) for r in attacks.values()):
        return
    points = {(r["indices_sha256"], int(r["n"])) for r in attacks.values()}
    if len(points) != 1 or None in next(iter(points)):
        return
    worst = shown.get(WORST)
    covered = (
        set(worst["attack_members"].split("+"))
        if worst is not None and isinstance(worst["attack_members"], str)
        else set()
    )
    labels = {c: r["attack"] for c, r in attacks.items()}
    if set(labels.values()) <= covered:
        return  # one call already took the worst case over all of them
    n = int(next(iter(attacks.values()))["n"])
    robust = None
    for r in attacks.values():
        flags = unpack_flags(r["robust_flags"], n)
        robust = flags if robust is None else robust & flags
    k = int(robust.sum())
    lo, hi = wilson_interval(k, n)
    records = sorted({r["record"] for r in attacks.values()})
    over = ", ".join(sorted(attacks, key=attack_order))
    over += f", combined from {len(records)} records on the same {n} points"
    cells[WORST] = Cell(k / n, lo, hi, n, record=None, over=over)


def worst_case_note(comp: Comparison, rows: list[Row]) -> str | None:
    """What the worst-case column is over, said once: the set most of its cells share.
    A cell over another set carries a note of its own saying which."""
    cells = [(r, r.cells[WORST]) for r in rows if WORST in r.cells and r.cells[WORST].over]
    if not cells:
        return None
    common = Counter(c.over for _, c in cells).most_common(1)[0][0]  # on a tie, the first row's
    for r, c in cells:
        if c.over != common:
            c.notes.append(
                comp.note(f"worst case on {r.checkpoint}: per-example worst case over {c.over}", warning=False)
            )
    every = len(cells) == sum(WORST in r.cells for r in rows) and all(c.over == common for _, c in cells)
    return f"{WORST}: the per-example worst case over {common}" + (
        ", in every row." if every else ", unless a note beside the cell says otherwise."
    )

"""The adversarial column of the corruption tables, reusing the comparison table the
report already built: at the report's main radius (the first table), AutoAttack where
the model has a standard AutoAttack record there, else the worst case over the attacks
run, labelled which."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .columns import attack_order
from .robustbench_info import is_standard_aa
from .table_parts import WORST, Cell, Comparison, Row


@dataclass
class Adversarial:
    """The model's adversarial accuracy at the report's main radius (or the first radius it has)."""

    cell: Cell
    label: str  # 'AutoAttack' or 'worst case over FGSM, PGD-20'
    autoattack: bool
    radius: str  # the comparison table's title
    main: bool  # at the report's main radius


def adversarial_of(row: Row, evals: pd.DataFrame, radius: str, main: bool) -> Adversarial | None:
    """From a comparison-table row: its standard AutoAttack cell (the autoattack package's
    before AutoAttack-native), else its worst-case cell, else its only (or lowest) attack."""
    attacks = {c: cell for c, cell in row.cells.items() if c != "clean"}
    by_record = {r: evals[evals["record"] == r].iloc[0] for r in {c.record for c in attacks.values() if c.record}}
    aa = [
        (by_record[c.record]["attack_name"] == "autoattack", c.n, col)
        for col, c in attacks.items()
        if c.record and is_standard_aa(by_record[c.record])
    ]
    if aa:
        col = max(aa)[2]
        return Adversarial(attacks[col], col, True, radius, main)
    worst = attacks.get(WORST)
    singles = sorted((c for c in attacks if c != WORST), key=attack_order)
    if worst is not None:
        members = by_record[worst.record]["attack_members"] if worst.record else None
        over = members.replace("+", ", ") if isinstance(members, str) and members else ", ".join(singles)
        return Adversarial(worst, f"worst case over {over}", False, radius, main)
    if len(singles) == 1:
        return Adversarial(attacks[singles[0]], singles[0], False, radius, main)
    if singles:
        low = min(singles, key=lambda c: (attacks[c].acc, attack_order(c)))
        return Adversarial(
            attacks[low], f"{low}, the lowest of {', '.join(singles)} (not per-example)", False, radius, main
        )
    return None


def comparison_rows(comp: Comparison, evals: pd.DataFrame) -> dict[str, tuple[Row, str, bool]]:
    """ckpt_key -> (its row in the first comparison table holding it, that table's title, is it the main one)."""
    out: dict[str, tuple[Row, str, bool]] = {}
    for i, t in enumerate(comp.tables):
        for r in t.rows:
            rec = r.cells["clean"].record
            hit = evals[evals["record"] == rec]
            if not hit.empty:
                out.setdefault(str(hit.iloc[0]["ckpt_key"]), (r, t.title, i == 0))
    return out

"""How a comparison table is laid out on the page, for REPORT.md and report.html alike.

A table shows the columns that tell its models apart (checkpoint, method, the training
radius in a few characters; dataset and model only where they differ between rows)
and one column per attack. What is the same in every row, the training radii in full
and what the worst case is over are said once, in lines under the table; training
minutes and evaluation seconds go to a second, smaller table."""

from __future__ import annotations

import math

from .compare import MARK_NOTE
from .radii import fmt_eps, fmt_eps_255
from .table_parts import MARK, Comparison, Row, Table

TRAIN_EPS = "train eps"
COST_HEAD = ["checkpoint", "method", "train min", "eval s"]
COST_TITLE = "Training minutes and evaluation seconds"


def _known(v) -> bool:
    return isinstance(v, str) or not (v is None or (isinstance(v, float) and math.isnan(v)))


def adversarial(r: Row) -> bool:
    return r.adv not in ("none", "-", "None", "")


def train_eps_text(r: Row) -> str:
    """The training radius in the space the table headers name first (normalized), else
    in pixels; '-' for a model without adversarial training."""
    if not adversarial(r):
        return "-"
    if _known(r.train_eps_normalized):
        return fmt_eps(r.train_eps_normalized)
    if _known(r.train_eps_pixel):
        return f"{fmt_eps(r.train_eps_pixel)} px"
    return "?"


def _train_eps_full(r: Row) -> str:
    """'0.0313 normalized = 0.01565 pixel (3.99/255)', as much of it as was recorded."""
    pn, pp = r.train_eps_normalized, r.train_eps_pixel
    parts = [f"{fmt_eps(pn)} normalized"] * _known(pn) + [f"{fmt_eps(pp)} pixel ({fmt_eps_255(pp)})"] * _known(pp)
    return " = ".join(parts) or "not recorded"


def lead_columns(t: Table) -> list[str]:
    """The descriptive columns a table needs: dataset and model only where rows differ in them."""
    cols = ["checkpoint"]
    cols += ["dataset"] * (len({r.dataset for r in t.rows}) > 1)
    cols += ["model"] * (len({r.model for r in t.rows}) > 1)
    cols += ["method"]
    cols += [TRAIN_EPS] * any(adversarial(r) for r in t.rows)
    return cols


def lead_cells(r: Row, cols: list[str]) -> list[str]:
    """Row r's text in the descriptive columns cols, checkpoint first (its notes are the caller's)."""
    text = {
        "checkpoint": checkpoint_text(r),
        "dataset": r.dataset,
        "model": r.model,
        "method": r.method,
        TRAIN_EPS: train_eps_text(r),
    }
    return [text[c] for c in cols]


def legend(t: Table) -> list[str]:
    """The lines said once under a table: what every row shares, each training radius in
    both spaces, each model's normalized radius where they differ, and what the
    worst-case column is over."""
    out = []
    shared = [f"dataset {t.rows[0].dataset}"] * (len({r.dataset for r in t.rows}) == 1)
    shared += [f"model {t.rows[0].model}"] * (len({r.model for r in t.rows}) == 1)
    if shared:
        out.append("Every row: " + ", ".join(shared) + ".")
    radii = list(dict.fromkeys(_train_eps_full(r) for r in t.rows if adversarial(r)))
    if radii:
        out.append(f"{TRAIN_EPS}: the radius of the model's adversarial training, {'; '.join(radii)}.")
    if t.radius_note:
        out.append(t.radius_note)
    if t.worst_note:
        out.append(t.worst_note)
    return out


def cost_rows(t: Table) -> list[list[str]]:
    """The second table's rows: checkpoint, method, training minutes, evaluation seconds."""
    return [[checkpoint_text(r), r.method, minutes_text(r.train_minutes), f"{r.eval_seconds:.1f}"] for r in t.rows]


def checkpoint_text(row: Row) -> str:
    """The checkpoint's name, marked when the model is degenerate."""
    return row.checkpoint + (" (degenerate)" if row.degenerate else "")


def minutes_text(m: float | None) -> str:
    return "-" if m is None else f"{m:.1f}"


def notes_text(comp: Comparison, notes: list[int]) -> str:
    return " ".join(comp.marker(i) for i in notes)


def marked(t: Table, col: str, i: int) -> bool:
    """Whether row i's number in column col is indistinguishable from the column's best."""
    return i in t.marks.get(col, ())


def mark_note(comp: Comparison) -> str | None:
    """What the mark means, said once under the first table that carries marks; None when none does."""
    return f"{MARK}: {MARK_NOTE}." if any(t.marks for t in comp.tables) else None


def table_notes(t: Table) -> list[int]:
    """The footnotes a table's rows and cells carry, in order."""
    seen: set[int] = set()
    for r in t.rows:
        seen.update(r.notes)
        for c in r.cells.values():
            seen.update(c.notes)
    return sorted(seen)

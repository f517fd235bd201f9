"""What a comparison table is made of: cells (an accuracy with its 95% interval, n and
notes), rows (one checkpoint), tables (one threat model) and the comparison holding them
with its footnotes; and how a cell and a training method are written."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..text import method_label
from .record_fields import given

WORST = "worst-case"
MARK = "◆"  # beside a number indistinguishable from its column's best (compare.MARK_NOTE says how)


@dataclass
class Cell:
    acc: float
    lo: float
    hi: float
    n: int
    notes: list[int] = field(default_factory=list)  # footnote numbers
    record: str | None = None
    over: str | None = None  # a worst-case cell: the attacks it is the worst case over (and how it was combined)


@dataclass
class Row:
    checkpoint: str
    dataset: str
    model: str
    method: str
    adv: str
    train_eps_normalized: object
    train_eps_pixel: object
    cells: dict[str, Cell]
    train_minutes: float | None
    eval_seconds: float
    notes: list[int] = field(default_factory=list)  # model-level warnings
    degenerate: str | None = None  # why its robust numbers are meaningless (guesses, one class), or None
    experiment: str | None = None  # the experiment and group of cells (one method, several training seeds)
    group: str | None = None  # that trained it, and its training seed; None for a model from elsewhere
    train_seed: int | None = None
    created: str = ""  # its newest record


@dataclass
class Table:
    title: str
    norm: str
    eps_normalized: object  # None where the models' normalizations give different ones
    eps_pixel: object
    columns: list[str]  # 'clean' first, then attacks, worst case last
    rows: list[Row]
    marks: dict[str, set[int]] = field(default_factory=dict)  # column -> rows indistinguishable from its best
    worst_note: str | None = None  # what the worst-case cells are over, said once under the table
    radius_note: str | None = None  # each model's normalized radius, where they differ (title: 'normalized per model')


@dataclass
class Comparison:
    tables: list[Table]  # the first is the headline (the radius with the most records)
    notes: list[str]  # footnote texts; note i is notes[i - 1]
    warning: list[bool] = field(default_factory=list)  # note i is a failed sanity check (⚠), else information (†)

    def note(self, text: str, warning: bool = True) -> int:
        if text not in self.notes:
            self.notes.append(text)
            self.warning.append(warning)
        return self.notes.index(text) + 1

    def marker(self, i: int) -> str:
        return ("⚠" if self.warning[i - 1] else "†") + str(i)


def _pct(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def cell_text(c: Cell) -> str:
    """'45.2 [42.1, 48.3] n=1000' (percent)."""
    return f"{_pct(c.acc)} [{_pct(c.lo)}, {_pct(c.hi)}] n={c.n}"


def method_text(method, adv, source=None) -> str:
    """The training method; for a model we did not train (no method recorded), where it came from."""
    if not (isinstance(method, str) and method) and given(source):
        return source
    return method_label(method, adv)

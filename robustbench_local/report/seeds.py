"""The report's section "Across training seeds": for each method an experiment trained
with several seeds (the cells of one group, see experiment/cells.py) and each column of
a comparison table, the mean accuracy over the seeds, their standard deviation and a
95% interval (stats.seed_summary). Each seed's own number stays a row of the comparison
table and of report.csv, and sits behind the mean in report.html."""

from __future__ import annotations

import math
from collections import namedtuple
from dataclasses import dataclass

import pandas as pd

from ..stats import SeedSummary, seed_summary
from .load import ReportData, newest_largest
from .record_fields import given
from .table_parts import Cell, Comparison, Row, cell_text

SEED_EXPLAIN = (
    "One row per method an experiment trained with several seeds (seeds = [0, 1, 2] in its file). Each cell: the "
    "mean of the seeds' accuracies in % ± their sample standard deviation, and a 95% interval [low, high] for the "
    "method's expected accuracy. Estimator: Student's t interval over the k seeds, mean ± t(k - 1) · sqrt(s²/k + v), "
    "s the seeds' standard deviation. When every seed was evaluated on the same test points, v = p(1 - p)/n adds "
    "the test-point variance that moves all of them alike, which their spread cannot show (an upper bound, so the "
    "interval errs wide); on separate draws of points v = 0, their spread already holds it. It is the standard "
    "interval for the mean of a few measurements; with 3 seeds t is 4.30, so few seeds give wide intervals. "
    "Each seed's own number is its row in the tables above and in report.csv."
)


@dataclass
class SeedMember:
    seed: int
    checkpoint: str
    cell: Cell  # its number in the comparison table


@dataclass
class SeedCell:
    summary: SeedSummary
    members: list[SeedMember]  # by seed
    same_points: bool  # every seed evaluated on the same test points (or not known otherwise)


@dataclass
class SeedRow:
    group: str  # the cells' shared name; 'experiment: group' where two experiments use one name
    method: str
    seeds: tuple[int, ...]
    cells: dict[str, SeedCell]
    degenerate: list[str]  # seeds' checkpoints whose robust numbers are meaningless


@dataclass
class SeedTable:
    title: str  # the comparison table's threat
    columns: list[str]
    rows: list[SeedRow]


def _same_points(points: list[tuple | None]) -> bool:
    """Whether the seeds share their test points. Unknown points count as shared: the
    interval then includes the point variance and errs wide rather than narrow."""
    if any(p is None or p[0] is None for p in points):
        return True
    return len(set(points)) == 1


def group_rows(rows: list[Row]) -> dict[tuple, dict[int, Row]]:
    """(experiment, group) -> seed -> its row (the newest, should a seed appear twice); a
    row of no experiment's group, or of an unknown training seed, is in none. Any objects
    with a Row's checkpoint, experiment, group, train_seed and created will do."""
    groups: dict[tuple, dict[int, Row]] = {}
    for r in rows:
        if not given(r.group) or r.train_seed is None or (isinstance(r.train_seed, float) and math.isnan(r.train_seed)):
            continue
        by_seed = groups.setdefault((r.experiment if given(r.experiment) else None, r.group), {})
        seed = int(r.train_seed)
        old = by_seed.get(seed)
        if old is None or r.created > old.created:
            by_seed[seed] = r
    return groups


def group_labels(keys) -> dict[tuple, str]:
    """Each group's name: the cells' group, 'experiment: group' where two experiments use one name."""
    names = [g for _, g in keys]
    return {(e, g): g if names.count(g) == 1 or not e else f"{e}: {g}" for e, g in keys}


_Member = namedtuple("_Member", "checkpoint experiment group train_seed created")


def checkpoint_groups(evals: pd.DataFrame) -> dict[str, list[str]]:
    """The seed groups among evaluation rows, grouped as the seed tables group a comparison
    table's rows: group name -> its checkpoints by seed. A checkpoint of no group is in none."""
    members = []
    for ckpt, rows in evals.groupby("checkpoint", sort=True):
        ref = newest_largest(rows)
        members.append(
            _Member(str(ckpt), ref["experiment"], ref["group"], ref["train_seed"], str(rows["created"].max()))
        )
    groups = group_rows(members)
    labels = group_labels(groups)
    return {labels[k]: [by_seed[s].checkpoint for s in sorted(by_seed)] for k, by_seed in groups.items()}


def build_seed_tables(data: ReportData, comp: Comparison) -> list[SeedTable]:
    """One table per comparison table where some method has two or more seeds; its rows
    are every method of an experiment in that table (a single seed shows its number)."""
    evals = data.evals
    points = {
        rec: (sha if isinstance(sha, str) else None, int(n))
        for rec, sha, n in zip(evals["record"], evals["indices_sha256"], evals["n"])
    }
    out = []
    for t in comp.tables:
        groups = group_rows(t.rows)
        if not any(len(by_seed) >= 2 for by_seed in groups.values()):
            continue
        labels = group_labels(groups)
        rows = []
        for (experiment, group), by_seed in groups.items():
            seeds = tuple(sorted(by_seed))
            members = [by_seed[s] for s in seeds]
            cells = {}
            for col in t.columns:
                got = [(s, r.checkpoint, r.cells[col]) for s, r in zip(seeds, members) if col in r.cells]
                if not got:
                    continue
                same = _same_points([points.get(c.record) if c.record else None for _, _, c in got])
                summary = seed_summary([c.acc for _, _, c in got], [c.n for _, _, c in got], same_points=same)
                cells[col] = SeedCell(summary, [SeedMember(*m) for m in got], same)
            rows.append(
                SeedRow(
                    labels[(experiment, group)],
                    members[0].method,
                    seeds,
                    cells,
                    [r.checkpoint for r in members if r.degenerate],
                )
            )
        rows.sort(key=lambda r: r.group)
        columns = [c for c in t.columns if any(c in r.cells for r in rows)]
        out.append(SeedTable(t.title, columns, rows))
    return out


def _pct(v: float) -> str:
    return f"{100 * v:.1f}"


def seed_cell_text(c: SeedCell, row: SeedRow) -> str:
    """'31.2 ± 1.5 [27.4, 35.0]' (percent); '(2 of 3 seeds)' when some seed lacks the column."""
    s = c.summary
    text = f"{_pct(s.mean)} (1 seed)" if s.seeds < 2 else f"{_pct(s.mean)} ± {_pct(s.sd)} [{_pct(s.lo)}, {_pct(s.hi)}]"
    if 1 < s.seeds < len(row.seeds):
        text += f" ({s.seeds} of {len(row.seeds)} seeds)"
    return text


def member_text(m: SeedMember) -> str:
    """'seed 1 (pgd-at-s1): 30.5 [28.5, 32.6] n=2000'."""
    return f"seed {m.seed} ({m.checkpoint}): {cell_text(m.cell)}"


def seeds_text(row: SeedRow) -> str:
    return ", ".join(str(s) for s in row.seeds)


def degenerate_notes(table: SeedTable) -> list[str]:
    return [
        f"{r.group}: {', '.join(r.degenerate)} degenerate (robust accuracies meaningless), counted in the mean"
        for r in table.rows
        if r.degenerate
    ]

"""The plan of a run: for each cell, read from its run folder and the results store,
whether training is done, to resume or to do, and which evaluations are done or left;
the cells and attacks a run is limited to; and the plan as a table (`--dry-run`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.table import Table

from ..attacks.spec import upgrade_fields
from ..checkpoint import file_sha256, read_checkpoint
from ..errors import RobustError
from ..fileio import to_jsonable
from ..results import ResultsStore
from ..text import method_label, plural
from ..train_budget import epochs_text
from ..train_folder import spec_differences
from .attack_entries import EvalUnit
from .cells import Cell, name_matches
from .corruptions import CorruptionPlan
from .schema import Experiment


@dataclass
class CellPlan:
    cell: Cell
    train: str  # 'done' | 'resume' | 'train'
    epochs_done: int
    stopped: str | None
    sha256: str | None  # of best.pth, when training is done
    done: list[EvalUnit]
    todo: list[EvalUnit]
    train_record: bool  # a training record for best.pth is in the store
    corruptions: str | None = None  # the [corruptions] record: 'done', 'todo' or None (none asked)

    @property
    def name(self) -> str:
        return self.cell.name

    @property
    def finished(self) -> bool:
        return self.train == "done" and self.train_record and not self.todo and self.corruptions != "todo"

    def train_text(self) -> str:
        e = self.cell.spec.epochs
        if self.train == "done":
            return f"done ({self.stopped})" if self.stopped else f"done ({self.epochs_done}/{plural(e, 'epoch')})"
        if self.train == "resume":
            return f"resume after epoch {self.epochs_done}/{e}"
        return f"to train ({epochs_text(self.cell.spec.budget_minutes, e)})"

    def todo_text(self) -> str:
        parts = []
        if self.train != "done":
            parts.append(
                f"train {epochs_text(self.cell.spec.budget_minutes, self.cell.spec.epochs - self.epochs_done)}"
            )
        if self.todo:
            parts.append(f"{plural(len(self.todo), 'evaluation')}: " + ", ".join(u.label for u in self.todo))
        if self.corruptions == "todo":
            parts.append("corruptions")
        return "; ".join(parts) or "nothing"


def _jsonable(v: Any) -> Any:
    return json.loads(json.dumps(to_jsonable(v), sort_keys=True))


def _unit_matches(unit: EvalUnit, rec: dict) -> bool:
    att = upgrade_fields(rec.get("attack") or {})
    return all(att.get(k) == v for k, v in _jsonable(unit.spec.to_dict()).items())


class EvalIndex:
    """The store's evaluation records by (checkpoint sha256, n, split, seed, cascade)."""

    def __init__(self, store):
        self.by_key: dict[tuple, list[dict]] = {}
        for rec in store.find("eval"):
            ck, data = rec.get("checkpoint") or {}, rec.get("data") or {}
            key = (ck.get("sha256"), data.get("n"), data.get("split"), data.get("seed"), bool(rec.get("cascade")))
            self.by_key.setdefault(key, []).append(rec)
        self.train_records = {(r.get("checkpoint") or {}).get("sha256"): r for r in store.find("train")}
        self.train_shas = set(self.train_records)
        self.corruption_records = list(store.find("corruption"))

    def corruptions_done(self, sha: str, plan: CorruptionPlan, n: int) -> bool:
        return any(plan.matches(r, sha, n) for r in self.corruption_records)

    def done(self, sha: str, unit: EvalUnit, n: int, cascade: bool) -> bool:
        recs = self.by_key.get((sha, n, unit.split, unit.seed, cascade), [])
        return any(_unit_matches(unit, r) for r in recs)


def split_sizes(bundle) -> dict[str, int]:
    return {s: len(bundle.split(s)) for s in ("test", "val")}


def remaining(
    exp: Experiment, cell: Cell, index: EvalIndex, sha: str | None, sizes: dict[str, int]
) -> tuple[list[EvalUnit], list[EvalUnit], str | None]:
    """(done, to do, corruptions 'done' | 'todo' | None) of ``cell`` for the checkpoint ``sha``
    (None: not trained yet, so everything is to do)."""
    units = [u for u in exp.units if u.runs_on(cell.name)]
    done, todo = [], []
    for u in units:
        n = u.n if u.n is not None else sizes[u.split]
        (done if sha and index.done(sha, u, n, exp.cascade) else todo).append(u)
    if exp.cascade and todo:  # a cascade's numbers depend on the whole suite: run it whole
        todo, done = units, []
    corr = None
    if exp.corruptions is not None:
        c = exp.corruptions
        n = c.n if c.n is not None else sizes[c.split]
        corr = "done" if sha and index.corruptions_done(sha, c, n) else "todo"
    return done, todo, corr


def _read_matching(exp: Experiment, cell: Cell, path, out) -> dict:
    """The checkpoint at ``path``, refused when it was trained with other options than the cell's."""
    try:
        ckpt = read_checkpoint(path)
    except RobustError as e:
        raise exp.problem(cell.path, f"{e}; delete {out} to train this cell again") from None
    # the very comparison fit makes on --resume, so the plan and the training agree
    diffs = spec_differences(ckpt["meta"].get("spec") or {}, cell.spec.to_dict())
    if diffs:
        raise exp.problem(
            cell.path,
            f"{out} holds a run trained with other options ({'; '.join(diffs[:3])}"
            f"{' ...' if len(diffs) > 3 else ''}); delete that folder or rename the cell",
        )
    return ckpt


def plan_cell(exp: Experiment, cell: Cell, index: EvalIndex, sizes: dict[str, int]) -> CellPlan:
    """What is done and what is left for one cell, read from its run folder and the store."""
    out = exp.cell_dir(cell)
    last, best = out / "last.pth", out / "best.pth"
    state, epochs_done, stopped, sha = "train", 0, None, None
    if last.is_file():
        ts = _read_matching(exp, cell, last, out).get("train_state")
        if not isinstance(ts, dict):
            raise exp.problem(cell.path, f"{last} holds no training state; delete {out} to train this cell again")
        epochs_done, stopped = int(ts.get("epoch", 0)), ts.get("stopped")
        finished = bool(stopped) or epochs_done >= cell.spec.epochs
        state = "done" if finished and best.is_file() else "resume"
        # hashed only once training is over: a resuming cell's best.pth changes with each epoch
        sha = file_sha256(best) if state == "done" else None
    elif best.is_file() and (best_sha := file_sha256(best)) in index.train_shas:
        # a kept checkpoint: a study may commit best.pth alone (last.pth adds the optimizer's state
        # and doubles the size); the training record of that very file says training finished
        _read_matching(exp, cell, best, out)
        rec = index.train_records[best_sha]
        epochs_done, stopped, state = int(rec.get("epochs_run") or cell.spec.epochs), rec.get("stopped"), "done"
        sha = best_sha
    done, todo, corr = remaining(exp, cell, index, sha, sizes)
    return CellPlan(cell, state, epochs_done, stopped, sha, done, todo, bool(sha) and sha in index.train_shas, corr)


def select_cells(exp: Experiment, only: Sequence[str]) -> list[Cell]:
    if not only:
        return list(exp.cells)
    chosen = [c for c in exp.cells if name_matches(c.name, only)]
    if not chosen:
        raise RobustError(
            f"--only {' '.join(only)} matches no cell of {exp.file}; cells: {', '.join(c.name for c in exp.cells)}"
        )
    return chosen


def select_attacks(exp: Experiment, attacks: Sequence[str]) -> None:
    """Keep only the evaluations of these attacks (by registry name), e.g. to run the cheap
    ones for every cell before AutoAttack; the rest stay to do for a later run."""
    if not attacks:
        return
    names = sorted({u.spec.name for u in exp.units}) + (["corruptions"] if exp.corruptions is not None else [])
    unknown = [a for a in attacks if a not in names]
    if unknown:
        raise RobustError(
            f"--attack {' '.join(unknown)}: {exp.file} evaluates no such attack; its attacks: {', '.join(names)}"
        )
    exp.units = [u for u in exp.units if u.spec.name in attacks]
    if "corruptions" not in attacks:
        exp.corruptions = None


def make_plan(exp: Experiment, bundle, cells: Sequence[Cell]) -> list[CellPlan]:
    index = EvalIndex(ResultsStore(exp.results))
    sizes = split_sizes(bundle)
    return [plan_cell(exp, c, index, sizes) for c in cells]


def plan_table(plan: Sequence[CellPlan], title: str) -> Table:
    """One row per cell: what is done and what is to do (finished cells dimmed)."""
    t = Table(title=title)
    for col in ("cell", "model", "method", "training", "evaluations done", "to do"):
        t.add_column(col, overflow="fold")
    for p in plan:
        s = p.cell.spec
        method = method_label(s.method, s.adv)
        n_eval = len(p.done) + len(p.todo)
        t.add_row(
            p.name,
            s.model.arch,
            method,
            p.train_text(),
            f"{len(p.done)}/{n_eval}",
            p.todo_text(),
            style=None if not p.finished else "dim",
        )
    return t

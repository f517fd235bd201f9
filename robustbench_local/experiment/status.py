"""`robust run --status FILE`: each cell's state, from the plan (what is on disk) and
the state files the jobs write (job_state.py); nothing is written, no lock is taken.

- done: training finished and every evaluation is in the results store;
- running (job id): a job works on the cell now (training or evaluation);
- queued: submitted, or waiting for a worker or for its training;
- failed: the cell's last job failed (with the error and its log);
- to do: nothing is queued for it (no executor run, or its session is gone)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from ..lock import alive
from .data_checks import check_with_data
from .job_state import process_gone, read_state, read_submission
from .journal import LOCK
from .plan import CellPlan, make_plan, select_cells
from .schema import Experiment, load_experiment


@dataclass
class CellStatus:
    cell: str
    state: str  # done | running | queued | failed | to do
    stage: str | None = None  # train | eval
    job_id: str | None = None
    detail: str = ""


def orchestrator_alive(runs: Path) -> bool:
    """Whether the `robust run` holding the study's lock is alive (on this host)."""
    try:
        pid = int((Path(runs) / LOCK).read_text().strip() or 0)
    except (OSError, ValueError):
        return False
    return bool(pid) and alive(pid)


def cell_status(exp: Experiment, p: CellPlan, session_alive: bool) -> CellStatus:
    if p.finished:
        return CellStatus(p.name, "done", detail=p.train_text())
    train, evals = (read_state(exp.runs, p.name, s) for s in ("train", "eval"))
    cur = train if train and train.get("state") != "done" else evals or train
    if not cur:
        return CellStatus(p.name, "to do", detail=p.todo_text())
    stage, state = cur.get("stage"), cur.get("state")
    job_id = cur.get("job_id") or read_submission(exp.runs, p.name, stage).get("job_id")
    if state == "running":
        if process_gone(cur):
            return CellStatus(
                p.name,
                "failed",
                stage,
                job_id,
                f"its worker (pid {cur.get('pid')}) is gone; the same `robust run` command resumes it",
            )
        return CellStatus(p.name, "running", stage, job_id, p.train_text() if stage == "train" else p.todo_text())
    if state == "queued":
        if not job_id and not session_alive:
            return CellStatus(p.name, "to do", detail=p.todo_text())
        return CellStatus(p.name, "queued", stage, job_id, p.todo_text())
    if state == "failed":
        return CellStatus(p.name, "failed", stage, job_id, f"{cur.get('error', '')} (log: {cur.get('log', '?')})")
    return CellStatus(p.name, "to do", detail=p.todo_text())


def study_status(exp: Experiment, plan: list[CellPlan]) -> list[CellStatus]:
    session = orchestrator_alive(exp.runs)
    return [cell_status(exp, p, session) for p in plan]


def read_status(path, *, only=(), device: str | None = None) -> tuple[Experiment, list[CellStatus]]:
    """The experiment FILE's cells (those matching ``only``) and their states."""
    exp = load_experiment(path, device=device)
    chosen = select_cells(exp, only)
    plan = [p for p in make_plan(exp, check_with_data(exp), exp.cells) if p.cell in chosen]
    return exp, study_status(exp, plan)


STYLE = {"done": "green", "running": "cyan", "queued": "yellow", "failed": "red", "to do": None}


def status_table(rows: list[CellStatus], title: str) -> Table:
    t = Table(title=title)
    for col in ("cell", "state", "stage", "job", "detail"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(r.cell, r.state, r.stage or "", r.job_id or "", r.detail, style=STYLE[r.state])
    return t

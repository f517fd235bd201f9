"""`robust run FILE --executor gpus|slurm|debug`: the cells of a study as jobs, through
submitit (an optional extra: pip install submitit).

Each cell's training is one job and its evaluation another that starts once that
training succeeded, so AutoAttack on one model never waits for another's training.

- ``gpus``: worker processes on this machine (submitit's LocalExecutor), one per
  visible GPU (``gpus_per_job`` GPUs each), or ``--workers N`` CPU processes sharing
  the cores. This process hands out the jobs as workers free up, evaluations first.
- ``slurm``: every job is submitted at once (submitit's SlurmExecutor); an evaluation
  waits in Slurm's queue for its training (``--dependency=afterok``). Where the jobs
  run comes from the file's [executor] table and the flags (cluster.py).
- ``debug``: submitit's DebugExecutor: the jobs one after another in this process, as
  a worker runs them (a failing job opens the debugger).

What `robust run` guarantees holds for every executor: the plan comes from disk, so a
cut-off study resumes with the same command (a job of an earlier session that is
still queued or running is followed, not submitted again) and finished cells are
skipped; each job takes its cell's lock; a failed cell is reported with its log and
the others go on; the report is written once, by this process, after the last job.
Jobs record their state in RUNS/.jobs/ (job_state.py), which `--status` reads."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RobustError
from ..text import plural
from .data_checks import check_with_data
from .execute import RunSummary, keep_log_if_changed, write_report
from .job_state import (
    cell_log,
    clear,
    jobs_dir,
    read_state,
    read_submission,
    write_state,
    write_submission,
)
from .journal import RunLock, RunLog, Say
from .plan import CellPlan, make_plan, select_attacks, select_cells
from .pools import WorkerPool, make_pool
from .schema import Experiment, load_experiment


# ----------------------------------------------------------------------------- the jobs of a study
@dataclass
class Task:
    plan: CellPlan
    stage: str
    after: Task | None = None
    job: Any = None
    slot: int | None = None
    status: str = "waiting"  # waiting | submitted | done | failed | dropped
    adopted: bool = False

    @property
    def cell(self) -> str:
        return self.plan.name


@dataclass
class Adopted:
    """A job an earlier session submitted that is still queued or running: followed
    through its state file until it ends."""

    pool: Any
    runs: Path
    cell: str
    stage: str
    job_id: str

    def done(self) -> bool:
        st = read_state(self.runs, self.cell, self.stage) or {}
        return st.get("state") not in ("queued", "running") or not self.pool.alive(
            st, read_submission(self.runs, self.cell, self.stage)
        )


def _raised(job) -> str | None:
    """The last line of the error a job raised before it could record it (e.g. its cell's lock
    was held), read from submitit's result file without waiting for it."""
    path = getattr(getattr(job, "paths", None), "result_pickle", None)
    if path is None or not path.exists():
        return None
    try:
        import submitit  # deferred: optional dependency (submitit)

        outcome, trace = submitit.core.utils.pickle_load(path)
    except Exception:  # unreadable: the job log says more
        return None
    lines = [line for line in str(trace).splitlines() if line.strip()] if outcome == "error" else []
    return lines[-1].strip() if lines else None


@dataclass
class Study:
    exp: Experiment
    pool: Any
    log: RunLog
    summary: RunSummary
    make_job: Callable[[str, str], Any]  # (cell, stage) -> the callable a job runs
    poll: float = 1.0
    tasks: list[Task] = field(default_factory=list)

    def plan_tasks(self, plan: Sequence[CellPlan]) -> None:
        for p in plan:
            if p.finished:
                continue
            train = Task(p, "train") if p.train != "done" or not p.train_record else None
            evals = Task(p, "eval", after=train) if p.todo or p.corruptions == "todo" else None
            for t in (train, evals):
                if t is None:
                    continue
                self.tasks.append(t)
                st = read_state(self.exp.runs, t.cell, t.stage) or {}
                sub = read_submission(self.exp.runs, t.cell, t.stage)
                if st.get("state") in ("queued", "running") and self.pool.alive(st, sub):
                    job_id = str(st.get("job_id") or sub.get("job_id"))
                    t.job, t.status, t.adopted = (
                        Adopted(self.pool, self.exp.runs, t.cell, t.stage, job_id),
                        "submitted",
                        True,
                    )
                    self.log(
                        f"{t.cell}: {t.stage} job {job_id} of an earlier session is still {st['state']}; following it"
                    )
        adopted = {t.cell for t in self.tasks if t.adopted}
        for cell in {t.cell for t in self.tasks} - adopted:
            clear(self.exp.runs, cell)
        for t in self.tasks:
            if not t.adopted:
                write_state(self.exp.runs, t.cell, t.stage, "queued")

    def run(self) -> None:
        while any(t.status in ("waiting", "submitted") for t in self.tasks):
            changed = False
            for t in self.tasks:
                if t.status == "submitted" and t.job.done():
                    self._finish(t)
                    changed = True
            for t in self._ready():
                self._submit(t)
                changed = True
            if not changed:
                time.sleep(self.poll)

    def _ready(self) -> list[Task]:
        busy = {t.slot for t in self.tasks if t.status == "submitted" and t.slot is not None}
        free = [] if self.pool.slots is None else [i for i in range(len(self.pool.slots)) if i not in busy]
        ready = []
        for t in sorted(self.tasks, key=lambda t: t.stage != "eval"):  # evaluations first: cells finish sooner
            if t.status != "waiting":
                continue
            dep = t.after.status if t.after is not None else "done"
            if dep in ("failed", "dropped"):
                t.status = "dropped"
                continue
            if dep == "done" or (self.pool.ahead and dep == "submitted"):
                if self.pool.slots is not None:
                    if not free:
                        continue
                    t.slot = free.pop(0)
                ready.append(t)
        return ready

    def _submit(self, t: Task) -> None:
        after = t.after.job.job_id if t.after is not None and t.after.status == "submitted" else None
        t.job = self.pool.submit(self.make_job(t.cell, t.stage), t.slot, after)
        t.status = "submitted"
        write_submission(self.exp.runs, t.cell, t.stage, t.job.job_id, self.pool.job_log(t.job))
        self.log(
            f"{t.cell}: {t.stage} job {t.job.job_id} submitted"
            + (f" (after job {after})" if after else "")
            + (
                f" on GPU {','.join(map(str, self.pool.slots[t.slot]))}"
                if t.slot is not None and self.pool.slots[t.slot]
                else ""
            )
        )

    def _final_state(self, t: Task) -> dict:
        """The state the job left; on a shared file system it may show up a little after the job ends."""
        deadline = time.monotonic() + self.pool.settle_s
        while True:
            st = read_state(self.exp.runs, t.cell, t.stage) or {}
            if st.get("state") in ("done", "failed") or time.monotonic() >= deadline:
                return st
            time.sleep(1)

    def _finish(self, t: Task) -> None:
        runs = self.exp.runs
        st = self._final_state(t)
        if st.get("state") == "done":
            t.status = "done"
            self.summary.trained += st.get("trained") or []
            for cell, n in (st.get("evaluated") or {}).items():
                self.summary.evaluated[cell] = self.summary.evaluated.get(cell, 0) + n
            self.log(f"{t.cell}: {t.stage} job {t.job.job_id} done")
            return
        t.status = "failed"
        where = st.get("log") or str(cell_log(runs, t.cell))
        if st.get("state") == "failed":
            msg = st.get("error") or "failed"
        else:  # the job never said how it ended: killed, out of memory, cancelled, lost node
            job_log = read_submission(runs, t.cell, t.stage).get("job_log")
            msg = _raised(t.job) or "the job ended without finishing (killed, out of memory or cancelled?)"
            where = job_log or where
            write_state(runs, t.cell, t.stage, "failed", job_id=t.job.job_id, error=msg, log=where)
        self.summary.failed[t.cell] = f"{msg} (log: {where})"
        self.log(f"{t.cell}: FAILED ({t.stage} job {t.job.job_id}): {msg}; log {where}")

    def cancel(self) -> None:
        for t in self.tasks:
            if t.status == "submitted" and not t.adopted and hasattr(t.job, "cancel"):
                try:
                    t.job.cancel(check=False)
                except Exception:  # already gone
                    pass


def run_study(
    path: str | os.PathLike,
    *,
    executor: str,
    workers: int | None = None,
    only: Sequence[str] = (),
    attacks: Sequence[str] = (),
    device: str | None = None,
    cluster: dict | None = None,
    say: Say = print,
    on_plan: Callable[[list[CellPlan]], None] | None = None,
    poll: float | None = None,
) -> RunSummary:
    """run_experiment's work as jobs of ``executor`` (gpus, slurm or debug); ``cluster``:
    flags over the file's [executor] table (partition, account, time, gpus_per_job,
    cpus_per_task, mem)."""
    t0 = time.perf_counter()
    if workers is not None and workers < 1:
        raise RobustError(f"--workers must be >= 1, got {workers}")
    exp = load_experiment(path, device=device)
    chosen = select_cells(exp, only)
    select_attacks(exp, attacks)
    settings = exp.cluster.merged(**(cluster or {}))
    pool = make_pool(executor, exp, settings, workers)  # first: it says so when submitit is missing
    from .jobs import CellJob  # deferred: optional dependency (jobs.py imports submitit)

    bundle = check_with_data(exp)
    plan = [p for p in make_plan(exp, bundle, exp.cells) if p.cell in chosen]
    if on_plan is not None:
        on_plan(plan)
    summary = RunSummary(exp, plan)
    cpu_slots = isinstance(pool, WorkerPool) and all(not s for s in pool.slots)
    threads = (
        max(1, (os.cpu_count() or 1) // len(pool.slots)) if cpu_slots and "OMP_NUM_THREADS" not in os.environ else None
    )

    def make_job(cell: str, stage: str) -> CellJob:
        # the file as it was given: jobs work in this folder, and records name the file the same way
        return CellJob(os.fspath(path), cell, stage, os.getcwd(), device, tuple(attacks), threads)

    with RunLock(exp.runs):
        todo = [p for p in plan if not p.finished]
        log = RunLog(exp.log, say, held=not todo)  # a finished study logs nothing unless its report changes
        study = Study(exp, pool, log, summary, make_job, poll if poll is not None else pool.poll_s)
        try:
            log(
                f"experiment {exp.name} ({exp.file}): {plural(len(plan), 'cell')}"
                + (f" matching --only {' '.join(only)}" if only else "")
                + f", {len(todo)} with work to do; executor {executor}: {pool.describe()}; job logs and states in "
                f"{jobs_dir(exp.runs)}"
            )
            study.plan_tasks(plan)
            study.run()
            write_report(exp, log, summary)
            keep_log_if_changed(log, summary)
            log(
                f"experiment {exp.name}: trained {plural(len(summary.trained), 'cell')}, wrote "
                f"{plural(sum(summary.evaluated.values()), 'evaluation record')}, report {summary.report_status}"
                + (f"; {plural(len(summary.failed), 'cell')} failed" if summary.failed else "")
            )
        except KeyboardInterrupt:
            if executor == "slurm":
                log(
                    "interrupted; the submitted jobs go on in Slurm's queue: run the same command to follow them "
                    "and write the report, or scancel them",
                    show=False,
                )
            else:
                study.cancel()
                log("interrupted; run the same command again to resume", show=False)
            raise
        except BaseException as e:
            log.keep()
            log(f"stopped by an error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", show=False)
            raise
        finally:
            summary.seconds = time.perf_counter() - t0
            summary.logged = log.kept
            log.close()
    if summary.failed:
        name, msg = next(iter(summary.failed.items()))
        raise RobustError(
            f"{len(summary.failed)} of {plural(len(plan), 'cell')} failed "
            f"({', '.join(summary.failed)}): {name}: {msg}; see {exp.log}; the same command retries "
            "them"
        )
    if summary.report_status.startswith("failed"):
        raise RobustError(f"the report was not written: {summary.report_status[len('failed: ') :]}")
    return summary

"""One job of `robust run --executor gpus|slurm`: one stage (train or eval) of one cell,
run by a worker process or a Slurm job through submitit.

The job reads the experiment file again and plans its cell from what is on disk,
under the cell's lock, exactly as a local run plans it: a training cut off (killed
worker, preempted or timed-out Slurm job) resumes from last.pth, and an evaluation
runs only what the results store lacks. Its progress lines go to RUNS/.jobs/<cell>.log
and its state to RUNS/.jobs/<cell>.<stage>.json (job_state.py).

A job of several tasks (``gpus_per_job`` > 1) is one torchrun-style DDP run: every task
joins the process group through the variables submitit's TorchDistributedEnvironment
exports; rank 0 alone takes the lock and writes state, log, files and records."""

from __future__ import annotations

import os
import traceback
from contextlib import nullcontext
from dataclasses import dataclass

import submitit
import torch

from ..errors import RobustError
from ..results import ResultsStore
from .data_checks import check_with_data
from .execute import RunSummary, evaluate_cell, train_cell
from .job_state import CellLock, cell_log, here, write_state
from .journal import RunLog
from .plan import EvalIndex, plan_cell, select_attacks, split_sizes
from .schema import load_experiment


def _quiet(_msg: str, *, show: bool = True) -> None:
    pass


def _error_line(e: BaseException) -> str:
    if isinstance(e, KeyboardInterrupt):
        return "interrupted (cancelled or stopped)"
    text = str(e).splitlines()[0] if str(e) else ""
    return text if isinstance(e, RobustError) else f"{type(e).__name__}: {text}"


@dataclass
class CellJob(submitit.helpers.Checkpointable):
    """``CellJob(...)()`` runs the stage; on a Slurm timeout or preemption submitit
    requeues the same call (Checkpointable), which resumes from what is on disk."""

    file: str  # the experiment file, relative to cwd or absolute
    cell: str
    stage: str  # 'train' | 'eval'
    cwd: str  # where `robust run` ran: the file's paths are shown relative to it
    device: str | None = None
    attacks: tuple[str, ...] = ()
    threads: int | None = None  # CPU workers share the cores

    def __call__(self) -> dict:
        os.chdir(self.cwd)
        env = submitit.JobEnvironment()
        if env.num_tasks > 1:  # several GPUs: one DDP process per task, as torchrun would start them
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        if self.threads:
            torch.set_num_threads(self.threads)
        main = int(os.environ.get("RANK", "0") or 0) == 0
        exp = load_experiment(self.file, device=self.device)
        select_attacks(exp, self.attacks)
        cell = next((c for c in exp.cells if c.name == self.cell), None)
        if cell is None:
            raise RobustError(f"cell {self.cell} is no longer in {self.file}")
        with CellLock(exp.runs, cell.name) if main else nullcontext():
            log = RunLog(cell_log(exp.runs, cell.name), print) if main else _quiet
            if main:
                write_state(exp.runs, cell.name, self.stage, "running", job_id=env.job_id, **here())
            log(f"experiment {exp.name} ({exp.file}): cell {cell.name}, {self.stage} job {env.job_id}")
            try:
                summary = self._run(exp, cell, log)
            except BaseException as e:
                if main:
                    log(f"{cell.name}: FAILED: {_error_line(e)}")
                    log("".join(traceback.format_exception(e)).rstrip(), show=False)
                    write_state(
                        exp.runs,
                        cell.name,
                        self.stage,
                        "failed",
                        job_id=env.job_id,
                        error=_error_line(e),
                        log=str(log.path),
                        **here(),
                    )
                raise
            finally:
                if main:
                    log.close()
            if main:
                # what was done goes with the state: the orchestrator reads it there, not from submitit's result
                write_state(
                    exp.runs,
                    cell.name,
                    self.stage,
                    "done",
                    job_id=env.job_id,
                    log=str(log.path),
                    trained=summary.trained,
                    evaluated=summary.evaluated,
                    **here(),
                )
        return {"trained": summary.trained, "evaluated": summary.evaluated}

    def _run(self, exp, cell, log) -> RunSummary:
        bundle = check_with_data(exp, [cell])
        store = ResultsStore(exp.results)
        p = plan_cell(exp, cell, EvalIndex(store), split_sizes(bundle))
        summary = RunSummary(exp, [p])
        if self.stage == "train":
            if p.train != "done" or not p.train_record:
                train_cell(exp, p, bundle, store, log, summary)
            else:
                log(f"{cell.name}: already trained ({p.train_text()})")
        else:
            if p.train != "done":
                raise RobustError(
                    f"{cell.name}: its training has not finished ({p.train_text()}); "
                    "the same `robust run` command trains it first"
                )
            evaluate_cell(exp, cell, p.todo, p.corruptions == "todo", bundle, store, log, summary)
        return summary

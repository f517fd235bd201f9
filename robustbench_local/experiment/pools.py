"""Where the jobs of `robust run --executor gpus|slurm|debug` run: a pool per executor,
each handing one job (a jobs.CellJob) to submitit and saying whether a job an earlier
session submitted is still alive.

- WorkerPool (gpus): submitit's LocalExecutor; one job per slot, a slot being the GPUs
  of one worker (CUDA_VISIBLE_DEVICES is set to them) or a CPU worker.
- DebugPool (debug): submitit's DebugExecutor, in this process.
- SlurmPool (slurm): submitit's SlurmExecutor, with the parameters cluster.py builds;
  every job is submitted at once, an evaluation with a dependency on its training."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import RobustError
from ..text import plural
from .cluster import ClusterSettings
from .job_state import jobs_dir, process_gone
from .schema import Experiment

EXECUTORS = ("local", "gpus", "slurm", "debug")
LOCAL_TIMEOUT_MIN = 60 * 24 * 365  # a worker on this machine has no time limit
SLURM_ALIVE = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED"}


def require_submitit(executor: str):
    try:
        import submitit  # deferred: optional dependency (submitit)
    except ImportError:
        raise RobustError(
            f"--executor {executor} needs the submitit package, which is not installed: "
            "pip install submitit (or the project's cluster extra)"
        ) from None
    return submitit


# ----------------------------------------------------------------------------- where jobs run
class WorkerPool:
    """gpus: submitit's LocalExecutor, one job per slot (a slot: a group of GPUs, or a CPU worker)."""

    ahead = False  # an evaluation is submitted only once its training is done
    settle_s = 0.0  # a job's state file is on this machine: final when the job ends
    poll_s = 0.2  # seconds between looks at the workers (a process poll and a small file each)

    def __init__(self, folder: Path, slots: list[tuple[int, ...]]):
        self.submitit = require_submitit("gpus")
        self.folder = folder
        self.slots = slots

    def describe(self) -> str:
        gpus = [",".join(map(str, s)) for s in self.slots if s]
        return f"{plural(len(self.slots), 'worker')} on " + ("GPUs " + " | ".join(gpus) if gpus else "the CPU")

    def submit(self, job, slot: int | None, after=None):
        gpus = self.slots[slot]
        ex = self.submitit.LocalExecutor(self.folder)
        ex.update_parameters(
            timeout_min=LOCAL_TIMEOUT_MIN, gpus_per_node=len(gpus), visible_gpus=gpus, tasks_per_node=max(1, len(gpus))
        )
        return ex.submit(job)

    def alive(self, state: dict, submission: dict) -> bool:
        if state.get("state") == "running":
            return not process_gone(state) and "pid" in state
        return False  # queued for a worker of a session that is gone: nothing will run it

    def job_log(self, job) -> str:
        return str(job.paths.stderr)


class DebugPool(WorkerPool):
    """debug: submitit's DebugExecutor, in this process, one job at a time."""

    def __init__(self, folder: Path):
        self.submitit = require_submitit("debug")
        self.folder = folder
        self.slots = [()]

    def describe(self) -> str:
        return "submitit's debug executor (in this process)"

    def submit(self, job, slot: int | None, after=None):
        return self.submitit.DebugExecutor(self.folder).submit(job)


class SlurmPool:
    """slurm: every job submitted at once; Slurm runs an evaluation after its training."""

    ahead = True
    slots = None
    settle_s = 60.0  # NFS attribute caches may show a job's last write late
    poll_s = 15.0  # each look may ask sacct; submitit's watcher spaces those calls out anyway

    def __init__(self, folder: Path, settings: ClusterSettings, name: str):
        self.submitit = require_submitit("slurm")
        self.folder = folder
        self.settings = settings
        self.name = name
        self._executor()  # no srun: say so before anything is written

    def _executor(self):
        try:
            return self.submitit.SlurmExecutor(self.folder)
        except RuntimeError as e:
            raise RobustError(f"--executor slurm: {e} (run it on the cluster's login node)") from None

    def describe(self) -> str:
        s = self.settings
        where = ", ".join(f"{k} {v}" for k, v in (("partition", s.partition), ("account", s.account)) if v)
        return f"Slurm ({where + ', ' if where else ''}{plural(s.gpus_per_job, 'GPU')} and {s.minutes} min per job)"

    def submit(self, job, slot: int | None, after=None):
        ex = self._executor()  # fresh parameters for each job (a dependency must not carry over)
        ex.update_parameters(**self.settings.slurm_parameters(f"{self.name}-{job.cell}-{job.stage}", after))
        return ex.submit(job)

    def alive(self, state: dict, submission: dict) -> bool:
        job_id = state.get("job_id") or submission.get("job_id")
        if not job_id:
            return False
        try:
            return self.submitit.SlurmJob(self.folder, str(job_id)).state.split()[0] in SLURM_ALIVE
        except Exception:  # sacct unreachable: submit again; the cell lock keeps the two jobs apart
            return False

    def job_log(self, job) -> str:
        return str(job.paths.stdout)


def _visible_gpus() -> list[int]:
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if len(listed) == n and all(v.isdigit() for v in listed):
        return [int(v) for v in listed]  # the workers' CUDA_VISIBLE_DEVICES is set from these
    return list(range(n))


def worker_slots(gpus_per_job: int, workers: int | None) -> list[tuple[int, ...]]:
    """One slot per worker: the GPUs it gets (none: a CPU worker)."""
    visible = _visible_gpus() if gpus_per_job else []
    if not visible:
        if workers is None:
            raise RobustError(
                "--executor gpus: no GPU is visible here; pass --workers N to run N worker processes on the CPU"
            )
        return [()] * workers
    groups = [tuple(visible[i : i + gpus_per_job]) for i in range(0, len(visible) - gpus_per_job + 1, gpus_per_job)]
    if not groups:
        raise RobustError(f"gpus_per_job is {gpus_per_job} but only {plural(len(visible), 'GPU')} visible")
    return [groups[i % len(groups)] for i in range(workers or len(groups))]


def make_pool(executor: str, exp: Experiment, settings: ClusterSettings, workers: int | None):
    folder = jobs_dir(exp.runs) / "submitit"
    if executor == "gpus":
        return WorkerPool(folder, worker_slots(settings.gpus_per_job, workers))
    if executor == "slurm":
        return SlurmPool(folder, settings, exp.name)
    if executor == "debug":
        return DebugPool(folder)
    raise RobustError(f"unknown executor '{executor}'; valid: {', '.join(EXECUTORS)}")

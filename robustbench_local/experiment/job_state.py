"""What the jobs of `robust run --executor gpus|slurm` leave in RUNS/.jobs/, the folder
`robust run --status` reads:

- ``<cell>.<stage>.json`` (stage: train or eval): the state, written atomically. The
  orchestrating `robust run` writes ``queued`` before it submits the job, the job
  itself ``running`` (with its job id, host and pid), then ``done`` or ``failed``
  (with the error); the orchestrator writes ``failed`` for a job that ended without
  saying so (killed, out of memory, cancelled).
- ``<cell>.<stage>.job.json``: the submission (job id, the scheduler's log of the job),
  written by the orchestrator only, so it never races with the job's own writes.
- ``<cell>.log``: the job's progress lines (both stages), as the run log has them.
- ``<cell>.lock``: held by the job working on the cell: one writer per cell folder.

Cell names start with a letter or digit, so no cell's run folder is called .jobs."""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime
from pathlib import Path

from ..errors import RobustError
from ..fileio import write_json
from ..lock import FolderLock

JOBS = ".jobs"
STAGES = ("train", "eval")
STATES = ("queued", "running", "done", "failed")


def jobs_dir(runs: Path) -> Path:
    return Path(runs) / JOBS


def state_path(runs: Path, cell: str, stage: str) -> Path:
    return jobs_dir(runs) / f"{cell}.{stage}.json"


def submission_path(runs: Path, cell: str, stage: str) -> Path:
    return jobs_dir(runs) / f"{cell}.{stage}.job.json"


def cell_log(runs: Path, cell: str) -> Path:
    return jobs_dir(runs) / f"{cell}.log"


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # absent, or never written whole (every write is atomic, so only absent in practice)
    return data if isinstance(data, dict) else None


def write_state(runs: Path, cell: str, stage: str, state: str, **info) -> None:
    """Replace the stage's state (atomically); ``info``: job_id, error, ..."""
    assert state in STATES, state
    rec = {
        "cell": cell,
        "stage": stage,
        "state": state,
        "updated": datetime.now().isoformat(timespec="seconds"),
        **{k: v for k, v in info.items() if v is not None},
    }
    write_json(state_path(runs, cell, stage), rec)


def read_state(runs: Path, cell: str, stage: str) -> dict | None:
    return _read(state_path(runs, cell, stage))


def write_submission(runs: Path, cell: str, stage: str, job_id: str, job_log: str | None) -> None:
    write_json(submission_path(runs, cell, stage), {"job_id": str(job_id), "job_log": job_log})


def read_submission(runs: Path, cell: str, stage: str) -> dict:
    return _read(submission_path(runs, cell, stage)) or {}


def clear(runs: Path, cell: str) -> None:
    """Forget a cell's earlier jobs (a new run is about to queue it again)."""
    for stage in STAGES:
        state_path(runs, cell, stage).unlink(missing_ok=True)
        submission_path(runs, cell, stage).unlink(missing_ok=True)


def here() -> dict:
    """Where a job runs, so that --status can tell a live local worker from a dead one."""
    return {"host": platform.node(), "pid": os.getpid()}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_gone(state: dict) -> bool:
    """True when the state names a process on this host that no longer exists."""
    pid = state.get("pid")
    return state.get("host") == platform.node() and isinstance(pid, int) and not pid_alive(pid)


class CellLock(FolderLock):
    """One job per cell at a time: RUNS/.jobs/<cell>.lock (an flock, dropped by the
    kernel when the holder dies, so a killed worker leaves no stale lock)."""

    def __init__(self, runs: Path, cell: str):
        super().__init__(jobs_dir(runs), "run", f"{cell}.lock")
        self.cell = cell
        self.cell_dir = Path(runs) / cell

    def busy(self, pid: int) -> RobustError:
        who = f"pid {pid}" if pid else "pid unknown"
        return RobustError(
            f"another job ({who}) is working on cell {self.cell} ({self.cell_dir}); wait for it, "
            f"or delete {self.path} if that process is gone"
        )

"""Where the jobs of `robust run --executor slurm` run: the ``[executor]`` table of an
experiment file (overridden by the command's flags), checked, and turned into the
parameters of submitit's SlurmExecutor::

    [executor]
    partition = "gpu"          # sbatch --partition
    account = "my-lab"         # sbatch --account
    time = "12:00:00"          # per job: minutes (720) or [D-]HH:MM:SS
    gpus_per_job = 1           # 0: CPU jobs; more than 1: the cell runs under DDP, one task per GPU
    cpus_per_task = 8
    mem = "32G"                # per node, as sbatch takes it (or a number of GB)
    setup = ["module load cuda/12.4", "source .venv/bin/activate"]   # shell lines before the job

Nothing here talks to a cluster; the parameters are plain data, so what a job will ask
for is known (and testable) before anything is submitted."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from ..errors import RobustError
from ..values import known, string, strings, table
from .source import Problem
from .values import integer

EXECUTOR_KEYS = ("partition", "account", "time", "gpus_per_job", "cpus_per_task", "mem", "setup")
DEFAULT_MINUTES = 24 * 60
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
_MEM = re.compile(r"^\d+(\.\d+)?\s*[KMGT]?B?$", re.IGNORECASE)


@dataclass(frozen=True)
class ClusterSettings:
    partition: str | None = None
    account: str | None = None
    minutes: int = DEFAULT_MINUTES
    gpus_per_job: int = 1
    cpus_per_task: int | None = None
    mem: str | None = None
    setup: tuple[str, ...] = ()

    def merged(self, **flags: Any) -> ClusterSettings:
        """These settings with the flags that were given (None: not given) on top."""
        given = {k: v for k, v in flags.items() if v is not None}
        if "time" in given:
            given["minutes"] = minutes(given.pop("time"), "--time")
        if "mem" in given:
            given["mem"] = memory(given["mem"], "--mem")
        for k in ("gpus_per_job", "cpus_per_task"):
            if k in given and given[k] < (0 if k == "gpus_per_job" else 1):
                raise RobustError(
                    f"--{k.replace('_', '-')} must be >= {0 if k == 'gpus_per_job' else 1}, got {given[k]}"
                )
        return replace(self, **given)

    def slurm_parameters(self, job_name: str, after: str | None = None) -> dict:
        """SlurmExecutor.update_parameters() keywords for one job; ``after``: the id of
        the job that must succeed first (a cell's training, for its evaluation)."""
        tasks = max(self.gpus_per_job, 1)
        params: dict[str, Any] = {
            "job_name": job_name,
            "time": self.minutes,
            "nodes": 1,
            "ntasks_per_node": tasks,
            "stderr_to_stdout": True,
        }
        if self.gpus_per_job:
            params["gpus_per_node"] = self.gpus_per_job
        for key in ("partition", "account", "cpus_per_task", "mem"):
            if getattr(self, key) is not None:
                params[key] = getattr(self, key)
        if self.setup:
            params["setup"] = list(self.setup)
        if after is not None:
            # an evaluation whose training failed is dropped by Slurm instead of waiting forever
            params["dependency"] = f"afterok:{after}"
            params["additional_parameters"] = {"kill-on-invalid-dep": "yes"}
        return params


def minutes(value: Any, where: str) -> int:
    """A time limit: whole minutes, or sbatch's [D-]HH:MM[:SS] / MM:SS forms."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise RobustError(f"{where} must be at least 1 minute, got {value}")
        return value
    m = _TIME.match(str(value).strip()) if isinstance(value, str) else None
    if not m:
        raise RobustError(f"{where} must be minutes (e.g. 720) or [D-]HH:MM:SS (e.g. \"12:00:00\"), got {value!r}")
    days, a, b, c = (int(g) if g is not None else None for g in m.groups())
    if c is not None:  # H:M:S
        total = a * 60 + b + (1 if c else 0)
    elif b is not None:  # with days: H:M; without: M:S, as sbatch reads them
        total = a * 60 + b if days is not None else a + (1 if b else 0)
    else:
        total = a * 60 if days is not None else a
    total += (days or 0) * 24 * 60
    if total < 1:
        raise RobustError(f"{where} must be at least 1 minute, got {value!r}")
    return total


def memory(value: Any, where: str) -> str:
    """Memory per node as sbatch takes it: "32G", "500M", or a number of GB."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return f"{int(value)}G" if value == int(value) else f"{int(value * 1024)}M"
    if isinstance(value, str) and _MEM.match(value.strip()):
        return value.strip().upper().replace(" ", "").removesuffix("B")
    raise RobustError(f"{where} must be a size such as \"32G\" or \"500M\" (or a number of GB), got {value!r}")


def parse_table(raw: Any) -> ClusterSettings:
    """The ``[executor]`` table (absent: the defaults)."""
    if raw is None:
        return ClusterSettings()
    raw = table(("executor",), raw)
    known(("executor",), raw, EXECUTOR_KEYS)
    out: dict[str, Any] = {}
    for key in ("partition", "account"):
        if key in raw:
            out[key] = string(("executor", key), raw[key])
    if "gpus_per_job" in raw:
        out["gpus_per_job"] = integer(("executor", "gpus_per_job"), raw["gpus_per_job"], 0)
    if "cpus_per_task" in raw:
        out["cpus_per_task"] = integer(("executor", "cpus_per_task"), raw["cpus_per_task"], 1)
    for key, parse, field in (("time", minutes, "minutes"), ("mem", memory, "mem")):
        if key in raw:
            try:
                out[field] = parse(raw[key], key)
            except RobustError as e:
                raise Problem(("executor", key), str(e)) from None
    if "setup" in raw:
        out["setup"] = strings(("executor", "setup"), raw["setup"])
    return ClusterSettings(**out)

"""The lock and the log of `robust run`: one run per runs folder at a time, and progress
lines appended, timestamped, to the experiment's log file. The log is only appended to
when it is new, empty, or was written by `robust run` (its first line is a run-log line)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from ..errors import RobustError
from ..lock import FolderLock
from .source import Problem

Say = Callable[[str], None]
LOCK = ".robust-run.lock"
# the first line of every log RunLog wrote: "<ISO time>  experiment <name> (<file>): ..."
_RUN_LOG_FIRST = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}  experiment \S")


def run_log_is_ours(path: Path) -> bool:
    """True for an empty file or one whose first line RunLog wrote."""
    with open(path, "rb") as f:
        head = f.read(4096).decode("utf-8", "replace")
    return not head or bool(_RUN_LOG_FIRST.match(head))


def check_log(log: Path) -> None:
    """The log is appended to: refuse a folder, and a file someone else wrote (their
    text would get our lines), before anything is made."""
    if log.is_dir():
        raise Problem(("log",), f"{log} is a folder; name a file, e.g. {log / 'run.log'}")
    above = next((p for p in log.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise Problem(("log",), f"{above} is a file, so {log} cannot be made; name another place")
    try:
        ours = not log.exists() or run_log_is_ours(log)
    except OSError as e:
        raise Problem(("log",), f"cannot read {log} ({e.strerror or e})") from None
    if not ours:
        raise Problem(
            ("log",),
            f"{log} exists and was not written by `robust run` (its first line is not a "
            "run-log line); name a new file, or move that one away",
        )


class RunLog:
    """Progress lines: appended (timestamped) to the log file and shown via ``say``.
    Each session's first line is "experiment NAME (FILE): ...", which marks the file as
    a run log (run_log_is_ours): only such a file, or a new one, is appended to."""

    def __init__(self, path: Path, say: Say):
        self.path = path
        self.say = say
        if path.is_file() and not run_log_is_ours(path):  # made since the file was checked
            raise RobustError(f"{path} exists and was not written by `robust run`; name a new log file")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "a", encoding="utf-8")

    def __call__(self, msg: str, *, show: bool = True) -> None:
        stamp = datetime.now().isoformat(timespec="seconds")
        for line in str(msg).splitlines() or [""]:
            self._f.write(f"{stamp}  {line}\n")
        self._f.flush()
        if show:
            self.say(msg)

    def close(self) -> None:
        self._f.close()


def RunLock(folder: Path) -> FolderLock:
    """One `robust run` per runs folder at a time (a lock of a dead process is taken over)."""
    return FolderLock(folder, "run", LOCK)

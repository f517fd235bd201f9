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
    a run log (run_log_is_ours): only such a file, or a new one, is appended to.

    ``held=True`` (a run with nothing to do): lines are shown but kept back, and reach
    the file only if ``keep()`` is called (the report changed, or the run failed), so
    re-running a finished study leaves its log, often a committed file, as it was."""

    def __init__(self, path: Path, say: Say, *, held: bool = False):
        self.path = path
        self.say = say
        if path.is_file() and not run_log_is_ours(path):  # made since the file was checked
            raise RobustError(f"{path} exists and was not written by `robust run`; name a new log file")
        self._f = None
        self._held: list[str] | None = [] if held else None
        if not held:
            self._open()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")

    @property
    def kept(self) -> bool:
        """Whether lines go to the file (not held back)."""
        return self._held is None

    def keep(self) -> None:
        """Write the lines held back so far, and every later one as it comes."""
        if self._held is None:
            return
        held, self._held = self._held, None
        self._open()
        self._write(held)

    def _write(self, lines: list[str]) -> None:
        self._f.writelines(lines)
        self._f.flush()

    def __call__(self, msg: str, *, show: bool = True) -> None:
        stamp = datetime.now().isoformat(timespec="seconds")
        lines = [f"{stamp}  {line}\n" for line in str(msg).splitlines() or [""]]
        if self._held is not None:
            self._held.extend(lines)
        else:
            self._write(lines)
        if show:
            self.say(msg)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()


def RunLock(folder: Path) -> FolderLock:
    """One `robust run` per runs folder at a time (a lock of a dead process is taken over)."""
    return FolderLock(folder, "run", LOCK)

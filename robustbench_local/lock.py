"""One writer per folder: `robust train` locks its run folder, `robust run` its runs
folder, so two processes never mix their files.

The lock is an advisory flock on a file in the folder, holding the owner's pid for
the message. The kernel drops it when the process dies, so a kill -9 leaves no stale
lock; where flock is missing (Windows) an exclusive create with a liveness check of
the pid stands in."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import RobustError
from .fileio import make_dirs, remove_empty
from .outputs import cannot_write

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = ".lock"


class FolderLock:
    """``with FolderLock(folder, "train"):`` -- raises a one-line RobustError when
    another `robust <command>` holds ``folder``. Creates the folder if needed and, when
    the lock is released, takes away the folders it created that are still empty (a
    run refused on its inputs leaves no trace). ``option`` names the option that
    chose the folder, for the error when it cannot be created."""

    def __init__(self, folder: str | os.PathLike, command: str, name: str = LOCK_NAME, option: str | None = None):
        self.folder = Path(folder)
        self.path = self.folder / name
        self.command = command
        self.option = option
        self._fd: int | None = None
        self._created: list[Path] = []

    def busy(self, pid: int) -> RobustError:
        who = f"pid {pid}" if pid else "pid unknown"
        return RobustError(
            f"another `robust {self.command}` ({who}) is working in {self.folder}; wait for it, "
            f"or delete {self.path} if that process is gone"
        )

    def __enter__(self) -> FolderLock:
        try:
            if self.folder.exists() and not self.folder.is_dir():
                raise RobustError(f"{self.option + ' ' if self.option else ''}{self.folder} is a file, not a folder")
            self._created = make_dirs(self.folder)
            self._fd = self._take_flock() if fcntl is not None else self._take_exclusive()
        except OSError as e:
            remove_empty(self._created)
            raise cannot_write(self.folder, self.option, e) from None
        except BaseException:
            remove_empty(self._created)
            raise
        return self

    def _take_flock(self) -> int:
        for _ in range(5):
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                raise self.busy(pid) from None
            # the owner may have released (unlinked) the file between our open and flock
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
                return fd
            os.close(fd)
        raise RobustError(f"cannot take the lock {self.path}; try again")

    def _take_exclusive(self) -> int:  # pragma: no cover - without flock
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and alive(pid):
                    raise self.busy(pid) from None
                self.path.unlink(missing_ok=True)
                continue
            os.write(fd, str(os.getpid()).encode())
            return fd
        raise RobustError(f"cannot take the lock {self.path}; try again")

    def __exit__(self, *exc) -> bool:
        if self._fd is not None:
            try:  # unlink while still holding it: a waiting process then sees a new file
                self.path.unlink(missing_ok=True)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None
        remove_empty(self._created)
        return False


def _read_pid(fd: int) -> int:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return int(os.read(fd, 32).decode().strip() or 0)
    except (OSError, ValueError):
        return 0


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (a process of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = ["FolderLock", "LOCK_NAME", "alive"]

"""Output paths: checked before any work starts, and what was computed is kept when
writing it fails at the end.

    ensure_writable_dir(path, "--results")   # before training or attacking
    ensure_writable_file(path, "--save-adv") # a file's folder, and that it is no folder
    save_record(store, record, "--results")  # a full disk keeps the record elsewhere

Every failure is a RobustError of one line naming the path, the option and the
system's reason."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import RobustError
from .fileio import make_dirs, remove_empty, write_bytes
from .results import ResultsStore


class UnsavedWork(RobustError):
    """Work that was done but could not all be written; ``records`` holds what the
    caller can still save (e.g. evaluation records when --save-adv failed)."""

    def __init__(self, msg: str, records: list | None = None):
        super().__init__(msg)
        self.records = records or []


def cannot_write(path: str | os.PathLike, option: str | None, err: OSError, metavar: str = "DIR") -> RobustError:
    """The one-line error for an output that cannot be written."""
    reason = err.strerror or str(err)
    if option:
        where = "folder" if metavar == "DIR" else "file"
        return RobustError(
            f"cannot write to {path} ({option}): {reason}; choose another {where} with {option} {metavar}"
        )
    return RobustError(f"cannot write to {path}: {reason}")


def ensure_writable_dir(
    path: str | os.PathLike, option: str | None, metavar: str = "DIR", shown: str | os.PathLike | None = None
) -> Path:
    """Raise a one-line RobustError unless files can be created in folder ``path``.
    Tries for real (creating the folder and a temporary file), since permission bits
    do not tell the whole story (root, read-only mounts, /proc); leaves no trace.
    ``shown``: the path the message names (the option's value, when ``path`` is a
    folder inside it)."""
    path = Path(path)
    if int(os.environ.get("RANK", "0")) != 0:
        return path  # under torchrun only rank 0 writes; the other ranks' probes would race with its own
    shown = path if shown is None else shown
    created: list[Path] = []
    try:
        if path.exists() and not path.is_dir():
            raise RobustError(
                f"cannot write to {shown} ({option}): {path} is a file, not a folder"
                if option
                else f"cannot write to {shown}: {path} is a file, not a folder"
            )
        created = make_dirs(path)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise cannot_write(shown, option, e, metavar) from None
    finally:
        remove_empty(created)
    return path


def ensure_writable_file(path: str | os.PathLike, option: str | None) -> Path:
    """The same for a file to be written at ``path``: it is no folder, and its folder
    takes new files."""
    path = Path(path)
    if path.is_dir():
        raise RobustError(f"{option} {path} is a folder; name a file" if option else f"{path} is a folder")
    ensure_writable_dir(path.parent, option, "FILE")
    return path


def write_output(path: str | os.PathLike, data: bytes, option: str | None) -> Path:
    """Write one output file atomically; a failure (full disk, revoked permission)
    leaves neither the file nor a folder made for it, and is one line."""
    path = Path(path)
    created: list[Path] = []
    try:
        created = make_dirs(path.parent)
        write_bytes(path, data)
    except OSError as e:
        remove_empty(created)
        raise cannot_write(path, option, e, "FILE") from None
    return path


# ----------------------------------------------------------------------------- records that could not be written
def unsaved_root() -> Path:
    """Where records go that could not be written to their results folder:
    $ROBUST_CACHE/unsaved, else ~/.cache/robustbench_local/unsaved."""
    env = os.environ.get("ROBUST_CACHE")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "robustbench_local"
    return base / "unsaved"


def save_record(store: Any, record: dict, option: str = "--results") -> Path:
    """store.add(record); when that fails with an OSError the record is written to
    the fallback folder (same file name, so it can be moved into the store as it is)
    and a RobustError names both places."""
    try:
        return store.add(record)
    except OSError as e:
        failure = e
    for root in (unsaved_root(), Path(tempfile.gettempdir()) / "robustbench_local-unsaved"):
        try:
            kept = ResultsStore(root).add(record)
        except OSError:
            continue
        raise RobustError(
            f"could not write the record to {store.records_dir} ({option}): "
            f"{failure.strerror or failure}; it was kept in {kept}: move it into "
            f"{store.records_dir} once there is room"
        ) from None
    raise RobustError(
        f"could not write the record to {store.records_dir} ({option}): {failure.strerror or failure}, "
        f"nor to {unsaved_root()}; free some space and run the command again"
    ) from None


__all__ = [
    "UnsavedWork",
    "cannot_write",
    "ensure_writable_dir",
    "ensure_writable_file",
    "save_record",
    "unsaved_root",
    "write_output",
]

"""Atomic writes: a temp file in the same folder, then rename, so a crash never
leaves a half-written checkpoint, record or report behind."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .errors import RobustError


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renames it over ``path`` on success,
    deletes it on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _temp_beside(path)
    try:
        yield tmp_path
        _publish(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _temp_beside(path: Path) -> Path:
    """An empty temporary file in ``path``'s folder (the rename into place stays on one
    file system), named so that leftovers of a crash are recognisable: .NAME.*.tmp."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def _publish(tmp: Path, path: Path) -> None:
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file normal permissions
    os.replace(tmp, path)


def make_dirs(path: Path) -> list[Path]:
    """mkdir -p that returns the folders it created, outermost first (so a caller can
    take them away again and leave no trace)."""
    missing = []
    p = Path(path)
    while not p.exists() and not p.is_symlink() and p != p.parent:
        missing.append(p)
        p = p.parent
    created = []
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:  # another process made it meanwhile: not ours to take away
            continue
        created.append(d)
    return created


def remove_empty(created: list[Path]) -> None:
    """Take away folders make_dirs created, innermost first, where they are still empty."""
    for d in reversed(created):
        try:
            d.rmdir()
        except OSError:
            return


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def _fill(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())  # a full disk shows here, before anything is renamed


def write_files(files: dict[Path, bytes]) -> list[Path]:
    """Write several files as one: every file goes to a temporary file beside its
    target first, and only when all are complete are they renamed into place (in the
    given order). A failure (full disk) removes the temporary files and any folder
    made for them, so the old files stay as they were. Raises the OSError."""
    created: list[Path] = []
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data in files.items():
            path = Path(path)
            created += make_dirs(path.parent)
            tmp = _temp_beside(path)
            staged.append((tmp, path))
            _fill(tmp, data)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        remove_empty(created)
        raise
    for tmp, path in staged:
        _publish(tmp, path)
    return [path for _, path in staged]


def to_jsonable(obj: Any) -> Any:
    """Numbers stay numbers: tensors and numpy scalars become Python floats/ints/lists."""
    import torch  # deferred: start-up time (fileio also serves the report, which never needs torch)

    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def non_finite_field(obj: Any, where: str = "") -> tuple[str, float] | None:
    """The dotted place and value of the first NaN or infinity in ``obj`` (e.g.
    ('attack.eps', inf), ('history[3].val_loss', nan)), or None when all are finite."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return (where or "the value", obj)
    if isinstance(obj, dict):
        items = ((f"{where}.{k}" if where else str(k), v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    for place, v in items:
        found = non_finite_field(v, place)
        if found:
            return found
    return None


def dumps_json(obj: Any, **kw) -> str:
    """Strict JSON text (NaN and Infinity are not JSON): a RobustError names the field."""
    data = to_jsonable(obj)
    try:
        return json.dumps(data, allow_nan=False, **kw)
    except ValueError:
        found = non_finite_field(data)
        if found is None:
            raise
        raise RobustError(
            f"{found[0]} is {found[1]!r}, which JSON cannot hold; only finite numbers are written"
        ) from None


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, dumps_json(obj, indent=2, sort_keys=True) + "\n")

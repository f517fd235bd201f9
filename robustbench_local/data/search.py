"""Where data is looked for, and where a download goes.

Order: --data-root, $ROBUST_DATA, ./data, ../shared/data (both relative to the
current folder), then ../shared/data beside the repository, so the offline copies
are found from any working directory."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# <repo root>/../shared/data, the repo root being the folder that holds the package
REPO_SHARED_DATA = Path(__file__).resolve().parent.parent.parent.parent / "shared" / "data"

# seconds a download may wait on one socket operation before giving up
DOWNLOAD_TIMEOUT = 15.0


def data_search_roots(data_root: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for data, in order, as absolute paths, without repeats.
    Folders that do not exist are kept: error messages name them as searched."""
    candidates: list[Path] = []
    if data_root is not None:
        candidates.append(Path(data_root).expanduser())
    env = os.environ.get("ROBUST_DATA")
    if env:
        candidates.append(Path(env).expanduser())
    candidates += [Path("data"), Path("..") / "shared" / "data", REPO_SHARED_DATA]
    roots: list[Path] = []
    seen: set[Path] = set()
    for c in candidates:
        p = Path(os.path.abspath(c))
        key = p.resolve() if p.exists() else p
        if key not in seen:
            seen.add(key)
            roots.append(p)
    return roots


def download_root(data_root: str | os.PathLike | None = None) -> Path:
    """Where a download is saved: --data-root, else $ROBUST_DATA, else ./data (the first
    of these that is given and writable or creatable)."""
    options = [data_root, os.environ.get("ROBUST_DATA") or None, "data"]
    for opt in options:
        if opt is None:
            continue
        p = Path(os.path.abspath(Path(opt).expanduser()))
        probe = p
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        if os.access(probe, os.W_OK):
            return p
    return Path(os.path.abspath("data"))


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def download_into(target: Path, folder: str, fetch: Callable[[Path], None]) -> Path:
    """Runs ``fetch(tmpdir)``, which must leave ``tmpdir/folder`` complete, then moves that
    folder to ``target/folder``. A failure leaves nothing behind (no partial archive, and
    ``target`` itself is removed again if this call created it and it is still empty).
    Raises OSError/RuntimeError/ValueError from the fetch (no network, bad checksum)."""
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=target))
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT):
            fetch(tmp)
        src = tmp / folder
        if not src.is_dir():
            raise RuntimeError(f"the download did not contain {folder}/")
        dest = target / folder
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
        return dest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if created:
            try:
                target.rmdir()  # only succeeds if nothing was saved
            except OSError:
                pass

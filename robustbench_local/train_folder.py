"""A training run's folder: its name, the checks before a new run or a resume writes
into it (two runs never share a folder), the one-writer lock, history.csv, and the
one-line error when it cannot be written."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from .checkpoint import read_checkpoint
from .errors import RobustError
from .fileio import to_jsonable, write_json, write_text
from .lock import FolderLock
from .specs import TrainSpec

if TYPE_CHECKING:  # only for annotations: train_setup.py imports this module
    from .train_setup import Run

# options that may change when resuming: more epochs, another device, other patience;
# compiling changes no number
RESUMABLE_CHANGES = ("epochs", "device", "patience", "compile", "out")


def run_folder(spec: TrainSpec) -> Path:
    """--out, or runs/<dataset>-<model>-<method>[-adv]-s<seed>."""
    return Path(spec.out) if spec.out else Path("runs") / spec.run_name()


def _holds_run(out: Path) -> bool:
    return any((out / name).exists() for name in ("last.pth", "best.pth", "history.csv"))


def first_epoch_leftovers(out: Path) -> list[Path]:
    """What a run cut off inside its first epoch leaves: best.pth and config.json
    (last.pth and history.csv are written after best.pth at every epoch's end), and
    temporary files of interrupted writes. Nothing in them can be resumed. Empty
    when the folder holds last.pth or history.csv: a run that finished an epoch."""
    if not out.is_dir() or (out / "last.pth").exists() or (out / "history.csv").exists():
        return []
    found = [out / n for n in ("best.pth", "config.json") if (out / n).exists()]
    return found + sorted(
        p for n in ("best.pth", "last.pth", "config.json", "history.csv") for p in out.glob(f".{n}.*.tmp")
    )


def fresh_folder(out: Path, spec: TrainSpec) -> list[Path]:
    """Check that ``out`` may receive a new run of ``spec``; returns the leftovers of a
    first epoch that never finished (to be removed). Another configuration's run is
    named by its differing options: two runs never share a folder."""
    if (out / "last.pth").is_file():
        try:
            saved = read_checkpoint(out / "last.pth")["meta"].get("spec") or {}
            diffs = spec_differences(saved, spec.to_dict())
        except RobustError:
            diffs = []
        if diffs:
            raise RobustError(
                f"{out} holds a run trained with other options ({'; '.join(diffs[:4])}"
                f"{' ...' if len(diffs) > 4 else ''}); pass --out DIR for a new run, or delete "
                f"{out} to start over"
            )
        raise RobustError(f"{out} already holds a run; pass --resume to continue it or --out DIR for a new one")
    if _holds_run(out) and (out / "history.csv").exists():
        raise RobustError(
            f"{out} holds a run with no last.pth (deleted?), so nothing to resume, and its best.pth "
            f"is kept; pass --out DIR for a new run, or delete {out} to start over"
        )
    return first_epoch_leftovers(out)


def lock_folder(spec: TrainSpec):
    """One `robust train` per run folder: the lock is taken by the process that writes
    (rank 0 under torchrun, which sets RANK before any process group exists)."""
    if int(os.environ.get("RANK", "0") or 0) != 0:
        return nullcontext()
    return FolderLock(run_folder(spec), "train", option="--out")


def cannot_write(out_dir: Path, e: OSError) -> RobustError:
    then = "continue with --resume" if (out_dir / "last.pth").is_file() else "run the same command again"
    return RobustError(f"cannot write to {out_dir} (--out): {e.strerror or e}; once that is fixed, {then}")


def spec_differences(saved: dict, current: dict) -> list[str]:
    """'key old -> new' for every option (nested keys dotted) that differs between a
    saved run's spec and this one, leaving out RESUMABLE_CHANGES."""
    saved, current = to_jsonable(saved), to_jsonable(current)
    # a run saved before an option existed ran with that option's default
    saved = {**{k: v for k, v in to_jsonable(TrainSpec().to_dict()).items() if k not in saved}, **saved}
    diffs = []

    def walk(a, b, prefix):
        for k in sorted(set(a) | set(b)):
            if not prefix and k in RESUMABLE_CHANGES:
                continue
            va, vb = a.get(k), b.get(k)
            if isinstance(va, dict) and isinstance(vb, dict):
                walk(va, vb, f"{prefix}{k}.")
            elif va != vb:
                diffs.append(f"{prefix}{k} {va!r} -> {vb!r}")

    walk(saved, current, "")
    return diffs


def write_history(path: Path, history: list[dict]) -> None:
    """history.csv: one row per epoch, every column any row has, floats to 6 digits."""
    columns: list[str] = []
    for row in history:
        columns += [c for c in row if c not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text(path, buf.getvalue())


def start_folder(run: Run, say: Callable[[str], None]) -> None:
    """As training starts (rank 0): removes what a first epoch that never finished left,
    creates the folder and writes config.json; every later file is written atomically."""
    if run.leftovers:
        say(f"removing {', '.join(p.name for p in run.leftovers)} left by a first epoch that never finished")
        for f in run.leftovers:
            f.unlink(missing_ok=True)
    run.out_dir.mkdir(parents=True, exist_ok=True)
    write_json(run.out_dir / "config.json", {"spec": run.spec.to_dict(), "resolved": run.resolved()})

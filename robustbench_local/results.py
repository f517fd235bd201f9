"""ResultsStore: the only writer of records. One JSON file per record, written
atomically, numbers as numbers; a pandas view for reports."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .errors import RobustError
from .fileio import dumps_json, non_finite_field, write_json

SCHEMA_VERSION = 1
KINDS = ("eval", "train", "corruption")


def pack_flags(flags) -> str:
    """Per-point booleans (a tensor or sequence, in the order of the record's points) as
    hex of their packed bits: 2,000 points take 500 characters. Records keep which
    points stayed robust this way, so worst cases can be taken across evaluations."""
    bits = np.asarray(flags.cpu() if hasattr(flags, "cpu") else flags, dtype=bool)
    return np.packbits(bits).tobytes().hex()


def unpack_flags(text: str, n: int):
    """pack_flags' inverse: a bool numpy array of length n."""
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))
    if len(bits) < n or len(bits) - n >= 8:
        raise RobustError(f"robust_flags hold {len(bits)} bits, which does not fit {n} points")
    return bits[:n].astype(bool)


Z95 = 1.959963984540054  # the two-sided 95% normal quantile


def mean_interval(scores, z: float = Z95) -> tuple[float, tuple[float, float]]:
    """Mean of per-point scores in [0, 1] and its normal 95% interval over the points
    (mean +- z standard errors), clipped to [0, 1]; (0, 1) bounds below 2 points."""
    v = np.asarray(scores, dtype=np.float64)
    n = len(v)
    mean = float(v.mean()) if n else 0.0
    if n < 2:
        return mean, (0.0, 1.0)
    half = z * float(v.std(ddof=1)) / n**0.5
    return mean, (max(0.0, mean - half), min(1.0, mean + half))


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval for k successes out of n (well-behaved at 0 and n)."""
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / denom
    # the bounds hold p exactly: at k = 0 (or n) float rounding would put the bound a hair past it
    return (min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)))


class ResultsStore:
    def __init__(self, root: str | Path = "results"):
        self.root = Path(root)
        self.records_dir = self.root / "records"

    def add(self, record: dict) -> Path:
        """Write one record; returns its path. The file name sorts by time and is
        unique by content. Records are strict JSON: a NaN or infinity anywhere is a
        RobustError naming the field, and nothing is written."""
        kind = record.get("kind")
        if kind not in KINDS:
            raise ValueError(f"record kind must be one of {KINDS}, got {kind!r}")
        record = dict(record)
        record.setdefault("schema", SCHEMA_VERSION)
        record.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        try:
            body = dumps_json(record, sort_keys=True)
        except RobustError as e:
            raise RobustError(f"the {kind} record was not written: {e}") from None
        digest = hashlib.sha256(body.encode()).hexdigest()[:10]
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        path = self.records_dir / f"{kind}-{stamp}-{digest}.json"
        write_json(path, record)
        return path

    def paths(self) -> list[Path]:
        if not self.records_dir.is_dir():
            return []
        return sorted(p for p in self.records_dir.glob("*.json") if not p.name.startswith("."))

    def load(self, skip_bad: bool = False, warn=None) -> list[dict]:
        """All records, oldest first. A record that is not strict JSON (truncated,
        NaN or Infinity, as older versions could write) or not a record is an error
        naming the file, or (skip_bad) a warning passed to ``warn``."""
        if not self.records_dir.is_dir():
            raise RobustError(
                f"no results folder at {self.records_dir}; run `robust eval` or `robust train` first, or pass --results DIR"
            )
        out = []
        for p in self.paths():
            try:
                rec = json.loads(p.read_text())
                if not isinstance(rec, dict) or rec.get("kind") not in KINDS:
                    raise ValueError(f"not a record (kind must be one of {', '.join(KINDS)})")
                bad = non_finite_field(rec)
                if bad:
                    word = "NaN" if bad[1] != bad[1] else "Infinity" if bad[1] > 0 else "-Infinity"
                    raise ValueError(f"{bad[0]} is {word}, which is not valid JSON")
            except (ValueError, OSError) as e:
                why = (str(e).splitlines() or [type(e).__name__])[0]
                if isinstance(e, json.JSONDecodeError):
                    why = f"truncated or invalid JSON ({why})"
                msg = f"cannot use record {p}: {why}"
                if not skip_bad:
                    raise RobustError(msg + " (fix or delete it, or pass --skip-bad to leave it out)") from None
                if warn:
                    warn(msg + "; left out")
                continue
            rec["_path"] = str(p)
            out.append(rec)
        if not out:
            raise RobustError(f"the results folder {self.records_dir} holds no records; run `robust eval` first")
        return out

    def find(self, kind: str, **match) -> Iterable[dict]:
        """Records of a kind whose top-level/nested keys match (dotted names allowed)."""
        for p in self.paths():
            try:
                rec = json.loads(p.read_text())
            except (ValueError, OSError):
                continue
            if rec.get("kind") != kind:
                continue
            if all(_dig(rec, k) == v for k, v in match.items()):
                yield rec


def _dig(d: dict, dotted: str):
    cur = d
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur

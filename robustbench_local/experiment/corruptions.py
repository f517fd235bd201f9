"""An experiment file's ``[corruptions]`` table: which corruptions `robust run` measures
for every cell, whether a cell's record is already in the store, and running it.

    [corruptions]
    names = "all"          # all, a family (noise, blur, weather, digital), or names; a string or a list
    severity = "all"       # all, a level 1-5, a range "2-4" or a list [1, 3, 5]
    n = 1000               # points (default: [eval]'s n); split, seed, batch_size likewise
    source = "auto"        # auto | generated | real (CIFAR-10-C .npy files on the data search path)

One record of kind 'corruption' per cell (corruptions/evaluate.py), on the same points
as the attacks when n, split and seed are the same."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..corruptions import SOURCES, evaluate_corruptions, parse_names, parse_severities, require_extra
from ..errors import RobustError
from .source import Problem

KEYS = ("names", "severity", "n", "split", "seed", "batch_size", "source")


@dataclass(frozen=True)
class CorruptionPlan:
    names: tuple[str, ...]
    severities: tuple[int, ...]
    n: int | None
    split: str
    seed: int
    batch_size: int
    source: str

    @property
    def label(self) -> str:
        return f"corruptions ({len(self.names)} x {len(self.severities)})"

    def matches(self, rec: dict, sha: str, n: int) -> bool:
        """Is ``rec`` this plan's record for the checkpoint ``sha`` (n the resolved point count)?"""
        ck, data, about = rec.get("checkpoint") or {}, rec.get("data") or {}, rec.get("corruptions") or {}
        source_ok = self.source == "auto" or about.get("source") == self.source
        return (
            ck.get("sha256") == sha
            and data.get("n") == n
            and data.get("split") == self.split
            and data.get("seed") == self.seed
            and source_ok
            and tuple(about.get("names") or ()) == self.names
            and tuple(about.get("severities") or ()) == self.severities
        )


def parse(raw: Any, eval_defaults: dict) -> CorruptionPlan | None:
    """The [corruptions] table (None when absent); ``eval_defaults`` holds [eval]'s n,
    split, seed and batch_size."""
    if raw is None:
        return None
    try:
        require_extra()
    except RobustError as e:
        raise Problem(("corruptions",), str(e)) from None
    if not isinstance(raw, dict):
        raise Problem(("corruptions",), "must be a table: [corruptions] with names = \"all\"")
    for k in raw:
        if k not in KEYS:
            raise Problem(("corruptions", k), f"unknown key '{k}'; valid: {', '.join(KEYS)}")

    def text(key: str, default: str) -> str:
        v = raw.get(key, default)
        if isinstance(v, list):
            v = ",".join(str(x) for x in v)
        if not isinstance(v, (str, int)) or isinstance(v, bool):
            raise Problem(("corruptions", key), f"must be a string or a list, got {v!r}")
        return str(v)

    try:
        names = parse_names(text("names", "all"))
    except RobustError as e:
        raise Problem(("corruptions", "names"), str(e)) from None
    try:
        severities = parse_severities(text("severity", "all"))
    except RobustError as e:
        raise Problem(("corruptions", "severity"), str(e)) from None
    source = raw.get("source", "auto")
    if source not in SOURCES:
        raise Problem(("corruptions", "source"), f"unknown source {source!r}; valid: {', '.join(SOURCES)}")
    n = raw.get("n", eval_defaults["n"])
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise Problem(("corruptions", "n"), f"must be a positive integer, got {n!r}")
    split = raw.get("split", eval_defaults["split"])
    if split not in ("test", "val"):
        raise Problem(("corruptions", "split"), f"must be test or val, got {split!r}")
    seed = raw.get("seed", eval_defaults["seed"])
    batch = raw.get("batch_size", eval_defaults["batch_size"])
    for key, v, low in (("seed", seed, 0), ("batch_size", batch, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise Problem(("corruptions", key), f"must be an integer >= {low}, got {v!r}")
    return CorruptionPlan(names, severities, n, split, seed, batch, source)


def run(plan: CorruptionPlan, checkpoint, bundle, *, device: str, log, name: str) -> dict:
    """Measures one cell's checkpoint; returns its record."""
    log(f"{name}: {plan.label} on {plan.n or 'all'} {plan.split} points (seed {plan.seed})")
    return evaluate_corruptions(
        str(checkpoint),
        plan.names,
        plan.severities,
        bundle,
        n=plan.n,
        split=plan.split,
        seed=plan.seed,
        batch_size=plan.batch_size,
        device=device,
        source=plan.source,
        log=log,
        name=name,
    )

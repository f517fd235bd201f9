"""The cells of an experiment file: ``[train]`` defaults, then each ``[[cells]]`` entry's
keys, then the values of its grid (``[grid]`` and ``[cells.grid]``), merged into one
TrainSpec per cell, with the key each field came from for error messages.

``seeds = [0, 1, 2]`` (in ``[train]`` or a ``[[cells]]`` entry) makes one cell per
training seed: NAME for seed 0 (so a study that trained seed 0 under NAME keeps its run
folder and records), NAME-s1, NAME-s2 for the others. A grid over ``seed`` does the same
with its own names (NAME-seed=1). Either way the cells share a group, NAME, which their
records carry so that the report can average over the seeds."""

from __future__ import annotations

import fnmatch
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from ..errors import RobustError
from ..specs import DataSpec, TrainSpec
from ..values import known, string, table
from .source import Path_, Problem, blame, describe_path
from .values import integer


def name_matches(name: str, patterns: Sequence[str]) -> bool:
    """Whether a cell name matches any of these names or globs (--only, an entry's cells)."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


SEEDS = "seeds"  # training seeds, one cell each
TRAIN_KEYS = tuple(f.name for f in fields(TrainSpec) if f.name not in ("data", "out"))
TRAIN_TABLE_KEYS = TRAIN_KEYS + (SEEDS,)  # what [train] may hold
CELL_KEYS = ("name", "grid", SEEDS) + TRAIN_KEYS
CELL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=,-]*$")


@dataclass
class Cell:
    name: str
    spec: TrainSpec
    origin: dict[str, Path_]  # TrainSpec field -> where in the file it was set
    path: Path_  # the [[cells]] entry
    group: str = ""  # the name without its seed part, shared by the cells of one method that differ only in seed

    def __post_init__(self) -> None:
        self.group = self.group or self.name

    @property
    def seed(self) -> int:
        return self.spec.seed

    def record_fields(self) -> dict:
        """What an evaluation record keeps of its cell: the name, the group and the training seed."""
        return {"cell": self.name, "group": self.group, "seed": self.spec.seed}


def parse_cells(
    cells_raw: Any, train_raw: dict, top_grid: list, data: DataSpec, device: str | None, names: dict[tuple, str]
) -> list[Cell]:
    """Every cell of the file (grids expanded); ``top_grid`` holds the leaves of [grid]
    (grid_leaves); ``names`` receives each entry's name, for messages."""
    if cells_raw is None:
        raise Problem(("cells",), "the experiment declares no cells; add [[cells]] entries (one per model/method)")
    if not isinstance(cells_raw, list) or not cells_raw or not all(isinstance(c, dict) for c in cells_raw):
        raise Problem(("cells",), "must be one or more [[cells]] tables")
    cells: list[Cell] = []
    seen: dict[str, Path_] = {}
    defaults = {k: v for k, v in train_raw.items() if k != SEEDS}
    for i, entry in enumerate(cells_raw):
        cpath = ("cells", i)
        if isinstance(entry.get("name"), str):
            names[cpath] = entry["name"]
        known(cpath, entry, CELL_KEYS)
        grid = top_grid + grid_leaves(cpath + ("grid",), table(cpath + ("grid",), entry.get("grid", {})))
        # a cell grid key replaces the same key of the top-level grid
        by_key: dict[tuple, tuple] = {}
        for keys, values, origin in grid:
            by_key[keys] = (keys, values, origin)
        grid = list(by_key.values())
        overrides = {k: v for k, v in entry.items() if k not in ("name", "grid", SEEDS)}
        seeds = cell_seeds(cpath, entry, train_raw)
        seed_grid = next((origin for keys, _values, origin in grid if keys == ("seed",)), None)
        if seeds and seed_grid is not None:
            raise Problem(
                seeds[0][1],
                f"the grid over seed ({'.'.join(map(str, seed_grid))}) already makes one "
                "cell per seed; keep the seeds list or the grid, not both",
            )
        combos = itertools.product(*[[(g, v) for v in g[1]] for g in grid]) if grid else [()]
        for combo in combos:
            for seed in seeds or [None]:
                cell = make_cell(cpath, entry, defaults, overrides, combo, data, device, seed)
                if cell.name in seen:
                    raise Problem(
                        cpath + ("name",),
                        f"cell name '{cell.name}' is used twice (also by "
                        f"{describe_path(seen[cell.name], names)}); give each cell its own name",
                    )
                seen[cell.name] = cpath
                cells.append(cell)
    return cells


def cell_seeds(cpath: Path_, entry: dict, train_raw: dict) -> list[tuple[int, Path_]]:
    """(seed, where) for each training seed of a [[cells]] entry's ``seeds`` list, else of
    [train]'s; empty when neither has one, or the entry sets a single ``seed`` of its own."""
    for where, raw in ((cpath, entry), (("train",), train_raw)):
        if SEEDS in raw and "seed" in raw:
            raise Problem(where + (SEEDS,), "set seed (one training seed) or seeds (one cell per seed), not both")
        if "seed" in raw:
            return []
        if SEEDS in raw:
            at = where + (SEEDS,)
            value = raw[SEEDS]
            if not isinstance(value, list) or not value:
                raise Problem(at, f"must be a list of training seeds such as [0, 1, 2], got {value!r}")
            for v in value:
                integer(at, v, 0)
            if len(set(value)) != len(value):
                raise Problem(at, f"lists a seed twice: {value}")
            return [(v, at) for v in value]
    return []


def build_blamed(build: Callable[..., Any], d: dict, order: Sequence[str], where: Callable[[str], Path_]):
    """``build(**d)``; when it raises, add the keys one at a time (in ``order``) to
    find the one that breaks it, and raise a Problem at that key."""
    own = getattr(build, "KEY", ())  # the spec's own key paths start with it: train.lr
    try:
        return build(**d)
    except RobustError as e:
        problem = blame(e, own, where, d)  # a value error names its key: no search needed
        if problem is not None:
            raise problem from None
        partial: dict = {}
        for k in order:
            if k not in d:
                continue
            partial[k] = d[k]
            try:
                build(**partial)
            except RobustError as e2:
                raise blame(e2, own, where, d) or Problem(where(k), str(e2)) from None
        raise Problem(where(next(iter(d), "")) if d else (), str(e)) from None


def grid_leaves(path: Path_, grid: dict, keys: tuple = ()) -> list[tuple[tuple, list, Path_]]:
    """(key path inside a cell, values, where in the file) for every list in a grid
    table; nested tables (model.kwargs.maps = [...]) are walked."""
    out = []
    for k, v in grid.items():
        p, sub = tuple(path) + (k,), keys + (k,)
        if sub[0] == SEEDS:
            raise Problem(
                p, "a grid varies seed (seed = [0, 1, 2]); a seeds list belongs in [train] or a [[cells]] entry"
            )
        if sub[0] not in TRAIN_KEYS:
            raise Problem(p, f"unknown key '{sub[0]}'; a grid may vary: {', '.join(TRAIN_KEYS)}")
        if isinstance(v, dict):
            out += grid_leaves(p, v, sub)
        elif isinstance(v, list):
            if not v:
                raise Problem(p, "a grid needs at least one value")
            out.append((sub, v, p))
        else:
            raise Problem(p, f"grid values must be a list of values to try, got {v!r}")
    return out


def _fmt_grid_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "_".join(_fmt_grid_value(x) for x in v)
    if isinstance(v, dict):
        return "_".join(f"{k}{_fmt_grid_value(x)}" for k, x in v.items())
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", str(v))


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _set_path(d: dict, keys: Sequence[str], value: Any) -> None:
    cur = d
    for k in keys[:-1]:
        nxt = cur.get(k)
        if not isinstance(nxt, dict):
            nxt = {} if nxt is None else ({"arch": nxt} if k == "model" and isinstance(nxt, str) else nxt)
            if not isinstance(nxt, dict):
                raise ValueError(k)
            cur[k] = nxt
        cur = nxt
    cur[keys[-1]] = value


def make_cell(
    cpath: Path_,
    entry: dict,
    defaults: dict,
    overrides: dict,
    combo: tuple,
    data: DataSpec,
    device: str | None,
    seed: tuple[int, Path_] | None = None,
) -> Cell:
    """Defaults, then the cell's keys, then the grid values, then ``seed`` (one of a seeds
    list, with where it was set): one TrainSpec."""
    grid_layer: dict = {}
    grid_origin: dict[str, Path_] = {}
    for (keys, _values, origin), value in combo:
        try:
            _set_path(grid_layer, keys, value)
        except ValueError:
            raise Problem(origin, f"cannot set {'.'.join(keys)}: {keys[0]} is not a table") from None
        grid_origin.setdefault(keys[0], origin)
    layers = [
        (defaults, lambda k: ("train", k)),
        (overrides, lambda k: cpath + (k,)),
        (grid_layer, lambda k: grid_origin[k]),
    ]
    merged: dict = {}
    origin: dict[str, Path_] = {}
    for layer, where in layers:
        for k, v in layer.items():
            if k == "model":
                if isinstance(v, str):
                    v = {"arch": v}
                elif not isinstance(v, dict):
                    raise Problem(
                        where(k),
                        f"model must be a name such as \"cnn\" or a table {{arch, kwargs, normalize}}, got {v!r}",
                    )
                old = merged.get("model", {})
                if "arch" in v and v["arch"] != old.get("arch", "cnn"):
                    old = {kk: vv for kk, vv in old.items() if kk != "kwargs"}  # options follow the architecture
                v = _deep_merge(old, v)
            elif k in ("method_kwargs", "adv_kwargs") and isinstance(v, dict) and isinstance(merged.get(k), dict):
                v = _deep_merge(merged[k], v)
            elif k in ("method", "adv") and v != merged.get(k, "standard" if k == "method" else "none"):
                merged.pop(f"{k}_kwargs", None)  # options follow the method
            merged[k] = v
            origin[k] = where(k)
    if seed is not None:
        merged["seed"], origin["seed"] = seed
    merged["data"] = data
    if device is not None:
        merged["device"] = device
    name = entry.get("name")
    if name is not None:
        name = string(cpath + ("name",), name)
    else:
        method, adv = merged.get("method", "standard"), merged.get("adv", "none")
        name = str(method) + ("" if adv == "none" else f"-{adv}")
    group = name
    for (keys, _values, _origin), value in combo:
        name += f"-{keys[-1]}={_fmt_grid_value(value)}"
        group += "" if keys == ("seed",) else f"-{keys[-1]}={_fmt_grid_value(value)}"
    if seed is not None and seed[0] != 0:  # seed 0 keeps the plain name: a study trained once keeps its runs
        name += f"-s{seed[0]}"
    if not CELL_NAME.match(name):
        raise Problem(
            cpath + ("name",),
            f"cell name '{name}' must start with a letter or digit and hold only "
            "letters, digits and _ . + = , - (it names the run folder)",
        )
    where = lambda k: origin.get(k, cpath)
    spec = build_blamed(TrainSpec, merged, [f.name for f in fields(TrainSpec)], where)
    return Cell(name, spec, origin, cpath, group)

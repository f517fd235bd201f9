"""`robust run FILE`: an experiment file (TOML) -> train, evaluate and report every
cell, skipping what is already done, so a cut-off run resumes with the same command.

The file (every table is optional; paths are relative to the file's own folder)::

    name = "quick"                    # default: the file's stem
    notes = "..."                     # shown with the report (when the report takes notes)
    runs = "runs/quick"               # checkpoints: RUNS/<cell>/{best,last}.pth; default runs/<name>
    results = "runs/quick/results"    # records (RESULTS/records/) and the report; default results
    log = "runs/quick/run.log"        # progress, appended; default RESULTS/<name>.log
    outside_paths = false             # true: paths may be absolute or leave the file's folder (../)

    [data]                            # DataSpec: dataset, data_root, image_size, subset,
    dataset = "cifar10"               #   val_fraction, augment, split_seed
    subset = 3000

    [train]                           # defaults for every cell: any TrainSpec field but data/out
    epochs = 2                        #   (model = "cnn" or a table {arch, kwargs, normalize})
    model = { arch = "cnn", kwargs = { maps = "16,32,64" } }

    [grid]                            # optional, for every cell: key (dotted path) -> list of values
    seed = [0, 1]

    [[cells]]                         # one model/method; keys override [train]
    name = "pgd-at"                   # default: method[-adv]; grid cells get -key=value parts
    adv = "pgd"
    adv_kwargs = { eps = 0.0313, k = 3, eta = 0.002 }
    [cells.grid]                      # this cell's grid: the cartesian product of the lists
    lr = [0.05, 0.1]
    model.kwargs.skip = [false, true]

    [eval]                            # defaults for every attack, and: cascade, checks,
    n = 500                           #   check_convergence, device
    [[attacks]]                       # name, norm, eps, eta, eps_space, sweep, eot, n, split, seed,
    name = "pgd"                      #   batch_size, and the attack's own options by name (or by
    k = 10                            #   CLI flag: fgsm_rs, aa_version); `robust attacks` lists them
    eps = 0.0313
    eta = 0.002
    sweep = [0.0078, 0.0157, 0.0627]  # more radii; at each the step keeps the ratio eta/eps
                                      # (eta unset: each attack's rule, e.g. PGD 2.5*eps/k, at each radius)

    [report]                          # enabled, out, dataset, attack, checkpoint, skip_bad
    checkpoint = ["runs/quick/*"]

A method's options follow the method: ``method_kwargs`` set in [train] are dropped
for a cell that switches to another method (likewise ``adv_kwargs`` with ``adv``
and ``model.kwargs`` with ``model.arch``). ``eps`` may also be a list (every
radius with the same ``eta``, as ``robust eval --eps a,b`` does).

Paths: ``runs``, ``results``, ``log`` and ``[report] out`` resolve against the folder
of the file, so a study writes to the same places from whatever folder it is run. An
absolute path, or one that leaves that folder (``../``), is refused unless the file
says ``outside_paths = true``: without the opt-in, a file from elsewhere (or a slip)
could write checkpoints, records or log lines wherever the user may write, over
another study's results for instance. experiments/quick.toml opts in to keep writing
to runs/quick/ at the repository root. The log is appended to only when it is new,
empty, or was written by `robust run` (its first line is a run-log line); a folder
or anyone else's file is refused before anything is made.

What a run does, in order: check the whole file and everything it names (one line
naming the file, the key and where possible the line; nothing is written), then
per cell: train (a run whose last.pth says it finished is skipped; a cut-off one
resumes from last.pth), evaluate each attack and radius whose record (same
checkpoint sha256, attack, eps, n, split, seed) is not yet in the store (an attack
cut off part-way resumes at its last finished batch, kept in the cell's
eval-partial/ folder), then write the report (only if its bytes changed).
"""
from __future__ import annotations

import fnmatch
import itertools
import json
import math
import os
import re
import time
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

from . import corruption_runs, distributed
from .corruption_runs import CorruptionPlan
from .errors import RobustError
from .lock import FolderLock
from .specs import DataSpec, TrainSpec
from .text import acc_text, method_label, plural

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

Say = Callable[[str], None]
Path_ = tuple  # a key path inside the file, e.g. ("cells", 1, "adv_kwargs", "k")

TRAIN_KEYS = tuple(f.name for f in fields(TrainSpec) if f.name not in ("data", "out"))
CELL_KEYS = ("name", "grid") + TRAIN_KEYS
# keys every attack entry takes; its own options come from the attack registry (attack_keys)
COMMON_ATTACK_KEYS = ("name", "norm", "eps", "eta", "eps_space", "sweep", "eot", "n", "split", "seed", "batch_size")
EVAL_ONLY_KEYS = ("cascade", "checks", "check_convergence", "device")
REPORT_KEYS = ("enabled", "out", "dataset", "attack", "checkpoint", "skip_bad")
TOP_KEYS = ("name", "notes", "runs", "results", "log", "outside_paths", "data", "train", "grid", "cells", "eval",
            "attacks", "corruptions", "report")
# the defaults `robust eval` uses, so a file and the CLI mean the same thing
# (eta None: each attack derives its step from eps, PGD 2.5*eps/k; see AttackSpec.step_rule)
# (an attack option not given takes the attack's own default, as on the CLI)
EVAL_DEFAULTS = {"norm": "linf", "eps": 0.0313, "eta": None, "eps_space": "normalized", "eot": 1, "n": 1000,
                 "split": "test", "seed": 0, "batch_size": 256, "cascade": False, "checks": True,
                 "check_convergence": False}
CELL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=,-]*$")
LOCK = ".robust-run.lock"


# ============================================================================ file locations
class Problem(RobustError):
    """A bad value at a key path of the experiment file; formatted with the file,
    the key and its line by ``load_experiment``."""

    def __init__(self, path: Path_, msg: str):
        super().__init__(msg)
        self.path = tuple(path)
        self.msg = msg


_BARE = r"[A-Za-z0-9_-]+|\"(?:[^\"\\]|\\.)*\"|'[^']*'"
_DOTTED = rf"(?:{_BARE})(?:\s*\.\s*(?:{_BARE}))*"
_HEADER = re.compile(rf"^\s*(\[\[|\[)\s*({_DOTTED})\s*(\]\]|\])\s*(#.*)?$")
_KEYLINE = re.compile(rf"^\s*({_DOTTED})\s*=")
_STRINGS = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'[^']*'")


def _split_dotted(text: str) -> list[str]:
    return [p.strip().strip("\"'") for p in re.findall(_BARE, text)]


class Source:
    """The lines of a TOML file, indexed by key path (best effort: enough to name
    the line of a key in an error message)."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.lines: dict[tuple, int] = {}
        aot: dict[tuple, int] = {}  # array-of-tables name path -> current index
        table: tuple = ()
        depth = 0  # open brackets of a multi-line array / inline table
        in_ml = None  # inside a multi-line string: its delimiter
        for no, line in enumerate(text.splitlines(), 1):
            if in_ml:
                if in_ml in line:
                    in_ml = None
                continue
            if depth == 0:
                m = _HEADER.match(line)
                if m:
                    parts = _split_dotted(m.group(2))
                    resolved: list = []
                    for i, p in enumerate(parts):
                        resolved.append(p)
                        names = tuple(parts[: i + 1])
                        if names in aot and i < len(parts) - 1:
                            resolved.append(aot[names])
                    if m.group(1) == "[[":
                        names = tuple(parts)
                        aot[names] = aot.get(names, -1) + 1
                        resolved.append(aot[names])
                    table = tuple(resolved)
                    self.lines.setdefault(table, no)
                    continue
                m = _KEYLINE.match(line)
                if m:
                    self.lines.setdefault(table + tuple(_split_dotted(m.group(1))), no)
            for delim in ('"""', "'''"):
                if line.count(delim) % 2 == 1:
                    in_ml = delim
            code = _STRINGS.sub('""', line).split("#", 1)[0]
            depth = max(0, depth + code.count("[") + code.count("{") - code.count("]") - code.count("}"))

    def line(self, path: Path_) -> int | None:
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return None


def _describe_path(path: Path_, names: dict[tuple, str]) -> str:
    """("cells", 1, "adv") -> "key adv of [[cells]] #2 'pgd-at'"."""
    path = tuple(path)
    for i, part in enumerate(path):
        if isinstance(part, int):
            head = f"[[{'.'.join(str(p) for p in path[:i])}]] #{part + 1}"
            name = names.get(path[: i + 1])
            if name:
                head += f" '{name}'"
            rest = ".".join(str(p) for p in path[i + 1:])
            return f"key {rest} of {head}" if rest else head
    return "key " + ".".join(str(p) for p in path)


def read_toml(path: str | os.PathLike) -> tuple[dict, Source]:
    p = Path(path)
    if not p.is_file():
        raise RobustError(f"experiment file {p} does not exist" + (" (it is a folder)" if p.is_dir() else ""))
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RobustError(f"{p}: cannot read the experiment file ({e})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        if m:
            no = int(m.group(1))
            lines = text.splitlines()
            shown = lines[no - 1].strip() if 0 < no <= len(lines) else ""
            what = msg[: m.start()].strip()
            raise RobustError(f"{p}, line {no}, column {m.group(2)}: invalid TOML: {what}"
                              + (f": {shown}" if shown else "")) from None
        raise RobustError(f"{p}: invalid TOML: {msg}") from None
    return data, Source(p, text)


# ============================================================================ small checks
def _table(path: Path_, value: Any) -> dict:
    if not isinstance(value, dict):
        raise Problem(path, f"must be a table (key = value pairs), got {value!r}")
    return value


def _known(path: Path_, table: dict, valid: Sequence[str]) -> None:
    for key in table:
        if key not in valid:
            raise Problem(tuple(path) + (key,), f"unknown key '{key}'; valid keys: {', '.join(valid)}")


def _str(path: Path_, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Problem(path, f"must be a non-empty string, got {value!r}")
    return value


def _bool(path: Path_, value: Any) -> bool:
    if not isinstance(value, bool):
        raise Problem(path, f"must be true or false, got {value!r}")
    return value


def _int(path: Path_, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Problem(path, f"must be an integer, got {value!r}")
    if value < minimum:
        raise Problem(path, f"must be >= {minimum}, got {value}")
    return value


def _positive(path: Path_, value: Any) -> float:
    """A number > 0; '8/255' style strings accepted."""
    from .threat import parse_number

    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Problem(path, f"must be a number such as 0.0313 or \"8/255\", got {value!r}")
    try:
        v = parse_number(value, path[-1] if path else "value")
    except RobustError as e:
        raise Problem(path, str(e)) from None
    if not math.isfinite(v) or v <= 0:
        raise Problem(path, f"must be a finite number > 0, got {value!r}")
    return v


def _choice(path: Path_, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise Problem(path, f"unknown value {value!r}; valid: {', '.join(choices)}")
    return value


def _strings(path: Path_, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise Problem(path, f"must be a string or a list of strings, got {value!r}")
    return tuple(value)


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


def _jsonable(v: Any) -> Any:
    from .fileio import to_jsonable

    return json.loads(json.dumps(to_jsonable(v), sort_keys=True))


# ============================================================================ where the file writes
# the first line of every log RunLog wrote: "<ISO time>  experiment <name> (<file>): ..."
_RUN_LOG_FIRST = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}  experiment \S")


def _place(key: Path_, value: Any, file: Path, outside: bool) -> Path:
    """A path from the file, resolved against the file's folder. Shown relative to the
    working folder when it lies inside it, so messages and records keep short paths."""
    given = Path(_str(key, value)).expanduser()
    folder = os.path.abspath(file.parent)
    target = Path(os.path.normpath(os.path.join(folder, given)))
    if not outside and (given.is_absolute() or not target.is_relative_to(folder)):
        raise Problem(key, f"'{value}' is outside the folder of the experiment file ({file.parent}); "
                           "add outside_paths = true at the top of the file to write there")
    cwd = Path(os.path.abspath(os.getcwd()))
    return target.relative_to(cwd) if target.is_relative_to(cwd) else target


def run_log_is_ours(path: Path) -> bool:
    """True for an empty file or one whose first line RunLog wrote."""
    with open(path, "rb") as f:
        head = f.read(4096).decode("utf-8", "replace")
    return not head or bool(_RUN_LOG_FIRST.match(head))


def _check_log(log: Path) -> None:
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
        raise Problem(("log",), f"{log} exists and was not written by `robust run` (its first line is not a "
                                "run-log line); name a new file, or move that one away")


# ============================================================================ the experiment
@dataclass(frozen=True)
class EvalUnit:
    """One attack at one radius on one set of points: the unit a record stands for."""

    spec: Any  # AttackSpec
    n: int | None  # None: the whole split
    split: str
    seed: int
    batch_size: int
    origin: Path_ = ()  # the [[attacks]] entry
    n_origin: Path_ = ()  # where n was set

    @property
    def key(self) -> tuple:
        return (self.spec, self.n, self.split, self.seed)

    @property
    def label(self) -> str:
        return f"{self.spec.label}@{self.spec.threat.eps:g}"


@dataclass
class Cell:
    name: str
    spec: TrainSpec
    origin: dict[str, Path_]  # TrainSpec field -> where in the file it was set
    path: Path_  # the [[cells]] entry


@dataclass
class Experiment:
    name: str
    file: Path
    source: Source
    notes: str | None
    runs: Path
    results: Path
    log: Path
    data: DataSpec
    cells: list[Cell]
    units: list[EvalUnit]
    cascade: bool
    checks: bool
    check_convergence: bool
    eval_device: str
    report: dict
    names: dict[tuple, str] = field(default_factory=dict)  # entry path -> cell name, for messages
    corruptions: CorruptionPlan | None = None  # the [corruptions] table: one record per cell

    def cell_dir(self, cell: Cell) -> Path:
        return self.runs / cell.name

    def problem(self, path: Path_, msg: str) -> RobustError:
        """A one-line error naming the file, the line (when found) and the key."""
        no = self.source.line(path)
        where = f"{self.file}, line {no}" if no else f"{self.file}"
        return RobustError(f"{where}, {_describe_path(path, self.names)}: {msg}")


def load_experiment(path: str | os.PathLike, *, device: str | None = None) -> Experiment:
    """Parse and check an experiment file without touching data or disk (beyond
    reading the file). ``device`` overrides every training and evaluation device."""
    raw, source = read_toml(path)
    names: dict[tuple, str] = {}
    try:
        return _parse(raw, source, names, device)
    except Problem as e:
        no = source.line(e.path)
        where = f"{source.path}, line {no}" if no else f"{source.path}"
        raise RobustError(f"{where}, {_describe_path(e.path, names)}: {e.msg}") from None


def _parse(raw: dict, source: Source, names: dict, device: str | None) -> Experiment:
    _known((), raw, TOP_KEYS)
    file = source.path
    name = _str(("name",), raw.get("name", file.stem))
    notes = raw.get("notes")
    if notes is not None:
        notes = _str(("notes",), notes).strip()
    outside = _bool(("outside_paths",), raw.get("outside_paths", False))
    runs = _place(("runs",), raw.get("runs", f"runs/{name}"), file, outside)
    results = _place(("results",), raw.get("results", "results"), file, outside)
    log = _place(("log",), raw["log"], file, outside) if "log" in raw else results / f"{name}.log"
    _check_log(log)

    # --- data
    data_raw = _table(("data",), raw.get("data", {}))
    _known(("data",), data_raw, [f.name for f in fields(DataSpec)])
    data = _build_blamed(DataSpec, data_raw, [f.name for f in fields(DataSpec)], lambda k: ("data", k))
    if data.augment is not None:
        from .data import AUGMENT_POLICIES

        _choice(("data", "augment"), data.augment, AUGMENT_POLICIES)

    # --- training defaults and cells
    train_raw = _table(("train",), raw.get("train", {}))
    _known(("train",), train_raw, TRAIN_KEYS)
    if device is not None:
        from .runtime import resolve_device

        resolve_device(device)
    top_grid = _grid_leaves(("grid",), _table(("grid",), raw.get("grid", {})))
    cells_raw = raw.get("cells")
    if cells_raw is None:
        raise Problem(("cells",), "the experiment declares no cells; add [[cells]] entries (one per model/method)")
    if not isinstance(cells_raw, list) or not cells_raw or not all(isinstance(c, dict) for c in cells_raw):
        raise Problem(("cells",), "must be one or more [[cells]] tables")
    cells: list[Cell] = []
    seen: dict[str, Path_] = {}
    for i, entry in enumerate(cells_raw):
        cpath = ("cells", i)
        if isinstance(entry.get("name"), str):
            names[cpath] = entry["name"]
        _known(cpath, entry, CELL_KEYS)
        grid = top_grid + _grid_leaves(cpath + ("grid",), _table(cpath + ("grid",), entry.get("grid", {})))
        # a cell grid key replaces the same key of the top-level grid
        by_key: dict[tuple, tuple] = {}
        for keys, values, origin in grid:
            by_key[keys] = (keys, values, origin)
        grid = list(by_key.values())
        overrides = {k: v for k, v in entry.items() if k not in ("name", "grid")}
        combos = itertools.product(*[[(g, v) for v in g[1]] for g in grid]) if grid else [()]
        for combo in combos:
            cell = _make_cell(cpath, entry, train_raw, overrides, combo, data, device)
            if cell.name in seen:
                raise Problem(cpath + ("name",), f"cell name '{cell.name}' is used twice (also by "
                              f"{_describe_path(seen[cell.name], names)}); give each cell its own name")
            seen[cell.name] = cpath
            cells.append(cell)

    # --- evaluation
    eval_raw = _table(("eval",), raw.get("eval", {}))
    _known(("eval",), eval_raw, tuple(k for k in attack_keys() if k != "name") + EVAL_ONLY_KEYS)
    attacks_raw = raw.get("attacks")
    if attacks_raw is None:
        raise Problem(("attacks",), "the experiment declares no attacks; add [[attacks]] entries "
                      "(e.g. name = \"pgd\")")
    if not isinstance(attacks_raw, list) or not attacks_raw or not all(isinstance(a, dict) for a in attacks_raw):
        raise Problem(("attacks",), "must be one or more [[attacks]] tables")
    units: dict[tuple, EvalUnit] = {}
    for i, entry in enumerate(attacks_raw):
        _known(("attacks", i), entry, attack_keys())
        for unit in _make_units(("attacks", i), entry, eval_raw):
            units.setdefault(unit.key, unit)  # the same attack twice (e.g. a sweep through the main eps) runs once
    cascade = _bool(("eval", "cascade"), eval_raw.get("cascade", EVAL_DEFAULTS["cascade"]))
    checks = _bool(("eval", "checks"), eval_raw.get("checks", EVAL_DEFAULTS["checks"]))
    convergence = _bool(("eval", "check_convergence"),
                        eval_raw.get("check_convergence", EVAL_DEFAULTS["check_convergence"]))
    eval_device = device or eval_raw.get("device", train_raw.get("device", "auto"))
    eval_device = _str(("eval", "device"), eval_device)
    if device is None:
        from .runtime import DEVICES

        if eval_device not in DEVICES and not eval_device.startswith("cuda:"):
            raise Problem(("eval", "device") if "device" in eval_raw else ("train", "device"),
                          f"unknown device '{eval_device}'; valid: {', '.join(DEVICES)}")

    corruptions = corruption_runs.parse(raw.get("corruptions"), {k: eval_raw.get(k, EVAL_DEFAULTS[k]) for k in (
        "n", "split", "seed", "batch_size")}, Problem)

    # --- report
    rep_raw = _table(("report",), raw.get("report", {}))
    _known(("report",), rep_raw, REPORT_KEYS)
    report = {
        "enabled": _bool(("report", "enabled"), rep_raw.get("enabled", True)),
        "out": _place(("report", "out"), rep_raw["out"], file, outside) if "out" in rep_raw else results,
        "skip_bad": _bool(("report", "skip_bad"), rep_raw.get("skip_bad", True)),
        **{k: _strings(("report", k), rep_raw[k]) if k in rep_raw else () for k in ("dataset", "attack", "checkpoint")},
    }
    return Experiment(name, file, source, notes, runs, results, log, data, cells, list(units.values()), cascade,
                      checks, convergence, eval_device, report, names, corruptions)


def _build_blamed(build: Callable[..., Any], d: dict, order: Sequence[str], where: Callable[[str], Path_]):
    """``build(**d)``; when it raises, add the keys one at a time (in ``order``) to
    find the one that breaks it, and raise a Problem at that key."""
    try:
        return build(**d)
    except RobustError as e:
        partial: dict = {}
        for k in order:
            if k not in d:
                continue
            partial[k] = d[k]
            try:
                build(**partial)
            except RobustError as e2:
                raise Problem(where(k), str(e2)) from None
        raise Problem(where(next(iter(d), "")) if d else (), str(e)) from None


def _grid_leaves(path: Path_, table: dict, keys: tuple = ()) -> list[tuple[tuple, list, Path_]]:
    """(key path inside a cell, values, where in the file) for every list in a grid
    table; nested tables (model.kwargs.maps = [...]) are walked."""
    out = []
    for k, v in table.items():
        p, sub = tuple(path) + (k,), keys + (k,)
        if sub[0] not in TRAIN_KEYS:
            raise Problem(p, f"unknown key '{sub[0]}'; a grid may vary: {', '.join(TRAIN_KEYS)}")
        if isinstance(v, dict):
            out += _grid_leaves(p, v, sub)
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


def _make_cell(cpath: Path_, entry: dict, defaults: dict, overrides: dict, combo: tuple, data: DataSpec,
               device: str | None) -> Cell:
    """Defaults, then the cell's keys, then the grid values: one TrainSpec."""
    grid_layer: dict = {}
    grid_origin: dict[str, Path_] = {}
    for (keys, _values, origin), value in combo:
        try:
            _set_path(grid_layer, keys, value)
        except ValueError:
            raise Problem(origin, f"cannot set {'.'.join(keys)}: {keys[0]} is not a table") from None
        grid_origin.setdefault(keys[0], origin)
    layers = [(defaults, lambda k: ("train", k)), (overrides, lambda k: cpath + (k,)),
              (grid_layer, lambda k: grid_origin[k])]
    merged: dict = {}
    origin: dict[str, Path_] = {}
    for layer, where in layers:
        for k, v in layer.items():
            if k == "model":
                if isinstance(v, str):
                    v = {"arch": v}
                elif not isinstance(v, dict):
                    raise Problem(where(k), f"model must be a name such as \"cnn\" or a table "
                                  f"{{arch, kwargs, normalize}}, got {v!r}")
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
    merged["data"] = data
    if device is not None:
        merged["device"] = device
    name = entry.get("name")
    if name is not None:
        name = _str(cpath + ("name",), name)
    else:
        method, adv = merged.get("method", "standard"), merged.get("adv", "none")
        name = str(method) + ("" if adv == "none" else f"-{adv}")
    for (keys, _values, _origin), value in combo:
        name += f"-{keys[-1]}={_fmt_grid_value(value)}"
    if not CELL_NAME.match(name):
        raise Problem(cpath + ("name",), f"cell name '{name}' must start with a letter or digit and hold only "
                      "letters, digits and _ . + = , - (it names the run folder)")
    where = lambda k: origin.get(k, cpath)  # noqa: E731
    spec = _build_blamed(TrainSpec, merged, [f.name for f in fields(TrainSpec)], where)
    return Cell(name, spec, origin, cpath)


def attack_keys() -> tuple[str, ...]:
    """Every key an [[attacks]] entry may hold: the common ones, then each registered
    attack's options by name and by CLI flag."""
    from .attacks import registry

    keys = list(COMMON_ATTACK_KEYS)
    for name in registry.names():
        for key in _option_keys(registry.info(name)):
            if key not in keys:
                keys.append(key)
    return tuple(keys)


def _option_keys(info) -> dict:
    """TOML key -> option: the option's name, and its CLI flag (fgsm_rs, aa_version) too."""
    out = {}
    for o in info.options.values():
        out[o.name] = o
        out.setdefault(o.flag.replace("-", "_"), o)
    return out


def _make_units(apath: Path_, entry: dict, defaults: dict) -> list[EvalUnit]:
    from .attacks import AttackSpec, registry
    from .threat import NORMS, SPACES, ThreatModel

    def get(key: str):
        if key in entry:
            return entry[key], apath + (key,)
        if key in defaults:
            return defaults[key], ("eval", key)
        return EVAL_DEFAULTS.get(key), apath

    if "name" not in entry:
        raise Problem(apath, f"an attack needs a name ({', '.join(registry.names())})")
    name = _str(apath + ("name",), entry["name"])
    if name not in registry.names():
        raise Problem(apath + ("name",), f"unknown attack '{name}'; valid attacks: {', '.join(registry.names())}")
    info = registry.info(name)
    own = _option_keys(info)
    options, option_at = {}, {}
    for where, table in ((("eval",), defaults), (apath, entry)):  # the entry overrides [eval]
        for key, value in table.items():
            if key in own:
                options[own[key].name], option_at[own[key].name] = value, where + (key,)
            elif where == apath and key not in COMMON_ATTACK_KEYS:
                raise Problem(apath + (key,), f"{name} has no option '{key}'; its options: "
                                              f"{', '.join(info.options) or 'none'}")
    for key, value in options.items():
        try:
            options[key] = info.options[key].check(name, value)
        except RobustError as e:
            raise Problem(option_at[key], str(e)) from None
    v = {}
    v["norm"] = _choice(get("norm")[1], get("norm")[0], NORMS)
    v["eps_space"] = _choice(get("eps_space")[1], get("eps_space")[0], SPACES)
    eps, eps_at = get("eps")
    eps_list = [_positive(eps_at, e) for e in eps] if isinstance(eps, list) else [_positive(eps_at, eps)]
    if not eps_list:
        raise Problem(eps_at, "needs at least one radius")
    eta_raw, eta_at = get("eta")
    eta = None if eta_raw is None else _positive(eta_at, eta_raw)  # None: derived per attack and radius
    eot = _int(get("eot")[1], get("eot")[0], 1)
    n_raw, n_at = get("n")
    n = None if n_raw == "all" else _int(n_at, n_raw, 1)
    split = _choice(get("split")[1], get("split")[0], ("test", "val"))
    seed = _int(get("seed")[1], get("seed")[0], 0)
    batch_size = _int(get("batch_size")[1], get("batch_size")[0], 1)

    threats = [ThreatModel(norm=v["norm"], eps=e, step=eta, space=v["eps_space"]) for e in eps_list]
    sweep, sweep_at = get("sweep")
    if sweep is not None:
        if len(eps_list) > 1:
            raise Problem(sweep_at, "give a sweep with a single eps (its step keeps the ratio eta/eps), "
                          "or list the radii in eps")
        if not isinstance(sweep, list) or not sweep:
            raise Problem(sweep_at, f"must be a list of radii, got {sweep!r}")
        threats += [threats[0].with_eps(_positive(sweep_at, e)) for e in sweep]
    units = []
    for t in threats:
        try:
            # [eval] eot applies to the gradient attacks; an entry's own eot must fit its attack
            spec = AttackSpec(name, t, options, eot=eot if info.takes("eot") or "eot" in entry else 1)
        except RobustError as e:
            raise Problem(apath, str(e)) from None
        units.append(EvalUnit(spec, n, split, seed, batch_size, apath, n_at))
    return units


# ============================================================================ checks with the data
def check_with_data(exp: Experiment, cells: Sequence[Cell] | None = None):
    """Everything that needs the dataset: it exists, every model builds with its
    options, the selection metric exists, the devices and n fit. Returns the bundle
    (kept for evaluation). Writes nothing (the decode cache aside)."""
    import torch

    from .data import load_dataset
    from .methods import build_method
    from .models import build_model, resolve_normalization
    from .runtime import resolve_device
    from .train import resolve_precision

    d = exp.data
    try:
        bundle = load_dataset(d.dataset, data_root=d.data_root, image_size=d.image_size,
                              val_fraction=d.val_fraction, split_seed=d.split_seed)
    except RobustError as e:
        raise exp.problem(("data", "dataset"), str(e)) from None
    info = bundle.info
    if d.subset is not None and d.subset > len(bundle.train):
        raise exp.problem(("data", "subset"), f"subset {d.subset} is larger than the {len(bundle.train)} training "
                                              f"examples left after the validation split")
    built: set[str] = set()
    for cell in cells if cells is not None else exp.cells:
        spec = cell.spec
        at = cell.origin
        try:
            device = resolve_device(spec.device)
        except RobustError as e:
            raise exp.problem(at.get("device", cell.path), str(e)) from None
        try:
            resolve_precision(spec.amp, device)
        except RobustError as e:
            raise exp.problem(at.get("amp", cell.path), str(e)) from None
        key = json.dumps([spec.model.to_dict()], sort_keys=True, default=str)
        if key not in built:
            try:
                mean, std = resolve_normalization(spec.model.normalize, info)
                with torch.device("cpu"):
                    build_model(spec.model.arch, num_classes=info.num_classes, input_shape=info.input_shape,
                                mean=mean, std=std, **spec.model.kwargs)
            except RobustError as e:
                raise exp.problem(at.get("model", cell.path), str(e)) from None
            built.add(key)
        if spec.selection != "auto":
            method = build_method(spec)
            columns = {"val_acc", "val_loss"} | {c for m in method.validation_metrics() for c in m.columns}
            if spec.selection not in columns:
                raise exp.problem(at.get("selection", cell.path), f"unknown selection metric '{spec.selection}'; "
                                                                  f"valid: {', '.join(sorted(columns))}")
        if spec.init is not None and not Path(spec.init).is_file():
            raise exp.problem(at.get("init", cell.path), f"init checkpoint {spec.init} does not exist")
        out = exp.cell_dir(cell)
        if out.exists() and not out.is_dir():
            raise exp.problem(cell.path, f"the run folder {out} is a file")
    try:
        resolve_device(exp.eval_device)
    except RobustError as e:
        raise exp.problem(("eval", "device"), str(e)) from None
    for u in exp.units:
        size = len(bundle.split(u.split))
        if u.n is not None and u.n > size:
            raise exp.problem(u.n_origin, f"n {u.n} is larger than the {size} examples of the {u.split} split")
    return bundle


# ============================================================================ the plan
@dataclass
class CellPlan:
    cell: Cell
    train: str  # 'done' | 'resume' | 'train'
    epochs_done: int
    stopped: str | None
    sha256: str | None  # of best.pth, when training is done
    done: list[EvalUnit]
    todo: list[EvalUnit]
    train_record: bool  # a training record for best.pth is in the store
    corruptions: str | None = None  # the [corruptions] record: 'done', 'todo' or None (none asked)

    @property
    def name(self) -> str:
        return self.cell.name

    @property
    def finished(self) -> bool:
        return self.train == "done" and self.train_record and not self.todo and self.corruptions != "todo"

    def train_text(self) -> str:
        e = self.cell.spec.epochs
        if self.train == "done":
            return f"done ({self.stopped})" if self.stopped else f"done ({self.epochs_done}/{plural(e, 'epoch')})"
        if self.train == "resume":
            return f"resume after epoch {self.epochs_done}/{e}"
        return f"to train ({plural(e, 'epoch')})"

    def todo_text(self) -> str:
        parts = []
        if self.train != "done":
            parts.append(f"train {plural(self.cell.spec.epochs - self.epochs_done, 'epoch')}")
        if self.todo:
            parts.append(f"{plural(len(self.todo), 'evaluation')}: " + ", ".join(u.label for u in self.todo))
        if self.corruptions == "todo":
            parts.append("corruptions")
        return "; ".join(parts) or "nothing"


def _unit_matches(unit: EvalUnit, rec: dict) -> bool:
    from .attacks.spec import upgrade_fields

    att = upgrade_fields(rec.get("attack") or {})
    return all(att.get(k) == v for k, v in _jsonable(unit.spec.to_dict()).items())


class EvalIndex:
    """The store's evaluation records by (checkpoint sha256, n, split, seed, cascade)."""

    def __init__(self, store):
        self.by_key: dict[tuple, list[dict]] = {}
        for rec in store.find("eval"):
            ck, data = rec.get("checkpoint") or {}, rec.get("data") or {}
            key = (ck.get("sha256"), data.get("n"), data.get("split"), data.get("seed"), bool(rec.get("cascade")))
            self.by_key.setdefault(key, []).append(rec)
        self.train_shas = {(r.get("checkpoint") or {}).get("sha256") for r in store.find("train")}
        self.corruption_records = list(store.find("corruption"))

    def corruptions_done(self, sha: str, plan: CorruptionPlan, n: int) -> bool:
        return any(plan.matches(r, sha, n) for r in self.corruption_records)

    def done(self, sha: str, unit: EvalUnit, n: int, cascade: bool) -> bool:
        recs = self.by_key.get((sha, n, unit.split, unit.seed, cascade), [])
        return any(_unit_matches(unit, r) for r in recs)


def plan_cell(exp: Experiment, cell: Cell, index: EvalIndex, split_sizes: dict[str, int]) -> CellPlan:
    """What is done and what is left for one cell, read from its run folder and the store."""
    from .checkpoint import file_sha256, read_checkpoint
    from .train import _spec_differences

    out = exp.cell_dir(cell)
    last, best = out / "last.pth", out / "best.pth"
    state, epochs_done, stopped = "train", 0, None
    if last.is_file():
        try:
            ckpt = read_checkpoint(last)
        except RobustError as e:
            raise exp.problem(cell.path, f"{e}; delete {out} to train this cell again") from None
        # the very comparison fit makes on --resume, so the plan and the training agree
        diffs = _spec_differences(ckpt["meta"].get("spec") or {}, cell.spec.to_dict())
        if diffs:
            raise exp.problem(cell.path, f"{out} holds a run trained with other options ({'; '.join(diffs[:3])}"
                                         f"{' ...' if len(diffs) > 3 else ''}); delete that folder or rename the cell")
        ts = ckpt.get("train_state")
        if not isinstance(ts, dict):
            raise exp.problem(cell.path, f"{last} holds no training state; delete {out} to train this cell again")
        epochs_done, stopped = int(ts.get("epoch", 0)), ts.get("stopped")
        finished = bool(stopped) or epochs_done >= cell.spec.epochs
        state = "done" if finished and best.is_file() else "resume"
    sha = file_sha256(best) if state == "done" else None
    done, todo = [], []
    for u in exp.units:
        n = u.n if u.n is not None else split_sizes[u.split]
        (done if sha and index.done(sha, u, n, exp.cascade) else todo).append(u)
    if exp.cascade and todo:  # a cascade's numbers depend on the whole suite: run it whole
        todo, done = list(exp.units), []
    corr = None
    if exp.corruptions is not None:
        c = exp.corruptions
        n = c.n if c.n is not None else split_sizes[c.split]
        corr = "done" if sha and index.corruptions_done(sha, c, n) else "todo"
    return CellPlan(cell, state, epochs_done, stopped, sha, done, todo, bool(sha) and sha in index.train_shas, corr)


def select_cells(exp: Experiment, only: Sequence[str]) -> list[Cell]:
    if not only:
        return list(exp.cells)
    chosen = [c for c in exp.cells if any(fnmatch.fnmatchcase(c.name, p) for p in only)]
    if not chosen:
        raise RobustError(f"--only {' '.join(only)} matches no cell of {exp.file}; cells: "
                          f"{', '.join(c.name for c in exp.cells)}")
    return chosen


def select_attacks(exp: Experiment, attacks: Sequence[str]) -> None:
    """Keep only the evaluations of these attacks (by registry name), e.g. to run the cheap
    ones for every cell before AutoAttack; the rest stay to do for a later run."""
    if not attacks:
        return
    names = sorted({u.spec.name for u in exp.units}) + (["corruptions"] if exp.corruptions is not None else [])
    unknown = [a for a in attacks if a not in names]
    if unknown:
        raise RobustError(f"--attack {' '.join(unknown)}: {exp.file} evaluates no such attack; its attacks: "
                          f"{', '.join(names)}")
    exp.units = [u for u in exp.units if u.spec.name in attacks]
    if "corruptions" not in attacks:
        exp.corruptions = None


def make_plan(exp: Experiment, bundle, cells: Sequence[Cell]) -> list[CellPlan]:
    from .results import ResultsStore

    index = EvalIndex(ResultsStore(exp.results))
    sizes = {s: len(bundle.split(s)) for s in ("test", "val")}
    return [plan_cell(exp, c, index, sizes) for c in cells]


# ============================================================================ running
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


@dataclass
class RunSummary:
    experiment: Experiment
    plan: list[CellPlan]
    trained: list[str] = field(default_factory=list)
    evaluated: dict[str, int] = field(default_factory=dict)  # cell -> records written
    failed: dict[str, str] = field(default_factory=dict)
    report_files: list[Path] = field(default_factory=list)
    report_status: str = "not run"  # 'written' | 'up to date' | 'disabled' | 'not run' | 'failed: ...'
    seconds: float = 0.0


def run_experiment(path: str | os.PathLike, *, only: Sequence[str] = (), attacks: Sequence[str] = (),
                   device: str | None = None, dry_run: bool = False, say: Say = print, on_plan: Callable[[list[CellPlan]], None] | None = None
                   ) -> RunSummary:
    """Check everything, then (unless ``dry_run``) train, evaluate and report every
    selected cell that is not done. ``on_plan`` receives the plan before any work."""
    t0 = time.perf_counter()
    exp = load_experiment(path, device=device)
    chosen = select_cells(exp, only)
    select_attacks(exp, attacks)
    bundle = check_with_data(exp)
    plan = make_plan(exp, bundle, exp.cells)
    plan = [p for p in plan if p.cell in chosen]
    if on_plan is not None:
        on_plan(plan)
    summary = RunSummary(exp, plan)
    if dry_run:
        return summary
    with RunLock(exp.runs):
        log = RunLog(exp.log, say)
        try:
            _execute(exp, plan, bundle, log, summary, only)
        except KeyboardInterrupt:
            log("interrupted; run the same command again to resume", show=False)
            raise
        except BaseException as e:
            log(f"stopped by an error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", show=False)
            raise
        finally:
            summary.seconds = time.perf_counter() - t0
            log.close()
    if summary.failed:
        raise RobustError(f"{len(summary.failed)} of {plural(len(plan), 'cell')} failed ({', '.join(summary.failed)}): "
                          f"{next(iter(summary.failed.values()))}; see {exp.log}; the same command retries them")
    if summary.report_status.startswith("failed"):
        raise RobustError(f"the report was not written: {summary.report_status[len('failed: '):]}")
    return summary


def _execute(exp: Experiment, plan: list[CellPlan], bundle, log: RunLog, summary: RunSummary,
             only: Sequence[str]) -> None:
    from .results import ResultsStore

    store = ResultsStore(exp.results)
    todo = [p for p in plan if not p.finished]
    log(f"experiment {exp.name} ({exp.file}): {plural(len(plan), 'cell')}"
        + (f" matching --only {' '.join(only)}" if only else "")
        + f", {len(todo)} with work to do; checkpoints in {exp.runs}, records in {store.records_dir}")
    if exp.notes:
        log(f"notes: {exp.notes}", show=False)
    for p in plan:
        log(f"  {p.name}: {p.train_text()}; evaluations {len(p.done)}/{len(p.done) + len(p.todo)} done", show=False)
        if p.train == "done" and not p.train_record:
            log(f"  {p.name}: training finished but its record is not in {store.records_dir} (cut off during the "
                "final test pass?); the test pass and the record will be finished")
    for p in todo:
        try:
            _run_cell(exp, p, bundle, store, log, summary)
        except RobustError as e:
            summary.failed[p.name] = str(e)
            log(f"{p.name}: FAILED: {e}")
    if distributed.is_main():
        _write_report(exp, log, summary, worked=bool(summary.trained or summary.evaluated))
    log(f"experiment {exp.name}: trained {plural(len(summary.trained), 'cell')}, wrote "
        f"{plural(sum(summary.evaluated.values()), 'evaluation record')}, report {summary.report_status}"
        + (f"; {plural(len(summary.failed), 'cell')} failed" if summary.failed else ""))


def _run_cell(exp: Experiment, p: CellPlan, bundle, store, log: RunLog, summary: RunSummary) -> None:
    from .checkpoint import file_sha256
    from .train import duration_text, fit

    cell, out = p.cell, exp.cell_dir(p.cell)
    spec = cell.spec.replace(out=str(out))
    if p.train == "done" and not p.train_record:  # fit's --resume on a finished run writes what is missing
        log(f"{cell.name}: finishing the test pass and training record of {out / 'best.pth'}")
        fit(spec, resume=True, store=store, quiet=True)
    if p.train != "done":
        if p.train == "train":
            # a run cut off inside its first epoch leaves best.pth (and config.json) without last.pth:
            # nothing in it can be resumed, and fit refuses a folder that looks used
            leftovers = [out / n for n in ("best.pth", "history.csv", "config.json") if (out / n).exists()]
            if leftovers:
                log(f"{cell.name}: removing {', '.join(f.name for f in leftovers)} left by a first epoch that "
                    "never finished")
                for f in leftovers:
                    f.unlink()
        what = "resuming" if p.train == "resume" else "training"
        log(f"{cell.name}: {what} {spec.model.arch} / {method_label(spec.method, spec.adv)}"
            + f", {plural(spec.epochs, 'epoch')}" + (f" (after epoch {p.epochs_done})" if p.train == "resume" else "")
            + f" -> {out}")

        def epoch_line(row: dict) -> None:
            cols = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
            log(f"{cell.name}: {cols}", show=False)

        result = fit(spec, resume=p.train == "resume", store=store, on_epoch_end=epoch_line)
        m = result.metrics
        # the training summary's own duration (the record's seconds), not this call's wall clock
        log(f"{cell.name}: trained in {duration_text(result.seconds, len(result.history))}; best epoch "
            f"{result.best_epoch}, val acc {acc_text(m.get('val_acc'), m.get('val_n', 0), m.get('val_ci95'))}, "
            f"test acc {acc_text(m.get('test_acc'), m.get('test_n', 0), m.get('test_ci95'))}"
            + (f"; {result.stopped}" if result.stopped else ""))
        summary.trained.append(cell.name)
        sha = file_sha256(result.best_path)
        # the checkpoint is new: every evaluation of the old one (if any) is to do again
        index = EvalIndex(store)
        sizes = {s: len(bundle.split(s)) for s in ("test", "val")}
        todo = [u for u in exp.units
                if not index.done(sha, u, u.n if u.n is not None else sizes[u.split], exp.cascade)]
        if exp.cascade and todo:
            todo = list(exp.units)
        corr = exp.corruptions
        corruptions_todo = corr is not None and not index.corruptions_done(
            sha, corr, corr.n if corr.n is not None else sizes[corr.split])
    else:
        todo = p.todo
        corruptions_todo = p.corruptions == "todo"
    _evaluate_cell(exp, cell, out, todo, bundle, store, log, summary)
    if corruptions_todo:
        t = time.perf_counter()
        rec = corruption_runs.run(exp.corruptions, out / "best.pth", bundle, device=exp.eval_device, log=log,
                                  name=cell.name)
        rec["experiment"] = {"name": exp.name, "file": str(exp.file), "cell": cell.name}
        if distributed.is_main():
            store.add(rec)
        summary.evaluated[cell.name] = summary.evaluated.get(cell.name, 0) + 1
        log(f"{cell.name}: wrote the corruption record in {time.perf_counter() - t:.0f} s")


def _evaluate_cell(exp: Experiment, cell: Cell, out: Path, todo: list, bundle, store, log: RunLog,
                   summary: RunSummary) -> None:
    from .evaluation import evaluate
    from .progress import ProgressDisplay

    if not todo:
        return
    best = out / "best.pth"
    groups: dict[tuple, list[EvalUnit]] = {}
    for u in todo:
        groups.setdefault((u.n, u.split, u.seed, u.batch_size), []).append(u)
    written = 0
    for (n, split, seed, batch_size), units in groups.items():
        log(f"{cell.name}: evaluating {best} on {n or 'all'} {split} points (seed {seed}): "
            + ", ".join(u.label for u in units))
        t = time.perf_counter()
        records = evaluate(str(best), [u.spec for u in units], bundle, n=n, split=split, seed=seed,
                           batch_size=batch_size, cascade=exp.cascade, device=exp.eval_device,
                           run_checks=exp.checks, check_convergence=exp.check_convergence, log=log, name=cell.name,
                           progress=ProgressDisplay(),  # on the screen only: the log keeps the plain lines
                           resume_dir=out / "eval-partial")  # a cut-off attack resumes at its last finished batch
        for rec in records:
            rec["experiment"] = {"name": exp.name, "file": str(exp.file), "cell": cell.name}
            if distributed.is_main():  # under torchrun only rank 0 writes
                store.add(rec)
        written += len(records)
        warnings = sorted({c["detail"] for r in records for c in r.get("checks", []) if not c.get("ok", True)})
        for w in warnings:
            log(f"{cell.name}: sanity check failed: {w}")
        log(f"{cell.name}: wrote {plural(len(records), 'record')} in {time.perf_counter() - t:.0f} s")
    summary.evaluated[cell.name] = summary.evaluated.get(cell.name, 0) + written


def _write_report(exp: Experiment, log: RunLog, summary: RunSummary, worked: bool) -> None:
    import inspect

    from .report import build_report

    rep = exp.report
    if not rep["enabled"]:
        summary.report_status = "disabled"
        return
    kwargs = dict(dataset=rep["dataset"], attack=rep["attack"], checkpoint=rep["checkpoint"],
                  skip_bad=rep["skip_bad"], warn=lambda m: log(f"report: warning: {m}"))
    if exp.notes and "notes" in inspect.signature(build_report).parameters:
        kwargs["notes"] = exp.notes
    try:
        report = build_report(exp.results, rep["out"], **kwargs)
        files = report.files()
        same = all((report.out / rel).is_file() and (report.out / rel).read_bytes() == content
                   for rel, content in files.items())
        if same:
            summary.report_status = "up to date"
            log(f"report {report.out / 'REPORT.md'} is up to date")
            return
        summary.report_files = report.write()
    except RobustError as e:
        summary.report_status = f"failed: {e}"
        log(f"report: FAILED: {e}")
        return
    summary.report_status = "written"
    log(f"wrote the report: {report.out / 'REPORT.md'}, report.html, report.csv and {plural(len(report.figures), 'figure')}")


__all__ = ["CellPlan", "Experiment", "EvalUnit", "RunSummary", "check_with_data", "load_experiment", "make_plan",
           "read_toml", "run_experiment", "select_cells"]

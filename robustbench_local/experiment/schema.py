"""An experiment file, checked whole: its keys and defaults, where it writes, and the
parsed ``Experiment`` (cells from cells.py, evaluations from attack_entries.py, the
corruptions from corruptions.py). Nothing but the file is read; nothing is written.

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
    name = "pgd"                      #   batch_size, cells, and the attack's own options by name (or
    k = 10                            #   by CLI flag: fgsm_rs, aa_version); `robust attacks` lists them
    eps = 0.0313
    eta = 0.002
    sweep = [0.0078, 0.0157, 0.0627]  # more radii; at each the step keeps the ratio eta/eps
                                      # (eta unset: each attack's rule, e.g. PGD 2.5*eps/k, at each radius)

    [report]                          # enabled, out, dataset, attack, checkpoint, skip_bad
    checkpoint = ["runs/quick/*"]

    [executor]                        # where `robust run --executor slurm` sends its jobs (cluster.py):
    partition = "gpu"                 #   partition, account, time, gpus_per_job, cpus_per_task, mem, setup

``tensorboard = "DIR"`` in [train] writes each cell's TensorBoard scalars (training
curves and evaluation accuracies) to DIR/<cell> (needs the tensorboard package).

A method's options follow the method: ``method_kwargs`` set in [train] are dropped
for a cell that switches to another method (likewise ``adv_kwargs`` with ``adv``
and ``model.kwargs`` with ``model.arch``). ``eps`` may also be a list (every
radius with the same ``eta``, as ``robust eval --eps a,b`` does). ``cells = ["fast-*"]``
(names or globs) runs an [[attacks]] entry on those cells only; every other entry runs on
every cell.

``seeds = [0, 1, 2]`` in [train] or a [[cells]] entry trains one cell per seed: NAME
for seed 0, NAME-s1, NAME-s2 (a grid over ``seed``, as above, does the same with its own
names). Their records carry the group NAME and the seed; the report averages over them.

Paths: ``runs``, ``results``, ``log`` and ``[report] out`` resolve against the folder
of the file, so a study writes to the same places from whatever folder it is run. An
absolute path, or one that leaves that folder (``../``), is refused unless the file
says ``outside_paths = true``: without the opt-in, a file from elsewhere (or a slip)
could write checkpoints, records or log lines wherever the user may write, over
another study's results for instance. experiments/quick.toml opts in to keep writing
to runs/quick/ at the repository root. The log is appended to only when it is new,
empty, or was written by `robust run` (its first line is a run-log line); a folder
or anyone else's file is refused before anything is made.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .. import tensorboard_log
from ..data import AUGMENT_POLICIES
from ..errors import RobustError
from ..runtime import DEVICES, resolve_device
from ..specs import DataSpec
from ..values import boolean, choice, known, string, strings, table
from . import cluster, corruptions
from .attack_entries import ENTRY_ONLY_KEYS, EVAL_DEFAULTS, EvalUnit, attack_keys, check_unit_cells, parse_units
from .cells import TRAIN_TABLE_KEYS, Cell, build_blamed, grid_leaves, parse_cells
from .cluster import ClusterSettings
from .corruptions import CorruptionPlan
from .journal import check_log
from .source import Path_, Problem, Source, read_toml

EVAL_ONLY_KEYS = ("cascade", "checks", "check_convergence", "device")
REPORT_KEYS = ("enabled", "out", "dataset", "attack", "checkpoint", "skip_bad")
TOP_KEYS = (
    "name",
    "notes",
    "runs",
    "results",
    "log",
    "outside_paths",
    "data",
    "train",
    "grid",
    "cells",
    "eval",
    "attacks",
    "corruptions",
    "report",
    "executor",
)
TENSORBOARD = "tensorboard"  # a [train] key that is no TrainSpec field: where TensorBoard scalars go


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
    tensorboard: Path | None = None  # [train] tensorboard: DIR/<cell> gets each cell's scalars
    cluster: ClusterSettings = field(default_factory=ClusterSettings)  # the [executor] table

    def cell_dir(self, cell: Cell) -> Path:
        return self.runs / cell.name

    def cell_tensorboard(self, cell: Cell) -> Path | None:
        return self.tensorboard / cell.name if self.tensorboard is not None else None

    def problem(self, path: Path_, msg: str) -> RobustError:
        """A one-line error naming the file, the line (when found) and the key."""
        return self.source.error(path, msg, self.names)


def load_experiment(path: str | os.PathLike, *, device: str | None = None) -> Experiment:
    """Parse and check an experiment file without touching data or disk (beyond
    reading the file). ``device`` overrides every training and evaluation device."""
    raw, source = read_toml(path)
    names: dict[tuple, str] = {}
    try:
        return _parse(raw, source, names, device)
    except Problem as e:
        raise source.error(e.path, e.msg, names) from None


def _place(key: Path_, value: Any, file: Path, outside: bool) -> Path:
    """A path from the file, resolved against the file's folder. Shown relative to the
    working folder when it lies inside it, so messages and records keep short paths."""
    given = Path(string(key, value)).expanduser()
    folder = os.path.abspath(file.parent)
    target = Path(os.path.normpath(os.path.join(folder, given)))
    if not outside and (given.is_absolute() or not target.is_relative_to(folder)):
        raise Problem(
            key,
            f"'{value}' is outside the folder of the experiment file ({file.parent}); "
            "add outside_paths = true at the top of the file to write there",
        )
    cwd = Path(os.path.abspath(os.getcwd()))
    return target.relative_to(cwd) if target.is_relative_to(cwd) else target


def _parse(raw: dict, source: Source, names: dict, device: str | None) -> Experiment:
    known((), raw, TOP_KEYS)
    file = source.path
    name = string(("name",), raw.get("name", file.stem))
    notes = raw.get("notes")
    if notes is not None:
        notes = string(("notes",), notes).strip()
    outside = boolean(("outside_paths",), raw.get("outside_paths", False))
    runs = _place(("runs",), raw.get("runs", f"runs/{name}"), file, outside)
    results = _place(("results",), raw.get("results", "results"), file, outside)
    log = _place(("log",), raw["log"], file, outside) if "log" in raw else results / f"{name}.log"
    check_log(log)

    # --- data
    data_raw = table(("data",), raw.get("data", {}))
    known(("data",), data_raw, [f.name for f in fields(DataSpec)])
    data = build_blamed(DataSpec, data_raw, [f.name for f in fields(DataSpec)], lambda k: ("data", k))
    if data.augment is not None:
        choice(("data", "augment"), data.augment, AUGMENT_POLICIES)

    # --- training defaults and cells
    train_raw = table(("train",), raw.get("train", {}))
    known(("train",), train_raw, TRAIN_TABLE_KEYS + (TENSORBOARD,))
    tensorboard = None
    if TENSORBOARD in train_raw:
        train_raw = dict(train_raw)
        tensorboard = _place(("train", TENSORBOARD), train_raw.pop(TENSORBOARD), file, outside)
        try:
            tensorboard_log.require()
        except RobustError as e:
            raise Problem(("train", TENSORBOARD), str(e)) from None
    if device is not None:
        try:
            resolve_device(device)
        except Problem as e:  # the caller's override (robust run --device), not a key of the file
            raise RobustError(e.msg) from None
    top_grid = grid_leaves(("grid",), table(("grid",), raw.get("grid", {})))
    cells = parse_cells(raw.get("cells"), train_raw, top_grid, data, device, names)

    # --- evaluation
    eval_raw = table(("eval",), raw.get("eval", {}))
    known(("eval",), eval_raw, tuple(k for k in attack_keys() if k not in ENTRY_ONLY_KEYS) + EVAL_ONLY_KEYS)
    units = parse_units(raw.get("attacks"), eval_raw)
    check_unit_cells(units, [c.name for c in cells])
    cascade = boolean(("eval", "cascade"), eval_raw.get("cascade", EVAL_DEFAULTS["cascade"]))
    checks = boolean(("eval", "checks"), eval_raw.get("checks", EVAL_DEFAULTS["checks"]))
    convergence = boolean(
        ("eval", "check_convergence"), eval_raw.get("check_convergence", EVAL_DEFAULTS["check_convergence"])
    )
    eval_device = device or eval_raw.get("device", train_raw.get("device", "auto"))
    eval_device = string(("eval", "device"), eval_device)
    if device is None and eval_device not in DEVICES and not eval_device.startswith("cuda:"):
        raise Problem(
            ("eval", "device") if "device" in eval_raw else ("train", "device"),
            f"unknown device '{eval_device}'; valid: {', '.join(DEVICES)}",
        )

    corruption_plan = corruptions.parse(
        raw.get("corruptions"), {k: eval_raw.get(k, EVAL_DEFAULTS[k]) for k in ("n", "split", "seed", "batch_size")}
    )

    # --- report
    rep_raw = table(("report",), raw.get("report", {}))
    known(("report",), rep_raw, REPORT_KEYS)
    report = {
        "enabled": boolean(("report", "enabled"), rep_raw.get("enabled", True)),
        "out": _place(("report", "out"), rep_raw["out"], file, outside) if "out" in rep_raw else results,
        "skip_bad": boolean(("report", "skip_bad"), rep_raw.get("skip_bad", True)),
        **{k: strings(("report", k), rep_raw[k]) if k in rep_raw else () for k in ("dataset", "attack", "checkpoint")},
    }
    return Experiment(
        name,
        file,
        source,
        notes,
        runs,
        results,
        log,
        data,
        cells,
        units,
        cascade,
        checks,
        convergence,
        eval_device,
        report,
        names,
        corruption_plan,
        tensorboard,
        cluster.parse_table(raw.get("executor")),
    )

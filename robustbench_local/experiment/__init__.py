"""`robust run FILE`: an experiment file (TOML) -> train, evaluate and report every
cell, skipping what is already done, so a cut-off run resumes with the same command.

One module per job, in the order a run uses them:

- source.py: reading the TOML, and the line of a key for error messages (``Problem``);
- values.py: checks of single values (a string, an integer >= n, a choice, ...);
- schema.py: the file's keys, defaults and paths, parsed into an ``Experiment``
  (the file format is described there), from
  cells.py (``[train]``, ``[grid]``, ``[[cells]]``), attack_entries.py (``[eval]``,
  ``[[attacks]]``) and corruptions.py (``[corruptions]``);
- data_checks.py: what needs the dataset (models build, n fits the split, ...);
- plan.py: per cell, what is done and what is to do, and the plan as a table;
- journal.py: the lock of the runs folder and the run log;
- execute.py: training, evaluating and reporting the cells of the plan."""

from __future__ import annotations

from .attack_entries import EvalUnit, attack_keys
from .cells import Cell
from .data_checks import check_with_data
from .execute import RunSummary, report_experiment, run_experiment
from .plan import CellPlan, make_plan, plan_table, select_cells
from .schema import Experiment, load_experiment
from .source import read_toml

__all__ = [
    "Cell",
    "CellPlan",
    "EvalUnit",
    "Experiment",
    "RunSummary",
    "attack_keys",
    "check_with_data",
    "load_experiment",
    "make_plan",
    "plan_table",
    "read_toml",
    "report_experiment",
    "run_experiment",
    "select_cells",
]

"""Which command-line flag sets which key. Library errors name key paths (``train.lr``,
``train.adv_kwargs.eps``: values.py); a command shows its user the flag instead
(``--lr``, ``--eps``). Only the CLI knows flags: these tables and ``for_command`` are
used where a command turns an error into its one line (cli/__init__.py).

A key's flag is its name with dashes (``train.batch_size`` -> ``--batch-size``): the
train table is derived from the specs' fields and train_spec.ADV_OPTIONS, with hand
entries only for flags named otherwise (``--warmup``, ``--model``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import fields
from functools import cache

from ..errors import RobustError
from ..specs import DataSpec, ModelSpec, TrainSpec
from ..values import ValueProblem

Key = tuple[str, ...]


def dashed(name: str) -> str:
    """The flag the CLI names after a key: batch_size -> --batch-size."""
    return "--" + name.replace("_", "-")


# hand entries: keys whose flag is not named after the key
_RENAMED: dict[Key, str] = {("train", "warmup_epochs"): "--warmup", ("model", "arch"): "--model"}
# spec fields that are tables of further keys, not values with a flag
_TABLES = {"data", "model", "method_kwargs", "adv_kwargs", "kwargs"}
# method and model options with a flag of their own (the other model options: --model-option); hand
# entries, as train_spec.py names them only inside its field functions
_METHOD_OPTIONS = ("alpha", "cutmix_prob", "label_smoothing")
_MODEL_OPTIONS = ("maps", "blocks", "dropout", "bn", "skip", "pretrained", "weights")
# the keys of an evaluation (the experiment file's [eval]) that robust eval, visualize and analyze set
_EVAL = ("n", "batch_size", "split", "seed", "device", "eps", "eps_space", "norm", "attack")
_DATA_FOR_EVAL = ("dataset", "data_root", "image_size")


def _spec_flags(spec: type) -> dict[Key, str]:
    keys = [spec.KEY + (f.name,) for f in fields(spec) if f.name not in _TABLES]
    return {k: _RENAMED.get(k, dashed(k[-1])) for k in keys}


@cache
def train_flags() -> dict[Key, str]:
    """robust train: every value of the specs, and the --adv options as train_spec.py maps them."""
    # deferred: start-up time (train_spec loads the model zoo, which `robust report` never needs); this
    # table is built only for an error of robust train, whose module has loaded it by then
    from .train_spec import ADV_OPTIONS

    return {
        **_spec_flags(TrainSpec),
        **_spec_flags(DataSpec),
        **_spec_flags(ModelSpec),
        **{TrainSpec.KEY + ("method_kwargs", n): dashed(n) for n in _METHOD_OPTIONS},
        **{TrainSpec.KEY + ("adv_kwargs", key): dashed(option) for option, key in ADV_OPTIONS.items()},
        **{ModelSpec.KEY + ("kwargs", n): dashed(n) for n in _MODEL_OPTIONS},
    }


@cache
def eval_flags() -> dict[Key, str]:
    """robust eval, visualize and analyze: the points, the device, the threat and the data."""
    return {
        **{("eval", k): dashed(k) for k in _EVAL},
        **{DataSpec.KEY + (k,): dashed(k) for k in _DATA_FOR_EVAL},
    }


@cache
def data_flags() -> dict[Key, str]:
    """robust data: the datasets it describes."""
    return {DataSpec.KEY + (k,): dashed(k) for k in _DATA_FOR_EVAL}


# command -> its table; commands reading an experiment file (run) name its keys and lines instead
COMMANDS: dict[str, Callable[[], dict[Key, str]]] = {
    "train": train_flags,
    "eval": eval_flags,
    "visualize": eval_flags,
    "analyze": eval_flags,
    "data": data_flags,
}


def flags_of(command: str | None) -> dict[Key, str] | None:
    """The key -> flag table of a command, None for a command that has none."""
    build = COMMANDS.get(command or "")
    return None if build is None else build()


@cache
def _pattern(command: str) -> re.Pattern:
    """The key paths of a command's table as they appear in a message."""
    table = COMMANDS[command]()
    names = sorted((".".join(k) for k in table), key=len, reverse=True)  # longest first: train.adv_kwargs.eps
    return re.compile(r"(?<![\w.\-/])(" + "|".join(re.escape(n) for n in names) + r")(?![\w\-/]|\.\w)")


def flag_for(key: Key, table: dict[Key, str]) -> str | None:
    """The flag of a key path; a model option without a flag of its own is set with
    --model-option NAME=VALUE."""
    key = tuple(key)
    if key in table:
        return table[key]
    if len(key) == 3 and key[:2] == ModelSpec.KEY + ("kwargs",) and table is train_flags():
        return f"--model-option {key[2]}"
    return None


def for_command(command: str | None, error: RobustError) -> str:
    """The one line a command shows for ``error``: a value error at a key that one of
    the command's flags sets names that flag, and so does every other key path of that
    table the message mentions. Other errors, and other commands, keep the text."""
    text = str(error)
    if not isinstance(error, ValueProblem):
        return text
    table = flags_of(command)
    flag = None if table is None else flag_for(error.key, table)
    if flag is None:
        return text
    return f"{flag}: {_pattern(command).sub(lambda m: table[tuple(m.group(1).split('.'))], error.msg)}"

"""Which command-line flag sets which key. Library errors name key paths (``train.lr``,
``train.adv_kwargs.eps``: values.py); a command shows its user the flag instead
(``--lr``, ``--eps``). Only the CLI knows flags: this table and ``for_command`` are
used where a command turns an error into its one line (cli/__init__.py)."""

from __future__ import annotations

import re

from ..errors import RobustError
from ..values import ValueProblem

Key = tuple[str, ...]

_TRAIN = {
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "optimizer": "--optimizer",
    "lr": "--lr",
    "momentum": "--momentum",
    "nesterov": "--nesterov",
    "weight_decay": "--weight-decay",
    "schedule": "--schedule",
    "warmup_epochs": "--warmup",
    "grad_clip": "--grad-clip",
    "patience": "--patience",
    "amp": "--amp",
    "channels_last": "--channels-last",
    "seed": "--seed",
    "device": "--device",
    "out": "--out",
    "init": "--init",
    "selection": "--selection",
    "compile": "--compile",
    "attack_precision": "--attack-precision",
    "sync_bn": "--sync-bn",
    "method": "--method",
    "adv": "--adv",
}
_DATA = {
    "dataset": "--dataset",
    "data_root": "--data-root",
    "image_size": "--image-size",
    "subset": "--subset",
    "val_fraction": "--val-fraction",
    "augment": "--augment",
    "split_seed": "--split-seed",
}
_MODEL = {"arch": "--model", "normalize": "--normalize"}
# options of the methods and models that have a flag of their own (the others: --model-option)
_METHOD_OPTIONS = {"alpha": "--alpha", "cutmix_prob": "--cutmix-prob", "label_smoothing": "--label-smoothing"}
_ADV_OPTIONS = {
    "eps": "--eps",
    "eta": "--eta",
    "k": "--k",
    "eps_space": "--eps-space",
    "norm": "--norm",
    "random_start": "--random-start",
    "adv_weight": "--adv-weight",
    "beta": "--beta",
    "attack_bn": "--attack-bn",
    "eps_warmup": "--eps-warmup",
    "early_stop": "--early-stop",
    "val_n": "--val-robust-n",
    "val_k": "--val-robust-k",
    "val_eta": "--val-robust-eta",
    "replays": "--replays",
}
_MODEL_OPTIONS = {name: f"--{name}" for name in ("maps", "blocks", "dropout", "bn", "skip", "pretrained", "weights")}
_EVAL = {
    "n": "--n",
    "batch_size": "--batch-size",
    "split": "--split",
    "seed": "--seed",
    "device": "--device",
    "eps": "--eps",
    "eps_space": "--eps-space",
    "norm": "--norm",
    "attack": "--attack",
}

TRAIN_FLAGS: dict[Key, str] = {
    **{("train", k): f for k, f in _TRAIN.items()},
    **{("data", k): f for k, f in _DATA.items()},
    **{("model", k): f for k, f in _MODEL.items()},
    **{("train", "method_kwargs", k): f for k, f in _METHOD_OPTIONS.items()},
    **{("train", "adv_kwargs", k): f for k, f in _ADV_OPTIONS.items()},
    **{("model", "kwargs", k): f for k, f in _MODEL_OPTIONS.items()},
}
EVAL_FLAGS: dict[Key, str] = {
    **{("eval", k): f for k, f in _EVAL.items()},
    **{("data", k): f for k, f in _DATA.items() if k in ("dataset", "data_root", "image_size")},
}
# command -> its table; commands reading an experiment file (run) name its keys and lines instead
COMMANDS: dict[str, dict[Key, str]] = {"train": TRAIN_FLAGS, "eval": EVAL_FLAGS}


def _pattern(table: dict[Key, str]) -> re.Pattern:
    names = sorted((".".join(k) for k in table), key=len, reverse=True)  # longest first: train.adv_kwargs.eps
    return re.compile(r"(?<![\w.\-/])(" + "|".join(re.escape(n) for n in names) + r")(?![\w\-/]|\.\w)")


_PATTERNS = {command: _pattern(table) for command, table in COMMANDS.items()}


def flag_for(key: Key, table: dict[Key, str]) -> str | None:
    """The flag of a key path; a model option without a flag of its own is set with
    --model-option NAME=VALUE."""
    key = tuple(key)
    if key in table:
        return table[key]
    if table is TRAIN_FLAGS and len(key) == 3 and key[:2] == ("model", "kwargs"):
        return f"--model-option {key[2]}"
    return None


def for_command(command: str | None, error: RobustError) -> str:
    """The one line a command shows for ``error``: a value error at a key that one of
    the command's flags sets names that flag, and so does every other key path of that
    table the message mentions. Other errors, and other commands, keep the text."""
    table = COMMANDS.get(command or "")
    text = str(error)
    if table is None or not isinstance(error, ValueProblem):
        return text
    flag = flag_for(error.key, table)
    if flag is None:
        return text
    return f"{flag}: {_PATTERNS[command].sub(lambda m: table[tuple(m.group(1).split('.'))], error.msg)}"

"""Parsing of architecture options (``arch_kwargs``).

Options reach the constructors from Python, from the CLI as strings ("16,32,64",
"true") and from checkpoint metadata as JSON values, so each parser accepts both
the plain value and its string form. The checks are values.py's; a bad value is one
error at the key path ``model.kwargs.<name>``."""

from __future__ import annotations

from collections.abc import Sequence

from .. import values
from ..values import Key, ValueProblem


def option_key(name: str) -> Key:
    """The key path of a model option, as errors name it."""
    return ("model", "kwargs", name)


def bad(name: str, msg: str) -> ValueProblem:
    """An error about model option ``name`` that the values checks do not cover."""
    return ValueProblem(option_key(name), msg)


def as_bool(name: str, value: object) -> bool:
    return values.boolean(option_key(name), value, words=True)


def as_int(name: str, value: object, *, minimum: int | None = None) -> int:
    return values.integer(option_key(name), value, minimum=minimum)


def as_float(
    name: str, value: object, *, low: float | None = None, high: float | None = None, high_open: bool = False
) -> float:
    return values.number(option_key(name), value, low=low, high=high, high_open=high_open)


def as_int_list(name: str, value: object, *, minimum: int = 1, length: int | None = None) -> list[int]:
    """[16, 32, 64], (16, 32, 64), "16,32,64" or "16 32 64"."""
    return values.integers(option_key(name), value, minimum=minimum, length=length)


def as_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """One of ``choices``, in any case."""
    return values.choice(option_key(name), str(value).strip(), choices, fold_case=True)

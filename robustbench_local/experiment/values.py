"""Checks of single values read from an experiment file: each returns the value or
raises a ``Problem`` at its key path, with what was expected and what was found."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..errors import RobustError
from ..threat import parse_number
from .source import Path_, Problem


def table(path: Path_, value: Any) -> dict:
    if not isinstance(value, dict):
        raise Problem(path, f"must be a table (key = value pairs), got {value!r}")
    return value


def known(path: Path_, entries: dict, valid: Sequence[str]) -> None:
    for key in entries:
        if key not in valid:
            raise Problem(tuple(path) + (key,), f"unknown key '{key}'; valid keys: {', '.join(valid)}")


def string(path: Path_, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Problem(path, f"must be a non-empty string, got {value!r}")
    return value


def boolean(path: Path_, value: Any) -> bool:
    if not isinstance(value, bool):
        raise Problem(path, f"must be true or false, got {value!r}")
    return value


def integer(path: Path_, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Problem(path, f"must be an integer, got {value!r}")
    if value < minimum:
        raise Problem(path, f"must be >= {minimum}, got {value}")
    return value


def positive(path: Path_, value: Any) -> float:
    """A number > 0; '8/255' style strings accepted."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Problem(path, f"must be a number such as 0.0313 or \"8/255\", got {value!r}")
    try:
        v = parse_number(value, path[-1] if path else "value")
    except RobustError as e:
        raise Problem(path, str(e)) from None
    if not math.isfinite(v) or v <= 0:
        raise Problem(path, f"must be a finite number > 0, got {value!r}")
    return v


def choice(path: Path_, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise Problem(path, f"unknown value {value!r}; valid: {', '.join(choices)}")
    return value


def strings(path: Path_, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise Problem(path, f"must be a string or a list of strings, got {value!r}")
    return tuple(value)

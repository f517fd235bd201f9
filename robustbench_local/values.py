"""Checks of single values, for every place that takes them: the specs, the methods'
and models' options, and the experiment file.

Each check takes the value's key path, a tuple such as ("train", "lr") or
("cells", 2, "adv_kwargs", "eps"), returns the value (converted where the check says
so) or raises ``ValueProblem``: a RobustError that carries the key path and names it
as ``train.lr`` or ``cells[2].adv_kwargs.eps``. Messages name keys, never command-line
flags; the CLI maps keys to its flags (cli/flags.py) and the experiment file to its
lines (experiment/source.py)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import RobustError
from .threat import parse_number

Key = tuple  # a key path, e.g. ("train", "lr") or ("cells", 2, "adv_kwargs", "eps")

TRUE_WORDS = ("on", "true", "yes", "1")
FALSE_WORDS = ("off", "false", "no", "0")
AUTO = "auto"


def dotted(key: Key) -> str:
    """("cells", 2, "adv_kwargs", "eps") -> "cells[2].adv_kwargs.eps"."""
    out = ""
    for part in key:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class ValueProblem(RobustError):
    """A bad value at a key path. ``msg`` says what is wrong without naming the key
    (``must be > 0, got -1``); the error's text puts the key in front of it."""

    def __init__(self, key: Key, msg: str):
        self.key = tuple(key)
        self.msg = msg
        super().__init__(f"{dotted(self.key)}: {msg}" if self.key else msg)

    @property
    def path(self) -> Key:  # the experiment file's name for the key path
        return self.key


def integer(key: Key, value: Any, *, minimum: int | None = None, optional: bool = False, exact: bool = False):
    """An integer, at least ``minimum``. ``exact``: only an int itself (a TOML integer);
    otherwise also a whole float or its text ("3", as options arrive from a command line)."""
    if value is None and optional:
        return None
    bad = ValueProblem(key, f"must be an integer, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int if exact else (int, float, str)):
        raise bad
    try:
        f = value if isinstance(value, int) else float(value)
    except ValueError:
        raise bad from None
    if isinstance(f, float) and not f.is_integer():
        raise bad
    v = int(f)
    if minimum is not None and v < minimum:
        raise ValueProblem(key, f"must be >= {minimum}, got {v}")
    return v


def number(
    key: Key,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    optional: bool = False,
):
    """A finite number within the bounds (open or closed); text such as '8/255' is read."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueProblem(key, f"must be a number, got {value!r}")
    if isinstance(value, str):
        try:
            v = parse_number(value)
        except RobustError:
            try:
                v = float(value)  # 'inf' and 'nan' are numbers, refused below as not finite
            except ValueError:
                raise ValueProblem(key, f"'{value}' is not a number; write e.g. 0.0313 or 8/255") from None
    else:
        v = float(value)
    if not math.isfinite(v):
        raise ValueProblem(key, f"must be finite, got {value!r}")
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueProblem(key, f"must be {'>' if low_open else '>='} {low:g}, got {v:g}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueProblem(key, f"must be {'<' if high_open else '<='} {high:g}, got {v:g}")
    return v


def positive(key: Key, value: Any) -> float:
    """A finite number > 0 (a radius or a step); '8/255' style text is read."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueProblem(key, f'must be a number such as 0.0313 or "8/255", got {value!r}')
    try:
        v = parse_number(value, str(key[-1]) if key else "value")
    except RobustError as e:
        raise ValueProblem(key, str(e)) from None
    if not math.isfinite(v) or v <= 0:
        raise ValueProblem(key, f"must be a finite number > 0, got {value!r}")
    return v


def choice(key: Key, value: Any, valid: Sequence[Any], *, fold_case: bool = False) -> Any:
    """One of ``valid`` (the caller's list, e.g. a registry's names); ``fold_case``
    accepts any case and returns the spelling of ``valid``."""
    if fold_case and isinstance(value, str):
        for v in valid:
            if str(v).lower() == value.strip().lower():
                return v
    elif value in valid:
        return value
    raise ValueProblem(key, f"unknown value {value!r}; valid: {', '.join(str(v) for v in valid)}")


def boolean(key: Key, value: Any, *, words: bool = False) -> bool:
    """True or false; ``words`` also reads on/off, yes/no, true/false, 1/0 (command-line
    and checkpoint text)."""
    if isinstance(value, bool):
        return value
    if words:
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
            return value.strip().lower() in TRUE_WORDS
    raise ValueProblem(key, f"must be true or false, got {value!r}")


def tristate(key: Key, value: Any) -> bool | str:
    """True, False or 'auto' (decided later, e.g. per device); None means 'auto'."""
    if value is None or value == AUTO:
        return AUTO
    try:
        return boolean(key, value, words=True)
    except ValueProblem:
        raise ValueProblem(key, f"must be true, false or 'auto', got {value!r}") from None


def table(key: Key, value: Any, *, optional: bool = False) -> dict:
    """A table of name = value pairs (None is an empty one when ``optional``)."""
    if value is None and optional:
        return {}
    if not isinstance(value, Mapping):
        raise ValueProblem(key, f"must be a table (key = value pairs), got {value!r}")
    return value if isinstance(value, dict) else dict(value)


def known(key: Key, entries: Mapping, valid: Sequence[str]) -> None:
    """Every key of ``entries`` is one of ``valid``."""
    for name in entries:
        if name not in valid:
            raise ValueProblem(tuple(key) + (name,), f"unknown key '{name}'; valid keys: {', '.join(valid)}")


def string(key: Key, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueProblem(key, f"must be a non-empty string, got {value!r}")
    return value


def strings(key: Key, value: Any) -> tuple[str, ...]:
    """A string or a list of strings, as a tuple."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueProblem(key, f"must be a string or a list of strings, got {value!r}")
    return tuple(value)


def integers(key: Key, value: Any, *, minimum: int = 1, length: int | None = None) -> list[int]:
    """[16, 32, 64], (16, 32, 64), "16,32,64" or "16 32 64"."""
    what = f"a list of {length} integers >= {minimum}" if length else f"a list of integers >= {minimum}"
    bad = ValueProblem(key, f"must be {what} such as 16,32,64, got {value!r}")
    if isinstance(value, str):
        parts: Sequence[Any] = [p for p in value.replace(",", " ").split() if p]
    elif isinstance(value, (list, tuple)):
        parts = value
    elif isinstance(value, int) and not isinstance(value, bool):
        parts = [value]
    else:
        raise bad
    try:
        out = [integer(key, p, minimum=minimum) for p in parts]
    except ValueProblem:
        raise bad from None
    if not out or (length is not None and len(out) != length):
        raise bad
    return out

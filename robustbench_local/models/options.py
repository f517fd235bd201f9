"""Parsing of architecture options (``arch_kwargs``).

Options reach the constructors from Python, from the CLI as strings ("16,32,64",
"true") and from checkpoint metadata as JSON values, so each parser accepts both
the plain value and its string form, and a bad value is one RobustError line that
names the option."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from ..errors import RobustError

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


def _bad(name: str, value: object, expected: str) -> RobustError:
    return RobustError(f"model option {name}={value!r} is invalid: expected {expected}")


def as_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _bad(name, value, "true or false")


def as_int(name: str, value: object, *, minimum: int | None = None) -> int:
    if isinstance(value, bool):
        raise _bad(name, value, "an integer")
    try:
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError
            out = int(value)
        else:
            out = int(str(value).strip()) if isinstance(value, str) else int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _bad(name, value, "an integer") from None
    if minimum is not None and out < minimum:
        raise _bad(name, value, f"an integer >= {minimum}")
    return out


def as_float(
    name: str, value: object, *, low: float | None = None, high: float | None = None, high_open: bool = False
) -> float:
    if isinstance(value, bool):
        raise _bad(name, value, "a number")
    try:
        if isinstance(value, str) and "/" in value:  # fractions such as 1/9
            out = float(Fraction(value.strip()))
        else:
            out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError):
        raise _bad(name, value, "a number") from None
    if out != out or out in (float("inf"), float("-inf")):
        raise _bad(name, value, "a finite number")
    if low is not None and out < low:
        raise _bad(name, value, f"a number >= {low}")
    if high is not None and (out >= high if high_open else out > high):
        raise _bad(name, value, f"a number {'<' if high_open else '<='} {high}")
    return out


def as_int_list(name: str, value: object, *, minimum: int = 1, length: int | None = None) -> list[int]:
    """[16, 32, 64], (16, 32, 64), "16,32,64" or "16 32 64"."""
    if isinstance(value, str):
        parts: Sequence[object] = [p for p in value.replace(",", " ").split() if p]
    elif isinstance(value, (list, tuple)):
        parts = value
    elif isinstance(value, int) and not isinstance(value, bool):
        parts = [value]
    else:
        raise _bad(name, value, "a list of integers such as 16,32,64")
    what = f"a list of {length} integers >= {minimum}" if length else f"a list of integers >= {minimum}"
    try:
        out = [as_int(name, p, minimum=minimum) for p in parts]
    except RobustError:
        raise _bad(name, value, what) from None
    if not out or (length is not None and len(out) != length):
        raise _bad(name, value, what)
    return out


def as_choice(name: str, value: object, choices: Sequence[str]) -> str:
    text = str(value).strip()
    for c in choices:
        if text.lower() == c.lower():
            return c
    raise _bad(name, value, "one of " + ", ".join(choices))

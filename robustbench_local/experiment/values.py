"""The checks of single values that the experiment file uses; they live in the
package's one validation module (values.py) and raise a ``Problem`` at the key path."""

from __future__ import annotations

from ..values import boolean, choice, known, positive, string, strings, table
from ..values import integer as _integer
from .source import Path_


def integer(path: Path_, value, minimum: int) -> int:
    """A TOML integer (not 3.0 nor "3") >= ``minimum``."""
    return _integer(path, value, minimum=minimum, exact=True)


__all__ = ["boolean", "choice", "integer", "known", "positive", "string", "strings", "table"]

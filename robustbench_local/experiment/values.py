"""The one check the experiment file makes stricter than the package's validation
module (values.py): an integer must be written as a TOML integer."""

from __future__ import annotations

from ..values import integer as _integer
from .source import Path_


def integer(path: Path_, value, minimum: int) -> int:
    """A TOML integer (not 3.0 nor "3") >= ``minimum``."""
    return _integer(path, value, minimum=minimum, exact=True)

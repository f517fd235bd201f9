"""Readers of single record fields that tolerate a missing or mistyped value: each
gives the value when it has the expected type, else None (or a default)."""

from __future__ import annotations


def dig(d, *keys, default=None):
    """d[k1][k2]..., or default where a level is missing or not an object."""
    cur = d
    for k in keys:
        if not isinstance(cur, dict) or k not in cur:
            return default
        cur = cur[k]
    return cur


def named_source(v) -> str | None:
    """A model or file named in a record (a describe() object or a plain string): its path, else its name."""
    if isinstance(v, dict):
        v = v.get("path") or v.get("name")
    return v if isinstance(v, str) and v else None


def created_of(rec: dict) -> str:
    return str(rec.get("created") or "")


def as_text(v) -> str | None:
    return v if isinstance(v, str) and v else None


def as_seed(v) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def given(v) -> bool:
    """A non-empty string (a field that names something)."""
    return isinstance(v, str) and bool(v)

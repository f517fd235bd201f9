"""Which column of a comparison table a record goes to: the columns' order, their names
(a transfer or replayed attack from several sources gets one per source, named after it),
the threat model a record belongs to, and the note naming where its images were crafted."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .radii import eps_key
from .record_fields import given
from .table_parts import WORST


def attack_order(label: str) -> tuple:
    """Column order: clean, FGSM family, PGD by steps, AutoAttack, others, worst case."""
    low = label.lower()
    if low == "clean":
        return (0, 0, low)
    if low == WORST:
        return (9, 0, low)
    if "fgsm" in low:
        return (1, 0, low)
    m = re.match(r"pgd-(\d+)", low)
    if m:
        return (2, int(m.group(1)), low)
    if low.startswith("autoattack"):
        return (3, 0, low)
    return (4, 0, low)


def column_name(row: pd.Series) -> str:
    label = str(row["attack"])
    if row["cumulative"] and row["attack_name"] != WORST:
        label += " (cumulative)"
    return label


def source_of(row: pd.Series) -> str | None:
    """Where a record's adversarial images were crafted, when not on the model scored:
    the surrogate of a transfer attack or the replayed file; None otherwise."""
    if given(row.get("transfer_from")):
        return row["transfer_from"]
    if given(row.get("replayed_from")):
        return row["replayed_from"]
    return None


def provenance_note(row: pd.Series, col: str) -> str | None:
    """The footnote naming a transfer or replay record's source, or None."""
    if given(row.get("transfer_from")):
        return (
            f"{col} on {row['checkpoint']}: a transfer attack, crafted on the surrogate {row['transfer_from']} "
            f"and scored on {row['checkpoint']}"
        )
    if given(row.get("replayed_from")):
        crafted = f" (crafted on {row['crafted_on']})" if given(row.get("crafted_on")) else ""
        return (
            f"{col} on {row['checkpoint']}: saved adversarial images replayed from {row['replayed_from']}"
            f"{crafted}, nothing crafted on {row['checkpoint']}"
        )
    return None


def split_sources(df: pd.DataFrame) -> pd.Series:
    """Column names, where one checkpoint has the same transfer or replayed attack from
    several sources at one radius: each source its own column (named after it)."""
    cols = df["_col"].copy()
    src = df.apply(source_of, axis=1)
    for _, idx in df.groupby(["_threat", "ckpt_key", "_col"], sort=False).groups.items():
        if src[idx].dropna().nunique() > 1:
            cols[idx] = [c if s is None else f"{c} from {_short(s)}" for c, s in zip(cols[idx], src[idx])]
    return cols


def _short(path: str) -> str:
    """'runs/a/best.pth' -> 'a/best.pth': enough to tell sources apart in a header."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.parent.name else p.name


def threat_key(row) -> tuple:
    """One threat model: the norm and the ball on [0, 1] images. Models normalized
    differently express one pixel ball by different normalized radii, so the pixel radius
    decides, and the normalized one only where no pixel radius was recorded."""
    pixel = eps_key(row["eps_pixel"])
    if pixel != "nan":
        return (str(row["norm"]), "pixel", pixel)
    return (str(row["norm"]), "normalized", eps_key(row["eps_normalized"]))

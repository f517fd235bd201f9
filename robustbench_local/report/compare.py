"""Paired comparisons of models evaluated on the same points under the same threat:
McNemar's exact test on the records' per-point robust flags, the difference in
accuracy with its paired interval, and which models of a table column cannot be
told apart from the best.

Two records are paired when they ran the same attack (label, steps, whether it
accumulates, where its images were crafted) at the same radius (norm, space, eps in
both spaces) on the same points (dataset, split, selection seed, n and the digest of
the point indices)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import RobustError
from ..results import unpack_flags
from ..stats import PairedTest, holm, mcnemar_p, paired_test
from .columns import attack_order, column_name, threat_key
from .load import ReportData, newest_largest
from .radii import eps_first, eps_key, pixel_threat_label, threat_label
from .table_parts import Table

ALPHA = 0.05
# how the report names its marks, beside the tables that carry them
MARK_NOTE = (
    "indistinguishable from the best in its column at the 5% level: McNemar's exact test on the same "
    "points against the column's best, Holm-corrected over the column's comparisons"
)

_ATTACK = ("_col", "attack_members", "norm", "transfer_from", "replayed_from")
_POINTS = ("dataset", "split", "data_seed", "n", "indices_sha256")


@dataclass
class Paired:
    """One attack at one radius, A's record against B's on the same points."""

    attack: str  # the table's column name
    threat: str  # 'L-inf eps 0.0313 normalized = ...'
    eps: float  # a sortable radius
    row_a: pd.Series
    row_b: pd.Series
    test: PairedTest


@dataclass
class ModelComparison:
    a: str  # the names as the user gave them
    b: str
    checkpoint_a: str  # as the report names them
    checkpoint_b: str
    pairs: list[Paired]
    not_paired: list[str] = field(default_factory=list)  # shared attacks that were not on the same points

    def by_attack(self) -> dict[str, list[Paired]]:
        out: dict[str, list[Paired]] = {}
        for p in self.pairs:
            out.setdefault(p.attack, []).append(p)
        return out


def _key(row: pd.Series, cols: tuple[str, ...]) -> str:
    return "\x1f".join(repr(row[c]) for c in cols)


def _threat(row: pd.Series) -> str:
    """One attack at one radius, as the comparison tables tell them apart: the ball (in
    pixels where recorded, so models normalized differently meet) and the step."""
    norm, space, eps = threat_key(row)
    return "\x1f".join([_key(row, _ATTACK), norm, space, eps, eps_key(row[f"step_{space}"])])


def _run_name(path) -> str | None:
    return Path(path).parent.name if isinstance(path, str) and path else None


def resolve_model(evals: pd.DataFrame, name: str) -> str:
    """The ckpt_key of the one model ``name`` names: its name in the report's tables
    (an experiment's cell name), its checkpoint path, its run folder, or its sha256."""
    if evals.empty:
        raise RobustError("the results hold no evaluation records to compare")
    hit = (evals["checkpoint"] == name) | (evals["checkpoint_path"] == name) | (evals["ckpt_key"] == name)
    hit |= evals["checkpoint_path"].map(_run_name) == name
    hit |= evals["checkpoint"].map(lambda c: _run_name(c) if "/" in str(c) else None) == name
    keys = sorted(set(evals.loc[hit, "ckpt_key"]))
    if not keys:
        known = ", ".join(sorted(set(map(str, evals["checkpoint"]))))
        raise RobustError(f"no evaluated model is named {name!r}; the results hold: {known}")
    if len(keys) > 1:
        paths = ", ".join(sorted({str(p) for p in evals.loc[hit, "checkpoint_path"] if isinstance(p, str)}))
        raise RobustError(
            f"{name!r} names {len(keys)} different models ({paths or ', '.join(keys)}); name one by its checkpoint path"
        )
    return keys[0]


def record_flags(row: pd.Series) -> np.ndarray:
    """A record's per-point robust flags, or a RobustError when it holds none."""
    if not isinstance(row.get("robust_flags"), str):
        raise RobustError(
            f"record {row['record']} ({row['checkpoint']}, {row['attack']}) holds no per-point flags "
            "(it was made before records kept them); evaluate the model again to compare it"
        )
    return unpack_flags(row["robust_flags"], int(row["n"]))


def _points_text(row: pd.Series) -> str:
    return f"{row['n']} {row['dataset']} {row['split']} points (selection seed {row['data_seed']})"


def _points_differ(row_a: pd.Series, row_b: pd.Series) -> str:
    """How two records' points differ, in words."""
    a, b = _points_text(row_a), _points_text(row_b)
    return f"{a} against {b}" if a != b else f"{a}, but other point indices"


def pair_rows(row_a: pd.Series, row_b: pd.Series) -> PairedTest:
    """The paired test of two records; a RobustError when they are not on the same points."""
    if _key(row_a, _POINTS) != _key(row_b, _POINTS) or not isinstance(row_a["indices_sha256"], str):
        raise RobustError(
            f"records {row_a['record']} and {row_b['record']} are not on the same points "
            f"({_points_differ(row_a, row_b)}); a paired test needs both models evaluated with the "
            "same --n, --seed and split"
        )
    return paired_test(record_flags(row_a), record_flags(row_b))


def compare_models(data: ReportData, a: str, b: str) -> ModelComparison:
    """Every attack and radius both models were evaluated at, paired on the same points
    (the largest n both share, then the newest records). Shared attacks with no common
    points are listed in ``not_paired``; a RobustError when nothing can be paired."""
    df = data.evals
    ka, kb = resolve_model(df, a), resolve_model(df, b)
    if ka == kb:
        raise RobustError(f"{a!r} and {b!r} name the same model; compare two different models")
    df = df.assign(_col=df.apply(column_name, axis=1))
    rows_a, rows_b = df[df["ckpt_key"] == ka], df[df["ckpt_key"] == kb]
    name_a, name_b = str(rows_a["checkpoint"].iloc[0]), str(rows_b["checkpoint"].iloc[0])
    threats_a = rows_a.groupby(rows_a.apply(_threat, axis=1), sort=False)
    threats_b = dict(list(rows_b.groupby(rows_b.apply(_threat, axis=1), sort=False)))
    pairs, not_paired = [], []
    has_flags = df["robust_flags"].map(lambda v: isinstance(v, str)) & df["indices_sha256"].map(
        lambda v: isinstance(v, str)
    )
    for tk, ga in threats_a:
        gb = threats_b.get(tk)
        if gb is None:
            continue
        first = ga.iloc[0]
        threat = (
            threat_label(first["norm"], first["eps_normalized"], first["eps_pixel"])
            if eps_key(first["eps_normalized"]) == eps_key(gb["eps_normalized"].iloc[0])
            else pixel_threat_label(first["norm"], first["eps_pixel"])
        )
        where = f"{first['_col']} at {threat}"
        pa = ga.assign(_pk=ga.apply(lambda r: _key(r, _POINTS), axis=1))
        pb = gb.assign(_pk=gb.apply(lambda r: _key(r, _POINTS), axis=1))
        shared = pa[pa["_pk"].isin(set(pb["_pk"]))]
        if shared.empty:
            differ = _points_differ(newest_largest(ga), newest_largest(gb))
            not_paired.append(f"{where}: not on the same points ({differ})")
            continue
        usable = shared[has_flags[shared.index]]
        usable = usable[usable["_pk"].isin(set(pb.loc[has_flags[pb.index], "_pk"]))]
        if usable.empty:  # records written before they kept which points stayed robust
            old = sorted({r for g in (shared, pb) for r in g.loc[~has_flags[g.index], "record"]})
            not_paired.append(
                f"{where}: no per-point flags in {', '.join(old)} (made before records kept them; "
                "evaluate again to compare)"
            )
            continue
        ra = newest_largest(usable)
        rb = newest_largest(pb[(pb["_pk"] == ra["_pk"]) & has_flags[pb.index]])
        pairs.append(Paired(str(first["_col"]), threat, eps_first(first["eps_normalized"]), ra, rb, pair_rows(ra, rb)))
    if not pairs:
        if not_paired:
            raise RobustError(f"{name_a} and {name_b} have no attack to compare point by point; {not_paired[0]}")
        raise RobustError(
            f"{name_a} and {name_b} share no attack at the same radius; evaluate both with the same attack and eps"
        )
    pairs.sort(key=lambda p: (attack_order(p.attack), str(p.row_a["norm"]), p.eps))
    return ModelComparison(a, b, name_a, name_b, pairs, not_paired)


def indistinguishable_from_best(flags: Mapping[str, object], alpha: float = ALPHA) -> set[str]:
    """The models (keys of ``flags``: per-point robust flags on the same points) that
    cannot be told apart from the most accurate one: the best itself (every model tied
    with it), and each other model whose McNemar exact p-value against the best, Holm-
    corrected over the m - 1 comparisons, is at least ``alpha``."""
    if not flags:
        return set()
    arrays = {k: np.asarray(v.cpu() if hasattr(v, "cpu") else v, dtype=bool) for k, v in flags.items()}
    lengths = {len(v) for v in arrays.values()}
    if len(lengths) != 1:
        raise RobustError(
            f"the models' flags cover different numbers of points ({sorted(lengths)}); marks against "
            "the best need every model on the same points"
        )
    acc = {k: int(v.sum()) for k, v in arrays.items()}
    top = max(acc.values())
    best = sorted(k for k in acc if acc[k] == top)
    ref = arrays[best[0]]
    others = [k for k in sorted(arrays) if acc[k] != top]
    if not others:
        return set(best)
    p = [mcnemar_p(int((ref & ~arrays[k]).sum()), int((~ref & arrays[k]).sum())) for k in others]
    adjusted = holm(p)
    return set(best) | {k for k, q in zip(others, adjusted) if q >= alpha}


def table_marks(data: ReportData, table: Table, alpha: float = ALPHA) -> dict[str, set[int]]:
    """For each attack column of a comparison table: the indices (into table.rows) of the
    models indistinguishable from the column's best (see indistinguishable_from_best).
    Only cells backed by one record with per-point flags take part, and only those on
    the same points as the best of them; a column with fewer than two such models gets
    no marks (there is nothing to tell apart). Clean accuracy has no per-point flags."""
    rows = data.evals.set_index("record", drop=False)
    out: dict[str, set[int]] = {}
    for col in table.columns:
        if col == "clean":
            continue
        cand = []
        for i, r in enumerate(table.rows):
            cell = r.cells.get(col)
            if cell is None or cell.record is None or cell.record not in rows.index:
                continue
            rec = rows.loc[cell.record]
            if isinstance(rec, pd.DataFrame):  # the record name repeats: not one measurement
                continue
            if isinstance(rec["robust_flags"], str) and isinstance(rec["indices_sha256"], str):
                cand.append((i, rec))
        if len(cand) < 2:
            continue
        best = max(cand, key=lambda t: (t[1]["robust_acc"], -t[0]))[1]
        same = [(i, rec) for i, rec in cand if _key(rec, _POINTS) == _key(best, _POINTS)]
        if len(same) < 2:
            continue
        marked = indistinguishable_from_best({str(i): record_flags(rec) for i, rec in same}, alpha)
        out[col] = {int(i) for i in marked}
    return out


def fmt_p(p: float) -> str:
    """A p-value as it is read: '0.032', '4.1e-05', '1'."""
    if math.isnan(p):
        return "-"
    if p >= 0.9995:
        return "1"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"

"""report.csv: one row per kept evaluation record, every field the tables draw on and
more, in a fixed column order."""

from __future__ import annotations

import math

import pandas as pd

from ..errors import RobustError
from .columns import attack_order, column_name
from .load import ReportData
from .radii import eps_first
from .record_fields import given
from .table_parts import WORST, method_text
from .train_runs import match_train


def step_rule_text(attack_name, rule) -> str | None:
    """The record's step rule, or 'own' for an attack that sets its own steps (the
    registry says so; its record then says null, or, made before, the threat model's
    unused default)."""
    if attack_name == WORST:  # a worst case is no one attack: no step of its own
        return None
    try:
        from ..attacks import registry  # deferred: start-up time (the attacks import torch; the report never needs it)

        own = registry.info(str(attack_name)).step_rule is None
    except (RobustError, KeyError, ImportError):  # no longer registered (or renamed): the record's word stands
        own = False
    if own:
        return "own"
    return rule if given(rule) else None


CSV_ORDER = [
    "dataset",
    "checkpoint",
    "checkpoint_path",
    "checkpoint_sha256",
    "experiment",
    "group",
    "train_seed",
    "arch",
    "method",
    "adv",
    "train_eps_normalized",
    "train_eps_pixel",
    "attack",
    "attack_name",
    "attack_kind",
    "attack_members",
    "cumulative",
    "transfer_from",
    "replayed_from",
    "crafted_on",
    "norm",
    "eps_space",
    "eps_normalized",
    "eps_pixel",
    "step_normalized",
    "step_pixel",
    "step_rule",
    "k",
    "restarts",
    "split",
    "n",
    "selection",
    "data_seed",
    "indices_sha256",
    "clean_acc",
    "clean_lo",
    "clean_hi",
    "robust_acc",
    "robust_lo",
    "robust_hi",
    "eval_seconds",
    "clean_seconds",
    "train_minutes",
    "degenerate",
    "model_warnings",
    "warnings",
    "created",
    "record",
]


def csv_frame(data: ReportData) -> pd.DataFrame:
    """One row per kept evaluation record, sorted by dataset, checkpoint, norm,
    eps and attack; per-channel radii are ';'-joined (the whole column is then text)."""
    df = data.evals.copy()
    if df.empty:
        return pd.DataFrame(columns=CSV_ORDER)
    mins = [match_train(r, data.trains) for _, r in df.iterrows()]
    df["method"] = [method_text(m, a, s) for m, a, s in zip(df["method"], df["adv"], df["model_source"])]
    df["train_minutes"] = [t.minutes if t and t.minutes is not None else math.nan for t in mins]
    df["_e"] = df["eps_normalized"].map(eps_first)
    df["step_rule"] = [step_rule_text(a, r) for a, r in zip(df["attack_name"], df["step_rule"])]
    cols = df.apply(column_name, axis=1)
    rank = {c: i for i, c in enumerate(sorted(set(cols), key=attack_order))}
    df["_o"] = cols.map(rank)
    df = df.sort_values(
        ["dataset", "checkpoint", "ckpt_key", "norm", "_e", "_o", "n", "created", "record"],
        kind="stable",
        key=lambda s: s if pd.api.types.is_numeric_dtype(s) else s.astype(str),
    )
    df = df[CSV_ORDER].reset_index(drop=True)
    for col in (
        "train_eps_normalized",
        "train_eps_pixel",
        "eps_normalized",
        "eps_pixel",
        "step_normalized",
        "step_pixel",
    ):
        if any(isinstance(v, str) for v in df[col]):
            df[col] = [v if isinstance(v, str) else (None if math.isnan(v) else repr(float(v))) for v in df[col]]
        else:
            df[col] = df[col].astype(float)
    for col in df.columns:  # text columns: missing is NaN, as read_csv gives it back
        if df[col].dtype == object and not any(isinstance(v, (bool, float, int)) for v in df[col] if v is not None):
            df[col] = pd.Series([v if isinstance(v, str) else None for v in df[col]], dtype="str")
    for col in ("k", "restarts", "data_seed", "train_seed"):  # integers, blank where there is no such setting
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    return df

"""The comparison tables: one per threat model (norm and eps in both spaces), one
row per checkpoint, one column per attack, each cell an accuracy with its 95%
interval and n, warnings beside the numbers they concern, and what the worst-case
column is over said once per table. The parts of a table live in table_parts.py, the
columns' order and names in columns.py, the worst-case column in worst_case.py and
report.csv in report_csv.py; how a table is laid out on the page is layout.py's."""

from __future__ import annotations

import math

import pandas as pd

from .columns import attack_order, column_name, provenance_note, split_sources, threat_key
from .compare import table_marks
from .load import ReportData, newest_largest
from .radii import eps_first, eps_key, fmt_eps, pixel_threat_label, threat_label
from .record_fields import given
from .table_parts import WORST, Cell, Comparison, Row, Table, method_text
from .train_runs import TrainRun, match_train
from .worst_case import worst_across_records, worst_case_note


# How tables name training methods: the adversarial method when there is one (an
# adversarially trained model is not "standard"), the base loss beside it when it is
# not plain cross-entropy.
def _describe_model(row: pd.Series) -> tuple[str, str, str, str]:
    return (
        str(row["dataset"] or "-"),
        str(row["arch"] or "-"),
        method_text(row["method"], row["adv"], row.get("model_source")),
        str(row["adv"] or "none"),
    )


def _headline_rank(kv) -> tuple:
    """The headline radius: the one most checkpoints were evaluated at, then with
    the most attacks and records; on a tie, one some checkpoint was trained at."""
    (norm, *_), g = kv
    trained = any(
        isinstance(t, float) and isinstance(e, float) and math.isclose(t, e, rel_tol=1e-6)
        for col in ("normalized", "pixel")
        for t, e in zip(g[f"train_eps_{col}"], g[f"eps_{col}"])
    )
    return (
        -g["ckpt_key"].nunique(),
        -g["_col"].nunique(),
        -len(g),
        not trained,
        str(norm),
        eps_first(g["eps_normalized"].iloc[0]),
    )


def _radius_label(norm, models: list[tuple[str, pd.DataFrame]], rows: list[Row]) -> tuple[str, str | None]:
    """A table's title, and where its models' normalizations turn its pixel ball into
    different normalized radii, the line under it that gives each model's."""
    first = models[0][1].iloc[0]
    per_model: dict[str, tuple[object, list[str]]] = {}
    for row, (_, cg) in zip(rows, models):
        e = cg["eps_normalized"].iloc[0]
        per_model.setdefault(eps_key(e), (e, []))[1].append(row.checkpoint)
    if len(per_model) == 1:
        return threat_label(norm, first["eps_normalized"], first["eps_pixel"]), None
    text = "; ".join(f"{fmt_eps(e)} for {', '.join(names)}" for e, names in per_model.values())
    note = f"eps normalized, by each model's own (x - mean) / std: {text}."
    return pixel_threat_label(norm, first["eps_pixel"]), note


def _by_checkpoint(g: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """A table's models, each with its records, in row order."""
    return sorted(
        g.groupby("ckpt_key", sort=False),
        key=lambda kv: (str(kv[1]["dataset"].iloc[0]), str(kv[1]["checkpoint"].iloc[0]), kv[0]),
    )


def build_comparison(data: ReportData) -> Comparison:
    df = data.evals
    comp = Comparison([], [])
    if df.empty:
        return comp
    df = df.assign(_col=df.apply(column_name, axis=1), _threat=df.apply(threat_key, axis=1))
    df = df.assign(_col=split_sources(df))
    groups = sorted(df.groupby("_threat", sort=False), key=_headline_rank)
    headline, rest = (
        groups[0],
        sorted(
            groups[1:],
            key=lambda kv: (
                kv[0][0],
                eps_first(kv[1]["eps_normalized"].iloc[0]),
                eps_first(kv[1]["eps_pixel"].iloc[0]),
            ),
        ),
    )
    for (norm, *_), g in [headline, *rest]:
        first = g.iloc[0]
        models = _by_checkpoint(g)
        rows = [_build_row(comp, cg, data.trains) for _, cg in models]
        title, radius_note = _radius_label(norm, models, rows)
        worst = worst_case_note(comp, rows)
        # a worst case taken across records can add the column where no single call made one
        columns = ["clean"] + sorted(
            set(g["_col"]) | {c for r in rows for c in r.cells if c != "clean"}, key=attack_order
        )
        comp.tables.append(
            Table(
                title,
                norm,
                first["eps_normalized"] if radius_note is None else None,
                first["eps_pixel"],
                columns,
                rows,
                worst_note=worst,
                radius_note=radius_note,
            )
        )
    for t in comp.tables:
        t.marks = {col: rows for col, rows in table_marks(data, t).items() if rows}
    return comp


def _build_row(comp: Comparison, cg: pd.DataFrame, trains: list[TrainRun]) -> Row:
    ref = newest_largest(cg)
    dataset, model, method, adv = _describe_model(ref)
    cells: dict[str, Cell] = {
        "clean": Cell(ref["clean_acc"], ref["clean_lo"], ref["clean_hi"], int(ref["n"]), record=ref["record"])
    }
    row_notes: list[int] = []
    eval_seconds = 0.0
    clean_seconds = 0.0
    shown: dict[str, pd.Series] = {}
    for col, ag in sorted(cg.groupby("_col", sort=False), key=lambda kv: attack_order(kv[0])):
        r = shown[col] = newest_largest(ag)
        cell = Cell(r["robust_acc"], r["robust_lo"], r["robust_hi"], int(r["n"]), record=r["record"])
        source = provenance_note(r, col)
        if source:
            cell.notes.append(comp.note(source, warning=False))
        if isinstance(r["warnings"], str):
            for w in r["warnings"].split(" | "):
                cell.notes.append(comp.note(f"{col} on {r['checkpoint']}: {w}"))
        if len(ag) > 1:
            cell.notes.append(
                comp.note(
                    f"{col} on {r['checkpoint']}: {len(ag)} evaluations on different points; the table shows the one "
                    f"with the largest n ({r['record']}); report.csv lists all",
                    warning=False,
                )
            )
        if r["attack_name"] == WORST and isinstance(r["attack_members"], str):
            cell.over = r["attack_members"].replace("+", ", ")
        cells[col] = cell
        if r["attack_name"] != WORST and not math.isnan(r["eval_seconds"]):
            eval_seconds += r["eval_seconds"]
        if not math.isnan(r["clean_seconds"]):
            clean_seconds = max(clean_seconds, r["clean_seconds"])
    worst_across_records(comp, shown, cells)
    degenerate = next((d for d in cg["degenerate"] if isinstance(d, str)), None)
    if degenerate:  # every robust number of a model that guesses or predicts one class measures nothing
        i = comp.note(f"{ref['checkpoint']}: degenerate model ({degenerate}); its robust accuracies are meaningless")
        row_notes.append(i)
        for col, cell in cells.items():
            if col != "clean":
                cell.notes.append(i)
    for w in sorted({w for ws in cg["model_warnings"] if isinstance(ws, str) for w in ws.split(" | ")}):
        row_notes.append(comp.note(f"{ref['checkpoint']}: {w}"))
    train = match_train(ref, trains)
    seed = ref["train_seed"]
    return Row(
        str(ref["checkpoint"]),
        dataset,
        model,
        method,
        adv,
        ref["train_eps_normalized"],
        ref["train_eps_pixel"],
        cells,
        train.minutes if train else None,
        eval_seconds + clean_seconds,
        row_notes,
        degenerate,
        ref["experiment"] if given(ref["experiment"]) else None,
        ref["group"] if given(ref["group"]) else None,
        None if seed is None or pd.isna(seed) else int(seed),
        str(cg["created"].max()),
    )

"""The comparison tables: one per threat model (norm and eps in both spaces), one
row per checkpoint, one column per attack, each cell an accuracy with its 95%
interval and n, warnings beside the numbers they concern, and what the worst-case
column is over said once per table; and report.csv's rows. How a table is laid
out on the page is layout.py's."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..results import wilson_interval
from ..text import method_label  # noqa: F401  (the report's method column; tests import it here)
from .load import (
    ReportData,
    TrainRun,
    eps_first,
    eps_key,
    match_train,
    newest_largest,
    threat_label,
)

WORST = "worst-case"
MARK = "◆"  # beside a number indistinguishable from its column's best (compare.MARK_NOTE says how)


@dataclass
class Cell:
    acc: float
    lo: float
    hi: float
    n: int
    notes: list[int] = field(default_factory=list)  # footnote numbers
    record: str | None = None
    over: str | None = None  # a worst-case cell: the attacks it is the worst case over (and how it was combined)


@dataclass
class Row:
    checkpoint: str
    dataset: str
    model: str
    method: str
    adv: str
    train_eps_normalized: object
    train_eps_pixel: object
    cells: dict[str, Cell]
    train_minutes: float | None
    eval_seconds: float
    notes: list[int] = field(default_factory=list)  # model-level warnings
    degenerate: str | None = None  # why its robust numbers are meaningless (guesses, one class), or None
    experiment: str | None = None  # the experiment and group of cells (one method, several training seeds)
    group: str | None = None  # that trained it, and its training seed; None for a model from elsewhere
    train_seed: int | None = None
    created: str = ""  # its newest record


@dataclass
class Table:
    title: str
    norm: str
    eps_normalized: object
    eps_pixel: object
    columns: list[str]  # 'clean' first, then attacks, worst case last
    rows: list[Row]
    marks: dict[str, set[int]] = field(default_factory=dict)  # column -> rows indistinguishable from its best
    worst_note: str | None = None  # what the worst-case cells are over, said once under the table


@dataclass
class Comparison:
    tables: list[Table]  # the first is the headline (the radius with the most records)
    notes: list[str]  # footnote texts; note i is notes[i - 1]
    warning: list[bool] = field(default_factory=list)  # note i is a failed sanity check (⚠), else information (†)

    def note(self, text: str, warning: bool = True) -> int:
        if text not in self.notes:
            self.notes.append(text)
            self.warning.append(warning)
        return self.notes.index(text) + 1

    def marker(self, i: int) -> str:
        return ("⚠" if self.warning[i - 1] else "†") + str(i)


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


def _given(v) -> bool:
    return isinstance(v, str) and bool(v)


def source_of(row: pd.Series) -> str | None:
    """Where a record's adversarial images were crafted, when not on the model scored:
    the surrogate of a transfer attack or the replayed file; None otherwise."""
    if _given(row.get("transfer_from")):
        return row["transfer_from"]
    if _given(row.get("replayed_from")):
        return row["replayed_from"]
    return None


def provenance_note(row: pd.Series, col: str) -> str | None:
    """The footnote naming a transfer or replay record's source, or None."""
    if _given(row.get("transfer_from")):
        return (
            f"{col} on {row['checkpoint']}: a transfer attack, crafted on the surrogate {row['transfer_from']} "
            f"and scored on {row['checkpoint']}"
        )
    if _given(row.get("replayed_from")):
        crafted = f" (crafted on {row['crafted_on']})" if _given(row.get("crafted_on")) else ""
        return (
            f"{col} on {row['checkpoint']}: saved adversarial images replayed from {row['replayed_from']}"
            f"{crafted}, nothing crafted on {row['checkpoint']}"
        )
    return None


def _split_sources(df: pd.DataFrame) -> pd.Series:
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


def step_rule_text(attack_name, rule) -> str | None:
    """The record's step rule, or 'own' for an attack that sets its own steps (the
    registry says so; its record then says null, or, made before, the threat model's
    unused default)."""
    if attack_name == WORST:  # a worst case is no one attack: no step of its own
        return None
    from ..errors import RobustError

    try:
        from ..attacks import registry

        own = registry.info(str(attack_name)).step_rule is None
    except (RobustError, KeyError, ImportError):  # no longer registered (or renamed): the record's word stands
        own = False
    if own:
        return "own"
    return rule if _given(rule) else None


def _threat_key(row) -> tuple:
    return (str(row["norm"]), eps_key(row["eps_normalized"]), eps_key(row["eps_pixel"]))


def _pct(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def cell_text(c: Cell) -> str:
    """'45.2 [42.1, 48.3] n=1000' (percent)."""
    return f"{_pct(c.acc)} [{_pct(c.lo)}, {_pct(c.hi)}] n={c.n}"


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


def method_text(method, adv, source=None) -> str:
    """The training method; for a model we did not train (no method recorded), where it came from."""
    if not (isinstance(method, str) and method) and _given(source):
        return source
    return method_label(method, adv)


def _headline_rank(kv) -> tuple:
    """The headline radius: the one most checkpoints were evaluated at, then with
    the most attacks and records; on a tie, one some checkpoint was trained at."""
    (norm, _, _), g = kv
    e = g["eps_normalized"].iloc[0]
    trained = any(
        isinstance(t, float) and isinstance(e, float) and math.isclose(t, e, rel_tol=1e-6)
        for t in g["train_eps_normalized"]
    )
    return (-g["ckpt_key"].nunique(), -g["_col"].nunique(), -len(g), not trained, str(norm), eps_first(e))


def build_comparison(data: ReportData) -> Comparison:
    df = data.evals
    comp = Comparison([], [])
    if df.empty:
        return comp
    df = df.assign(_col=df.apply(column_name, axis=1), _threat=df.apply(_threat_key, axis=1))
    df = df.assign(_col=_split_sources(df))
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
    for (norm, _, _), g in [headline, *rest]:
        first = g.iloc[0]
        rows = []
        for _ckpt_key, cg in sorted(
            g.groupby("ckpt_key", sort=False),
            key=lambda kv: (str(kv[1]["dataset"].iloc[0]), str(kv[1]["checkpoint"].iloc[0]), kv[0]),
        ):
            rows.append(_build_row(comp, cg, data.trains))
        worst = _worst_case_note(comp, rows)
        # a worst case taken across records can add the column where no single call made one
        columns = ["clean"] + sorted(
            set(g["_col"]) | {c for r in rows for c in r.cells if c != "clean"}, key=attack_order
        )
        comp.tables.append(
            Table(
                threat_label(norm, first["eps_normalized"], first["eps_pixel"]),
                norm,
                first["eps_normalized"],
                first["eps_pixel"],
                columns,
                rows,
                worst_note=worst,
            )
        )
    from .compare import table_marks  # compare builds on this module's tables

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
    _worst_across_records(comp, shown, cells)
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
        ref["experiment"] if _given(ref["experiment"]) else None,
        ref["group"] if _given(ref["group"]) else None,
        None if seed is None or pd.isna(seed) else int(seed),
        str(cg["created"].max()),
    )


def _worst_across_records(comp: Comparison, shown: dict[str, pd.Series], cells: dict[str, Cell]) -> None:
    """The per-example worst case over every attack column of a row, from the records'
    per-point flags, when those records were made by different evaluate() calls on the
    same points (same indices digest and n). It replaces the worst-case cell of a single
    call only when it covers attacks that cell did not."""
    from ..results import unpack_flags

    attacks = {c: r for c, r in shown.items() if r["attack_name"] != WORST}
    if len(attacks) < 2 or any(not isinstance(r["robust_flags"], str) for r in attacks.values()):
        return
    points = {(r["indices_sha256"], int(r["n"])) for r in attacks.values()}
    if len(points) != 1 or None in next(iter(points)):
        return
    worst = shown.get(WORST)
    covered = (
        set(worst["attack_members"].split("+"))
        if worst is not None and isinstance(worst["attack_members"], str)
        else set()
    )
    labels = {c: r["attack"] for c, r in attacks.items()}
    if set(labels.values()) <= covered:
        return  # one call already took the worst case over all of them
    n = int(next(iter(attacks.values()))["n"])
    robust = None
    for r in attacks.values():
        flags = unpack_flags(r["robust_flags"], n)
        robust = flags if robust is None else robust & flags
    k = int(robust.sum())
    lo, hi = wilson_interval(k, n)
    records = sorted({r["record"] for r in attacks.values()})
    over = ", ".join(sorted(attacks, key=attack_order))
    over += f", combined from {len(records)} records on the same {n} points"
    cells[WORST] = Cell(k / n, lo, hi, n, record=None, over=over)


def _worst_case_note(comp: Comparison, rows: list[Row]) -> str | None:
    """What the worst-case column is over, said once: the set most of its cells share.
    A cell over another set carries a note of its own saying which."""
    cells = [(r, r.cells[WORST]) for r in rows if WORST in r.cells and r.cells[WORST].over]
    if not cells:
        return None
    common = Counter(c.over for _, c in cells).most_common(1)[0][0]  # on a tie, the first row's
    for r, c in cells:
        if c.over != common:
            c.notes.append(
                comp.note(f"worst case on {r.checkpoint}: per-example worst case over {c.over}", warning=False)
            )
    every = len(cells) == sum(WORST in r.cells for r in rows) and all(c.over == common for _, c in cells)
    return f"{WORST}: the per-example worst case over {common}" + (
        ", in every row." if every else ", unless a note beside the cell says otherwise."
    )


# ----------------------------------------------------------------------------- CSV


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

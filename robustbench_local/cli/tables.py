"""Rich tables for the terminal; plain text when not on a terminal."""

from __future__ import annotations

import sys
from functools import lru_cache

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..eval_records import summary_rows
from ..text import pct


@lru_cache(maxsize=1)
def console() -> Console:
    # off a terminal rich would squeeze tables to 80 columns and cut checkpoint names
    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 200)


def _eps(v) -> str:
    if isinstance(v, list):
        return "[" + ",".join(f"{x:.4g}" for x in v) + "]"
    return f"{v:.4g}" if isinstance(v, (int, float)) else str(v)


def print_eval_table(records: list[dict]) -> None:
    t = Table(title="clean and robust accuracy (95% Wilson interval)")
    for col, just in [
        ("checkpoint", "left"),
        ("attack", "left"),
        ("eps (normalized)", "right"),
        ("eps (pixel)", "right"),
        ("clean", "right"),
        ("robust", "right"),
        ("95% CI", "right"),
        ("n", "right"),
        ("seconds", "right"),
        ("img/s", "right"),
    ]:
        t.add_column(col, justify=just)
    warnings = []
    for row, rec in zip(summary_rows(records), records):
        lo, hi = row["ci95"]
        px = row["eps_pixel"]
        px_s = _eps(px) + (f" ({px * 255:.3g}/255)" if isinstance(px, float) and row["norm"] == "linf" else "")
        robust = pct(row["robust_acc"])
        why = degenerate_reason(rec)
        if why:  # robust accuracy of a model that predicts one class measures nothing
            robust += " (meaningless: degenerate model)"
            w = f"{row['checkpoint']} is degenerate ({why}); its robust numbers are meaningless"
            warnings += [w] if w not in warnings else []
        t.add_row(
            row["checkpoint"],
            f"{row['attack']} {row['norm']}",
            _eps(row["eps_normalized"]),
            px_s,
            pct(row["clean_acc"]),
            robust,
            f"{lo:.1%}-{hi:.1%}",
            f"{row['n']:,}",
            f"{row['seconds']:.1f}",
            _rate(row["images_per_s"]),
        )
        warnings += [w for w in row["warnings"] if w not in warnings]
    c = console()
    c.print(t)
    for w in warnings:
        c.print(f"[yellow]warning:[/yellow] {escape(w)}")


def _rate(per_s: float | None) -> str:
    """Images per second: '1,234', '12.3', '0.34' (a slow AutoAttack is not 0)."""
    if not per_s:
        return "-"
    return f"{per_s:,.0f}" if per_s >= 100 else f"{per_s:.3g}"


def degenerate_reason(rec: dict) -> str | None:
    """Why a record's model is degenerate (e.g. it predicts one class), or None."""
    d = rec.get("degenerate")
    if not d:
        return None
    if isinstance(d, dict):
        return str(d.get("reason") or "degenerate model")
    return d if isinstance(d, str) else "model predicts one class or guesses at chance"


def print_corruption_table(rec: dict) -> None:
    """One model's corruption record: accuracy per corruption (rows) and severity
    (columns), the mean over severities, and the summary below."""
    m, about = rec["metrics"], rec["corruptions"]
    sevs = about["severities"]
    cells = {(r["corruption"], r["severity"]): r["acc"] for r in m["results"]}
    differs = about.get("differs_from_cifar10c", {})
    table = Table(
        title=f"{escape(rec['checkpoint']['name'] or '')}: accuracy under common corruptions "
        f"({about['source']}, n={m['n']:,} per cell)"
    )
    table.add_column("corruption")
    for s in sevs:
        table.add_column(f"sev {s}", justify="right")
    table.add_column("mean", justify="right")
    for c in about["names"]:
        table.add_row(
            c + (" *" if c in differs else ""), *[pct(cells[(c, s)]) for s in sevs], pct(m["by_corruption"][c])
        )
    console().print(table)
    lo, hi = m["mean_ci95"]
    drop = m["relative_drop"]
    console().print(
        f"clean {pct(m['clean_acc'])}; mean corruption accuracy {pct(m['mean_acc'])} "
        f"(95% CI {pct(lo)}-{pct(hi)} over test points); relative drop from clean "
        + (pct(drop) if drop is not None else "-")
    )
    for c, why in differs.items():
        console().print(f"* {c}: {escape(why)}")
    why = degenerate_reason(rec)
    if why:
        console().print(
            f"[yellow]warning:[/yellow] {escape(rec['checkpoint']['name'] or 'the model')} is "
            f"degenerate ({escape(why)}); its corruption accuracies and drop are meaningless"
        )

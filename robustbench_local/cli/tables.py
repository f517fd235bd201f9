"""Rich tables for the terminal; plain text when not on a terminal."""
from __future__ import annotations

from functools import lru_cache

from rich.console import Console
from rich.table import Table


@lru_cache(maxsize=1)
def console() -> Console:
    import sys

    # off a terminal rich would squeeze tables to 80 columns and cut checkpoint names
    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 200)


def _eps(v) -> str:
    if isinstance(v, list):
        return "[" + ",".join(f"{x:.4g}" for x in v) + "]"
    return f"{v:.4g}" if isinstance(v, (int, float)) else str(v)


def print_eval_table(records: list[dict]) -> None:
    from ..evaluate import summary_rows

    t = Table(title="clean and robust accuracy (95% Wilson interval)")
    for col, just in [("checkpoint", "left"), ("attack", "left"), ("eps (normalized)", "right"), ("eps (pixel)", "right"),
                      ("clean", "right"), ("robust", "right"), ("95% CI", "right"), ("n", "right"),
                      ("seconds", "right"), ("img/s", "right")]:
        t.add_column(col, justify=just)
    warnings = []
    for row in summary_rows(records):
        lo, hi = row["ci95"]
        px = row["eps_pixel"]
        px_s = _eps(px) + (f" ({px * 255:.3g}/255)" if isinstance(px, float) else "")
        t.add_row(row["checkpoint"], f"{row['attack']} {row['norm']}", _eps(row["eps_normalized"]), px_s,
                  f"{row['clean_acc']:.2%}", f"{row['robust_acc']:.2%}", f"{lo:.1%}-{hi:.1%}", str(row["n"]),
                  f"{row['seconds']:.1f}", f"{row['images_per_s']:.0f}" if row["images_per_s"] else "-")
        warnings += [w for w in row["warnings"] if w not in warnings]
    c = console()
    c.print(t)
    for w in warnings:
        c.print(f"[yellow]warning:[/yellow] {w}")

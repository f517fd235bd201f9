"""corruptions.csv: every kept corruption record in long form, one line per corruption
and severity, beside the model's clean accuracy."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from ..corruptions import CORRUPTIONS

if TYPE_CHECKING:  # for annotations only: corruptions.py imports this module
    from .corruptions import CorruptionSection

CSV_COLUMNS = [
    "dataset",
    "split",
    "model",
    "checkpoint_sha256",
    "method",
    "source",
    "corruption",
    "family",
    "severity",
    "n",
    "acc",
    "ci_low",
    "ci_high",
    "differs_from_cifar10c",
    "record",
]


def long_form(rows: list[dict], section: CorruptionSection) -> pd.DataFrame:
    """Long form, every kept record: one line per corruption and severity, and its clean
    accuracy as corruption 'clean' at severity 0."""
    names = {r.ckpt_key: (r.name, r.method) for t in section.tables for r in t.rows}
    out = []
    for f in rows:
        m, about = f["rec"]["metrics"], f["rec"]["corruptions"]
        name, method = names.get(f["ckpt_key"], (f["checkpoint"], f["method"]))
        differs = (about.get("differs_from_cifar10c") or {}) if f["source"] == "generated" else {}
        base = {
            "dataset": f["dataset"],
            "split": f["split"],
            "model": name,
            "checkpoint_sha256": f["checkpoint_sha256"],
            "method": method,
            "source": f["source"],
            "record": f["record"],
        }
        lo, hi = m["clean_ci95"]
        out.append(
            {
                **base,
                "corruption": "clean",
                "family": "clean",
                "severity": 0,
                "n": f["n"],
                "acc": m["clean_acc"],
                "ci_low": lo,
                "ci_high": hi,
                "differs_from_cifar10c": False,
            }
        )
        for r in m["results"]:
            out.append(
                {
                    **base,
                    "corruption": r["corruption"],
                    "family": r.get("family") or "",
                    "severity": int(r["severity"]),
                    "n": int(r["n"]),
                    "acc": r["acc"],
                    "ci_low": r["ci95"][0],
                    "ci_high": r["ci95"][1],
                    "differs_from_cifar10c": r["corruption"] in differs,
                }
            )
    rank = {c: i for i, c in enumerate(CORRUPTIONS)}
    df = pd.DataFrame(out, columns=CSV_COLUMNS)
    df["_c"] = df["corruption"].map(lambda c: -1 if c == "clean" else rank.get(c, len(rank)))
    df = df.sort_values(["dataset", "split", "model", "record", "_c", "corruption", "severity"], kind="stable")
    return df.drop(columns="_c").reset_index(drop=True)

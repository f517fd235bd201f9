"""REPORT.md: the comparison tables with their warnings, the figures and the
bookkeeping (filters, superseded and skipped records), in GitHub markdown."""

from __future__ import annotations

import math

from ..text import ADV_LABELS, method_label, plural
from .corruption_pages import corruptions_markdown
from .corruptions import CorruptionSection
from .examples import Example
from .figure_base import ReportFigure
from .layout import (
    COST_HEAD,
    COST_TITLE,
    cost_rows,
    lead_cells,
    lead_columns,
    legend,
    mark_note,
    marked,
    notes_text,
    table_notes,
)
from .leaderboard import Leaderboard
from .leaderboard_pages import leaderboard_markdown
from .load import ReportData
from .min_norm_plots import MIN_NORM
from .seeds import SEED_EXPLAIN, SeedTable, build_seed_tables, degenerate_notes, seed_cell_text, seeds_text
from .table_parts import MARK, Comparison, Table, cell_text
from .train_runs import TrainRun, robust_key

# each training method once: aliases (fgsm-rs, fgsm_rs) share a label
METHOD_NAMES = ", ".join(dict.fromkeys(ADV_LABELS.values()))
EXPLAIN = (
    "Each cell: accuracy in % with its 95% Wilson interval [low, high] and n, the number of test points. "
    "eps is stated in both spaces: normalized (measured after the model's (x - mean) / std, the seeds' convention) "
    "and pixel (on [0,1] images, RobustBench's convention; also as k/255). worst-case is the per-example worst case "
    "over the attacks run together at that eps. ⚠ marks a failed sanity check and † a note, both explained under "
    "the table. "
    f"method names the adversarial training ({METHOD_NAMES}) and any base loss beside it "
    "(e.g. MixUp + PGD-AT), or standard; train eps is the radius it trained at, in full under the table. "
    "A checkpoint marked (degenerate) guesses or predicts one class on its "
    "clean points, so its robust accuracies are meaningless. "
    "Under each table, training minutes from the matching training record, and seconds of the clean pass and the "
    "attacks in each row."
)

MIN_NORM_EXPLAIN = (
    "From one run of a minimal-norm attack (CW, DeepFool, FAB-T): the smallest adversarial perturbation it found "
    "for each point gives robust accuracy at every radius, a point counting as robust where no perturbation of that "
    "norm or less was found. The curve is an upper bound on the true robust accuracy, like every attack's number; "
    "the star is the record's own eps. Markers: the same checkpoint's fixed-radius attacks (PGD, APGD, AutoAttack, "
    "...) at the same norm and space, with 95% intervals, as measured (never joined)."
)


def header_lines(data: ReportData) -> list[str]:
    n_eval, n_train = len(data.evals), len(data.trains)
    lines = [
        f"Generated from {plural(n_eval, 'evaluation record')} and {plural(n_train, 'training record')}, "
        f"created up to {data.newest_created or 'an unknown time'}."
    ]
    if data.notes:
        lines.append(f"Notes: {data.notes}")
    active = [f"--{k} {', '.join(v)}" for k, v in data.filters.items() if v]
    if active:
        lines.append("Filters: " + "; ".join(active) + ".")
    return lines


def _best(history: list[dict], *keys: str):
    vals = [
        h[k] for h in history for k in keys if isinstance(h.get(k), (int, float)) and not isinstance(h.get(k), bool)
    ]
    return max(vals) if vals else None


def _last(history: list[dict], *keys: str):
    for h in reversed(history):
        for k in keys:
            if isinstance(h.get(k), (int, float)) and not isinstance(h.get(k), bool):
                return h[k]
    return None


def training_rows(trains: list[TrainRun]) -> list[list[str]]:
    def pct(v):
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"

    rows = []
    for t in trains:
        name = t.name + (" (degenerate)" if t.warning and "degenerate" in t.warning else "")
        rows.append(
            [
                name,
                t.dataset or "-",
                t.arch or "-",
                method_label(t.method, t.adv),
                t.adv or "none",
                "-" if t.epochs is None else str(t.epochs),
                "-" if t.minutes is None else f"{t.minutes:.1f}",
                "-" if t.split is None else " / ".join(f"{m:.1f}" for m in t.split),
                pct(_best(t.history, "val_acc")),
                pct(_last(t.history, robust_key(t.history) or "val_robust_acc")),
                t.record,
            ]
        )
    return rows


TRAIN_HEAD = [
    "run",
    "dataset",
    "model",
    "method",
    "adversarial",
    "epochs",
    "minutes",
    "attack / step / val min",
    "best val acc %",
    "last val robust acc %",
    "record",
]


TRAIN_EXPLAIN = (
    "attack / step / val min: where the training minutes went, as the training record measured them: "
    "crafting the adversarial examples (0 for standard training), the rest of the training steps "
    "(forward, backward, optimizer, loading), and the per-epoch validation."
)


def _md_row(vals) -> str:
    return "| " + " | ".join(str(v).replace("|", "\\|").replace("\n", " ") for v in vals) + " |"


def markdown_table(t: Table, comp: Comparison) -> str:
    """The comparison table: descriptive columns, then one per attack."""
    lead = lead_columns(t)
    lines = [_md_row(lead + t.columns), _md_row(["---"] * len(lead) + ["---:"] * len(t.columns))]
    for i, r in enumerate(t.rows):
        vals = lead_cells(r, lead)
        vals[0] += " " + notes_text(comp, r.notes) if r.notes else ""
        for col in t.columns:
            c = r.cells.get(col)
            vals.append(
                ""
                if c is None
                else cell_text(c)
                + (f" {MARK}" if marked(t, col, i) else "")
                + (" " + notes_text(comp, c.notes) if c.notes else "")
            )
        lines.append(_md_row(vals))
    return "\n".join(lines)


def cost_markdown(t: Table) -> list[str]:
    """The second table, folded (GitHub renders markdown inside <details>)."""
    return [
        f"<details><summary>{COST_TITLE}</summary>",
        "",
        _md_row(COST_HEAD),
        _md_row(["---"] * 2 + ["---:"] * 2),
        *(_md_row(r) for r in cost_rows(t)),
        "",
        "</details>",
        "",
    ]


SEED_HEAD = ["method (cells)", "training", "seeds"]


def seeds_markdown(tables: list[SeedTable]) -> list[str]:
    """The section "Across training seeds"; nothing when no method has two seeds."""
    if not tables:
        return []
    out = ["## Across training seeds", "", SEED_EXPLAIN, ""]
    for t in tables:
        out += [
            f"### {t.title}",
            "",
            _md_row(SEED_HEAD + t.columns),
            _md_row(["---"] * len(SEED_HEAD) + ["---:"] * len(t.columns)),
        ]
        for r in t.rows:
            cells = [seed_cell_text(r.cells[c], r) if c in r.cells else "" for c in t.columns]
            out.append(_md_row([r.group, r.method, seeds_text(r)] + cells))
        out += [""] + [f"- {n}" for n in degenerate_notes(t)] + ([""] if degenerate_notes(t) else [])
    return out


def render_markdown(
    data: ReportData,
    comp: Comparison,
    figures: list[ReportFigure],
    examples: list[Example] = (),
    fig_dir: str = "figures",
    leaderboard: Leaderboard | None = None,
    corruptions: CorruptionSection | None = None,
) -> str:
    out = ["# Robustness report", ""]
    out += header_lines(data) + ["", EXPLAIN, ""]
    marks = mark_note(comp)
    for i, t in enumerate(comp.tables):
        if i == 0:
            out += [f"## Comparison at {t.title}", ""]
        else:
            if i == 1:
                out += ["## Other radii", ""]
            out += [f"### {t.title}", ""]
        out += [markdown_table(t, comp), ""]
        out += [line for text in legend(t) for line in (text, "")]
        notes = table_notes(t)
        if notes:
            out += [f"- {comp.marker(j)}: {comp.notes[j - 1]}" for j in notes] + [""]
        if marks and t.marks:  # once, under the first table that has marks
            out += [marks, ""]
            marks = None
        out += cost_markdown(t)
    if not comp.tables:
        out += ["No evaluation records match; only training records are shown.", ""]
    out += seeds_markdown(build_seed_tables(data, comp))
    if leaderboard is not None:
        out += leaderboard_markdown(leaderboard)
    out += corruptions_markdown(corruptions, fig_dir)

    curves = [f for f in figures if f.name.startswith("eps-curves") and not f.name.startswith(MIN_NORM)]
    if curves:
        out += [
            "## Accuracy vs eps",
            "",
            "One line per checkpoint and attack; eps 0 is clean accuracy; error bars are 95% intervals. "
            "The bottom axis is in normalized space, the top axis in pixel space.",
            "",
        ]
        out += [f"![{f.title}]({fig_dir}/{f.name})" for f in curves] + [""]

    min_norm = [f for f in figures if f.name.startswith(MIN_NORM)]
    if min_norm:
        out += ["## Accuracy vs eps from minimal-norm attacks", "", MIN_NORM_EXPLAIN, ""]
        out += [f"![{f.title}]({fig_dir}/{f.name})" for f in min_norm] + [""]

    out += ["## Training", ""]
    if data.trains:
        out += [_md_row(TRAIN_HEAD), _md_row(["---"] * 5 + ["---:"] * 5 + ["---"])]
        out += [_md_row(r) for r in training_rows(data.trains)] + ["", TRAIN_EXPLAIN, ""]
        out += [f"![{f.title}]({fig_dir}/{f.name})" for f in figures if f.name.startswith("training")] + [""]
    else:
        out += ["No training records match.", ""]

    heat = [f for f in figures if f.name.startswith("per-class")]
    if heat:
        out += [
            "## Per-class accuracy",
            "",
            "Rows: checkpoint · attack at the radius of the first table holding that dataset; 'clean' rows "
            "are clean accuracy. Columns: classes.",
            "",
        ]
        out += [f"![{f.title}]({fig_dir}/{f.name})" for f in heat] + [""]

    if examples:
        out += ["## Examples", "", "Written by `robust visualize` and `robust analyze` for these checkpoints.", ""]
        for e in examples:
            out += [f"**{e.title}**", "", f"![{e.title}]({e.link})", ""]

    if data.superseded or data.skipped:
        out += ["## Records left out", ""]
        out += [
            f"- `{old}` is superseded by the newer `{new}` (same checkpoint, attack, eps, n and test points); "
            "the newer one is used."
            for old, new in data.superseded
        ]
        out += [f"- {s}" for s in data.skipped]
        out += [""]
    out += ["All numbers, with full precision, are in [report.csv](report.csv).", ""]
    return "\n".join(out)

"""The common-corruption section in words and tables, for REPORT.md and report.html:
what the numbers mean, where the corrupted images came from, the table of models by
corruption, and the published CIFAR-10-C figures our numbers are read against."""

from __future__ import annotations

import base64
import math
from html import escape

from ..corruptions import FAMILIES
from .corruption_adversarial import Adversarial
from .corruption_figures import corruption_label
from .corruption_published import PUBLISHED, SOURCE
from .corruptions import CSV_NAME, CorruptionSection, CorruptionTable, ModelRow
from .figure_base import ReportFigure
from .table_parts import cell_text

CONTEXT = (
    "Hendrycks & Dietterich (\"Benchmarking Neural Network Robustness to Common Corruptions and Perturbations\", "
    "ICLR 2019) defined these 15 corruptions at 5 severities (ImageNet-C, and CIFAR-10-C for 32x32 images) and "
    "found that standard classifiers lose a large part of their clean accuracy under them, noise and blur among "
    "the most damaging. Our numbers are not the same measurement as published ones: {differ}. Read them as a "
    "ranking of our models, and against published figures only for the shape of the losses (which corruptions "
    "hurt, how much is lost relative to clean), as the comparison below does."
)
EXPLAIN = (
    "Accuracy in %. Each corruption column is the mean over the severities evaluated. clean: the same test points "
    "uncorrupted, from the corruption record. mean corruption: over every corruption and severity evaluated, with "
    "a 95% interval over test points (each point's share of corrupted versions classified correctly, mean ± 1.96 "
    "standard errors) and n. relative drop: (clean - mean corruption) / clean. adversarial: {adv}"
)


def context(section: CorruptionSection) -> str:
    rows = [r for t in section.tables for r in t.rows]
    differ = []
    if any(r.dataset == "cifar10" for r in rows):
        differ.append(
            "our models are small and trained briefly on this machine (see Training), on this project's "
            "JPEG (quality 75) copy of CIFAR-10 rather than the original images"
        )
    else:
        differ.append("our models are small and trained briefly on this machine (see Training)")
    if any(r.source == "generated" for r in rows):
        differ.append(
            "the corrupted images are generated here by our own implementation of CIFAR-10-C's "
            "parameters, seeded, not read from the released files"
        )
    if any("frost" in r.differs for r in rows):
        differ.append("frost uses a procedural ice texture in place of the benchmark's frost photographs")
    return CONTEXT.format(differ="; ".join(differ))


def explain(section: CorruptionSection) -> str:
    adv = "at the report's main radius, " + section.radius if section.radius else "none in this report"
    adv += (
        ": AutoAttack where the model has a standard AutoAttack record there, else the per-example worst "
        "case over the attacks run, as each cell says."
        if section.radius
        else "."
    )
    return EXPLAIN.format(adv=adv)


def source_text(t: CorruptionTable) -> str:
    by: dict[str, list[str]] = {}
    for r in t.rows:
        by.setdefault(r.source, []).append(r.name)
    words = {
        "generated": "generated here (seeded, from the clean test images)",
        "real": "read from real CIFAR-10-C files (RobustBench's layout)",
    }
    if len(by) == 1:
        return f"Corrupted images: {words[next(iter(by))]} for every model."
    parts = [f"{words[s]} for {', '.join(names)}" for s, names in sorted(by.items())]
    return "Corrupted images: " + "; ".join(parts) + "."


def _worst(by_corruption: dict[str, float], k: int = 3) -> str:
    worst = sorted(by_corruption.items(), key=lambda kv: kv[1])[:k]
    return ", ".join(f"{c.replace('_', ' ')} {v:.1f}" for c, v in worst)


def published_cells(t: CorruptionTable) -> tuple[list[str], list[list[str]]] | None:
    """The published CIFAR-10-C figures (None for other datasets): model, architecture,
    training, clean, mean corruption, relative drop, the three worst corruptions."""
    if t.dataset != "cifar10":
        return None
    head = [
        "published model",
        "architecture",
        "training",
        "clean %",
        "mean corruption %",
        "relative drop",
        "worst corruptions (% over severities)",
    ]
    rows = [
        [
            p.name,
            p.architecture,
            p.training,
            f"{p.clean:.2f}",
            f"{p.mean:.2f}",
            f"{100 * p.relative_drop:.1f}%",
            _worst(p.by_corruption),
        ]
        for p in PUBLISHED
    ]
    return head, rows


def comparison_lines(t: CorruptionTable) -> list[str]:
    """One sentence per model of ours: its relative drop and worst corruptions, beside the
    published standard and adversarially trained models'; and why the numbers differ."""
    if t.dataset != "cifar10":
        return []
    std, adv = PUBLISHED
    out = [
        f"Published ({SOURCE}): {std.name} ({std.architecture}, {std.training}) loses "
        f"{100 * std.relative_drop:.1f}% of its clean accuracy, worst under {_worst(std.by_corruption)}; "
        f"{adv.name} ({adv.architecture}, {adv.training}) loses {100 * adv.relative_drop:.1f}%, worst under "
        f"{_worst(adv.by_corruption)}: adversarial training trades the noise losses for losses under "
        "contrast and fog."
    ]
    for r in t.rows:
        if r.relative_drop is None or r.degenerate:
            continue
        out.append(
            f"{r.name} ({r.method}): loses {100 * r.relative_drop:.1f}% of its clean "
            f"{100 * r.clean.acc:.1f}% (n={r.n:,}), worst under "
            f"{_worst({c: 100 * v for c, v in r.by_corruption.items()})}."
        )
    out.append(
        "Why ours differ: small models trained briefly on this machine start from a lower clean accuracy; "
        "they are trained and tested on a JPEG (quality 75) copy of CIFAR-10, whose images have already "
        "lost some fine detail; and the corrupted images are generated by our implementation (frost with a "
        "procedural texture), not read from the released files."
    )
    return out


def _adv_text(a: Adversarial | None) -> str:
    if a is None:
        return "-"
    return f"{cell_text(a.cell)} ({a.label}" + ("" if a.main else f", at {a.radius}") + ")"


def _drop(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _pct(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


# beyond this many corruption columns the table would overflow the page: it shows the four
# families' means, and the per-corruption table goes under a details element
MAX_COLUMNS = 6


def wide(t: CorruptionTable) -> bool:
    return len(t.names) > MAX_COLUMNS


def _families(t: CorruptionTable) -> list[str]:
    return list(dict.fromkeys(FAMILIES[c] for c in t.names))


def shared_label(t: CorruptionTable) -> str | None:
    """The adversarial column's label when every row has the same one (said once under a wide table)."""
    labels = {(r.adversarial.label, r.adversarial.main) for r in t.rows if r.adversarial is not None}
    if len(labels) == 1 and all(r.adversarial is not None for r in t.rows) and next(iter(labels))[1]:
        return next(iter(labels))[0]
    return None


def _family_mean(r: ModelRow, names: list[str], family: str) -> float | None:
    """The record's mean over a family's corruptions and severities; recomputed from its
    corruptions' means only for a record written without it."""
    if r.by_family is not None and family in r.by_family:
        return r.by_family[family]
    vals = [r.by_corruption[c] for c in names if FAMILIES[c] == family and c in r.by_corruption]
    return sum(vals) / len(vals) if vals else None


def _name(r: ModelRow) -> str:
    return r.name + (" (degenerate)" if r.degenerate else "")


def _clean_cell(r: ModelRow) -> str:
    return f"{_pct(r.clean.acc)} [{_pct(r.clean.lo)}, {_pct(r.clean.hi)}]"


def _corruption_columns(t: CorruptionTable) -> tuple[list[str], list[list[str]]]:
    """The headers and each row's values of the corruption columns: one per corruption,
    or (a wide table) one per family, the mean over its corruptions and severities."""
    if wide(t):
        families = _families(t)
        values = [[_pct(_family_mean(r, t.names, f)) for f in families] for r in t.rows]
        return [f"{f} (mean)" for f in families], values
    values = [[_pct(r.by_corruption.get(c)) for c in t.names] for r in t.rows]
    return [corruption_label(c, t.differs) for c in t.names], values


def table_cells(t: CorruptionTable) -> tuple[list[str], list[list[str]]]:
    """The table's header and each row's cells (text), shared by markdown and HTML: model,
    method, clean, the corruption columns, mean corruption, relative drop, adversarial."""
    columns, values = _corruption_columns(t)
    label = shared_label(t) if wide(t) else None  # said once in the header of a wide table
    # a shared worst case is the comparison table's worst-case column, whose attacks are said there once
    shown = "worst-case" if label and label.startswith("worst case") else label
    head = ["model", "method", "clean %", *columns, "mean corruption %", "relative drop"]
    head.append("adversarial %" if label is None else f"adversarial % ({shown})")
    rows = []
    for r, vals in zip(t.rows, values):
        adv = cell_text(r.adversarial.cell) if label is not None and r.adversarial else _adv_text(r.adversarial)
        rows.append([_name(r), r.method, _clean_cell(r), *vals, cell_text(r.mean), _drop(r.relative_drop), adv])
    return head, rows


def each_corruption_tables(t: CorruptionTable) -> list[tuple[list[str], list[list[str]]]]:
    """A wide table's per-corruption detail, two families per table so that each fits the
    page: model, clean and each corruption's mean over severities."""
    families = _families(t)
    out = []
    for pair in (families[i : i + 2] for i in range(0, len(families), 2)):
        names = [c for c in t.names if FAMILIES[c] in pair]
        head = ["model", "clean %"] + [corruption_label(c, t.differs) for c in names]
        rows = [[_name(r), _clean_cell(r)] + [_pct(r.by_corruption.get(c)) for c in names] for r in t.rows]
        out.append((head, rows))
    return out


def _footnotes(t: CorruptionTable) -> list[str]:
    return [
        f"†{i} {c.replace('_', ' ')} differs from CIFAR-10-C: {why}" for i, (c, why) in enumerate(t.differs.items(), 1)
    ]


def _row_notes(t: CorruptionTable) -> list[str]:
    return [f"{r.name}: {n}" for r in t.rows for n in r.notes]


def _superseded(section: CorruptionSection) -> list[str]:
    return [
        f"{old} is superseded by the newer {new} (same model, points, corruptions and severities); the newer "
        "one is used."
        for old, new in section.superseded
    ]


def _md(v: str) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def corruptions_markdown(section: CorruptionSection | None, fig_dir: str = "figures") -> list[str]:
    """REPORT.md's lines for the section ([] when there is no corruption record)."""
    if section is None or section.empty:
        return []
    out = ["## Common corruptions", "", context(section), "", explain(section), ""]
    for t in section.tables:
        if len(section.tables) > 1:
            out += [f"### {t.title}", ""]
        out += [source_text(t), ""]
        head, rows = table_cells(t)
        out.append("| " + " | ".join(_md(h) for h in head) + " |")
        out.append("| " + " | ".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + " |")
        out += ["| " + " | ".join(_md(c) for c in cells) + " |" for cells in rows]
        out.append("")
        if wide(t):
            out += ["<details><summary>Each corruption (mean over severities, %)</summary>", ""]
            for head, rows in each_corruption_tables(t):
                out.append("| " + " | ".join(_md(h) for h in head) + " |")
                out.append("| " + " | ".join(["---"] + ["---:"] * (len(head) - 1)) + " |")
                out += ["| " + " | ".join(_md(c) for c in cells) + " |" for cells in rows]
                out.append("")
            out += ["</details>", ""]
        notes = _footnotes(t) + _row_notes(t)
        out += [f"- {n}" for n in notes] + ([""] if notes else [])
        published = published_cells(t)
        if published:
            head, rows = published
            out.append("| " + " | ".join(_md(h) for h in head) + " |")
            out.append("| " + " | ".join(["---"] * 3 + ["---:"] * 3 + ["---"]) + " |")
            out += ["| " + " | ".join(_md(c) for c in cells) + " |" for cells in rows]
            out.append("")
        compared = comparison_lines(t)
        out += [f"- {n}" for n in compared] + ([""] if compared else [])
        out += [f"![{f.title}]({fig_dir}/{f.name})" for f in t.figures] + ([""] if t.figures else [])
    out += [f"- {s}" for s in _superseded(section)] + ([""] if section.superseded else [])
    out += [f"Every corruption and severity of every record, with its interval: [{CSV_NAME}]({CSV_NAME}).", ""]
    return out


def _img(f: ReportFigure) -> str:
    data = base64.b64encode(f.png).decode("ascii")
    return f'<figure><img alt="{escape(f.title)}" src="data:image/png;base64,{data}"></figure>'


def _html_table(head: list[str], rows: list[list[str]], numeric: range) -> str:
    trs = ["<tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
    for cells in rows:
        tds = [
            f'<td class="num">{escape(c)}</td>' if j in numeric else f"<td>{escape(c)}</td>"
            for j, c in enumerate(cells)
        ]
        trs.append("<tr>" + "".join(tds) + "</tr>")
    return '<table class="corruptions">\n' + "\n".join(trs) + "\n</table>"


def corruptions_html(section: CorruptionSection | None) -> list[str]:
    """report.html's elements for the section ([] when there is no corruption record)."""
    if section is None or section.empty:
        return []
    out = [
        "<h2>Common corruptions</h2>",
        f"<p>{escape(context(section))}</p>",
        f'<p class="small">{escape(explain(section))}</p>',
    ]
    for t in section.tables:
        if len(section.tables) > 1:
            out.append(f"<h3>{escape(t.title)}</h3>")
        out.append(f"<p>{escape(source_text(t))}</p>")
        head, rows = table_cells(t)
        out.append(_html_table(head, rows, numeric=range(2, len(head))))
        if wide(t):
            out.append(
                "<details><summary>Each corruption (mean over severities, %)</summary>"
                + "".join(_html_table(h, r, numeric=range(1, len(h))) for h, r in each_corruption_tables(t))
                + "</details>"
            )
        notes = _footnotes(t) + _row_notes(t)
        if notes:
            out.append('<ul class="notes">' + "".join(f'<li class="info">{escape(n)}</li>' for n in notes) + "</ul>")
        published = published_cells(t)
        if published:
            out.append(_html_table(*published, numeric=range(3, 6)))
        compared = comparison_lines(t)
        if compared:
            out.append("<ul>" + "".join(f"<li>{escape(n)}</li>" for n in compared) + "</ul>")
        out += [_img(f) for f in t.figures]
    if section.superseded:
        out.append("<ul>" + "".join(f"<li>{escape(s)}</li>" for s in _superseded(section)) + "</ul>")
    out.append(f'<p class="small">Every corruption and severity of every record, with its interval: {CSV_NAME}.</p>')
    return out

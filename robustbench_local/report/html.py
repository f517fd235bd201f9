"""report.html: one self-contained file (inline CSS and script, figures as base64
PNG) with the same content as REPORT.md. Every table sorts by any column on a click
on its header (sort_script.py); a number's interval sits under it, in small type, so
the comparison tables fit a 1400-pixel page."""

from __future__ import annotations

import base64
from html import escape

from .corruption_pages import corruptions_html
from .corruptions import CorruptionSection
from .examples import Example
from .figure_base import ReportFigure
from .layout import COST_HEAD, COST_TITLE, cost_rows, lead_cells, lead_columns, legend, mark_note, marked, table_notes
from .leaderboard import Leaderboard
from .leaderboard_pages import LEADERBOARD_CSS, leaderboard_html
from .load import ReportData
from .markdown import EXPLAIN, MIN_NORM_EXPLAIN, TRAIN_EXPLAIN, TRAIN_HEAD, header_lines, training_rows
from .min_norm_plots import MIN_NORM
from .seeds import SEED_EXPLAIN, SeedTable, build_seed_tables, degenerate_notes, member_text, seed_cell_text, seeds_text
from .sort_script import SORT_CSS, SORT_SCRIPT
from .table_parts import MARK, Cell, Comparison, Table, cell_text

CSS = """
body { font: 14px/1.45 -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1320px;
       padding: 0 1em; color: #1f2328; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; white-space: nowrap; }
table.comparison td + td { white-space: nowrap; }
td.acc .ci { display: block; color: #57606a; font-size: 11px; white-space: normal; }
td.acc .ci span { white-space: nowrap; }
details.cost { margin: 0 0 1em; }
details.cost table { margin-top: 0.3em; }
.warn { color: #9a6700; font-weight: bold; }
.info { color: #57606a; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
p.small { color: #57606a; font-size: 12px; }
.mark { color: #0969da; }
details summary { cursor: pointer; }
details div { color: #57606a; font-size: 12px; text-align: left; }
"""


def _notes(comp: Comparison, ids: list[int]) -> str:
    return "".join(f' <span class="{"warn" if comp.warning[i - 1] else "info"}">{comp.marker(i)}</span>' for i in ids)


def _acc(c: Cell, mark: str, notes: str) -> str:
    """A number with its marks and notes; below it, in small type, its interval and n (on
    a line each where the page is narrow)."""
    number, rest = cell_text(c).split(" ", 1)
    interval, n = rest.rsplit(" ", 1)
    return (
        f'<td class="num acc">{escape(number)}{mark}{notes}'
        f'<span class="ci"><span>{escape(interval)}</span> <span>{escape(n)}</span></span></td>'
    )


def _table(t: Table, comp: Comparison) -> str:
    lead = lead_columns(t)
    rows = ["<tr>" + "".join(f"<th>{escape(h)}</th>" for h in lead + t.columns) + "</tr>"]
    for i, r in enumerate(t.rows):
        text = lead_cells(r, lead)
        tds = [f"<td>{escape(text[0])}{_notes(comp, r.notes)}</td>"] + [f"<td>{escape(v)}</td>" for v in text[1:]]
        for col in t.columns:
            c = r.cells.get(col)
            mark = f' <span class="mark">{MARK}</span>' if marked(t, col, i) else ""
            tds.append('<td class="num"></td>' if c is None else _acc(c, mark, _notes(comp, c.notes)))
        rows.append("<tr>" + "".join(tds) + "</tr>")
    return '<table class="comparison">\n' + "\n".join(rows) + "\n</table>"


def _cost(t: Table) -> str:
    """The second table, folded under the first."""
    rows = ["<tr>" + "".join(f"<th>{escape(h)}</th>" for h in COST_HEAD) + "</tr>"]
    for r in cost_rows(t):
        tds = [f"<td>{escape(v)}</td>" for v in r[:2]] + [f'<td class="num">{escape(v)}</td>' for v in r[2:]]
        rows.append("<tr>" + "".join(tds) + "</tr>")
    table = "<table>\n" + "\n".join(rows) + "\n</table>"
    return f'<details class="cost"><summary>{COST_TITLE}</summary>\n{table}</details>'


SEED_HEAD = ["method (cells)", "training", "seeds"]


def _seeds(tables: list[SeedTable]) -> list[str]:
    """The section "Across training seeds": each mean opens onto its seeds' own numbers."""
    if not tables:
        return []
    body = [
        "<h2>Across training seeds</h2>",
        f'<p class="small">{escape(SEED_EXPLAIN)} Here, a click on a mean shows its seeds\' own numbers.</p>',
    ]
    for t in tables:
        rows = ["<tr>" + "".join(f"<th>{escape(h)}</th>" for h in SEED_HEAD + t.columns) + "</tr>"]
        for r in t.rows:
            tds = [f"<td>{escape(v)}</td>" for v in (r.group, r.method, seeds_text(r))]
            for col in t.columns:
                c = r.cells.get(col)
                if c is None:
                    tds.append('<td class="num"></td>')
                    continue
                seeds = "".join(f"<div>{escape(member_text(m))}</div>" for m in c.members)
                tds.append(
                    f'<td class="num"><details><summary>{escape(seed_cell_text(c, r))}</summary>{seeds}</details></td>'
                )
            rows.append("<tr>" + "".join(tds) + "</tr>")
        body += [f"<h3>{escape(t.title)}</h3>", "<table>\n" + "\n".join(rows) + "\n</table>"]
        notes = degenerate_notes(t)
        if notes:
            body.append('<ul class="notes">' + "".join(f'<li class="warn">{escape(n)}</li>' for n in notes) + "</ul>")
    return body


def _img(f: ReportFigure) -> str:
    data = base64.b64encode(f.png).decode("ascii")
    return f'<figure><img alt="{escape(f.title)}" src="data:image/png;base64,{data}"></figure>'


def render_html(
    data: ReportData,
    comp: Comparison,
    figures: list[ReportFigure],
    examples: list[Example] = (),
    leaderboard: Leaderboard | None = None,
    corruptions: CorruptionSection | None = None,
) -> str:
    body = ["<h1>Robustness report</h1>"] + [f"<p>{escape(s)}</p>" for s in header_lines(data)]
    body.append(f'<p class="small">{escape(EXPLAIN)}</p>')
    marks = mark_note(comp)
    for i, t in enumerate(comp.tables):
        if i == 0:
            body.append(f"<h2>Comparison at {escape(t.title)}</h2>")
        else:
            if i == 1:
                body.append("<h2>Other radii</h2>")
            body.append(f"<h3>{escape(t.title)}</h3>")
        body.append(_table(t, comp))
        body += [f'<p class="small">{escape(text)}</p>' for text in legend(t)]
        notes = table_notes(t)
        if notes:
            body.append(
                '<ul class="notes">'
                + "".join(
                    f'<li class="{"warn" if comp.warning[j - 1] else "info"}">{comp.marker(j)}: '
                    f"{escape(comp.notes[j - 1])}</li>"
                    for j in notes
                )
                + "</ul>"
            )
        if marks and t.marks:  # once, under the first table that has marks
            body.append(f'<p class="small"><span class="mark">{MARK}</span>{escape(marks[len(MARK) :])}</p>')
            marks = None
        body.append(_cost(t))
    if not comp.tables:
        body.append("<p>No evaluation records match; only training records are shown.</p>")
    body += _seeds(build_seed_tables(data, comp))
    if leaderboard is not None:
        body += leaderboard_html(leaderboard)
    body += corruptions_html(corruptions)
    curves = [f for f in figures if f.name.startswith("eps-curves") and not f.name.startswith(MIN_NORM)]
    if curves:
        body.append("<h2>Accuracy vs eps</h2>")
        body += [_img(f) for f in curves]
    min_norm = [f for f in figures if f.name.startswith(MIN_NORM)]
    if min_norm:
        body.append("<h2>Accuracy vs eps from minimal-norm attacks</h2>")
        body.append(f'<p class="small">{escape(MIN_NORM_EXPLAIN)}</p>')
        body += [_img(f) for f in min_norm]
    body.append("<h2>Training</h2>")
    if data.trains:
        rows = ["<tr>" + "".join(f"<th>{escape(h)}</th>" for h in TRAIN_HEAD) + "</tr>"]
        rows += ["<tr>" + "".join(f"<td>{escape(v)}</td>" for v in r) + "</tr>" for r in training_rows(data.trains)]
        body.append("<table>\n" + "\n".join(rows) + "\n</table>")
        body.append(f'<p class="small">{escape(TRAIN_EXPLAIN)}</p>')
        body += [_img(f) for f in figures if f.name.startswith("training")]
    else:
        body.append("<p>No training records match.</p>")
    heat = [f for f in figures if f.name.startswith("per-class")]
    if heat:
        body.append("<h2>Per-class accuracy</h2>")
        body += [_img(f) for f in heat]
    if examples:
        body.append("<h2>Examples</h2>")
        for e in examples:
            body.append(f"<h3>{escape(e.title)}</h3>")
            body.append(_img(ReportFigure(e.link, e.title, e.png)))
    if data.superseded or data.skipped:
        body.append("<h2>Records left out</h2><ul>")
        body += [
            f"<li><code>{escape(o)}</code> is superseded by the newer <code>{escape(n)}</code>; "
            "the newer one is used.</li>"
            for o, n in data.superseded
        ]
        body += [f"<li>{escape(s)}</li>" for s in data.skipped]
        body.append("</ul>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Robustness report</title>\n"
        f"<style>{CSS}{SORT_CSS}{LEADERBOARD_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + f"\n{SORT_SCRIPT}</body>\n</html>\n"
    )

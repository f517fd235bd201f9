"""report.html: one self-contained file (inline CSS, figures as base64 PNG) with
the same content as REPORT.md."""
from __future__ import annotations

import base64
from html import escape

from .load import ReportData
from .markdown import EXPLAIN, MIN_NORM_EXPLAIN, TRAIN_HEAD, header_lines, training_rows
from .examples import Example
from .corruption_pages import corruptions_html
from .corruptions import CorruptionSection
from .leaderboard import LEADERBOARD_CSS, Leaderboard, leaderboard_html
from .plots import MIN_NORM, ReportFigure
from .tables import Comparison, Table, adv_text, cell_text, checkpoint_text, minutes_text, table_notes

CSS = """
body { font: 14px/1.45 -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #1f2328; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; white-space: nowrap; }
.warn { color: #9a6700; font-weight: bold; }
.info { color: #57606a; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
p.small { color: #57606a; font-size: 12px; }
"""


def _notes(comp: Comparison, ids: list[int]) -> str:
    return "".join(f' <span class="{"warn" if comp.warning[i - 1] else "info"}">{comp.marker(i)}</span>' for i in ids)


def _table(t: Table, comp: Comparison) -> str:
    head = ["checkpoint", "dataset", "model", "method", "adversarial training (eps)"] + t.columns + ["train min", "eval s"]
    rows = ["<tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
    for r in t.rows:
        tds = [f"<td>{escape(checkpoint_text(r))}{_notes(comp, r.notes)}</td>"]
        tds += [f"<td>{escape(v)}</td>" for v in (r.dataset, r.model, r.method, adv_text(r))]
        for col in t.columns:
            c = r.cells.get(col)
            tds.append('<td class="num"></td>' if c is None else f'<td class="num">{escape(cell_text(c))}{_notes(comp, c.notes)}</td>')
        tds += [f'<td class="num">{minutes_text(r.train_minutes)}</td>', f'<td class="num">{r.eval_seconds:.1f}</td>']
        rows.append("<tr>" + "".join(tds) + "</tr>")
    return "<table>\n" + "\n".join(rows) + "\n</table>"


def _img(f: ReportFigure) -> str:
    data = base64.b64encode(f.png).decode("ascii")
    return f'<figure><img alt="{escape(f.title)}" src="data:image/png;base64,{data}"></figure>'


def render_html(data: ReportData, comp: Comparison, figures: list[ReportFigure], examples: list[Example] = (),
                leaderboard: Leaderboard | None = None, corruptions: CorruptionSection | None = None) -> str:
    body = ["<h1>Robustness report</h1>"] + [f"<p>{escape(s)}</p>" for s in header_lines(data)]
    body.append(f'<p class="small">{escape(EXPLAIN)}</p>')
    for i, t in enumerate(comp.tables):
        if i == 0:
            body.append(f"<h2>Comparison at {escape(t.title)}</h2>")
        else:
            if i == 1:
                body.append("<h2>Other radii</h2>")
            body.append(f"<h3>{escape(t.title)}</h3>")
        body.append(_table(t, comp))
        notes = table_notes(t)
        if notes:
            body.append('<ul class="notes">' + "".join(
                f'<li class="{"warn" if comp.warning[j - 1] else "info"}">{comp.marker(j)}: {escape(comp.notes[j - 1])}</li>'
                for j in notes) + "</ul>")
    if not comp.tables:
        body.append("<p>No evaluation records match; only training records are shown.</p>")
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
        body += [f"<li><code>{escape(o)}</code> is superseded by the newer <code>{escape(n)}</code>; the newer one is used.</li>"
                 for o, n in data.superseded]
        body += [f"<li>{escape(s)}</li>" for s in data.skipped]
        body.append("</ul>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Robustness report</title>\n"
            f"<style>{CSS}{LEADERBOARD_CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")

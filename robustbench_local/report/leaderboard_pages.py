"""The leaderboard section as REPORT.md and report.html show it: the table of ours beside
the published entries, one note per remark on a row of ours, what differs between the two
sides, and the citations."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from ..results import wilson_interval
from .leaderboard_published import MODEL_INFO, PUBLISHED_N

if TYPE_CHECKING:  # for annotations only: leaderboard.py imports this module
    from .leaderboard import Board, Leaderboard


def _half_width(pct: float, n: int) -> float:
    lo, hi = wilson_interval(round(pct / 100 * n), n)
    return 100 * (hi - lo) / 2


def differences(board: Board) -> list[str]:
    """What differs between our rows and the published ones, one sentence each."""
    ns = sorted({r.robust.n for r in board.ours})
    n_text = " or ".join(f"{n:,}" for n in ns)
    worst = max(board.ours, key=lambda r: _half_width(r.robust.pct, r.robust.n))
    pub = max(board.published, key=lambda p: p.autoattack)
    lines = [
        "Data: our models are trained and tested on this project's JPEG copy of CIFAR-10 (quality 75, chroma "
        "subsampled), whose pixels differ from the original release that RobustBench uses; that lowers accuracy, "
        "so the same recipe lands somewhat below its published figure here.",
        "Compute: our training cost is the wall-clock minutes of the training record, on the device it names, "
        "with its shortest and longest epoch (an uneven range means the machine was shared or the job paused); "
        "the published models were trained on GPUs, Wong2020Fast in 12 GPU-minutes, the others at costs their "
        "entries do not state.",
        f"n: every published figure is on all {PUBLISHED_N:,} test images (a 95% interval of about "
        f"±{_half_width(pub.autoattack, PUBLISHED_N):.1f} points at {pub.autoattack:.1f}%, never published); "
        f"ours are on {n_text} point{'s' if ns != [1] else ''} as each cell says, with intervals up to "
        f"±{_half_width(worst.robust.pct, worst.robust.n):.1f} points.",
    ]
    if any(not r.autoattack for r in board.ours):
        lines.append(
            "A robust cell of ours marked 'not AutoAttack' is the worst case over the attacks named: like "
            "AutoAttack's, an upper bound on true robustness, usually a looser one; it does not rank "
            "against the published AutoAttack figures."
        )
    extra = [p for p in board.published if p.extra_data]
    if extra:
        lines.append(
            "Extra data: "
            + "; ".join(f"{p.name} also trains on {p.extra_data}" for p in extra)
            + "; ours use only CIFAR-10's training images."
        )
    return lines


def intro(board: Board) -> str:
    return (
        f"Our models beside published RobustBench entries at the same threat model: {board.title} in pixels of "
        "[0, 1] images. Accuracy in %. Ours with its 95% Wilson interval and n (clean: the model's test-set "
        "evaluation with the most points); published figures as RobustBench lists them (AutoAttack, "
        f"standard version, all {PUBLISHED_N:,} test images), cited below."
    )


def citations(board: Board) -> list[str]:
    return [
        f"{p.name}: {p.paper}, {p.link}; RobustBench model {p.name}, "
        + MODEL_INFO.format(threat=board.threat, name=p.name)
        for p in board.published
    ]


def _row_cells(board: Board) -> tuple[list[str], list[tuple[bool, list[str], list[int]]]]:
    """The header and (ours?, cells, note numbers) per row; note i is board-wide."""
    head = ["", "model", "architecture", "training", "clean %", "robust % (AutoAttack)", "training cost", "source"]
    rows, notes = [], _notes(board)
    for r in board.ours:
        robust = r.robust.text() + ("" if r.autoattack else " (worst case, not AutoAttack)")
        ids = [notes.index(f"{r.name}: {n}") + 1 for n in r.notes]
        rows.append(
            (
                True,
                [
                    "ours",
                    r.name + (" (degenerate)" if r.degenerate else ""),
                    r.architecture,
                    r.training,
                    r.clean.text(),
                    robust,
                    r.cost,
                    "measured here",
                ],
                ids,
            )
        )
    for i, p in enumerate(board.published, 1):
        rows.append(
            (
                False,
                [
                    "published",
                    p.name,
                    p.architecture,
                    p.method,
                    f"{p.clean:.2f} n={PUBLISHED_N:,}",
                    f"{p.autoattack:.2f} n={PUBLISHED_N:,}",
                    p.cost,
                    f"RobustBench [{i}]",
                ],
                [],
            )
        )
    return head, rows


def _notes(board: Board) -> list[str]:
    return [f"{r.name}: {n}" for r in board.ours for n in r.notes]


# ----------------------------------------------------------------------------- markdown and HTML


def _md(v: str) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def leaderboard_markdown(lb: Leaderboard) -> list[str]:
    """REPORT.md's lines for the section ([] when there is nothing to say)."""
    if lb.empty:
        return []
    out = ["## Leaderboard: RobustBench CIFAR-10", ""]
    out += [line for m in lb.missing for line in (m, "")]
    for b in lb.boards:
        out += [f"### {b.title}", "", intro(b), ""]
        head, rows = _row_cells(b)
        out.append("| " + " | ".join(head) + " |")
        out.append("| " + " | ".join(["---"] * 4 + ["---:"] * 2 + ["---"] * 2) + " |")
        for ours, cells, ids in rows:
            cells = list(cells)
            if ours:
                cells[0] = "**ours**"
                cells[1] += "".join(f" †{i}" for i in ids)
            out.append("| " + " | ".join(_md(c) for c in cells) + " |")
        out.append("")
        out += [f"- †{i}: {n}" for i, n in enumerate(_notes(b), 1)] + ([""] if _notes(b) else [])
        out += ["What differs:", ""] + [f"- {d}" for d in differences(b)] + [""]
        out += [f"{i}. {c}" for i, c in enumerate(citations(b), 1)] + [""]
    return out


LEADERBOARD_CSS = """
tr.ours td { background: #eef6ff; }
tr.ours td:first-child { font-weight: bold; }
"""


def leaderboard_html(lb: Leaderboard) -> list[str]:
    """report.html's elements for the section ([] when there is nothing to say)."""
    if lb.empty:
        return []
    out = ["<h2>Leaderboard: RobustBench CIFAR-10</h2>"] + [f"<p>{escape(m)}</p>" for m in lb.missing]
    for b in lb.boards:
        out += [f"<h3>{escape(b.title)}</h3>", f'<p class="small">{escape(intro(b))}</p>']
        head, rows = _row_cells(b)
        trs = ["<tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
        for ours, cells, ids in rows:
            tds = []
            for j, c in enumerate(cells):
                mark = "".join(f' <span class="info">†{i}</span>' for i in ids) if j == 1 else ""
                cls = ' class="num"' if j in (4, 5) else ""
                tds.append(f"<td{cls}>{escape(c)}{mark}</td>")
            trs.append(f'<tr class="{"ours" if ours else "published"}">' + "".join(tds) + "</tr>")
        out.append('<table class="leaderboard">\n' + "\n".join(trs) + "\n</table>")
        if _notes(b):
            out.append(
                '<ul class="notes">'
                + "".join(f'<li class="info">†{i}: {escape(n)}</li>' for i, n in enumerate(_notes(b), 1))
                + "</ul>"
            )
        out.append("<p>What differs:</p><ul>" + "".join(f"<li>{escape(d)}</li>" for d in differences(b)) + "</ul>")
        out.append("<ol>" + "".join(f"<li>{escape(c)}</li>" for c in citations(b)) + "</ol>")
    return out

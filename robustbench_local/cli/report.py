"""`robust report`: tables and figures from the results store."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from ..outputs import ensure_writable_dir
from ..text import pct, plural
from .common import out_option, results_option
from .tables import console


@click.command("report")
@results_option("Results folder to read; records are in DIR/records/.")
@out_option("Folder for REPORT.md, report.csv, report.html and figures/ [default: the --results folder].")
@click.option("--dataset", multiple=True, help="Only these datasets (glob allowed, e.g. cifar*); repeat for several.")
@click.option(
    "--attack",
    multiple=True,
    help="Only these attacks, by name or column label: fgsm, pgd, PGD-20, 'PGD-*', autoattack, worst-case; "
    "repeat for several. Clean accuracy is always shown.",
)
@click.option(
    "--checkpoint",
    multiple=True,
    metavar="GLOB",
    help="Only checkpoints whose name or path matches GLOB (e.g. 'runs/*pgd*'); repeat for several.",
)
@click.option(
    "--skip-bad/--no-skip-bad",
    default=True,
    show_default=True,
    help="Leave out records the report cannot use (truncated or invalid JSON, NaN or Infinity, missing "
    "keys, wrong types), naming each in a warning and under 'Records left out' in REPORT.md. "
    "--no-skip-bad stops at the first with an error naming it, and writes nothing.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["default", "robustbench"]),
    default="default",
    show_default=True,
    help="robustbench: also one RobustBench-style model_info JSON per model and threat model (L-inf, "
    "L2 in pixels) under OUT/robustbench/DATASET/Linf|L2/MODEL.json, as RobustBench's model_info/ "
    "folder lays them out, with our n, intervals and worst case beside its fields.",
)
@click.option(
    "--force",
    is_flag=True,
    default=False,
    help="Overwrite a report in --out that `robust report` did not write from --results, or that was "
    "changed since (without it such a folder is refused).",
)
@click.option(
    "--compare",
    nargs=2,
    metavar="A B",
    default=None,
    help="Compare two models point by point instead of writing the report: for every attack and radius "
    "both were evaluated at on the same points, their accuracies, the difference with its paired 95% "
    "interval and McNemar's exact test. A and B as the report's tables name them (an experiment's "
    "cell name), or a checkpoint path or run folder. Writes nothing.",
)
def command(results_dir, out, dataset, attack, checkpoint, skip_bad, fmt, force, compare):
    """Write REPORT.md, report.csv, a self-contained report.html and PNG figures
    from the records in the results store (and nothing else).

    \b
      robust report
      robust report --attack pgd --attack autoattack --out /tmp/report
      robust report --checkpoint 'runs/*pgd*' --dataset cifar10
      robust report --format robustbench
      robust report --compare pgd-at trades
    """
    # deferred: start-up time (pandas, matplotlib and scipy, which --help never needs)
    from ..report import build_report, check_target, record_digests

    con = console()

    def say(msg: str, style: str | None = None) -> None:
        # plain text (paths and intervals hold brackets), file names whole on one line
        con.print(msg, style=style, markup=False, soft_wrap=True)

    def warn(msg: str) -> None:
        say(f"warning: {msg}", style="yellow")

    if compare:
        given = [
            flag
            for flag, v in (
                ("--out", out),
                ("--checkpoint", checkpoint),
                ("--format", fmt != "default"),
                ("--force", force),
            )
            if v
        ]
        if given:
            raise click.UsageError(f"--compare prints to the terminal and writes nothing; drop {', '.join(given)}")
        _print_comparison(results_dir, compare, dataset, attack, skip_bad, warn)
        return
    # the folder is checked before the records are read and the figures drawn
    target_dir = Path(out if out is not None else results_dir)
    ensure_writable_dir(target_dir, "--out")
    check_target(target_dir, results_dir, record_digests(results_dir), force)
    report = build_report(
        results_dir, out, dataset=dataset, attack=attack, checkpoint=checkpoint, skip_bad=skip_bad, warn=warn
    )
    target = report.out
    paths = report.write(force=force)
    if report.note:
        say(report.note, style="yellow")
    d = report.data
    say(
        f"{plural(len(d.evals), 'evaluation record')} and {plural(len(d.trains), 'training record')}"
        + (f"; {plural(len(d.superseded), 'older repeat')} superseded by newer records" if d.superseded else "")
    )
    for t in report.comparison.tables[:1]:
        say(f"headline: {t.title}")
    n_warn = sum(report.comparison.warning)
    if n_warn:
        warn(f"{plural(n_warn, 'failed sanity check')}; see the ⚠ notes in REPORT.md")
    say(
        f"wrote {plural(len(paths), 'file')} to {target}: REPORT.md, report.csv, report.html, "
        f"{plural(len(report.figures), 'figure')} in figures/"
        + (f"; {plural(len(report.examples), 'example figure')} linked" if report.examples else "")
    )
    if fmt == "robustbench":
        from ..report.robustbench_info import RB_DIR, model_infos  # deferred: start-up time (pandas, matplotlib)

        infos = model_infos(report.data)  # the records the report was built from, not read again
        for note in infos.left_out:
            say(note)
        infos.write(target)
        say(f"wrote {plural(len(infos.files), 'RobustBench model_info file')} to {target / RB_DIR}")


def _print_comparison(results_dir, names, dataset, attack, skip_bad, warn) -> None:
    """One table per attack both models were evaluated with: a row per radius."""
    # deferred: start-up time (pandas, matplotlib and scipy, which --help never needs)
    from ..report.compare import compare_models, fmt_p
    from ..report.load import load_report_data

    data = load_report_data(results_dir, dataset=dataset, attack=attack, skip_bad=skip_bad, warn=warn)
    cmp = compare_models(data, *names)
    a, b = escape(cmp.checkpoint_a), escape(cmp.checkpoint_b)
    con = console()
    for label, pairs in cmp.by_attack().items():
        t = Table(
            title=f"{escape(label)}: {a} (A) against {b} (B), point by point",
            caption="A - B: difference in robust accuracy, 95% interval: Newcombe's paired score interval; "
            "b: points only A keeps robust, c: only B; p: McNemar's exact test (two-sided)",
        )
        for col in ("threat", "points", "A", "B", "A - B [95% CI]", "b", "c", "McNemar p"):
            t.add_column(col, justify="left" if col in ("threat", "points") else "right")
        for p in pairs:
            r, s = p.row_a, p.test
            t.add_row(
                escape(p.threat),
                f"{s.n:,} {escape(str(r['split']))} (seed {r['data_seed']})",
                pct(s.acc_a),
                pct(s.acc_b),
                f"{100 * s.diff:+.1f} pp [{100 * s.diff_lo:+.1f}, {100 * s.diff_hi:+.1f}]",
                f"{s.b:,}",
                f"{s.c:,}",
                fmt_p(s.p_value),
            )
        con.print(t)
    for note in cmp.not_paired:
        warn(f"not compared: {note}")

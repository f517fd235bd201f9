"""`robust run FILE`: train, evaluate and report a whole experiment; resumable."""
from __future__ import annotations

import click

from ..runtime import DEVICES
from ..text import plural
from .tables import console


@click.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, default=False,
              help="Check the file and print the plan (each cell: what is done, what is to do); run nothing.")
@click.option("--only", "only", multiple=True, metavar="PATTERN",
              help="Run only the cells whose name matches this glob (e.g. 'pgd*'); repeat for several.")
@click.option("--attack", "attacks", multiple=True, metavar="NAME",
              help="Run only the evaluations of this attack (e.g. pgd); repeat for several. Training still runs; "
                   "the other attacks stay to do for a later run (e.g. everything but autoattack first).")
@click.option("--device", type=click.Choice(DEVICES), default=None,
              help="Train and evaluate every cell here, overriding the file's device (default: the file's, else auto).")
def command(file, dry_run, only, attacks, device):
    """Train, evaluate and report every cell of the experiment FILE (TOML).

    Everything in the file is checked before anything runs. Cells whose training
    finished are not trained again; a cut-off training resumes from its last.pth;
    an evaluation whose record (same checkpoint sha256, attack, eps, n, split and
    seed) is in the results store is not run again. So a run that was cut off is
    resumed by running the same command. Progress is appended to the file's log.

    \b
      robust run experiments/quick.toml
      robust run experiments/seed_suite_cifar10.toml --dry-run
      robust run experiments/seed_suite_cifar10.toml --only 'pgd*' --device cuda
      robust run experiments/seed_suite_cifar10.toml --attack fgsm --attack pgd
    """
    # imported when the command runs: it loads training and evaluation, which `robust --help` does not need
    from ..experiment import plan_table, run_experiment

    con = console()

    def say(msg: str) -> None:
        con.print(msg, markup=False, highlight=False, soft_wrap=True)

    def on_plan(plan) -> None:
        done = sum(p.finished for p in plan)
        title = f"plan: {plural(len(plan), 'cell')}, {done} done, {len(plan) - done} with work to do"
        con.print(plan_table(plan, title))

    summary = run_experiment(file, only=only, attacks=attacks, device=device, dry_run=dry_run, say=say,
                             on_plan=on_plan)
    exp = summary.experiment
    if dry_run:
        say(f"dry run: nothing was done. Checkpoints go to {exp.runs}, records to {exp.results / 'records'}, "
            f"the log to {exp.log}" + (f", the report to {exp.report['out']}" if exp.report["enabled"] else ""))
        return
    say(f"done in {summary.seconds / 60:.1f} min: trained {plural(len(summary.trained), 'cell')}, wrote "
        f"{plural(sum(summary.evaluated.values()), 'evaluation record')}; report {summary.report_status}; "
        f"log {exp.log}")

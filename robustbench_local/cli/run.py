"""`robust run FILE`: train, evaluate and report a whole experiment; resumable."""

from __future__ import annotations

import click

from ..errors import RobustError
from ..runtime import DEVICES
from ..text import plural
from .tables import console

EXECUTORS = ("local", "gpus", "slurm", "debug")
CLUSTER_FLAGS = ("partition", "account", "time", "gpus_per_job", "cpus_per_task", "mem")


@click.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--dry-run",
    is_flag=True,
    default=False,
    help="Check the file and print the plan (each cell: what is done, what is to do); run nothing.",
)
@click.option(
    "--status",
    "status",
    is_flag=True,
    default=False,
    help="Print each cell's state: done, running (with its job id), queued, failed (with its log) or to "
    "do; run nothing.",
)
@click.option(
    "--report-only",
    is_flag=True,
    default=False,
    help="Write the report from the records in the file's results folder; train and evaluate nothing.",
)
@click.option(
    "--only",
    "only",
    multiple=True,
    metavar="PATTERN",
    help="Run only the cells whose name matches this glob (e.g. 'pgd*'); repeat for several.",
)
@click.option(
    "--attack",
    "attacks",
    multiple=True,
    metavar="NAME",
    help="Run only the evaluations of this attack (e.g. pgd); repeat for several. Training still runs; "
    "the other attacks stay to do for a later run (e.g. everything but autoattack first).",
)
@click.option(
    "--device",
    type=click.Choice(DEVICES),
    default=None,
    help="Train and evaluate every cell here, overriding the file's device (default: the file's, else auto).",
)
@click.option(
    "--executor",
    type=click.Choice(EXECUTORS),
    default="local",
    show_default=True,
    help="local: the cells one after another in this process. gpus: in parallel worker processes, one per "
    "visible GPU (or --workers N on the CPU). slurm: each cell's training and evaluation as Slurm "
    "jobs (settings from the file's [executor] table or the flags below). debug: the jobs in this "
    "process, one after another. gpus, slurm and debug need the submitit package.",
)
@click.option(
    "--workers",
    type=int,
    default=None,
    help="--executor gpus: this many worker processes (default: one per visible GPU). Without a GPU, give "
    "N: N processes share the cores.",
)
@click.option("--partition", default=None, help="Slurm partition (overrides [executor] partition).")
@click.option("--account", default=None, help="Slurm account to charge (overrides [executor] account).")
@click.option(
    "--time",
    "time_limit",
    default=None,
    metavar="MIN|[D-]HH:MM:SS",
    help="Slurm time limit per job (overrides [executor] time; default 24:00:00). A job cut off by it is "
    "requeued and resumes from its last epoch.",
)
@click.option(
    "--gpus-per-job",
    type=int,
    default=None,
    help="GPUs per job (overrides [executor] gpus_per_job; default 1, 0: CPU jobs). More than 1: the "
    "cell trains and evaluates under DDP, one process per GPU.",
)
@click.option("--cpus-per-task", type=int, default=None, help="Slurm CPUs per task (overrides [executor]).")
@click.option("--mem", default=None, metavar="SIZE", help="Slurm memory per node, e.g. 32G (overrides [executor]).")
def command(
    file,
    dry_run,
    status,
    report_only,
    only,
    attacks,
    device,
    executor,
    workers,
    partition,
    account,
    time_limit,
    gpus_per_job,
    cpus_per_task,
    mem,
):
    """Train, evaluate and report every cell of the experiment FILE (TOML).

    Everything in the file is checked before anything runs. Cells whose training
    finished are not trained again; a cut-off training resumes from its last.pth;
    an evaluation whose record (same checkpoint sha256, attack, eps, n, split and
    seed) is in the results store is not run again. So a run that was cut off is
    resumed by running the same command. Progress is appended to the file's log.

    With --executor gpus or slurm each cell's training is a job and its evaluation
    another that starts when that training is done; jobs write their logs and states
    to RUNS/.jobs/, which --status reads. The report is written once, at the end.

    \b
      robust run experiments/quick.toml
      robust run experiments/seed_suite_cifar10.toml --dry-run
      robust run experiments/seed_suite_cifar10.toml --only 'pgd*' --device cuda
      robust run experiments/seed_suite_cifar10.toml --attack fgsm --attack pgd
      robust run experiments/seed_suite_cifar10.toml --executor gpus
      robust run experiments/quick.toml --executor gpus --workers 2
      robust run experiments/seed_suite_cifar10.toml --executor slurm --partition gpu --time 12:00:00
      robust run experiments/seed_suite_cifar10.toml --status
      robust run experiments/leaderboard_cifar10.toml --report-only
    """
    # deferred: start-up time (training and evaluation, which `robust --help` does not need)
    from ..experiment import plan_table, report_experiment, run_experiment
    from ..experiment.executors import run_study
    from ..experiment.status import read_status, status_table

    con = console()

    def say(msg: str) -> None:
        con.print(msg, markup=False, highlight=False, soft_wrap=True)

    cluster = {
        "partition": partition,
        "account": account,
        "time": time_limit,
        "gpus_per_job": gpus_per_job,
        "cpus_per_task": cpus_per_task,
        "mem": mem,
    }
    if report_only:
        given = {
            "--dry-run": dry_run,
            "--status": status,
            "--only": only,
            "--attack": attacks,
            "--device": device,
            "--executor": executor != "local",
            "--workers": workers is not None,
        }
        given.update({f"--{k.replace('_', '-')}": v is not None for k, v in cluster.items()})
        others = [flag for flag, on in given.items() if on]
        if others:
            verb, pron = ("has", "it") if len(others) == 1 else ("have", "them")
            raise RobustError(f"--report-only runs nothing, so {', '.join(others)} {verb} no effect; drop {pron}")
        summary = report_experiment(file, say=say)
        say(f"report {summary.report_status}: {summary.experiment.report['out'] / 'REPORT.md'}")
        return
    if status:
        exp, rows = read_status(file, only=only, device=device)
        states = [r.state for r in rows]
        counts = ", ".join(
            f"{states.count(s)} {s}" for s in ("done", "running", "queued", "failed", "to do") if s in states
        )
        con.print(status_table(rows, f"{exp.name}: {plural(len(rows), 'cell')}, {counts}"))
        return
    if workers is not None and executor != "gpus":
        raise RobustError(f"--workers is for --executor gpus; drop it with --executor {executor}")
    for key, value in cluster.items():
        if value is None:
            continue
        flag = f"--{key.replace('_', '-')}"
        if key == "gpus_per_job" and executor not in ("gpus", "slurm"):
            raise RobustError(f"{flag} is for --executor gpus or slurm; drop it with --executor {executor}")
        if key != "gpus_per_job" and executor != "slurm":
            raise RobustError(f"{flag} is for --executor slurm; drop it with --executor {executor}")

    def on_plan(plan) -> None:
        done = sum(p.finished for p in plan)
        title = f"plan: {plural(len(plan), 'cell')}, {done} done, {len(plan) - done} with work to do"
        con.print(plan_table(plan, title))

    if executor == "local" or dry_run:
        summary = run_experiment(
            file, only=only, attacks=attacks, device=device, dry_run=dry_run, say=say, on_plan=on_plan
        )
    else:
        summary = run_study(
            file,
            executor=executor,
            workers=workers,
            only=only,
            attacks=attacks,
            device=device,
            cluster=cluster,
            say=say,
            on_plan=on_plan,
        )
    exp = summary.experiment
    if dry_run:
        say(
            f"dry run: nothing was done. Checkpoints go to {exp.runs}, records to {exp.results / 'records'}, "
            f"the log to {exp.log}" + (f", the report to {exp.report['out']}" if exp.report["enabled"] else "")
        )
        return
    say(
        f"done in {summary.seconds / 60:.1f} min: trained {plural(len(summary.trained), 'cell')}, wrote "
        f"{plural(sum(summary.evaluated.values()), 'evaluation record')}; report {summary.report_status}; "
        + (f"log {exp.log}" if summary.logged else f"nothing to do, so nothing added to {exp.log}")
    )

"""`robust bench`: the benchmarks (benchmarks/run_all.py of the source checkout)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import RobustError

# the benchmark scripts live beside the package in a source checkout, not inside it
CHECKOUT = Path(__file__).resolve().parents[2]


def load_runner():
    if not (CHECKOUT / "benchmarks" / "run_all.py").is_file():
        raise RobustError(
            f"robust bench runs the scripts in benchmarks/ of a source checkout; "
            f"none found at {CHECKOUT / 'benchmarks'} (install the package editable from the repository)"
        )
    if str(CHECKOUT) not in sys.path:
        sys.path.insert(0, str(CHECKOUT))
    from benchmarks import run_all  # deferred: optional dependency (a source checkout's, put on sys.path above)

    return run_all


@click.command("bench")
@click.argument("names", nargs=-1)
@click.option(
    "--quick",
    is_flag=True,
    help="Tiny sizes and one repeat: checks that every benchmark runs; its numbers mean nothing.",
)
@click.option(
    "--long",
    "long_",
    is_flag=True,
    help="Also run fast_model: can the fast net reach 90% test accuracy in 20 minutes (up to 20 more minutes).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the JSON results (default results/bench in the checkout).",
)
def command(names, quick, long_, out):
    """Time this toolkit against its peers and the hardware limit.

    NAMES: attack_step, eval_cascade, train_throughput, data, memory (the default set,
    about 15 minutes on 2 CPU cores) and fast_model (opt-in, or with --long). Each
    prints a table and writes results/bench/NAME.json (machine, threads, versions, n,
    repeats, medians with min and max, ratios); all use 2 torch threads.

    \b
      robust bench                       # the default set (what `make bench` runs)
      robust bench attack_step --quick   # one benchmark at smoke-test size
    """
    load_runner().run(names, quick=quick, long=long_, out_dir=out)

"""Runs the benchmarks and writes results/bench/<name>.json for each, plus
results/bench/summary.json with every target and whether it was met.

    python benchmarks/run_all.py                  # all default benchmarks (make bench), ~15 min
    python benchmarks/run_all.py attack_step data # some of them
    python benchmarks/run_all.py --long           # also fast_model (up to 20 more minutes), torch_compile, speed_run
    python benchmarks/run_all.py --quick          # tiny sizes: checks that they run, measures nothing
    python benchmarks/run_all.py --summary        # only collect the targets of the JSON already there

`robust bench [NAME...] [--quick] [--long]` runs the same code."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common

DEFAULT = (
    "attack_step",
    "eval_cascade",
    "apgd",
    "aa_native",
    "train_throughput",
    "data",
    "layout",
    "memory",
    "corruptions",
)
LONG = ("fast_model", "torch_compile", "speed_run")  # opt-in: 20 minutes, a few minutes of C++ builds, 5 minutes
ALL = DEFAULT + LONG + ("gpu_fast_at",)  # by name only: GPU work, refused on a CPU without --quick
PARTS = {"eval_cascade": ("eval_cascade-a", "eval_cascade-b")}


def resolve(names, long: bool) -> list[str]:
    from robustbench_local.errors import RobustError

    unknown = [n for n in names if n not in ALL]
    if unknown:
        raise RobustError(f"unknown benchmark {', '.join(unknown)}; valid: {', '.join(ALL)}")
    chosen = list(names) if names else list(DEFAULT)
    if long and not names:
        chosen += list(LONG)
    return chosen


def run(names=(), *, quick: bool = False, long: bool = False, out_dir: Path | None = None) -> dict:
    chosen = resolve(names, long)
    common.setup_threads()
    con = common.console()
    con.print(
        f"benchmarks: {', '.join(chosen)}{' (quick: smoke sizes, not measurements)' if quick else ''}; "
        f"torch threads {common.THREADS}; load average now {common.load_average()}"
    )
    seconds = {}
    for name in chosen:
        con.rule(name)
        t0 = time.perf_counter()
        importlib.import_module(f"benchmarks.{name}").run(quick, out_dir)
        seconds[name] = time.perf_counter() - t0
    return summarize(quick=quick, out_dir=out_dir, seconds=seconds)


def summarize(*, quick: bool = False, out_dir: Path | None = None, seconds: dict | None = None) -> dict:
    """Collects the targets of every benchmark JSON present in the folder into
    summary.json (with each one's date and load average) and prints them."""
    import json

    folder = Path(out_dir or common.RESULTS)
    suffix = "-quick" if quick else ""
    summary = {}
    # eval_cascade --parts a|b writes eval_cascade-a / -b: a run in two sittings
    for name in [n for base in ALL for n in (base, *PARTS.get(base, ()))]:
        path = folder / f"{name}{suffix}.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        summary[name] = {
            "date_utc": data.get("date_utc"),
            "wall_seconds": data.get("wall_seconds"),
            "load_average_1_5_15min": data.get("load_average_1_5_15min"),
            "targets": data.get("targets", []),
        }
        if seconds and name in seconds:
            summary[name]["seconds_this_run"] = seconds[name]
    targets = [dict(t, benchmark=n) for n, s in summary.items() for t in s["targets"]]
    con = common.console()
    if targets:
        con.rule("all targets")
        common.print_targets(targets)
    report = common.Report("summary", quick, settings={"benchmarks": list(summary)})
    report.data.update({"benchmarks": summary, "targets": targets})
    path = report.write(out_dir)
    con.print(f"wrote {path}")
    return summary


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Run the benchmarks.")
    p.add_argument("names", nargs="*", help=f"benchmarks to run (default: {', '.join(DEFAULT)})")
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: checks they run, measures nothing")
    p.add_argument("--long", action="store_true", help="also run fast_model (up to 20 more minutes)")
    p.add_argument("--out", type=Path, default=None, help="folder for the JSON (default results/bench)")
    p.add_argument(
        "--summary",
        action="store_true",
        help="run nothing: collect the targets of the JSON files already there into summary.json",
    )
    a = p.parse_args(argv)
    from robustbench_local.errors import RobustError

    try:
        if a.summary:
            summarize(quick=a.quick, out_dir=a.out)
        else:
            run(a.names, quick=a.quick, long=a.long, out_dir=a.out)
    except RobustError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

"""Benchmark 5, peak memory of every case of the other benchmarks.

tracemalloc does not see torch's CPU allocations, so each case runs in a fresh
Python process: the benchmark's setup first (data, checkpoint, points), then the
kernel's resident-set high-water mark is reset (Linux /proc/self/clear_refs '5'),
then the case runs once; ru_maxrss (getrusage) afterwards is the case's peak, and
peak minus the resident size just before the case is what the case itself added.
DataLoader workers are separate processes: for the cases that use them (a module's
WORKER_CASES) the largest worker's peak is reported apart (getrusage RUSAGE_CHILDREN),
not added; a forked worker's RSS counts the pages it shares copy-on-write with the
main process, so that figure is an upper bound. Where the reset is refused, the delta is
taken against the setup's own high-water mark and says so."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common

NAME = "memory"
MODULES = ("attack_step", "eval_cascade", "train_throughput", "data")


def current_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return common.maxrss_mib()


def run_case(module: str, case: str, quick: bool) -> dict:
    """In this (fresh) process: setup, reset the high-water mark, run ``case`` once."""
    import resource

    mod = importlib.import_module(f"benchmarks.{module}")
    ctx = mod.prepare(quick)
    fn = mod.cases(ctx)[case]
    setup_peak = common.maxrss_mib()
    reset = common.reset_peak_rss()
    before = current_rss_mib()
    baseline = before if reset else setup_peak
    fn()
    peak = common.maxrss_mib()
    # only meaningful where the case itself starts workers (setup forks none)
    children = common.maxrss_mib(resource.RUSAGE_CHILDREN) if case in getattr(mod, "WORKER_CASES", ()) else None
    return {
        "case": f"{module}:{case}",
        "peak_rss_mib": peak,
        "rss_before_case_mib": before,
        "setup_peak_rss_mib": setup_peak,
        "case_added_mib": max(peak - baseline, 0.0),
        "largest_child_peak_rss_mib": children,
        "method": "clear_refs reset + ru_maxrss" if reset else "ru_maxrss minus the setup's high-water mark",
    }


def run(quick: bool = False, out_dir=None, modules=MODULES) -> dict:
    report = common.Report(
        NAME,
        quick,
        settings={
            "method": "fresh subprocess per case; setup, then /proc/self/clear_refs 5 (reset of the RSS high-water "
            "mark), then one call of the case; getrusage ru_maxrss (RUSAGE_SELF) for the process, "
            "RUSAGE_CHILDREN for the largest DataLoader worker (upper bound: counts pages shared "
            "copy-on-write with the main process); psutil is not used",
            "threads": common.THREADS,
        },
    )
    rows, table = [], {}
    for module in modules[:2] if quick else modules:  # quick: a smoke run of the probe, two cases
        mod = importlib.import_module(f"benchmarks.{module}")
        for case in mod.MEMORY_CASES[:1] if quick else mod.MEMORY_CASES:
            r = common.measure_memory(module, case, quick)
            table[f"{module}:{case}"] = r
            if "error" in r:
                rows.append([f"{module}:{case}", None, None, None, "failed: " + r["error"]])
            else:
                rows.append(
                    [
                        f"{module}:{case}",
                        r["peak_rss_mib"],
                        r["case_added_mib"],
                        r["largest_child_peak_rss_mib"],
                        r["method"],
                    ]
                )
    common.print_table(
        "peak resident memory per case (MiB), each in a fresh process",
        ["case", "peak RSS", "added by the case", "largest worker", "method"],
        rows,
    )
    report.data.update({"cases": table})
    return report.save(out_dir)


def main(argv=None) -> None:
    p = common.arg_parser(__doc__, "tiny sizes (a smoke run, not a measurement)")
    p.add_argument("--case", default=None, help="MODULE:CASE: measure this one case here and print it as JSON")
    a = p.parse_args(argv)
    if a.case:
        module, _, case = a.case.partition(":")
        print(json.dumps(run_case(module, case, a.quick)))
        return
    run(a.quick, a.out)


if __name__ == "__main__":
    main()

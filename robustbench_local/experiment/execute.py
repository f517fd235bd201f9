"""Running an experiment. What a run does, in order: check the whole file and everything
it names (one line naming the file, the key and where possible the line; nothing is
written), then per cell: train (a run whose last.pth says it finished is skipped; a
cut-off one resumes from last.pth), evaluate each attack and radius whose record (same
checkpoint sha256, attack, eps, n, split, seed) is not yet in the store (an attack cut
off part-way resumes at its last finished batch, kept in the cell's eval-partial/
folder), then write the report (only if its bytes changed)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# fit and evaluate are looked up on their modules at call time, so that a test can stand in for them
from .. import distributed, evaluation, tensorboard_log, train
from ..checkpoint import file_sha256
from ..errors import RobustError
from ..progress import ProgressDisplay
from ..results import ResultsStore
from ..text import acc_text, method_label, plural
from ..train_budget import epochs_text
from ..train_progress import duration_text
from . import corruptions
from .attack_entries import EvalUnit
from .cells import Cell
from .data_checks import check_with_data
from .journal import RunLock, RunLog, Say
from .plan import CellPlan, EvalIndex, make_plan, remaining, select_attacks, select_cells, split_sizes
from .schema import Experiment, load_experiment


@dataclass
class RunSummary:
    experiment: Experiment
    plan: list[CellPlan]
    trained: list[str] = field(default_factory=list)
    evaluated: dict[str, int] = field(default_factory=dict)  # cell -> records written
    failed: dict[str, str] = field(default_factory=dict)
    report_files: list[Path] = field(default_factory=list)
    report_status: str = "not run"  # 'written' | 'up to date' | 'disabled' | 'not run' | 'failed: ...'
    seconds: float = 0.0
    logged: bool = True  # False: nothing to do, so nothing was appended to the log


def run_experiment(
    path: str | os.PathLike,
    *,
    only: Sequence[str] = (),
    attacks: Sequence[str] = (),
    device: str | None = None,
    dry_run: bool = False,
    say: Say = print,
    on_plan: Callable[[list[CellPlan]], None] | None = None,
) -> RunSummary:
    """Check everything, then (unless ``dry_run``) train, evaluate and report every
    selected cell that is not done. ``on_plan`` receives the plan before any work."""
    t0 = time.perf_counter()
    exp = load_experiment(path, device=device)
    chosen = select_cells(exp, only)
    select_attacks(exp, attacks)
    bundle = check_with_data(exp)
    plan = make_plan(exp, bundle, exp.cells)
    plan = [p for p in plan if p.cell in chosen]
    if on_plan is not None:
        on_plan(plan)
    summary = RunSummary(exp, plan)
    if dry_run:
        return summary
    with RunLock(exp.runs):
        # a finished study logs nothing unless its report changes
        log = RunLog(exp.log, say, held=all(p.finished for p in plan))
        try:
            _execute(exp, plan, bundle, log, summary, only)
        except KeyboardInterrupt:
            log("interrupted; run the same command again to resume", show=False)
            raise
        except BaseException as e:
            log.keep()
            log(f"stopped by an error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", show=False)
            raise
        finally:
            summary.seconds = time.perf_counter() - t0
            summary.logged = log.kept
            log.close()
    if summary.failed:
        raise RobustError(
            f"{len(summary.failed)} of {plural(len(plan), 'cell')} failed ({', '.join(summary.failed)}): "
            f"{next(iter(summary.failed.values()))}; see {exp.log}; the same command retries them"
        )
    _raise_if_report_failed(summary)
    return summary


def report_experiment(path: str | os.PathLike, *, say: Say = print) -> RunSummary:
    """Write the file's report from the records its results folder holds; train and
    evaluate nothing (for a folder that another study's records share, or after a
    cluster run). Nothing is appended to the file's log."""
    exp = load_experiment(path)
    if not exp.report["enabled"]:
        raise RobustError(
            f"{exp.file}: its [report] has enabled = false, so it writes no report; set enabled = true, or run "
            "--report-only on the file that writes this results folder's report"
        )
    summary = RunSummary(exp, [])
    write_report(exp, lambda msg, show=True: say(msg), summary)
    _raise_if_report_failed(summary)
    return summary


def keep_log_if_changed(log: RunLog, summary: RunSummary) -> None:
    """A run that was held back (nothing to do) still logs a report it rewrote, or a failure."""
    if summary.failed or summary.report_status not in ("up to date", "disabled"):
        log.keep()


def _raise_if_report_failed(summary: RunSummary) -> None:
    if summary.report_status.startswith("failed"):
        raise RobustError(f"the report was not written: {summary.report_status[len('failed: ') :]}")


def _execute(
    exp: Experiment, plan: list[CellPlan], bundle, log: RunLog, summary: RunSummary, only: Sequence[str]
) -> None:
    store = ResultsStore(exp.results)
    todo = [p for p in plan if not p.finished]
    log(
        f"experiment {exp.name} ({exp.file}): {plural(len(plan), 'cell')}"
        + (f" matching --only {' '.join(only)}" if only else "")
        + f", {len(todo)} with work to do; checkpoints in {exp.runs}, records in {store.records_dir}"
    )
    if exp.notes:
        log(f"notes: {exp.notes}", show=False)
    for p in plan:
        log(f"  {p.name}: {p.train_text()}; evaluations {len(p.done)}/{len(p.done) + len(p.todo)} done", show=False)
        if p.train == "done" and not p.train_record:
            log(
                f"  {p.name}: training finished but its record is not in {store.records_dir} (cut off during the "
                "final test pass?); the test pass and the record will be finished"
            )
    for p in todo:
        try:
            _run_cell(exp, p, bundle, store, log, summary)
        except RobustError as e:
            summary.failed[p.name] = str(e)
            log(f"{p.name}: FAILED: {e}")
    if distributed.is_main():
        write_report(exp, log, summary)
    keep_log_if_changed(log, summary)
    log(
        f"experiment {exp.name}: trained {plural(len(summary.trained), 'cell')}, wrote "
        f"{plural(sum(summary.evaluated.values()), 'evaluation record')}, report {summary.report_status}"
        + (f"; {plural(len(summary.failed), 'cell')} failed" if summary.failed else "")
    )


def _run_cell(exp: Experiment, p: CellPlan, bundle, store, log: RunLog, summary: RunSummary) -> None:
    todo, corruptions_todo = train_cell(exp, p, bundle, store, log, summary)
    evaluate_cell(exp, p.cell, todo, corruptions_todo, bundle, store, log, summary)


def _board(exp: Experiment, cell: Cell) -> dict:
    """fit's TensorBoard option, only when the file asks for one (fit's call is otherwise as it was)."""
    folder = exp.cell_tensorboard(cell)
    return {"tensorboard": folder} if folder is not None else {}


def train_cell(
    exp: Experiment, p: CellPlan, bundle, store, log: RunLog, summary: RunSummary
) -> tuple[list[EvalUnit], bool]:
    """Train, resume or finish one cell as its plan says. Returns the evaluations left
    to do for its checkpoint, and whether its corruption record is to do."""
    cell, out = p.cell, exp.cell_dir(p.cell)
    spec = cell.spec.replace(out=str(out))
    if p.train == "done" and not p.train_record:  # fit's --resume on a finished run writes what is missing
        log(f"{cell.name}: finishing the test pass and training record of {out / 'best.pth'}")
        train.fit(spec, resume=True, store=store, quiet=True, **_board(exp, cell))
    if p.train != "done":
        if p.train == "train":
            # a run cut off inside its first epoch leaves best.pth (and config.json) without last.pth:
            # nothing in it can be resumed, and fit refuses a folder that looks used
            leftovers = [out / n for n in ("best.pth", "history.csv", "config.json") if (out / n).exists()]
            if leftovers:
                log(
                    f"{cell.name}: removing {', '.join(f.name for f in leftovers)} left by a first epoch that "
                    "never finished"
                )
                for f in leftovers:
                    f.unlink()
        what = "resuming" if p.train == "resume" else "training"
        log(
            f"{cell.name}: {what} {spec.model.arch} / {method_label(spec.method, spec.adv)}"
            + f", {epochs_text(spec.budget_minutes, spec.epochs)}"
            + (f" (after epoch {p.epochs_done})" if p.train == "resume" else "")
            + f" -> {out}"
        )

        def epoch_line(row: dict) -> None:
            cols = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
            log(f"{cell.name}: {cols}", show=False)

        result = train.fit(spec, resume=p.train == "resume", store=store, on_epoch_end=epoch_line, **_board(exp, cell))
        m = result.metrics
        # the training summary's own duration (the record's seconds), not this call's wall clock
        log(
            f"{cell.name}: trained in {duration_text(result.seconds, len(result.history))}; best epoch "
            f"{result.best_epoch}, val acc {acc_text(m.get('val_acc'), m.get('val_n', 0), m.get('val_ci95'))}, "
            f"test acc {acc_text(m.get('test_acc'), m.get('test_n', 0), m.get('test_ci95'))}"
            + (f"; {result.stopped}" if result.stopped else "")
        )
        summary.trained.append(cell.name)
        # the checkpoint is new: every evaluation of the old one (if any) is to do again
        _done, todo, corr = remaining(exp, cell, EvalIndex(store), file_sha256(result.best_path), split_sizes(bundle))
        corruptions_todo = corr == "todo"
    else:
        todo = p.todo
        corruptions_todo = p.corruptions == "todo"
    return todo, corruptions_todo


def evaluate_cell(
    exp: Experiment,
    cell: Cell,
    todo: list[EvalUnit],
    corruptions_todo: bool,
    bundle,
    store,
    log: RunLog,
    summary: RunSummary,
) -> None:
    """Run a trained cell's evaluations ``todo`` and, if asked, its corruption record."""
    out = exp.cell_dir(cell)
    _evaluate_cell(exp, cell, out, todo, bundle, store, log, summary)
    if corruptions_todo:
        t = time.perf_counter()
        rec = corruptions.run(
            exp.corruptions, out / "best.pth", bundle, device=exp.eval_device, log=log, name=cell.name
        )
        rec["experiment"] = {"name": exp.name, "file": str(exp.file), **cell.record_fields()}
        if distributed.is_main():
            store.add(rec)
        summary.evaluated[cell.name] = summary.evaluated.get(cell.name, 0) + 1
        log(f"{cell.name}: wrote the corruption record in {time.perf_counter() - t:.0f} s")


def _evaluate_cell(
    exp: Experiment, cell: Cell, out: Path, todo: list, bundle, store, log: RunLog, summary: RunSummary
) -> None:
    if not todo:
        return
    best = out / "best.pth"
    groups: dict[tuple, list[EvalUnit]] = {}
    for u in todo:
        groups.setdefault((u.n, u.split, u.seed, u.batch_size), []).append(u)
    written = 0
    for (n, split, seed, batch_size), units in groups.items():
        log(
            f"{cell.name}: evaluating {best} on {n or 'all'} {split} points (seed {seed}): "
            + ", ".join(u.label for u in units)
        )
        t = time.perf_counter()
        records = evaluation.evaluate(
            str(best),
            [u.spec for u in units],
            bundle,
            n=n,
            split=split,
            seed=seed,
            batch_size=batch_size,
            cascade=exp.cascade,
            device=exp.eval_device,
            run_checks=exp.checks,
            check_convergence=exp.check_convergence,
            log=log,
            name=cell.name,
            progress=ProgressDisplay(),  # on the screen only: the log keeps the plain lines
            resume_dir=out / "eval-partial",
        )  # a cut-off attack resumes at its last finished batch
        for rec in records:
            rec["experiment"] = {"name": exp.name, "file": str(exp.file), **cell.record_fields()}
            if distributed.is_main():  # under torchrun only rank 0 writes
                store.add(rec)
        if distributed.is_main() and exp.cell_tensorboard(cell) is not None:
            tensorboard_log.write_evaluations(exp.cell_tensorboard(cell), records)
        written += len(records)
        warnings = sorted({c["detail"] for r in records for c in r.get("checks", []) if not c.get("ok", True)})
        for w in warnings:
            log(f"{cell.name}: sanity check failed: {w}")
        log(f"{cell.name}: wrote {plural(len(records), 'record')} in {time.perf_counter() - t:.0f} s")
    summary.evaluated[cell.name] = summary.evaluated.get(cell.name, 0) + written


def write_report(exp: Experiment, log: RunLog, summary: RunSummary) -> None:
    # deferred: start-up time (pandas and matplotlib; a dry run or `robust --help` needs neither)
    from ..report import build_report

    rep = exp.report
    if not rep["enabled"]:
        summary.report_status = "disabled"
        return
    kwargs = {
        "dataset": rep["dataset"],
        "attack": rep["attack"],
        "checkpoint": rep["checkpoint"],
        "skip_bad": rep["skip_bad"],
        "warn": lambda m: log(f"report: warning: {m}"),
    }
    try:
        report = build_report(exp.results, rep["out"], notes=exp.notes or None, **kwargs)
        files = report.files()
        same = all(
            (report.out / rel).is_file() and (report.out / rel).read_bytes() == content
            for rel, content in files.items()
        )
        if same:
            summary.report_status = "up to date"
            log(f"report {report.out / 'REPORT.md'} is up to date")
            return
        summary.report_files = report.write()
    except RobustError as e:
        summary.report_status = f"failed: {e}"
        log(f"report: FAILED: {e}")
        return
    summary.report_status = "written"
    log(
        f"wrote the report: {report.out / 'REPORT.md'}, report.html, report.csv and "
        f"{plural(len(report.figures), 'figure')}"
    )

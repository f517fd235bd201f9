"""`robust run`: experiment files, the plan, resuming after a cut-off, doing nothing
twice, and one-line errors that name the file, the key and the line.

Runs use a small ImageFolder tree of real CIFAR-10 images (40 train and 20 test per
class, written once per module), the seed CNN narrowed to maps 8,8,16, one epoch and
100 evaluation points, so each cell trains and is attacked in a few seconds."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import TINY_EXPERIMENT

import robustbench_local.evaluation as evaluate_module
import robustbench_local.train as train_module
from robustbench_local.attacks import names as attack_names
from robustbench_local.checkpoint import file_sha256, read_checkpoint
from robustbench_local.cli import main
from robustbench_local.errors import RobustError
from robustbench_local.experiment import load_experiment, run_experiment
from robustbench_local.experiment.attack_entries import parse_units
from robustbench_local.results import ResultsStore

REPO = Path(__file__).resolve().parent.parent


HEAD = TINY_EXPERIMENT

TWO_CELLS = """
[[cells]]
name = "std"

[[cells]]
name = "mix"
method = "mixup"
method_kwargs = { alpha = 0.2 }
"""


@pytest.fixture
def exp(tmp_path, monkeypatch, tree):
    """Writes an experiment file into the working folder and returns its path; the
    working folder is tmp_path unless a fixture (``work``) already moved into it."""
    if tmp_path not in (Path.cwd(), *Path.cwd().parents):
        monkeypatch.chdir(tmp_path)

    def write(cells: str = TWO_CELLS, extra: str = "") -> Path:
        path = Path.cwd() / "exp.toml"
        path.write_text(HEAD.format(tree=tree) + extra + cells)
        return path

    return write


def quiet(_msg: str) -> None:
    pass


def records(kind: str | None = None, root: Path = Path(".")) -> list[dict]:
    store = ResultsStore(root / "out/results")
    recs = store.load() if store.records_dir.is_dir() else []
    return [r for r in recs if kind is None or r["kind"] == kind]


def mtimes(folder: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


class CutOff(KeyboardInterrupt):
    """What Ctrl-C or a killed session looks like to the code that is running."""


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tree):
    """The two-cell experiment, run to the end once; tests work on copies."""
    root = tmp_path_factory.mktemp("finished")
    (root / "exp.toml").write_text(HEAD.format(tree=tree) + TWO_CELLS)
    old = os.getcwd()
    os.chdir(root)
    try:
        summary = run_experiment(root / "exp.toml", say=quiet)
    finally:
        os.chdir(old)
    return root, summary


@pytest.fixture
def work(finished, tmp_path, monkeypatch) -> Path:
    """A copy of the finished experiment as the working folder (records hold relative paths)."""
    copy = tmp_path / "work"
    shutil.copytree(finished[0], copy)
    monkeypatch.chdir(copy)
    return copy


# ----------------------------------------------------------------------------- plan
def test_dry_run_plan_lists_cells_and_todos_and_writes_nothing(exp, tmp_path):
    path = exp(
        TWO_CELLS
        + """
[[cells]]
name = "tune"
[cells.grid]
lr = [0.05, 0.1]
model.kwargs.skip = [false, true]
"""
    )
    seen = []
    summary = run_experiment(path, dry_run=True, say=quiet, on_plan=seen.append)
    names = [p.name for p in summary.plan]
    assert names == [
        "std",
        "mix",
        "tune-lr=0.05-skip=false",
        "tune-lr=0.05-skip=true",
        "tune-lr=0.1-skip=false",
        "tune-lr=0.1-skip=true",
    ]
    assert seen == [summary.plan]
    grid = {p.name: p.cell.spec for p in summary.plan}
    assert grid["tune-lr=0.1-skip=true"].lr == 0.1 and grid["tune-lr=0.1-skip=true"].model.kwargs == {
        "maps": "8,8,16",
        "skip": True,
    }
    assert grid["mix"].method == "mixup" and grid["mix"].method_kwargs == {"alpha": 0.2}
    for p in summary.plan:
        assert p.train == "train" and p.done == []
        # FGSM and PGD-2 at the default eps 0.0313, PGD-2 again at the sweep radius
        assert [u.label for u in p.todo] == ["FGSM@0.0313", "PGD-2@0.0313", "PGD-2@0.0157"]
        assert p.todo_text() == "train 1 epoch; 3 evaluations: FGSM@0.0313, PGD-2@0.0313, PGD-2@0.0157"
    # no eta given: the sweep derives PGD's step 2.5*eps/k again at 0.0157
    sweep = summary.plan[0].todo[2].spec.threat
    assert sweep.eps == 0.0157 and sweep.step == pytest.approx(2.5 * 0.0157 / 2) and sweep.step_rule == "2.5*eps/k"
    assert not (tmp_path / "out").exists()


def test_a_cell_with_a_time_budget_plans_its_epochs_as_a_most(exp):
    path = exp('[[cells]]\nname = "clock"\nepochs = 3\nbudget_minutes = 30\n')
    (plan,) = run_experiment(path, dry_run=True, say=quiet).plan
    assert plan.cell.spec.budget_minutes == 30
    assert plan.train_text() == "to train (3 epochs at most in 30 min)"
    assert plan.todo_text().startswith("train 3 epochs at most in 30 min; ")


def test_cli_dry_run_prints_a_table(exp, tmp_path):
    path = exp()
    res = CliRunner().invoke(main, ["run", str(path), "--dry-run", "--only", "m*"])
    assert res.exit_code == 0, res.output
    assert "plan: 1 cell, 0 done, 1 with work to do" in res.output
    assert "mix" in res.output and "to train (1 epoch)" in res.output and "FGSM@0.0313" in res.output
    assert "dry run: nothing was done" in res.output
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- run, rerun, resume
def test_run_trains_evaluates_and_reports(finished):
    root, summary = finished
    assert summary.trained == ["std", "mix"] and summary.report_status == "written" and not summary.failed
    evals = records("eval", root)
    # per cell: FGSM, PGD-2 and their worst case at 0.0313, PGD-2 at 0.0157
    assert len(evals) == 8 and len(records("train", root)) == 2
    for cell in ("std", "mix"):
        sha = file_sha256(root / f"out/runs/{cell}/best.pth")
        mine = [r for r in evals if r["experiment"]["cell"] == cell]
        assert {r["checkpoint"]["sha256"] for r in mine} == {sha}
        assert sorted((r["attack"]["label"], r["attack"]["eps"]) for r in mine) == [
            ("FGSM", 0.0313),
            ("PGD-2", 0.0157),
            ("PGD-2", 0.0313),
            ("worst-case", 0.0313),
        ]
        assert all(r["data"]["n"] == 100 and r["checkpoint"]["name"] == cell for r in mine)
    spec = read_checkpoint(root / "out/runs/mix/best.pth")["meta"]["spec"]
    assert spec["method"] == "mixup" and spec["method_kwargs"] == {"alpha": 0.2} and spec["epochs"] == 1
    report = (root / "out/results/REPORT.md").read_text()
    assert "std" in report and "mix" in report and (root / "out/results/report.html").stat().st_size > 0
    log = (root / "out/tiny.log").read_text()
    assert "std: trained in" in log and "mix: wrote 4 records" in log and "report written" in log
    assert not (root / "out/runs/.robust-run.lock").exists()


def test_second_run_does_nothing(work, monkeypatch):
    before = mtimes(work / "out/results")
    log = (work / "out/tiny.log").read_bytes()

    def forbidden(*a, **k):
        raise AssertionError("nothing should run the second time")

    monkeypatch.setattr(train_module, "fit", forbidden)
    monkeypatch.setattr(evaluate_module, "evaluate", forbidden)
    shown = []
    again = run_experiment(work / "exp.toml", say=shown.append)
    assert all(p.finished for p in again.plan) and again.trained == [] and again.evaluated == {}
    assert again.report_status == "up to date"
    assert mtimes(work / "out/results") == before  # no new record, the report untouched
    assert any("0 with work to do" in line for line in shown)
    # a committed study's log stays as it was when a re-run finds nothing to do
    assert (work / "out/tiny.log").read_bytes() == log and not again.logged
    # ... but a report the re-run had to write again is logged
    (work / "out/results/REPORT.md").unlink()
    rewrote = run_experiment(work / "exp.toml", say=quiet)
    assert rewrote.report_status == "written" and rewrote.logged
    added = (work / "out/tiny.log").read_bytes()[len(log) :].decode()
    assert "0 with work to do" in added and "report written" in added


def test_report_only_rewrites_the_report_from_the_records_and_runs_nothing(work, monkeypatch):
    report = (work / "out/results/REPORT.md").read_bytes()
    log = (work / "out/tiny.log").read_bytes()
    (work / "out/results/REPORT.md").unlink()

    def forbidden(*a, **k):
        raise AssertionError("--report-only trains and evaluates nothing")

    monkeypatch.setattr(train_module, "fit", forbidden)
    monkeypatch.setattr(evaluate_module, "evaluate", forbidden)
    res = CliRunner().invoke(main, ["run", "exp.toml", "--report-only"])
    assert res.exit_code == 0, res.output
    assert "report written" in res.output and "REPORT.md" in res.output
    assert (work / "out/results/REPORT.md").read_bytes() == report  # the same records, the same report
    assert (work / "out/tiny.log").read_bytes() == log  # the run log is for runs
    again = CliRunner().invoke(main, ["run", "exp.toml", "--report-only"])
    assert again.exit_code == 0 and "report up to date" in again.output


def test_report_only_refuses_flags_it_would_ignore_and_a_disabled_report(work):
    res = CliRunner().invoke(main, ["run", "exp.toml", "--report-only", "--only", "std", "--dry-run"])
    assert res.exit_code != 0
    assert "error: --report-only runs nothing, so --dry-run, --only have no effect; drop them" in res.output
    path = work / "exp.toml"
    path.write_text(path.read_text() + "\n[report]\nenabled = false\n")
    before = mtimes(work / "out")
    res = CliRunner().invoke(main, ["run", str(path), "--report-only"])
    assert res.exit_code != 0 and res.output.count("\n") == 1, res.output
    assert "[report] has enabled = false, so it writes no report" in res.output
    assert mtimes(work / "out") == before


def test_run_cut_off_midway_resumes_and_finishes(work, exp, monkeypatch):
    path = exp(TWO_CELLS + '\n[[cells]]\nname = "mix2"\nmethod = "mixup"\nepochs = 2\n')
    real_fit, real_eval = train_module.fit, evaluate_module.evaluate
    n_before = len(records("eval"))

    # first session: dies while 'mix2' is between its first and second epoch
    def fit_cut_after_epoch_1(spec, **kw):
        def stop(row):
            if row["epoch"] == 1:
                raise CutOff()

        return real_fit(spec, **{**kw, "on_epoch_end": stop})

    monkeypatch.setattr(train_module, "fit", fit_cut_after_epoch_1)
    with pytest.raises(CutOff):
        run_experiment(path, say=quiet)
    assert len(records("eval")) == n_before
    assert read_checkpoint("out/runs/mix2/last.pth")["train_state"]["epoch"] == 1
    assert not Path("out/runs/.robust-run.lock").exists()
    assert "interrupted" in Path("out/tiny.log").read_text()

    plan = {p.name: p for p in run_experiment(path, dry_run=True, say=quiet).plan}
    assert plan["std"].finished and plan["mix"].finished
    assert plan["mix2"].train == "resume" and plan["mix2"].epochs_done == 1 and len(plan["mix2"].todo) == 3
    assert plan["mix2"].train_text() == "resume after epoch 1/2"

    # second session: dies inside the evaluation of 'mix2'
    calls = {"fit": [], "eval": 0}

    def fit_counting(spec, **kw):
        calls["fit"].append((Path(spec.out).name, kw.get("resume")))
        return real_fit(spec, **kw)

    def eval_cut(*a, **kw):
        raise CutOff()

    monkeypatch.setattr(train_module, "fit", fit_counting)
    monkeypatch.setattr(evaluate_module, "evaluate", eval_cut)
    with pytest.raises(CutOff):
        run_experiment(path, say=quiet)
    assert calls["fit"] == [("mix2", True)]  # resumed, not restarted; the finished cells left alone
    assert len(read_checkpoint("out/runs/mix2/last.pth")["train_state"]["history"]) == 2

    # third session: only the evaluation of 'mix2' is left
    def eval_counting(*a, **kw):
        calls["eval"] += 1
        return real_eval(*a, **kw)

    monkeypatch.setattr(evaluate_module, "evaluate", eval_counting)
    summary = run_experiment(path, say=quiet)
    assert calls["fit"] == [("mix2", True)] and calls["eval"] == 1
    assert summary.evaluated == {"mix2": 4} and summary.report_status == "written"
    assert all(p.finished for p in run_experiment(path, dry_run=True, say=quiet).plan)
    assert sorted(r["experiment"]["cell"] for r in records("eval")) == ["mix"] * 4 + ["mix2"] * 4 + ["std"] * 4
    (train,) = [r for r in records("train") if r["checkpoint"]["out_dir"].endswith("mix2")]
    assert train["epochs_run"] == 2 and train["checkpoint"]["sha256"] == file_sha256("out/runs/mix2/best.pth")


def test_only_runs_a_subset_and_a_new_attack_runs_alone(work, exp):
    path = exp(extra='\n[[attacks]]\nname = "pgd"\nk = 3\n\n[[attacks]]\nname = "fgsm"\neps = 0.02\n')
    # --attack pgd: the new FGSM stays to do for a later run
    summary = run_experiment(path, only=["s*"], attacks=["pgd"], say=quiet)
    assert [p.name for p in summary.plan] == ["std"]
    assert summary.trained == [] and summary.evaluated == {"std": 1}
    labels = sorted(r["attack"]["label"] for r in records("eval") if r["experiment"]["cell"] == "std")
    assert labels == ["FGSM", "PGD-2", "PGD-2", "PGD-3", "worst-case"]
    plan = {p.name: p for p in run_experiment(path, dry_run=True, say=quiet).plan}
    assert [u.label for u in plan["std"].todo] == ["FGSM@0.02"]
    assert [u.label for u in plan["mix"].todo] == ["PGD-3@0.0313", "FGSM@0.02"]
    with pytest.raises(
        RobustError,
        match=r"--attack autoattack: .*exp.toml evaluates no such attack; "
        r"its attacks: fgsm, pgd",
    ):
        run_experiment(path, attacks=["autoattack"], say=quiet)
    with pytest.raises(RobustError, match=r"--only nope matches no cell of .*exp.toml; cells: std, mix"):
        run_experiment(path, only=["nope"], say=quiet)


def test_an_attack_limited_to_some_cells_runs_on_those_alone(work, exp):
    path = exp(extra='\n[[attacks]]\nname = "pgd"\nk = 3\ncells = "m*"\n')
    plan = {p.name: p for p in run_experiment(path, dry_run=True, say=quiet).plan}
    assert plan["std"].finished and [u.label for u in plan["mix"].todo] == ["PGD-3@0.0313"]
    summary = run_experiment(path, say=quiet)
    assert summary.trained == [] and summary.evaluated == {"mix": 1}
    assert "PGD-3" not in {r["attack"]["label"] for r in records("eval") if r["experiment"]["cell"] == "std"}
    assert all(p.finished for p in run_experiment(path, dry_run=True, say=quiet).plan)


def test_the_same_attack_in_two_entries_runs_on_the_cells_of_both():
    entries = [{"name": "pgd", "cells": "a"}, {"name": "pgd", "cells": ["b*"]}, {"name": "fgsm", "cells": "a"}]
    units = parse_units(entries + [{"name": "fgsm"}], {})
    assert [(u.spec.name, u.cells) for u in units] == [("pgd", ("a", "b*")), ("fgsm", ())]
    assert units[0].runs_on("b2") and not units[0].runs_on("c") and units[1].runs_on("c")


def test_changed_options_of_a_trained_cell_are_refused(work, exp):
    path = exp(TWO_CELLS.replace('name = "std"', 'name = "std"\nlr = 0.2'))
    before = mtimes(work / "out")
    with pytest.raises(
        RobustError,
        match=r"exp.toml, line \d+, \[\[cells\]\] #1 'std': out/runs/std holds a run "
        r"trained with other options \(lr 0.05 -> 0.2\)",
    ):
        run_experiment(path, say=quiet)
    assert mtimes(work / "out") == before
    # more epochs is a resume, not a conflict
    path = exp(TWO_CELLS.replace('name = "std"', 'name = "std"\nepochs = 2'))
    plan = run_experiment(path, dry_run=True, say=quiet).plan
    assert plan[0].train == "resume" and plan[0].todo_text().startswith("train 1 epoch; 3 evaluations")


def _drop_train_record(sha: str) -> None:
    for f in Path("out/results/records").glob("train-*.json"):
        if json.loads(f.read_text())["checkpoint"]["sha256"] == sha:
            f.unlink()


def test_first_epoch_cut_off_leftovers_are_cleared(work):
    # cut off after best.pth but before last.pth of epoch 1: nothing to resume from, and
    # no training record yet (fit writes it at the end)
    _drop_train_record(file_sha256("out/runs/std/best.pth"))
    Path("out/runs/std/last.pth").unlink()
    plan = run_experiment(work / "exp.toml", dry_run=True, say=quiet).plan
    assert plan[0].train == "train" and plan[1].finished
    summary = run_experiment(work / "exp.toml", only=["std"], say=quiet)
    assert summary.trained == ["std"]
    assert all(p.finished for p in run_experiment(work / "exp.toml", dry_run=True, say=quiet).plan)
    assert "removing best.pth, history.csv, config.json" in Path("out/tiny.log").read_text()
    assert read_checkpoint("out/runs/std/last.pth")["train_state"]["epoch"] == 1


def test_a_kept_best_checkpoint_with_its_training_record_is_not_trained_again(work, exp, monkeypatch):
    # what a committed study keeps: best.pth and the records, without last.pth
    Path("out/runs/std/last.pth").unlink()
    sha = file_sha256("out/runs/std/best.pth")
    plan = run_experiment(work / "exp.toml", dry_run=True, say=quiet).plan
    assert plan[0].train == "done" and plan[0].finished and plan[0].sha256 == sha

    def no_training(*a, **k):
        raise AssertionError("a kept checkpoint is not trained again")

    monkeypatch.setattr(train_module, "fit", no_training)
    path = exp(TWO_CELLS, extra='[[attacks]]\nname = "pgd"\nk = 3\neta = 0.01\n')
    summary = run_experiment(path, only=["std"], say=quiet)
    assert summary.trained == [] and summary.evaluated
    new = [r for r in records("eval") if r["attack"].get("k") == 3]
    assert new and all(r["checkpoint"]["sha256"] == sha for r in new)
    # the kept file must still be the cell's: other options are refused as for a whole run folder
    with pytest.raises(RobustError, match="holds a run trained with other options"):
        run_experiment(exp(TWO_CELLS.replace('name = "std"', 'name = "std"\nlr = 0.2')), dry_run=True, say=quiet)


def test_a_cell_cut_off_during_its_final_test_pass_gets_its_record(work):
    # training finished (last.pth says so) but the process died before the training record was written
    for path in ResultsStore("out/results").paths():
        if '"kind": "train"' in path.read_text() and '"std"' in path.read_text():
            rec = json.loads(path.read_text())
            if rec["checkpoint"]["out_dir"].endswith("std"):
                path.unlink()
    assert not [r for r in records("train") if r["checkpoint"]["out_dir"].endswith("std")]
    plan = run_experiment(work / "exp.toml", dry_run=True, say=quiet).plan
    assert plan[0].train == "done" and not plan[0].finished and plan[1].finished
    summary = run_experiment(work / "exp.toml", say=quiet)
    assert summary.trained == [] and summary.evaluated == {}
    trains = [r for r in records("train") if r["checkpoint"]["out_dir"].endswith("std")]
    assert len(trains) == 1 and trains[0]["metrics"]["test_n"] > 0
    assert all(p.finished for p in run_experiment(work / "exp.toml", dry_run=True, say=quiet).plan)


# ----------------------------------------------------------------------------- errors
def test_toml_syntax_error_names_the_file_and_line(exp, tmp_path):
    path = exp(TWO_CELLS + "\n[[cells]]\nname = \"x\"\nepochs 3\n")
    with pytest.raises(RobustError) as e:
        load_experiment(path)
    msg = str(e.value)
    line = (HEAD + TWO_CELLS).count("\n") + 4
    assert msg.startswith(f"{path}, line {line}, column ") and "invalid TOML" in msg and msg.endswith("epochs 3")
    assert "\n" not in msg


@pytest.mark.parametrize(
    "cells, where, message",
    [
        (
            '[[cells]]\nname = "a"\nmethod = "mixupp"\n',
            "line {l3}, key method of [[cells]] #1 'a'",
            "unknown method 'mixupp'; valid methods: cutmix, mixup, ova, standard",
        ),
        (
            '[[cells]]\nname = "a"\nmodel = "resnet9"\n',
            "line {l3}, key model of [[cells]] #1 'a'",
            "unknown model 'resnet9'",
        ),
        (
            '[[cells]]\nname = "a"\nadv = "pgdd"\n',
            "line {l3}, key adv of [[cells]] #1 'a'",
            "unknown adversarial method 'pgdd'",
        ),
        (
            '[[cells]]\nname = "a"\nlrr = 0.1\n',
            "line {l3}, key lrr of [[cells]] #1 'a'",
            "unknown key 'lrr'; valid keys: name, grid",
        ),
        (
            '[[cells]]\nname = "a"\n[cells.grid]\nlr = [0.1, -1]\n',
            "line {l4}, key grid.lr of [[cells]] #1 'a'",
            "must be > 0, got -1",
        ),
        (
            '[[cells]]\nname = "a"\nmodel = { arch = "cnn", kwargs = { maps = "a,b" } }\n',
            "line {l3}, key model of [[cells]] #1 'a'",
            "model.kwargs.maps: must be a list of integers >= 1 such as 16,32,64, got 'a,b'",
        ),
        (
            '[[cells]]\nname = "a"\n[[attacks]]\nname = "pgdx"\n',
            "line {l4}, key name of [[attacks]] #3",
            "unknown attack 'pgdx'; valid attacks: " + ", ".join(attack_names()),
        ),
        (
            '[[cells]]\nname = "a"\n[[attacks]]\nname = "pgd"\nk = 0\n',
            "line {l5}, key k of [[attacks]] #3",
            "must be >= 1, got 0",
        ),
        (
            '[[cells]]\nname = "a"\n[[attacks]]\nname = "pgd"\neps = "abc"\n',
            "line {l5}, key eps of [[attacks]] #3",
            "eps 'abc' is not a number",
        ),
        (
            '[[cells]]\nname = "a"\n[[attacks]]\nname = "pgd"\nn = 500\n',
            "line {l5}, key n of [[attacks]] #3",
            "n 500 is larger than the 200 examples of the test split",
        ),
        (
            '[[cells]]\nname = "a"\n[[attacks]]\nname = "pgd"\ncells = ["b*"]\n',
            "line {l5}, key cells of [[attacks]] #3",
            "'b*' matches no cell; cells: a",
        ),
        (
            '[[cells]]\nname = "a"\n[[cells]]\nname = "a"\n',
            "line {l4}, key name of [[cells]] #2 'a'",
            "cell name 'a' is used twice",
        ),
        (
            '[[cells]]\nname = "a"\ndevice = "mps"\n',
            "line {l3}, key device of [[cells]] #1 'a'",
            "#1 'a': mps was asked for but MPS is not available; use auto or cpu",  # the key named once
        ),
    ],
)
def test_unknown_names_and_bad_values_are_caught_before_anything_runs(exp, tmp_path, cells, where, message):
    path = exp(cells)
    base = HEAD.count("\n") + 1  # first line of `cells`
    where = where.format(**{f"l{i}": base + i - 1 for i in range(1, 6)})
    res = CliRunner().invoke(main, ["run", str(path)])
    assert res.exit_code == 2
    # checking n against the split reads the dataset: a cold cache says it decodes it, once
    err = "\n".join(line for line in res.output.strip().splitlines() if not line.startswith("decoding "))
    assert err.startswith(f"error: {path}, {where}: "), err
    assert message in err and "\n" not in err
    assert not (tmp_path / "out").exists()  # no folder, no log, no record


def test_cli_help_and_missing_file(tmp_path):
    res = CliRunner().invoke(main, ["run", "--help"])
    assert res.exit_code == 0
    for text in ("--dry-run", "--only", "--device", "resume"):
        assert text in res.output
    res = CliRunner().invoke(main, ["run", str(tmp_path / "nope.toml")])
    assert res.exit_code == 2 and "nope.toml does not exist" in res.output


@pytest.mark.parametrize("name", ["leaderboard_cifar10.toml", "resnets_cifar10.toml"])
def test_leaderboard_experiments_use_robustbenchs_threat_model(name, monkeypatch):
    """L-inf 8/255 in pixels for training and every evaluation, 1,000 validation images
    to choose the checkpoint, clean accuracy on the whole test set, AutoAttack standard."""
    monkeypatch.chdir(REPO)
    exp = load_experiment(REPO / "experiments" / name)
    assert exp.data.val_fraction * 50_000 == 1000 and exp.data.subset is None
    for cell in exp.cells:
        if cell.spec.adv != "none":
            kw = cell.spec.adv_kwargs
            assert kw["eps_space"] == "pixel" and kw["eps"] == pytest.approx(8 / 255)
    for u in exp.units:
        assert u.spec.threat.space == "pixel" and u.spec.threat.eps == pytest.approx(8 / 255)
        assert u.spec.threat.norm == "linf" and u.split == "test"
    assert max(u.n or 10_000 for u in exp.units) == 10_000
    aa = [u for u in exp.units if u.spec.name == "autoattack"]
    assert aa and aa[0].spec.options.get("version", "standard") == "standard"
    assert aa[0].n >= (1000 if name == "leaderboard_cifar10.toml" else 200)  # the ResNets: what the CPU affords
    if name == "leaderboard_cifar10.toml":
        speed = exp.cells[0].spec
        assert speed.adv == "fgsm-rs" and speed.model.arch == "fast" and speed.epochs <= 20
        assert speed.budget_minutes == 60  # the hour is held by the clock, on any CPU


@pytest.mark.parametrize("name", ["quick.toml", "seed_suite_cifar10.toml", "seed_suite_cifar100.toml"])
def test_shipped_experiments_parse(name, monkeypatch):
    monkeypatch.chdir(REPO)  # paths resolve against experiments/ and are shown relative to the root
    exp = load_experiment(REPO / "experiments" / name)
    assert exp.cells and exp.units
    assert len({c.name for c in exp.cells}) == len(exp.cells)
    if name == "quick.toml":
        assert exp.runs == Path("runs/quick") and exp.results == Path("runs/quick/results")
        assert any(c.spec.adv == "pgd" for c in exp.cells)
    else:
        methods = {(c.spec.method, c.spec.adv) for c in exp.cells}
        assert methods == {
            ("standard", "none"),
            ("mixup", "none"),
            ("cutmix", "none"),
            ("ova", "none"),
            ("standard", "pgd"),
            ("standard", "trades"),
            ("standard", "fgsm-rs"),
        }
        mix = next(c for c in exp.cells if c.spec.method == "mixup").spec.method_kwargs
        cut = next(c for c in exp.cells if c.spec.method == "cutmix").spec.method_kwargs
        assert mix["alpha"] == 0.2 and cut["alpha"] == 1.0
        labels = {u.spec.label for u in exp.units}
        assert {"FGSM", "PGD-20"} <= labels
        assert all(u.n is None or u.n >= 2000 for u in exp.units)
        if name == "seed_suite_cifar10.toml":  # three seeds per method; AutoAttack is the leaderboard study's
            assert "PGD-50" in labels and "AutoAttack" not in labels and exp.corruptions is not None
            assert len(exp.cells) == 21 and {c.seed for c in exp.cells} == {0, 1, 2}
        else:
            assert "AutoAttack" in labels
        pgd20 = [u for u in exp.units if u.spec.label == "PGD-20" and u.spec.threat.eps == 0.0313]
        assert pgd20 and pgd20[0].spec.threat.step == 0.002
        assert len({u.spec.threat.eps for u in exp.units}) >= 3  # an eps sweep
        assert exp.notes

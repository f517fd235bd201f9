"""Long work shows its progress, and the numbers a person reads agree with each other:
the progress display in its three modes, then `robust train`, `robust eval`,
evaluate() with AutoAttack and `robust run` on real CIFAR-10 images."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console
from support import TINY_EXPERIMENT, image_tree

from robustbench_local.attacks import ATTACKS, AttackResult, AttackSpec
from robustbench_local.attacks import info as attack_info
from robustbench_local.cli import main
from robustbench_local.progress import progress_display
from robustbench_local.text import acc_text, plural
from robustbench_local.threat import ThreatModel

PERCENT_WITH_N = r"\d+\.\d% \(n=[\d,]+"


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def plain(clock, **kw):
    buf = io.StringIO()
    return buf, progress_display(Console(file=buf, width=200), interactive=False, clock=clock, heartbeat=None, **kw)


# ----------------------------------------------------------------------------- the display
def test_plain_mode_prints_at_most_one_line_per_30_s_and_a_final_line():
    clock = FakeClock()
    buf, display = plain(clock)
    with display as p:
        with p.task("PGD-20 @ L-inf 8/255", total=1000, unit="points") as t:
            for i in range(100):  # 100 s of work, an update every second
                clock.now += 1.0
                t.advance(10, info=f"robust so far: {i} of {10 * (i + 1)}")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 4, lines  # at 30, 60 and 90 s, then the final line
    assert lines[0] == "PGD-20 @ L-inf 8/255: 300/1,000 points (30%), robust so far: 29 of 300; 0:30 elapsed, ETA 1:10"
    assert lines[-1] == "PGD-20 @ L-inf 8/255: 1,000/1,000 points, robust so far: 99 of 1000; done in 1:40"


def test_plain_mode_short_task_prints_nothing():
    clock = FakeClock()
    buf, display = plain(clock)
    with display as p:
        with p.task("validation", total=50, unit="images", final=False) as t:
            t.advance(50)
        with p.task("test", total=50, unit="images") as t:
            clock.now += 3
            t.advance(50)
    assert buf.getvalue().splitlines() == []  # under 30 s: the caller prints the result, nothing repeats it


def test_terminal_mode_draws_a_live_bar_that_refreshes_by_itself():
    buf = io.StringIO()
    with progress_display(Console(file=buf, force_terminal=True, width=150), interactive=True) as p:
        with p.task("epoch 1/2", total=16, unit="batches") as t:
            live = p._progress.live
            assert live.auto_refresh and live.refresh_per_second >= 1  # the clock moves without updates
            t.advance(3, info="loss 2.301  acc 11.2%")
            p._progress.refresh()
        assert p._progress is None  # no live display between tasks
    shown = buf.getvalue()
    assert "\x1b[" in shown and "epoch 1/2" in shown and "3/16 batches" in shown and "loss 2.301" in shown
    assert "ETA" in shown


def test_quiet_shows_nothing():
    buf = io.StringIO()
    with progress_display(Console(file=buf, force_terminal=True), quiet=True) as p:
        with p.task("x", total=3) as t:
            t.advance(3)
    assert buf.getvalue() == ""


def test_plural_and_accuracy_text():
    assert plural(1, "epoch") == "1 epoch" and plural(2, "epoch") == "2 epochs" and plural(0, "cell") == "0 cells"
    assert plural(1000, "point") == "1,000 points"
    assert acc_text(0.3188, 1000, (0.2906, 0.3484)) == "31.9% (n=1,000, 95% CI 29.1-34.8%)"


# ----------------------------------------------------------------------------- robust train
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`robust train --subset 300 --epochs 1` on real CIFAR-10 (output not a terminal)."""
    root = tmp_path_factory.mktemp("train")
    res = CliRunner().invoke(
        main,
        [
            "train",
            "--subset",
            "300",
            "--epochs",
            "1",
            "--maps",
            "8,8,16",
            "--device",
            "cpu",
            "--out",
            str(root / "run"),
            "--results",
            str(root / "res"),
        ],
    )
    assert res.exit_code == 0, res.output
    (record,) = [json.loads(p.read_text()) for p in (root / "res" / "records").glob("train-*.json")]
    return root, res.output, record


def test_cli_train_prints_percents_with_n_and_right_plurals(trained):
    _, out, record = trained
    assert "1 epochs" not in out and "for 1 epoch " in out
    m = record["metrics"]
    assert re.search(r"val acc:? +" + PERCENT_WITH_N + r", 95% CI", out), out
    assert re.search(r"test acc:? +" + PERCENT_WITH_N + r", 95% CI", out), out
    assert f"{100 * m['val_acc']:.1f}% (n={m['val_n']:,}" in out
    assert f"{100 * m['test_acc']:.1f}% (n={m['test_n']:,}" in out
    epoch_line = next(line for line in out.splitlines() if line.startswith("epoch 1/1 "))
    assert re.search(r"train loss \d\.\d{4} acc \d+\.\d%", epoch_line), epoch_line
    assert re.search(r"val loss \d\.\d{4} acc " + PERCENT_WITH_N, epoch_line), epoch_line
    # no accuracy printed as a bare fraction
    assert not re.search(r"acc:? +0\.\d{3,}", out), out


def test_cli_train_reports_one_duration(trained):
    _, out, record = trained
    epoch_line = next(line for line in out.splitlines() if line.startswith("epoch 1/1 "))
    train_s, val_s = map(float, re.search(r"train ([\d.]+) s \+ val ([\d.]+) s", epoch_line).groups())
    (time_row,) = [line for line in out.splitlines() if line.strip().startswith("time")]
    total = float(re.search(r"time: ([\d.]+) s over 1 epoch ", time_row).group(1))
    # the summary's time is the record's total, and its split is the epoch line's
    assert total == pytest.approx(record["seconds"]["total"], abs=0.051)
    assert f"train {train_s:.1f} s + val {val_s:.1f} s per epoch" in time_row, time_row
    assert train_s + val_s == pytest.approx(total, abs=0.11)
    assert "s/epoch" not in out and " min" not in out


# ----------------------------------------------------------------------------- robust eval
def test_cli_eval_shows_attack_progress_and_percents_with_n(trained):
    root, _, _ = trained
    res = CliRunner().invoke(
        main,
        [
            "eval",
            "--attack",
            "pgd",
            "--k",
            "3",
            "--eta",
            "0.0125",
            "--n",
            "30",
            "--results",
            str(root / "eval"),
            str(root / "run" / "best.pth"),
        ],
    )
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    attacked = [
        line for line in lines if re.match(r"PGD-3 @ .*: \d+/\d+ points.*robust so far.*; done in \d+:\d\d$", line)
    ]
    assert attacked == [], res.output  # shorter than 30 s: the result line alone, no progress line repeating it
    assert re.search(r"PGD-3 @ .*: robust " + PERCENT_WITH_N, res.output), res.output
    assert re.search(r"clean accuracy " + PERCENT_WITH_N + r", 95% CI", res.output), res.output
    assert re.search(r"robust " + PERCENT_WITH_N + r", 95% CI", res.output), res.output


def test_evaluate_shows_autoattack_sub_attacks(trained, monkeypatch):
    """AutoAttack reports each sub-attack and the points still robust through the
    runner's on_progress hook (a fake runner here: real AutoAttack takes minutes)."""
    from robustbench_local.evaluation import evaluate

    calls = []

    def fake_autoattack(model, x, y, threat, *, version="standard", seed=0, std=None, on_progress=None):
        n = len(y)
        calls.append(n)
        for name, left in (("apgd-ce", n), ("apgd-t", n - 2), ("fab-t", n - 3), ("square", n - 3)):
            on_progress(name, left, n)
        fooled = y.new_zeros(n, dtype=bool)
        fooled[:3] = True
        return AttackResult(x.clone(), fooled)

    real = attack_info("autoattack")
    monkeypatch.setitem(ATTACKS._meta["autoattack"], "info", dataclasses.replace(real, fn=fake_autoattack))
    clock = FakeClock()
    buf = io.StringIO()
    spec = AttackSpec("autoattack", threat=ThreatModel("linf", 8 / 255, 2 / 255, space="pixel"))
    with progress_display(Console(file=buf, width=200), interactive=False, clock=clock, every=0.0, heartbeat=None) as p:
        (rec,) = evaluate(str(root_best(trained)), [spec], n=300, device="cpu", run_checks=False, progress=p)
    (n,) = calls  # AutoAttack gets every clean-correct point in one call
    assert n == rec["metrics"]["clean_correct"] > 3
    shown = buf.getvalue()
    left = [n, n - 2, n - 3, n - 3]
    for name, k in zip(("apgd-ce", "apgd-t", "fab-t", "square"), left):
        assert re.search(rf"^AutoAttack @ .*: {name}: {k} of {n} points still robust; ", shown, re.M), shown
    assert re.search(rf"^AutoAttack @ .*: {n}/{n} points, robust so far: {n - 3} of {n}; done in ", shown, re.M), shown


def root_best(trained) -> Path:
    return trained[0] / "run" / "best.pth"


def test_evaluate_is_silent_without_a_progress_display(trained, capsys):
    from robustbench_local.evaluation import evaluate

    spec = AttackSpec("fgsm", threat=ThreatModel("linf", 0.0313, 0.0313 / 4))
    evaluate(str(root_best(trained)), [spec], n=20, device="cpu", run_checks=False)
    assert capsys.readouterr().out == ""


# ----------------------------------------------------------------------------- tables
def test_eval_table_marks_a_degenerate_model(capsys):
    from robustbench_local.cli.tables import print_eval_table

    rec = {
        "checkpoint": {"name": "collapsed/best.pth"},
        "degenerate": {"reason": "predicts one class for 100%"},
        "attack": {"label": "PGD-10", "norm": "linf", "eps_normalized": 0.0313, "eps_pixel": 0.01565},
        "metrics": {
            "clean_acc": 0.15,
            "robust_acc": 0.15,
            "robust_ci95": [0.12, 0.18],
            "n": 100,
            "seconds": 1.0,
            "images_per_s": 100.0,
        },
        "checks": [],
    }
    print_eval_table([rec])
    out = capsys.readouterr().out
    assert "meaningless" in out and "one class" in out


# ----------------------------------------------------------------------------- robust run
def test_run_reports_the_training_duration_of_the_training_summary(tmp_path, monkeypatch, cifar10, capsys):
    from robustbench_local.experiment import run_experiment

    tree = image_tree(tmp_path / "data", cifar10, 20, 10)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exp.toml").write_text(
        TINY_EXPERIMENT.format(tree=tree)
        + """
[[cells]]
name = "std"

[report]
enabled = false
"""
    )
    said: list[str] = []
    run_experiment(tmp_path / "exp.toml", say=said.append)
    shown = capsys.readouterr().out  # fit's own summary and the evaluation's progress
    (trained_line,) = [s for s in said if "trained in" in s]
    (time_row,) = [line for line in shown.splitlines() if line.strip().startswith("time")]
    summary_time = re.search(r"time: (.*)$", time_row).group(1)
    assert trained_line.startswith(f"std: trained in {summary_time}; "), (trained_line, time_row)
    assert re.search(r"val acc " + PERCENT_WITH_N + r", 95% CI", trained_line), trained_line
    assert re.search(r"test acc " + PERCENT_WITH_N + r", 95% CI", trained_line), trained_line
    assert "done in" not in shown  # short attacks: their result lines (in the log) say it all
    assert any(re.search(r"FGSM @ .*: robust " + PERCENT_WITH_N, s) for s in said), said
    assert any(", 1 epoch -> " in s for s in said), said
    log = (tmp_path / "out" / "tiny.log").read_text()
    assert "trained in" in log and "done in" not in log  # progress goes to the screen, not the log


@pytest.mark.parametrize("command", ["visualize", "analyze"])
def test_visualize_and_analyze_show_their_attack(trained, command, tmp_path, monkeypatch):
    import robustbench_local.progress as progress

    monkeypatch.setattr(progress, "PLAIN_EVERY", 0.0)  # a plain line at every update, then the final one
    root, _, _ = trained
    res = CliRunner().invoke(
        main,
        [
            command,
            "--attack",
            "fgsm",
            "--n",
            "30",
            "--out",
            str(tmp_path / ("grid.png" if command == "visualize" else "analysis")),
            str(root / "run" / "best.pth"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert re.search(r"^FGSM @ .*: \d+/\d+ points, robust so far: \d+ of \d+; done in ", res.output, re.M), res.output

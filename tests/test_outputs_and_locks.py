"""Outputs through the CLI: one writer per run folder, every output path checked before
any work, nothing computed is lost at the end, nothing half-written, one-line errors,
and `robust report` keeps its hands off reports it did not make."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from support import image_tree

from robustbench_local import evaluation as evaluate_module
from robustbench_local import fileio, outputs
from robustbench_local import train as train_module
from robustbench_local import visualize as visualize_module
from robustbench_local.checkpoint import file_sha256, read_checkpoint
from robustbench_local.cli import main
from robustbench_local.results import ResultsStore
from robustbench_local.specs import DataSpec, ModelSpec, TrainSpec

FIXTURES = Path(__file__).parent / "fixtures" / "records"
TINY = ["--maps", "8,8,16", "--batch-size", "64", "--schedule", "none", "--device", "cpu"]


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tree(tmp_path_factory, cifar10) -> str:
    """Real CIFAR-10 images: 30 train (27 + 3 val) and 10 test per class; test n = 100."""
    from robustbench_local.data import load_dataset

    name = image_tree(tmp_path_factory.mktemp("outputs") / "tiny", cifar10, 30, 10)
    load_dataset(name)  # decoded into the cache once
    return name


@pytest.fixture(scope="module")
def checkpoint(tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "run"
    spec = TrainSpec(
        data=DataSpec(dataset=tree),
        model=ModelSpec(kwargs={"maps": "8,8,16"}),
        epochs=1,
        batch_size=64,
        schedule="none",
        device="cpu",
        out=str(out),
    )
    return train_module.fit(spec, quiet=True).best_path


@pytest.fixture
def readonly(tmp_path) -> Path:
    """An existing folder in which nothing can be created, also for root (who ignores
    permission bits): a chmod 555 folder, else /sys."""
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    for candidate in (d, Path("/sys")):
        try:
            fd, probe = tempfile.mkstemp(dir=candidate)
        except OSError:
            yield candidate
            break
        os.close(fd)
        os.unlink(probe)
    else:
        pytest.skip("no folder here refuses writes")
    d.chmod(0o755)


@pytest.fixture
def unsaved(tmp_path, monkeypatch) -> Path:
    """The fallback folder for records that could not be written, inside tmp_path."""
    root = tmp_path / "unsaved"
    monkeypatch.setattr(outputs, "unsaved_root", lambda: root)
    return root


def cli(args, cwd: Path):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    finally:
        os.chdir(old)


def one_error_line(result) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def no_work(*_a, **_k):
    raise AssertionError("the work started before the outputs were checked")


def records(root: Path, kind: str = "*") -> list[Path]:
    return sorted((root / "records").glob(f"{kind}-*.json"))


def train_args(tree: str, *extra) -> list:
    return ["train", "--dataset", tree, "--epochs", "1", *TINY, *extra]


def enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# ----------------------------------------------------------------------------- one folder, one writer
HOLDER = """
import pathlib, sys, time
from robustbench_local import train
real = train.prepare_run
def held(*a, **k):  # a training that has taken its folder and waits for the test's signal
    pathlib.Path(sys.argv[1]).write_text("holding")
    while not pathlib.Path(sys.argv[2]).exists():
        time.sleep(0.05)
    return real(*a, **k)
train.prepare_run = held
from robustbench_local.cli import main
main(sys.argv[3:])
"""


def test_a_second_training_into_a_busy_folder_is_refused(tree, tmp_path):
    holding, go = tmp_path / "holding", tmp_path / "go"
    args = train_args(tree, "--out", "run", "--results", "res")
    first = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(holding), str(go), *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(6000):  # until the first training holds the folder (or dies)
            if holding.exists() or first.poll() is not None:
                break
            time.sleep(0.05)
        assert holding.exists(), first.communicate()
        second = cli(args + ["--lr", "0.1"], tmp_path)
        line = one_error_line(second)
        assert line == (
            f"error: another `robust train` (pid {first.pid}) is working in run; wait for it, "
            f"or delete {Path('run') / '.lock'} if that process is gone"
        )
        assert not (tmp_path / "res").exists()
    finally:
        go.write_text("go")
        out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert len(records(tmp_path / "res")) == 1 and not (tmp_path / "run" / ".lock").exists()
    assert read_checkpoint(tmp_path / "run" / "last.pth")["meta"]["spec"]["lr"] == 0.05


def test_another_configuration_never_shares_the_default_folder(tree, tmp_path):
    assert cli(train_args(tree, "--results", "res"), tmp_path).exit_code == 0
    (folder,) = (tmp_path / "runs").iterdir()
    line = one_error_line(cli(train_args(tree, "--results", "res", "--lr", "0.1"), tmp_path))
    assert f"{Path('runs') / folder.name} holds a run trained with other options (lr 0.05 -> 0.1)" in line
    assert "--out DIR" in line
    # the same options: the folder's own run, to resume
    line = one_error_line(cli(train_args(tree, "--results", "res"), tmp_path))
    assert "already holds a run; pass --resume" in line
    assert len(records(tmp_path / "res")) == 1


# ----------------------------------------------------------------------------- nothing is lost
def test_a_kill_during_the_final_test_pass_is_finished_by_resume(tree, tmp_path, monkeypatch):
    real = train_module.evaluate_split

    def killed_in_test_pass(model, split, *a, **k):
        if len(split) == 100:  # the test split (validation holds 30)
            raise KeyboardInterrupt
        return real(model, split, *a, **k)

    args = train_args(tree, "--out", "run", "--results", "res")
    monkeypatch.setattr(train_module, "evaluate_split", killed_in_test_pass)
    assert cli(args, tmp_path).exit_code == 130
    assert (tmp_path / "run" / "last.pth").is_file() and not records(tmp_path / "res")
    monkeypatch.setattr(train_module, "evaluate_split", real)

    r = cli(args + ["--resume"], tmp_path)
    assert r.exit_code == 0, r.output
    assert "test pass and record are missing" in r.output and "test acc" in r.output
    (rec,) = records(tmp_path / "res", "train")
    record = json.loads(rec.read_text())
    assert record["metrics"]["test_n"] == 100 and record["checkpoint"]["sha256"] == file_sha256(
        tmp_path / "run" / "best.pth"
    )
    r = cli(args + ["--resume"], tmp_path)
    assert r.exit_code == 0 and "already finished" in r.output and len(records(tmp_path / "res")) == 1


def test_a_full_disk_at_the_training_record_keeps_it_in_the_named_place(tree, tmp_path, monkeypatch, unsaved):
    real_add = ResultsStore.add

    def full_disk(self, record):
        if self.root.resolve() == (tmp_path / "res").resolve():
            enospc()
        return real_add(self, record)

    monkeypatch.setattr(ResultsStore, "add", full_disk)
    r = cli(train_args(tree, "--out", "run", "--results", "res"), tmp_path)
    line = one_error_line(_stderr_only(r))
    (kept,) = records(unsaved, "train")
    assert str(kept) in line and "No space left on device" in line and str(Path("res") / "records") in line
    assert json.loads(kept.read_text())["metrics"]["test_n"] == 100
    assert "test acc" in r.output  # the summary was still shown


def _stderr_only(result):
    class Only:
        exit_code = result.exit_code
        output = result.stderr

    return Only


def test_a_full_disk_at_the_eval_records_keeps_them(checkpoint, tmp_path, monkeypatch, unsaved):
    real_add = ResultsStore.add
    monkeypatch.setattr(
        ResultsStore, "add", lambda self, rec: enospc() if self.root.name == "res" else real_add(self, rec)
    )
    r = cli(["eval", "--attack", "fgsm", "--n", "20", "--device", "cpu", "--results", "res", checkpoint], tmp_path)
    line = one_error_line(_stderr_only(r))
    kept = records(unsaved, "eval")
    assert len(kept) == 1 and str(unsaved / "records") in line and "No space left on device" in line


def test_first_epoch_leftovers_never_wedge_the_folder(tree, tmp_path, monkeypatch):
    real_save = train_module.save_checkpoint

    def full_at_last(path, *a, **k):
        if Path(path).name == "last.pth":
            enospc()
        return real_save(path, *a, **k)

    args = train_args(tree, "--out", "run", "--results", "res")
    monkeypatch.setattr(train_module, "save_checkpoint", full_at_last)
    line = one_error_line(_stderr_only(cli(args, tmp_path)))
    assert line.startswith("error: cannot write to run (--out): No space left on device") and "same command" in line
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["best.pth", "config.json"]
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)

    assert "drop --resume" in one_error_line(cli(args + ["--resume"], tmp_path))
    r = cli(args, tmp_path)
    assert r.exit_code == 0, r.output
    assert "removing best.pth, config.json left by a first epoch that never finished" in r.output
    assert read_checkpoint(tmp_path / "run" / "last.pth")["train_state"]["epoch"] == 1


def test_a_folder_whose_last_pth_was_deleted_keeps_its_best_pth(tree, tmp_path):
    args = train_args(tree, "--out", "run", "--results", "res")
    assert cli(args, tmp_path).exit_code == 0
    (tmp_path / "run" / "last.pth").unlink()
    sha = file_sha256(tmp_path / "run" / "best.pth")
    line = one_error_line(cli(args, tmp_path))
    assert "no last.pth" in line and "--out DIR" in line
    assert file_sha256(tmp_path / "run" / "best.pth") == sha


# ----------------------------------------------------------------------------- checked before any work
@pytest.mark.parametrize("where", ["--results", "--out"])
def test_train_refuses_an_unwritable_output_before_training(where, tree, tmp_path, readonly, monkeypatch):
    monkeypatch.setattr(train_module, "prepare_run", no_work)
    target = readonly / "x"
    args = {"--results": ["--out", "run", "--results", target], "--out": ["--out", target, "--results", "res"]}[where]
    line = one_error_line(cli(train_args(tree, *args), tmp_path))
    assert (
        line.startswith(f"error: cannot write to {target} ({where}): ")
        and f"choose another folder with {where}" in line
    )
    assert not (tmp_path / "run").exists() and not (tmp_path / "res").exists()


def test_train_out_under_proc_is_one_line(tree, tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "prepare_run", no_work)
    line = one_error_line(cli(train_args(tree, "--out", "/proc/forbidden/run", "--results", "res"), tmp_path))
    assert line.startswith("error: cannot write to /proc/forbidden/run (--out): ")


@pytest.mark.parametrize("option", ["--results", "--save-adv"])
def test_eval_refuses_an_unwritable_output_before_attacking(option, checkpoint, tmp_path, readonly, monkeypatch):
    monkeypatch.setattr(evaluate_module, "evaluate", no_work)
    target = readonly / ("adv.pt" if option == "--save-adv" else "res")
    args = [
        "eval",
        "--attack",
        "fgsm",
        "--n",
        "20",
        "--device",
        "cpu",
        "--results",
        tmp_path / "res",
        option,
        target,
        checkpoint,
    ]
    line = one_error_line(cli(args, tmp_path))
    assert f"cannot write to {target.parent if option == '--save-adv' else target} ({option})" in line


def test_report_and_visualize_refuse_an_unwritable_out(checkpoint, tmp_path, readonly, monkeypatch):
    shutil.copytree(FIXTURES, tmp_path / "res" / "records")
    line = one_error_line(cli(["report", "--results", "res", "--out", readonly / "rep"], tmp_path))
    assert f"cannot write to {readonly / 'rep'} (--out)" in line
    monkeypatch.setattr(visualize_module, "adversarial_examples", no_work)
    line = one_error_line(
        cli(["visualize", checkpoint, "--n", "4", "--device", "cpu", "--out", readonly / "grid.png"], tmp_path)
    )
    assert f"cannot write to {readonly} (--out)" in line


# ----------------------------------------------------------------------------- full disk: one line, nothing half-written
def test_a_full_disk_for_save_adv_keeps_the_records(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", enospc)
    r = cli(
        [
            "eval",
            "--attack",
            "fgsm",
            "--n",
            "20",
            "--device",
            "cpu",
            "--results",
            "res",
            "--save-adv",
            "adv/x.pt",
            checkpoint,
        ],
        tmp_path,
    )
    line = one_error_line(_stderr_only(r))
    assert "adv/x.pt" in line and "No space left on device" in line
    assert len(records(tmp_path / "res", "eval")) == 1  # the attack's numbers are kept
    assert not (tmp_path / "adv").exists()  # no .pt, no temp file, no empty folder


def test_a_full_disk_for_the_report_leaves_nothing_half_written(tmp_path, monkeypatch):
    shutil.copytree(FIXTURES, tmp_path / "res" / "records")
    real = fileio._fill
    calls = []

    def full_after_one(path, data):
        calls.append(path)
        if len(calls) > 1:
            enospc()
        real(path, data)

    monkeypatch.setattr(fileio, "_fill", full_after_one)
    line = one_error_line(cli(["report", "--results", "res", "--out", "rep"], tmp_path))
    assert "No space left on device" in line and "rep" in line
    assert not (tmp_path / "rep").exists()  # no empty figures/, no temp files


# ----------------------------------------------------------------------------- report overwrite
def test_report_refuses_to_overwrite_a_report_it_did_not_make(tmp_path):
    shutil.copytree(FIXTURES, tmp_path / "res" / "records")
    study = tmp_path / "study"
    study.mkdir()
    (study / "REPORT.md").write_text("# My study\n\nNotes that took a week.\n")
    line = one_error_line(cli(["report", "--results", "res", "--out", "study"], tmp_path))
    assert "study" in line and "REPORT.md" in line and "--force" in line
    assert (study / "REPORT.md").read_text().startswith("# My study") and not (study / "figures").exists()

    r = cli(["report", "--results", "res", "--out", "study", "--force"], tmp_path)
    assert r.exit_code == 0 and "did not write" in r.output and "overwritten because of --force" in r.output, r.output
    assert not (study / "REPORT.md").read_text().startswith("# My study")


def test_report_rewrites_its_own_report_and_says_what_changed(tmp_path):
    shutil.copytree(FIXTURES, tmp_path / "res" / "records")
    args = ["report", "--results", "res"]
    assert cli(args, tmp_path).exit_code == 0
    r = cli(args, tmp_path)  # the same records: rewritten quietly
    assert r.exit_code == 0 and "replaced" not in r.output and "overwritten" not in r.output
    newest = records(tmp_path / "res")[-1]
    shutil.copy(newest, newest.with_name("eval-20990101T000000-0000000000.json"))
    r = cli(args, tmp_path)
    assert r.exit_code == 0 and "replaced the report made from" in r.output and "1 added" in r.output, r.output

    # a report made from another results folder, or edited by hand, is not ours to replace
    shutil.copytree(FIXTURES, tmp_path / "other" / "records")
    line = one_error_line(cli(["report", "--results", "other", "--out", "res"], tmp_path))
    assert "made from the records in" in line and "--force" in line
    md = tmp_path / "res" / "REPORT.md"
    md.write_text(md.read_text() + "\nA note by hand.\n")
    line = one_error_line(cli(args, tmp_path))
    assert "REPORT.md was changed after `robust report` wrote it" in line
    assert md.read_text().endswith("A note by hand.\n")

"""fit() and `robust train` on real data: learning, outputs, resume, early stopping,
the CLI (in-process and as a subprocess) and clean failures.

Most runs use a small ImageFolder tree of real CIFAR-10 images (600 train / 200
test PNGs, written once per module) so that each run's test evaluation is cheap;
the learning test uses the real CIFAR-10 loader."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from rich.console import Console

from robustbench_local.checkpoint import file_sha256, load_checkpoint, read_checkpoint
from robustbench_local.cli import main
from robustbench_local.data import load_dataset
from robustbench_local.errors import CheckpointError, RobustError
from robustbench_local.methods import ValMetric
from robustbench_local.optim import LRSchedule
from robustbench_local.results import ResultsStore
from robustbench_local.specs import DataSpec, ModelSpec, TrainSpec
from robustbench_local.train import fit
from robustbench_local.train_budget import BudgetPlan, plan_epochs

REPO = Path(__file__).resolve().parent.parent
TINY = {"maps": "8,8,16"}


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tree(tmp_path_factory, cifar10) -> str:
    """imagefolder:PATH of real CIFAR-10 images: 60 train and 20 test per class."""
    root = tmp_path_factory.mktemp("cifar-small")
    for split, per_class in ((cifar10.train, 60), (cifar10.test, 20)):
        name = "train" if split is cifar10.train else "test"
        for label, cls in enumerate(cifar10.info.classes):
            folder = root / name / cls
            folder.mkdir(parents=True)
            idx = (split.y == label).nonzero().flatten()[:per_class]
            for i in idx.tolist():
                Image.fromarray(split.x[i].permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    load_dataset(f"imagefolder:{root}")  # decode into the cache now, so the CLI tests see only their own output
    return f"imagefolder:{root}"


def small_spec(tree: str, out: Path, **changes) -> TrainSpec:
    data = changes.pop("data", {})
    model = changes.pop("model", {})
    base = dict(
        data=DataSpec(dataset=tree, **data),
        model=ModelSpec(arch="cnn", kwargs=dict(TINY, **model)),
        epochs=2,
        batch_size=64,
        out=str(out),
        device="cpu",
    )
    base.update(changes)
    return TrainSpec(**base)


@pytest.fixture(scope="module")
def learned(tmp_path_factory, cifar10):
    """The default CNN and method on 2,000 real CIFAR-10 training images, 3 epochs
    (val accuracy about 0.40, test about 0.37)."""
    tmp = tmp_path_factory.mktemp("learn")
    spec = TrainSpec(
        data=DataSpec(subset=2000, val_fraction=0.02), epochs=3, batch_size=64, device="cpu", out=str(tmp / "run")
    )
    store = ResultsStore(tmp / "results")
    return spec, fit(spec, store=store, quiet=True), store


# ----------------------------------------------------------------------------- learning and outputs
def test_short_run_learns_well_above_chance(learned):
    spec, result, _ = learned
    # chance is 0.10; with n = 1,000 val / 10,000 test a 0.25 bar is over 15 standard errors above it
    assert result.metrics["val_acc"] > 0.25
    assert result.metrics["test_acc"] > 0.25
    assert result.metrics["test_n"] == 10000 and result.metrics["val_n"] == 1000
    assert len(result.history) == 3 and result.stopped is None
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_run_folder_and_record(learned):
    spec, result, store = learned
    out = Path(spec.out)
    assert sorted(p.name for p in out.iterdir()) == ["best.pth", "config.json", "history.csv", "last.pth"]
    # best.pth is the first epoch with the highest validation accuracy
    accs = [r["val_acc"] for r in result.history]
    assert result.best_epoch == accs.index(max(accs)) + 1
    best_meta = read_checkpoint(out / "best.pth")["meta"]
    assert best_meta["epoch"] == result.best_epoch and best_meta["metrics"]["val_acc"] == max(accs)
    last = read_checkpoint(out / "last.pth")
    assert last["meta"]["epoch"] == 3 and last["train_state"]["epoch"] == 3
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for col in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s"):
        assert all(math.isclose(float(r[col]), h[col], rel_tol=1e-5) for r, h in zip(rows, result.history))
    config = json.loads((out / "config.json").read_text())
    assert TrainSpec.from_dict(config["spec"]) == spec
    assert config["resolved"]["n_train"] == 2000 and config["resolved"]["augment"] == "basic"
    # cosine: the lr falls every epoch from the peak
    lrs = [r["lr"] for r in result.history]
    assert lrs[0] == spec.lr and all(a > b for a, b in zip(lrs, lrs[1:]))

    (record,) = store.load()
    assert record["kind"] == "train" and record["_path"] == str(result.record_path)
    assert record["checkpoint"]["sha256"] == file_sha256(out / "best.pth")
    assert record["checkpoint"]["arch"] == "cnn" and record["checkpoint"]["method"] == "standard"
    m = record["metrics"]
    assert m["test_correct"] == round(m["test_acc"] * m["test_n"])
    assert m["test_ci95"][0] < m["test_acc"] < m["test_ci95"][1]
    assert m["val_ci95"][0] < m["val_acc"] < m["val_ci95"][1]
    assert record["data"]["n_train"] == 2000 and record["data"]["dataset"] == "cifar10"
    assert len(record["history"]) == 3 and record["best_epoch"] == result.best_epoch
    assert record["seconds"]["attack"] == 0 and record["seconds"]["update"] > 0
    assert record["environment"]["versions"]["torch"] == torch.__version__
    assert record["spec"] == spec.to_dict()


# ----------------------------------------------------------------------------- resume
def _weights(path: Path) -> dict:
    return read_checkpoint(path)["state_dict"]


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


class Interrupt(Exception):
    pass


def _cut_off_after(spec: TrainSpec, epoch: int) -> None:
    """fit() interrupted once ``epoch``'s files are written, as a killed session would leave it."""

    def stop(row):
        if row["epoch"] == epoch:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(spec, quiet=True, on_epoch_end=stop)


def test_interrupted_run_resumes_bit_identical(tree, tmp_path):
    # mixup, augmentation and dropout all draw random numbers; cosine depends on the step
    common = dict(method="mixup", model={"dropout": 0.2}, epochs=3)
    straight = fit(small_spec(tree, tmp_path / "straight", **common), quiet=True)

    spec = small_spec(tree, tmp_path / "split", **common)
    _cut_off_after(spec, 1)
    assert read_checkpoint(tmp_path / "split" / "last.pth")["train_state"]["epoch"] == 1
    with pytest.raises(RobustError, match="already holds a run; pass --resume"):
        fit(spec, quiet=True)
    resumed = fit(spec, resume=True, quiet=True)

    _assert_same_weights(tmp_path / "straight" / "last.pth", tmp_path / "split" / "last.pth")
    _assert_same_weights(tmp_path / "straight" / "best.pth", tmp_path / "split" / "best.pth")
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in rows]  # noqa: E731
    assert strip(resumed.history) == strip(straight.history)
    assert resumed.metrics["test_acc"] == straight.metrics["test_acc"]

    again = fit(spec, resume=True, quiet=True)
    assert again.already_finished and len(again.history) == 3
    with pytest.raises(RobustError, match="options differ.*lr 0.05 -> 0.1"):
        fit(spec.replace(lr=0.1), resume=True, quiet=True)


def test_patience_stops_early_and_resume_says_finished(tree, tmp_path):
    # without batch norm and with a vanishing lr the predictions cannot change, so the
    # validation accuracy never improves after epoch 1
    spec = small_spec(tree, tmp_path / "run", model={"bn": False}, lr=1e-9, schedule="none", epochs=6, patience=2)
    result = fit(spec, quiet=True)
    assert len(result.history) == 3 and result.best_epoch == 1
    assert "did not improve for 2 epochs" in result.stopped
    assert fit(spec, resume=True, quiet=True).already_finished


def test_budget_plan_counts_the_slowest_epoch_after_the_first():
    # the first epoch paid one-off costs: the pace is the slowest of the others
    plan = plan_epochs(10, [300.0, 100.0, 120.0], most=8)
    assert plan.epochs == 3 and plan.reason == "time budget: 3 epochs of 8 fit in 10 min at 2.0 min per epoch"
    assert plan_epochs(10, [300.0, 100.0], most=8).epochs == 4  # 200 s left at 100 s an epoch: 2 more
    assert plan_epochs(1, [50.0], most=4) == BudgetPlan(
        1, "time budget: 1 epoch of 4 fit in 1 min at 0.8 min per epoch"
    )
    assert plan_epochs(1, [70.0], most=4).epochs == 1  # already past the budget: no epoch more
    assert plan_epochs(600, [30.0, 30.0], most=6) == BudgetPlan(6, None)  # everything fits


def test_lr_schedule_replanned_ends_on_the_new_last_epoch():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    s = LRSchedule(opt, "onecycle", 1.0, 10, 4)
    for _ in range(8):
        s.step()
    s.replan(4)  # 2 of the 4 epochs done: half way through the new schedule
    assert s.lr == pytest.approx(0.5 / 0.7)
    for _ in range(8):
        s.step()
    assert s.lr == 0.0 and opt.param_groups[0]["lr"] == 0.0


def test_time_budget_shortens_the_run_and_its_schedule_and_resumes(tree, tmp_path, monkeypatch):
    # a fixed pace of 100 s per epoch stands in for the clock: 3 of 5 epochs fit in 5 minutes
    monkeypatch.setattr("robustbench_local.train.epoch_seconds", lambda history: [100.0] * len(history))
    common = dict(epochs=5, schedule="onecycle", lr=0.05, budget_minutes=5)
    straight = fit(small_spec(tree, tmp_path / "straight", **common), quiet=True)
    assert len(straight.history) == 3
    assert straight.stopped == "time budget: 3 epochs of 5 fit in 5 min at 1.7 min per epoch"
    # epoch 1 ran on the 5-epoch plan; epochs 2 and 3 on the 3-epoch one, which ends at lr 0
    lrs = [r["lr"] for r in straight.history]
    assert lrs == pytest.approx([0.05 / 25, 0.05 * (2 / 3) / 0.7, 0.05 * (1 / 3) / 0.7])
    state = read_checkpoint(tmp_path / "straight" / "last.pth")["train_state"]
    assert state["budget_epochs"] == 3 and state["stopped"] == straight.stopped
    steps = state["schedule"]["step_count"] // 3
    assert state["schedule"]["step_count"] == 3 * steps and state["optimizer"]["param_groups"][0]["lr"] == 0.0

    spec = small_spec(tree, tmp_path / "split", **common)
    _cut_off_after(spec, 2)
    resumed = fit(spec, resume=True, quiet=True)
    assert len(resumed.history) == 3 and resumed.stopped == straight.stopped
    _assert_same_weights(tmp_path / "straight" / "last.pth", tmp_path / "split" / "last.pth")
    assert fit(spec, resume=True, quiet=True).already_finished


def test_amp_and_channels_last_paths_run_on_cpu(tree, tmp_path, monkeypatch):
    import robustbench_local.train as train_module

    monkeypatch.setattr(train_module, "cpu_has_native_bf16", lambda: False)  # as on a CPU without avx512_bf16
    spec = small_spec(
        tree,
        tmp_path / "run",
        amp=True,
        channels_last=True,
        optimizer="adamw",
        lr=2e-3,
        warmup_epochs=0.5,
        grad_clip=1.0,
        method="ova",
        epochs=1,
    )
    buf = io.StringIO()
    result = fit(spec, progress=True, console=Console(file=buf, force_terminal=True, width=120))
    shown = buf.getvalue()
    assert "\x1b[" in shown and "epoch 1/1" in shown and "test acc" in shown  # live bar, then the summary table
    assert "no native bf16 instructions" in shown and "turn amp off" in shown
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["resolved"]["precision"] == "bf16" and config["resolved"]["channels_last"] is True
    assert math.isfinite(result.history[0]["train_loss"]) and 0 <= result.metrics["test_acc"] <= 1


def test_init_starts_from_a_checkpoint_and_checks_it_fits(tree, tmp_path):
    first = fit(small_spec(tree, tmp_path / "a", epochs=1), quiet=True)
    probe = ValMetric(("val_probe",), lambda model, split, device: {"val_probe": float(len(split))})
    # lr ~ 0: the fine-tuned weights must stay where --init put them
    spec = small_spec(tree, tmp_path / "b", epochs=1, init=str(first.best_path), lr=1e-9, schedule="none")
    result = fit(spec, quiet=True, store=ResultsStore(tmp_path / "results"), val_metrics=[probe])
    assert result.history[0]["val_probe"] == 60.0 and result.metrics["val_probe"] == 60.0
    (record,) = ResultsStore(tmp_path / "results").load()
    assert record["checkpoint"]["init"]["sha256"] == file_sha256(first.best_path)
    start, tuned = load_checkpoint(first.best_path)[0], load_checkpoint(result.best_path)[0]
    for (name, a), b in zip(start.named_parameters(), tuned.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name
    with pytest.raises(CheckpointError, match="do not fit"):
        fit(small_spec(tree, tmp_path / "c", model={"maps": "8,16,16"}, init=str(first.best_path)), quiet=True)
    assert not (tmp_path / "c").exists()


def test_lr_schedules():
    def lrs(kind, epochs=4, steps=10, warmup=0.0):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        s = LRSchedule(opt, kind, 1.0, epochs, steps, warmup)
        out = []
        for _ in range(epochs * steps):
            out.append(opt.param_groups[0]["lr"])
            s.step()
        return out

    cos = lrs("cosine")
    assert cos[0] == 1.0 and cos[20] == pytest.approx(0.5) and 0 < cos[-1] < 0.01
    one = lrs("onecycle")
    assert one[0] == pytest.approx(1 / 25) and max(one) == pytest.approx(1.0) and one.index(max(one)) == 12
    step = lrs("step")
    assert step[19] == 1.0 and step[20] == pytest.approx(0.1) and step[30] == pytest.approx(0.01)
    warm = lrs("none", warmup=1.0)
    assert warm[:10] == pytest.approx([(i + 1) / 10 for i in range(10)]) and warm[10:] == [1.0] * 30
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    plateau = LRSchedule(opt, "plateau", 1.0, 10, 5)
    for metric in (0.5, 0.6, 0.6, 0.6):
        plateau.epoch_end(metric)
    assert opt.param_groups[0]["lr"] == 1.0
    plateau.epoch_end(0.55)  # the third epoch in a row without improvement
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    state = plateau.state_dict()
    again = LRSchedule(opt, "plateau", 1.0, 10, 5)
    again.load_state_dict(state)
    assert again.lr == pytest.approx(0.1)


def test_spec_checks_and_round_trip():
    spec = TrainSpec.from_dict(
        {
            "epochs": 3,
            "lr": 0.1,
            "method": "cutmix",
            "method_kwargs": {"alpha": 0.5},
            "data": {"dataset": "fashion-mnist", "subset": 100},
            "model": {"arch": "vgg"},
        }
    )
    assert TrainSpec.from_dict(spec.to_dict()) == spec
    assert spec.run_name() == "fashion-mnist-vgg-cutmix-s0"
    assert TrainSpec(data=DataSpec(dataset="imagefolder:/x/animals.tar.gz")).run_name() == "animals-cnn-standard-s0"
    for bad, text in [
        ({"epochs": 0}, "train.epochs: must be >= 1"),
        ({"lr": 0}, "train.lr: must be > 0"),
        ({"batch_size": -1}, "train.batch_size"),
        ({"schedule": "linear"}, "train.schedule: unknown value"),
        ({"optimizer": "lion"}, "train.optimizer: unknown value"),
        ({"warmup_epochs": 10}, "shorter than train.epochs"),
        ({"data": {"subset": 0}}, "data.subset: must be >= 1"),
        ({"data": {"val_fraction": 0}}, "data.val_fraction"),
        ({"lrr": 1}, "unknown train option"),
        ({"epochs": 2.5}, "integer"),
        ({"method": "mixup", "method_kwargs": {"beta": 1}}, "does not take beta"),
    ]:
        with pytest.raises(RobustError, match=text):
            TrainSpec.from_dict(bad)


# ----------------------------------------------------------------------------- CLI
def _cli(args, cwd: Path):
    runner = CliRunner()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(main, args, catch_exceptions=False)
    finally:
        os.chdir(old)


def test_cli_train_and_resume(tree, tmp_path):
    args = [
        "train",
        "--dataset",
        tree,
        "--subset",
        "500",
        "--maps",
        "8,8,16",
        "--batch-size",
        "64",
        "--schedule",
        "none",
        "--device",
        "cpu",
        "--out",
        "run",
        "--results",
        "res",
    ]
    r = _cli(args + ["--epochs", "1"], tmp_path)
    assert r.exit_code == 0, r.output
    assert "epoch 1/1" in r.output and "test acc" in r.output and "Traceback" not in r.output
    assert len(list((tmp_path / "res" / "records").glob("train-*.json"))) == 1

    r = _cli(args + ["--epochs", "2"], tmp_path)
    assert r.exit_code == 2 and "already holds a run; pass --resume" in r.output

    r = _cli(args + ["--epochs", "2", "--resume"], tmp_path)
    assert r.exit_code == 0, r.output
    assert "resuming after epoch 1" in r.output and "epoch 2/2" in r.output
    # the same two epochs in one go (a constant lr makes the 1-epoch run a prefix of it)
    fit(small_spec(tree, tmp_path / "straight", data={"subset": 500}, schedule="none", epochs=2), quiet=True)
    _assert_same_weights(tmp_path / "run" / "last.pth", tmp_path / "straight" / "last.pth")

    r = _cli(args + ["--epochs", "2", "--resume"], tmp_path)
    assert r.exit_code == 0 and "already finished" in r.output


def test_cli_budget_minutes_stops_when_no_epoch_more_fits(tree, tmp_path):
    args = ["train", "--dataset", tree, "--subset", "300", "--maps", "8,8,16", "--device", "cpu"]
    r = _cli(args + ["--epochs", "3", "--budget-minutes", "0.0001", "--out", "run", "--results", "res"], tmp_path)
    assert r.exit_code == 0, r.output
    assert (
        "for 3 epochs at most in 0.0001 min" in r.output and "time budget: 1 epoch of 3 fit in 0.0001 min" in r.output
    )
    (record,) = (tmp_path / "res" / "records").glob("train-*.json")
    rec = json.loads(record.read_text())
    assert rec["epochs_run"] == 1 and rec["stopped"].startswith("time budget: 1 epoch of 3")


def test_cli_subprocess(tree, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "robustbench_local",
        "train",
        "--dataset",
        tree,
        "--epochs",
        "1",
        "--subset",
        "500",
        "--maps",
        "8,8,16",
        "--method",
        "cutmix",
        "--alpha",
        "0.5",
        "--device",
        "cpu",
        "--out",
        "run",
        "--results",
        "res",
    ]
    p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "epoch 1/1" in p.stdout and "\x1b[" not in p.stdout  # plain output when not on a terminal
    model, meta = load_checkpoint(tmp_path / "run" / "best.pth")
    assert meta["method"] == "cutmix" and meta["method_kwargs"] == {
        "alpha": 0.5,
        "cutmix_prob": 0.5,
        "label_smoothing": 0.0,
    }
    assert meta["arch_kwargs"] == {"maps": "8,8,16"} and meta["classes"][0] == "airplane"

    p = subprocess.run(
        cmd[:6] + ["--epochs", "0", "--out", "bad"], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert p.returncode == 2 and p.stderr.strip() == "error: --epochs: must be >= 1, got 0"
    assert "Traceback" not in p.stderr and not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "nope"], "unknown model 'nope'; valid models: "),
        (["--method", "nope"], "unknown method 'nope'; valid methods: cutmix, mixup, ova, standard"),
        (["--dataset", "nope"], "unknown dataset 'nope'; valid datasets: "),
        (["--epochs", "0"], "--epochs: must be >= 1"),
        (["--lr", "0"], "--lr: must be > 0"),
        (["--budget-minutes", "0"], "--budget-minutes: must be > 0"),
        (["--subset", "1000000"], "subset of 1000000 asked for, but the train split has only"),
        (["--method", "ova", "--alpha", "1"], "method 'ova' does not take alpha"),
        (["--maps", "8,x"], "maps"),
    ],
)
def test_cli_bad_inputs_fail_cleanly(args, message, tree, tmp_path):
    base = ["train", "--dataset", tree, "--epochs", "1", "--device", "cpu", "--out", "run", "--results", "res"]
    r = _cli(base + args, tmp_path)
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.output
    assert not (tmp_path / "run").exists() and not (tmp_path / "res").exists()


def test_cli_help_documents_units_and_defaults():
    r = CliRunner().invoke(main, ["train", "--help"])
    assert r.exit_code == 0
    for text in (
        "--epochs",
        "[default: 10]",
        "--lr",
        "[default: 0.05]",
        "--label-smoothing",
        "--cutmix-prob",
        "--resume",
        "--init",
        "--patience",
        "--budget-minutes",
        "--warmup",
        "--amp / --no-amp",
        "--subset",
        "--augment",
    ):
        assert text in r.output, text

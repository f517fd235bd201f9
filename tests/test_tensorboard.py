"""TensorBoard scalars: `robust train --tensorboard DIR`, `robust eval --tensorboard DIR`
and ``tensorboard = "DIR"`` in an experiment's [train], read back with TensorBoard's
own event reader and compared with history.csv and the records. Runs train the seed
CNN narrowed to maps 8,8,16 on 360 images of a small ImageFolder tree."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import TINY_EXPERIMENT

from robustbench_local.cli import main
from robustbench_local.errors import RobustError
from robustbench_local.experiment import load_experiment, run_experiment

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

TRAIN_TAGS = {
    "train/loss": "train_loss",
    "train/accuracy": "train_acc",
    "val/loss": "val_loss",
    "val/accuracy": "val_acc",
    "val/robust_accuracy": "val_robust_acc",
    "lr": "lr",
    "throughput/images_per_s": "images_per_s",
}


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_train_and_eval_write_their_scalars(tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(
        main,
        [
            "train",
            "--dataset",
            tree,
            "--val-fraction",
            "0.1",
            "--maps",
            "8,8,16",
            "--epochs",
            "2",
            "--batch-size",
            "64",
            "--device",
            "cpu",
            "--adv",
            "pgd",
            "--k",
            "1",
            "--val-robust-n",
            "20",
            "--val-robust-k",
            "1",
            "--out",
            "runs/pgd",
            "--results",
            "results",
            "--tensorboard",
            "tb/pgd",
        ],
    )
    assert res.exit_code == 0, res.output
    history = list(csv.DictReader(open("runs/pgd/history.csv")))
    got = scalars(Path("tb/pgd"))
    assert set(TRAIN_TAGS) <= set(got)
    for tag, column in TRAIN_TAGS.items():
        assert [s for s, _ in got[tag]] == [1, 2]
        # history.csv keeps 6 significant digits
        assert [v for _, v in got[tag]] == pytest.approx([float(r[column]) for r in history], rel=1e-5)
    assert not any(t.startswith("eval/") for t in got)

    res = CliRunner().invoke(
        main,
        [
            "eval",
            "--attack",
            "fgsm",
            "--n",
            "50",
            "--device",
            "cpu",
            "--no-checks",
            "--results",
            "results",
            "--tensorboard",
            "tb/pgd",
            "runs/pgd/best.pth",
        ],
    )
    assert res.exit_code == 0, res.output
    (rec,) = [json.loads(p.read_text()) for p in Path("results/records").glob("eval-*.json")]
    got = scalars(Path("tb/pgd"))
    epoch = rec["checkpoint"]["epoch"]
    assert got["eval/clean_accuracy"] == [(epoch, pytest.approx(rec["metrics"]["clean_acc"]))]
    assert got["eval/robust_accuracy/FGSM_linf_eps0.0313normalized"] == [
        (epoch, pytest.approx(rec["metrics"]["robust_acc"]))
    ]
    assert len(got["train/loss"]) == 2  # the training's points are still there


def test_experiment_cells_write_to_their_own_folders(tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    extra = 'tensorboard = "tb"\n'
    text = TINY_EXPERIMENT.format(tree=tree).replace("[train]\n", "[train]\n" + extra)
    Path("exp.toml").write_text(text + '\n[[cells]]\nname = "std"\n\n[[cells]]\nname = "mix"\nmethod = "mixup"\n')
    run_experiment("exp.toml", say=lambda m: None)
    for cell in ("std", "mix"):
        got = scalars(Path("tb") / cell)
        assert [s for s, _ in got["val/accuracy"]] == [1] and "val/robust_accuracy" not in got
        # FGSM and PGD-2 at 0.0313, PGD-2 at 0.0157 (the worst case is no attack of its own)
        robust = sorted(t for t in got if t.startswith("eval/robust_accuracy/"))
        assert robust == [
            "eval/robust_accuracy/FGSM_linf_eps0.0313normalized",
            "eval/robust_accuracy/PGD-2_linf_eps0.0157normalized",
            "eval/robust_accuracy/PGD-2_linf_eps0.0313normalized",
            "eval/robust_accuracy/worst-case_linf_eps0.0313normalized",
        ]
        assert [s for s, _ in got["eval/clean_accuracy"]] == [1]


def test_without_the_package_it_is_one_line(tree, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["train", "--dataset", tree, "--epochs", "1", "--tensorboard", "tb"])
    assert res.exit_code == 2
    assert res.output.strip() == (
        "error: --tensorboard needs the tensorboard package, which is not installed: "
        "pip install tensorboard (or the project's tensorboard extra)"
    )
    assert not Path("tb").exists() and not Path("runs").exists()
    Path("exp.toml").write_text(
        TINY_EXPERIMENT.format(tree=tree).replace("[train]\n", '[train]\ntensorboard = "tb"\n')
        + '[[cells]]\nname = "a"\n'
    )
    with pytest.raises(
        RobustError,
        match=r"exp.toml, line \d+, key train.tensorboard: --tensorboard needs the "
        r"tensorboard package",
    ):
        load_experiment("exp.toml")

"""The one validation layer: checks name key paths, and only the CLI turns a key into
its flag."""

from __future__ import annotations

import math

import pytest

from robustbench_local.cli.flags import COMMANDS, flag_for, flags_of, for_command, train_flags
from robustbench_local.errors import RobustError
from robustbench_local.specs import TrainSpec
from robustbench_local.values import ValueProblem, boolean, choice, dotted, integer, integers, number, tristate


def test_key_paths_read_as_dotted_names():
    assert dotted(("train", "lr")) == "train.lr"
    assert dotted(("cells", 2, "adv_kwargs", "eps")) == "cells[2].adv_kwargs.eps"
    err = ValueProblem(("cells", 2, "adv_kwargs", "eps"), "must be > 0, got 0")
    assert isinstance(err, RobustError) and err.key == ("cells", 2, "adv_kwargs", "eps")
    assert str(err) == "cells[2].adv_kwargs.eps: must be > 0, got 0"


@pytest.mark.parametrize(
    "check, value, message",
    [
        (lambda k, v: integer(k, v, minimum=1), 0, "must be >= 1, got 0"),
        (lambda k, v: integer(k, v), 2.5, "must be an integer, got 2.5"),
        (lambda k, v: integer(k, v, exact=True), 3.0, "must be an integer, got 3.0"),
        (lambda k, v: number(k, v, low=0.0, low_open=True), "-8/255", "must be > 0"),
        (lambda k, v: number(k, v), "8/x", "'8/x' is not a number"),
        (lambda k, v: number(k, v), math.inf, "must be finite"),
        (lambda k, v: number(k, v), True, "must be a number, got True"),
        (lambda k, v: choice(k, v, ("a", "b")), "c", "unknown value 'c'; valid: a, b"),
        (lambda k, v: boolean(k, v), "yes", "must be true or false"),
        (lambda k, v: tristate(k, v), "maybe", "must be true, false or 'auto'"),
        (lambda k, v: integers(k, v), "16,x", "must be a list of integers >= 1"),
    ],
)
def test_each_check_raises_one_error_at_its_key(check, value, message):
    with pytest.raises(ValueProblem) as err:
        check(("train", "x"), value)
    assert err.value.key == ("train", "x") and str(err.value).startswith("train.x: ")
    assert message in err.value.msg and "--" not in str(err.value)


def test_checks_convert_what_they_accept():
    assert integer(("k",), "3") == 3 and integer(("k",), 3.0) == 3 and integer(("k",), None, optional=True) is None
    assert number(("eps",), "8/255") == pytest.approx(8 / 255)
    assert boolean(("b",), "off", words=True) is False and tristate(("t",), None) == "auto"
    assert choice(("s",), "FLIP", ("none", "flip"), fold_case=True) == "flip"
    assert integers(("maps",), "16 32,64") == [16, 32, 64]


def test_spec_errors_name_keys_and_the_cli_names_flags():
    import robustbench_local.methods  # noqa: F401  registers the methods' checks that TrainSpec runs

    with pytest.raises(ValueProblem) as err:
        TrainSpec(lr=-1)
    assert str(err.value) == "train.lr: must be > 0, got -1"
    assert for_command("train", err.value) == "--lr: must be > 0, got -1"
    assert for_command("run", err.value) == str(err.value)  # an experiment file names its keys
    with pytest.raises(ValueProblem) as err:
        TrainSpec(epochs=2, warmup_epochs=3)
    assert for_command("train", err.value) == "--warmup: 3 epochs must be shorter than --epochs (2)"
    with pytest.raises(ValueProblem) as err:
        TrainSpec(adv="pgd", adv_kwargs={"val_n": 0})
    assert err.value.key == ("train", "adv_kwargs", "val_n")
    assert for_command("train", err.value) == "--val-robust-n: must be >= 1, got 0"
    assert flag_for(("model", "kwargs", "width"), train_flags()) == "--model-option width"
    plain = RobustError("train.lr is not a ValueProblem")  # other errors keep their text
    assert for_command("train", plain) == str(plain)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_flag_in_the_table_is_an_option_of_its_command(command):
    import click

    from robustbench_local.cli import main

    cmd = main.get_command(click.Context(main), command)
    options = {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}
    missing = sorted({flag for flag in flags_of(command).values() if flag not in options})
    assert not missing, f"robust {command} has no {missing}"


def test_library_errors_name_keys_and_the_cli_names_flags(tmp_path, monkeypatch):
    """Checks made outside the specs (the device, the image size, a dataset's path) raise
    at their key, never naming a flag; the CLI's line names the flag, before any data is read."""
    import torch
    from click.testing import CliRunner

    from robustbench_local.cli import main
    from robustbench_local.data import load_dataset
    from robustbench_local.runtime import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    no_gpu = "cuda was asked for but no CUDA GPU is visible; use auto or cpu"
    with pytest.raises(ValueProblem) as err:
        resolve_device("cuda", ("train", "device"))
    assert str(err.value) == f"train.device: {no_gpu}"
    assert for_command("train", err.value) == f"--device: {no_gpu}"
    with pytest.raises(ValueProblem) as err:
        load_dataset("cifar10", image_size=0)
    assert str(err.value) == "data.image_size: must be a positive number of pixels, got 0"
    assert for_command("eval", err.value) == "--image-size: must be a positive number of pixels, got 0"
    with pytest.raises(ValueProblem) as err:
        load_dataset("cifar10:/somewhere")
    assert str(err.value) == "data.dataset: 'cifar10' takes no ':PATH'; say where it is with data.data_root"
    assert for_command("train", err.value) == "--dataset: 'cifar10' takes no ':PATH'; say where it is with --data-root"

    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["train", "--device", "cuda", "--out", str(run), "--results", str(tmp_path / "res")])
    assert res.exit_code == 2 and f"error: --device: {no_gpu}" in res.output and "train.device" not in res.output
    assert not run.exists()
    res = CliRunner().invoke(main, ["data", "--image-size", "0"])
    assert res.exit_code == 2 and "error: --image-size: must be a positive number of pixels, got 0" in res.output

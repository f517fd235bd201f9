"""The one validation layer: checks name key paths, and only the CLI turns a key into
its flag."""

from __future__ import annotations

import math

import pytest

from robustbench_local.cli.flags import COMMANDS, TRAIN_FLAGS, flag_for, for_command
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
    assert flag_for(("model", "kwargs", "width"), TRAIN_FLAGS) == "--model-option width"
    plain = RobustError("train.lr is not a ValueProblem")  # other errors keep their text
    assert for_command("train", plain) == str(plain)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_flag_in_the_table_is_an_option_of_its_command(command):
    import click

    from robustbench_local.cli import main

    cmd = main.get_command(click.Context(main), command)
    options = {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}
    missing = sorted({flag for flag in COMMANDS[command].values() if flag not in options})
    assert not missing, f"robust {command} has no {missing}"

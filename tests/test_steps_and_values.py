"""Steps follow the radius, values are checked at the boundary, and the eps-sweep
check compares like with like: through `robust eval`, `robust train`, `robust run`
and the Python API, on a small CNN and real CIFAR-10 images."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import cifar10, image_tree, trained_cnn

from robustbench_local.attacks import AttackSpec
from robustbench_local.checkpoint import save_checkpoint
from robustbench_local.cli import main
from robustbench_local.errors import RobustError
from robustbench_local.eval_checks import sweep_checks
from robustbench_local.evaluation import evaluate
from robustbench_local.experiment import load_experiment
from robustbench_local.threat import ThreatModel

REPO = Path(__file__).resolve().parents[1]
PX8 = 8 / 255


@pytest.fixture(scope="module")
def target():
    return trained_cnn(epochs=3, n_train=2000)


@pytest.fixture(scope="module")
def ckpt(target, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "best.pth"
    save_checkpoint(path, target[0], target[1])
    return path


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> str:
    """imagefolder:PATH with 20 train and 10 test real CIFAR-10 images per class."""
    from robustbench_local.data import load_dataset

    root = tmp_path_factory.mktemp("tree")
    image_tree(root, cifar10(), 20, 10)
    load_dataset(f"imagefolder:{root}")  # decoded once, before any CLI run reads it
    return f"imagefolder:{root}"


def cli(args, cwd: Path):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(main, [str(a) for a in args])
    finally:
        os.chdir(old)


def records(results: Path, kind: str = "eval") -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((results / "records").glob(f"{kind}-*.json"))]


def failed(rec: dict, name: str) -> list[dict]:
    return [c for c in rec.get("checks", []) if c["name"] == name and not c["ok"]]


# ----------------------------------------------------------------------------- steps follow the radius
def test_eval_derives_the_step_from_eps_and_k_at_every_radius(ckpt, tmp_path):
    r = cli(
        [
            "eval",
            "--attack",
            "fgsm",
            "--attack",
            "pgd",
            "--k",
            5,
            "--eps",
            "8/255,4/255",
            "--eps-space",
            "pixel",
            "--n",
            60,
            "--no-checks",
            "--results",
            tmp_path / "res",
            ckpt,
        ],
        tmp_path,
    )
    assert r.exit_code == 0, r.output
    recs = records(tmp_path / "res")
    pgd = {a["eps"]: a for a in (rec["attack"] for rec in recs) if a["name"] == "pgd"}
    assert len(pgd) == 2
    for eps, a in pgd.items():
        assert a["step"] == pytest.approx(2.5 * eps / 5) and a["step_pixel"] == pytest.approx(2.5 * eps / 5)
        assert a["step_rule"] == "2.5*eps/k" and a["space"] == "pixel"
    fgsm = [rec["attack"] for rec in recs if rec["attack"]["name"] == "fgsm"]
    assert fgsm and all(a["step"] == pytest.approx(a["eps"]) and a["step_rule"] == "eps" for a in fgsm)
    assert not any(failed(rec, "steps_reach_eps") for rec in recs)


def test_eval_explicit_short_step_warns_once_and_is_recorded(ckpt, tmp_path):
    r = cli(
        [
            "eval",
            "--attack",
            "pgd",
            "--k",
            3,
            "--eta",
            "0.002",
            "--n",
            60,
            "--no-checks",
            "--results",
            tmp_path / "res",
            ckpt,
        ],
        tmp_path,
    )
    assert r.exit_code == 0, r.output
    (rec,) = records(tmp_path / "res")
    assert rec["attack"]["step"] == 0.002 and rec["attack"]["step_rule"] == "given"
    (finding,) = failed(rec, "steps_reach_eps")
    assert "0.006" in finding["detail"] and "0.0313" in finding["detail"]
    assert r.output.count("3 steps of 0.002") == 1, r.output
    # the seeds' setting is one flag away and reaches eps at k = 20: no warning then
    r = cli(
        [
            "eval",
            "--attack",
            "pgd",
            "--k",
            20,
            "--eta",
            "0.002",
            "--n",
            60,
            "--no-checks",
            "--results",
            tmp_path / "res2",
            ckpt,
        ],
        tmp_path,
    )
    (rec,) = records(tmp_path / "res2")
    assert rec["attack"]["step"] == 0.002 and not failed(rec, "steps_reach_eps")


def test_train_pgd_derives_the_step_and_records_the_rule(tree, tmp_path):
    r = cli(
        [
            "train",
            "--dataset",
            tree,
            "--adv",
            "pgd",
            "--k",
            2,
            "--epochs",
            1,
            "--val-robust-n",
            20,
            "--device",
            "cpu",
            "--out",
            "run",
            "--results",
            "res",
        ],
        tmp_path,
    )
    assert r.exit_code == 0, r.output
    (rec,) = records(tmp_path / "res", "train")
    threat = rec["checkpoint"]["threat"]
    assert threat["step"] == pytest.approx(2.5 * 0.0313 / 2) and threat["step_rule"] == "2.5*eps/k"
    assert threat["validation"]["step"] == pytest.approx(2.5 * 0.0313 / 10)
    assert threat["validation"]["step_rule"] == "2.5*eps/k" and threat["warnings"] == []


def test_train_explicit_short_step_warns_and_is_recorded(tree, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        r = cli(
            [
                "train",
                "--dataset",
                tree,
                "--adv",
                "pgd",
                "--k",
                2,
                "--eta",
                "0.002",
                "--epochs",
                1,
                "--val-robust-n",
                20,
                "--device",
                "cpu",
                "--out",
                "run",
                "--results",
                "res",
            ],
            tmp_path,
        )
    assert r.exit_code == 0, r.output
    (rec,) = records(tmp_path / "res", "train")
    threat = rec["checkpoint"]["threat"]
    assert threat["step"] == 0.002 and threat["step_rule"] == "given"
    (warning,) = threat["warnings"]
    assert "2 steps of 0.002" in warning and "0.0313" in warning
    assert sum("2 steps of 0.002" in m for m in caplog.messages) == 1


@pytest.mark.parametrize(
    "adv, rule, factor",
    [("pgd", "2.5*eps/k", 0.25), ("trades", "2.5*eps/k", 0.25), ("fgsm-rs", "1.25*eps", 1.25), ("free", "eps", 1.0)],
)
def test_training_step_rules(adv, rule, factor):
    from robustbench_local.methods import build_method
    from robustbench_local.specs import TrainSpec

    method = build_method(TrainSpec(adv=adv, adv_kwargs={"eps": PX8, "eps_space": "pixel"}))
    assert method.eta == pytest.approx(factor * PX8) and method.threat()["step_rule"] == rule


def test_python_api_derives_per_attack_and_reads_old_records():
    t = ThreatModel("linf", PX8, space="pixel")  # no step given
    pgd = AttackSpec("pgd", t, k=20)
    assert pgd.threat.step == pytest.approx(2.5 * PX8 / 20) and pgd.threat.step_rule == "2.5*eps/k"
    assert AttackSpec("fgsm", t, fgsm_random_start=True).threat.step == pytest.approx(1.25 * PX8)
    wide = pgd.with_eps(2 * PX8)  # a sweep re-derives a derived step ...
    assert wide.threat.step == pytest.approx(2.5 * 2 * PX8 / 20) and wide.threat.step_rule == "2.5*eps/k"
    given = AttackSpec("pgd", ThreatModel("linf", 0.0313, 0.002), k=20).with_eps(0.0626)
    assert given.threat.step == pytest.approx(0.004) and given.threat.step_rule == "given"  # ... and keeps a ratio
    # records made before step rules existed read back as given steps, and compare equal
    old = {"name": "pgd", "threat": {"norm": "linf", "eps": 0.0313, "step": 0.002, "space": "normalized"}, "k": 20}
    spec = AttackSpec.from_dict(old)
    assert spec.threat.step_rule == "given" and spec.to_dict()["threat"] == old["threat"]


# ----------------------------------------------------------------------------- values at the boundary
@pytest.mark.parametrize(
    "args, message",
    [
        (["eval", "--eps", "inf", "CKPT"], "finite"),
        (["eval", "--eps", "nan", "CKPT"], "finite"),
        (["eval", "--eps", "8/255,inf", "--eps-space", "pixel", "CKPT"], "finite"),
        (["eval", "--eta", "-1", "CKPT"], "step size (eta) must be > 0"),
        (["eval", "--eta", "inf", "CKPT"], "finite"),
        (["visualize", "--eps", "inf", "CKPT"], "finite"),
        (["visualize", "--amplify", "nan", "CKPT"], "finite"),
        (["analyze", "--attack", "pgd", "--eta", "nan", "CKPT"], "finite"),
        (["train", "--lr", "inf", "--epochs", "1"], "--lr: must be finite"),
        (["train", "--adv", "pgd", "--eps", "nan", "--epochs", "1"], "finite"),
        (["train", "--adv", "pgd", "--val-robust-eta", "inf", "--epochs", "1"], "finite"),
    ],
)
def test_non_finite_and_out_of_range_values_fail_in_one_line(ckpt, tmp_path, args, message):
    args = [str(ckpt) if a == "CKPT" else a for a in args]
    extra = ["--results", "res"] + (["--out", "run"] if args[0] in ("train", "visualize") else [])
    r = cli(args[:1] + extra + args[1:], tmp_path)
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.output
    assert "Traceback" not in r.output and "Infinity" not in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(eps=math.inf),
        dict(eps=math.nan),
        dict(step=math.inf),
        dict(step=math.nan),
        dict(eps=True),
        dict(step="fast"),
    ],
)
def test_threat_model_refuses_non_finite_values(kwargs):
    with pytest.raises(RobustError) as err:
        ThreatModel(**kwargs)
    assert "--" not in str(err.value)  # the same words for the API, TOML and the CLI


@pytest.mark.parametrize(
    "where, body, key",
    [
        ("attack", '[[cells]]\nname = "a"\n[[attacks]]\nname = "pgd"\neps = inf\n', "key eps of [[attacks]] #1"),
        ("eval", '[[cells]]\nname = "a"\n[eval]\neta = nan\n[[attacks]]\nname = "pgd"\n', "key eval.eta"),
        ("sweep", '[[cells]]\nname = "a"\n[[attacks]]\nname = "pgd"\nsweep = [0.01, inf]\n', "key sweep"),
        ("cell", '[[cells]]\nname = "a"\nadv = "pgd"\nadv_kwargs = { eps = inf }\n', "key adv_kwargs"),
        ("train", '[train]\nlr = inf\n[[cells]]\nname = "a"\n', "key train.lr"),
    ],
)
def test_toml_non_finite_values_name_the_file_and_key(tmp_path, where, body, key):
    path = tmp_path / f"{where}.toml"
    path.write_text(body)
    r = cli(["run", path, "--dry-run"], tmp_path)
    assert r.exit_code == 2, r.output
    line = r.output.strip()
    assert "\n" not in line and str(path) in line and key in line and "finite" in line, line


def test_seed_studies_keep_the_seeds_step_explicitly():
    for name in ("seed_suite_cifar10.toml", "seed_suite_cifar100.toml"):
        exp = load_experiment(REPO / "experiments" / name)
        for unit in exp.units:
            t = unit.spec.threat
            assert t.step_rule == "given", (name, unit.label)
            expected = 0.0016 if unit.spec.name == "pgd" and unit.spec.k == 50 else 0.002 * t.eps / 0.0313
            assert t.step == pytest.approx(expected), (name, unit.label)
        for cell in exp.cells:
            if cell.spec.adv in ("pgd", "trades"):
                assert cell.spec.adv_kwargs["eta"] == 0.002, (name, cell.name)
    quick = load_experiment(REPO / "experiments" / "quick.toml")
    assert all(u.spec.threat.step_rule == "given" for u in quick.units if u.spec.name == "pgd")


# ----------------------------------------------------------------------------- like with like
def test_mixed_norms_and_spaces_raise_no_false_alarm(target):
    """PGD at L-inf 0.0313 normalized, L-inf 8/255 pixel and L2 in pixels in one call:
    radii of different norms or spaces are not comparable."""
    specs = [
        AttackSpec("pgd", ThreatModel("linf", 0.0313, space="normalized"), k=5),
        AttackSpec("pgd", ThreatModel("linf", PX8, space="pixel"), k=5),
        AttackSpec("pgd", ThreatModel("l2", 0.1, space="pixel"), k=5),
    ]
    recs = evaluate(target, specs, cifar10(), n=100, device="cpu")
    robust = {(r["attack"]["norm"], r["attack"]["space"]): r["metrics"]["robust_acc"] for r in recs}
    assert robust[("l2", "pixel")] > robust[("linf", "pixel")] + 0.01  # would look like a rise, by number alone
    assert not any(failed(r, "accuracy_rises_with_eps") for r in recs)


def test_a_real_rise_within_one_norm_and_space_is_still_flagged(target):
    specs = [AttackSpec("pgd", ThreatModel("linf", e, space="pixel"), k=5) for e in (PX8 / 4, PX8)]
    specs.append(AttackSpec("pgd", ThreatModel("linf", 0.0313, space="normalized"), k=5))
    recs = evaluate(target, specs, cifar10(), n=100, device="cpu", run_checks=False)
    assert len(recs) == 3
    small, large, other = recs
    # what an attack that fails at the larger radius would give: more robust points there
    large["metrics"]["robust_acc"] = small["metrics"]["robust_acc"] + 0.05
    sweep_checks(recs, 100)
    assert failed(small, "accuracy_rises_with_eps") and failed(large, "accuracy_rises_with_eps")
    assert not [c for c in other["checks"] if c["name"] == "accuracy_rises_with_eps"]  # alone in its space

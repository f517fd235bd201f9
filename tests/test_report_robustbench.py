"""`robust report` on records of models we did not train, and `--format robustbench`:
RobustBench-style model_info files whose numbers are the records' own."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from support import trained_cnn

from robustbench_local.cli import main

FOREIGN = ["--arch", "cnn", "--dataset", "cifar10", "--normalization", "seed"]
ZOO = "Wong2020Fast"


def _eval(weights: Path, results: Path, *args: str) -> None:
    r = CliRunner().invoke(main, ["eval", *FOREIGN, "--weights", str(weights), "--results", str(results), *args])
    assert r.exit_code == 0, r.output


def _records(results: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((results / "records").glob("*.json"))}


def _by_label(records: dict[str, dict]) -> dict[str, dict]:
    """(label, norm, model) -> record, for the records with one pixel radius."""
    return {
        (r["attack"]["label"], r["attack"]["norm"], r["checkpoint"]["name"]): r
        for r in records.values()
        if not isinstance(r["attack"]["eps_pixel"], list)
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A results folder with records of a plain state_dict (PGD-3 at the default, normalized
    eps; AutoAttack and FGSM at 8/255 pixel on the same 16 points), an L2 record and a
    RobustBench zoo model's record made by hand from the AutoAttack one."""
    d = tmp_path_factory.mktemp("rb")
    model, _ = trained_cnn()
    torch.save(model.net.state_dict(), d / "sd.pth")
    res = d / "results"
    _eval(d / "sd.pth", res, "--attack", "pgd", "--k", "3", "--n", "32")
    _eval(
        d / "sd.pth",
        res,
        "--attack",
        "autoattack",
        "--attack",
        "fgsm",
        "--eps",
        "8/255",
        "--eps-space",
        "pixel",
        "--n",
        "16",
    )
    recs = _records(res)
    pgd = next(r for r in recs.values() if r["attack"]["name"] == "pgd")
    aa = next(r for r in recs.values() if r["attack"]["name"] == "autoattack")
    l2 = copy.deepcopy(pgd)
    l2["attack"].update(norm="l2", space="pixel", eps=0.5, eps_pixel=0.5, eps_normalized=1.0)
    l2["attack"]["threat"].update(norm="l2", space="pixel", eps=0.5)
    (res / "records" / "eval-hand-l2.json").write_text(json.dumps(l2))
    ellipsoid = copy.deepcopy(pgd)  # a normalized-space L-inf ball under unequal stds: no pixel-space ball
    ellipsoid["attack"].update(eps_normalized=0.05, eps_pixel=[0.01, 0.012, 0.011])
    (res / "records" / "eval-hand-ellipsoid.json").write_text(json.dumps(ellipsoid))
    zoo = copy.deepcopy(aa)
    zoo["checkpoint"].update(
        name=f"robustbench/{ZOO}",
        arch=f"robustbench:{ZOO}",
        path=None,
        sha256="0" * 64,
        normalization="none",
        normalization_source="RobustBench zoo models normalize inside",
        source={
            "route": "robustbench",
            "zoo_name": ZOO,
            "zoo_dataset": "cifar10",
            "zoo_threat_model": "Linf",
            "file": None,
        },
    )
    (res / "records" / "eval-hand-zoo.json").write_text(json.dumps(zoo))
    r = CliRunner().invoke(main, ["report", "--results", str(res), "--format", "robustbench"])
    assert r.exit_code == 0, r.output
    return res, _by_label(_records(res)), r.output


def _info(res: Path, threat: str, stem: str) -> dict:
    path = res / "robustbench" / "cifar10" / threat / f"{stem}.json"
    assert path.is_file(), sorted(p.relative_to(res).as_posix() for p in (res / "robustbench").rglob("*.json"))
    return json.loads(path.read_text())


def _pct(v: float) -> float:
    return round(100 * v, 2)


def test_model_info_numbers_are_the_records(store):
    res, recs, output = store
    name = next(k[2] for k in recs if k[2].endswith("sd.pth"))
    aa, fgsm, worst = (recs[(label, "linf", name)] for label in ("AutoAttack", "FGSM", "worst-case"))
    info = _info(res, "Linf", name.replace("/", "_")[: -len(".pth")])
    assert "RobustBench model_info" in output
    # RobustBench's fields: numbers as numbers, eps as RobustBench writes it, unknowns null
    assert info["name"] == name and info["dataset"] == "cifar10" and info["architecture"] == "cnn"
    assert info["eps"] == "8/255" and info["eps_pixel"] == aa["attack"]["eps_pixel"]
    assert info["clean_acc"] == _pct(aa["metrics"]["clean_acc"]) and isinstance(info["clean_acc"], float)
    assert info["autoattack_acc"] == _pct(aa["metrics"]["robust_acc"]) and isinstance(info["autoattack_acc"], float)
    assert info["autoattack_ci95"] == [_pct(v) for v in aa["metrics"]["robust_ci95"]]
    assert info["attack_version"] == "standard" and info["n"] == 16
    assert all(info[k] is None for k in ("link", "authors", "venue", "reported", "additional_data"))
    # the worst case over the attacks at 8/255, per example, is the suite's worst-case record
    assert info["robust_attacks"] == ["FGSM", "AutoAttack"]
    assert info["robust_acc"] == _pct(worst["metrics"]["robust_acc"])
    assert info["robust_acc"] <= min(_pct(r["metrics"]["robust_acc"]) for r in (aa, fgsm))
    assert info["source"]["route"] == "weights" and info["source"]["zoo_name"] is None
    assert info["normalization"] == "seed"
    # PGD-3 at the default eps (normalized space, 4/255 in pixels here) is kept beside it, converted
    pgd = recs[("PGD-3", "linf", name)]
    (other,) = info["other_eps"]
    assert other["eps_pixel"] == pgd["attack"]["eps_pixel"] and other["n"] == 32
    assert other["clean_acc"] == _pct(pgd["metrics"]["clean_acc"])
    assert other["autoattack_acc"] is None and other["robust_attacks"] == ["PGD-3"]


def test_l2_and_no_autoattack(store):
    res, recs, _ = store
    name = next(k[2] for k in recs if k[2].endswith("sd.pth"))
    info = _info(res, "L2", name.replace("/", "_")[: -len(".pth")])
    l2 = recs[("PGD-3", "l2", name)]
    assert info["eps"] == 0.5 and info["threat_model"] == "L2"
    assert info["autoattack_acc"] is None and info["robust_acc"] == _pct(l2["metrics"]["robust_acc"])
    assert "PGD-3" in info["footnote"]


def test_balls_that_are_no_pixel_ball_are_named_not_converted(store):
    res, _, output = store
    assert "has no RobustBench model_info: its pixel radius differs per channel" in " ".join(output.split())
    info = _info(res, "Linf", next(p.stem for p in (res / "robustbench" / "cifar10" / "Linf").glob("*sd.json")))
    assert all(o["eps_pixel"] != 0.01 for o in info["other_eps"]) and len(info["other_eps"]) == 1


def test_zoo_model_carries_its_zoo_name(store):
    res, recs, _ = store
    info = _info(res, "Linf", ZOO)
    zoo = recs[("AutoAttack", "linf", f"robustbench/{ZOO}")]
    assert ZOO in info["name"] and info["source"]["zoo_name"] == ZOO and info["source"]["route"] == "robustbench"
    assert info["autoattack_acc"] == _pct(zoo["metrics"]["robust_acc"]) and info["eps"] == "8/255"


def test_default_report_shows_where_foreign_models_came_from(store):
    res, recs, _ = store
    md = (res / "REPORT.md").read_text()
    html = (res / "report.html").read_text()
    name = next(k[2] for k in recs if k[2].endswith("sd.pth"))
    for text in (name, "weights: sd.pth", f"RobustBench zoo: {ZOO}", f"robustbench:{ZOO}"):
        assert text in md and text in html
    assert "weights: sd.pth" in (res / "report.csv").read_text()


def test_files_of_models_no_longer_reported_are_removed(store, tmp_path):
    res, _, _ = store
    copy_ = tmp_path / "results"
    (copy_ / "records").mkdir(parents=True)
    for p in (res / "records").glob("*.json"):
        if p.name != "eval-hand-zoo.json":
            (copy_ / "records" / p.name).write_bytes(p.read_bytes())
    stale = copy_ / "robustbench" / "cifar10" / "Linf" / f"{ZOO}.json"
    stale.parent.mkdir(parents=True)
    stale.write_bytes((res / "robustbench" / "cifar10" / "Linf" / f"{ZOO}.json").read_bytes())
    theirs = stale.parent / "Carmon2019Unlabeled.json"  # not ours: left alone
    theirs.write_text('{"name": "Unlabeled Data Improves Adversarial Robustness", "eps": "8/255"}')
    r = CliRunner().invoke(main, ["report", "--results", str(copy_), "--format", "robustbench"])
    assert r.exit_code == 0, r.output
    assert not stale.exists() and theirs.exists()
    assert len(list((copy_ / "robustbench").rglob("*.json"))) == 3  # sd at Linf and L2, and theirs

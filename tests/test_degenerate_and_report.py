"""Degenerate models are flagged in training, evaluation and the report; records are
strict JSON and the report names, and leaves out, every record it cannot use;
training minutes are credited by checkpoint hash; the method column names the
adversarial method."""

from __future__ import annotations

import copy
import csv
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from support import trained_cnn

from robustbench_local import checks as C
from robustbench_local.checkpoint import save_checkpoint
from robustbench_local.cli import main
from robustbench_local.errors import RobustError
from robustbench_local.fileio import write_json
from robustbench_local.report import build_report
from robustbench_local.results import ResultsStore
from robustbench_local.text import method_label

FIXTURES = Path(__file__).parent / "fixtures" / "records"
ADVERSARIAL = "cifar10-cnn-standard-pgd-s0/best.pth"
CAT = 3  # the class the collapsed model always predicts


def _collapsed(model: torch.nn.Module) -> torch.nn.Module:
    """The trained CNN with its last bias forced huge for one class: it predicts
    that class for every input (and its softmax is saturated)."""
    m = copy.deepcopy(model)
    last = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.bias.zero_()
        last.bias[CAT] = 1e4
    return m


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    model, meta = trained_cnn()
    root = tmp_path_factory.mktemp("ckpts")
    good, bad = root / "good" / "best.pth", root / "collapsed" / "best.pth"
    save_checkpoint(good, model, meta)
    save_checkpoint(bad, _collapsed(model), meta)
    return good, bad


def _eval(ckpt: Path, results: Path, attack: str = "pgd"):
    res = CliRunner().invoke(
        main, ["eval", "--attack", attack, "--n", "200", "--device", "cpu", "--results", str(results), str(ckpt)]
    )
    assert res.exit_code == 0, res.output
    recs = [json.loads(p.read_text()) for p in sorted((results / "records").glob("eval-*.json"))]
    return res.output, recs


# ----------------------------------------------------------------------------- the check itself


def test_not_degenerate_names_collapse_and_chance_with_n():
    y = torch.arange(200) % 10
    one = C.not_degenerate(torch.full((200,), CAT), y, 10)
    assert not one.ok and "one class" in one.detail and "n=200" in one.detail and "100.0%" in one.detail
    g = torch.Generator().manual_seed(0)
    guess = C.not_degenerate(torch.randint(0, 10, (200,), generator=g), y, 10)
    assert not guess.ok and "chance" in guess.detail and "n=200" in guess.detail
    good = y.clone()
    good[::3] = (good[::3] + 1) % 10  # about 67% right, every class predicted
    assert C.not_degenerate(good, y, 10).ok
    # a set dominated by one class, predicted well, is not a collapse
    skew = torch.tensor([0] * 180 + list(range(1, 10)) * 2)
    assert C.not_degenerate(torch.zeros(198, dtype=torch.long), skew, 10).ok


# ----------------------------------------------------------------------------- evaluation


def test_constant_class_model_is_flagged_in_record_cli_and_report(ckpts, tmp_path):
    _, bad = ckpts
    results = tmp_path / "results"
    out, recs = _eval(bad, results)
    assert recs and all(r["metrics"]["clean_acc"] == r["metrics"]["robust_acc"] for r in recs)
    for r in recs:
        assert "one class" in r["degenerate"]["reason"]
        assert any(c["name"] == "not_degenerate" and not c["ok"] for c in r["checks"])
    assert "degenerate" in out and "one class" in out

    res = CliRunner().invoke(main, ["report", "--results", str(results), "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "rep" / "REPORT.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| collapsed/best.pth"))
    assert "degenerate" in row
    assert "one class" in md and "meaningless" in md
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "degenerate" in html and "meaningless" in html
    table = pd.read_csv(tmp_path / "rep" / "report.csv")
    assert table["degenerate"].str.contains("one class").all()


def test_trained_model_is_not_flagged(ckpts, tmp_path):
    good, _ = ckpts
    out, recs = _eval(good, tmp_path / "results", attack="fgsm")
    assert recs and all(r["degenerate"] is None for r in recs)
    assert all(c["ok"] for r in recs for c in r["checks"] if c["name"] == "not_degenerate")
    assert "degenerate" not in out


# ----------------------------------------------------------------------------- training


def test_fit_warns_when_validation_collapses_onto_one_class(ckpts, tmp_path):
    _, bad = ckpts
    # start from the collapsed weights with a learning rate too small to move its bias
    res = CliRunner().invoke(
        main,
        [
            "train",
            "--init",
            str(bad),
            "--subset",
            "200",
            "--epochs",
            "1",
            "--lr",
            "1e-6",
            "--val-fraction",
            "0.02",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "run"),
            "--results",
            str(tmp_path / "results"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "warning" in res.output and "one class" in res.output
    with open(tmp_path / "run" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert "one class" in rows[0]["warning"]
    rec = json.loads(next((tmp_path / "results" / "records").glob("train-*.json")).read_text())
    assert "one class" in rec["history"][0]["warning"]
    res = CliRunner().invoke(main, ["report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    assert "| run (degenerate) |" in (tmp_path / "rep" / "REPORT.md").read_text()


# ----------------------------------------------------------------------------- strict records


def test_records_are_strict_json(tmp_path):
    store = ResultsStore(tmp_path / "results")
    with pytest.raises(RobustError, match=r"attack\.eps"):
        store.add({"kind": "eval", "attack": {"eps": float("inf")}})
    with pytest.raises(RobustError, match=r"history\[1\]\.val_loss"):
        write_json(tmp_path / "x.json", {"history": [{"val_loss": 1.0}, {"val_loss": float("nan")}]})
    assert not list(tmp_path.rglob("*.json"))


# ----------------------------------------------------------------------------- bad records


def _store(tmp_path) -> Path:
    root = tmp_path / "results"
    shutil.copytree(FIXTURES, root / "records")
    return root


def _bad_records(root: Path) -> list[Path]:
    recs = root / "records"
    empty = recs / "eval-20250111T000000-0000000001.json"
    empty.write_text('{"kind": "eval"}')
    inf = recs / "eval-20250111T000000-0000000002.json"  # as an old `--eps inf` run wrote it
    rec = json.loads((recs / "eval-20250110T100000-41396a00c5.json").read_text())
    rec["attack"]["eps"] = rec["attack"]["eps_normalized"] = rec["attack"]["eps_pixel"] = float("inf")
    rec["created"] = "2025-01-11T00:00:00+00:00"
    inf.write_text(json.dumps(rec))
    assert "Infinity" in inf.read_text()
    cut = recs / "eval-20250111T000000-0000000003.json"
    cut.write_text(json.dumps(rec)[:200])
    shapes = recs / "eval-20250111T000000-0000000004.json"
    shapes.write_text(json.dumps({"kind": "eval", "checkpoint": "x", "attack": [], "metrics": {"n": "many"}}))
    train = recs / "train-20250111T000000-0000000005.json"
    train.write_text(json.dumps({"kind": "train", "history": "none", "checkpoint": 3}))
    return [empty, inf, cut, shapes, train]


@pytest.mark.parametrize("flag", [[], ["--skip-bad"]])
def test_report_names_and_leaves_out_records_it_cannot_use(tmp_path, flag):
    root = _store(tmp_path)
    bad = _bad_records(root)
    res = CliRunner().invoke(main, ["report", "--results", str(root), *flag])
    assert res.exit_code == 0, res.output
    for p in bad:
        assert p.name in res.output
    md = (root / "REPORT.md").read_text()
    assert "## Records left out" in md
    assert all(p.name in md for p in bad)
    assert "attack.eps" in md  # says which field is wrong
    assert len(pd.read_csv(root / "report.csv")) == 11  # the fixture's good records, all of them


@pytest.mark.parametrize("which", [0, 1])  # {"kind": "eval"}; eps Infinity
def test_no_skip_bad_stops_with_one_line_naming_the_record(tmp_path, which):
    root = _store(tmp_path)
    bad = _bad_records(root)
    for i, p in enumerate(bad):
        if i != which:
            p.unlink()
    res = CliRunner().invoke(main, ["report", "--results", str(root), "--no-skip-bad"])
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and res.output.count("\n") == 1
    assert bad[which].name in res.output and "--skip-bad" in res.output
    assert not (root / "REPORT.md").exists()


# ----------------------------------------------------------------------------- which run trained it


def _train_record(root: Path) -> Path:
    return next((root / "records").glob("train-*.json"))


def test_training_minutes_are_credited_by_hash_not_path_tail(tmp_path):
    root = _store(tmp_path)
    # the same last two path parts, another file: e.g. runs/quick/... beside the seed study's run
    for p in (root / "records").glob("eval-*.json"):
        rec = json.loads(p.read_text())
        if rec["checkpoint"]["name"] == ADVERSARIAL:
            rec["checkpoint"]["path"] = "runs/quick/cifar10-cnn-standard-pgd-s0/best.pth"
            rec["checkpoint"]["sha256"] = "e" * 64
            p.write_text(json.dumps(rec))

    def minutes() -> tuple[float | None, list]:
        report = build_report(root)
        row = next(r for r in report.comparison.tables[0].rows if r.checkpoint == ADVERSARIAL)
        csv_minutes = report.table.loc[report.table["checkpoint"] == ADVERSARIAL, "train_minutes"]
        return row.train_minutes, list(csv_minutes)

    m, in_csv = minutes()
    assert m is None and all(pd.isna(v) for v in in_csv)  # the seed run's 4.95 minutes are not this file's

    quick = json.loads(_train_record(root).read_text())
    quick["checkpoint"].update(
        path="runs/quick/cifar10-cnn-standard-pgd-s0/best.pth",
        sha256="e" * 64,
        last_path="runs/quick/cifar10-cnn-standard-pgd-s0/last.pth",
        last_sha256="f" * 64,
    )
    quick["minutes"] = 0.7
    (root / "records" / "train-20250110T080500-0f1e2d3c4c.json").write_text(json.dumps(quick))
    m, in_csv = minutes()
    assert m == 0.7 and in_csv == [0.7] * len(in_csv)


def test_without_a_hash_the_full_path_decides(tmp_path):
    root = _store(tmp_path)
    train = _train_record(root)
    rec = json.loads(train.read_text())
    eval_path = next(
        json.loads(p.read_text())["checkpoint"]["path"]
        for p in (root / "records").glob("eval-*.json")
        if json.loads(p.read_text())["checkpoint"]["name"] == ADVERSARIAL
    )
    for key in ("sha256", "last_sha256"):
        rec["checkpoint"].pop(key, None)
    rec["checkpoint"]["path"] = "/somewhere/else/" + eval_path  # same tail, another file
    train.write_text(json.dumps(rec))
    row = next(r for r in build_report(root).comparison.tables[0].rows if r.checkpoint == ADVERSARIAL)
    assert row.train_minutes is None

    rec["checkpoint"]["path"] = str(Path(eval_path).resolve())  # the same file, written absolute
    train.write_text(json.dumps(rec))
    row = next(r for r in build_report(root).comparison.tables[0].rows if r.checkpoint == ADVERSARIAL)
    assert row.train_minutes == 4.95


# ----------------------------------------------------------------------------- method column


def test_method_column_names_the_adversarial_method(tmp_path):
    root = _store(tmp_path)
    res = CliRunner().invoke(main, ["report", "--results", str(root)])
    assert res.exit_code == 0, res.output
    md = (root / "REPORT.md").read_text()
    adv_rows = [line for line in md.splitlines() if line.startswith("| " + ADVERSARIAL)]
    assert adv_rows and all("| PGD-AT |" in line for line in adv_rows)
    std_rows = [line for line in md.splitlines() if line.startswith("| cifar10-cnn-standard-s0/best.pth")]
    assert std_rows and all("| standard |" in line for line in std_rows)
    train_rows = [line for line in md.splitlines() if line.startswith("| cifar10-cnn-standard-pgd-s0 |")]
    assert train_rows and all("| PGD-AT |" in line for line in train_rows)
    table = pd.read_csv(root / "report.csv")
    assert set(table.loc[table["checkpoint"] == ADVERSARIAL, "method"]) == {"PGD-AT"}
    assert "<td>PGD-AT</td>" in (root / "report.html").read_text()


@pytest.mark.parametrize(
    "method, adv, label",
    [
        ("standard", "none", "standard"),
        ("standard", "pgd", "PGD-AT"),
        ("standard", "trades", "TRADES"),
        ("standard", "fgsm-rs", "FGSM-RS"),
        ("standard", "free", "Free-AT"),
        ("mixup", "pgd", "MixUp + PGD-AT"),
        ("cutmix", "trades", "CutMix + TRADES"),
        ("ova", "none", "OVA"),
        (None, None, "-"),
    ],
)
def test_method_label(method, adv, label):
    assert method_label(method, adv) == label

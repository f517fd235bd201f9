"""evaluate(), the sanity checks and `robust eval` on a trained CNN and real CIFAR-10."""

import json
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner
from support import cifar10, correct_points, trained_cnn

from robustbench_local import checks as C
from robustbench_local.attacks import AttackSpec
from robustbench_local.checkpoint import save_checkpoint
from robustbench_local.cli import main
from robustbench_local.evaluation import evaluate
from robustbench_local.threat import ThreatModel

EPS = 0.0313


@pytest.fixture(scope="module")
def target():
    return trained_cnn()


@pytest.fixture(scope="module")
def ckpt(target, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "best.pth"
    save_checkpoint(path, target[0], target[1])
    return path


def suite(*names, eps=EPS, k=10):
    t = ThreatModel("linf", eps, eps / 4)
    return [AttackSpec(n, threat=t, k=k) if n == "pgd" else AttackSpec(n, threat=t) for n in names]


def by_label(records):
    return {r["attack"]["label"]: r for r in records}


def test_records_hold_consistent_numbers(target):
    model, meta = target
    recs = evaluate(target, suite("fgsm", "pgd"), cifar10(), n=300, seed=0, device="cpu")
    r = by_label(recs)
    assert set(r) == {"FGSM", "PGD-10", "worst-case"}
    sub = cifar10().test.subset(300, seed=0)
    with torch.no_grad():
        clean = (model(sub.x.float() / 255).argmax(1) == sub.y).float().mean().item()
    for rec in recs:
        m = rec["metrics"]
        assert m["n"] == 300 and m["clean_acc"] == pytest.approx(clean)
        assert m["robust_acc"] <= m["clean_acc"]
        lo, hi = m["robust_ci95"]
        assert lo <= m["robust_acc"] <= hi
        assert sum(c["n"] for c in m["per_class"].values()) == 300
        assert rec["attack"]["eps_normalized"] == pytest.approx(EPS)
        assert rec["attack"]["eps_pixel"] == pytest.approx(EPS / 2)
        assert rec["data"]["indices_sha256"] and rec["data"]["selection"].startswith("first 300")
        assert json.loads(json.dumps(rec)) == rec  # plain JSON, numbers as numbers
    assert r["worst-case"]["metrics"]["robust_acc"] <= min(
        r["FGSM"]["metrics"]["robust_acc"], r["PGD-10"]["metrics"]["robust_acc"]
    )
    assert r["PGD-10"]["metrics"]["attacked"] == round(clean * 300)  # only clean-correct points are attacked


def test_each_attack_equals_its_standalone_number_and_cascade_equals_and(target):
    data = cifar10()
    alone = {
        a: by_label(evaluate(target, suite(a), data, n=300, run_checks=False, device="cpu")) for a in ("fgsm", "pgd")
    }
    together = by_label(evaluate(target, suite("fgsm", "pgd"), data, n=300, run_checks=False, device="cpu"))
    cascade = by_label(
        evaluate(target, suite("fgsm", "pgd"), data, n=300, run_checks=False, cascade=True, device="cpu")
    )
    assert together["FGSM"]["metrics"]["robust_acc"] == alone["fgsm"]["FGSM"]["metrics"]["robust_acc"]
    assert together["PGD-10"]["metrics"]["robust_acc"] == alone["pgd"]["PGD-10"]["metrics"]["robust_acc"]
    assert cascade["worst-case"]["metrics"]["robust_acc"] == together["worst-case"]["metrics"]["robust_acc"]
    assert cascade["PGD-10"]["attack"]["cumulative"] is True
    assert cascade["PGD-10"]["metrics"]["attacked"] < together["PGD-10"]["metrics"]["attacked"]


def test_sweep_is_monotone_and_flagged_when_not():
    recs = evaluate(trained_cnn(), suite("pgd"), cifar10(), n=200, device="cpu")
    assert all(c["ok"] for c in recs[0]["checks"]), recs[0]["checks"]
    f = C.accuracy_rises_with_eps([(0.01, 0.30), (0.02, 0.20), (0.03, 0.25)], 200, "PGD")
    assert not f.ok
    assert C.accuracy_rises_with_eps([(0.01, 0.30), (0.02, 0.20), (0.03, 0.10)], 200, "PGD").ok


class Rounded(nn.Module):
    """A planted defence: quantising the input zeroes every input gradient."""

    def __init__(self, m):
        super().__init__()
        self.m, self.std = m, m.std

    def forward(self, x):
        return self.m(torch.round(x * 255) / 255)


class Softmaxed(Rounded):
    def forward(self, x):
        return self.m(x).softmax(dim=1)


def _flags(model):
    x, y = correct_points(trained_cnn()[0], 300)
    with torch.no_grad():
        logits = model(x)
    torch.manual_seed(0)
    return {f.name: f.ok for f in C.model_checks(model, x[:100], y[:100], logits)}


def test_checks_flag_planted_defences_and_pass_an_honest_model():
    honest = trained_cnn()[0]
    assert all(_flags(honest).values()), _flags(honest)
    assert _flags(Rounded(honest))["input_gradients"] is False
    assert _flags(Softmaxed(honest))["outputs_are_logits"] is False


def test_fgsm_stronger_than_pgd_is_flagged():
    assert not C.fgsm_stronger_than_pgd(0.10, 0.30, 500).ok
    assert C.fgsm_stronger_than_pgd(0.30, 0.10, 500).ok


def test_cli_eval_writes_records_and_adv_file(ckpt, tmp_path):
    res = CliRunner().invoke(
        main,
        [
            "eval",
            "--attack",
            "fgsm",
            "--attack",
            "pgd",
            "--k",
            "5",
            "--n",
            "100",
            "--eps",
            "0.0313,0.0626",
            "--results",
            str(tmp_path / "res"),
            "--save-adv",
            str(tmp_path / "adv.pt"),
            str(ckpt),
        ],
    )
    assert res.exit_code == 0, res.output
    recs = [json.loads(p.read_text()) for p in (tmp_path / "res" / "records").glob("*.json")]
    assert len(recs) == 6  # (fgsm, pgd, worst-case) x 2 eps
    assert {r["checkpoint"]["sha256"] for r in recs} == {
        __import__("robustbench_local.checkpoint", fromlist=["x"]).file_sha256(ckpt)
    }
    adv = torch.load(tmp_path / "adv.pt", weights_only=True)
    x_adv, x = adv["PGD-5@0.0313/x_adv"], adv["x_clean"]
    assert x_adv.shape == x.shape == (100, 3, 32, 32) and adv["index"].shape == (100,)
    assert (x_adv - x).abs().amax() <= 0.0313 * 0.5 + 1e-6
    assert "PGD-5" in res.output and "0.01565" in res.output  # both eps spaces are printed


@pytest.mark.parametrize(
    "args,msg",
    [
        (["missing.pth"], "does not exist"),
        (["--attack", "cwx", "CKPT"], "unknown attack 'cwx'"),
        (["--eps", "0", "CKPT"], "eps must be > 0"),
        (["--eps", "-8/255", "CKPT"], "eps must be > 0"),
        (["TRUNC"], "truncated"),
    ],
)
def test_cli_eval_errors_are_one_line(ckpt, tmp_path, args, msg):
    trunc = tmp_path / "trunc.pth"
    trunc.write_bytes(ckpt.read_bytes()[:1000])
    args = [str(ckpt) if a == "CKPT" else str(trunc) if a == "TRUNC" else a for a in args]
    res = CliRunner().invoke(main, ["eval", "--results", str(tmp_path / "r"), *args])
    assert res.exit_code == 2
    assert msg in res.output.lower() or msg in res.output, res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "r").exists()


def test_cli_eval_as_subprocess(ckpt, tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "robustbench_local",
            "eval",
            "--attack",
            "pgd",
            "--k",
            "3",
            "--n",
            "50",
            "--no-checks",
            "--results",
            str(tmp_path),
            str(ckpt),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert len(list((tmp_path / "records").glob("eval-*.json"))) == 1

"""AutoAttack through `robust eval` with every default (channels-last on), for L-inf, L2
and L1 and every --aa-version, on a small CNN trained on real CIFAR-10; the L1 threat
model, which only AutoAttack supports; and AutoAttack's progress hook."""

import importlib
import json

import pytest
import torch
from click.testing import CliRunner
from support import correct_points, trained_cnn

from robustbench_local.attacks import ATTACKS, AttackSpec, autoattack, fgsm, pgd
from robustbench_local.cli import main
from robustbench_local.errors import RobustError
from robustbench_local.threat import Ball, ThreatModel

pytest.importorskip("pyautoattack")
aa_module = importlib.import_module("robustbench_local.attacks.autoattack")  # the module, not its function

EPS_DEFAULT_PX = 0.0313 * 0.5  # --eps 0.0313 normalized, std 0.5


@pytest.fixture(scope="module")
def model_meta():
    return trained_cnn(epochs=2, n_train=2000)


def eval_aa(ckpt, out, *args):
    """`robust eval --attack autoattack ARGS CKPT`; returns (record, saved adversarials)."""
    res = CliRunner().invoke(
        main,
        [
            "eval",
            "--attack",
            "autoattack",
            "--results",
            str(out / "res"),
            "--save-adv",
            str(out / "adv.pt"),
            *args,
            str(ckpt),
        ],
    )
    assert res.exit_code == 0, res.output
    (path,) = (out / "res" / "records").glob("eval-*.json")
    rec = json.loads(path.read_text())
    adv = torch.load(out / "adv.pt", weights_only=True)
    return rec, adv


def pixel_norms(d: torch.Tensor, norm: str) -> torch.Tensor:
    d = d.flatten(1)
    return {"linf": d.abs().amax(1), "l2": d.norm(p=2, dim=1), "l1": d.abs().sum(1)}[norm]


def adversarials(adv):
    (key,) = [k[: -len("/x_adv")] for k in adv if k.endswith("/x_adv")]
    return adv[f"{key}/x_adv"], adv[f"{key}/fooled"]


def assert_valid(adv, norm, eps_px):
    x_adv, _ = adversarials(adv)
    x = adv["x_clean"]
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (pixel_norms(x_adv - x, norm) <= eps_px * (1 + 1e-4) + 1e-6).all()


@pytest.fixture
def quick(monkeypatch):
    """AutoAttack with about ten times fewer iterations and queries, only to keep these
    tests short (a full run costs about a minute of CPU per model): every sub-attack of
    each version still runs, with its restarts, targets and EOT draws. The unpatched
    defaults run in test_readme_line_runs_with_every_default."""
    real = aa_module._import()

    def make(*args, **kwargs):
        adv = real(*args, **kwargs)
        for apgd in (adv.apgd, adv.apgd_targeted):
            apgd.n_iter = apgd.n_iter_orig = 10
            apgd.n_iter_2, apgd.n_iter_min, apgd.size_decr = 2, 1, 1  # APGD's checkpoints, from n_iter
        adv.fab.n_iter = 10
        adv.square.n_queries = 100
        return adv

    monkeypatch.setattr(aa_module, "_import", lambda: make)


@pytest.mark.slow
def test_readme_line_runs_with_every_default(ckpt, tmp_path):
    """`robust eval --attack autoattack CKPT`: every default, so the model and points are
    laid out NHWC, on a few points."""
    rec, adv = eval_aa(ckpt, tmp_path, "--n", "20")
    assert rec["environment"]["channels_last"] is True
    assert rec["attack"]["label"] == "AutoAttack" and rec["attack"]["norm"] == "linf"
    m = rec["metrics"]
    assert m["n"] == 20 and m["robust_acc"] <= m["clean_acc"]
    assert_valid(adv, "linf", EPS_DEFAULT_PX)


def test_nhwc_gives_exactly_the_flags_and_images_of_nchw(ckpt, tmp_path, quick):
    rec, adv = eval_aa(ckpt, tmp_path / "nhwc", "--n", "30")
    rec0, adv0 = eval_aa(ckpt, tmp_path / "nchw", "--n", "30", "--no-channels-last")
    assert rec["environment"]["channels_last"] is True and rec0["environment"]["channels_last"] is False
    assert_valid(adv, "linf", EPS_DEFAULT_PX)
    # AutoAttack computes in NCHW whatever the layout: the same points, flags and images
    assert torch.equal(adv["index"], adv0["index"])
    (x_adv, fooled), (x_adv0, fooled0) = adversarials(adv), adversarials(adv0)
    assert torch.equal(fooled, fooled0) and torch.equal(x_adv, x_adv0)
    m, m0 = rec["metrics"], rec0["metrics"]
    assert m["robust_correct"] == m0["robust_correct"] and m["clean_correct"] == m0["clean_correct"]
    assert 0 < m["robust_correct"] < m["clean_correct"]  # some points fooled, some left for every sub-attack


@pytest.mark.parametrize("norm,eps", [("l2", "0.5"), ("l1", "12")])
def test_autoattack_l2_and_l1_in_pixel_space(ckpt, tmp_path, quick, norm, eps):
    rec, adv = eval_aa(ckpt, tmp_path, "--n", "20", "--norm", norm, "--eps", eps, "--eps-space", "pixel")
    assert rec["attack"]["norm"] == norm and rec["attack"]["eps_pixel"] == pytest.approx(float(eps))
    assert rec["environment"]["channels_last"] is True
    assert_valid(adv, norm, float(eps))
    assert rec["metrics"]["robust_acc"] < rec["metrics"]["clean_acc"]  # a plain CNN breaks at these radii


def test_l1_eps_in_normalized_space_scales_with_the_std(ckpt, tmp_path, quick):
    # an L1 radius of 12 normalized is 12 * 0.5 = 6 in pixels (std 0.5 in every channel)
    rec, adv = eval_aa(ckpt, tmp_path, "--n", "10", "--norm", "l1", "--eps", "12")
    assert rec["attack"]["eps_pixel"] == pytest.approx(6.0)
    assert_valid(adv, "l1", 6.0)


@pytest.mark.parametrize("version", ["plus", "rand"])
@pytest.mark.parametrize("norm,eps", [("linf", "0.0313"), ("l2", "1"), ("l1", "12")])
def test_every_version_runs_for_every_norm(ckpt, tmp_path, quick, version, norm, eps):
    rec, adv = eval_aa(ckpt, tmp_path, "--n", "6", "--norm", norm, "--eps", eps, "--aa-version", version)
    assert rec["attack"]["label"] == f"AutoAttack-{version}" and rec["attack"]["version"] == version
    assert rec["environment"]["channels_last"] is True
    assert_valid(adv, norm, float(eps) * 0.5)


# ----------------------------------------------------------------------------- L1 elsewhere
@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_fgsm_and_pgd_refuse_l1_in_one_line(ckpt, tmp_path, attack):
    res = CliRunner().invoke(
        main, ["eval", "--attack", attack, "--norm", "l1", "--n", "10", "--results", str(tmp_path / "r"), str(ckpt)]
    )
    assert res.exit_code == 2, res.output
    assert res.output.strip().count("\n") == 0, res.output
    assert f"{attack} supports linf and l2, not l1; l1 is measured by" in res.output and "autoattack" in res.output
    assert not (tmp_path / "r").exists()


def test_l1_is_refused_before_any_work_in_python_too():
    t = ThreatModel("l1", 12.0, 1.0, "pixel")
    for name in ("fgsm", "pgd"):
        with pytest.raises(RobustError, match=f"{name} supports linf and l2, not l1"):
            AttackSpec(name, threat=t)
    assert AttackSpec("autoattack", threat=t).threat.norm == "l1"
    x, y = torch.rand(2, 3, 8, 8), torch.tensor([0, 1])
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 3))
    with pytest.raises(RobustError, match="pgd supports linf and l2, not l1"):
        pgd(net, x, y, t)
    with pytest.raises(RobustError, match="fgsm supports linf and l2, not l1"):
        fgsm(net, x, y, t)
    ball = Ball(t, torch.ones(3), torch.device("cpu"))
    d = torch.zeros(2, 3, 8, 8)
    d[0, 0, 0, :4] = 0.5
    assert ball.norms(x + d, x).tolist() == pytest.approx([2.0, 0.0])


def test_adversarial_training_refuses_l1(tmp_path):
    res = CliRunner().invoke(
        main,
        [
            "train",
            "--adv",
            "pgd",
            "--norm",
            "l1",
            "--subset",
            "200",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "run"),
            "--results",
            str(tmp_path / "res"),
        ],
    )
    assert res.exit_code == 2, res.output
    assert res.output.strip().count("\n") == 0 and "l1" in res.output and "linf and l2" in res.output, res.output
    assert not (tmp_path / "run" / "best.pth").exists()


# ----------------------------------------------------------------------------- progress
def test_progress_reports_each_sub_attack_and_changes_nothing(model_meta, quick):
    """The adapter with the model and points NHWC and a progress hook gives exactly what
    it gives NCHW without one."""
    import copy

    model = model_meta[0]
    x, y = correct_points(model)
    x, y = x[:12], y[:12]
    t = ThreatModel("linf", 0.0313, 0.0313 / 4)
    plain = autoattack(model, x, y, t)
    fast = copy.deepcopy(model).to(memory_format=torch.channels_last)
    calls = []
    res = ATTACKS.get("autoattack")(
        fast, x.contiguous(memory_format=torch.channels_last), y, t, seed=0, on_progress=lambda *a: calls.append(a)
    )
    assert torch.equal(res.fooled, plain.fooled) and torch.equal(res.x_adv, plain.x_adv)
    assert res.x_adv.is_contiguous(memory_format=torch.channels_last)  # handed back in the caller's layout
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in fast.parameters() if p.dim() == 4)
    # one start and one end call per sub-attack, in AutoAttack's order, robust counts never rising
    names = [c[0] for c in calls]
    assert names == [n for n in ("apgd-ce", "apgd-t", "fab-t", "square") for _ in range(2)]
    assert all(c[2] == 12 for c in calls)
    robust = [c[1] for c in calls]
    assert robust[0] == 12 and robust == sorted(robust, reverse=True)
    assert robust[-1] == 12 - int(res.fooled.sum())
    assert len(calls) == 8

"""Transfer attacks (--transfer-from), replayed --save-adv files (--replay) and EOT
(--eot), through the CLI on a CNN trained on real CIFAR-10 points."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from support import eval_points, trained_cnn

from robustbench_local.attacks import AttackSpec
from robustbench_local.attacks.grad import loss_grad
from robustbench_local.attacks.losses import ce_loss
from robustbench_local.checkpoint import file_sha256, save_checkpoint
from robustbench_local.cli import main

SUITE = ["--attack", "fgsm", "--attack", "pgd", "--k", "5", "--n", "120"]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("transfer")
    a, b = d / "a.pth", d / "b.pth"
    save_checkpoint(a, *trained_cnn())
    save_checkpoint(b, *trained_cnn(epochs=3, seed=1))
    return a, b


def _eval(tmp_path, *args) -> list[dict]:
    out = tmp_path / "res"
    res = CliRunner().invoke(main, ["eval", *args, "--results", str(out)])
    assert res.exit_code == 0, res.output
    return [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]


def _by_label(recs: list[dict]) -> dict:
    return {r["attack"]["label"]: r for r in recs}


def test_transfer_from_the_model_itself_is_the_white_box_number(ckpts, tmp_path):
    a, _ = ckpts
    white = _by_label(_eval(tmp_path / "w", *SUITE, str(a)))
    moved = _by_label(_eval(tmp_path / "t", *SUITE, "--transfer-from", str(a), str(a)))
    for label in ("FGSM", "PGD-5"):
        t = moved[f"{label} (transfer)"]
        assert t["transfer_from"]["sha256"] == file_sha256(a)
        assert t["metrics"]["robust_flags"] == white[label]["metrics"]["robust_flags"], label


def test_transfer_is_weaker_than_attacking_the_target(ckpts, tmp_path):
    a, b = ckpts
    white = _by_label(_eval(tmp_path / "w", *SUITE, str(b)))
    moved = _by_label(_eval(tmp_path / "t", *SUITE, "--transfer-from", str(a), str(b)))
    t = moved["PGD-5 (transfer)"]
    assert t["checkpoint"]["sha256"] == file_sha256(b) and t["transfer_from"]["sha256"] == file_sha256(a)
    assert t["metrics"]["clean_acc"] == white["PGD-5"]["metrics"]["clean_acc"]
    # a transferred example is crafted blind to b: it breaks fewer of b's points than PGD on b
    assert t["metrics"]["robust_acc"] > white["PGD-5"]["metrics"]["robust_acc"]
    assert t["metrics"]["robust_acc"] <= t["metrics"]["clean_acc"]


def test_replaying_saved_examples_on_their_own_model_gives_its_numbers(ckpts, tmp_path):
    a, b = ckpts
    adv = tmp_path / "adv.pt"
    white = _by_label(_eval(tmp_path / "w", *SUITE, "--save-adv", str(adv), str(a)))
    same = _by_label(_eval(tmp_path / "r", "--replay", str(adv), str(a)))
    for label in ("FGSM", "PGD-5"):
        r = same[f"{label} (replayed)"]
        assert r["metrics"]["robust_flags"] == white[label]["metrics"]["robust_flags"], label
        assert r["replayed_from"]["sha256"] == file_sha256(adv)
        assert r["data"]["indices_sha256"] == white[label]["data"]["indices_sha256"]
        assert (
            r["attack"]["k" if label == "PGD-5" else "random_start"]
            == white[label]["attack"]["k" if label == "PGD-5" else "random_start"]
        )
    other = _by_label(_eval(tmp_path / "o", "--replay", str(adv), str(b)))
    assert other["PGD-5 (replayed)"]["checkpoint"]["sha256"] == file_sha256(b)
    assert other["PGD-5 (replayed)"]["replayed_from"]["crafted_on"] == str(a)


@pytest.mark.parametrize(
    "args, msg",
    [
        (["--replay", "missing.pt"], "--replay file missing.pt does not exist"),
        (["--transfer-from", "missing.pth"], "checkpoint missing.pth does not exist"),
        (["--attack", "square", "--eot", "3"], "--eot applies to gradient attacks; none of square"),
        (["--attack", "autoattack", "--k", "5"], "--k applies to"),
        (["--attack-option", "pgd.kk=3"], "pgd has no option 'kk'"),
        (["--attack-option", "pgd.k"], "must read NAME.KEY=VALUE"),
        (["--attack-option", "fgsm.random_start=true"], "fgsm is not among the attacks given"),
    ],
)
def test_bad_suite_options_are_one_line(ckpts, tmp_path, args, msg):
    res = CliRunner().invoke(main, ["eval", *args, "--n", "10", "--results", str(tmp_path / "r"), str(ckpts[0])])
    assert res.exit_code == 2, res.output
    assert msg in res.output and res.output.strip().count("\n") == 0, res.output
    assert not (tmp_path / "r" / "records").exists() or not any((tmp_path / "r" / "records").iterdir())


def test_attack_option_and_shared_flags_reach_each_attack(ckpts, tmp_path):
    recs = _by_label(
        _eval(
            tmp_path,
            "--attack",
            "pgd",
            "--attack",
            "fgsm",
            "--k",
            "3",
            "--fgsm-rs",
            "--attack-option",
            "pgd.restarts=2",
            "--n",
            "30",
            str(ckpts[0]),
        )
    )
    assert recs["PGD-3x2"]["attack"]["restarts"] == 2 and recs["PGD-3x2"]["attack"]["k"] == 3
    assert recs["R+FGSM"]["attack"]["random_start"] is True
    assert "k" not in recs["R+FGSM"]["attack"]


# --------------------------------------------------------------------------- EOT
class NoisyNet(torch.nn.Module):
    """A randomized defence: Gaussian noise on the input at every forward pass."""

    def __init__(self, net, sigma=0.05):
        super().__init__()
        self.net, self.sigma = net, sigma

    def forward(self, x):
        return self.net(x + self.sigma * torch.randn_like(x))


def test_eot_averages_the_gradient_over_passes():
    model, _ = trained_cnn()
    noisy = NoisyNet(model).eval()
    x, y = eval_points(8)
    torch.manual_seed(3)
    _, _, g4 = loss_grad(noisy, x, ce_loss, (y,), eot=4)
    torch.manual_seed(3)
    singles = [loss_grad(noisy, x, ce_loss, (y,), eot=1)[2] for _ in range(4)]
    assert torch.allclose(g4, torch.stack(singles).mean(0), atol=1e-6)
    assert not torch.allclose(singles[0], singles[1])  # the defence is random: one pass is one sample


def test_eot_is_recorded_and_labelled(ckpts, tmp_path):
    recs = _by_label(_eval(tmp_path, "--attack", "pgd", "--k", "3", "--eot", "2", "--n", "30", str(ckpts[0])))
    rec = recs["PGD-3-EOT2"]
    assert rec["attack"]["eot"] == 2
    assert AttackSpec.from_dict(rec["attack"]).eot == 2
    # a deterministic model: every pass gives the same gradient, so EOT changes nothing
    plain = _by_label(_eval(tmp_path / "p", "--attack", "pgd", "--k", "3", "--n", "30", str(ckpts[0])))
    assert rec["metrics"]["robust_flags"] == plain["PGD-3"]["metrics"]["robust_flags"]


# --------------------------------------------------------------------------- masking
class Quantized(torch.nn.Module):
    """A gradient-masking 'defence': inputs rounded to 8 levels, so every input gradient
    is zero and gradient attacks see nothing, while the decision is barely changed."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(torch.round(x * 7) / 7)


def test_square_below_pgd_flags_masked_gradients():
    from support import cifar10

    from robustbench_local import evaluate
    from robustbench_local.threat import ThreatModel

    model, meta = trained_cnn()
    t = ThreatModel("linf", 8 / 255, space="pixel")
    specs = [AttackSpec("pgd", t, k=5), AttackSpec("square", t, n_queries=300)]
    recs = {r["attack"]["label"]: r for r in evaluate((Quantized(model), meta), specs, cifar10(), n=100, device="cpu")}
    pgd_rec, sq = recs["PGD-5"], recs["Square-300"]
    assert sq["metrics"]["robust_acc"] < pgd_rec["metrics"]["robust_acc"]
    finding = next(c for c in pgd_rec["checks"] if c["name"] == "square_below_whitebox")
    assert not finding["ok"] and "masks its gradients" in finding["detail"]
    # on the plain model the white-box attack is the stronger one: no flag
    plain = {r["attack"]["label"]: r for r in evaluate((model, meta), specs, cifar10(), n=100, device="cpu")}
    assert next(c for c in plain["PGD-5"]["checks"] if c["name"] == "square_below_whitebox")["ok"]

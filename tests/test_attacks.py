"""The attack suite on a really trained model and real CIFAR-10 test images."""

import pytest
import torch
import torch.nn as nn
from support import correct_points, eval_points

from robustbench_local.attacks import AttackSpec, fgsm, pgd
from robustbench_local.attacks import names as attack_names
from robustbench_local.threat import Ball, ThreatModel

EPS = 0.0313  # normalized, the seeds' convention (0.01565 in pixels)


def acc_under(model, x, y, attack=None):
    if attack is None:
        with torch.no_grad():
            return (model(x).argmax(1) == y).float().mean().item()
    return 1 - attack.fooled.float().mean().item()


def _norms(x_adv, x, threat):
    ball = Ball(threat, torch.full((3,), 0.5), x.device)
    return ball.norms(x_adv, x)


@pytest.mark.parametrize("norm,eps,eta", [("linf", EPS, EPS / 4), ("l2", 0.5, 0.1)])
@pytest.mark.parametrize("space", ["normalized", "pixel"])
@pytest.mark.parametrize("name", ["fgsm", "rfgsm", "pgd"])
def test_outputs_inside_ball_and_pixel_range(model, norm, eps, eta, space, name):
    x, y = eval_points(128)
    x0 = x.clone()
    t = ThreatModel(norm, eps, eta, space)
    torch.manual_seed(0)
    if name == "pgd":
        r = pgd(model, x, y, t, k=10, restarts=2)
    else:
        r = fgsm(model, x, y, t, random_start=name == "rfgsm")
    assert torch.equal(x, x0), "the input tensor must not be modified"
    assert r.x_adv.min() >= 0 and r.x_adv.max() <= 1
    assert (_norms(r.x_adv, x, t) <= eps + 1e-6).all()
    assert r.fooled.any(), "an attack at this radius fools some points of a standard model"


def test_strength_ordering_clean_fgsm_pgd(model):
    x, y = eval_points(400)
    t = ThreatModel("linf", EPS, EPS / 4)
    torch.manual_seed(0)
    clean = acc_under(model, x, y)
    a_fgsm = acc_under(model, x, y, fgsm(model, x, y, t))
    a_pgd = acc_under(model, x, y, pgd(model, x, y, t, k=20))
    assert clean > 0.3
    assert a_fgsm <= clean - 0.1  # FGSM clearly lowers accuracy
    assert a_pgd <= a_fgsm  # and PGD (step eps/4) is never weaker than FGSM


def test_tiny_eps_gives_clean_accuracy(model):
    x, y = eval_points(400)
    clean = acc_under(model, x, y)
    t = ThreatModel("linf", 1e-7, 1e-8, "pixel")
    assert acc_under(model, x, y, pgd(model, x, y, t, k=5)) == pytest.approx(clean, abs=1 / 400)


def test_normalized_and_pixel_space_agree(model):
    x, y = correct_points(model)
    norm_t = ThreatModel("linf", EPS, 0.002 * 4, "normalized")
    pix_t = norm_t.in_space("pixel", [0.5] * 3)
    torch.manual_seed(1)
    a = pgd(model, x, y, norm_t, k=10)
    torch.manual_seed(1)
    b = pgd(model, x, y, pix_t, k=10)
    assert abs(a.fooled.float().mean() - b.fooled.float().mean()) <= 1 / len(y) + 1e-9
    assert torch.allclose(a.x_adv, b.x_adv, atol=1e-5)


def test_fgsm_identical_to_torchattacks(model):
    """On the points an evaluation attacks (clean-correct ones). A clean-wrong point
    is returned unperturbed by ours: its first iterate already fools the model."""
    torchattacks = pytest.importorskip("torchattacks")
    x, y = correct_points(model)
    eps_px = EPS * 0.5
    ours = fgsm(model, x, y, ThreatModel("linf", eps_px, eps_px, "pixel")).x_adv
    theirs = torchattacks.FGSM(model, eps=eps_px)(x, y)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_matches_torchattacks(model, random_start):
    """Same start -> same trajectory. Ours judges every iterate, torchattacks only
    the last, so ours is never higher and (here) within 1 point."""
    torchattacks = pytest.importorskip("torchattacks")
    x, y = correct_points(model)
    eps_px, alpha = EPS * 0.5, 0.002 * 0.5
    t = ThreatModel("linf", eps_px, alpha, "pixel")
    torch.manual_seed(3)
    ours = pgd(model, x, y, t, k=20, random_start=random_start)
    torch.manual_seed(3)
    ta = torchattacks.PGD(model, eps=eps_px, alpha=alpha, steps=20, random_start=random_start)(x, y)
    with torch.no_grad():
        ta_robust = int((model(ta).argmax(1) == y).sum())
    our_robust = int((~ours.fooled).sum())
    assert our_robust <= ta_robust
    assert ta_robust - our_robust <= 0.01 * len(y)
    # where neither broke the point, the trajectories end in the same place
    # (up to sign flips of gradients within rounding of zero: batch composition changes the
    # order of float sums)
    both_robust = ~ours.fooled & (model(ta).argmax(1) == y)
    diff = (ours.x_adv[both_robust] - ta[both_robust]).abs()
    assert (diff > 1e-5).float().mean() < 1e-2, f"{(diff > 1e-5).float().mean():.2e} of pixels differ"


def test_early_exit_equals_full_run(model):
    x, y = correct_points(model)
    t = ThreatModel("linf", EPS, EPS / 8)
    torch.manual_seed(5)
    fast = pgd(model, x, y, t, k=15, early_stop=True)
    torch.manual_seed(5)
    full = pgd(model, x, y, t, k=15, early_stop=False)
    assert torch.equal(fast.fooled, full.fooled)


def test_restarts_never_raise_robust_accuracy(model):
    x, y = correct_points(model)
    t = ThreatModel("linf", EPS / 3, EPS / 12)
    torch.manual_seed(7)
    one = pgd(model, x, y, t, k=5, restarts=1)
    torch.manual_seed(7)
    three = pgd(model, x, y, t, k=5, restarts=3)
    assert (one.fooled <= three.fooled).all()  # restart 1 is shared; later ones only add
    assert three.fooled.sum() >= one.fooled.sum()


@pytest.mark.parametrize(
    "loss,targeted", [("dlr", "none"), ("ce", "random"), ("ce", "least-likely"), ("dlr", "random")]
)
def test_losses_and_targeting_work(model, loss, targeted):
    x, y = correct_points(model)
    torch.manual_seed(0)
    r = pgd(model, x, y, ThreatModel("linf", EPS, EPS / 4), k=10, loss=loss, targeted=targeted)
    assert 0.2 < r.fooled.float().mean() <= 1.0


def test_mode_and_grad_flags_restored(model):
    x, y = eval_points(32)
    model.train()
    frozen = next(model.parameters())
    frozen.requires_grad_(False)
    try:
        pgd(model, x, y, ThreatModel(), k=2)
        fgsm(model, x, y, ThreatModel())
        assert model.training
        params = list(model.parameters())
        assert not params[0].requires_grad and all(p.requires_grad for p in params[1:])
    finally:
        frozen.requires_grad_(True)
        model.eval()


def test_submodule_modes_restored_one_by_one(model):
    """A wrapper left in train mode around an eval-mode model (as nn.Module wrappers
    start): attacks and checks must not push the wrapper's mode down onto the model."""
    from robustbench_local import checks as C

    x, y = eval_points(32)
    wrapper = nn.Sequential(model)  # built in train mode
    assert wrapper.training and not model.training
    pgd(wrapper, x, y, ThreatModel(), k=2)
    fgsm(wrapper, x, y, ThreatModel())
    C.model_checks(wrapper, x, y, model(x).detach())
    assert wrapper.training and not model.training
    assert not any(m.training for m in model.modules())


def test_attack_spec_validation():
    from robustbench_local.errors import RobustError

    with pytest.raises(RobustError, match="valid attacks: " + ", ".join(attack_names())):
        AttackSpec("cwx")
    with pytest.raises(RobustError):
        AttackSpec("pgd", k=0)
    with pytest.raises(RobustError):
        AttackSpec("pgd", restarts=2, random_start=False)
    assert AttackSpec("pgd", k=20, restarts=5).label == "PGD-20x5"


def test_autoattack_adapter_is_no_weaker_than_pgd(model):
    pytest.importorskip("pyautoattack")
    from robustbench_local.attacks import autoattack

    x, y = correct_points(model)
    # a radius at which APGD-CE breaks nearly every point, so FAB-T and Square (minutes per
    # surviving point on a CPU) see almost nothing: this tests the adapter, not AutoAttack's cost
    x, y = x[:24], y[:24]
    t = ThreatModel("linf", 1.5 * EPS, 1.5 * EPS / 4)
    torch.manual_seed(0)
    a_pgd = 1 - pgd(model, x, y, t, k=20).fooled.float().mean().item()
    r = autoattack(model, x, y, t)
    a_aa = 1 - r.fooled.float().mean().item()
    assert (_norms(r.x_adv, x, t) <= t.eps + 1e-6).all() and r.x_adv.min() >= 0 and r.x_adv.max() <= 1
    assert a_aa <= a_pgd + 1 / len(y)

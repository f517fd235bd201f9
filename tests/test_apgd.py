"""APGD (CE, DLR, targeted) in L-inf, L2 and L1, and the L1 geometry it needs, on the
seed CNN trained on real CIFAR-10 (tests/support.py) and real test points."""

from __future__ import annotations

import pytest
import torch
from support import eval_points, trained_cnn
from torch import nn

from robustbench_local.attacks.apgd import apgd
from robustbench_local.errors import RobustError
from robustbench_local.threat import Ball, ThreatModel, l1_box_project

STD = torch.tensor([0.5, 0.5, 0.5])  # the trained CNN's Normalize
# radii in attack space where the trained CNN keeps about a third of its points
EPS = {
    ("linf", "pixel"): 1 / 255,
    ("l2", "pixel"): 0.1,
    ("l1", "pixel"): 2.0,
    ("linf", "normalized"): 2 / 255,
    ("l2", "normalized"): 0.2,
    ("l1", "normalized"): 4.0,
}


@pytest.fixture(scope="module")
def cnn():
    return trained_cnn()[0]


def _run(model, x, y, threat, seed=0, **kw):
    torch.manual_seed(seed)
    return apgd(model, x, y, threat, **kw)


def _predict(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


@pytest.mark.parametrize("space", ["pixel", "normalized"])
@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_stays_in_ball_and_box_and_flags_are_true(cnn, norm, space):
    x, y = eval_points(64)
    x0 = x.clone()
    eps = EPS[norm, space]
    threat = ThreatModel(norm, eps, space=space)
    res = _run(cnn, x, y, threat, k=10)
    assert torch.equal(x, x0)
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    # x + eps - x in float32 is off by up to an ulp of the pixel: 1e-6 absolute covers it
    assert (Ball(threat, STD, x.device).norms(res.x_adv, x) <= eps * (1 + 1e-6) + 1e-6).all()
    # fooled is exactly "the returned point is misclassified"
    assert torch.equal(res.fooled, _predict(cnn, res.x_adv) != y)


def test_same_seed_same_result(cnn):
    x, y = eval_points(64)
    threat = ThreatModel("l2", 0.1, space="pixel")
    a = _run(cnn, x, y, threat, k=8, restarts=2)
    b = _run(cnn, x, y, threat, k=8, restarts=2)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.fooled, b.fooled)


@pytest.mark.parametrize("kw", [dict(loss="ce"), dict(loss="dlr"), dict(targeted="top", targets=2)])
def test_lowers_accuracy(cnn, kw):
    x, y = eval_points(200)
    clean = float((_predict(cnn, x) == y).float().mean())
    res = _run(cnn, x, y, ThreatModel("linf", 2 / 255, space="pixel"), k=20, **kw)
    robust = float((~res.fooled).float().mean())
    assert robust < clean - 0.15, (clean, robust)


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_channels_last_gives_the_same_flags(cnn, norm):
    x, y = eval_points(64)
    threat = ThreatModel(norm, EPS[norm, "pixel"], space="pixel")
    a = _run(cnn, x, y, threat, k=10)
    xc = x.contiguous(memory_format=torch.channels_last)
    b = _run(cnn, xc, y, threat, k=10)
    assert b.x_adv.is_contiguous(memory_format=torch.channels_last)
    # the same verdicts; the points may differ where a gradient's sign flips with the
    # order of a float sum (NHWC convolutions add in another order)
    assert torch.equal(a.fooled, b.fooled)


def test_eot_on_a_deterministic_model_changes_nothing(cnn):
    x, y = eval_points(64)
    threat = ThreatModel("linf", 1 / 255, space="pixel")
    a = _run(cnn, x, y, threat, k=5)
    b = _run(cnn, x, y, threat, k=5, eot=2)
    assert torch.equal(a.fooled, b.fooled) and torch.equal(a.x_adv, b.x_adv)


def test_fooled_points_leave_the_batch(cnn):
    """Early exit: the batch the model sees shrinks as points are fooled."""
    x, y = eval_points(128)
    sizes = []
    hook = cnn.register_forward_pre_hook(lambda m, inp: sizes.append(inp[0].shape[0]))
    try:
        res = _run(cnn, x, y, ThreatModel("linf", 2 / 255, space="pixel"), k=20)
    finally:
        hook.remove()
    assert sizes[0] == 128  # the clean pass
    attacked = sizes[1:]
    assert attacked == sorted(attacked, reverse=True)
    assert attacked[-1] == int((~res.fooled).sum())  # only the still-robust points run to the end
    assert attacked[-1] < attacked[0]


# --- agreement with pyautoattack -------------------------------------------------------
REF_NORM = {"linf": "Linf", "l2": "L2", "l1": "L1"}


@pytest.mark.parametrize(
    "norm,targeted", [("linf", "none"), ("l2", "none"), ("l1", "none"), ("linf", "top"), ("l1", "top")]
)
def test_robust_accuracy_matches_pyautoattack(cnn, norm, targeted):
    """On the same 200 CIFAR-10 test points, threat (pixel eps: pyautoattack measures eps
    on pixels), iterations and seed, ours is within 0.5 pp of pyautoattack's APGDAttack /
    APGDAttack_targeted, or lower. Both draw their random starts from the global RNG in
    the same order, so the runs coincide to float rounding (the batches shrink on our
    side only); 0.5 pp is one point of 200, room for one such rounding flip."""
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted

    x, y = eval_points(200)
    eps, k = EPS[norm, "pixel"], 10
    ours = _run(cnn, x, y, ThreatModel(norm, eps, space="pixel"), k=k, targeted=targeted, targets=2)
    if targeted == "top":
        ref = APGDAttack_targeted(cnn, n_iter=k, norm=REF_NORM[norm], eps=eps, seed=0, n_target_classes=2, device="cpu")
    else:
        ref = APGDAttack(cnn, n_iter=k, norm=REF_NORM[norm], eps=eps, seed=0, loss="ce", device="cpu")
    ref_acc = float((_predict(cnn, ref.perturb(x, y)) == y).float().mean())
    our_acc = float((~ours.fooled).float().mean())
    # a radius where the comparison means something: the attack fools many points, not all (the
    # trained model, and so its accuracy here, varies a little with the CPU its kernels run on)
    assert 0.15 < ref_acc < 0.6
    assert our_acc <= ref_acc + 0.005, (our_acc, ref_acc)


# --- options, labels, refusals ----------------------------------------------------------
def test_labels_and_registration():
    from robustbench_local.attacks.registry import info

    i = info("apgd")
    assert i.norms == ("linf", "l2", "l1") and i.kind == "white-box" and i.rule({}) == "2*eps"
    d = i.defaults()
    assert i.title(d) == "APGD-CE"
    assert i.title({**d, "loss": "dlr"}) == "APGD-DLR"
    assert i.title({**d, "targeted": "top"}) == "APGD-T"
    assert i.title({**d, "k": 50, "restarts": 2}) == "APGD-CE-50x2"
    assert i.title({**d, "k": 50}) == "APGD-CE-50"


def _tiny(classes: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, classes))


def test_dlr_refused_with_too_few_classes():
    x, y = torch.rand(4, 3, 8, 8), torch.zeros(4, dtype=torch.long)
    t = ThreatModel("linf", 0.03, space="pixel")
    for classes, kw in ((2, dict(loss="dlr")), (3, dict(targeted="top"))):
        with pytest.raises(RobustError, match="needs at least") as e:
            apgd(_tiny(classes), x, y, t, k=2, **kw)
        assert "\n" not in str(e.value)
    apgd(_tiny(3), x, y, t, k=2, loss="dlr")  # 3 classes suffice untargeted
    apgd(_tiny(4), x, y, t, k=2, targeted="top")  # targets capped at classes - 1


# --- L1 geometry --------------------------------------------------------------------------
def test_l1_projection_matches_pyautoattack_and_is_optimal():
    """The exact projection onto the L1 ball intersected with the pixel box, against
    pyautoattack's L1_projection (an independent implementation, a bisection), and
    against feasible points nearby (none is closer)."""
    from pyautoattack.autopgd_base import L1_projection

    torch.manual_seed(0)
    x = torch.rand(32, 3, 16, 16)
    x[:4] = x[:4].round()  # pixels at 0 and 1, where the box binds
    u = torch.randn_like(x) * torch.rand(32, 1, 1, 1) * 0.1
    for eps in (0.5, 5.0, 50.0):
        ours = l1_box_project(u, -x, 1 - x, eps)
        ref = u + L1_projection(x, u, eps)
        assert (ours - ref).abs().max() < 1e-5
        assert (ours.flatten(1).abs().sum(1) <= eps * (1 + 1e-6)).all()
        assert (x + ours).min() >= 0 and (x + ours).max() <= 1
        dist = (ours - u).flatten(1).norm(dim=1)
        for _ in range(3):
            other = l1_box_project(ours + 0.01 * torch.randn_like(u), -x, 1 - x, eps)
            assert (dist <= (other - u).flatten(1).norm(dim=1) + 1e-6).all()
    inside = torch.randn(2, 3, 4, 4) * 1e-3  # already feasible: unchanged
    assert torch.allclose(l1_box_project(inside, None, None, 1.0), inside)


@pytest.mark.parametrize("space", ["pixel", "normalized"])
def test_l1_ball_random_step_apply(space):
    torch.manual_seed(0)
    std = torch.tensor([0.2, 0.5, 1.0])
    eps = 3.0
    ball = Ball(ThreatModel("l1", eps, space=space), std, torch.device("cpu"))
    x = torch.rand(16, 3, 8, 8)
    r = ball.random(x.shape, x.device)
    n = r.flatten(1).abs().sum(1)
    assert (n <= eps * (1 + 1e-6)).all() and n.min() > 0
    g = torch.randn_like(x)
    step = ball.ascend(torch.zeros_like(x), g, 1.0, sparsity=0.1)
    assert step.flatten(1).abs().sum(1).sub(1).abs().max() < 1e-5  # L1 length = the step
    d = x[0].numel()
    assert ((step != 0).flatten(1).sum(1) == d - int(0.9 * d)).all()  # the top 10% by |gradient|
    x_adv, u = ball.apply(x, r * 10)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (ball.norms(x_adv, x) <= eps * (1 + 1e-6)).all()
    # the box is part of the projection: with half the pixels at 0, a push toward 0 spends
    # the whole radius on the other half (projecting, then clamping, would spend half of it)
    x0 = 0.5 * (torch.arange(2 * 3 * 8 * 8).view(2, 3, 8, 8) % 2)
    _, u0 = ball.apply(x0, -torch.ones_like(x0))
    assert torch.allclose(u0.flatten(1).abs().sum(1), torch.full((2,), eps), rtol=1e-5)
    assert (u0[x0 == 0] == 0).all()

"""Square Attack (attacks/square.py) on a really trained model and real CIFAR-10 test
images, checked against pyautoattack's SquareAttack; and the gradient-masking check it
feeds (checks.square_below_whitebox)."""

import json
import math

import pytest
import torch
from support import eval_points
from torch import nn

from robustbench_local.attacks.base import make_ball
from robustbench_local.attacks.registry import info
from robustbench_local.attacks.square import _meta, _p_schedule, square
from robustbench_local.checks import square_below_whitebox
from robustbench_local.errors import RobustError
from robustbench_local.threat import ThreatModel

# (norm, eps) per eps space: the seeds' normalized radii and the field's pixel ones
RADII = {"normalized": {"linf": 0.0313, "l2": 0.5}, "pixel": {"linf": 8 / 255, "l2": 0.5}}
REF_QUERIES = 100  # enough to break about a third of the points at 8/255, in a few seconds per run


def _predict(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


@pytest.mark.parametrize("space", ["normalized", "pixel"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_inside_ball_and_pixel_range_and_judged_per_example(model, norm, space):
    x, y = eval_points(64)
    x0 = x.clone()
    eps = RADII[space][norm]
    t = ThreatModel(norm, eps, None, space)
    torch.manual_seed(0)
    r = square(model, x, y, t, n_queries=20)
    assert torch.equal(x, x0), "the input tensor must not be modified"
    assert r.x_adv.min() >= 0 and r.x_adv.max() <= 1
    ball = make_ball(model, x, t)
    assert (ball.norms(r.x_adv, x) <= eps * (1 + 1e-6)).all()
    wrong = _predict(model, r.x_adv) != y
    assert torch.equal(r.fooled, wrong), "fooled must say whether the returned image is misclassified"
    assert r.fooled[_predict(model, x) != y].all(), "points misclassified clean count as fooled"
    u = ball.from_pixel(r.x_adv - x)
    if norm == "linf":  # every pixel sits on the ball's boundary unless [0,1] clips it
        at_edge = ((u.abs() - eps).abs() <= 1e-5 * eps) | (r.x_adv == 0) | (r.x_adv == 1)
        attacked = _predict(model, x) == y
        assert at_edge[attacked].all()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_channels_last_gives_the_flags_and_images_of_nchw(model, norm):
    x, y = eval_points(64)
    t = ThreatModel(norm, RADII["normalized"][norm], None, "normalized")
    torch.manual_seed(0)
    a = square(model, x, y, t, n_queries=20)
    torch.manual_seed(0)
    b = square(model, x.contiguous(memory_format=torch.channels_last), y, t, n_queries=20)
    assert b.x_adv.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(a.fooled, b.fooled)
    # L2 sums over windows in another order under channels_last: equal up to rounding
    assert torch.allclose(a.x_adv, b.x_adv, atol=1e-4)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_same_global_seed_same_result(model, norm):
    x, y = eval_points(64)
    t = ThreatModel(norm, RADII["pixel"][norm], None, "pixel")
    runs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        runs.append(square(model, x, y, t, n_queries=20))
    assert torch.equal(runs[0].x_adv, runs[1].x_adv) and torch.equal(runs[0].fooled, runs[1].fooled)
    assert not torch.equal(runs[0].x_adv, runs[2].x_adv), "another seed draws other squares"


class Counting(nn.Module):
    """Counts the images the wrapped model is asked to classify."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.rows = inner, 0

    def forward(self, x):
        self.rows += len(x)
        return self.inner(x)


def test_queries_counted_as_the_paper_and_fooled_points_leave(model):
    x, y = eval_points(64)
    ok = _predict(model, x) == y
    x, y = x[ok][:8], y[ok][:8]
    counting = Counting(model)
    torch.manual_seed(0)
    # a radius too small to fool anything: every point spends its whole budget, the start
    # included, plus the one clean prediction
    r = square(counting, x, y, ThreatModel("linf", 1e-6, None, "pixel"), n_queries=20, restarts=2)
    assert not r.fooled.any() and counting.rows == 8 * (1 + 2 * 20)
    counting.rows = 0
    r = square(counting, x, y, ThreatModel("linf", 0.1, None, "pixel"), n_queries=20)
    assert r.fooled.sum() >= 6 and counting.rows < 8 * (1 + 20), "fooled points stop costing queries"


def test_p_schedule_and_l2_meta_window():
    assert _p_schedule(0.8, 0, 5000) == 0.8
    assert _p_schedule(0.8, 2500, 5000) == 0.8 / 128  # iteration 5000 of 10,000: seven halvings
    assert _p_schedule(0.8, 4999, 5000) == 0.8 / 512
    assert _p_schedule(0.8, 10, 100) == 0.8 / 16  # rescaled: iteration 1000 of 10,000
    m = _meta(7)
    assert m.shape == (2, 7, 7) and torch.allclose(m[1], m[0].t())
    assert math.isclose(m[0].norm().item(), 1.0, rel_tol=1e-9)
    assert (m[0][:3] > 0).all() and (m[0][3:] < 0).all(), "two bumps of opposite sign"


def test_registered_with_its_options_and_refuses_l1(model):
    a = info("square")
    assert a.kind == "black-box" and a.norms == ("linf", "l2") and a.rule({}) is None
    assert set(a.options) == {"n_queries", "p_init", "loss", "restarts"}
    assert a.options["loss"].choices == ("margin", "ce")
    assert a.title(a.defaults()) == "Square-5000"
    assert a.title({**a.defaults(), "loss": "ce", "restarts": 2}) == "Square-5000-CEx2"
    x, y = eval_points(4)
    with pytest.raises(RobustError, match="not l1"):
        square(model, x, y, ThreatModel("l1", 1.0, None, "pixel"))


def _reference(model, x, y, norm, eps, n_queries, seed):
    from pyautoattack.square import SquareAttack

    # pyautoattack's loop makes n_queries queries after the start; ours counts the start
    ref = SquareAttack(
        model,
        norm={"linf": "Linf", "l2": "L2"}[norm],
        n_queries=n_queries - 1,
        eps=eps,
        p_init=0.8,
        loss="margin",
        seed=seed,
    )
    return _predict(model, ref.perturb(x, y)) != y


@pytest.mark.parametrize("norm,eps", [("linf", 8 / 255), ("l2", 0.5)])
def test_robust_accuracy_agrees_with_pyautoattack(model, norm, eps):
    """Both are random searches, so on the same points they disagree on a few borderline
    points even when they implement the same algorithm. If they do (the null), each
    disagreeing point is broken by ours or by the reference alone with equal chance, so
    given D disagreements the gap in fooled points A - B has standard deviation sqrt(D)
    (McNemar's test). We allow 3 of them: a 0.3% false alarm, while a weaker search (a
    wrong schedule, window or update) shows as a one-sided gap that grows with D."""
    x, y = eval_points(200)
    ok = _predict(model, x) == y
    xc, yc = x[ok], y[ok]
    t = ThreatModel(norm, eps, None, "pixel")
    torch.manual_seed(0)
    ours = square(model, xc, yc, t, n_queries=REF_QUERIES).fooled
    ref = _reference(model, xc, yc, norm, eps, REF_QUERIES, seed=0)
    a, b = int((ours & ~ref).sum()), int((ref & ~ours).sum())
    acc_ours, acc_ref = (ok.sum() - ours.sum()).item() / len(y), (ok.sum() - ref.sum()).item() / len(y)
    msg = f"{norm}: robust accuracy ours {acc_ours:.1%} vs pyautoattack {acc_ref:.1%} (n={len(y)}; only ours {a}, only ref {b})"
    assert ours.sum() > 0 and ref.sum() > 0, msg
    assert abs(a - b) <= 3 * math.sqrt(max(a + b, 1)), msg
    if norm == "linf":  # and it clearly lowers accuracy on a trained model
        assert acc_ours <= ok.float().mean().item() - 0.1, msg


def test_square_below_whitebox_flags_only_a_gap_beyond_the_interval():
    # n=1000 at 45%: the white-box 95% Wilson interval is about 42%-48%
    bad = square_below_whitebox(0.30, 0.45, 1000, "APGD-CE")
    assert not bad.ok and "APGD-CE" in bad.detail and "mask" in bad.detail and "n=1000" in bad.detail
    assert math.isclose(bad.value, 0.15)
    assert square_below_whitebox(0.43, 0.45, 1000, "APGD-CE").ok  # inside the interval: noise
    assert square_below_whitebox(0.40, 0.45, 100, "PGD-20").ok  # n=100: the interval is +-10 points
    assert square_below_whitebox(0.50, 0.45, 1000, "PGD-20").ok  # Square weaker: the usual case
    assert square_below_whitebox(0.0, 0.0, 1000, "PGD-20").ok
    assert square_below_whitebox(0.1, 0.5, 0, "PGD-20").ok  # nothing measured
    json.dumps(bad.to_dict())

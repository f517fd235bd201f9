"""Threat models: eps spaces, conversions, the ball's geometry."""

import math

import pytest
import torch

from robustbench_local.errors import RobustError
from robustbench_local.threat import Ball, ThreatModel, parse_number


def test_seed_convention_normalized_to_pixel():
    # --eps 0.0313 --eta 0.002 with mean = std = 0.5 is eps 0.01565, step 0.001 in pixels
    t = ThreatModel("linf", 0.0313, 0.002, "normalized")
    d = t.describe([0.5, 0.5, 0.5])
    assert d["eps_pixel"] == pytest.approx(0.01565)
    assert d["step_pixel"] == pytest.approx(0.001)
    assert d["eps_normalized"] == pytest.approx(0.0313)
    px = t.in_space("pixel", [0.5] * 3)
    assert (px.eps, px.step, px.space) == (pytest.approx(0.01565), pytest.approx(0.001), "pixel")
    back = px.in_space("normalized", [0.5] * 3)
    assert back.eps == pytest.approx(0.0313) and back.step == pytest.approx(0.002)


def test_fractions_and_per_channel_std():
    assert parse_number("8/255") == 8 / 255 and parse_number(" 8 / 255 ") == 8 / 255
    assert parse_number("0.4/255") == pytest.approx(0.4 / 255)  # a step of 0.4 pixel levels
    assert parse_number("1e-1/2") == pytest.approx(0.05)
    for bad in ("eight", "1/0", "1/", "/255", "0.4/x"):
        with pytest.raises(RobustError):
            parse_number(bad)
    t = ThreatModel("linf", parse_number("8/255"), 0.002, "pixel")
    std = [0.247, 0.243, 0.261]
    d = t.describe(std)
    assert d["eps_pixel"] == pytest.approx(8 / 255)
    assert d["eps_normalized"] == pytest.approx([8 / 255 / s for s in std])
    with pytest.raises(RobustError, match="differs across channels"):
        t.in_space("normalized", std)


@pytest.mark.parametrize("kw", [dict(eps=0), dict(eps=-1), dict(step=0), dict(norm="l0"), dict(space="logit")])
def test_invalid_threats_rejected(kw):
    with pytest.raises(RobustError):
        ThreatModel(**kw)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("space", ["normalized", "pixel"])
def test_ball_random_project_apply_stay_inside(norm, space):
    torch.manual_seed(0)
    std = torch.tensor([0.2, 0.5, 1.0])
    t = ThreatModel(norm, 0.3, 0.05, space)
    ball = Ball(t, std, torch.device("cpu"))
    x = torch.rand(32, 3, 8, 8)
    u = ball.random(x.shape, x.device) * 5  # far outside
    x_adv, u2 = ball.apply(x, u)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (ball.norms(x_adv, x) <= 0.3 + 1e-6).all()
    # random starts are inside the ball and not degenerate
    r = ball.random(x.shape, x.device)
    n = r.flatten(1).abs().amax(1) if norm == "linf" else r.flatten(1).norm(dim=1)
    assert (n <= 0.3 + 1e-6).all() and n.min() > 0


def test_normalized_linf_is_per_channel_box_in_pixels():
    std = torch.tensor([0.2, 0.5, 1.0])
    ball = Ball(ThreatModel("linf", 0.1, 0.01, "normalized"), std, torch.device("cpu"))
    x = torch.full((1, 3, 4, 4), 0.5)
    x_adv, _ = ball.apply(x, torch.ones_like(x))
    assert torch.allclose((x_adv - x)[0, :, 0, 0], 0.1 * std)


@pytest.mark.parametrize("space", ["normalized", "pixel"])
def test_linf_box_step_equals_project_then_clamp(space):
    """PGD's L-inf fast path (one multiply-add, one clamp to Ball.box) against the plain
    path (step in attack space, project onto the ball, clamp to [0,1]), over 10 steps."""
    torch.manual_seed(0)
    std = torch.tensor([0.2, 0.5, 1.0])
    ball = Ball(ThreatModel("linf", 0.1, 0.03, space), std, torch.device("cpu"))
    x = torch.rand(64, 3, 8, 8)
    x[:8] = x[:8].round()  # pixels at 0 and 1, where the clamp to [0,1] binds
    lo, hi = ball.box(x)
    step_px = 0.03 * ball.scale
    fast, plain = ball.apply(x, ball.random(x.shape, x.device))[0], None
    plain = fast.clone()
    for _ in range(10):
        g = torch.randn_like(x)
        fast = fast.addcmul(g.sign(), step_px).clamp(lo, hi)
        u = ball.ascend(ball.from_pixel(plain - x), g * ball.scale, 0.03)
        plain, _ = ball.apply(x, u)
    assert (fast - plain).abs().max() < 1e-6
    assert (ball.norms(fast, x) <= 0.1 + 1e-6).all() and fast.min() >= 0 and fast.max() <= 1


def test_l2_normalized_is_ellipsoid():
    std = torch.tensor([0.25, 0.5, 1.0])
    ball = Ball(ThreatModel("l2", 1.0, 0.1, "normalized"), std, torch.device("cpu"))
    d = torch.zeros(1, 3, 1, 1)
    d[0, 0] = 0.25  # one unit in normalized space along channel 0
    assert ball.norms(0.5 + d, torch.full_like(d, 0.5)).item() == pytest.approx(1.0)
    assert math.isclose(ball.from_pixel(d).norm().item(), 1.0, rel_tol=1e-6)

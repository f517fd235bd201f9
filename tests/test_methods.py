"""Training-method losses on real CIFAR-10 batches, checked against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from robustbench_local.errors import RobustError
from robustbench_local.methods import ADV_METHODS, METHODS, Batch, TrainMethod, build_method, make_base_method
from robustbench_local.methods.cutmix import CutMix
from robustbench_local.methods.mixup import MixUp
from robustbench_local.methods.ova import ova_loss
from robustbench_local.models import build_model
from robustbench_local.specs import TrainSpec


@pytest.fixture(scope="module")
def batch(cifar10):
    sub = cifar10.train.subset(32, seed=3)
    return sub.x.float() / 255, sub.y


@pytest.fixture(scope="module")
def model(cifar10):
    torch.manual_seed(0)
    return build_model(
        "cnn", num_classes=10, input_shape=cifar10.info.input_shape, mean=(0.5,) * 3, std=(0.5,) * 3, maps="8,8,16"
    ).eval()


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def test_ova_matches_hand_computation():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.3, 0.1, -2.5]])
    y = torch.tensor([0, 2])
    expected = []
    for row, label in zip(logits.tolist(), y.tolist()):
        loss = -math.log(_sigmoid(row[label]))
        loss -= sum(math.log(1.0 - _sigmoid(z)) for i, z in enumerate(row) if i != label)
        expected.append(loss)
    got = ova_loss(logits, y)
    assert got.shape == (2,)
    assert torch.allclose(got.double(), torch.tensor(expected, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(METHODS.get("ova")().criterion(logits, y), got)


def test_ova_is_finite_and_exact_for_huge_logits():
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], requires_grad=True)
    y = torch.tensor([0, 0])
    loss = ova_loss(logits, y)
    # row 0: the two confident terms cost ~0, the 0 logit costs log 2
    # row 1: every term is off by 1e4
    assert torch.isfinite(loss).all()
    assert loss[0].item() == pytest.approx(math.log(2), abs=1e-6)
    assert loss[1].item() == pytest.approx(3e4, rel=1e-6)
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all()
    # d/dz of -logsigmoid(z_y) is sigmoid(z_y) - 1; of -logsigmoid(-z_i) is sigmoid(z_i)
    assert logits.grad[1].tolist() == pytest.approx([-1.0, 1.0, 1.0], abs=1e-6)


def test_mixup_with_lambda_one_is_cross_entropy(batch, model):
    x, y = batch
    for smoothing in (0.0, 0.1):
        method = MixUp(alpha=0.4, label_smoothing=smoothing)
        torch.manual_seed(0)
        prepared = method.prepare(x, y, lam=1.0)
        assert torch.equal(prepared.x, x)
        with torch.no_grad():
            logits = model(prepared.x)
            got = method.batch_criterion(logits, prepared).mean()
            want = F.cross_entropy(model(x), y, label_smoothing=smoothing)
        assert torch.allclose(got, want, atol=1e-6)
        assert torch.equal(prepared.target, y)


def test_mixup_mixes_images_and_losses_with_the_same_weight(batch, model):
    x, y = batch
    method = MixUp(alpha=1.0)
    torch.manual_seed(5)
    prepared = method.prepare(x, y)
    torch.manual_seed(5)
    again = method.prepare(x, y)  # the global RNG alone decides lambda and the pairs
    assert prepared.lam == again.lam and torch.equal(prepared.y2, again.y2)
    lam = prepared.lam
    assert 0.0 < lam < 1.0
    with torch.no_grad():
        logits = model(prepared.x)
        want = lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, prepared.y2)
        got = method.batch_criterion(logits, prepared).mean()
    assert torch.allclose(got, want, atol=1e-6)
    # each mixed image is lam * its own + (1 - lam) * some image of the batch with label y2
    for i in range(len(x)):
        partner = (prepared.x[i] - lam * x[i]) / (1 - lam)
        dist = (x - partner).flatten(1).abs().amax(1)
        j = int(dist.argmin())
        assert dist[j] < 1e-4 and y[j] == prepared.y2[i]


def test_cutmix_lambda_is_one_minus_box_area():
    n, h, w = 16, 32, 32
    # each image a different constant, so every pasted pixel can be traced
    x = (torch.arange(n, dtype=torch.float32) / n).view(n, 1, 1, 1).expand(n, 3, h, w).contiguous()
    y = torch.arange(n) % 10
    method = CutMix(alpha=1.0, cutmix_prob=1.0)
    checked = clipped = 0
    for seed in range(40):
        torch.manual_seed(seed)
        drawn = 0.15 if seed % 2 else None  # a small lambda gives big boxes, often clipped by the border
        prepared = method.prepare(x, y, lam=drawn)
        pasted = (prepared.x != x).all(dim=1)  # (n, h, w): pixels that came from the partner
        for i in range(n):
            if not pasted[i].any():
                continue  # paired with itself
            area = int(pasted[i].sum())
            assert prepared.lam == pytest.approx(1 - area / (h * w), abs=1e-12)
            rows, cols = pasted[i].any(1).nonzero().flatten(), pasted[i].any(0).nonzero().flatten()
            assert area == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # one solid box
            checked += 1
        if drawn is not None:
            side = 2 * (int(h * math.sqrt(1 - drawn)) // 2)  # the box before clipping
            clipped += prepared.lam != pytest.approx(1 - side * side / (h * w))
    assert checked > 500
    assert clipped > 0  # the area correction mattered: some boxes were cut by the border


def test_cutmix_probability():
    x = torch.rand(8, 3, 16, 16)
    y = torch.arange(8)
    torch.manual_seed(0)
    assert not CutMix(cutmix_prob=0.0).prepare(x, y).mixed
    mixed = [CutMix(cutmix_prob=0.5).prepare(x, y).mixed for _ in range(200)]
    assert 60 < sum(mixed) < 140


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_trains_on_a_real_batch(name, batch, model):
    x, y = batch
    method = make_base_method(name)
    assert isinstance(method, TrainMethod) and method.name == name
    torch.manual_seed(0)
    model.train()
    try:
        out = method(model, x, y)
    finally:
        model.eval()
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert out.logits.shape == (len(y), 10) and out.target.shape == y.shape
    assert out.attack_seconds == 0.0
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.zero_grad(set_to_none=True)
    per_example = method.criterion(out.logits.detach(), y)
    assert per_example.shape == y.shape and (per_example >= 0).all()
    assert isinstance(method.config(), dict)


def test_bad_method_inputs_are_one_line_errors():
    with pytest.raises(RobustError, match="unknown method 'nope'; valid methods: cutmix, mixup, ova, standard"):
        make_base_method("nope")
    with pytest.raises(RobustError, match="method 'ova' does not take alpha"):
        make_base_method("ova", {"alpha": 1.0})
    for name, kwargs, text in [
        ("mixup", {"alpha": 0}, "train.method_kwargs.alpha: must be > 0"),
        ("cutmix", {"cutmix_prob": 1.5}, "train.method_kwargs.cutmix_prob: must be <= 1"),
        ("standard", {"label_smoothing": 1.0}, "train.method_kwargs.label_smoothing: must be < 1"),
    ]:
        with pytest.raises(RobustError, match=text):
            make_base_method(name, kwargs)


def test_build_method_uses_the_adversarial_registry():
    assert "none" in ADV_METHODS
    method = build_method(TrainSpec(method="cutmix", method_kwargs={"alpha": 0.5}))
    assert isinstance(method, CutMix) and method.alpha == 0.5
    with pytest.raises(RobustError, match="unknown adversarial method 'bogus'"):
        TrainSpec(adv="bogus")
    with pytest.raises(RobustError, match="need an adversarial method"):
        TrainSpec(adv_kwargs={"eps": 0.03})


def test_batch_target_follows_the_dominant_image():
    y, y2 = torch.tensor([1, 2]), torch.tensor([3, 4])
    x = torch.zeros(2, 3, 4, 4)
    assert torch.equal(Batch(x, y, y2, 0.7).target, y)
    assert torch.equal(Batch(x, y, y2, 0.3).target, y2)
    assert torch.equal(Batch(x, y).target, y)

"""Every fast path gives the plain path's result within floating-point tolerance, on
real CIFAR-10 images and the seed CNN: channels_last (training step and attack),
parameter gradients off during attacks, bf16 autocast on the CPU with attacks kept
in float32, the training forward's routing (what DDP sees), and torch.compile
(the 'aot_eager' backend: the same graph capture and autograd as inductor without
its C++ build, which takes a minute on this machine; the benchmark measures inductor)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from support import image_tree

from robustbench_local.attacks import perturb, pgd
from robustbench_local.attacks.base import make_ball
from robustbench_local.attacks.pgd import run_pgd
from robustbench_local.errors import RobustError
from robustbench_local.models import build_model
from robustbench_local.precision import Precision, build_training_model, resolve_compile
from robustbench_local.specs import DataSpec, ModelSpec, TrainSpec
from robustbench_local.threat import ThreatModel
from robustbench_local.train import fit

THREAT = ThreatModel(norm="linf", eps=0.0313, step=0.0313 / 4, space="normalized")
FP32 = Precision(None, "cpu")
BF16 = Precision(torch.bfloat16, "cpu")


@pytest.fixture(scope="module")
def batch(cifar10):
    sub = cifar10.train.subset(64, seed=1)
    return sub.x.float() / 255, sub.y


def cnn(seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return build_model(
        "cnn",
        num_classes=10,
        input_shape=(3, 32, 32),
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        maps="8,16",
        dropout=0.0,
        **kwargs,
    )


def sgd_step(model, net, x, y, lr=0.1):
    """One training step through ``net`` (a TrainingModel or the model); returns the
    loss and the new weights."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    loss = F.cross_entropy(net(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach(), {k: v.detach().clone() for k, v in model.state_dict().items()}


def max_rel_diff(a: dict, b: dict, base: dict) -> float:
    """max over float tensors of max |a - b| / max |b - base|: how far two updated
    models disagree, as a share of each tensor's update."""
    return max(
        (a[k] - b[k]).abs().max().item() / (b[k] - base[k]).abs().max().item()
        for k in a
        if a[k].is_floating_point() and not torch.equal(b[k], base[k])
    )


def attack_start(model, x):
    torch.manual_seed(5)
    return make_ball(model, x, THREAT).random(x.shape, x.device, x.dtype)


# ----------------------------------------------------------------------------- channels_last
def test_channels_last_training_step_matches_nchw(batch):
    x, y = batch
    plain, fast = cnn(), cnn()
    fast.to(memory_format=torch.channels_last)
    base = {k: v.clone() for k, v in plain.state_dict().items()}
    loss_a, w_a = sgd_step(plain, plain, x, y)
    loss_b, w_b = sgd_step(fast, fast, x.contiguous(memory_format=torch.channels_last), y)
    assert fast.net.features[0].body[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert loss_b.item() == pytest.approx(loss_a.item(), rel=1e-5)
    assert max_rel_diff(w_b, w_a, base) < 1e-2  # batch-norm statistics included (observed 1.5e-3)


def test_channels_last_attack_matches_nchw(batch):
    x, y = batch
    plain = cnn().eval()
    fast = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    start = attack_start(plain, x)
    a = pgd(plain, x, y, THREAT, k=5, init=[start])
    b = pgd(
        fast,
        x.contiguous(memory_format=torch.channels_last),
        y,
        THREAT,
        k=5,
        init=[start.contiguous(memory_format=torch.channels_last)],
    )
    assert torch.equal(a.fooled, b.fooled)
    assert 0 < int(a.fooled.sum()) < len(y)
    # a sign step can flip where a gradient entry is ~0; essentially all pixels agree
    assert (a.x_adv - b.x_adv).abs().gt(1e-5).float().mean().item() < 1e-3


def test_evaluate_gives_the_same_record_in_either_layout(cifar10, tmp_path):
    """evaluate() lays a checkpoint out NHWC by default on CPU; its numbers equal NCHW's."""
    from support import trained_cnn

    from robustbench_local.attacks import AttackSpec
    from robustbench_local.checkpoint import save_checkpoint
    from robustbench_local.evaluation import evaluate

    path = save_checkpoint(tmp_path / "best.pth", *trained_cnn(epochs=2, n_train=2000))
    specs = [AttackSpec("fgsm", threat=THREAT), AttackSpec("pgd", threat=THREAT, k=10)]
    recs = {
        cl: evaluate(str(path), specs, cifar10, n=200, device="cpu", channels_last=cl, run_checks=False)
        for cl in (False, "auto")
    }
    assert [r["environment"]["channels_last"] for r in recs["auto"]] == [True] * 3
    assert [r["environment"]["channels_last"] for r in recs[False]] == [False] * 3
    for a, b in zip(recs[False], recs["auto"]):
        ma, mb = a["metrics"], b["metrics"]
        assert ma["clean_acc"] == mb["clean_acc"] and ma["n"] == mb["n"] == 200
        assert 0 < ma["robust_acc"] < ma["clean_acc"]
        assert abs(ma["robust_acc"] - mb["robust_acc"]) <= 1 / 200  # a sign step may flip at a ~0 gradient


# ----------------------------------------------------------------------------- parameter gradients off
def test_attack_is_the_same_with_parameter_gradients_on_or_off(batch):
    x, y = batch
    model = cnn().eval()
    ball = make_ball(model, x, THREAT)
    start = attack_start(model, x)
    kw = dict(
        steps=4,
        step_size=THREAT.step,
        random_start=True,
        loss_fn=lambda z, t: F.cross_entropy(z, t, reduction="none"),
        aux=(y,),
        init=start,
    )
    with_grads, _ = run_pgd(model, x, ball, **kw)  # the plain path: parameters keep requires_grad
    assert all(p.grad is None for p in model.parameters())  # input gradients only, nothing accumulated
    frozen = perturb(model, x, y, THREAT, steps=4, init=start)  # the fast path freezes them
    assert torch.equal(with_grads, frozen)
    assert all(p.requires_grad for p in model.parameters())  # restored


# ----------------------------------------------------------------------------- AMP and attack precision
def test_bf16_training_step_stays_close_to_fp32(batch):
    x, y = batch
    ref, amp = cnn(), cnn()
    base = {k: v.clone() for k, v in ref.state_dict().items()}
    loss_a, w_a = sgd_step(ref, build_training_model(ref, torch.device("cpu"), FP32), x, y)
    net = build_training_model(amp, torch.device("cpu"), BF16)
    loss_b, w_b = sgd_step(amp, net, x, y)
    assert loss_b.item() == pytest.approx(loss_a.item(), rel=2e-2)
    # bf16 keeps ~3 significant digits: each tensor's update agrees to a few percent (observed < 5%)
    assert max_rel_diff(w_b, w_a, base) < 0.15
    assert net(x).dtype == torch.float32  # losses are computed on float32 logits


def test_attacks_inside_amp_training_run_in_fp32_unless_asked(batch):
    x, y = batch
    model = cnn().eval()
    start = attack_start(model, x)
    fp32 = perturb(model, x, y, THREAT, steps=4, init=start)
    net = build_training_model(model, torch.device("cpu"), BF16)
    assert torch.equal(perturb(net, x, y, THREAT, steps=4, init=start), fp32)
    net_amp = build_training_model(model, torch.device("cpu"), BF16, attack_precision="amp")
    low = perturb(net_amp, x, y, THREAT, steps=4, init=start)
    assert not torch.equal(low, fp32)  # the option does change the precision ...
    assert (low - fp32).abs().max().item() <= 2 * THREAT.eps * 0.5 + 1e-6  # ... within the same ball


class Counting(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def test_only_the_loss_forward_goes_through_the_training_wrapper(batch):
    """What DDP would see: PGD-AT's k attack steps run on the plain module, the loss
    forward through the wrapper (DDP in a torchrun run), under autocast with AMP."""
    from robustbench_local.methods import build_method
    from robustbench_local.precision import TrainingModel

    x, y = batch
    model = cnn()
    seen = []
    model.register_forward_pre_hook(lambda m, a: seen.append(torch.is_autocast_enabled("cpu")))
    wrapper = Counting(model)
    net = TrainingModel(model, wrapper, BF16)
    spec = TrainSpec(adv="pgd", adv_kwargs={"k": 3}, model=ModelSpec(kwargs={"maps": "8,16"}))
    method = build_method(spec)
    out = method(net, x, y)
    out.loss.backward()
    assert wrapper.calls == 1
    assert seen == [False, False, False, True]  # 3 fp32 attack steps, then the bf16 loss forward
    assert all(p.grad is not None for p in model.parameters())
    assert out.loss.dtype == torch.float32


# ----------------------------------------------------------------------------- torch.compile
def test_compiled_training_step_and_attack_match_eager(batch):
    x, y = batch
    ref, comp = cnn(), cnn()
    base = {k: v.clone() for k, v in ref.state_dict().items()}
    net = build_training_model(comp, torch.device("cpu"), FP32, compile_backend="aot_eager")
    loss_a, w_a = sgd_step(ref, ref, x, y)
    loss_b, w_b = sgd_step(comp, net, x, y)
    assert loss_b.item() == pytest.approx(loss_a.item(), rel=1e-5)
    assert max_rel_diff(w_b, w_a, base) < 1e-2
    ref.eval()
    comp.eval()
    start = attack_start(ref, x)
    a = perturb(ref, x, y, THREAT, steps=3, init=start)
    b = perturb(net, x, y, THREAT, steps=3, init=start)
    assert (a - b).abs().gt(1e-5).float().mean().item() < 1e-3


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory, cifar10) -> str:
    """imagefolder:PATH of real CIFAR-10 images, 16 train and 4 test per class: a fit()
    whose test evaluation is cheap."""
    root = tmp_path_factory.mktemp("cifar-tiny")
    return image_tree(root, cifar10, 16, 4)


def test_compile_option_trains_like_eager(small_tree, tmp_path, monkeypatch):
    """TrainSpec(compile=...) through fit(): same weights as the eager run."""
    monkeypatch.setenv("ROBUST_CACHE", str(tmp_path / "cache"))
    common = dict(
        data=DataSpec(dataset=small_tree, val_fraction=0.2, augment="none"),
        model=ModelSpec(kwargs={"maps": "8,16", "dropout": 0}),
        epochs=1,
        batch_size=32,
        device="cpu",
    )
    eager = fit(TrainSpec(out=str(tmp_path / "eager"), **common), quiet=True)
    comp = fit(TrainSpec(out=str(tmp_path / "comp"), compile="aot_eager", **common), quiet=True)
    a = torch.load(eager.last_path, weights_only=True)["state_dict"]
    b = torch.load(comp.last_path, weights_only=True)["state_dict"]
    assert a.keys() == b.keys()  # the checkpoint holds the plain model's names, not _orig_mod.*
    assert max((a[k].double() - b[k].double()).abs().max().item() for k in a) < 1e-5
    assert comp.history[0]["val_acc"] == eager.history[0]["val_acc"]
    assert comp.metrics["test_n"] == 40
    assert json.loads((tmp_path / "comp" / "config.json").read_text())["resolved"]["compile"] == "aot_eager"


def test_compile_backend_names_are_checked():
    assert resolve_compile(False) is None and resolve_compile(True) == "inductor"
    with pytest.raises(RobustError, match="unknown torch.compile backend 'nope'"):
        resolve_compile("nope")
    with pytest.raises(RobustError, match="train.attack_precision: unknown value .fp8."):
        TrainSpec(attack_precision="fp8")

"""Every registered dataset, model and training method against its registry's contract,
as test_attack_registry.py does for attacks: the cases come from the registries, so a
new entry is tested as soon as it registers and nothing here names one.

- datasets: each one found offline (the data search path, ../shared/data included)
  loads uint8 images of its input shape with labels inside its classes; one that takes
  a PATH loads a small image tree written here; one not found is skipped, saying why;
- models: each builds for CIFAR-10's shape and statistics, takes [0,1] pixels, returns
  finite (batch, classes) logits, and the loss's gradient reaches the input
  (test_models.py forwards every model at every dataset shape);
- training methods: every base method under every adversarial wrapper takes one
  optimizer step on a small real batch (all replays, for free AT): the loss is finite
  and every weight moves; a pair the wrapper refuses is a one-line error naming both;
- names: an unknown name lists every registered one, a newly registered one included
  (so the list comes from the registry), and `robust train --help` names them all."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from support import image_tree

from robustbench_local.cli import main
from robustbench_local.data import load_dataset
from robustbench_local.data.sources import DATASETS
from robustbench_local.errors import DataNotFound, RobustError
from robustbench_local.methods import ADV_METHODS, METHODS, build_method
from robustbench_local.models import MODELS, NormalizedModel, build_model
from robustbench_local.registry import Registry
from robustbench_local.specs import ModelSpec, TrainSpec

SMALL_CNN = {"maps": "8,8,16"}  # the method tests train this narrow seed CNN
UNKNOWN = "no-such-entry"
PROBE = "zz-probe"  # registered for one test only, to see that messages follow the registry


# ----------------------------------------------------------------------------- datasets
def _takes_path(name: str) -> bool:
    return not DATASETS.meta(name).get("builtin")


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_dataset_found_offline_loads_images_and_labels(name, request, tmp_path):
    if _takes_path(name):
        # 3 train and 2 test real CIFAR-10 images per class, as PNGs in train/<class>/, test/<class>/
        root = tmp_path / "tree"
        image_tree(root, request.getfixturevalue("cifar10"), 3, 2)
        full = f"{name}:{root}"
    else:
        full = name
    try:
        bundle = load_dataset(full, download=False)
    except DataNotFound as e:
        pytest.skip(f"{name} is not available offline: {e}")
    info = bundle.info
    c, h, w = info.input_shape
    assert info.name.startswith(name) and c in (1, 3) and h > 0 and w > 0
    assert info.num_classes == len(info.classes) >= 2 and len(set(info.classes)) == info.num_classes
    assert len(info.mean) == len(info.std) == c
    assert all(0 < m < 1 for m in info.mean) and all(0 < s < 1 for s in info.std)
    assert len(bundle.train) and len(bundle.test)
    for split in (bundle.train, bundle.val, bundle.test):
        assert split.x.dtype == torch.uint8 and tuple(split.x.shape[1:]) == info.input_shape, split.name
        assert split.y.dtype == torch.int64 and len(split.y) == len(split.x) == len(split.index), split.name
        if len(split.y):
            assert 0 <= int(split.y.min()) and int(split.y.max()) < info.num_classes, split.name
    assert set(bundle.train.y.unique().tolist()) == set(range(info.num_classes))  # every class trains
    few = bundle.test.subset(min(8, len(bundle.test)), seed=0)
    x = few.x.float() / 255
    assert x.shape == (len(few), c, h, w) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert float(x.std()) > 0  # images, not a blank array


# ----------------------------------------------------------------------------- models
@pytest.fixture(scope="module")
def pixels(cifar10):
    """Two real CIFAR-10 test images as [0,1] floats, with their labels."""
    sub = cifar10.test.subset(2, seed=0)
    return sub.x.float() / 255, sub.y


@pytest.mark.parametrize("arch", MODELS.names())
def test_every_model_takes_pixels_and_passes_the_gradient_to_them(arch, cifar10, pixels):
    info = cifar10.info
    torch.manual_seed(0)
    model = build_model(
        arch, num_classes=info.num_classes, input_shape=info.input_shape, mean=info.mean, std=info.std
    ).eval()
    assert isinstance(model, NormalizedModel) and model.arch == arch
    x = pixels[0].clone().requires_grad_(True)
    logits = model(x)
    assert logits.shape == (len(x), info.num_classes) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all(), f"{arch}: logits not finite"
    F.cross_entropy(logits, pixels[1]).backward()
    assert x.grad is not None, f"{arch}: no gradient reaches the input"
    assert torch.isfinite(x.grad).all() and float(x.grad.abs().sum()) > 0, f"{arch}: the input gradient is 0 or NaN"
    assert any(p.grad is not None for p in model.parameters())


# ----------------------------------------------------------------------------- training methods
@pytest.fixture(scope="module")
def batch(cifar10):
    sub = cifar10.train.subset(16, seed=4)
    return sub.x.float() / 255, sub.y


@pytest.mark.parametrize("adv", ADV_METHODS.names())
@pytest.mark.parametrize("method", METHODS.names())
def test_every_training_method_takes_a_step(method, adv, batch, cifar10):
    model_spec = ModelSpec(arch="cnn", kwargs=SMALL_CNN)
    try:
        train = build_method(TrainSpec(method=method, adv=adv, model=model_spec))
    except RobustError as e:  # a pair the wrapper refuses (free AT replays a batch: no MixUp)
        msg = str(e)
        assert "\n" not in msg and method in msg and adv in msg, msg
        return
    x, y = batch
    torch.manual_seed(0)
    model = build_model(
        "cnn", num_classes=10, input_shape=cifar10.info.input_shape, mean=(0.5,) * 3, std=(0.5,) * 3, **SMALL_CNN
    )
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train.start_epoch(0, 1)
    model.train()
    for _ in range(train.replays):  # as fit() does: free AT steps several times on each batch
        out = train(model, x, y)
        assert out.loss.dim() == 0 and torch.isfinite(out.loss), f"{method}/{adv}: loss {out.loss}"
        assert out.logits.shape == (len(y), 10) and out.target.shape == y.shape
        assert out.attack_seconds >= 0
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
    after = list(model.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    still = [n for (n, p), b in zip(model.named_parameters(), before) if torch.equal(p.detach(), b)]
    assert not still, f"{method}/{adv}: a training step left {', '.join(still)} unchanged"


# ----------------------------------------------------------------------------- names
def _cifar_model(arch: str):
    return build_model(arch, num_classes=10, input_shape=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3)


# (registry, what asks it for an unknown name, meta a probe entry registers with)
LOOKUPS = {
    "dataset": (DATASETS, lambda name: load_dataset(name, download=False), {"builtin": True}),
    "model": (MODELS, _cifar_model, {"summary": "a probe"}),
    # the spec refuses the name when it is built, or build_method() does (what fit() calls)
    "method": (METHODS, lambda name: build_method(TrainSpec(method=name)), {"summary": "a probe"}),
    "adversarial method": (ADV_METHODS, lambda name: build_method(TrainSpec(adv=name)), {"summary": "a probe"}),
}


def _register_for_this_test(monkeypatch, registry: Registry, name: str, meta: dict) -> None:
    """``name`` registered (as a copy of the first entry) until the test ends; the registry
    has no removal, so its tables are swapped and monkeypatch puts the originals back."""
    first = registry.names()[0]
    monkeypatch.setattr(registry, "_items", {**registry._items, name: registry.get(first)})
    monkeypatch.setattr(registry, "_meta", {**registry._meta, name: meta})


def _names_in(text: str, names: list[str]) -> list[str]:
    """The names missing from ``text`` as whole words (a name may be cut after a hyphen by wrapping)."""
    flat = re.sub(r"\s+", " ", re.sub(r"-\s+", "-", text))
    return [n for n in names if not re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", flat)]


@pytest.mark.parametrize("kind", LOOKUPS)
def test_an_unknown_name_lists_every_registered_name(kind, monkeypatch):
    registry, lookup, meta = LOOKUPS[kind]
    _register_for_this_test(monkeypatch, registry, PROBE, meta)
    with pytest.raises(RobustError) as e:
        lookup(UNKNOWN)
    msg = str(e.value)
    assert "\n" not in msg and f"unknown {kind} '{UNKNOWN}'" in msg, msg
    assert f"valid {kind}s: " in msg, msg
    listed = msg.split(f"valid {kind}s: ", 1)[1]
    missing = _names_in(listed, registry.names())
    assert not missing, f"the list of valid {kind}s leaves out {', '.join(missing)}: {msg}"


def test_train_help_names_every_dataset_model_and_method():
    res = CliRunner().invoke(main, ["train", "--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    for registry in (DATASETS, MODELS, METHODS, ADV_METHODS):
        missing = _names_in(res.output, registry.names())
        assert not missing, f"robust train --help does not name the {registry.kind}s {', '.join(missing)}"

"""Model zoo: every registered model on every dataset shape, normalization, rebuilding
from (arch, options), option errors, channels_last, torchvision adaptations.

Inputs are real images: the first CIFAR-10 JPEGs of ../shared/data (also upsampled to
64x64 for the imagefolder shape) and the first Fashion-MNIST images."""

from __future__ import annotations

import copy
import gzip
import io
import json
import os
import socket
import tarfile
from pathlib import Path
from types import SimpleNamespace
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from robustbench_local.errors import RobustError
from robustbench_local.models import (
    MODELS,
    NORMALIZATIONS,
    Normalize,
    NormalizedModel,
    build_model,
    model_kwargs_help,
    option_defaults,
    resolve_normalization,
)

SHAPES = [(3, 32, 32), (1, 28, 28), (3, 64, 64)]
# The full-width WideResNets are tested once at batch 1 (test_wide_resnet_full_width);
# elsewhere they run at widen=1, which has the same structure.
SMALL = {"wrn": {"widen": 1}, "wrn-28-10": {"widen": 1}, "wrn-34-10": {"widen": 1}}


def _data_dir() -> Path:
    for d in (os.environ.get("ROBUST_DATA"), Path(__file__).resolve().parents[2] / "shared" / "data"):
        if d and (Path(d) / "cifar10-jpeg.tar.gz").is_file():
            return Path(d)
    raise FileNotFoundError("cifar10-jpeg.tar.gz not found in $ROBUST_DATA or ../shared/data")


@pytest.fixture(scope="module")
def images() -> dict[tuple[int, int, int], torch.Tensor]:
    """64 real images per dataset shape, as [0,1] float NCHW."""
    root = _data_dir()
    cifar = []
    with tarfile.open(root / "cifar10-jpeg.tar.gz", "r:gz") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".jpg"):
                img = Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB")
                cifar.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1))
                if len(cifar) == 64:
                    break
    x32 = torch.stack(cifar).float() / 255
    with gzip.open(root / "fashion-mnist" / "train-images-idx3-ubyte.gz", "rb") as f:
        f.read(16)
        fm = np.frombuffer(f.read(64 * 28 * 28), dtype=np.uint8).reshape(64, 1, 28, 28)
    x28 = torch.from_numpy(fm.copy()).float() / 255
    x64 = F.interpolate(x32, size=64, mode="bilinear", align_corners=False).clamp(0, 1)
    return {(3, 32, 32): x32, (1, 28, 28): x28, (3, 64, 64): x64}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Many small ops on a shared 2-core machine: one intra-op thread avoids the spin-wait
    # stalls of an oversubscribed thread pool (10x faster here under load).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make(arch: str, shape=(3, 32, 32), num_classes: int = 10, seed: int = 0, **kwargs) -> NormalizedModel:
    torch.manual_seed(seed)
    c = shape[0]
    return build_model(
        arch,
        num_classes=num_classes,
        input_shape=shape,
        mean=[0.5] * c,
        std=[0.5] * c,
        **{**SMALL.get(arch, {}), **kwargs},
    )


# --- every model, every dataset shape ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("arch", MODELS.names())
def test_forward_every_model_every_shape(arch, shape, images):
    x = images[shape][:2]
    for num_classes in (10, 100):
        model = make(arch, shape, num_classes).eval()
        assert isinstance(model, NormalizedModel)
        with torch.no_grad():
            out = model(x)
        assert out.shape == (2, num_classes)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("arch", MODELS.names())
def test_deterministic_and_channels_last(arch, images):
    a, b = make(arch, seed=3), make(arch, seed=3)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    x = images[(3, 32, 32)][:2]
    a.eval()
    with torch.no_grad():
        ref = a(x)
        b = b.to(memory_format=torch.channels_last).eval()
        out = b(x.contiguous(memory_format=torch.channels_last))
    # Relative to the logits' scale: deep nets at init in eval mode (BN stats 0/1) give logits of 1e6.
    scale = ref.abs().max().clamp_min(1)
    torch.testing.assert_close(out / scale, ref / scale, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ["resnet20", "preact-resnet18", "fast"])
def test_channels_last_input_gradients_match(arch, images):
    # Attacks differentiate eval-mode models with respect to the input.
    x = images[(3, 32, 32)][:4]
    y = torch.arange(4)
    grads = []
    for channels_last in (False, True):
        model = make(arch, width=8) if arch == "preact-resnet18" else make(arch)
        model.eval()
        xi = x.clone()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            xi = xi.contiguous(memory_format=torch.channels_last)
        xi.requires_grad_(True)
        F.cross_entropy(model(xi), y).backward()
        grads.append(xi.grad)
    scale = grads[0].abs().max()
    torch.testing.assert_close(grads[1] / scale, grads[0] / scale, rtol=1e-4, atol=1e-5)


def test_channels_last_training_step_matches_in_float64(images):
    # In float32, train-mode BatchNorm backward cancels so much that the two layouts'
    # rounding differs by ~1% in the input gradient; float64 shows they compute the same.
    x = images[(3, 32, 32)][:8].double()
    y = torch.arange(8) % 10
    grads = []
    for channels_last in (False, True):
        model = make("resnet20").double()
        xi = x.clone()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            xi = xi.contiguous(memory_format=torch.channels_last)
        xi.requires_grad_(True)
        F.cross_entropy(model(xi), y).backward()
        grads.append((xi.grad, model.net.conv1.weight.grad, model.net.linear.weight.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "arch,millions",
    [
        ("resnet20", 0.27),
        ("resnet32", 0.46),
        ("resnet44", 0.66),
        ("resnet56", 0.85),
        ("resnet110", 1.7),
        ("resnet18", 11.17),
    ],
)
def test_parameter_counts_match_the_papers(arch, millions):
    # He et al. (2016) Table 6, and Kuang Liu's ResNet-18 for CIFAR-10.
    n = sum(p.numel() for p in make(arch).parameters())
    assert round(n / 1e6, 2 if millions < 1.5 else 1 if millions < 10 else 2) == millions


def test_wide_resnet_full_width(images):
    # Zagoruyko & Komodakis: WRN-28-10 has 36.5M parameters, WRN-34-10 46.2M.
    for arch, millions in (("wrn-28-10", 36.5), ("wrn-34-10", 46.2)):
        model = make(arch, widen=10).eval()
        assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == millions
    with torch.no_grad():
        out = model(images[(3, 32, 32)][:1])
    assert out.shape == (1, 10) and torch.isfinite(out).all()
    custom = make("wrn", depth=16, widen=2)
    assert len(custom.net.block1) == 2 and custom.net.fc.in_features == 128


# --- Normalize ---------------------------------------------------------------------------------------------------


def test_normalize_by_hand_and_buffers(images):
    mean, std = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]
    norm = Normalize(mean, std)
    x = images[(3, 32, 32)][:4]
    expected = torch.empty_like(x)
    for c in range(3):
        expected[:, c] = (x[:, c] - mean[c]) / std[c]
    torch.testing.assert_close(norm(x), expected)
    state = norm.state_dict()
    assert set(state) == {"mean", "std"} and state["mean"].shape == (1, 3, 1, 1)
    assert not list(norm.parameters())
    moved = norm.to(torch.float64)
    assert moved.mean.dtype == torch.float64 and moved.std.dtype == torch.float64
    assert norm.to("meta").std.device.type == "meta"


def test_normalized_model_exposes_mean_std_and_normalizes_first(images):
    model = build_model("cnn", num_classes=10, input_shape=(3, 32, 32), mean=[0.1, 0.2, 0.3], std=[0.5, 0.25, 0.125])
    assert model.mean.shape == (3,) and model.std.dtype == torch.float32
    assert model.std.tolist() == [0.5, 0.25, 0.125]
    assert "normalize.mean" in model.state_dict() and "normalize.std" in model.state_dict()
    model.eval()
    x = images[(3, 32, 32)][:2]
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.net(model.normalize(x)))
        z = (x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.25, 0.125]).view(1, 3, 1, 1)
        torch.testing.assert_close(model(x), model.net(z))


@pytest.mark.parametrize(
    "mean,std",
    [
        ([0.5, 0.5], [0.5, 0.5, 0.5]),
        ([0.5] * 3, [0.5, 0.0, 0.5]),
        ([0.5] * 3, [0.5, float("nan"), 0.5]),
        ([0.5], [0.5]),
    ],
)
def test_bad_normalization_values(mean, std):
    with pytest.raises(RobustError):
        build_model("cnn", num_classes=10, input_shape=(3, 32, 32), mean=mean, std=std)


def test_resolve_normalization_modes():
    info = SimpleNamespace(mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26), input_shape=(3, 32, 32))
    assert NORMALIZATIONS == ("seed", "dataset", "none")
    assert resolve_normalization("seed", info) == ((0.5,) * 3, (0.5,) * 3)
    assert resolve_normalization("dataset", info) == (info.mean, info.std)
    assert resolve_normalization("none", info) == ((0.0,) * 3, (1.0,) * 3)
    gray = SimpleNamespace(mean=(0.286,), std=(0.353,), input_shape=(1, 28, 28))
    assert resolve_normalization("seed", gray) == ((0.5,), (0.5,))
    assert resolve_normalization("dataset", gray) == ((0.286,), (0.353,))
    with pytest.raises(RobustError, match="valid normalizations: seed, dataset, none"):
        resolve_normalization("imagenet", info)
    with pytest.raises(RobustError):
        resolve_normalization("dataset", SimpleNamespace(mean=(0.5,), std=(0.5,), input_shape=(3, 32, 32)))


def test_seed_normalization_maps_pixels_to_minus_one_one():
    info = SimpleNamespace(mean=(0.3,) * 3, std=(0.2,) * 3, input_shape=(3, 32, 32))
    norm = Normalize(*resolve_normalization("seed", info))
    ends = norm(torch.stack([torch.zeros(3, 2, 2), torch.ones(3, 2, 2)]))
    assert ends[0].eq(-1).all() and ends[1].eq(1).all()


# --- rebuilding from (arch, options) -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arch,kwargs,shape",
    [
        ("cnn", {"maps": "8,16", "bn": False, "skip": True, "dropout": 0.0}, (1, 28, 28)),
        ("vgg", {"width": 8, "hidden": 0}, (3, 64, 64)),
        ("resnet18", {"blocks": [1, 1, 1, 1], "width": 8}, (3, 32, 32)),
        ("resnet20", {"shortcut": "B"}, (3, 32, 32)),
        ("preact-resnet18", {"blocks": "1,1,1,1", "width": 8}, (3, 32, 32)),
        ("wrn", {"depth": 10, "widen": 2, "dropout": 0.3}, (3, 32, 32)),
        ("fast", {"widths": "16,32,32"}, (3, 32, 32)),
        ("tv-resnet18", {"stem": "cifar"}, (1, 28, 28)),
    ],
)
def test_state_dict_round_trip_through_metadata(arch, kwargs, shape, images, tmp_path):
    c = shape[0]
    model = make(arch, shape, 10, seed=1, **kwargs)
    x = images[shape][:8]
    model.train()
    F.cross_entropy(model(x), torch.arange(8) % 10).backward()  # moves BN running stats off their defaults
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    meta = json.loads(
        json.dumps(
            {
                "arch": model.arch,
                "arch_kwargs": model.arch_kwargs,
                "num_classes": 10,
                "input_shape": list(model.input_shape),
                "mean": model.mean.tolist(),
                "std": model.std.tolist(),
            }
        )
    )
    torch.save(model.state_dict(), tmp_path / "m.pth")
    torch.manual_seed(99)  # a different init: the weights must come from the file
    rebuilt = build_model(
        meta["arch"],
        num_classes=meta["num_classes"],
        input_shape=tuple(meta["input_shape"]),
        mean=meta["mean"],
        std=meta["std"],
        **meta["arch_kwargs"],
    )
    rebuilt.load_state_dict(torch.load(tmp_path / "m.pth", weights_only=True))
    assert rebuilt.mean.tolist() == [0.5] * c
    model.eval()
    rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)


def test_string_and_list_options_build_the_same_net():
    a = make("cnn", maps="8,16,32", bn="false", skip="true")
    b = make("cnn", maps=[8, 16, 32], bn=False, skip=True)
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


def test_cli_style_string_values():
    net = make("fast", widths="8 16 16", logit_scale="1/8").net
    assert net.logit_scale == 0.125 and net.head.in_features == 16
    assert make("cnn", dropout="0.3", maps="8").net.features[0].drop.p == pytest.approx(0.3)
    assert make("vgg", width="8", hidden="0").net.classifier[-1].in_features == 32 * 4 * 4
    with pytest.raises(RobustError, match="logit_scale"):
        make("fast", logit_scale="1/0")


def test_init_only_options_are_kept_apart(tmp_path):
    import torchvision

    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "imagenet.pth")
    model = make("tv-resnet18", weights=str(tmp_path / "imagenet.pth"), stem="auto")
    assert model.arch == "tv-resnet18"
    assert model.arch_kwargs == {"stem": "auto"}
    assert model.init_kwargs == {"weights": str(tmp_path / "imagenet.pth")}
    assert model.num_classes == 10 and model.input_shape == (3, 32, 32)


# --- the seeds' CNNs ---------------------------------------------------------------------------------------------


def test_cnn_block_layout():
    net = make("cnn", maps="8,16", dropout=0.25).net
    block = net.features[0]
    kinds = [type(m) for m in block.body]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d]
    assert block.body[0].kernel_size == (3, 3) and block.body[0].bias is None
    assert block.skip is None and isinstance(block.drop, nn.Dropout) and block.drop.p == 0.25
    assert len(net.features) == 2 and net.fc.in_features == 16 and isinstance(net.pool, nn.AdaptiveAvgPool2d)
    plain = make("cnn", maps="8", bn=False, skip=True).net.features[0]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert plain.body[0].bias is not None
    assert plain.skip.kernel_size == (1, 1) and plain.skip.stride == (2, 2)


def test_cnn_skip_is_added_to_the_pooled_output(images):
    block = make("cnn", maps="8", skip=True, dropout=0.0).net.features[0].eval()
    x = images[(3, 32, 32)][:2]
    with torch.no_grad():
        torch.testing.assert_close(block(x), block.body(x) + block.skip(x))


def test_vgg_layout():
    net = make("vgg").net
    convs = [m.out_channels for m in net.features if isinstance(m, nn.Conv2d)]
    assert convs == [32, 32, 64, 64, 128, 128]
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.features) == 3
    linears = [m for m in net.classifier if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(128 * 4 * 4, 128), (128, 10)]


def test_resnet_blocks_and_shortcuts():
    deep = make("resnet18", blocks="5,5,5,5", width=16).net
    assert [len(s) for s in deep.layers] == [5, 5, 5, 5]
    assert deep.conv1.kernel_size == (3, 3) and deep.conv1.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in deep.modules())
    option_a = make("resnet20").net
    assert option_a.layers[1][0].pad_shortcut == (8, 8)
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in option_a.modules())
    option_b = make("resnet20", shortcut="b").net
    assert isinstance(option_b.layers[1][0].shortcut[0], nn.Conv2d)


# --- errors ------------------------------------------------------------------------------------------------------


def test_unknown_arch_lists_valid_names():
    with pytest.raises(RobustError, match="unknown model 'resnet19'.*resnet18.*wrn-28-10"):
        make("resnet19")
    with pytest.raises(RobustError, match="unknown torchvision model 'resnet9000'.*resnet101"):
        make("tv-resnet9000")


@pytest.mark.parametrize(
    "arch,kwargs,fragment",
    [
        ("cnn", {"mapz": "16"}, "no option mapz; valid options: maps, dropout, bn, skip"),
        ("wrn-28-10", {"depth": 16}, "no option depth"),
        ("cnn", {"maps": "16,x"}, "maps"),
        ("cnn", {"maps": ""}, "maps"),
        ("cnn", {"maps": [16, 0]}, "maps"),
        ("cnn", {"dropout": 1.5}, "dropout"),
        ("cnn", {"bn": "maybe"}, "bn"),
        ("vgg", {"width": 2.5}, "width"),
        ("resnet18", {"blocks": "2,two"}, "blocks"),
        ("resnet20", {"shortcut": "C"}, "shortcut"),
        ("wrn", {"depth": 27}, "depth"),
        ("fast", {"widths": "64,-1,64"}, "widths"),
        ("tv-resnet18", {"stem": "tiny"}, "stem"),
        ("tv-mobilenet_v2", {"stem": "cifar"}, "stem=cifar"),
        ("cnn", {"maps": torch.tensor([16])}, "JSON"),
    ],
)
def test_bad_options_give_one_line_errors(arch, kwargs, fragment):
    with pytest.raises(RobustError) as err:
        make(arch, **kwargs)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_bad_shapes_and_class_counts():
    for bad in [
        dict(num_classes=0, input_shape=(3, 32, 32)),
        dict(num_classes=10, input_shape=(32, 32)),
        dict(num_classes=True, input_shape=(3, 32, 32)),
        dict(num_classes=10, input_shape=(3, 0, 32)),
    ]:
        with pytest.raises(RobustError):
            build_model("cnn", mean=[0.5] * 3, std=[0.5] * 3, **bad)


def test_torchvision_model_that_cannot_take_the_input_size_is_refused():
    with pytest.raises(RobustError, match="tv-alexnet cannot take 3x32x32 inputs"):
        make("tv-alexnet")


def test_help_text_names_options_and_defaults():
    text = model_kwargs_help("cnn")
    assert "maps (default 16,32,64)" in text and "skip (default false)" in text
    assert "tv-<name>" in model_kwargs_help()
    assert option_defaults("fast")["widths"] == "64,128,128"
    assert set(option_defaults("tv-resnet101")) == {"pretrained", "weights", "stem"}


# --- torchvision models ------------------------------------------------------------------------------------------


def test_tv_resnet18_small_stem_on_32x32():
    net = make("tv-resnet18").net
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1) and net.conv1.in_channels == 3
    assert isinstance(net.maxpool, nn.Identity)
    assert net.fc.out_features == 10
    big = make("tv-resnet18", (3, 64, 64)).net
    assert big.conv1.kernel_size == (7, 7) and isinstance(big.maxpool, nn.MaxPool2d)
    forced = make("tv-resnet18", (3, 64, 64), stem="cifar").net
    assert forced.conv1.kernel_size == (3, 3)
    dense = make("tv-densenet121").net
    assert dense.features.conv0.kernel_size == (3, 3) and isinstance(dense.features.pool0, nn.Identity)


def test_tv_weights_path_loads_a_state_dict(tmp_path, images):
    import torchvision

    torch.manual_seed(7)
    imagenet = torchvision.models.resnet18()
    torch.save(imagenet.state_dict(), tmp_path / "resnet18.pth")
    # pretrained=true with a local file reads the file and downloads nothing (the CLI's --pretrained --weights).
    model = make(
        "tv-resnet18", (3, 64, 64), num_classes=5, seed=0, pretrained=True, weights=str(tmp_path / "resnet18.pth")
    )
    own, ref = model.net.state_dict(), imagenet.state_dict()
    assert all(torch.equal(own[k], ref[k]) for k in ref if not k.startswith("fc."))
    assert model.net.fc.out_features == 5
    # Grey images: the first conv sums the RGB filters, so a grey picture gives the RGB net's features.
    gray = make("tv-resnet18", (1, 64, 64), seed=0, weights=str(tmp_path / "resnet18.pth"))
    torch.testing.assert_close(gray.net.conv1.weight, ref["conv1.weight"].sum(1, keepdim=True))
    x = images[(3, 64, 64)][:2].mean(1, keepdim=True)
    imagenet.eval()
    gray.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            gray.net.layer4(
                gray.net.layer3(
                    gray.net.layer2(gray.net.layer1(gray.net.maxpool(gray.net.relu(gray.net.bn1(gray.net.conv1(x))))))
                )
            ),
            imagenet.layer4(
                imagenet.layer3(
                    imagenet.layer2(
                        imagenet.layer1(
                            imagenet.maxpool(imagenet.relu(imagenet.bn1(imagenet.conv1(x.expand(-1, 3, -1, -1)))))
                        )
                    )
                )
            ),
            rtol=1e-4,
            atol=1e-4,
        )


def test_tv_weights_path_errors(tmp_path):
    import torchvision

    with pytest.raises(RobustError, match="does not exist"):
        make("tv-resnet18", weights=str(tmp_path / "missing.pth"))
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "r34.pth")
    with pytest.raises(RobustError, match="does not fit tv-resnet18.*unexpected: layer1.2"):
        make("tv-resnet18", weights=str(tmp_path / "r34.pth"))
    torch.save({"payload": SimpleNamespace(a=1)}, tmp_path / "code.pth")  # needs unpickling of a class
    with pytest.raises(RobustError, match="weights_only=True"):
        make("tv-resnet18", weights=str(tmp_path / "code.pth"))


def test_tv_pretrained_without_network_is_one_clear_error(monkeypatch, tmp_path):
    import torch.hub

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    seen = []

    def no_network(*args, **kwargs):
        seen.append(socket.getdefaulttimeout())
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "urlopen", no_network)
    before = socket.getdefaulttimeout()
    with pytest.raises(RobustError) as err:
        make("tv-resnet18", pretrained=True)
    message = str(err.value)
    assert "cannot download pretrained weights for tv-resnet18" in message and "weights=PATH" in message
    assert seen and seen[0] is not None and seen[0] <= 60  # a download cannot hang
    assert socket.getdefaulttimeout() == before

    def timeout(*args, **kwargs):
        raise TimeoutError("timed out")

    monkeypatch.setattr(torch.hub, "urlopen", timeout)
    with pytest.raises(RobustError, match="timed out"):
        make("tv-mobilenet_v3_small", pretrained="true")


# --- the fast (airbench-style) net -------------------------------------------------------------------------------


def test_fast_net_structure():
    model = make("fast", widths="16,32,48")
    net = model.net
    # Frozen parts are buffers or absent, so toggling requires_grad (as attacks do) cannot train them.
    model.requires_grad_(False)
    model.requires_grad_(True)
    params = dict(model.named_parameters())
    assert "net.whiten.weight" not in params and "net.whiten.weight" in model.state_dict()
    assert "net.whiten.bias" in params
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 6 and all(m.weight is None and m.bias.requires_grad for m in bns)
    assert bns[0].momentum == 0.4 and bns[0].eps == 1e-12
    assert [g.conv2.out_channels for g in net.layers] == [16, 32, 48]
    assert net.head.bias is None and net.head.in_features == 48
    assert net.logit_scale == pytest.approx(1 / 9)
    # Dirac init: the first in_channels filters of each conv pass their input channel through.
    w = net.layers[1].conv1.weight
    assert torch.equal(w[:16, :, 1, 1], torch.eye(16)) and w[:16].abs().sum() == 16


def test_fast_net_tta_averages_mirrored_and_shifted_views(images):
    x = images[(3, 32, 32)][:6]
    torch.manual_seed(0)
    plain = make("fast", widths="8,8,8")
    flip, shift = copy.deepcopy(plain), copy.deepcopy(plain)
    flip.net.tta, shift.net.tta = "flip", "flip-translate"
    for m in (plain, flip, shift):
        m.eval()
    with torch.no_grad():
        pad = F.pad(plain.normalize(x), (1, 1, 1, 1), mode="reflect")
        views = [plain.net.logits(v) for v in (pad[..., :32, :32], pad[..., 2:, 2:])]
        views_m = [plain.net.logits(v.flip(-1)) for v in (pad[..., :32, :32], pad[..., 2:, 2:])]
        mirrored = 0.5 * (plain(x) + plain(x.flip(-1)))
        torch.testing.assert_close(flip(x), mirrored)
        torch.testing.assert_close(flip(x.flip(-1)), flip(x))  # a mirror-symmetric classifier
        expected = 0.5 * mirrored + 0.25 * sum(0.5 * (a + b) for a, b in zip(views, views_m))
        torch.testing.assert_close(shift(x), expected)
        assert not torch.allclose(shift(x), mirrored)
    shift.train()  # training steps see one view
    torch.testing.assert_close(shift(x), plain.train()(x))
    with pytest.raises(RobustError, match="model.kwargs.tta: must be one of"):
        make("fast", tta="crops")


def test_fast_net_optimizer_groups_scale_the_shifts_learning_rate():
    from robustbench_local.optim import LRSchedule, build_optimizer, param_groups
    from robustbench_local.specs import TrainSpec

    model = make("fast", widths="8,8,8", bias_lr_scale="64")
    spec = TrainSpec(lr=0.5, weight_decay=0.002)
    groups = param_groups(model, spec)
    shifts = {id(p) for p in groups[1]["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in shifts}
    assert names == {"net.whiten.bias"} | {f"net.layers.{i}.norm{j}.bias" for i in range(3) for j in (1, 2)}
    assert groups[1]["lr"] == pytest.approx(32.0) and groups[1]["weight_decay"] == pytest.approx(0.002 / 64)
    assert groups[0]["lr"] == 0.5 and groups[0]["weight_decay"] == 0.002
    opt = build_optimizer(spec, groups)
    sched = LRSchedule(opt, "onecycle", spec.lr, 2, 10)
    for _ in range(7):
        sched.step()
        assert opt.param_groups[1]["lr"] == pytest.approx(64 * opt.param_groups[0]["lr"])
    cnn = make("cnn", maps="4,4")
    (only,) = param_groups(cnn, spec)  # no hook: one group of every parameter, the run's lr and decay
    assert [id(p) for p in only["params"]] == [id(p) for p in cnn.parameters()] and set(only) == {"params"}
    with pytest.raises(RobustError, match="model.kwargs.bias_lr_scale: must be > 0"):
        make("fast", bias_lr_scale="0")


def test_fast_batchnorm_matches_batchnorm_with_unit_scale():
    x = torch.randn(8, 6, 5, 5) * 3 + 1
    fast = make("fast", widths="6,6,6").net.layers[0].norm1
    ref = nn.BatchNorm2d(6, eps=1e-12, momentum=0.4)
    with torch.no_grad():
        fast.bias.copy_(torch.linspace(-1, 1, 6))
        ref.bias.copy_(fast.bias)
    torch.testing.assert_close(fast(x), ref(x))  # training mode: batch statistics, running stats updated
    torch.testing.assert_close(fast.running_mean, ref.running_mean)
    torch.testing.assert_close(fast.running_var, ref.running_var)
    fast.eval()
    ref.eval()
    torch.testing.assert_close(fast(x), ref(x))


def test_fast_net_whitening_decorrelates_real_patches(images):
    model = make("fast", widths="8,8,8")
    z = model.normalize(images[(3, 32, 32)])
    model.net.init_whitening(z, eps=1e-9)
    conv = model.net.whiten
    assert conv.weight.shape == (24, 3, 2, 2)
    with torch.no_grad():
        out = F.conv2d(z, conv.weight)[:, :12]  # the first half: eigenvector filters, unbiased
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12).double()
    cov = flat.T @ flat / len(flat)
    # the convolution runs in float32: its rounding leaves up to about 2.3e-3 on some CPUs
    torch.testing.assert_close(cov, torch.eye(12, dtype=torch.float64), rtol=0, atol=4e-3)
    torch.testing.assert_close(conv.weight[12:], -conv.weight[:12])

"""timm models as ``timm-NAME``: built for the dataset by build_model, and a plain timm
state_dict evaluated by `robust eval --arch timm-NAME --weights FILE` exactly as the
same weights in a robust_train checkpoint."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

timm = pytest.importorskip("timm")

from robustbench_local.checkpoint import save_checkpoint  # noqa: E402
from robustbench_local.cli import main  # noqa: E402
from robustbench_local.errors import RobustError  # noqa: E402
from robustbench_local.models import build_model, model_kwargs_help  # noqa: E402
from robustbench_local.models.timm_models import timm_normalization  # noqa: E402

SHAPE = (3, 32, 32)
CIFAR10_MEAN, CIFAR10_STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]


def _timm_state(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return timm.create_model(name, num_classes=10).state_dict()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A seeded timm resnet18 (10 classes) saved as a plain state_dict, and once wrapped
    the way DataParallel training scripts save it."""
    root = tmp_path_factory.mktemp("timm")
    state = _timm_state("resnet18")
    torch.save(state, root / "sd.pth")
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, root / "wrapped.pth")
    return root, state


def _eval(tmp_path, *args, results="res", n=16, seed=0):
    """`robust eval --attack pgd --k 3 --n N --seed S ARGS --results DIR`: (CLI result, the one record or None)."""
    out = tmp_path / results
    res = CliRunner().invoke(
        main, ["eval", "--attack", "pgd", "--k", "3", "--n", str(n), "--seed", str(seed), *args, "--results", str(out)]
    )
    records = sorted((out / "records").glob("*.json")) if (out / "records").is_dir() else []
    assert len(records) <= 1
    return res, (json.loads(records[0].read_text()) if records else None)


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _same_metrics(a: dict, b: dict) -> None:
    for key in ("n", "clean_acc", "robust_acc", "robust_flags"):
        assert a["metrics"][key] == b["metrics"][key], key


def test_build_model_gives_logits_for_the_dataset():
    torch.manual_seed(0)
    model = build_model("timm-resnet18", num_classes=10, input_shape=SHAPE, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    out = model.eval()(torch.rand(4, *SHAPE))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    assert model.arch == "timm-resnet18" and model.arch_kwargs == {}
    # grey images: timm's in_chans gives the first conv one input channel
    grey = build_model("timm-resnet18", num_classes=7, input_shape=(1, 28, 28), mean=(0.5,), std=(0.5,))
    assert grey.net.conv1.in_channels == 1 and grey.eval()(torch.rand(2, 1, 28, 28)).shape == (2, 7)


def test_bad_names_and_sizes_are_one_line():
    with pytest.raises(RobustError) as e:
        build_model("timm-resnt18", num_classes=10, input_shape=SHAPE, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    msg = str(e.value)
    assert "\n" not in msg and "unknown timm model 'resnt18'" in msg and "resnet18" in msg.split("close names:")[1]
    with pytest.raises(RobustError) as e:  # a ViT has a fixed 224x224 patch grid
        build_model("timm-vit_tiny_patch16_224", num_classes=10, input_shape=SHAPE, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    assert "\n" not in str(e.value) and "timm-vit_tiny_patch16_224 cannot take 3x32x32 inputs" in str(e.value)


def test_listed_in_model_help():
    assert "timm-<name>: any timm model (pip install timm)" in model_kwargs_help().splitlines()
    assert "pretrained (default false)" in model_kwargs_help("timm-resnet18")


def test_normalization_from_pretrained_cfg():
    assert timm_normalization("resnet18", 3) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert timm_normalization("vit_tiny_patch16_224", 3) == ((0.5,) * 3, (0.5,) * 3)
    mean, std = timm_normalization("resnet18", 1)  # grey: the mean of the colour statistics
    assert mean == pytest.approx((0.449,)) and std == pytest.approx((0.226,))


def test_without_timm_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` raise ImportError
    with pytest.raises(RobustError, match=r"timm-NAME needs timm: pip install timm"):
        build_model("timm-resnet18", num_classes=10, input_shape=SHAPE, mean=CIFAR10_MEAN, std=CIFAR10_STD)


def test_package_import_does_not_import_timm():
    code = "import sys, robustbench_local, robustbench_local.models; assert 'timm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_cli_evaluates_plain_timm_state_dicts(weights, tmp_path):
    root, _ = weights
    res, rec = _eval(tmp_path, "--arch", "timm-resnet18", "--weights", str(root / "sd.pth"), "--dataset", "cifar10")
    assert res.exit_code == 0, res.output
    ck = rec["checkpoint"]
    assert ck["arch"] == "timm-resnet18" and ck["normalization"] == "timm"
    assert "timm's pretrained_cfg for resnet18" in ck["normalization_source"]
    assert ck["mean"] == [0.485, 0.456, 0.406] and ck["std"] == [0.229, 0.224, 0.225]
    assert ck["sha256"] == _sha256(root / "sd.pth") and rec["metrics"]["n"] == 16

    res, wrapped = _eval(
        tmp_path,
        "--arch",
        "timm-resnet18",
        "--weights",
        str(root / "wrapped.pth"),
        "--dataset",
        "cifar10",
        results="wrapped",
    )
    assert res.exit_code == 0, res.output
    assert wrapped["checkpoint"]["sha256"] == _sha256(root / "wrapped.pth")
    assert wrapped["checkpoint"]["source"]["state_key"] == "state_dict"
    _same_metrics(wrapped, rec)

    res, stated = _eval(
        tmp_path,
        "--arch",
        "timm-resnet18",
        "--weights",
        str(root / "sd.pth"),
        "--dataset",
        "cifar10",
        "--normalization",
        "cifar10",
        results="stated",
    )
    assert res.exit_code == 0, res.output
    ck = stated["checkpoint"]
    assert ck["normalization"] == "cifar10" and ck["normalization_source"] == "--normalization cifar10"
    assert ck["mean"] == pytest.approx(CIFAR10_MEAN) and ck["std"] == pytest.approx(CIFAR10_STD)


def test_cli_refuses_weights_of_another_architecture(tmp_path):
    path = tmp_path / "resnet34.pth"
    torch.save(_timm_state("resnet34"), path)
    res, rec = _eval(tmp_path, "--arch", "timm-resnet18", "--weights", str(path), "--dataset", "cifar10")
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "do not fit the model" in lines[0], res.output
    assert "unexpected layer1.2." in lines[0] and str(path) in lines[0]
    assert rec is None


def test_same_metrics_as_a_robust_train_checkpoint(weights, tmp_path):
    root, state = weights
    model = build_model(
        "timm-resnet18", num_classes=10, input_shape=SHAPE, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]
    )
    model.net.load_state_dict(state)
    meta = {
        "arch": "timm-resnet18",
        "arch_kwargs": {},
        "num_classes": 10,
        "input_shape": list(SHAPE),
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "dataset": "cifar10",
    }
    ckpt = save_checkpoint(tmp_path / "best.pth", model, meta)
    # more points than the other tests, so that several are attacked
    res, ours = _eval(tmp_path, str(ckpt), results="ours", n=64, seed=3)
    assert res.exit_code == 0, res.output
    res, foreign = _eval(
        tmp_path,
        "--arch",
        "timm-resnet18",
        "--weights",
        str(root / "sd.pth"),
        "--dataset",
        "cifar10",
        results="foreign",
        n=64,
        seed=3,
    )
    assert res.exit_code == 0, res.output
    assert ours["metrics"]["n"] == 64 and ours["metrics"]["attacked"] > 0
    _same_metrics(ours, foreign)

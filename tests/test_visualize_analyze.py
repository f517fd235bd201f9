"""`robust visualize` and `robust analyze` on real CIFAR-10 test images with the
seed CNN trained for a few steps (these tests check plumbing, not accuracy)."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from matplotlib.colors import to_rgb
from PIL import Image

from robustbench_local.analyze import analyze, confusion_counts
from robustbench_local.attacks import AttackSpec
from robustbench_local.cli import main
from robustbench_local.threat import ThreatModel
from robustbench_local.visualize import (
    CORRECT,
    WRONG,
    adversarial_examples,
    default_grid_path,
    grid_figure,
    panel_arrays,
    render_grid,
)

EPS = 0.0313  # normalized; 0.01565 in pixels for std 0.5


@pytest.fixture(scope="module")
def model_meta(cifar10):
    from robustbench_local.models import build_model

    torch.manual_seed(0)
    model = build_model("cnn", num_classes=10, input_shape=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3)
    sub = cifar10.train.subset(640, seed=0)
    x, y = sub.x.float() / 255, sub.y
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for i in range(0, len(y), 64):  # 10 steps: predictions that vary, nothing more
        loss = F.cross_entropy(model(x[i : i + 64]), y[i : i + 64])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    meta = {
        "arch": "cnn",
        "arch_kwargs": {},
        "num_classes": 10,
        "input_shape": [3, 32, 32],
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "normalization": "seed",
        "dataset": {"name": "cifar10"},
        "classes": list(cifar10.info.classes),
        "method": "standard",
        "adv": "none",
    }
    return model, meta


@pytest.fixture(scope="module")
def checkpoint(model_meta, tmp_path_factory):
    from robustbench_local.checkpoint import save_checkpoint

    path = tmp_path_factory.mktemp("runs") / "cifar10-cnn-tiny" / "best.pth"
    save_checkpoint(path, model_meta[0], model_meta[1])
    return path


def _pgd(k: int = 3) -> AttackSpec:
    return AttackSpec("pgd", ThreatModel("linf", EPS, EPS / 4, "normalized"), k=k)


# ----------------------------------------------------------------------------- visualize


def test_perturbation_panel_is_the_amplified_difference():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 8, 8, generator=g)
    delta = (torch.rand(3, 8, 8, generator=g) - 0.5) * 0.02  # |delta| <= 0.01: x10 stays inside [0,1]
    delta[0, 0, 0] = 0.2  # x10 = 2.0 -> clipped to 1
    delta[1, 0, 0] = -0.2  # -> clipped to 0
    x_adv = x + delta
    clean, adv, pert = panel_arrays(x, x_adv)
    assert clean.shape == adv.shape == pert.shape == (8, 8, 3)
    np.testing.assert_array_equal(clean, x.permute(1, 2, 0).numpy())
    np.testing.assert_array_equal(adv, x_adv.permute(1, 2, 0).numpy())
    expected = np.clip(0.5 + 10 * (x_adv - x).permute(1, 2, 0).numpy(), 0, 1)
    np.testing.assert_allclose(pert, expected, atol=1e-6)
    assert pert[0, 0, 0] == 1.0 and pert[0, 0, 1] == 0.0
    # no perturbation is flat grey
    assert np.all(panel_arrays(x, x.clone())[2] == 0.5)


def test_grid_has_three_panels_per_image(model_meta, cifar10):
    ex = adversarial_examples(model_meta, _pgd(), n=7, seed=3, data=cifar10, device="cpu")
    assert len(ex.y) == 7
    # the same points robust eval --n 7 --seed 3 would use
    assert ex.index.tolist() == cifar10.test.subset(7, seed=3).index.tolist()
    # inside the threat ball: 0.0313 normalized = 0.01565 pixels for std 0.5
    assert (ex.x_adv - ex.x).abs().max() <= EPS * 0.5 + 1e-6
    assert ex.x_adv.min() >= 0 and ex.x_adv.max() <= 1
    fig = grid_figure(ex)
    assert len(fig.axes) == 3 * 7
    for i in range(7):
        panels = panel_arrays(ex.x[i], ex.x_adv[i])
        axes = fig.axes[3 * i : 3 * i + 3]
        for ax, want in zip(axes, panels):
            np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), want, atol=1e-6)
        y, cp, ap = int(ex.y[i]), int(ex.clean_pred[i]), int(ex.adv_pred[i])
        clean_title, adv_title, true_title = (ax.title for ax in axes)
        assert clean_title.get_text().startswith(f"clean: {ex.classes[cp]} ")
        assert adv_title.get_text().startswith(f"adv: {ex.classes[ap]} ")
        assert true_title.get_text().startswith(f"true: {ex.classes[y]} ")
        green, red = to_rgb(CORRECT), to_rgb(WRONG)
        assert green[1] > max(green[0], green[2]) and red[0] > max(red[1], red[2])
        assert np.allclose(to_rgb(clean_title.get_color()), green if cp == y else red, atol=0.01)
        assert np.allclose(to_rgb(adv_title.get_color()), green if ap == y else red, atol=0.01)
        # confidence is the softmax probability of the shown class
        pct = f"{float(ex.adv_conf[i]):.0%}"
        assert adv_title.get_text().endswith(pct)


def test_grid_png_is_deterministic(model_meta, cifar10):
    ex = adversarial_examples(model_meta, AttackSpec("fgsm", ThreatModel(eps=EPS)), n=5, data=cifar10, device="cpu")
    a, b = render_grid(ex), render_grid(ex)
    assert a == b and a[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(io.BytesIO(a)).size[0] > 500


def test_default_grid_path():
    one = default_grid_path("results", "runs/cifar10-cnn-x/best.pth", _pgd(), several=False)
    assert one.as_posix() == "results/figures/cifar10-cnn-x-pgd.png"
    many = default_grid_path("results", "runs/cifar10-cnn-x/best.pth", _pgd(), several=True)
    assert many.as_posix() == "results/figures/cifar10-cnn-x-PGD-3-eps0.0313.png"


def test_visualize_cli_writes_one_grid_per_radius(checkpoint, tmp_path):
    res = CliRunner().invoke(
        main,
        [
            "visualize",
            str(checkpoint),
            "--attack",
            "pgd",
            "--k",
            "2",
            "--eps",
            "0.01,0.0313",
            "--n",
            "2",
            "--device",
            "cpu",
            "--results",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 0, res.output
    pngs = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert pngs == ["cifar10-cnn-tiny-PGD-2-eps0.01.png", "cifar10-cnn-tiny-PGD-2-eps0.0313.png"]
    for name in pngs:
        assert Image.open(tmp_path / "figures" / name).format == "PNG"
    assert res.output.count("flipped") == 2


def test_visualize_cli_bad_input(tmp_path, checkpoint):
    runner = CliRunner()
    res = runner.invoke(main, ["visualize", str(tmp_path / "missing.pth")])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = runner.invoke(main, ["visualize", str(checkpoint), "--attack", "nope"])
    assert res.exit_code == 2 and "nope" in res.output
    assert not (tmp_path / "results").exists()


# ----------------------------------------------------------------------------- analyze


def test_confusion_counts():
    y = np.array([0, 0, 1, 2, 2, 2])
    p = np.array([0, 1, 1, 0, 2, 2])
    np.testing.assert_array_equal(confusion_counts(y, p, 3), [[1, 1, 0], [0, 1, 0], [1, 0, 2]])


def test_analyze_clean(model_meta, cifar10):
    split = cifar10.test.subset(300, seed=1)  # a small split analyzed whole (n=None)
    a = analyze(model_meta, data=split, device="cpu")
    y = split.y.numpy()
    assert a.n == 300 and a.mode == "clean" and a.threat is None
    np.testing.assert_array_equal(a.confusion.sum(axis=1), np.bincount(y, minlength=10))
    np.testing.assert_allclose(a.normalized_confusion().sum(axis=1)[np.bincount(y, minlength=10) > 0], 1.0)
    # predictions agree with the model
    with torch.no_grad():
        logits = model_meta[0](split.x.float() / 255)
    assert a.predictions["pred"].tolist() == logits.argmax(1).tolist()
    np.testing.assert_allclose(a.predictions["confidence"], logits.softmax(1).max(1).values.numpy(), rtol=1e-5)
    assert a.predictions["index"].tolist() == split.index.tolist()
    assert a.top1 == pytest.approx((logits.argmax(1) == split.y).float().mean().item())
    top5 = (logits.topk(5, 1).indices == split.y[:, None]).any(1).float().mean().item()
    assert a.top5 == pytest.approx(top5) and a.top5 >= a.top1
    pc = a.per_class()
    assert pc["n"].tolist() == np.bincount(y, minlength=10).tolist()
    assert pc["correct"].sum() == int(a.predictions["correct"].sum())
    pairs = a.confused_pairs(5)
    assert (pairs["true"] != pairs["predicted"]).all() and pairs["count"].is_monotonic_decreasing
    for _, r in pairs.iterrows():
        assert r["count"] == a.confusion[r["true"], r["predicted"]]
    assert len(a.wrong_rows) == min(32, int((~a.predictions["correct"]).sum()))
    assert not a.wrong_rows["correct"].any()


def test_analyze_under_attack(model_meta, cifar10):
    clean = analyze(model_meta, n=120, data=cifar10, device="cpu")
    adv = analyze(model_meta, AttackSpec("fgsm", ThreatModel(eps=EPS)), n=120, data=cifar10, device="cpu")
    assert adv.mode == "FGSM-eps0.0313" and "0.01565 px" in adv.threat
    assert adv.predictions["index"].tolist() == clean.predictions["index"].tolist()
    assert adv.top1 <= clean.top1
    # points wrong clean are not attacked: they keep their clean prediction
    wrong = ~clean.predictions["correct"]
    assert (adv.predictions["pred"][wrong] == clean.predictions["pred"][wrong]).all()
    np.testing.assert_array_equal(adv.confusion.sum(axis=1), clean.confusion.sum(axis=1))


def test_analyze_cli_writes_every_file(checkpoint, tmp_path):
    res = CliRunner().invoke(
        main, ["analyze", str(checkpoint), "--n", "150", "--device", "cpu", "--results", str(tmp_path)]
    )
    assert res.exit_code == 0, res.output
    out = tmp_path / "analysis" / "cifar10-cnn-tiny"
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "clean-confused-pairs.csv",
        "clean-confusion.png",
        "clean-misclassified.png",
        "clean-per-class.csv",
        "clean-predictions.csv",
        "clean-summary.json",
    ]
    preds = pd.read_csv(out / "clean-predictions.csv")
    assert list(preds.columns[:6]) == ["index", "true", "true_name", "pred", "pred_name", "confidence"]
    assert len(preds) == 150 and preds["index"].is_unique
    per_class = pd.read_csv(out / "clean-per-class.csv")
    assert per_class["n"].sum() == 150
    summary = json.loads((out / "clean-summary.json").read_text())
    assert summary["top1"] == pytest.approx(preds["correct"].mean())
    assert "top-1" in res.output and "airplane" in res.output


def test_gradcam(model_meta, cifar10):
    from robustbench_local.errors import RobustError
    from robustbench_local.gradcam import gradcam, last_feature_map, resolve_layer

    model = model_meta[0]
    x = cifar10.test.x[:6].float() / 255
    # auto: the last feature map with spatial extent (not the 1x1 global pool)
    model.zero_grad(set_to_none=True)
    layer = resolve_layer(model, "auto", x)
    assert layer == last_feature_map(model, x) and layer != "net.pool"
    cam, cls = gradcam(model, "net.features.2.body.3", x)
    assert cam.shape == (6, 32, 32) and cam.min() >= 0 and cam.max() <= 1
    with torch.no_grad():
        assert cls.tolist() == model(x).argmax(1).tolist()
    # each map peaks at 1 unless the class gets no positive evidence at all
    peaks = cam.flatten(1).amax(1)
    assert ((peaks - 1).abs() < 1e-5).logical_or(peaks == 0).all()
    # no parameter gradients are left behind
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(RobustError, match="unknown layer 'nope'.*net.features.0.body.0"):
        resolve_layer(model, "nope", x)


def test_analyze_gradcam_file(model_meta, cifar10, tmp_path):
    a = analyze(
        model_meta,
        AttackSpec("fgsm", ThreatModel(eps=EPS)),
        n=20,
        data=cifar10,
        device="cpu",
        gradcam_layer="auto",
        gradcam_n=3,
    )
    assert a.gradcam.cam.shape == a.gradcam.cam_adv.shape == (3, 32, 32)
    paths = a.write(tmp_path)
    cam_png = [p for p in paths if "gradcam" in p.name]
    assert len(cam_png) == 1 and cam_png[0].name.startswith("FGSM-eps0.0313-gradcam-")
    assert Image.open(cam_png[0]).format == "PNG"

"""The GPU reproduction of fast adversarial training (benchmarks/gpu_fast_at.py) at its CPU
smoke size: it trains FGSM-RS at 8/255 in pixels with the 10/255 step, evaluates through
evaluate() and writes a JSON with intervals and the published figures beside ours."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the benchmarks/ folder of the checkout is importable as a package

from benchmarks import gpu_fast_at  # noqa: E402
from robustbench_local.errors import RobustError  # noqa: E402


def _figure_ok(f: dict) -> None:
    lo, hi = f["ci95"]
    assert f["n"] >= 1 and 0.0 <= lo <= f["acc"] <= hi <= 1.0
    assert f["minutes"] >= 0


def test_quick_run_writes_the_comparison_json(tmp_path):
    gpu_fast_at.run(quick=True, out_dir=tmp_path, device="cpu")
    data = json.loads((tmp_path / "gpu_fast_at-quick.json").read_text())
    assert data["benchmark"] == "gpu_fast_at" and data["quick"] is True
    assert data["device"]["type"] == "cpu" and data["device"]["name"]
    assert data["machine"]["device"] == "cpu"

    spec = data["spec"]
    assert spec["adv"] == "fgsm-rs" and spec["model"]["arch"] == "preact-resnet18"
    assert spec["model"]["normalize"] == "dataset" and spec["schedule"] == "onecycle" and spec["amp"] is True
    threat = data["training"]["threat"]  # as saved in best.pth
    assert threat["method"] == "fgsm-rs" and threat["norm"] == "linf" and threat["space"] == "pixel"
    assert threat["eps_pixel"] == pytest.approx(8 / 255) and threat["step_pixel"] == pytest.approx(10 / 255)
    assert threat["early_stop"] is True and threat["attack_bn"] == "train"
    assert data["training"]["epochs_run"] == 1 and data["training"]["minutes"] > 0

    ev = data["evaluation"]
    for key in ("clean", "fgsm", "clean_subset", "pgd", "autoattack", "worst_case"):
        _figure_ok(ev[key])
    assert ev["clean"]["n"] == 50 and ev["pgd"]["n"] == ev["autoattack"]["n"] == 32
    assert ev["pgd"]["eps_pixel"] == pytest.approx(8 / 255) and ev["pgd"]["options"]["restarts"] == 2
    # robust accuracy never exceeds clean accuracy on the same points
    assert ev["worst_case"]["acc"] <= min(ev["pgd"]["acc"], ev["autoattack"]["acc"]) <= ev["clean_subset"]["acc"]
    assert set(data["minutes"]) >= {"training", "clean", "pgd", "autoattack", "total"}

    rb = data["published"]["robustbench_Wong2020Fast"]
    assert (rb["clean_acc"], rb["autoattack_acc"]) == (0.8334, 0.4321)
    assert data["published"]["paper"]["train_minutes"] == 12 and data["published"]["paper"]["epochs"] == 15
    assert {c["figure"] for c in data["comparison"]} >= {"clean accuracy", "AutoAttack accuracy"}
    (target,) = data["targets"]
    assert target["op"] == "<=" and target["goal"] == 10.0
    assert target["value"] == pytest.approx(data["minutes"]["total"])


def test_full_run_follows_wong_et_al(tmp_path):
    """The full run's spec and attacks, built (and checked by TrainSpec) without training."""
    import torch

    spec = gpu_fast_at.train_spec(gpu_fast_at.FULL, torch.device("cuda"), tmp_path / "run")
    assert spec.model.arch == "preact-resnet18" and spec.model.kwargs == {} and spec.model.normalize == "dataset"
    assert (spec.epochs, spec.batch_size, spec.lr, spec.momentum, spec.weight_decay) == (15, 128, 0.2, 0.9, 5e-4)
    assert spec.schedule == "onecycle" and spec.nesterov is False and spec.optimizer == "sgd"
    assert spec.amp is True and spec.channels_last is True and spec.device == "cuda"
    assert spec.adv == "fgsm-rs" and spec.data.subset is None and spec.data.val_fraction == 0.02
    kw = spec.adv_kwargs
    assert kw["eps"] == pytest.approx(8 / 255) and kw["eta"] == pytest.approx(10 / 255) and kw["eps_space"] == "pixel"
    assert kw["early_stop"] is True and kw["val_n"] == 1000
    fgsm, pgd, aa = gpu_fast_at.attacks(gpu_fast_at.FULL)
    assert (pgd.options["k"], pgd.options["restarts"]) == (50, 10)
    assert pgd.threat.eps == pytest.approx(8 / 255) and pgd.threat.step == pytest.approx(2 / 255)
    assert aa.name == "autoattack" and aa.options["version"] == "standard" and aa.threat.space == "pixel"
    assert gpu_fast_at.FULL["n"] == 1000 and gpu_fast_at.FULL["n_clean"] is None  # clean on all 10,000


def test_full_run_without_a_gpu_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_fast_at.torch.cuda, "is_available", lambda: False)
    with pytest.raises(RobustError, match="meant for a GPU.*--device cpu"):
        gpu_fast_at.resolve_device("auto", quick=False)
    with pytest.raises(RobustError, match="no CUDA GPU"):
        gpu_fast_at.resolve_device("cuda", quick=False)
    assert gpu_fast_at.resolve_device("auto", quick=True).type == "cpu"
    assert gpu_fast_at.resolve_device("cpu", quick=False).type == "cpu"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the refusal is for machines without a GPU")
def test_command_line_refuses_the_cpu_in_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_fast_at.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert "meant for a GPU" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())

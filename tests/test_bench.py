"""Smoke tests of the benchmarks: each one runs at --quick sizes on real CIFAR-10
and writes a JSON that says what was measured and how. Wall-clock numbers are
never asserted; what is asserted holds whatever the machine's speed."""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from robustbench_local.cli import main as cli

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the benchmarks/ folder of the checkout is importable as a package

from benchmarks import common, run_all  # noqa: E402

pytestmark = pytest.mark.slow  # the default set at smoke sizes: about a minute on 2 idle cores


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    summary = run_all.run(quick=True, out_dir=out)
    return out, summary


def _load(out: Path, name: str) -> dict:
    path = out / f"{name}-quick.json"
    assert path.is_file(), f"{name} wrote no JSON"
    return json.loads(path.read_text())


def _timing_ok(t: dict) -> None:
    assert t["repeats"] == len(t["values"]) >= 1
    assert t["min"] <= t["median"] <= t["max"]
    assert all(v > 0 and math.isfinite(v) for v in t["values"])


@pytest.mark.parametrize("name", run_all.DEFAULT)
def test_each_benchmark_writes_its_json(quick_results, name):
    out, summary = quick_results
    data = _load(out, name)
    assert data["benchmark"] == name and data["quick"] is True
    assert data["threads"] == common.THREADS == data["machine"]["torch_threads"]
    assert data["machine"]["cores"] >= 1 and data["machine"]["cpu_model"]
    assert data["versions"]["torch"] and data["versions"]["torchattacks"]
    assert len(data["load_average_1_5_15min"]["start"]) == 3
    assert name in summary


def test_attack_step_compares_every_peer(quick_results):
    data = _load(quick_results[0], "attack_step")
    cases = data["cases"]
    for name in ("limit", "ours", "ours_early_exit", "torchattacks", "plain_loop"):
        _timing_ok(cases[name])
    assert cases["ours"]["vs_ours"] == pytest.approx(1.0)
    assert cases["ours"]["vs_limit"] == pytest.approx(cases["ours"]["median"] / cases["limit"]["median"])
    # ART is compared when it imports, and otherwise skipped with the reason recorded
    assert data["art"]["used"] == ("median" in cases["art"])
    assert data["art"]["used"] or data["art"]["reason"]
    for name in ("ours", "ours_early_exit", "torchattacks", "plain_loop"):
        assert 0.0 <= cases[name]["robust_acc"] <= 1.0
    assert {t["target"] for t in data["targets"]} >= {"ours (all points, all steps) / limit"}
    assert data["settings"]["n"] == data["settings"]["batch_size"]


def test_eval_cascade_reports_both_checkpoints_and_the_suite_figures(quick_results):
    data = _load(quick_results[0], "eval_cascade")
    for which in ("standard", "adversarial"):
        entry = data["part_a"][which]
        for case in ("ours", "ours_cascade", "torchattacks"):
            _timing_ok(entry["cases"][case])
            assert 0.0 <= entry["cases"][case]["robust_acc"] <= 1.0
        # ours is bounded by clean accuracy (only clean-correct points can be robust)
        assert entry["cases"]["ours"]["robust_acc"] <= entry["clean_acc"]
        assert entry["cases"]["ours_cascade"]["robust_acc"] <= entry["clean_acc"]
    figures = {f["attack"]: f for f in data["suite"]["figures"]}
    assert {"clean", "FGSM", "PGD-20", "worst-case"} <= set(figures)  # AutoAttack only at full size
    for f in figures.values():
        lo, hi = f["ci95"]
        assert 0.0 <= lo <= f["acc"] <= hi <= 1.0
    assert figures["PGD-20"]["acc"] <= figures["clean"]["acc"]
    assert figures["worst-case"]["acc"] <= min(figures[a]["acc"] for a in ("FGSM", "PGD-20"))
    assert data["suite"]["pgd20_vs_torchattacks"]["torchattacks_over_ours"] > 0


def test_train_throughput_times_both_loops(quick_results):
    data = _load(quick_results[0], "train_throughput")
    for method in ("standard", "pgd"):
        r = data["results"][method]
        _timing_ok(r["ours"])
        _timing_ok(r["plain"])
        assert r["images"] == r["plain_images"]  # the same images on both sides
        assert r["speedup"] == pytest.approx(r["plain"]["median"] / r["ours"]["median"])
    assert data["settings"]["num_workers"] == 2


def test_data_and_memory(quick_results):
    out = quick_results[0]
    data = _load(out, "data")
    assert data["cases"]["load_cifar10"]["images"] == 60000
    for name in ("ours_augment", "pil_transforms", "tensor_loader_pass", "dataloader_pass"):
        _timing_ok(data["cases"][name])
    mem = _load(out, "memory")
    assert mem["cases"]
    for case, r in mem["cases"].items():
        assert "error" not in r, f"{case}: {r.get('error')}"
        assert r["peak_rss_mib"] > 0 and r["case_added_mib"] >= 0


def test_layout_times_every_variant_and_checks_the_layouts_agree(quick_results):
    data = _load(quick_results[0], "layout")
    for entry in data["results"].values():
        assert set(entry["cases"]) == {f"train {lay} {p}" for lay in ("nchw", "nhwc") for p in ("fp32", "bf16")} | {
            "attack nchw fp32",
            "attack nhwc fp32",
        }
        for case in entry["cases"].values():
            _timing_ok(case)
        same = entry["same_result_fp32"]
        # identical weights and inputs: NHWC may reorder sums, nothing more
        assert same["logits_max_abs_diff"] <= 1e-4 * max(1.0, same["logits_max_abs"])
        assert same["input_grad_max_abs_diff"] <= 1e-4 * max(same["input_grad_max_abs"], 1e-12)


def test_summary_collects_targets(quick_results):
    out, _ = quick_results
    summary = _load(out, "summary")
    assert set(summary["benchmarks"]) == set(run_all.DEFAULT)
    for t in summary["targets"]:
        assert t["op"] in ("<=", ">=") and t["benchmark"] in run_all.DEFAULT


def test_torch_compile_quick(tmp_path):
    from benchmarks import torch_compile

    torch_compile.run(quick=True, out_dir=tmp_path)
    saved = json.loads((tmp_path / "torch_compile-quick.json").read_text())
    for kind in ("train", "attack"):
        r = saved["results"][kind]
        _timing_ok(r["eager"])
        _timing_ok(r["compiled"])
        assert r["compiled"]["first_call_s"] > 0 and r["speedup"] > 0


def test_fast_model_quick(tmp_path):
    from benchmarks import fast_model

    data = fast_model.run(quick=True, out_dir=tmp_path)
    saved = json.loads((tmp_path / "fast_model-quick.json").read_text())
    assert saved["epochs"] == data["epochs"] == 1
    assert 0.0 <= saved["test_acc"] <= 1.0 and saved["test_n"] == 10000
    assert saved["verdict"]


def test_speed_run_quick_times_both_recipes_of_the_experiment(tmp_path):
    from benchmarks import speed_run

    data = speed_run.run(quick=True, out_dir=tmp_path)
    saved = json.loads((tmp_path / "speed_run-quick.json").read_text())
    assert set(saved["images_per_s"]) == {speed_run.SPEED, speed_run.PGD}
    assert all(v > 0 for runs in saved["images_per_s"].values() for v in runs)
    # the ratio is the one the saved throughputs give; its size is a timing, measured by the
    # benchmark itself on a quiet machine, not asserted here (64 images under a loaded test run)
    ips = saved["images_per_s"]
    expected = statistics.median(ips[speed_run.SPEED]) / statistics.median(ips[speed_run.PGD])
    assert data["speedup_vs_pgd10"] == saved["speedup_vs_pgd10"] == pytest.approx(expected)
    assert set(saved["reached"]) == {speed_run.SPEED, speed_run.PGD}


def test_jpeg_tree_holds_exactly_the_chosen_images(tmp_path):
    """The plain loop's ImageFolder sees the same images, in the same label order, as
    the decoded tensors at those train positions."""
    import numpy as np
    from PIL import Image
    from torchvision.datasets import ImageFolder

    bundle = common.cifar10()
    sub = bundle.train.subset(20, seed=3)
    tree = common.jpeg_tree(sub.index.tolist())
    folder = ImageFolder(str(tree / "train"))
    assert len(folder) == 20 and folder.classes == list(bundle.info.classes)
    order = sorted(range(20), key=lambda i: int(sub.index[i]))  # the tree lists them in original order
    for pos, i in enumerate(order):
        path, label = folder.samples[pos]
        assert label == int(sub.y[i])
        pixels = np.asarray(Image.open(path).convert("RGB"))
        assert np.array_equal(pixels, sub.x[i].permute(1, 2, 0).numpy())


def test_time_cases_interleaves_and_takes_medians():
    calls = []
    res = common.time_cases({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then rotating order
    for t in res.values():
        _timing_ok(t)


def test_cli_bench_rejects_unknown_names_and_lists_valid_ones():
    res = CliRunner().invoke(cli, ["bench", "nosuch"])
    assert res.exit_code == 2
    assert "unknown benchmark nosuch" in res.output and "attack_step" in res.output
    assert "Traceback" not in res.output
    help_text = CliRunner().invoke(cli, ["bench", "--help"]).output
    assert "--quick" in help_text and "fast_model" in help_text

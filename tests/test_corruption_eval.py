"""Corrupted sets (seeded per image, cached, extended rather than rebuilt), real
CIFAR-10-C files in RobustBench's layout, the corruption record, and
`robust eval --corruptions` through the CLI."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("skimage")

from support import cifar10, trained_cnn  # noqa: E402

from robustbench_local.checkpoint import save_checkpoint  # noqa: E402
from robustbench_local.cli import main  # noqa: E402
from robustbench_local.corruptions import (  # noqa: E402
    CORRUPTIONS,
    parse_names,
    parse_severities,
    sets,  # noqa: E402
)
from robustbench_local.corruptions.evaluate import evaluate_corruptions  # noqa: E402
from robustbench_local.corruptions.functions import NAMES  # noqa: E402
from robustbench_local.data import DatasetBundle  # noqa: E402
from robustbench_local.errors import RobustError  # noqa: E402


def small_bundle(n: int = 24, first: bool = False) -> DatasetBundle:
    """The test split cut to n images: the first n (test positions 0..n-1, all of one class
    in the JPEG tree's order) or a seeded choice of every class."""
    b = cifar10()
    return DatasetBundle(b.info, b.train, b.val, b.test.take(torch.arange(n)) if first else b.test.subset(n, seed=1))


def key(name="gaussian_noise", severity=3, seed=0):
    b = cifar10()
    return sets.SetKey(b.info.name, b.info.source, tuple(b.info.input_shape), "test", name, severity, seed)


def test_names_and_severities_parse_and_refuse_in_one_line():
    assert NAMES == CORRUPTIONS
    assert parse_names("all") == CORRUPTIONS
    assert parse_names("fog, noise") == ("gaussian_noise", "shot_noise", "impulse_noise", "fog")
    assert parse_severities("all") == (1, 2, 3, 4, 5) and parse_severities("2-4") == (2, 3, 4)
    assert parse_severities("5,1") == (1, 5)
    for bad, fn in (
        ("smoke", parse_names),
        ("0", parse_severities),
        ("6", parse_severities),
        ("x", parse_severities),
        ("4-2", parse_severities),
    ):
        with pytest.raises(RobustError) as e:
            fn(bad)
        assert "\n" not in str(e.value)


def test_generated_set_is_seeded_per_image_cached_and_extended(tmp_path, monkeypatch):
    test = cifar10().test
    x, index = test.x[:8], test.index[:8]
    first, sec = sets.generated_set(key(), x[:5], index[:5], cache_dir=tmp_path)
    assert first.dtype == torch.uint8 and first.shape == x[:5].shape and sec > 0
    assert not torch.equal(first, x[:5])
    calls = []
    real = sets.corrupt_images
    monkeypatch.setattr(sets, "corrupt_images", lambda xs, idx, *a: calls.append(idx.tolist()) or real(xs, idx, *a))
    again, sec = sets.generated_set(key(), x[:5], index[:5], cache_dir=tmp_path)
    assert torch.equal(again, first) and sec == 0 and calls == []  # read from the cache
    more, _ = sets.generated_set(key(), x, index, cache_dir=tmp_path)
    assert calls == [index[5:].tolist()]  # only the new images were generated
    assert torch.equal(more[:5], first)
    # an image's corrupted version does not depend on which others were asked for
    alone, _ = sets.generated_set(key(), x[6:7], index[6:7], cache_dir=tmp_path / "other")
    assert torch.equal(alone[0], more[6])
    other_seed, _ = sets.generated_set(key(seed=1), x[:5], index[:5], cache_dir=tmp_path)
    assert not torch.equal(other_seed, first)


def test_a_changed_clean_image_is_generated_again(tmp_path):
    test = cifar10().test
    x, index = test.x[:3].clone(), test.index[:3]
    first, _ = sets.generated_set(key("fog", 2), x, index, cache_dir=tmp_path)
    x[1] = 255 - x[1]
    second, sec = sets.generated_set(key("fog", 2), x, index, cache_dir=tmp_path)
    assert sec > 0 and torch.equal(second[0], first[0]) and not torch.equal(second[1], first[1])


def write_cifar10c(root, n: int, names=("gaussian_noise",)) -> None:
    """A small set in RobustBench's CIFAR-10-C layout: severity s of test image i at row
    (s - 1) * n + i; each image is filled with 10 * s + i so rows can be told apart."""
    folder = root / "CIFAR-10-C"
    folder.mkdir(parents=True)
    labels = cifar10().test.y[:n].numpy()
    for name in names:
        arr = np.zeros((5 * n, 32, 32, 3), dtype=np.uint8)
        for s in range(5):
            for i in range(n):
                arr[s * n + i] = 10 * (s + 1) + i
        np.save(folder / f"{name}.npy", arr)
    np.save(folder / "labels.npy", np.tile(labels, 5).astype(np.uint8))


def test_real_cifar10c_files_load_in_robustbench_layout(tmp_path, monkeypatch):
    write_cifar10c(tmp_path, 20)
    monkeypatch.setenv("ROBUST_DATA", str(tmp_path))
    folder = sets.find_real_folder("cifar10")
    assert folder == tmp_path / "CIFAR-10-C"
    x, y = sets.real_set(folder, "gaussian_noise", 3, torch.tensor([4, 0]))
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.uint8
    assert int(x[0, 0, 0, 0]) == 34 and int(x[1, 0, 0, 0]) == 30
    assert torch.equal(y, cifar10().test.y[torch.tensor([4, 0])])
    with pytest.raises(RobustError, match="missing"):
        sets.real_set(folder, "fog", 1, torch.tensor([0]))
    with pytest.raises(RobustError, match="past its end"):
        sets.real_set(folder, "gaussian_noise", 1, torch.tensor([20]))
    bundle = small_bundle(20, first=True)
    rec = evaluate_corruptions(
        trained_cnn(epochs=2, n_train=2000), ("gaussian_noise",), (1, 5), bundle, n=None, device="cpu"
    )
    assert rec["corruptions"]["source"] == "real" and rec["corruptions"]["labels_match_split"]
    assert sets.find_real_folder("fashion-mnist") is None


def test_corruption_record_holds_every_cell_and_the_summaries(tmp_path):
    bundle = small_bundle(48)
    names, sevs = ("gaussian_noise", "contrast"), (1, 5)
    rec = evaluate_corruptions(
        trained_cnn(epochs=2, n_train=2000),
        names,
        sevs,
        bundle,
        n=None,
        device="cpu",
        cache_dir=tmp_path,
        source="generated",
    )
    m = rec["metrics"]
    assert rec["kind"] == "corruption" and m["n"] == 48 and m["clean_acc"] > 0.2
    assert [(r["corruption"], r["severity"]) for r in m["results"]] == [(c, s) for c in names for s in sevs]
    accs = [r["acc"] for r in m["results"]]
    assert m["mean_acc"] == pytest.approx(sum(accs) / len(accs))
    assert m["by_corruption"]["contrast"] == pytest.approx((accs[2] + accs[3]) / 2)
    assert m["mean_ci95"][0] <= m["mean_acc"] <= m["mean_ci95"][1]
    assert m["relative_drop"] == pytest.approx((m["clean_acc"] - m["mean_acc"]) / m["clean_acc"])
    # strong noise and contrast hurt the seed CNN
    assert m["by_severity"]["5"] < m["clean_acc"]
    assert rec["corruptions"]["source"] == "generated" and rec["data"]["n"] == 48


def test_robust_eval_corruptions_through_the_cli(ckpt, tmp_path):
    res = CliRunner().invoke(
        main,
        [
            "eval",
            "--corruptions",
            "impulse_noise,pixelate",
            "--severity",
            "2,4",
            "--n",
            "16",
            "--results",
            str(tmp_path / "res"),
            str(ckpt),
        ],
    )
    assert res.exit_code == 0, res.output
    (path,) = (tmp_path / "res" / "records").glob("corruption-*.json")  # no attack ran: no eval record
    assert not list((tmp_path / "res" / "records").glob("eval-*.json"))
    rec = json.loads(path.read_text())
    assert len(rec["metrics"]["results"]) == 4 and rec["metrics"]["n"] == 16
    assert "mean corruption accuracy" in res.output
    rep = CliRunner().invoke(main, ["report", "--results", str(tmp_path / "res")])  # corruption records alone
    assert rep.exit_code == 0, rep.output
    assert "corruption" in (tmp_path / "res" / "REPORT.md").read_text().lower()
    both = CliRunner().invoke(
        main,
        [
            "eval",
            "--attack",
            "fgsm",
            "--corruptions",
            "fog",
            "--severity",
            "1",
            "--n",
            "16",
            "--results",
            str(tmp_path / "res2"),
            str(ckpt),
        ],
    )
    assert both.exit_code == 0, both.output
    kinds = sorted(p.name.split("-")[0] for p in (tmp_path / "res2" / "records").glob("*.json"))
    assert kinds == ["corruption", "eval"]
    bad = CliRunner().invoke(main, ["eval", "--corruptions", "smoke", str(ckpt)])
    assert bad.exit_code != 0 and "unknown corruption 'smoke'" in bad.output
    assert not (tmp_path / "res3").exists()


def test_a_degenerate_model_is_named_in_the_record_and_the_output(tmp_path):
    model, meta = trained_cnn(epochs=1, n_train=256)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():  # every input goes to class 3
        last.weight.zero_()
        last.bias.copy_(torch.nn.functional.one_hot(torch.tensor(3), 10).float())
    path = save_checkpoint(tmp_path / "one-class.pth", model, meta)
    res = CliRunner().invoke(
        main,
        ["eval", "--corruptions", "fog", "--severity", "1", "--n", "40", "--results", str(tmp_path / "res"), str(path)],
    )
    assert res.exit_code == 0, res.output
    (rec_path,) = (tmp_path / "res" / "records").glob("corruption-*.json")
    rec = json.loads(rec_path.read_text())
    assert "one class" in rec["degenerate"]["reason"] and rec["checks"][0]["ok"] is False
    assert rec["metrics"]["relative_drop"] == 0.0  # what the warning is for: a flat line that measures nothing
    assert "is degenerate" in " ".join(res.output.split()) and "meaningless" in res.output
    good = evaluate_corruptions(
        trained_cnn(epochs=2, n_train=2000),
        ("fog",),
        (1,),
        small_bundle(48),
        n=None,
        device="cpu",
        cache_dir=tmp_path,
        source="generated",
    )
    assert good["degenerate"] is None and good["checks"][0]["ok"] is True


def test_robust_run_measures_corruptions_once_per_cell(tmp_path, monkeypatch):
    from support import TINY_EXPERIMENT, image_tree

    from robustbench_local.experiment import load_experiment, run_experiment
    from robustbench_local.results import ResultsStore

    tree = image_tree(tmp_path / "tree", cifar10(), 10, 4)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROBUST_CACHE", str(tmp_path / "cache"))
    text = TINY_EXPERIMENT.format(tree=tree).replace("n = 100", "n = 24") + (
        '\n[corruptions]\nnames = ["fog", "noise"]\nseverity = "4-5"\n\n[[cells]]\nname = "std"\n'
    )
    (tmp_path / "exp.toml").write_text(text)
    first = run_experiment("exp.toml", say=lambda m: None, attacks=["fgsm"])
    assert first.plan[0].corruptions is None  # --attack fgsm leaves the corruptions for later
    run_experiment("exp.toml", say=lambda m: None)
    recs = [r for r in ResultsStore("out/results").load() if r["kind"] == "corruption"]
    assert len(recs) == 1 and recs[0]["experiment"]["cell"] == "std"
    assert recs[0]["corruptions"]["names"] == ["gaussian_noise", "shot_noise", "impulse_noise", "fog"]
    assert len(recs[0]["metrics"]["results"]) == 8 and recs[0]["data"]["n"] == 24
    again = run_experiment("exp.toml", say=lambda m: None)
    assert again.plan[0].corruptions == "done" and again.plan[0].finished
    (tmp_path / "bad.toml").write_text(text.replace('severity = "4-5"', 'severity = "7"'))
    with pytest.raises(RobustError) as e:
        load_experiment("bad.toml")
    assert "corruptions.severity" in str(e.value) or "severity" in str(e.value)

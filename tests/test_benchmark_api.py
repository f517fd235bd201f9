"""robustbench_local.benchmark(): RobustBench's benchmark() call, run by our evaluation,
compared with robustbench.eval.benchmark itself on the very same points."""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import json

import pytest
import torch
from support import cifar10, trained_cnn

from robustbench_local import benchmark
from robustbench_local.errors import RobustError
from robustbench_local.results import wilson_interval

if importlib.util.find_spec("robustbench") is None:
    pytest.skip("robustbench is not installed (the [robustbench] extra)", allow_module_level=True)

from robustbench_local.foreign.robustbench_zoo import import_robustbench  # noqa: E402

import_robustbench()
aa_module = importlib.import_module("robustbench_local.attacks.autoattack")  # the module, not its function
N, EPS = 32, 8 / 255


def quick_autoattack(adv):
    """AutoAttack with ten times fewer iterations and queries (every sub-attack still
    runs), only to keep the test short; both sides get the same."""
    for apgd in (adv.apgd, adv.apgd_targeted):
        apgd.n_iter = apgd.n_iter_orig = 10
        apgd.n_iter_2, apgd.n_iter_min, apgd.size_decr = 2, 1, 1
    adv.fab.n_iter = 10
    adv.square.n_queries = 100
    return adv


class RobustBenchAutoAttack:
    """robustbench.eval calls AutoAttack with auto-attack's signature (log_path=,
    run_standard_evaluation(x, y, bs=)); the package it requires, pyautoattack, takes
    batch_size= and returns (x_adv, y_adv). The same attack, called as it expects."""

    def __init__(self, model, norm, eps, version, device, log_path=None):
        from pyautoattack import AutoAttack

        self.adversary = quick_autoattack(AutoAttack(model, norm=norm, eps=eps, version=version, device=device))

    def run_standard_evaluation(self, x, y, bs=250, state_path=None):
        return self.adversary.run_standard_evaluation(x, y, batch_size=bs, state_path=state_path)[0]


def tiny_cnn():
    """A plain CNN (about 40% clean) that AutoAttack does not break everywhere at 8/255; a
    copy, since benchmark() lays the model out NHWC in place."""
    return copy.deepcopy(trained_cnn(epochs=2, n_train=2000)[0]).eval()


@pytest.fixture
def model():
    return tiny_cnn()


def test_benchmark_matches_robustbench_on_the_same_points(model, tmp_path, monkeypatch):
    import robustbench.eval

    real = aa_module._import()
    monkeypatch.setattr(aa_module, "_import", lambda: lambda *a, **k: quick_autoattack(real(*a, **k)))
    clean, robust = benchmark(
        model,
        n_examples=N,
        dataset="cifar10",
        threat_model="Linf",
        eps=EPS,
        batch_size=32,
        model_name="tiny-cnn",
        results_dir=tmp_path,
    )
    (path,) = (tmp_path / "records").glob("eval-*.json")
    rec = json.loads(path.read_text())
    assert rec["checkpoint"]["name"] == "tiny-cnn" and rec["checkpoint"]["normalization"] == "none"
    assert rec["attack"]["name"] == "autoattack" and rec["attack"]["norm"] == "linf"
    assert rec["attack"]["eps_pixel"] == pytest.approx(EPS)
    assert (rec["metrics"]["clean_acc"], rec["metrics"]["robust_acc"]) == (clean, robust)

    # the points ours evaluated (checked by their recorded indices), handed to RobustBench as its data
    sub = cifar10().test.subset(N, seed=0)
    assert hashlib.sha256(sub.index.to(torch.int64).numpy().tobytes()).hexdigest() == rec["data"]["indices_sha256"]
    monkeypatch.setattr(robustbench.eval, "load_clean_dataset", lambda *a: (sub.x.float() / 255, sub.y))
    monkeypatch.setattr(robustbench.eval, "AutoAttack", RobustBenchAutoAttack)
    rb_clean, rb_robust = robustbench.eval.benchmark(
        tiny_cnn(), n_examples=N, dataset="cifar10", threat_model="Linf", eps=EPS, batch_size=32
    )
    assert 0.2 < clean == rb_clean
    assert 0 < robust <= wilson_interval(round(rb_robust * N), N)[1]  # some points survive: a real comparison


@pytest.mark.parametrize(
    "kwargs,says",
    [
        ({"eps": None}, "eps must be given"),
        ({"eps": EPS, "threat_model": "corruptions"}, "not supported yet"),
        ({"eps": EPS, "to_disk": True}, "needs model_name"),
    ],
)
def test_bad_calls_are_one_line(model, kwargs, says, tmp_path):
    with pytest.raises(RobustError) as e:
        benchmark(model, n_examples=4, results_dir=tmp_path, **kwargs)
    assert says in str(e.value) and len(str(e.value).splitlines()) == 1
    assert not (tmp_path / "records").exists()

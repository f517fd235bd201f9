"""`robust report` on minimal-norm records: the accuracy-vs-radius curve drawn from one
DeepFool run's per-point norms, with the same checkpoint's PGD records as markers, and
the provenance of transfer and replayed records in the tables and report.csv.

Records come from evaluate() on the trained CNN and real CIFAR-10 points (n = 100)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from support import cifar10, trained_cnn

from robustbench_local.attacks.registry import info
from robustbench_local.attacks.spec import AttackSpec
from robustbench_local.cli import main
from robustbench_local.errors import RobustError
from robustbench_local.evaluation import evaluate
from robustbench_local.models import build_model
from robustbench_local.replay import replay
from robustbench_local.report import build_report, load_report_data
from robustbench_local.report.min_norm_plots import MIN_NORM, min_norm_series
from robustbench_local.results import ResultsStore
from robustbench_local.threat import ThreatModel

N = 100
EPS = 0.5  # L2, pixel space


def _pixel(eps: float, attack: str = "pgd") -> AttackSpec:
    return AttackSpec(attack, ThreatModel("l2", eps, space="pixel"), info(attack).quick)


def _surrogate():
    """An untrained CNN of the same architecture: a (weak) surrogate for a transfer attack."""
    torch.manual_seed(1)
    model = build_model("cnn", num_classes=10, input_shape=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3).eval()
    return model, {**trained_cnn()[1]}, "surrogate-cnn"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """DeepFool at L2 0.5 px; PGD at 0.25 and 0.5 px (markers) and at 0.8 normalized
    (another space: not a marker); PGD transferred from a surrogate; the saved PGD
    images replayed. Then `robust report` through the CLI."""
    model, meta = trained_cnn()
    target = (model, meta, "trained-cnn")
    root = tmp_path_factory.mktemp("mn") / "results"
    adv = root.parent / "adv.pt"
    kw = dict(n=N, device="cpu", run_checks=False)
    recs = evaluate(target, [_pixel(EPS, "deepfool"), _pixel(EPS)], cifar10(), save_adv=adv, **kw)
    recs += evaluate(target, [_pixel(0.25)], cifar10(), **kw)
    # 0.8 normalized is 0.4 px: not the ball of the 0.25 px record (0.5 normalized would be the
    # same ball, and the report keeps one record per ball)
    recs += evaluate(target, [AttackSpec("pgd", ThreatModel("l2", 0.8), info("pgd").quick)], cifar10(), **kw)
    recs += evaluate(target, [_pixel(EPS)], cifar10(), transfer_from=_surrogate(), **kw)
    recs += replay(adv, target, device="cpu")
    st = ResultsStore(root)
    for r in recs:
        st.add(r)
    res = CliRunner().invoke(main, ["report", "--results", str(root)])
    assert res.exit_code == 0, res.output
    return root, recs


def _record(recs, label: str, eps: float = EPS, space: str = "pixel") -> dict:
    return next(
        r for r in recs if r["attack"]["label"] == label and r["attack"]["eps"] == eps and r["attack"]["space"] == space
    )


def test_the_curve_is_drawn_from_the_records_norms(store):
    root, recs = store
    df_rec = _record(recs, "DeepFool-10")
    assert df_rec["attack"]["kind"] == "minimal-norm"
    (curve,) = min_norm_series(load_report_data(root))
    assert (curve.checkpoint, curve.attack, curve.norm, curve.space, curve.n) == (
        "trained-cnn",
        "DeepFool-10",
        "l2",
        "pixel",
        N,
    )
    assert (root / "figures" / curve.name).is_file() and curve.name.startswith(MIN_NORM)
    md = (root / "REPORT.md").read_text()
    assert f"(figures/{curve.name})" in md
    html = (root / "report.html").read_text()
    assert "Accuracy vs eps from minimal-norm attacks" in html and "L2 radius from DeepFool-10" in html

    xs, ys = curve.steps()
    # at the record's eps the curve gives the record's own robust accuracy
    assert curve.value_at(EPS) == pytest.approx(df_rec["metrics"]["robust_acc"], abs=1e-12)
    assert curve.eps == EPS and curve.robust_acc == df_rec["metrics"]["robust_acc"]
    # from clean accuracy at 0, never rising, out to the largest norm found (and at least eps)
    assert xs[0] == 0 and ys[0] == pytest.approx(df_rec["metrics"]["clean_acc"])
    assert np.all(np.diff(ys) <= 0) and np.all(np.diff(xs) > 0)
    found = [v for v in df_rec["metrics"]["min_norms"] if v is not None]
    assert xs[-1] == pytest.approx(max(max(found), EPS))
    # exactly the step function of the norms: robust where none found or norm > radius
    for e in [0.0, *found[:20], 0.1, 0.3, 0.77, xs[-1]]:
        want = sum(1 for v in df_rec["metrics"]["min_norms"] if v is None or v > e) / N
        assert curve.value_at(e) == pytest.approx(want, abs=1e-12)


def test_pgd_records_at_the_same_norm_and_space_are_markers(store):
    root, recs = store
    (curve,) = min_norm_series(load_report_data(root))
    got = {(m.label, m.eps): m for m in curve.markers}
    # the white-box PGD at 0.25 and 0.5 px and the transfer at 0.5 px; neither the PGD at
    # 0.8 normalized (another space) nor the worst case (not one attack), nor a replayed
    # record of another model's points, nor DeepFool itself
    assert {("PGD-5", 0.25), ("PGD-5", EPS), ("PGD-5 (transfer)", EPS), ("PGD-5 (replayed)", EPS)} == set(got)
    for (label, eps), m in got.items():
        rec = _record(recs, label, eps)
        assert (m.acc, m.n) == (rec["metrics"]["robust_acc"], N)
        assert (m.lo, m.hi) == tuple(rec["metrics"]["robust_ci95"])
    assert got[("PGD-5", EPS)].same_points
    # the white-box attack's point is no better than the curve's bound plus its noise:
    # both are upper bounds on the same points; PGD may be the stronger one
    assert got[("PGD-5", EPS)].acc <= curve.value_at(EPS) + 0.15


def test_tables_name_the_surrogate_and_the_replayed_file_and_csv_the_step_rule(store):
    root, _ = store
    md = (root / "REPORT.md").read_text()
    assert "crafted on the surrogate surrogate-cnn" in md
    assert "replayed from" in md and "adv.pt" in md
    html = (root / "report.html").read_text()
    assert "crafted on the surrogate surrogate-cnn" in html
    table = pd.read_csv(root / "report.csv")
    rows = {(r["attack"], r["eps_space"], r["eps_pixel"]): r for _, r in table.iterrows()}
    assert rows[("PGD-5 (transfer)", "pixel", EPS)]["transfer_from"] == "surrogate-cnn"
    assert rows[("PGD-5 (replayed)", "pixel", EPS)]["replayed_from"].endswith("adv.pt")
    assert rows[("PGD-5", "pixel", EPS)]["step_rule"] == "2.5*eps/k"
    assert rows[("DeepFool-10", "pixel", EPS)]["step_rule"] == "own"  # DeepFool sets its own steps
    assert rows[("DeepFool-10", "pixel", EPS)]["attack_kind"] == "minimal-norm"
    assert pd.isna(rows[("worst-case", "pixel", EPS)]["step_rule"])


def test_a_record_whose_norms_do_not_match_its_points_is_named(store, tmp_path):
    _, recs = store
    rec = json.loads(json.dumps({k: v for k, v in _record(recs, "DeepFool-10").items() if not k.startswith("_")}))
    rec["metrics"]["min_norms"] = rec["metrics"]["min_norms"][:-1]  # one point short
    ResultsStore(tmp_path / "r").add(rec)
    with pytest.raises(RobustError, match=r"metrics\.min_norms is a list, not a list of 100 norms"):
        build_report(tmp_path / "r", skip_bad=False)


def test_the_curve_counts_a_norm_equal_to_eps_as_fooled(store, tmp_path):
    """A hand-edited record: norms exactly at eps are adversarial at eps (norm <= eps)."""
    root, recs = store
    rec = {k: v for k, v in _record(recs, "DeepFool-10").items() if not k.startswith("_")}
    norms = [0.0] * 40 + [EPS] * 10 + [0.25] * 10 + [1.5] * 20 + [None] * 20
    rec["metrics"] = {**rec["metrics"], "min_norms": norms, "robust_acc": 0.4}
    ResultsStore(tmp_path / "r").add(rec)
    (curve,) = min_norm_series(load_report_data(tmp_path / "r"))
    xs, ys = curve.steps()
    assert list(xs) == [0.0, 0.25, EPS, 1.5]
    assert list(ys) == [0.6, 0.5, 0.4, 0.2]
    assert curve.value_at(EPS - 1e-9) == 0.5 and curve.value_at(EPS) == 0.4 and curve.value_at(10) == 0.2
    assert curve.markers == []
    assert not math.isnan(curve.robust_lo)

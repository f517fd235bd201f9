"""Paired comparisons from real records: two models evaluated on the same CIFAR-10
points, `robust report --compare`, the marks of models indistinguishable from a
column's best, and accuracy-vs-eps figures that draw only measured radii."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from statsmodels.stats.contingency_tables import mcnemar

from robustbench_local.cli import main
from robustbench_local.errors import RobustError
from robustbench_local.report.compare import compare_models, fmt_p, indistinguishable_from_best, pair_rows, table_marks
from robustbench_local.report.load import load_report_data
from robustbench_local.report.plots import CLEAN_MARKER, eps_curve_figures
from robustbench_local.report.tables import build_comparison
from robustbench_local.results import ResultsStore, unpack_flags

N = 200
EPS = 0.0313


def _models():
    """The session's trained CNN (A) and a copy whose logits lean toward one class (B):
    two models that disagree on some points."""
    from support import trained_cnn

    model, meta = trained_cnn()
    other = copy.deepcopy(model)
    last = [m for m in other.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.bias[3] += 1.5
    return (model, meta), (other, meta)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A and B under FGSM at one radius on the same 200 test points; A also at a second
    radius; PGD on different points (A on 200, B on 100)."""
    from support import cifar10

    from robustbench_local.attacks import AttackSpec
    from robustbench_local.evaluation import evaluate
    from robustbench_local.threat import ThreatModel

    root = tmp_path_factory.mktemp("compare") / "results"
    results = ResultsStore(root)
    a, b = _models()
    fgsm = AttackSpec("fgsm", threat=ThreatModel("linf", EPS, EPS))
    pgd = AttackSpec("pgd", threat=ThreatModel("linf", EPS, EPS / 4), k=2)
    kw = {"seed": 0, "device": "cpu", "run_checks": False}
    runs = [(a, "cnn-a", [fgsm, fgsm.with_eps(2 * EPS), pgd], N), (b, "cnn-b", [fgsm], N), (b, "cnn-b", [pgd], 100)]
    for target, name, specs, n in runs:
        for spec in specs:  # one call per attack: no worst-case records
            for rec in evaluate(target, [spec], cifar10(), n=n, name=name, **kw):
                results.add(rec)
    return root


def _fgsm_flags(root, name: str, eps: float = EPS) -> np.ndarray:
    evals = load_report_data(root).evals
    (row,) = [
        r
        for _, r in evals.iterrows()
        if r["checkpoint"] == name and r["attack"] == "FGSM" and abs(r["eps_normalized"] - eps) < 1e-6
    ]
    return unpack_flags(row["robust_flags"], int(row["n"]))


def test_compare_pairs_the_records_on_the_same_points(store):
    fa, fb = _fgsm_flags(store, "cnn-a"), _fgsm_flags(store, "cnn-b")
    b, c = int((fa & ~fb).sum()), int((~fa & fb).sum())
    assert b + c > 0  # the two models do disagree, or the test would show nothing
    cmp = compare_models(load_report_data(store), "cnn-a", "cnn-b")
    (pair,) = cmp.pairs  # FGSM at EPS; A's second radius and the PGD records on other points are not pairs
    t = pair.test
    assert (pair.attack, t.n, t.b, t.c) == ("FGSM", N, b, c)
    assert (t.acc_a, t.acc_b) == (fa.mean(), fb.mean())
    both = int((fa & fb).sum())
    ref = mcnemar([[both, b], [c, N - both - b - c]], exact=True).pvalue
    assert t.p_value == pytest.approx(ref, rel=1e-12)
    assert len(cmp.not_paired) == 1 and cmp.not_paired[0].startswith("PGD-2 at L-inf eps 0.0313")
    assert "200 cifar10 test points (selection seed 0) against 100 cifar10 test points" in cmp.not_paired[0]


def test_robust_report_compare_prints_the_paired_table(store):
    fa, fb = _fgsm_flags(store, "cnn-a"), _fgsm_flags(store, "cnn-b")
    b, c = int((fa & ~fb).sum()), int((~fa & fb).sum())
    both = int((fa & fb).sum())
    p = mcnemar([[both, b], [c, N - both - b - c]], exact=True).pvalue
    res = CliRunner().invoke(main, ["report", "--results", str(store), "--compare", "cnn-a", "cnn-b"])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "FGSM: cnn-a (A) against cnn-b (B), point by point" in out
    (row,) = [line for line in out.splitlines() if line.startswith(("│", "|")) and "L-inf eps 0.0313" in line]
    diff = 100 * (fa.mean() - fb.mean())
    cells = re.split(r"\s*[│|]\s*", row.strip(" │|"))
    assert cells[1:] == [
        "200 test (seed 0)",
        f"{100 * fa.mean():.1f}%",
        f"{100 * fb.mean():.1f}%",
        cells[4],
        str(b),
        str(c),
        fmt_p(p),
    ]
    assert cells[4].startswith(f"{diff:+.1f} pp [")
    assert "not compared: PGD-2 at L-inf eps 0.0313" in out
    assert not (store / "REPORT.md").exists()  # --compare writes nothing


def test_compare_by_names_that_do_not_pair_is_a_clear_error(store):
    runner = CliRunner()
    res = runner.invoke(main, ["report", "--results", str(store), "--compare", "cnn-a", "nope"])
    assert res.exit_code == 2 and "no evaluated model is named 'nope'; the results hold: cnn-a, cnn-b" in res.output
    res = runner.invoke(main, ["report", "--results", str(store), "--compare", "cnn-a", "cnn-a"])
    assert res.exit_code == 2 and "name the same model" in res.output
    res = runner.invoke(main, ["report", "--results", str(store), "--attack", "pgd", "--compare", "cnn-a", "cnn-b"])
    assert res.exit_code == 2
    assert "no attack to compare point by point; PGD-2 at L-inf eps 0.0313" in res.output
    assert "not on the same points" in res.output
    res = runner.invoke(main, ["report", "--results", str(store), "--out", "x", "--compare", "cnn-a", "cnn-b"])
    assert res.exit_code == 2 and "drop --out" in res.output


def test_records_on_other_points_are_refused(store):
    evals = load_report_data(store).evals
    pgd = {r["checkpoint"]: r for _, r in evals.iterrows() if r["attack"] == "PGD-2"}
    with pytest.raises(RobustError, match="not on the same points .*200 cifar10 test points .* against 100"):
        pair_rows(pgd["cnn-a"], pgd["cnn-b"])
    fgsm = {
        r["checkpoint"]: r
        for _, r in evals.iterrows()
        if r["attack"] == "FGSM" and r["n"] == N and abs(r["eps_normalized"] - EPS) < 1e-6
    }
    moved = fgsm["cnn-b"].copy()
    moved["indices_sha256"] = "0" * 64  # as many points, other ones
    with pytest.raises(RobustError, match="but other point indices"):
        pair_rows(fgsm["cnn-a"], moved)


def _shifted(best: np.ndarray, lose: int, gain: int) -> np.ndarray:
    """best's flags with ``lose`` of its robust points lost and ``gain`` others kept."""
    out = best.copy()
    out[np.flatnonzero(best)[:lose]] = False
    out[np.flatnonzero(~best)[:gain]] = True
    return out


def test_indistinguishable_from_best_uses_holm_over_the_column():
    best = np.random.default_rng(0).random(1000) < 0.45
    near = _shifted(best, 33, 17)  # alone: McNemar p = 0.033 against the best
    close = _shifted(best, 10, 8)
    far = _shifted(best, 80, 10)
    assert indistinguishable_from_best({"best": best, "near": near}) == {"best"}
    # two comparisons: Holm doubles the smallest p (0.066 >= 0.05), so 'near' is no longer set apart
    assert indistinguishable_from_best({"best": best, "near": near, "close": close}) == {"best", "near", "close"}
    assert indistinguishable_from_best({"best": best, "close": close, "far": far}) == {"best", "close"}
    assert indistinguishable_from_best({"a": best, "b": best.copy()}) == {"a", "b"}  # a tie is best twice
    with pytest.raises(RobustError, match="same points"):
        indistinguishable_from_best({"a": best, "b": best[:-1]})


def test_table_marks_follow_the_records_flags(store):
    data = load_report_data(store)
    table = next(t for t in build_comparison(data).tables if t.title.startswith("L-inf eps 0.0313 normalized"))
    marks = table_marks(data, table)
    names = [r.checkpoint for r in table.rows]
    expect = indistinguishable_from_best({"cnn-a": _fgsm_flags(store, "cnn-a"), "cnn-b": _fgsm_flags(store, "cnn-b")})
    assert {names[i] for i in marks["FGSM"]} == expect
    assert "clean" not in marks and "PGD-2" not in marks  # no clean flags; PGD ran on different points


def _lines(store, keep):
    """The Line2D objects of the accuracy-vs-eps figure of the records ``keep`` accepts."""
    data = load_report_data(store)
    data.evals = data.evals[[keep(r) for _, r in data.evals.iterrows()]].reset_index(drop=True)
    (fig,) = [f for name, _, f in eps_curve_figures(data)]
    return fig.axes[0].lines


def test_one_radius_draws_no_line_to_clean_accuracy(store):
    lines = _lines(store, lambda r: r["attack"] == "FGSM" and abs(r["eps_normalized"] - EPS) < 1e-6)
    assert lines and all(len(line.get_xdata()) == 1 for line in lines)
    xs = sorted({float(line.get_xdata()[0]) for line in lines})
    assert xs == [0.0, pytest.approx(EPS)]  # clean at eps 0 and the one radius, each a marker alone


def test_two_radii_are_joined_and_clean_stays_apart(store):
    lines = _lines(store, lambda r: r["checkpoint"] == "cnn-a" and r["attack"] == "FGSM")
    (joined,) = [line for line in lines if line.get_linestyle() != "None"]  # error-bar caps draw no line
    assert list(joined.get_xdata()) == pytest.approx([EPS, 2 * EPS])  # only the measured radii
    assert joined.get_marker() not in (None, "None", "")
    (clean,) = [line for line in lines if line.get_marker() == CLEAN_MARKER]
    assert list(clean.get_xdata()) == [0.0] and clean.get_linestyle() == "None"

"""The statistics that separate methods, against independent references: statsmodels'
McNemar test and Holm correction, a published paired interval, and hand arithmetic."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from robustbench_local.errors import RobustError
from robustbench_local.stats import holm, mcnemar_p, paired_interval, paired_test, seed_summary


def flags_from_table(both: int, b: int, c: int, neither: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two flag vectors whose paired 2x2 table is the one given, in a shuffled order."""
    a = np.array([True] * both + [True] * b + [False] * c + [False] * neither)
    bb = np.array([True] * both + [False] * b + [True] * c + [False] * neither)
    order = np.random.default_rng(seed).permutation(len(a))
    return a[order], bb[order]


TABLES = [
    (59, 6, 16, 80),
    (10, 0, 0, 5),
    (5, 12, 3, 80),
    (500, 40, 70, 1390),
    (0, 1, 0, 0),
    (3, 25, 24, 1),
    (600, 33, 17, 350),
    (800, 0, 9, 1191),
]


@pytest.mark.parametrize("both,b,c,neither", TABLES)
def test_mcnemar_exact_p_equals_statsmodels(both, b, c, neither):
    fa, fb = flags_from_table(both, b, c, neither)
    t = paired_test(fa, fb)
    assert (t.n, t.b, t.c) == (both + b + c + neither, b, c)
    assert (t.correct_a, t.correct_b) == (both + b, both + c)
    ref = mcnemar([[both, b], [c, neither]], exact=True).pvalue
    assert t.p_value == pytest.approx(ref, rel=1e-12, abs=1e-300)
    assert mcnemar_p(c, b) == pytest.approx(ref, rel=1e-12, abs=1e-300)  # two-sided: symmetric in A and B
    assert t.diff == pytest.approx((b - c) / t.n)


def test_paired_interval_equals_the_published_newcombe_example():
    """Newcombe's square-and-add interval on the paired table of Cavo et al. (2012) as
    Fagerland, Lydersen and Laake's 'Statistical Analysis of Contingency Tables' (ch. 8)
    prints it: estimate -0.0621, 95% CI -0.1186 to -0.0046."""
    lo, hi = paired_interval(161, 59, 6, 16)
    assert (round(lo, 4), round(hi, 4)) == (-0.1186, -0.0046)
    t = paired_test(*flags_from_table(59, 6, 16, 80))
    assert (round(t.diff, 4), t.diff_lo, t.diff_hi) == (-0.0621, lo, hi)


@pytest.mark.parametrize("both,b,c,neither", [(700, 100, 40, 1160), (400, 60, 60, 1480), (900, 25, 5, 1070)])
def test_paired_interval_agrees_with_wald_when_discordant_counts_are_large(both, b, c, neither):
    n = both + b + c + neither
    d = (b - c) / n
    half = 1.959963984540054 * math.sqrt((b + c) - (b - c) ** 2 / n) / n  # Wald interval for paired proportions
    lo, hi = paired_interval(n, both, b, c)
    assert lo < d < hi
    assert lo == pytest.approx(d - half, abs=0.002) and hi == pytest.approx(d + half, abs=0.002)


def test_paired_interval_stays_honest_at_the_edges():
    lo, hi = paired_interval(50, 20, 0, 0)  # no discordant points: not a zero-width certainty
    assert lo < 0 < hi
    lo, hi = paired_interval(10, 0, 10, 0)  # A keeps every point, B none
    assert -1 <= lo < 1 and hi == 1.0


def test_a_planted_3_point_difference_on_2000_points_is_detected():
    rng = np.random.default_rng(7)
    a = rng.random(2000) < 0.45
    b = a.copy()
    b[rng.choice(np.flatnonzero(a), 100, replace=False)] = False  # B loses 100 points A keeps
    b[rng.choice(np.flatnonzero(~a), 40, replace=False)] = True  # and keeps 40 that A loses
    t = paired_test(a, b)
    assert (t.b, t.c) == (100, 40)
    assert t.diff == pytest.approx(0.03)
    assert t.p_value < 0.05
    assert t.diff_lo > 0  # the interval excludes no difference too


def test_an_identical_pair_is_not_a_difference():
    a = np.random.default_rng(3).random(2000) < 0.45
    t = paired_test(a, a.copy())
    assert (t.b, t.c, t.diff, t.p_value) == (0, 0, 0.0, 1.0)
    assert t.diff_lo < 0 < t.diff_hi


def test_flags_on_different_points_are_refused():
    with pytest.raises(RobustError, match="2000 and 1999 points"):
        paired_test(np.ones(2000, bool), np.ones(1999, bool))
    with pytest.raises(RobustError, match="booleans"):
        paired_test(np.array([0, 1, 2]), np.array([0, 1, 1]))


@pytest.mark.parametrize(
    "p",
    [
        [0.01, 0.04, 0.03, 0.2, 0.005],
        [0.5],
        [0.03, 0.03, 0.03],
        [1.0, 0.0, 0.049, 0.051],
        [0.001, 0.9, 0.02, 0.02, 0.3, 0.04, 0.6],
    ],
)
def test_holm_equals_statsmodels(p):
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1], rel=1e-12)


def test_holm_refuses_what_is_not_a_p_value():
    with pytest.raises(RobustError, match="p-values"):
        holm([0.2, 1.5])


T975_2 = 4.302652729749464  # the 97.5% quantile of Student's t with 2 degrees of freedom


def test_seed_summary_against_hand_computation():
    """Three seeds at 33.0 / 30.6 / 28.8% on 2,000 points each."""
    accs, ns = [0.330, 0.306, 0.288], [2000, 2000, 2000]
    mean = (0.330 + 0.306 + 0.288) / 3  # 0.308
    sd = math.sqrt((0.022**2 + 0.002**2 + 0.020**2) / 2)  # deviations from 0.308, ddof 1
    own = seed_summary(accs, ns, same_points=False)  # each seed on its own draw of points
    assert (own.seeds, own.mean, own.sd) == (3, pytest.approx(mean), pytest.approx(sd))
    assert own.sd == pytest.approx(0.0210713, abs=1e-7)
    half = T975_2 * sd / math.sqrt(3)
    assert (own.lo, own.hi) == (pytest.approx(mean - half), pytest.approx(mean + half))
    shared = seed_summary(accs, ns, same_points=True)  # one shared draw: its binomial variance is added
    half = T975_2 * math.sqrt(sd**2 / 3 + mean * (1 - mean) / 2000)
    assert (shared.mean, shared.sd) == (own.mean, own.sd)
    assert (shared.lo, shared.hi) == (pytest.approx(mean - half), pytest.approx(mean + half))
    assert shared.lo < own.lo and shared.hi > own.hi
    assert shared.accs == tuple(accs) and shared.ns == tuple(ns)


def test_seed_summary_of_one_seed_has_no_spread():
    one = seed_summary([0.4], [1000], same_points=True)
    assert one.mean == 0.4 and math.isnan(one.sd) and math.isnan(one.lo) and math.isnan(one.hi)


def test_seed_summary_refuses_mismatched_input():
    with pytest.raises(RobustError, match="one accuracy and one n per seed"):
        seed_summary([0.3, 0.4], [1000], same_points=False)
    with pytest.raises(RobustError, match="fractions"):
        seed_summary([30.0, 40.0], [1000, 1000], same_points=False)

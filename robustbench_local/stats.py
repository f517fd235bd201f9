"""Statistics that say which differences are real: paired tests between two models
on the same points, a correction for testing several at once, and the spread of a
method over training seeds.

Accuracies are fractions in [0, 1]. Per-point flags are boolean vectors in the
order of a record's points (results.unpack_flags gives them back)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

from .errors import RobustError
from .results import Z95, wilson_interval


@dataclass(frozen=True)
class PairedTest:
    """Two models' per-point flags on the same n points, A against B.

    b: points A keeps and B loses; c: points B keeps and A loses (the discordant
    pairs). diff = acc_a - acc_b = (b - c) / n, with its paired 95% interval."""

    n: int
    correct_a: int
    correct_b: int
    b: int
    c: int
    p_value: float  # McNemar's exact test, two-sided
    diff: float
    diff_lo: float
    diff_hi: float

    @property
    def acc_a(self) -> float:
        return self.correct_a / self.n

    @property
    def acc_b(self) -> float:
        return self.correct_b / self.n


def _flags(v, what: str) -> np.ndarray:
    a = np.asarray(v.cpu() if hasattr(v, "cpu") else v)
    if a.ndim != 1:
        raise RobustError(f"{what} must be one flag per point (a 1-d vector), got shape {a.shape}")
    if a.dtype != bool:
        if not np.isin(a, (0, 1)).all():
            raise RobustError(f"{what} must hold booleans (or 0/1), one per point")
        a = a.astype(bool)
    return a


def discordant(flags_a, flags_b) -> tuple[int, int, int]:
    """(n, b, c) of two flag vectors on the same points."""
    a, b = _flags(flags_a, "flags_a"), _flags(flags_b, "flags_b")
    if len(a) != len(b):
        raise RobustError(
            f"the two flag vectors cover {len(a)} and {len(b)} points; a paired test needs the "
            "same points in the same order"
        )
    if len(a) == 0:
        raise RobustError("a paired test needs at least one point")
    return len(a), int((a & ~b).sum()), int((~a & b).sum())


def mcnemar_p(b: int, c: int) -> float:
    """McNemar's exact test: under 'A and B are equally accurate' each discordant point
    is A's with probability 1/2, so b ~ Binomial(b + c, 1/2); the two-sided exact
    binomial p-value (1 when there are no discordant points)."""
    if b < 0 or c < 0:
        raise RobustError(f"discordant counts must be >= 0, got b={b}, c={c}")
    if b + c == 0:
        return 1.0
    return float(min(1.0, st.binomtest(b, b + c, 0.5, alternative="two-sided").pvalue))


def paired_interval(n: int, both: int, b: int, c: int, z: float = Z95) -> tuple[float, float]:
    """95% interval for acc_a - acc_b from a paired 2x2 table: ``both`` points robust
    under A and B, b only under A, c only under B, n in all.

    Estimator: Newcombe's hybrid score interval for paired proportions (Newcombe 1998,
    Stat. Med. 17:2635, method 10). It combines each accuracy's Wilson interval (the
    interval the toolkit prints for single accuracies) with the correlation of the two
    flags. Unlike the Wald interval (diff +- z * se) it stays inside [-1, 1], does not
    collapse to zero width when b + c is 0, and keeps its coverage when the discordant
    counts are small; for large b + c the two agree."""
    neither = n - both - b - c
    if min(both, b, c, neither) < 0:
        raise RobustError(f"a paired table needs counts >= 0 that add up to n={n}, got {both}, {b}, {c}")
    k1, k2 = both + b, both + c  # points robust under A, under B
    p1, p2 = k1 / n, k2 / n
    l1, u1 = wilson_interval(k1, n, z)
    l2, u2 = wilson_interval(k2, n, z)
    # the correlation of the two flags, continuity-corrected toward 0 as Newcombe does
    phi = 0.0
    if min(k1, n - k1, k2, n - k2) > 0:
        cross = both * neither - b * c
        adj = cross - n / 2 if cross > n / 2 else (0.0 if cross >= 0 else cross)
        phi = adj / math.sqrt(k1 * (n - k1) * k2 * (n - k2))
    d = p1 - p2
    lo = d - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    hi = d + math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    return max(-1.0, lo), min(1.0, hi)


def paired_test(flags_a, flags_b) -> PairedTest:
    """McNemar's exact test and the paired difference of two models' per-point flags
    on the same points, in the same order."""
    n, b, c = discordant(flags_a, flags_b)
    both = int((_flags(flags_a, "flags_a") & _flags(flags_b, "flags_b")).sum())
    lo, hi = paired_interval(n, both, b, c)
    return PairedTest(n, both + b, both + c, b, c, mcnemar_p(b, c), (b - c) / n, lo, hi)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order: the i-th smallest of m
    is multiplied by m - i + 1, made non-decreasing, and capped at 1. Rejecting where
    the adjusted p is below alpha keeps the family-wise error rate at alpha."""
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1 or not np.all((p >= 0) & (p <= 1)):
        raise RobustError("Holm's correction needs a list of p-values in [0, 1]")
    m = len(p)
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


@dataclass(frozen=True)
class SeedSummary:
    """A method's accuracy over training seeds: the mean of the per-seed accuracies,
    their sample standard deviation, and a 95% interval for the method's expected
    accuracy that covers both seed and test-point variance (NaN below 2 seeds)."""

    seeds: int
    mean: float
    sd: float
    lo: float
    hi: float
    accs: tuple[float, ...]
    ns: tuple[int, ...]


def seed_summary(accs: Sequence[float], ns: Sequence[int], *, same_points: bool) -> SeedSummary:
    """Mean, sample standard deviation (ddof 1) and 95% interval of per-seed accuracies.

    Each seed's accuracy is the method's expected accuracy plus a seed effect plus
    test-point noise. Estimator: a t-interval over the seed means, mean +- t(k-1) * s / sqrt(k).

    - same_points False (each seed evaluated on its own draw of points): the spread s of
      the seeds already holds both the seed effect and the point noise, so the plain
      t-interval covers both.
    - same_points True (every seed on one shared draw, as the toolkit's fixed evaluation
      seed gives): the draw moves every seed alike and s cannot see it. By the law of total
      variance its share, p(1 - p) / n for the mean accuracy p, is added to s^2 / k; this
      is an upper bound (exact when the seeds agree on every point), so the interval errs
      wide. The t quantile keeps k - 1 degrees of freedom (the seed share is estimated
      from k values); applying it to the point share too errs wide again, and keeps this
      interval at least as wide as the plain one."""
    a = np.asarray(accs, dtype=float)
    n = np.asarray(ns, dtype=float)
    if a.ndim != 1 or len(a) == 0 or len(a) != len(n):
        raise RobustError(f"need one accuracy and one n per seed, got {len(a)} accuracies and {len(n)} counts")
    if not np.all((a >= 0) & (a <= 1)) or not np.all(n >= 1):
        raise RobustError("per-seed accuracies must be fractions in [0, 1] and each n a positive count")
    k = len(a)
    mean = float(a.mean())
    if k < 2:
        return SeedSummary(k, mean, math.nan, math.nan, math.nan, tuple(a.tolist()), tuple(int(v) for v in n))
    sd = float(a.std(ddof=1))
    seed_var = sd * sd / k
    point_var = mean * (1 - mean) / float(n.mean()) if same_points else 0.0
    var = seed_var + point_var
    half = float(st.t.ppf(0.975, k - 1)) * math.sqrt(var)
    lo, hi = max(0.0, mean - half), min(1.0, mean + half)
    return SeedSummary(k, mean, sd, lo, hi, tuple(a.tolist()), tuple(int(v) for v in n))

"""Long curves: the verdict's statistics stay exact (or within their noise) past the sizes
where they switch to the FFT and to strided medians, and long runs are judged alike."""

from __future__ import annotations

import numpy as np

from pytest_losstrend import check
from pytest_losstrend.verdict import stats


def _direct_autocorrelations(r: np.ndarray) -> dict[int, float]:
    n = len(r)
    ranks = np.argsort(np.argsort(r)).astype(np.float64)
    ranks -= ranks.mean()
    var = float(ranks @ ranks)
    return {lag: float(ranks[:-lag] @ ranks[lag:]) / var * n / (n - lag)
            for lag in range(1, n // 3 + 1)}


def test_fft_autocorrelations_equal_the_direct_sums() -> None:
    rng = np.random.default_rng(3)
    r = rng.standard_normal(2500) + np.sin(np.arange(2500) / 4.0)
    fast = stats.rank_autocorrelations(r)
    direct = _direct_autocorrelations(r)
    assert fast.keys() == direct.keys()
    assert max(abs(fast[k] - direct[k]) for k in direct) < 1e-9


def test_strided_rolling_median_stays_within_the_noise() -> None:
    rng = np.random.default_rng(4)
    n, w = 20_000, 2_000
    y = np.linspace(3.0, 1.0, n) + rng.standard_normal(n)
    exact = np.median(np.lib.stride_tricks.sliding_window_view(y, w), axis=1)
    approx = stats.rolling_median(y, w)
    assert approx.shape == exact.shape
    # The standard error of one window's median is 1.25 / sqrt(2000) = 0.028.
    assert float(np.max(np.abs(approx - exact))) < 0.028
    small = y[:500]
    exact_small = np.median(np.lib.stride_tricks.sliding_window_view(small, 50), axis=1)
    assert np.array_equal(stats.rolling_median(small, 50), exact_small)


def test_long_curves_are_judged_like_short_ones() -> None:
    rng = np.random.default_rng(5)
    for n in (2_000, 50_000):
        t = np.arange(n)
        healthy = 2.0 * np.exp(-t / (n / 5)) + 0.3 + 0.05 * rng.standard_normal(n) ** 2
        assert check(list(healthy)).status == "pass", n
        swinging = 1.0 + 0.5 * np.sin(2 * np.pi * t / (n / 20)) + 0.01 * rng.standard_normal(n)
        verdict = check(list(swinging))
        assert verdict.status == "fail" and verdict.kind == "oscillation", (n, verdict.reason)

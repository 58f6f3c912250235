"""The verdict: is this loss curve a healthy, monotone-ish decrease? (numpy only)

The verdict is three-valued. FAIL needs positive evidence that something is wrong (a non-finite
value, divergence, a spike or late rise that does not come back down, an overall rise, a frozen
curve, or a stall whose drop is confidently below ``min_drop``). PASS needs a statistically
significant decreasing trend *and* the effect size ``min_drop``. Everything else is
INCONCLUSIVE, with advice on how to get more evidence.

All statistics run on log-loss (ratios are what matter for a loss; a drop from 2.0 to 1.0 and
from 0.02 to 0.01 are equally good), with levels taken as medians of windows, so one noisy
mini-batch can neither make nor break a test. The noise scale comes from the MAD of first
differences, which a smooth trend does not inflate, and every comparison between levels carries
a margin of a few standard errors of the medians involved. The calibration behind the constants
is in ``benchmarks/README.md``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pytest_losstrend.verdict.criteria import BOUND_POINTS, DIVERGENCE_BOUND, Criteria
from pytest_losstrend.verdict.result import Verdict
from pytest_losstrend.verdict.stats import (
    FloatArray,
    block_medians,
    detrend,
    fmt_exp,
    mann_kendall,
    median_se,
    rank_autocorrelations,
    robust_noise,
    rolling_median,
    safe_exp,
)

# Significance of the decreasing trend a pass needs.
ALPHA = 0.01
# Standard errors of margin before a level difference counts as a rise.
Z_BAD = 3.0
# Standard errors of margin before a drop counts as confidently below ``min_drop``.
Z_STALL = 2.5
# Standard errors by which the start level must exceed the end level to count as a significant
# decrease when the Mann-Kendall test has no power (a fast early drop, then a long flat tail).
Z_PASS = 4.0
# A rise to this multiple of the start level is divergence rather than a rise.
DIVERGENCE_FACTOR = 2.0
# A curve whose peak-to-peak spread is below this fraction of its level is frozen.
FROZEN_RTOL = 1e-12
# The linear scale of a curve that is not all positive is its median magnitude, but never
# below this fraction of its largest magnitude: a curve of mostly zeros (or denormals) and one
# large value would otherwise be divided into the float overflow range.
MIN_UNIT = 1e-200

ADVICE = "record more steps, a larger batch or an eval series"


def _fmt(v: float) -> str:
    return f"{v + 0.0:.4g}"  # + 0.0: a loss of -0.0 reads "0", not "-0"


def judge(x: FloatArray, crit: Criteria) -> Verdict:
    """Judge ``x`` (a 1-d float array) against validated criteria ``crit``."""
    n_all = len(x)
    base: dict[str, Any] = {"n": int(n_all)}
    if n_all == 0:
        return Verdict("fail", "no loss was recorded", "empty", base)

    finite = np.isfinite(x)
    i_bad = int(np.argmin(finite)) if not finite.all() else n_all
    # The divergence bound is checked on the finite prefix: a loss that explodes past it and
    # later overflows diverged first, as the marker's fail-fast sees it.
    early = x[:BOUND_POINTS][x[:BOUND_POINTS] > 0]
    if len(early):
        ref = float(early[0])
        over = np.nonzero(x[:i_bad] > ref * DIVERGENCE_BOUND)[0]
        if len(over):
            i = int(over[0])
            base.update(start=float(x[0]), end=float(x[i]), failed_at=i,
                        drop=1.0 - float(x[i]) / float(x[0]) if x[0] > 0 else None)
            return Verdict(
                "fail",
                f"diverged: loss reached {_fmt(float(x[i]))} at step {i}, "
                f"x{float(x[i]) / ref:.3g} its first level {_fmt(ref)}",
                "divergence",
                base,
                failed_at=i,
            )
    if i_bad < n_all:
        i = i_bad
        before = f" (last finite value {_fmt(float(x[i - 1]))} at step {i - 1})" if i else ""
        base.update(first_non_finite=i, value=str(float(x[i])))
        return Verdict(
            "fail",
            f"non-finite loss {float(x[i])} at step {i}{before}",
            "non_finite",
            base,
            failed_at=i,
        )

    off = crit.warmup
    y_raw = x[off:]
    n = len(y_raw)
    base["warmup"] = off
    if n < crit.min_points:
        return Verdict(
            "inconclusive",
            f"inconclusive: {n} points after warmup, fewer than min_points={crit.min_points}; "
            f"{ADVICE}",
            "too_few_points",
            base,
        )

    scale = float(np.max(np.abs(y_raw)))
    # Every linear-scale figure is taken on the curve divided by its largest magnitude: the
    # spread of +-1.7e308 overflows, and a fixed epsilon would call a curve of denormals that
    # falls 40x frozen.
    z = y_raw / scale if scale > 0 else y_raw
    if float(np.ptp(z)) <= FROZEN_RTOL:
        base.update(start=float(y_raw[0]), end=float(y_raw[-1]), drop=0.0)
        return Verdict(
            "fail",
            f"frozen: all {n} losses equal {_fmt(float(y_raw[0]))} to the last digit; "
            "nothing is learning",
            "frozen",
            base,
            failed_at=off,
        )

    positive = bool(np.min(y_raw) > 0)
    # Log-loss when possible; otherwise a linear scale relative to the typical magnitude, so
    # that losses which can go negative (NLL of a density, an ELBO) are still judged.
    if positive:
        y = np.log(y_raw)
        unit_z = 1.0
    else:
        unit_z = max(float(np.median(np.abs(z))) or 1.0, MIN_UNIT)
        y = z / unit_z

    def level(v: float) -> float:
        # In this order, so that no product passes the curve's largest magnitude.
        return safe_exp(v) if positive else float(v * unit_z * scale)

    def rel_drop(d: float) -> float:
        # -inf when the end is more than 1.8e308 times the start (1e-200 to 1e200).
        return float(1.0 - safe_exp(-d)) if positive else float(d)

    def rise_pct(r: float) -> str:
        if not positive:
            return _pct(r)
        if r < 700.0:
            return _pct(math.expm1(r))
        return f"{fmt_exp(r + math.log(100.0))}%"

    k0 = max(1, min(10, n // 10))
    head = float(np.median(y[:k0]))
    first3 = float(np.median(y[: min(3, n)]))
    # A fast early drop hides inside a wide head window: the start level is the higher of the
    # wide-window median and the first three points' median.
    start, k_start = (first3, min(3, n)) if first3 > head else (head, k0)
    sigma = robust_noise(y)
    # A first step that falls several-fold is no noise: when the first point stands clearly
    # above the median of the first three (by the noise scale), the curve starts there.
    if float(y[0]) - first3 > Z_BAD * max(sigma, 1e-12) * 1.5:
        start, k_start = float(y[0]), 1
    k_end = max(3, n // 5)
    end = float(np.median(y[-k_end:]))
    se_d = math.hypot(median_se(sigma, k_start), median_se(sigma, k_end))
    d = start - end
    drop = rel_drop(d)
    required = -math.log1p(-crit.min_drop) if positive else crit.min_drop

    tau, p_dec, _ = mann_kendall(y)
    w = max(3, n // 10)
    rm = rolling_median(y, w)
    t_best = int(np.argmin(rm))
    best = float(rm[t_best])
    se_best = median_se(sigma, w)
    # The minimum over many windows is biased low by about sqrt(2 ln m) standard errors.
    selection = math.sqrt(2.0 * math.log(max(n / w, 2.0))) * se_best
    tol = math.log1p(crit.tolerance) if positive else crit.tolerance
    rise = end - best
    rise_margin = tol + selection + Z_BAD * math.hypot(se_best, median_se(sigma, k_end))

    stats: dict[str, Any] = {
        **base,
        "start": level(start),
        "end": level(end),
        "best": level(best),
        "best_step": off + t_best + w // 2,
        "drop": drop,
        "tau": tau,
        "p_value": p_dec,
        "noise": sigma,
        "log_scale": positive,
    }

    def went_wrong_at() -> int:
        # First step after the best window where a short rolling median leaves the best level
        # by more than the tolerance (or a tenth of the whole rise, for steep rises).
        r3 = rolling_median(y, 3)
        threshold = best + max(tol, 0.1 * (end - best))
        after = np.nonzero(r3[t_best:] > threshold)[0]
        return off + t_best + (int(after[0]) + 1 if len(after) else 0)

    if rise > rise_margin and t_best + w <= n - k_end:
        grew = end - start
        at = went_wrong_at()
        stats["failed_at"] = at
        if grew > math.log(DIVERGENCE_FACTOR) + Z_BAD * se_d and positive:
            slope = _tail_slope(y[t_best:])
            stats["growth_per_step"] = safe_exp(slope)
            return Verdict(
                "fail",
                f"diverged: loss rose from {_fmt(level(start))} to {_fmt(level(end))} "
                f"(x{fmt_exp(grew)}), growing x{fmt_exp(slope)} per step from step {at}",
                "divergence",
                stats,
                failed_at=at,
            )
        fell = start - best > Z_BAD * math.hypot(median_se(sigma, k_start), se_best)
        if fell:
            r3 = rolling_median(y[t_best:], 3)
            jump = float(np.max(np.diff(r3))) if len(r3) > 1 else 0.0
            if jump > 0.5 * rise:
                return Verdict(
                    "fail",
                    f"spike that did not recover: loss fell to {_fmt(level(best))}, jumped at "
                    f"step {at} and ended at {_fmt(level(end))} "
                    f"(+{rise_pct(rise)} above the best)",
                    "spike",
                    stats,
                    failed_at=at,
                )
            return Verdict(
                "fail",
                f"late rise: loss fell to {_fmt(level(best))} by step {stats['best_step']}, "
                f"then climbed back to {_fmt(level(end))} "
                f"(+{rise_pct(rise)} above the best, "
                f"tolerance {_pct(crit.tolerance)})",
                "late_rise",
                stats,
                failed_at=at,
            )
        _, _, p_inc = mann_kendall(block_medians(y, 10))
        stats["p_increase"] = p_inc
        if grew > Z_BAD * se_d and p_inc < ALPHA:
            return Verdict(
                "fail",
                f"rose overall: loss went from {_fmt(level(start))} to {_fmt(level(end))} "
                f"(+{rise_pct(grew)})",
                "rise",
                stats,
                failed_at=at,
            )

    osc = _oscillation(y)
    if osc is not None:
        period, amplitude, rho = osc
        # The swing in log-loss on the log scale, in loss units on the linear one.
        swing_units = amplitude if positive else amplitude * unit_z * scale
        stats.update(period=period, swing=swing_units, autocorrelation=rho)
        if amplitude > max(d, 0.0) + tol:
            swing = f"x{fmt_exp(amplitude)}" if positive else f"{swing_units:.3g}"
            return Verdict(
                "fail",
                f"oscillation: the loss swings {swing} up and down with a period of about "
                f"{period} steps (autocorrelation {rho:.2f}), more than its net drop of "
                f"{_pct(drop)}",
                "oscillation",
                stats,
            )

    # A stall needs the drop to be confidently small. The start-to-end estimate rests on a
    # few points at the start and is often too noisy to say so; the first half against the second
    # half is far more precise but blind to a fast early drop, so it only counts where the
    # start-to-end estimate cannot confirm a drop of min_drop either.
    half = n // 2
    d_half = float(np.median(y[:half]) - np.median(y[half:]))
    se_half = math.hypot(median_se(sigma, half), median_se(sigma, n - half))
    stats["half_drop"] = rel_drop(d_half)
    by_ends = d + Z_STALL * se_d < required
    by_halves = d < required and d_half + Z_STALL * se_half < required
    if by_ends or by_halves:
        creeping = p_dec < ALPHA and d > 0
        kind = "too_little_drop" if creeping else "stall"
        what = (
            "decreases too little"
            if creeping
            else "stalled: no significant downward trend"
        )
        measured = (
            f"drop {_pct(drop)} from {_fmt(level(start))} to {_fmt(level(end))}"
            if by_ends
            else f"the second half sits {_pct(rel_drop(d_half))} below the first "
            f"(start to end: {_pct(drop)})"
        )
        return Verdict(
            "fail",
            f"{what}: {measured}, confidently below min_drop={_pct(crit.min_drop)} "
            f"(Mann-Kendall tau={tau:.2f}, p={p_dec:.2g}, n={n})",
            kind,
            stats,
        )

    z_drop = d / se_d if se_d > 0 else (math.inf if d > 0 else 0.0)
    stats["z_drop"] = z_drop if math.isfinite(z_drop) else None
    significant = p_dec < ALPHA or z_drop > Z_PASS
    if significant and d >= required:
        if crit.below is not None and level(end) > crit.below:
            return Verdict(
                "fail",
                f"end level {_fmt(level(end))} is above below={_fmt(crit.below)} "
                f"(it fell {_pct(drop)} from {_fmt(level(start))})",
                "above_ceiling",
                stats,
                failed_at=off + n - 1,
            )
        evidence = (
            f"Mann-Kendall tau={tau:.2f}, p={p_dec:.2g}, n={n}"
            if p_dec < ALPHA
            else f"start level {z_drop:.1f} standard errors above the end level, n={n}"
        )
        return Verdict(
            "pass",
            f"decreased {_pct(drop)} from {_fmt(level(start))} to {_fmt(level(end))} "
            f"({evidence})",
            "decrease",
            stats,
        )

    if not significant:
        why = f"the downward trend is not significant (p={p_dec:.2g} >= {ALPHA}, n={n})"
    else:
        why = (
            f"the drop {_pct(drop)} is below min_drop={_pct(crit.min_drop)} but within "
            "the noise"
        )
    return Verdict("inconclusive", f"inconclusive: {why}; {ADVICE}", "noisy", stats)


# Autocorrelation (of ranks) of the detrended curve at its best lag that marks a periodic swing:
# at least this, and at least OSCILLATION_Z / sqrt(n), far above what the largest of n/3 lags
# of white (even heavy-tailed) mini-batch noise reaches.
OSCILLATION_RHO = 0.5
OSCILLATION_Z = 4.0


def _oscillation(y: FloatArray) -> tuple[int, float, float] | None:
    """Period, swing (10-90% range of the detrended curve) and autocorrelation of a periodic
    oscillation, or None. Needs at least three periods."""
    n = len(y)
    if n < 20:
        return None
    r = detrend(y)
    rhos = rank_autocorrelations(r)
    best_lag, best_rho = max(((lag, rho) for lag, rho in rhos.items() if lag >= 2),
                             key=lambda t: t[1], default=(0, 0.0))
    if best_rho < max(OSCILLATION_RHO, OSCILLATION_Z / math.sqrt(n)):
        return None
    q10, q90 = np.quantile(r, [0.1, 0.9])
    return best_lag, float(q90 - q10), best_rho


def _pct(v: float) -> str:
    return f"{100.0 * v:.3g}%"


def _tail_slope(y: FloatArray) -> float:
    """Per-step growth of the log-loss over the last half of ``y`` (Theil-Sen slope); its
    exponential is the growth factor per step."""
    tail = y[len(y) // 2 :]
    if len(tail) < 2:
        return 0.0
    if len(tail) > 400:
        tail = tail[-400:]
    i, j = np.triu_indices(len(tail), k=1)
    return float(np.median((tail[j] - tail[i]) / (j - i)))

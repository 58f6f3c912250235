"""The verdict's checks as named rules, run in the order of :data:`RULES` (numpy only).

Each rule takes a :class:`~pytest_losstrend.verdict.figures.Curve` and returns a
:class:`Verdict`, or None when it does not apply; the first verdict wins. The order is part of
the algorithm: a curve that diverged is not also called non-finite, a rise is looked for before
oscillation and a stall, and the pass comes after every failure had its chance.

Each rule's docstring is its documented algorithm. Its first line is the rule's bullet in the
README's "How the verdict works" (``readme_bullets`` writes the list), the rest states the
figures, the constants (read at call time from :mod:`pytest_losstrend.verdict.constants`, so a
sweep's override takes effect) and their calibration.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from statistics import NormalDist

import numpy as np

from pytest_losstrend.verdict import constants
from pytest_losstrend.verdict.figures import Curve, CurveFigures, fmt, pct
from pytest_losstrend.verdict.result import Verdict
from pytest_losstrend.verdict.stats import (
    FloatArray,
    block_medians,
    detrend,
    fmt_exp,
    mann_kendall,
    median_se,
    rank_autocorrelations,
    rolling_median,
    safe_exp,
)

# A rule: the verdict it reaches on a curve, or None when it does not apply.
Rule = Callable[[Curve], Verdict | None]


def empty(c: Curve) -> Verdict | None:
    """**empty** (fail): no loss was recorded.

    Nothing to judge; a test that records nothing is a broken test, not an inconclusive one.
    """
    if len(c.x):
        return None
    return Verdict("fail", "no loss was recorded", "empty", {"n": 0})


def divergence_bound(c: Curve) -> Verdict | None:
    """**divergence past the bound** (fail): a loss past 10⁴× the first value.

    The reference is the first positive value among the first ``BOUND_POINTS`` (5); the first
    step past ``DIVERGENCE_BOUND`` (1e4) times it fails, looked for on the finite prefix only: a
    loss that explodes past the bound and later overflows diverged first, as the marker's
    fail-fast (``record`` stops a marked test at the same bound) sees it: no healthy run gets
    there. Checked before non-finite values, for that reason.
    """
    x = c.x
    head = x[: constants.BOUND_POINTS]
    early = head[head > 0]
    if not len(early):
        return None
    ref = float(early[0])
    over = np.nonzero(x[: c.i_bad] > ref * constants.DIVERGENCE_BOUND)[0]
    if not len(over):
        return None
    i = int(over[0])
    stats = {"n": len(x), "start": float(x[0]), "end": float(x[i]), "failed_at": i,
             "drop": 1.0 - float(x[i]) / float(x[0]) if x[0] > 0 else None}
    return Verdict(
        "fail",
        f"diverged: loss reached {fmt(float(x[i]))} at step {i}, "
        f"x{float(x[i]) / ref:.3g} its first level {fmt(ref)}",
        "divergence",
        stats,
        failed_at=i,
    )


def non_finite(c: Curve) -> Verdict | None:
    """**a non-finite loss** (fail): a NaN or an infinity, the first bad step named.

    Counted over the whole curve, warmup included: a NaN during warmup is still a NaN.
    """
    i = c.i_bad
    x = c.x
    if i >= len(x):
        return None
    before = f" (last finite value {fmt(float(x[i - 1]))} at step {i - 1})" if i else ""
    return Verdict(
        "fail",
        f"non-finite loss {float(x[i])} at step {i}{before}",
        "non_finite",
        {"n": len(x), "first_non_finite": i, "value": str(float(x[i]))},
        failed_at=i,
    )


def short_run(c: Curve) -> Verdict | None:
    """**a short run** (pass or fail): under ``min_points``, the first point against the rest.

    2 to ``min_points`` - 1 points after ``warmup``, as a test of a few steps or one point per
    epoch records; one point is inconclusive. Too few points for a trend test or a noise
    scale, so the strictest rule the points support: the run passes when the mean of the
    points after the first lies below the first *and* the last lies at least ``min_drop``
    (relative to the first's magnitude) below the first, and under ``below`` if given; it fails
    otherwise, naming which of the two did not hold. A constant short run (spread at most
    ``FROZEN_RTOL`` of its magnitude) is left to ``frozen``, the next rule, which names it.
    Calibrated on the 2-6 point configurations of ``benchmarks/corpus_new*`` (per-step and
    per-epoch, torch and Keras, 10 seeds each): 90 of 90 healthy runs pass, 40 of 40 broken
    runs fail. Requiring *every* point below the first failed
    2 of the 90 healthy runs (one noisy mini-batch step up, then down).
    """
    n = len(c.y_raw)
    if n >= c.crit.min_points:
        return None
    stats = c.base_stats()
    if n < 2:
        return Verdict(
            "inconclusive",
            f"inconclusive: {n} point after warmup; one point cannot show a trend: record at "
            "least two (a loss before and after training)",
            "too_few_points",
            stats,
        )
    y = [float(v) for v in c.y_raw]
    if max(y) - min(y) <= constants.FROZEN_RTOL * max(abs(v) for v in y):
        return None
    first, last = y[0], y[-1]
    later = sum(y[1:]) / (n - 1)
    scale = abs(first) if first else 1.0
    drop = (first - last) / scale
    stats.update(start=first, end=last, drop=drop)
    few = (f"{n} points: too few for a trend test (min_points={c.crit.min_points}), so judged "
           "by the first point against the later ones")
    ref = c.reference
    if ref is not None:
        stats.update(reference=ref.value)
    # One point per level and no noise scale: only a last point clearly above the reference
    # (by ``tolerance``) is evidence; "clearly below" needs the levels of a longer run.
    if (ref is not None and later < first and drop >= c.crit.min_drop
            and last > ref.value + c.crit.tolerance * abs(ref.value)):
        return Verdict("fail", f"short run ended at {fmt(last)}, above the reference level "
                               f"{fmt(ref.value)}, {ref.how}: no better than a model that "
                               f"learned nothing from its inputs ({few})", "chance_level",
                       stats, failed_at=n - 1)
    if later < first and drop >= c.crit.min_drop and c.crit.below is not None and (
            last > c.crit.below):
        return Verdict("fail", f"short run ended at {fmt(last)}, above below={c.crit.below:g} "
                               f"({few})", "above_ceiling", stats, failed_at=n - 1)
    if later < first and drop >= c.crit.min_drop:
        return Verdict("pass", f"decreased {100 * drop:.1f}% from {fmt(first)} to {fmt(last)} "
                               f"({few})", "decrease", stats)
    if later >= first:
        why = (f"the later points average {fmt(later)}, not below the first {fmt(first)}")
    else:
        why = (f"fell {100 * drop:.1f}% from {fmt(first)} to {fmt(last)}, less than "
               f"min_drop={100 * c.crit.min_drop:g}%")
    # Its own kind: too few points for the curve rules to name a cause from (a rise of two
    # points says nothing about the learning rate); watch's evidence still can.
    return Verdict("fail", f"short run did not decrease: {why} ({few})", "short_run", stats,
                   failed_at=n - 1)


def frozen(c: Curve) -> Verdict | None:
    """**a frozen loss** (fail): every value after warmup equal to the last digit.

    The peak-to-peak spread of the curve divided by its largest magnitude is at most
    ``FROZEN_RTOL`` (1e-12): nothing a learning model produces, yet above float64 rounding
    (2.2e-16). Relative, so that a curve of denormals that falls 40x is not frozen. Checked
    before the levels are computed, which a constant curve has no noise scale for.
    """
    if float(np.ptp(c.z)) > constants.FROZEN_RTOL:
        return None
    y_raw = c.y_raw
    stats = {**c.base_stats(), "start": float(y_raw[0]), "end": float(y_raw[-1]), "drop": 0.0}
    return Verdict(
        "fail",
        f"frozen: all {len(y_raw)} losses equal {fmt(float(y_raw[0]))} to the last digit; "
        "nothing is learning",
        "frozen",
        stats,
        failed_at=c.crit.warmup,
    )


def divergence(c: Curve) -> Verdict | None:
    """**divergence** (fail): the end level more than twice the start level, beyond the noise.

    Applies when the end level sits above the best rolling-median level (window n/10, 3 at
    least) by more than ``tolerance`` plus the selection bias of a minimum (sqrt(2 ln(n/w))
    standard errors) plus ``Z_BAD`` (3) standard errors, with the best window ending before the
    end window (the last 20%). It is divergence when, on the log scale, the end exceeds the
    start by more than ln ``DIVERGENCE_FACTOR`` (2) plus ``Z_BAD`` standard errors of the
    difference. The reason gives the per-step growth factor: the Theil-Sen slope of the last
    half of the curve after the best level (400 points at most).
    """
    f = c.figures
    if f.rise_at is None:
        return None
    grew = f.end - f.start
    if not (grew > math.log(constants.DIVERGENCE_FACTOR) + constants.Z_BAD * f.se_d
            and f.positive):
        return None
    slope = _tail_slope(f.y[f.t_best :])
    f.stats["growth_per_step"] = safe_exp(slope)
    return Verdict(
        "fail",
        f"diverged: loss rose from {fmt(f.level(f.start))} to {fmt(f.level(f.end))} "
        f"(x{fmt_exp(grew)}), growing x{fmt_exp(slope)} per step from step {f.rise_at}",
        "divergence",
        f.stats,
        failed_at=f.rise_at,
    )


def chance_level(c: Curve) -> Verdict | None:
    """**no better than chance** (fail): the end level not clearly below the reference level.

    Only where a reference is known (``reference=``: a number, or ``"auto"``, the loss of the
    best constant predictor on the run's targets, which ``fit``, ``watch(loss_fn=, batch=)``
    and ``set_reference`` compute): the end level must sit ``REFERENCE_MARGIN`` (10%) of the
    reference below it, whatever the shape of the curve. A model at the reference predicts the
    label frequencies, or the mean of the targets: it learned nothing from its inputs. The
    stats carry the first point, the highest level and where it was reached, for the diagnosis
    to name the root (a blow-up first, frozen parameters, a first loss
    ``FAR_ABOVE_REFERENCE`` (10) times the reference or more). Calibrated on
    ``benchmarks/corpus_new``: healthy runs end at most 0.84 of their reference (a 3-epoch
    digits MLP), runs without signal at 0.84 to 1.03.
    """
    ref = c.reference
    if ref is None or not ref.value > 0:
        return None
    f = c.figures
    end = f.level(f.end)
    limit = ref.value * (1.0 - constants.REFERENCE_MARGIN)
    f.stats.update(reference=ref.value, end_over_reference=end / ref.value)
    if end <= limit:
        return None
    first, peak = f.level(f.first), f.level(f.peak)
    f.stats.update(first=first, peak=peak, peak_step=f.off + f.t_peak + 1)
    blew_up = ""
    f.stats["blew_up"] = _rose_from_first(f)
    if f.stats["blew_up"]:
        blew_up = (f"; it blew up to {fmt(peak)} (step {f.off + f.t_peak + 1}) from "
                   f"{fmt(first)} first")
    elif first > ref.value * constants.FAR_ABOVE_REFERENCE:
        blew_up = (f"; it started at {fmt(first)}, x{first / ref.value:.3g} the reference, "
                   "and fell only to here")
    return Verdict(
        "fail",
        f"no better than chance: ended at {fmt(end)}, not {pct(constants.REFERENCE_MARGIN)} "
        f"below the reference level {fmt(ref.value)}, {ref.how}{blew_up}",
        "chance_level",
        f.stats,
        failed_at=f.off + f.n - 1,
    )


def blowup(c: Curve) -> Verdict | None:
    """**a blow-up never recovered from** (fail): above the first level, then ended there.

    The loss rose above its first recorded level beyond the noise and ended there or higher.
    The first recorded point is where training started. The rule applies when a 3-point rolling
    median rose above it by more than ``tolerance`` plus ``Z_BAD`` (3) standard errors plus the
    selection bias of a maximum (sqrt(2 ln n) standard errors of a 3-point median), and the end
    level is not ``Z_BAD`` standard errors below the first point: a run that blew up and came
    back only to where it started learned nothing (a learning rate far past the stability
    limit that leaves ReLUs dead).
    """
    f = c.figures
    if not _rose_from_first(f):
        return None
    margin = constants.Z_BAD * math.hypot(f.sigma, median_se(f.sigma, f.k_end))
    if f.first - f.end > margin:
        return None
    first, peak, end = f.level(f.first), f.level(f.peak), f.level(f.end)
    at = f.off + f.t_peak + 1
    f.stats.update(first=first, peak=peak, peak_step=at)
    grew = f"x{fmt_exp(f.peak - f.first)}" if f.positive else f"+{fmt(peak - first)}"
    return Verdict(
        "fail",
        f"blew up and never came back below its start: loss went from {fmt(first)} to "
        f"{fmt(peak)} ({grew}) by step {at} and ended at {fmt(end)}",
        "blowup",
        f.stats,
        failed_at=at,
    )


def spike(c: Curve) -> Verdict | None:
    """**a spike that does not recover** (fail): a sudden jump the curve never came back from.

    Applies when the end sits above the best level as for divergence (``tolerance``, selection
    bias and ``Z_BAD`` standard errors), the best level is ``Z_BAD`` standard errors below the
    start (the curve fell first), and the largest single step of the 3-point rolling median
    after the best level is more than half of the whole rise.
    """
    f = c.figures
    if f.rise_at is None or not f.fell:
        return None
    r3 = rolling_median(f.y[f.t_best :], 3)
    jump = float(np.max(np.diff(r3))) if len(r3) > 1 else 0.0
    if not jump > 0.5 * f.rise:
        return None
    return Verdict(
        "fail",
        f"spike that did not recover: loss fell to {fmt(f.level(f.best))}, jumped at "
        f"step {f.rise_at} and ended at {fmt(f.level(f.end))} "
        f"(+{f.rise_pct(f.rise)} above the best)",
        "spike",
        f.stats,
        failed_at=f.rise_at,
    )


def late_rise(c: Curve) -> Verdict | None:
    """**a late rise** (fail): the curve fell, then climbed back up (an over-fitting eval loss).

    As for a spike (the end above the best level by ``tolerance`` plus the noise margin, the
    best level ``Z_BAD`` standard errors below the start), but the climb is gradual: every
    such curve the spike rule does not take.
    """
    f = c.figures
    if f.rise_at is None or not f.fell:
        return None
    return Verdict(
        "fail",
        f"late rise: loss fell to {fmt(f.level(f.best))} by step {f.stats['best_step']}, "
        f"then climbed back to {fmt(f.level(f.end))} "
        f"(+{f.rise_pct(f.rise)} above the best, "
        f"tolerance {pct(c.crit.tolerance)})",
        "late_rise",
        f.stats,
        failed_at=f.rise_at,
    )


def rise(c: Curve) -> Verdict | None:
    """**an overall rise** (fail): the end significantly above the start, trending up.

    Applies when the end sits above the best level beyond the noise margin and the curve never
    fell significantly first. The end must exceed the start by ``Z_BAD`` (3) standard errors,
    and Mann-Kendall on 10 block medians must find an increase at p < ``ALPHA`` (0.01): blocks,
    because autocorrelated mini-batch noise makes a per-point test call false rises.
    """
    f = c.figures
    if f.rise_at is None or f.fell:
        return None
    _, _, p_inc = mann_kendall(block_medians(f.y, 10))
    f.stats["p_increase"] = p_inc
    grew = f.end - f.start
    if not (grew > constants.Z_BAD * f.se_d and p_inc < constants.ALPHA):
        return None
    return Verdict(
        "fail",
        f"rose overall: loss went from {fmt(f.level(f.start))} to {fmt(f.level(f.end))} "
        f"(+{f.rise_pct(grew)})",
        "rise",
        f.stats,
        failed_at=f.rise_at,
    )


def oscillation(c: Curve) -> Verdict | None:
    """**oscillation** (fail): a periodic swing larger than the net drop.

    The curve (20 points at least) is detrended; the rank autocorrelation at its best lag (2 or
    more, up to n/3) must reach ``OSCILLATION_RHO`` (0.5) and ``OSCILLATION_Z``/sqrt(n) (4/√n),
    far above what the largest of n/3 lags of white, even heavy-tailed, mini-batch noise
    reaches (tests/test_verdict.py checks chi-square noise over 20 seeds). The swing is the 10-90%
    range of the detrended curve; it fails when larger than the net drop plus ``tolerance``.
    """
    f = c.figures
    osc = _oscillation(f.y)
    if osc is None:
        return None
    period, amplitude, rho = osc
    # The swing in log-loss on the log scale, in loss units on the linear one.
    swing_units = amplitude if f.positive else amplitude * f.unit_z * f.scale
    f.stats.update(period=period, swing=swing_units, autocorrelation=rho)
    if not amplitude > max(f.d, 0.0) + f.tol:
        return None
    swing = f"x{fmt_exp(amplitude)}" if f.positive else f"{swing_units:.3g}"
    return Verdict(
        "fail",
        f"oscillation: the loss swings {swing} up and down with a period of about "
        f"{period} steps (autocorrelation {rho:.2f}), more than its net drop of "
        f"{_amount(f)}",
        "oscillation",
        f.stats,
    )


def stall(c: Curve) -> Verdict | None:
    """**a stall** (fail): the drop confidently below ``min_drop``.

    Start to end: the drop plus ``Z_STALL`` (2.5) standard errors is below ``min_drop``. Or
    first half against second half, which is far more precise but blind to a fast early drop,
    so it counts only where start to end cannot confirm ``min_drop`` either. "Decreases too
    little" (kind ``too_little_drop``) when the trend is significant (p < ``ALPHA``) but small.
    Calibration: ``Z_STALL=2.0`` catches 8 more of the 800 bad corpus runs but fails 1 of
    the 1,100 healthy ones; 2.5 fails none.
    """
    f = c.figures
    # The start-to-end estimate rests on a few points at the start and is often too noisy to
    # say the drop is small; the halves are the precise second opinion.
    y, n = f.y, f.n
    half = n // 2
    d_half = float(np.median(y[:half]) - np.median(y[half:]))
    se_half = math.hypot(median_se(f.sigma, half), median_se(f.sigma, n - half))
    f.stats["half_drop"] = f.rel_drop(d_half)
    f.stats["min_drop"] = c.crit.min_drop
    by_ends = f.d + constants.Z_STALL * f.se_d < f.required
    by_halves = f.d < f.required and d_half + constants.Z_STALL * se_half < f.required
    if not (by_ends or by_halves):
        return None
    creeping = f.p_dec < constants.ALPHA and f.d > 0
    kind = "too_little_drop" if creeping else "stall"
    what = "decreases too little" if creeping else "stalled: no significant downward trend"
    if by_ends and f.d < 0:
        what = "no decrease"
    measured = (
        f"rose {f.rise_pct(-f.d)} from {fmt(f.level(f.start))} to {fmt(f.level(f.end))}"
        if by_ends and f.d < 0
        else f"drop {_amount(f)} from {fmt(f.level(f.start))} to {fmt(f.level(f.end))}"
        if by_ends
        else f"the second half sits {pct(f.rel_drop(d_half))} below the first "
        f"(start to end: {_amount(f)})"
    )
    after = ""
    ref = c.reference
    if ref is not None and ref.value > 0:
        f.stats["reference"] = ref.value
        after += (f"; it ends at {f.level(f.end) / ref.value:.2g}x the reference level "
                  f"{fmt(ref.value)}")
    if creeping:
        # A real, small drop: the criterion may be what is wrong (a fine-tune moves little).
        suggest = math.floor(100 * max(min(f.drop, f.rel_drop(d_half)), 0.0)) / 100
        if suggest > 0:
            after += (f"; if a small drop is expected (fine-tuning), set "
                      f"min_drop={suggest:g} or lower")
    return Verdict(
        "fail",
        f"{what}: {measured}, confidently below min_drop={pct(c.crit.min_drop)} "
        f"(Mann-Kendall tau={f.tau:.2f}, p={f.p_dec:.2g}, n={n}){after}",
        kind,
        f.stats,
    )


def above_ceiling(c: Curve) -> Verdict | None:
    """**above the ceiling** (fail): a curve that would pass ends above ``below``.

    Only with ``below`` set, and only on a curve that meets the pass rule: a curve that fails
    otherwise says why it failed, not where it ended.
    """
    f = c.figures
    significant, _ = _significance(c)
    below = c.crit.below
    if not (significant and f.d >= f.required) or below is None:
        return None
    if not f.level(f.end) > below:
        return None
    return Verdict(
        "fail",
        f"end level {fmt(f.level(f.end))} is above below={fmt(below)} "
        f"(it fell {_amount(f)} from {fmt(f.level(f.start))})",
        "above_ceiling",
        f.stats,
        failed_at=f.off + f.n - 1,
    )


def decrease(c: Curve) -> Verdict | None:
    """**Pass**: a significant decreasing trend and a drop of at least ``min_drop``.

    Significant: one-sided Mann-Kendall (exact for n ≤ 60) at p < ``ALPHA`` (0.01), or, when the
    drop happens in the first steps and the tail is flat (where the test has no power), a start
    level ``Z_PASS`` (4) standard errors above the end level. The start level is the higher of
    the medians of the first 10% (10 points at most) and of the first three points (or the first
    point, when a first step falls beyond 4.5 noise scales); the end level is the median of the
    last 20% (3 points at least). Calibration: ``ALPHA=0.05`` or ``Z_PASS=3`` turn 26 or 2
    inconclusive healthy runs into passes, but let 2 more bad runs pass (``ALPHA``).
    """
    f = c.figures
    significant, z_drop = _significance(c)
    if not (significant and f.d >= f.required):
        return None
    evidence = (
        f"Mann-Kendall tau={f.tau:.2f}, p={f.p_dec:.2g}, n={f.n}"
        if f.p_dec < constants.ALPHA
        else f"start level {z_drop:.1f} standard errors above the end level, n={f.n}"
    )
    return Verdict(
        "pass",
        f"decreased {_amount(f)} from {fmt(f.level(f.start))} to {fmt(f.level(f.end))} "
        f"({evidence})",
        "decrease",
        f.stats,
    )


def noisy(c: Curve) -> Verdict | None:
    """**Inconclusive**: a flat, noisy run, with advice that fits it (a rise fails instead).

    What is left after every other rule: the downward trend is not significant (Mann-Kendall
    p ≥ ``ALPHA`` and the start level less than ``Z_PASS`` standard errors above the end), or
    the drop is below ``min_drop`` but not confidently so. A run never gets here when it rose
    (the rise rules), blew up, sits at its reference level, or ended above its start by more
    than ``Z_STALL`` standard errors (the stall rule: a drop confidently below any
    ``min_drop`` >= 0). The advice
    names more steps only where they would decide it: the curve points down (Kendall's tau
    below 0 and a drop) and, at the same strength of trend, a test on about n (z_ALPHA / z)²
    steps would be significant, 20 times the steps at most; otherwise the run is flat within
    its noise, and a larger batch, a fixed eval set or a higher learning rate would decide it.
    Always applies: the last rule.
    """
    f = c.figures
    if not _significance(c)[0]:
        why = (f"the downward trend is not significant (p={f.p_dec:.2g} >= {constants.ALPHA}, "
               f"n={f.n})")
    else:
        why = (
            f"the drop {_amount(f)} is below min_drop={pct(c.crit.min_drop)} but within "
            "the noise"
        )
    return Verdict("inconclusive", f"inconclusive: {why}; {_advice(c)}", "noisy", f.stats)


def _amount(f: CurveFigures) -> str:
    """The drop from the start level to the end level: a percentage on a positive loss, an
    amount in loss units on one that crosses zero (a percentage of a level near zero reads
    "355%")."""
    if f.positive:
        return pct(f.drop)
    return f"{f.level(f.start) - f.level(f.end):.4g} (in loss units)"


def _z_of(p: float) -> float:
    """The one-sided normal z of a p-value (clamped: p of 0 or 1 has no finite z)."""
    return NormalDist().inv_cdf(min(max(1.0 - p, 1e-12), 1.0 - 1e-12))


def _advice(c: Curve) -> str:
    """What would decide an inconclusive run: more steps only when they would."""
    f = c.figures
    n = f.n
    z = _z_of(f.p_dec)
    z_alpha = _z_of(constants.ALPHA)
    if f.tau < 0 and f.d > 0 and z > 0:
        needed = math.ceil(n * (z_alpha / z) ** 2)
        if needed <= 20 * n:
            f.stats["steps_needed"] = needed
            return (f"record more steps: at this strength of trend about {needed} points would "
                    f"decide it ({n} now)")
    noise = (f"{pct(math.expm1(f.sigma))} per point" if f.positive
             else f"{f.sigma * f.unit_z * f.scale:.3g} per point")
    return (f"the curve is flat within its noise ({noise}): more steps of the same would not "
            "decide it; a larger batch (less noise per point), the loss on a fixed eval set, "
            "or a higher learning rate if the model should be learning, would")


RULES: tuple[Rule, ...] = (
    empty,
    divergence_bound,
    non_finite,
    short_run,
    frozen,
    divergence,
    spike,
    late_rise,
    rise,
    oscillation,
    chance_level,
    blowup,
    stall,
    above_ceiling,
    decrease,
    noisy,
)


def readme_bullets() -> str:
    """The README's list of checks, one bullet per rule in order: each docstring's first line.

    Example:
        >>> readme_bullets().splitlines()[0]
        '- **empty** (fail): no loss was recorded.'
    """
    # Docstrings are reStructuredText, the README is Markdown: ``x`` becomes `x`.
    return "\n".join(
        "- " + (inspect.getdoc(r) or "").splitlines()[0].replace("``", "`") for r in RULES
    )


def _significance(c: Curve) -> tuple[bool, float]:
    """Whether the decrease is significant (Mann-Kendall p < ALPHA, or the start level Z_PASS
    standard errors above the end) and the z of the drop; records ``z_drop`` in the stats (the
    first call places it, after the stall's figures: the pass rules share it)."""
    f = c.figures
    z_drop = f.d / f.se_d if f.se_d > 0 else (math.inf if f.d > 0 else 0.0)
    f.stats["z_drop"] = z_drop if math.isfinite(z_drop) else None
    return f.p_dec < constants.ALPHA or z_drop > constants.Z_PASS, z_drop


def _rose_from_first(f: CurveFigures) -> bool:
    """Whether a 3-point rolling median rose above the first point beyond the noise."""
    se3 = median_se(f.sigma, min(3, f.n))
    selection = math.sqrt(2.0 * math.log(max(f.n, 2))) * se3
    margin = f.tol + constants.Z_BAD * math.hypot(f.sigma, se3) + selection
    return f.peak - f.first > margin


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
    if best_rho < max(constants.OSCILLATION_RHO, constants.OSCILLATION_Z / math.sqrt(n)):
        return None
    q10, q90 = np.quantile(r, [0.1, 0.9])
    return best_lag, float(q90 - q10), best_rho


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

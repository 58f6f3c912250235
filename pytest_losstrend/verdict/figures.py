"""The figures the verdict's rules share, computed once per curve (numpy only).

:class:`Curve` is what every rule receives: the recorded curve and the criteria. The first rules
(empty, divergence past the bound, non-finite, too few points, frozen) read the raw curve; the
rest read :attr:`Curve.figures`, a :class:`CurveFigures` computed on first use, because it
cannot be computed on the curves those first rules stop (no points, a NaN, all equal).

All levels are on log-loss when the curve is positive (ratios are what matter for a loss), on a
linear scale relative to the typical magnitude otherwise, and are medians of windows; the noise
scale is the MAD of first differences, which a smooth trend does not inflate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from pytest_losstrend.verdict import constants
from pytest_losstrend.verdict.criteria import Criteria
from pytest_losstrend.verdict.reference import Reference
from pytest_losstrend.verdict.stats import (
    FloatArray,
    fmt_exp,
    mann_kendall,
    median_se,
    robust_noise,
    rolling_median,
    safe_exp,
)


def fmt(v: float) -> str:
    """A loss level for a reason string."""
    return f"{v + 0.0:.4g}"  # + 0.0: a loss of -0.0 reads "0", not "-0"


def pct(v: float) -> str:
    """A fraction as a percentage for a reason string."""
    return f"{100.0 * v:.3g}%"


@dataclass(frozen=True)
class CurveFigures:
    """The shared figures of a curve that has enough finite, not-all-equal points.

    Levels (``start``, ``end``, ``best``) and differences are on the judged scale: log-loss when
    ``positive``, else the curve divided by ``scale * unit_z``. ``stats`` is the dictionary the
    verdict reports; rules add the figures they computed to it, in the order they ran, so a later
    verdict shows what the earlier rules measured (its key order is part of the JSON report).
    """

    y: FloatArray  # the judged curve (after warmup, on the judged scale)
    positive: bool  # log scale
    scale: float  # largest magnitude of the raw curve
    unit_z: float  # linear unit, as a fraction of ``scale``
    off: int  # warmup: index of y[0] in the recorded curve
    n: int
    start: float
    k_start: int  # points behind the start level
    end: float
    k_end: int  # points behind the end level
    sigma: float  # noise of one point
    se_d: float  # standard error of start - end
    d: float  # start - end
    drop: float  # relative drop, start to end
    required: float  # min_drop on the judged scale
    tol: float  # tolerance on the judged scale
    tau: float
    p_dec: float  # Mann-Kendall p-value of a decrease
    w: int  # rolling-median window of the best level
    t_best: int  # window start of the best level
    best: float
    se_best: float
    rise: float  # end - best
    fell: bool  # the best level sits significantly below the start
    rise_at: int | None  # step it went wrong at, when the end sits above the best beyond noise
    first: float  # the first recorded level (after warmup)
    peak: float  # the highest 3-point rolling-median level
    t_peak: int  # window start of the peak level
    stats: dict[str, Any]

    def level(self, v: float) -> float:
        """A judged-scale level in loss units."""
        # In this order, so that no product passes the curve's largest magnitude.
        return safe_exp(v) if self.positive else float(v * self.unit_z * self.scale)

    def rel_drop(self, d: float) -> float:
        """A judged-scale difference as a relative drop."""
        # -inf when the end is more than 1.8e308 times the start (1e-200 to 1e200).
        return float(1.0 - safe_exp(-d)) if self.positive else float(d)

    def rise_pct(self, r: float) -> str:
        """A judged-scale rise as a percentage, readable even past the float range."""
        if not self.positive:
            # A percentage of a level near zero means nothing: the rise in loss units.
            return f"{r * self.unit_z * self.scale:.4g} in loss units"
        if r < 700.0:
            return pct(math.expm1(r))
        return f"{fmt_exp(r + math.log(100.0))}%"


@dataclass(frozen=True)
class Curve:
    """A recorded curve and the criteria it is judged against: what every rule receives."""

    x: FloatArray
    crit: Criteria
    #: The reference level the run must end clearly below (None: unknown or off).
    reference: Reference | None = None

    @cached_property
    def i_bad(self) -> int:
        """Index of the first non-finite value, or ``len(x)`` when all are finite."""
        finite = np.isfinite(self.x)
        return int(np.argmin(finite)) if not finite.all() else len(self.x)

    @property
    def y_raw(self) -> FloatArray:
        """The curve after warmup, in loss units."""
        return self.x[self.crit.warmup :]

    @cached_property
    def scale(self) -> float:
        """Largest magnitude after warmup (needs at least one point)."""
        return float(np.max(np.abs(self.y_raw)))

    @cached_property
    def z(self) -> FloatArray:
        """The curve after warmup divided by its largest magnitude."""
        # Every linear-scale figure is taken on this: the spread of +-1.7e308 overflows, and a
        # fixed epsilon would call a curve of denormals that falls 40x frozen.
        y_raw = self.y_raw
        return y_raw / self.scale if self.scale > 0 else y_raw

    def base_stats(self) -> dict[str, Any]:
        """The stats every verdict past the non-finite check starts with."""
        return {"n": len(self.x), "warmup": self.crit.warmup}

    @cached_property
    def figures(self) -> CurveFigures:
        """The shared figures, computed once (needs finite, not-all-equal points)."""
        return _prepare(self)


def _prepare(c: Curve) -> CurveFigures:
    crit = c.crit
    off = crit.warmup
    y_raw = c.y_raw
    n = len(y_raw)
    scale = c.scale
    z = c.z
    positive = bool(np.min(y_raw) > 0)
    # Log-loss when possible; otherwise a linear scale relative to the typical magnitude, so
    # that losses which can go negative (NLL of a density, an ELBO) are still judged.
    if positive:
        y = np.log(y_raw)
        unit_z = 1.0
    else:
        unit_z = max(float(np.median(np.abs(z))) or 1.0, constants.MIN_UNIT)
        y = z / unit_z

    k0 = max(1, min(10, n // 10))
    head = float(np.median(y[:k0]))
    first3 = float(np.median(y[: min(3, n)]))
    # A fast early drop hides inside a wide head window: the start level is the higher of the
    # wide-window median and the first three points' median.
    start, k_start = (first3, min(3, n)) if first3 > head else (head, k0)
    sigma = robust_noise(y)
    first = float(y[0])
    # A first step that falls several-fold is no noise: when the first point stands clearly
    # above the median of the first three (by the noise scale), the curve starts there.
    if first - first3 > constants.Z_BAD * max(sigma, 1e-12) * 1.5:
        start, k_start = first, 1
    # Training started at the first point: a head window that sits above it beyond the noise
    # holds a blow-up, and a level reached after a rise is no start ("decreased 98% from 128"
    # for a run that went 2.3 -> 7112 -> 2.3).
    tol = math.log1p(crit.tolerance) if positive else crit.tolerance
    if start - first > tol + constants.Z_BAD * math.hypot(sigma, median_se(sigma, k_start)):
        start, k_start = first, 1
    k_end = max(3, n // 5)
    end = float(np.median(y[-k_end:]))
    se_d = math.hypot(median_se(sigma, k_start), median_se(sigma, k_end))
    d = start - end
    drop = float(1.0 - safe_exp(-d)) if positive else float(d)
    required = -math.log1p(-crit.min_drop) if positive else crit.min_drop

    tau, p_dec, _ = mann_kendall(y)
    w = max(3, n // 10)
    rm = rolling_median(y, w)
    t_best = int(np.argmin(rm))
    best = float(rm[t_best])
    # The peak is looked for with a short window: a blow-up of a few steps is what it finds,
    # and one noisy point is not.
    r3 = rolling_median(y, min(3, n))
    t_peak = int(np.argmax(r3))
    peak = float(r3[t_peak])
    se_best = median_se(sigma, w)
    # The minimum over many windows is biased low by about sqrt(2 ln m) standard errors.
    selection = math.sqrt(2.0 * math.log(max(n / w, 2.0))) * se_best
    rise = end - best
    rise_margin = tol + selection + constants.Z_BAD * math.hypot(se_best, median_se(sigma, k_end))
    fell = start - best > constants.Z_BAD * math.hypot(median_se(sigma, k_start), se_best)

    def level(v: float) -> float:
        return safe_exp(v) if positive else float(v * unit_z * scale)

    stats: dict[str, Any] = {
        **c.base_stats(),
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
    rise_at = None
    # The end sits above the best level beyond tolerance and noise, and the best window ends
    # before the end window starts (else the two levels share points).
    # After a drop of orders of magnitude the floor jitters heavy-tailed (x7 at 1e-4 after a
    # fall from 1): in log ratio that is a spike, against the drop achieved it is nothing. There
    # a rise must also be ``tolerance`` of the drop in loss units.
    floor_jitter = (positive and start - best > math.log(constants.FLOOR_DECADES_RATIO)
                    and safe_exp(end) - safe_exp(best)
                    <= crit.tolerance * (safe_exp(start) - safe_exp(best)))
    if rise > rise_margin and t_best + w <= n - k_end and not floor_jitter:
        # First step after the best window where a short rolling median leaves the best level
        # by more than the tolerance (or a tenth of the whole rise, for steep rises).
        r3 = rolling_median(y, 3)
        threshold = best + max(tol, 0.1 * (end - best))
        after = np.nonzero(r3[t_best:] > threshold)[0]
        rise_at = off + t_best + (int(after[0]) + 1 if len(after) else 0)
        stats["failed_at"] = rise_at
    return CurveFigures(
        y=y, positive=positive, scale=scale, unit_z=unit_z, off=off, n=n, start=start,
        k_start=k_start, end=end, k_end=k_end, sigma=sigma, se_d=se_d, d=d, drop=drop,
        required=required, tol=tol, tau=tau, p_dec=p_dec, w=w, t_best=t_best, best=best,
        se_best=se_best, rise=rise, fell=fell, rise_at=rise_at, first=first, peak=peak,
        t_peak=t_peak, stats=stats,
    )

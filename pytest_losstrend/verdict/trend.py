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

from collections.abc import Iterable
from typing import Any

import numpy as np

# The constants live in ``constants``, where the rules read them at call time (so a sweep
# overrides them there); their names stay importable from here.
from pytest_losstrend.verdict.constants import (
    ADVICE,
    ALPHA,
    DIVERGENCE_FACTOR,
    FROZEN_RTOL,
    MIN_UNIT,
    OSCILLATION_RHO,
    OSCILLATION_Z,
    Z_BAD,
    Z_PASS,
    Z_STALL,
)
from pytest_losstrend.verdict.criteria import Criteria
from pytest_losstrend.verdict.figures import Curve, CurveFigures
from pytest_losstrend.verdict.result import Verdict
from pytest_losstrend.verdict.rules import RULES
from pytest_losstrend.verdict.stats import FloatArray

__all__ = [
    "ADVICE", "ALPHA", "DIVERGENCE_FACTOR", "FROZEN_RTOL", "MIN_UNIT", "OSCILLATION_RHO",
    "OSCILLATION_Z", "RULES", "Z_BAD", "Z_PASS", "Z_STALL", "Curve", "CurveFigures", "check",
    "judge",
]

def check(losses: Iterable[float] | Any, **criteria: Any) -> Verdict:
    """Judge a loss curve; the pure function under the marker and the fixture.

    Args:
        losses: the recorded losses in order (a list, a 1-d array, a CPU tensor).
        **criteria: any of ``min_drop``, ``below``, ``tolerance``, ``warmup``,
            ``min_points``, ``series`` (a label here), ``seeds`` and ``inconclusive``
            (used by the marker). Unknown names raise :class:`CriteriaError`.

    Returns:
        The :class:`Verdict`; ``verdict.ok`` is true only for a pass. A verdict that does not
        pass carries the diagnoses the curve alone supports, most likely first.

    Example:
        >>> from pytest_losstrend import check
        >>> check([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]).kind
        'divergence'
    """
    from pytest_losstrend.diagnosis.rules import diagnose_curve

    crit = Criteria().merged(**criteria)
    x = _as_array(losses)
    return diagnose_curve(x, judge(x, crit), crit.series)


def _as_array(losses: Iterable[float] | Any) -> FloatArray:
    try:
        arr = np.asarray(losses, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"losses must be a sequence of numbers, got {type(losses).__name__}: {exc}"
        ) from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"losses must be 1-d, got an array of shape {arr.shape}")
    return arr


def _fmt(v: float) -> str:
    return f"{v + 0.0:.4g}"  # + 0.0: a loss of -0.0 reads "0", not "-0"


def judge(x: FloatArray, crit: Criteria) -> Verdict:
    """Judge ``x`` (a 1-d float array) against validated criteria ``crit``.

    Runs the rules of :data:`RULES` in order (see :mod:`pytest_losstrend.verdict.rules`); the
    first verdict wins. The last rule always reaches one.

    Example:
        >>> judge(np.array([2.0, 1.6, 1.3, 1.1, 0.9, 0.8, 0.7, 0.65, 0.6, 0.55]), Criteria()).kind
        'decrease'
    """
    curve = Curve(x, crit)
    for rule in RULES:
        verdict = rule(curve)
        if verdict is not None:
            return verdict
    raise AssertionError("the last rule always reaches a verdict")  # pragma: no cover

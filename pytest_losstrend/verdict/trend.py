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

import numpy as np  # noqa: F401  (the doctest below builds its curve with it)

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
from pytest_losstrend.verdict.reference import Reference
from pytest_losstrend.verdict.result import Verdict
from pytest_losstrend.verdict.rules import RULES
from pytest_losstrend.verdict.stats import FloatArray

__all__ = [
    "ADVICE", "ALPHA", "DIVERGENCE_FACTOR", "FROZEN_RTOL", "MIN_UNIT", "OSCILLATION_RHO",
    "OSCILLATION_Z", "RULES", "Z_BAD", "Z_PASS", "Z_STALL", "Curve", "CurveFigures", "judge",
]



def judge(x: FloatArray, crit: Criteria, reference: Reference | None = None) -> Verdict:
    """Judge ``x`` (a 1-d float array) against validated criteria ``crit``.

    ``reference`` is the reference level the criteria resolved to (see
    :func:`pytest_losstrend.verdict.reference.resolve_reference`): a run that does not end
    clearly below it fails.

    Runs the rules of :data:`RULES` in order (see :mod:`pytest_losstrend.verdict.rules`); the
    first verdict wins. The last rule always reaches one.

    Example:
        >>> judge(np.array([2.0, 1.6, 1.3, 1.1, 0.9, 0.8, 0.7, 0.65, 0.6, 0.55]), Criteria()).kind
        'decrease'
    """
    curve = Curve(x, crit, reference)
    for rule in RULES:
        verdict = rule(curve)
        if verdict is not None:
            if reference is not None:
                # Every verdict carries the level it was judged against (a first loss far above
                # it is bad-init evidence whatever failed).
                verdict.stats.setdefault("reference", reference.value)
            return verdict
    raise AssertionError("the last rule always reaches a verdict")  # pragma: no cover

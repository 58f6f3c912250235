"""``pytest_losstrend.check``: judge a loss curve and diagnose it from the curve alone.

It sits in the diagnosis layer because a verdict that does not pass carries its diagnoses:
the verdict layer below judges, this module adds the built-in rules (numpy only, no pytest).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from pytest_losstrend.diagnosis.context import DiagnosisContext
from pytest_losstrend.diagnosis.ranking import with_diagnoses
from pytest_losstrend.diagnosis.rules import builtin_diagnoses
from pytest_losstrend.verdict.criteria import Criteria
from pytest_losstrend.verdict.reference import resolve_reference
from pytest_losstrend.verdict.result import Verdict
from pytest_losstrend.verdict.stats import FloatArray
from pytest_losstrend.verdict.trend import judge


def check(losses: Iterable[float] | Any, **criteria: Any) -> Verdict:
    """Judge a loss curve; the pure function under the marker and the fixture.

    Args:
        losses: the recorded losses in order (a list, a 1-d array, a CPU tensor).
        **criteria: any of ``min_drop``, ``below``, ``tolerance``, ``warmup``,
            ``min_points``, ``series`` (a label here), ``seeds`` and ``inconclusive``
            (used by the marker), ``reference`` (a number: the level the run must end 10%
            below; ``"auto"`` has no targets to compute one from here). Unknown names
            raise :class:`CriteriaError`.

    Returns:
        The :class:`Verdict`; ``verdict.ok`` is true only for a pass. A verdict that does not
        pass carries the diagnoses the curve alone supports, most likely first.

    Example:
        >>> from pytest_losstrend import check
        >>> check([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]).kind
        'divergence'
    """
    crit = Criteria().merged(**criteria)
    x = _as_array(losses)
    # No targets here: "auto" finds nothing to compute a reference from; a number applies.
    return diagnose_curve(x, judge(x, crit, resolve_reference(crit.reference, None)),
                          crit.series)


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


def diagnose_curve(losses: FloatArray, verdict: Verdict, series: str = "train") -> Verdict:
    """The verdict with the diagnoses the curve alone supports (used by ``check``)."""
    if verdict.ok:
        return verdict
    ctx = DiagnosisContext(series={series: [float(v) for v in losses]}, judged=series,
                           verdict=verdict, verdicts={series: verdict})
    return with_diagnoses(verdict, builtin_diagnoses(ctx))


__all__ = ["check", "diagnose_curve"]

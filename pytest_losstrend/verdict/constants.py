"""The verdict's calibrated constants, in one module (pure Python, cheap to import).

Every rule reads them from here at call time (``constants.Z_STALL``, never a copy bound at
import), so that a sweep which overrides one (``benchmarks/calibrate.py --set Z_STALL=2.0``)
changes every rule that uses it. ``pytest_losstrend.verdict.trend`` re-exports the names.
The calibration behind the values is in ``benchmarks/README.md`` ("Calibration"): the corpus
of 1,900 real torch and Keras runs (2,180 judged curves) and the sweeps of ``Z_STALL``,
``ALPHA`` and ``Z_PASS``; the defaults are the most sensitive that keep 0 healthy false alarms.
"""

from __future__ import annotations

# Re-exported so that the bound is overridable here too, like the rest: ``record`` stops a
# marked test on the criteria module's value, the verdict fails on this one.
from pytest_losstrend.verdict.criteria import BOUND_POINTS, DIVERGENCE_BOUND

__all__ = ["BOUND_POINTS", "DIVERGENCE_BOUND"]  # re-exported; the rest is defined here

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
# Autocorrelation (of ranks) of the detrended curve at its best lag that marks a periodic swing:
# at least this, and at least OSCILLATION_Z / sqrt(n), far above what the largest of n/3 lags
# of white (even heavy-tailed) mini-batch noise reaches.
OSCILLATION_RHO = 0.5
OSCILLATION_Z = 4.0

ADVICE = "record more steps, a larger batch or an eval series"
# A run must end this fraction of its reference level (the loss of the best constant
# predictor) below it to have learned anything from its inputs; a short run (too few points
# for a noise scale) fails only when its last point sits ``tolerance`` above the reference.
REFERENCE_MARGIN = 0.1
# A first loss this many times the reference level is a bad initialisation's evidence (weights
# x100 at init start at 15x to 4,000x it; healthy runs of the new corpus at most 6x).
FAR_ABOVE_REFERENCE = 10.0
# A curve that fell this many times from its start (two decades) has its rises judged against
# the drop achieved as well: a rise must also be ``tolerance`` of that drop in loss units.
FLOOR_DECADES_RATIO = 100.0

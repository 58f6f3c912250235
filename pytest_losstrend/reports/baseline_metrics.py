"""Baseline metrics: what a gate measures on a loss curve, and the gate expression.

``--losstrend-compare-fail`` names gates (``final:10%``, ``auc:15%``, ``steps_to:0.5:20%``);
:func:`parse_gates` reads them into :class:`Gate`. Each gate's metric is a plain function of
one curve: :func:`final_level` (its end level, as the verdict's ``end``), :func:`auc` (the
geometric mean loss) and :func:`steps_to` (when it first reaches a level), and
:func:`noise_se` gives the error a curve's own mini-batch noise puts on the first two.
:func:`envelope` is the band a baseline's runs span, step by step, for the HTML chart.

Pure functions of lists of numbers: no files, no numpy, nothing of the package but the
baseline error.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

from pytest_losstrend.reports.baseline_files import BaselineError
from pytest_losstrend.reports.schema import Envelope

METRICS = ("final", "auc", "steps_to")


@dataclass(frozen=True)
class Gate:
    """One gate: a metric, its tolerance (a fraction) and, for ``steps_to``, the level."""

    metric: str
    tolerance: float
    level: float | None = None

    @property
    def label(self) -> str:
        """The gate as it was written, e.g. ``final:10%`` or ``steps_to:0.5:20%``."""
        pct = f"{100 * self.tolerance:g}%"
        if self.metric == "steps_to":
            return f"steps_to:{self.level:g}:{pct}"
        return f"{self.metric}:{pct}"


def parse_gates(expr: str) -> list[Gate]:
    """Parse ``--losstrend-compare-fail``: comma-separated ``final:PCT``, ``auc:PCT`` and
    ``steps_to:LEVEL:PCT``; raises :class:`BaselineError` naming the bad part.

    Example::

        >>> parse_gates("final:10%,steps_to:0.5:20%")
        [Gate(metric='final', tolerance=0.1, level=None), Gate(metric='steps_to', ...)]
    """
    gates: list[Gate] = []
    parts = [p.strip() for p in expr.split(",") if p.strip()]
    if not parts:
        raise BaselineError("empty gate expression; expected e.g. final:10%,auc:15%")
    for part in parts:
        fields = part.split(":")
        metric = fields[0].strip().lower()
        if metric not in METRICS:
            raise BaselineError(
                f"unknown gate metric {metric!r} in {part!r}; expected final:PCT, auc:PCT or "
                "steps_to:LEVEL:PCT"
            )
        want = 3 if metric == "steps_to" else 2
        if len(fields) != want:
            form = "steps_to:LEVEL:PCT (e.g. steps_to:0.5:20%)" if want == 3 else f"{metric}:PCT"
            raise BaselineError(f"{part!r}: expected {form}")
        level = None
        if metric == "steps_to":
            try:
                level = float(fields[1])
            except ValueError:
                raise BaselineError(
                    f"{part!r}: LEVEL must be a loss value, got {fields[1]!r}"
                ) from None
            if not math.isfinite(level):
                raise BaselineError(f"{part!r}: LEVEL must be finite")
        raw = fields[-1].strip()
        try:
            pct = float(raw.removesuffix("%"))
        except ValueError:
            raise BaselineError(f"{part!r}: tolerance must be a percentage such as 10%") from None
        if not 0 <= pct <= 1000 or not math.isfinite(pct):
            raise BaselineError(f"{part!r}: tolerance must be from 0% to 1000%")
        gates.append(Gate(metric, pct / 100.0, level))
    return gates


def _floats(losses: list[Any]) -> list[float]:
    # A loaded baseline holds floats already (null read back as NaN); None and the legacy
    # strings are accepted here too so that the metrics never depend on where a curve came from.
    return [math.nan if v is None else float(v) for v in losses]


def _tail(y: list[float]) -> list[float]:
    # The verdict's end window: the last fifth, at least 3 points.
    return y[-min(len(y), max(3, len(y) // 5)):]


def final_level(losses: list[Any]) -> float:
    """The curve's end level: the median of its last fifth (at least 3 points), as the
    verdict's ``end``; infinite when the curve went non-finite."""
    y = _floats(losses)
    if not y:
        return math.nan
    if not all(math.isfinite(v) for v in y):
        return math.inf
    return _median(_tail(y))


def auc(losses: list[Any], steps: int | None = None) -> float:
    """The area under the curve per step over the first ``steps`` points (all by default),
    taken on a log scale when every loss is positive: the geometric mean loss.

    On a linear scale the first few steps, often ten times the rest, would decide the area
    and make it swing with the initialisation; on the log scale every step counts alike.
    Per step, so that curves of different lengths compare over a common prefix.
    """
    y = _floats(losses)[: steps if steps is not None else None]
    if not y:
        return math.nan
    if not all(math.isfinite(v) for v in y):
        return math.inf
    if min(y) > 0:
        return math.exp(math.fsum(math.log(v) for v in y) / len(y))
    return math.fsum(y) / len(y)


def steps_to(losses: list[Any], level: float) -> int | None:
    """The first step where the running median (window n/20, at least 3) is at or below
    ``level``, or None if never: one lucky mini-batch does not count as reaching it."""
    y = _floats(losses)
    n = len(y)
    w = min(n, max(3, n // 20))
    for t in range(w - 1, n):
        window = y[t - w + 1 : t + 1]
        if all(math.isfinite(v) for v in window) and _median(window) <= level:
            return t
    return None


def _median(v: list[float]) -> float:
    s = sorted(v)
    m = len(s) // 2
    return s[m] if len(s) % 2 else 0.5 * (s[m - 1] + s[m])


def noise_se(metric: str, losses: list[Any]) -> float:
    """The standard error a curve's own mini-batch noise puts on its ``final`` or ``auc``
    value (0 for ``steps_to`` and for a non-finite curve).

    ``final`` is a median of the last fifth: its error is the tail's robust spread over the
    square root of its length. ``auc`` averages every step: its error comes from the
    step-to-step noise (first differences, robust to the trend) over the square root of the
    length, on the log scale where ``auc`` is taken.
    """
    y = _floats(losses)
    if metric not in ("final", "auc") or len(y) < 3 or not all(math.isfinite(v) for v in y):
        return 0.0
    if metric == "final":
        tail = _tail(y)
        med = _median(tail)
        mad = _median([abs(v - med) for v in tail])
        # 1.4826 * MAD estimates sigma; the median's error is 1.2533 sigma / sqrt(k).
        return 1.2533 * 1.4826 * mad / math.sqrt(len(tail))
    positive = min(y) > 0
    z = [math.log(v) for v in y] if positive else y
    d = [b - a for a, b in itertools.pairwise(z)]
    dm = _median(d)
    sigma = 1.4826 * _median([abs(v - dm) for v in d]) / math.sqrt(2.0)
    se = sigma / math.sqrt(len(y))
    return auc(y) * se if positive else se



def envelope(runs: list[list[Any]], max_points: int = 200) -> Envelope:
    """The band the baseline's runs span, step by step (lowest and highest finite loss), over
    the steps every run has: what the HTML report shades behind the current curve.

    Past ``max_points`` steps it is thinned to buckets of consecutive steps, each keeping its
    lowest low and highest high, so the band never narrows and the report stays small.
    """
    m = min((len(r) for r in runs), default=0)
    rows = [_floats(r[:m]) for r in runs]
    steps: list[int] = []
    lo: list[float] = []
    hi: list[float] = []
    size = max(1, math.ceil(m / max_points))
    for start in range(0, m, size):
        vals = [v for r in rows for v in r[start : start + size] if math.isfinite(v)]
        if vals:
            steps.append(min(start + size // 2, m - 1))
            lo.append(float(f"{min(vals):.7g}"))
            hi.append(float(f"{max(vals):.7g}"))
    return {"steps": steps, "lo": lo, "hi": hi}


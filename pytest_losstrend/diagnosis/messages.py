"""Human-readable renderings of a verdict: sparklines and the failure message (pure Python)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pytest_losstrend.verdict.criteria import Criteria
from pytest_losstrend.verdict.result import Verdict

if TYPE_CHECKING:
    from pytest_losstrend.verdict.reference import Reference

BARS = "▁▂▃▄▅▆▇█"
NON_FINITE_MARK = "×"


def sparkline(values: Sequence[float], width: int = 40) -> str:
    """A unicode sparkline of ``values``, at most ``width`` characters wide.

    Long series are reduced to ``width`` buckets by their medians; the y-axis is logarithmic
    when every value is positive and they span more than a decade. Non-finite values show as
    ``×``.

    Example:
        >>> sparkline([4.0, 3.0, 2.0, 1.0])
        '█▆▃▁'
    """
    vals = [float(v) for v in values]
    if not vals or width < 1:
        return ""
    buckets: list[list[float]]
    if len(vals) <= width:
        buckets = [[v] for v in vals]
    else:
        step = len(vals) / width
        buckets = [vals[int(i * step) : max(int((i + 1) * step), int(i * step) + 1)]
                   for i in range(width)]
    points: list[float | None] = []
    for b in buckets:
        if any(not math.isfinite(v) for v in b):
            points.append(None)
        else:
            s = sorted(b)
            points.append(s[len(s) // 2])
    finite = [p for p in points if p is not None]
    if not finite:
        return NON_FINITE_MARK * len(points)
    lo, hi = min(finite), max(finite)
    if lo > 0 and hi / lo > 10:
        def tx(v: float) -> float:
            return math.log(v)
        lo, hi = math.log(lo), math.log(hi)
    else:
        def tx(v: float) -> float:
            return v
    # Halved before subtracting: the span of -1.7e308 .. 1.7e308 overflows, halves never do.
    span = hi / 2 - lo / 2
    out = []
    for p in points:
        if p is None:
            out.append(NON_FINITE_MARK)
        elif span <= 0:
            out.append(BARS[len(BARS) // 2])
        else:
            idx = round((tx(p) / 2 - lo / 2) / span * (len(BARS) - 1))
            out.append(BARS[max(0, min(len(BARS) - 1, idx))])
    return "".join(out)


def _g(v: Any) -> str:
    if isinstance(v, float):
        return f"{v + 0.0:.4g}"  # + 0.0: a loss of -0.0 reads "0", not "-0"
    return str(v)


def criteria_line(crit: Criteria) -> str:
    """The criteria as one ``name=value`` line (seeds and defaults included)."""
    return " ".join(f"{k}={_g(v)}" for k, v in crit.as_dict().items())


def reference_line(reference: Reference, source: str | None = None,
                   stats: dict[str, Any] | None = None) -> str:
    """The reference level in words: its value, how it was derived, from what, and where the
    run ended against it (``stats["end_over_reference"]``, when the verdict measured it).

    Example:
        >>> from pytest_losstrend.verdict.reference import Reference
        >>> reference_line(Reference(2.303, "ln 10"), "the 64 targets given to fit()")
        'reference: 2.303, ln 10, from the 64 targets given to fit()'
    """
    line = f"reference: {_g(float(reference.value))}, {reference.how}"
    if source:
        line += f", from {source}"
    ratio = (stats or {}).get("end_over_reference")
    if isinstance(ratio, float) and math.isfinite(ratio):
        line += f"; the run ended at {ratio:.3g}x it"
    return line


def failure_message(
    verdict: Verdict,
    losses: Sequence[float],
    crit: Criteria,
    *,
    header: str = "loss_decreases",
    seed: str | None = None,
    reference: Reference | None = None,
    reference_source: str | None = None,
) -> str:
    """The message a failing (or inconclusive) test shows.

    One line with the verdict and its reason, then the figures (with the ``reference`` level
    the series was judged against, how it was derived and from what), the sparkline, the
    diagnoses and the criteria.

    Example:
        >>> print(failure_message(Verdict("fail", "diverged", "divergence"), [1.0, 9.0],
        ...                       Criteria()).splitlines()[0])
        loss_decreases FAILED on series 'train': diverged
    """
    st = verdict.stats
    label = {"fail": "FAILED", "inconclusive": "INCONCLUSIVE", "pass": "passed"}[verdict.status]
    lines = [f"{header} {label} on series {crit.series!r}: {verdict.reason}"]
    figures = []
    if "start" in st:
        figures.append(f"start {_g(st['start'])} -> end {_g(st['end'])}")
    drop = st.get("drop")
    if isinstance(drop, float):
        # A loss that grew many-fold reads better as a factor than as a -1e9% drop.
        figures.append(f"drop {100 * drop:.3g}%" if drop > -1.0 else f"rise x{1.0 - drop:.3g}")
    if "tau" in st:
        figures.append(f"Mann-Kendall tau {st['tau']:+.2f}, p {st['p_value']:.2g}")
    if "noise" in st:
        figures.append(f"noise {st['noise']:.3g} (log)" if st.get("log_scale") else
                       f"noise {st['noise']:.3g}")
    figures.append(f"{len(losses)} points")
    lines.append("  figures:  " + ", ".join(figures))
    if reference is not None:
        lines.append("  " + reference_line(reference, reference_source, st))
    if verdict.failed_at is not None:
        at = verdict.failed_at
        value = losses[at] if 0 <= at < len(losses) else None
        lines.append(
            f"  went wrong at step {at}" + (f" (loss {_g(float(value))})" if value is not None
                                          else "")
        )
    spark = sparkline(losses, 60)
    lines.append(f"  curve:    {spark}  ({_g(float(losses[0])) if losses else '-'} .. "
                 f"{_g(float(losses[-1])) if losses else '-'})")
    for d in verdict.diagnoses[:3]:
        lines.append(f"  cause:    {d.cause} (confidence {d.confidence:.2f}): {d.evidence}")
        lines.append(f"            fix: {d.fix}")
    lines.append(f"  criteria: {criteria_line(crit)}")
    if seed is not None:
        lines.append(f"  seed:     {seed}")
    return "\n".join(lines)

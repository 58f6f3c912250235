"""One judgment of every series a test recorded, made once and read by everything after it.

The judged series is held to the test's criteria; every other series is judged with the default
criteria (shown for information, and compared by the diagnosis rules: a falling train curve
beside a climbing eval curve). The failure message, the diagnosis context, the JSON report, the
baseline and the JUnit properties all read this one object instead of judging again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from pytest_losstrend.verdict.criteria import Criteria
from pytest_losstrend.verdict.reference import Reference, resolve_reference
from pytest_losstrend.verdict.result import Verdict
from pytest_losstrend.verdict.trend import judge


@dataclass(frozen=True)
class SeriesJudgment:
    """One series: its losses and its verdict."""

    losses: list[float]
    verdict: Verdict
    #: The reference level the series was judged against (None: unknown or off).
    reference: Reference | None = None


@dataclass(frozen=True)
class Judgment:
    """Every recorded series of one test, each judged once.

    Attributes:
        judged: the name of the series that decides the test (``criteria.series``).
        series: each recorded series in recording order; the judged one may be absent when
            nothing was recorded under its name.
    """

    judged: str
    series: Mapping[str, SeriesJudgment]

    @property
    def verdicts(self) -> dict[str, Verdict]:
        """The verdict of every recorded series."""
        return {name: s.verdict for name, s in self.series.items()}

    @property
    def losses(self) -> dict[str, list[float]]:
        """The losses of every recorded series."""
        return {name: s.losses for name, s in self.series.items()}

    def with_verdict(self, verdict: Verdict) -> Judgment:
        """This judgment with the judged series carrying ``verdict`` (a run stopped early, or
        the verdict once diagnosed)."""
        if self.judged not in self.series:
            return self
        series = dict(self.series)
        series[self.judged] = replace(series[self.judged], verdict=verdict)
        return Judgment(self.judged, series)


def judge_series(
    series: Mapping[str, list[float]], crit: Criteria, *, verdict: Verdict | None = None,
    references: Mapping[str, Reference] | None = None,
) -> Judgment:
    """Judge every series once: ``crit.series`` under ``crit`` (or take ``verdict`` for it, when
    the caller already has it), the others under the default criteria. ``references`` are the
    reference levels computed for the series (from their loss and targets); each criterion's
    ``reference`` decides whether and which one applies.

    Example:
        >>> j = judge_series({"train": [2.0, 1.6, 1.3, 1.1, 0.9, 0.8, 0.7, 0.65, 0.6, 0.55]},
        ...                  Criteria())
        >>> j.verdicts["train"].kind
        'decrease'
    """
    out: dict[str, SeriesJudgment] = {}
    for name, losses in series.items():
        own = crit if name == crit.series else Criteria(series=name)
        ref = resolve_reference(own.reference, (references or {}).get(name))
        if name == crit.series and verdict is not None:
            out[name] = SeriesJudgment(losses, verdict, ref)
            continue
        out[name] = SeriesJudgment(
            losses, judge(np.asarray(losses, dtype=np.float64), own, ref), ref)
    return Judgment(crit.series, out)


__all__ = ["Judgment", "SeriesJudgment", "judge_series"]

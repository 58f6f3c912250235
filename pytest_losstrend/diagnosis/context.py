"""What a diagnosis rule reads: the :class:`DiagnosisContext`, and how one is built.

A rule is a plain function of a context returning :class:`Diagnosis` objects (the ``Rule``
type), whether it is built in or comes from a ``pytest_losstrend_diagnose`` hook.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from pytest_losstrend.diagnosis.evidence import Evidence
from pytest_losstrend.verdict.criteria import Criteria
from pytest_losstrend.verdict.judgment import Judgment, judge_series
from pytest_losstrend.verdict.result import Diagnosis, Verdict
from pytest_losstrend.verdict.stats import FloatArray


@dataclass
class DiagnosisContext:
    """Everything a diagnosis rule may look at.

    Attributes:
        series: every recorded series, as floats.
        judged: the name of the judged series.
        verdict: the verdict of the judged series.
        verdicts: the verdict of every series (the others judged with the default criteria).
        evidence: what ``watch`` saw, or None.
        warnings: messages of the warnings the test emitted (e.g. torch's broadcast warning).
    """

    series: dict[str, list[float]]
    judged: str
    verdict: Verdict
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    evidence: Evidence | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def losses(self) -> FloatArray:
        """The judged series as a float array."""
        return np.asarray(self.series.get(self.judged, []), dtype=np.float64)

    @property
    def lr(self) -> float | None:
        """The learning rate in use (the last one watched), if known."""
        return self.evidence.last_lr if self.evidence is not None else None


#: A diagnosis rule: a context in, its diagnoses (possibly none) out.
Rule = Callable[[DiagnosisContext], Iterable[Diagnosis]]


def context_for(
    series: dict[str, list[float]], judged: str, verdict: Verdict,
    *, evidence: Evidence | None = None, warnings: list[str] | None = None,
    judgment: Judgment | None = None,
) -> DiagnosisContext:
    """Build a context; the series other than ``judged`` are judged with the default criteria
    (the rules compare them, e.g. a falling train curve beside a climbing eval curve), unless a
    ``judgment`` of them is given, which is then read rather than judged again."""
    if evidence is not None and evidence.first_loss is None:
        first = next(iter(series.get("train") or series.get(judged) or []), None)
        if first is not None and math.isfinite(first):
            evidence.first_loss = float(first)
    if judgment is None:
        judgment = judge_series(series, Criteria(series=judged), verdict=verdict)
    verdicts = {judged: verdict}
    verdicts.update((k, v) for k, v in judgment.verdicts.items() if k != judged)
    return DiagnosisContext(series=series, judged=judged, verdict=verdict, verdicts=verdicts,
                            evidence=evidence, warnings=list(warnings or []))


__all__ = ["DiagnosisContext", "Rule", "context_for"]

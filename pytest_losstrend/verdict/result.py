"""The result types of a judged loss curve (pure Python, cheap to import).

:class:`VerdictData` and :class:`DiagnosisData` are their plain-data forms, the ``verdict`` and
``diagnosis`` objects of the JSON report (``losstrend-report/1``). They are defined here, in the
bottom layer, so that ``as_dict`` can return them without importing ``reports``;
``pytest_losstrend.reports.schema`` re-exports them beside the rest of the report's types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

Status = Literal["pass", "fail", "inconclusive"]


class DiagnosisData(TypedDict):
    """A :class:`Diagnosis` as plain data (the report's ``diagnosis`` object)."""

    cause: str
    confidence: float
    evidence: str
    fix: str


class VerdictData(TypedDict):
    """A :class:`Verdict` as plain data (the report's ``verdict`` object). The schema requires
    only ``ok``, ``status`` and ``reason``; :meth:`Verdict.as_dict` always writes every key."""

    ok: bool
    status: Status
    reason: str
    kind: str
    failed_at: int | None
    #: The figures the verdict used; free-form (the schema says only "object").
    stats: dict[str, Any]
    diagnoses: list[DiagnosisData]


@dataclass(frozen=True)
class Diagnosis:
    """One candidate explanation of a failing curve.

    Attributes:
        cause: a stable cause code such as ``"lr_too_high"`` (see the README for the list).
        confidence: how sure the rule is, in [0, 1].
        evidence: the figures behind it, one line.
        fix: a concrete change to try.
    """

    cause: str
    confidence: float
    evidence: str
    fix: str

    def as_dict(self) -> DiagnosisData:
        """Plain JSON-able data."""
        return {
            "cause": self.cause,
            "confidence": self.confidence,
            "evidence": self.evidence,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class Verdict:
    """The judgement of one loss series.

    Attributes:
        status: ``"pass"``, ``"fail"`` or ``"inconclusive"``.
        reason: one line a human reads first.
        kind: what decided it, e.g. ``"decrease"``, ``"non_finite"``, ``"divergence"``,
            ``"spike"``, ``"late_rise"``, ``"rise"``, ``"frozen"``, ``"stall"``,
            ``"too_little_drop"``, ``"above_ceiling"``, ``"short_run"``, ``"too_few_points"``,
            ``"noisy"``.
        stats: the figures the verdict used (start, end, drop, tau, p_value, noise, ...).
        diagnoses: candidate causes, most likely first.
        failed_at: the step (index into the recorded series) where it went wrong, if known.

    Example:
        >>> from pytest_losstrend import check
        >>> v = check([2.0, 1.6, 1.3, 1.1, 0.9, 0.8, 0.7, 0.65, 0.6, 0.55])
        >>> v.ok, v.status
        (True, 'pass')
    """

    status: Status
    reason: str
    kind: str
    stats: dict[str, Any] = field(default_factory=dict)
    diagnoses: tuple[Diagnosis, ...] = ()
    failed_at: int | None = None

    @property
    def ok(self) -> bool:
        """True only for a pass; inconclusive is not ok."""
        return self.status == "pass"

    @property
    def inconclusive(self) -> bool:
        """True when the evidence was too thin to decide."""
        return self.status == "inconclusive"

    def __bool__(self) -> bool:
        return self.ok

    def as_dict(self) -> VerdictData:
        """Plain JSON-able data (the ``verdict`` object of the JSON report)."""
        return {
            "ok": self.ok,
            "status": self.status,
            "reason": self.reason,
            "kind": self.kind,
            "failed_at": self.failed_at,
            "stats": dict(self.stats),
            "diagnoses": [d.as_dict() for d in self.diagnoses],
        }

"""The types of the JSON report (``losstrend-report/1``): the plain data that goes from the
test that ran to every report, as ``TypedDict`` s.

A test's record is built by the pytest glue (``runner.result_data``), carried on the test report
to the pytest-xdist controller (so it stays dicts and lists, which pytest-xdist serialises),
collected by the session and read by every report, the baselines and the mutation runner.
These types name its keys once, after the shipped JSON Schema
(``pytest_losstrend/schemas/losstrend-report-1.schema.json``); ``tests/test_schema_types.py``
checks them against it, so the two cannot drift apart.

This module is the bottom of ``reports``: it imports only ``diagnosis.invariants`` (whose
:class:`InvariantData` it re-exports) and ``verdict`` (whose :class:`VerdictData` and
:class:`DiagnosisData` it re-exports: ``Verdict.as_dict`` returns them, and the bottom layer may
not import this one), so the glue, the reports, the baselines and the catalogue can all import
it. The baseline comparison's types (:class:`ComparisonResult`,
:class:`ComparisonRow`, :class:`Envelope`) live here for the same reason;
``reports.baseline`` re-exports them under the names it always had.

Where the schema and the code differ, the types follow what the code writes, so that typing it
changed no report:

- a key the schema leaves optional but the code always writes is required here (a test's
  ``marker``, ``seed``, ``verdict`` and ``evidence``; a verdict's ``kind``, ``failed_at``,
  ``stats`` and ``diagnoses``; every criterion; a comparison's ``gated`` and a row's ``runs``;
  every ``environment`` field);
- ``outcome``, required by the schema, is pytest's and known only once the test's report is
  made: :class:`TestRecord` is the record before it (what ``result_data`` and the baseline
  comparison see), :class:`TestResult` the report's test, with it;
- ``losses`` are floats in memory; in the document the session hands the sinks
  (``report.final_document``) a loss that is not finite is the string ``"nan"``, ``"inf"`` or
  ``"-inf"``, the schema's ``number``: readers of losses accept both;
- ``framework``, ``marker`` and ``outcome`` are enumerations in the schema and ``str`` here:
  they come from pytest and the recorder as plain strings;
- a mutant's record (:class:`MutantResult`) carries more keys than the two the schema requires
  (which lists no properties for it), and ``mutation_score`` is free-form in the schema.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from pytest_losstrend.diagnosis.invariants import InvariantData
from pytest_losstrend.verdict.criteria import CriteriaData
from pytest_losstrend.verdict.result import DiagnosisData, VerdictData

__all__ = [
    "ComparisonNote",
    "ComparisonResult",
    "ComparisonRow",
    "ComparisonSpan",
    "ComparisonStatus",
    "CriteriaData",
    "DiagnosisData",
    "Envelope",
    "Environment",
    "InvariantData",
    "MachineData",
    "MutantResult",
    "MutationScore",
    "ReferenceData",
    "ReportDoc",
    "SeriesResult",
    "TestRecord",
    "TestResult",
    "VerdictData",
]

# ---------------------------------------------------------------------------------------------
# the baseline comparison (a test's ``baseline``)


class Envelope(TypedDict):
    """The band of a baseline's runs as the report carries it: at each kept step, the lowest
    and the highest finite loss."""

    steps: list[int]
    lo: list[float]
    hi: list[float]


class _RowFigures(TypedDict):
    series: str
    metric: str
    gate: str
    runs: int
    value: float | None
    band: list[float] | None
    limit: float | None
    regressed: bool


class ComparisonSpan(TypedDict, total=False):
    """What a row says about how it was compared, between the gate and the figures:
    ``steps`` (auc: the steps compared) and ``noise``."""

    steps: int
    noise: float


class ComparisonNote(TypedDict, total=False):
    """Why a row has no band, after the figures."""

    note: str


class ComparisonRow(_RowFigures, ComparisonSpan, ComparisonNote):
    """One series and gate of a comparison, as the JSON report's ``baseline.rows`` carry it:
    the current ``value``, the ``band`` of the baseline's runs and the ``limit`` (None, with a
    ``note``, when the baseline gives none), ``steps`` (auc: the steps compared) and ``noise``
    (the allowance for the curves' own noise)."""


#: A comparison's outcome: ``missing`` is no baseline for the test, ``no_file`` no file at all.
ComparisonStatus = Literal["ok", "regressed", "missing", "no_file"]


class _ResultFields(TypedDict):
    name: str
    path: str
    gated: bool
    status: ComparisonStatus
    rows: list[ComparisonRow]
    message: str


class ComparisonResult(_ResultFields, total=False):
    """One test's comparison with the baseline, as the JSON report's ``baseline`` entry: the
    baseline's ``name`` and ``path``, whether it gates the test, the ``status``, the ``rows``,
    the ``message`` a failing test shows, and when compared the baseline's ``seeds`` and the
    ``envelope`` of its runs per series."""

    seeds: list[int]
    envelope: dict[str, Envelope]


# ---------------------------------------------------------------------------------------------
# a test


class MachineData(TypedDict):
    """The part of :class:`Environment` that does not change during a run."""

    plugin: str
    python: str
    platform: str
    machine: str


class Environment(MachineData):
    """Where a test ran (a test's ``environment``, and a baseline file's): the plugin's and
    python's versions, the platform, the versions of the frameworks imported (module ->
    version) and the device."""

    frameworks: dict[str, str]
    device: str


class _ReferenceFields(TypedDict):
    value: float
    how: str


class ReferenceData(_ReferenceFields, total=False):
    """The reference level a series was judged against (a series' ``reference``): its
    ``value`` in loss units, ``how`` it was derived ("the entropy of the label frequencies
    ...", or the criterion's number) and, when derived from targets, their ``source`` ("the
    1437 training targets given to fit()")."""

    source: str


class _SeriesFields(TypedDict):
    losses: list[float]
    verdict: VerdictData


class SeriesResult(_SeriesFields, total=False):
    """One recorded series of a test: its losses (floats; see the module's note on non-finite
    ones), its verdict and, when one applied, the ``reference`` level it was judged against."""

    reference: ReferenceData


class MutationScore(TypedDict):
    """How many of the mutants that applied the test caught."""

    caught: int
    applied: int


class MutantResult(TypedDict):
    """One mutant run of a test (``--losstrend-mutate``): the mutation, whether the test caught
    it and why, and the losses the mutant recorded per series."""

    mutant: bool
    mutation: str
    description: str
    caught: bool
    reason: str
    series: dict[str, list[float]]


class _TestRecordFields(TypedDict):
    # What runner.result_data always writes, in its order (the JSON keeps it).
    nodeid: str
    marker: str | None
    framework: str | None
    seed: int | None
    criteria: CriteriaData
    series: dict[str, SeriesResult]
    verdict: VerdictData | None
    diagnoses: list[DiagnosisData]
    #: What watch() saw (``Evidence.as_dict()``); free-form, as in the schema.
    evidence: dict[str, Any] | None


class TestRecord(_TestRecordFields, total=False):
    """A test's record as the test's own run builds it, before pytest's outcome is known:
    ``runner.result_data``, then the judged test's ``warnings``, the ``environment`` and the
    ``baseline`` comparison (with ``--losstrend-save``/``--losstrend-compare``), the
    ``mutants`` and ``mutation_score`` (with ``--losstrend-mutate``), and the training
    ``invariants`` checked on a watched run, with those it could not check and why
    (``invariants_unchecked``)."""

    warnings: list[str]
    environment: Environment
    baseline: ComparisonResult
    mutants: list[MutantResult]
    mutation_score: MutationScore
    invariants: list[InvariantData]
    invariants_unchecked: dict[str, str]


class _Outcome(TypedDict):
    outcome: str


class TestResult(TestRecord, _Outcome, total=False):
    """A test of the report (``tests[]``): its :class:`TestRecord` with pytest's ``outcome``
    (``passed``, ``failed``, ``skipped``, ``xfailed``, ``xpassed``) and ``verdict_ok`` (None
    without a verdict), both added when the test's report is made, and ``reruns`` when
    pytest-rerunfailures reran it. The schema makes ``verdict_ok`` optional; the code writes it
    beside every outcome."""

    verdict_ok: bool | None
    reruns: int


# ---------------------------------------------------------------------------------------------
# the document


class ReportDoc(TypedDict):
    """The report document: what ``--losstrend-report=json:PATH`` writes and the
    ``pytest_losstrend_report`` hook receives; its tests sorted by node id."""

    schema: Literal["losstrend-report/1"]
    seed: int
    tests: list[TestResult]

"""Judging a marked test after its body ran, and attaching the result to its report
(imported only when a test marks or records a loss).

The call phase of ``pytest_runtest_call`` (:func:`judge_call`: the body's warnings, its errors
and a stopped run, the verdict, the baseline comparison and the mutants) and the result put
on the call report (:func:`attach_result`) are here; the hooks in ``plugin.py`` delegate.
"""

from __future__ import annotations

import warnings
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_losstrend.diagnosis.messages import failure_message
from pytest_losstrend.markers import MARK_DECREASES, MARK_FAILS, parse_marker
from pytest_losstrend.session import _CONFIG_KEY, _LT_KEY, _RESULT_KEY, REPORT_ATTR
from pytest_losstrend.verdict.criteria import Criteria
from pytest_losstrend.verdict.result import Verdict

if TYPE_CHECKING:
    from pytest_losstrend.diagnosis.invariants import InvariantCheck, InvariantResult
    from pytest_losstrend.fixture import LossTrend, LossTrendStop
    from pytest_losstrend.reports.schema import (
        ReferenceData,
        SeriesResult,
        TestRecord,
        TestResult,
    )
    from pytest_losstrend.verdict.judgment import Judgment


def result_data(
    item: pytest.Item, lt: LossTrend | None, crit: Criteria, verdict: Verdict | None,
    marker: str | None, *, judgment: Judgment | None = None,
) -> TestRecord:
    """The plain-data record of one test, as it goes into the reports, read from the test's
    one ``judgment`` (made here when the caller has none)."""
    if lt is not None and judgment is None:
        judgment = lt.judgment(crit)
    if judgment is not None and verdict is not None:
        # The judged series carries the verdict that decided the test, stop included.
        judgment = judgment.with_verdict(verdict)
    series: dict[str, SeriesResult] = {}
    for name, s in (judgment.series.items() if judgment is not None else ()):
        series[name] = {"losses": s.losses, "verdict": s.verdict.as_dict()}
        if s.reference is not None:
            ref: ReferenceData = {"value": s.reference.value, "how": s.reference.how}
            source = lt.reference_source(name, s.reference) if lt is not None else None
            if source:
                ref["source"] = source
            series[name]["reference"] = ref
    return {
        "nodeid": item.nodeid,
        "marker": marker,
        "framework": lt.framework if lt is not None else None,
        "seed": lt.seed if lt is not None else None,
        "criteria": crit.as_dict(),
        "series": series,
        "verdict": verdict.as_dict() if verdict is not None else None,
        "diagnoses": [d.as_dict() for d in verdict.diagnoses] if verdict is not None else [],
        "evidence": lt.evidence.as_dict() if lt is not None and lt.evidence is not None else None,
    }


def unmarked_result(item: pytest.Item, lt: LossTrend) -> TestRecord:
    """The record of a test that used the fixture without a marker (no verdict decides it)."""
    return result_data(item, lt, lt.criteria, None, None)


def judge_item(
    item: pytest.Item,
    *,
    lt: LossTrend | None,
    marker: str,
    crit: Criteria,
    cause: str | None,
    stop: LossTrendStop | None,
    fixture_requested: bool = True,
    warnings_seen: list[str] | None = None,
) -> tuple[TestRecord, str, str]:
    """Judge a marked test: ``(result data, action, message)``.

    ``action`` is ``"pass"``, ``"fail"`` or ``"skip"``; the message says why.
    """
    if lt is None or (not fixture_requested and not lt.series_names):
        verdict = Verdict(
            "fail",
            "the test did not use the losstrend fixture, so nothing was recorded"
            + (" (automatic capture is off: capture=False or --losstrend-capture=off)"
               if not capture_on(item, item.get_closest_marker(marker) or pytest.mark.x.mark,
                                 crit)
               else " (automatic capture saw no torch backward() or Keras fit)")
            + "; add a `losstrend` argument and call losstrend.record(loss) once per "
            "optimizer step",
            "empty",
        )
    elif stop is not None:
        verdict = stop.verdict
        crit = crit.merged(series=stop.series)
    notes: list[str] = []
    judgment = None
    if lt is not None:
        # Every series judged once; the message, the report, the baseline and the JUnit
        # properties below all read this judgment.
        judgment = lt.judgment(crit, verdict=verdict if stop is not None else None)
        if stop is None and (lt.series_names or fixture_requested):
            verdict = (judgment.series[crit.series].verdict if crit.series in judgment.series
                       else lt.empty_verdict(crit.series))
        verdict, notes = _diagnose(item, lt, crit, verdict, warnings_seen or [],
                                   judgment=judgment)
    losses = lt.losses(crit.series) if lt is not None else []
    check = _invariants(lt, crit, losses, warnings_seen or [])
    failing = check.failing if check is not None else []
    if failing:
        from pytest_losstrend.diagnosis.invariants import invariant_diagnoses
        from pytest_losstrend.diagnosis.ranking import leading

        # A broken invariant is the root cause the report and the message name first.
        verdict = leading(verdict, invariant_diagnoses(failing))
    data = result_data(item, lt, crit, verdict, marker, judgment=judgment)
    data["warnings"] = notes
    seed = lt.seed_line() if lt is not None else None
    ref_note = _reference_note(lt, crit, judgment)
    if check is not None and check.results:
        data["invariants"] = check.as_list()
    if check is not None and check.unchecked:
        data["invariants_unchecked"] = dict(check.unchecked)

    if marker == MARK_FAILS:
        return (data, *_expect_failure(verdict, losses, crit, cause, seed,
                                       ref_note=ref_note, failing=failing))

    if verdict.ok and not failing:
        return data, "pass", verdict.reason
    # Rebuilt rather than taken from the stop, so that every rule's diagnoses are in it.
    message = failure_message(verdict, losses, crit, seed=seed, **ref_note)
    if stop is not None:
        message += f"\n  stopped:  at step {len(losses) - 1}, the remaining steps were skipped"
    if failing:
        from pytest_losstrend.diagnosis.invariants import invariant_message

        # Certain evidence of a bug: it fails the test whatever the curve did.
        return data, "fail", (invariant_message(failing, verdict_ok=verdict.ok)
                              + "\n" + message)
    if verdict.inconclusive and crit.inconclusive != "fail":
        return data, crit.inconclusive, verdict.reason
    return data, "fail", message


def _invariants(lt: LossTrend | None, crit: Criteria, losses: list[float],
                warnings_seen: list[str]) -> InvariantCheck | None:
    """The training invariants of a watched run (None when nothing was watched)."""
    if lt is None or lt.evidence is None:
        return None
    from pytest_losstrend.diagnosis.invariants import check_invariants

    lt.finish_watching()
    return check_invariants(lt.evidence, losses, allow=crit.allow, warnings=warnings_seen)


def _reference_note(lt: LossTrend | None, crit: Criteria,
                    judgment: Judgment | None) -> dict[str, Any]:
    """The judged series' reference level and its source, as ``failure_message`` takes them."""
    s = judgment.series.get(crit.series) if judgment is not None else None
    if lt is None or s is None or s.reference is None:
        return {}
    return {"reference": s.reference,
            "reference_source": lt.reference_source(crit.series, s.reference)}


def _diagnose(
    item: pytest.Item, lt: LossTrend, crit: Criteria, verdict: Verdict, seen: list[str], *,
    judgment: Judgment,
) -> tuple[Verdict, list[str]]:
    """The verdict with its ranked diagnoses (through the ``pytest_losstrend_diagnose``
    hook), and the warnings of a passing test."""
    from pytest_losstrend.diagnosis.context import context_for
    from pytest_losstrend.diagnosis.ranking import passing_warnings, with_diagnoses

    lt.finish_watching()
    series = lt.as_dict()
    if crit.series not in series:
        return verdict, []

    if verdict.status == "fail" and lt.evidence is not None and lt.evidence.sharpness is None:
        lt.measure_sharpness()
    ctx = context_for(series, crit.series, verdict, evidence=lt.evidence, warnings=seen,
                      judgment=judgment)
    notes: list[str] = []
    if verdict.ok or verdict.inconclusive:
        from pytest_losstrend.diagnosis.watch_rules import sure_warnings

        # A skipped (inconclusive) test's certain evidence reaches the user as a passing one's.
        notes = sure_warnings(passing_warnings(ctx), lt.evidence)[0]
    if verdict.ok:
        return verdict, notes
    found = item.config.hook.pytest_losstrend_diagnose(context=ctx)
    flat = [d for batch in found if batch for d in batch]
    return with_diagnoses(verdict, flat), notes


def _expect_failure(
    verdict: Verdict, losses: list[float], crit: Criteria, cause: str | None, seed: str | None,
    *, ref_note: dict[str, Any], failing: list[InvariantResult] | None = None,
) -> tuple[str, str]:
    header = "loss_fails"
    if failing:
        # A broken invariant is the failure the test expects, whatever the curve did; with a
        # cause, the invariant's cause (or its name) must be it, or the verdict's top cause.
        from pytest_losstrend.diagnosis.invariants import INVARIANT_CAUSES

        named = {r.name for r in failing} | {INVARIANT_CAUSES.get(r.name, r.name)
                                             for r in failing}
        top = verdict.diagnoses[0].cause if verdict.diagnoses else None
        if cause is None or cause in named or (verdict.status == "fail" and top == cause):
            return "pass", "broken invariant: " + "; ".join(
                f"{r.name}: {r.evidence}" for r in failing)
    if verdict.status != "fail":
        what = "passed" if verdict.ok else "was inconclusive"
        return "fail", (
            f"{header}: expected the loss verdict to fail, but it {what}\n"
            + failure_message(verdict, losses, crit, header=header, seed=seed, **ref_note)
        )
    if cause is not None:
        causes = [d.cause for d in verdict.diagnoses]
        if not causes or causes[0] != cause:
            got = ", ".join(causes) if causes else "no diagnosis"
            return "fail", (
                f"{header}: the verdict failed, but its top cause is not {cause!r} "
                f"(got: {got})\n" + failure_message(verdict, losses, crit, header=header,
                                                    seed=seed, **ref_note)
            )
    return "pass", verdict.reason


def judge_call(item: pytest.Item, name: str, mark: pytest.Mark) -> Generator[None, Any, Any]:
    """Run a marked test's body (the one ``yield``) and judge its recorded series after it
    (``pytest_runtest_call``'s wrapper, delegated to with ``yield from``).

    Example::

        @pytest.hookimpl(wrapper=True)
        def pytest_runtest_call(item):
            return (yield from judge_call(item, "loss_decreases", mark))
    """
    from pytest_losstrend.fixture import LossTrendStop

    stop = None
    body_error: BaseException | None = None
    result = None
    lt = item.stash.get(_LT_KEY, None)
    crit, cause = parse_marker(name, mark)
    # The test's warnings are recorded (under the filters in force, so "error" still raises
    # in the test) for the diagnosis, then re-emitted for pytest's own warnings summary.
    caught: list[warnings.WarningMessage] = []
    capture = _start_capture(item, lt, mark, crit)
    try:
        with warnings.catch_warnings(record=True) as recording:
            try:
                result = yield
            finally:
                caught = list(recording or [])
                if capture is not None:
                    _end_capture(capture, lt)
    except LossTrendStop as exc:
        body = _body_error(exc, LossTrendStop)
        if body is None:
            stop = exc
        else:
            # A record() in a finally or except stopped the run while the body's own error was
            # on its way out: that error is the test's failure, the verdict is shown with it.
            _reemit(caught)
            if lt is not None and lt.series_names:
                item.stash[_RESULT_KEY] = result_data(item, lt, crit, exc.verdict, name)
            _add_note(body, "losstrend: after this error, the loss check failed too:\n"
                      + str(exc))
            body_error = body
    except BaseException:
        _reemit(caught)
        # The body failed (or skipped) on its own: that outcome stands, but the report still
        # shows what was recorded, under the test's marker.
        if lt is not None and lt.series_names:
            judgment = lt.judgment(crit)
            item.stash[_RESULT_KEY] = result_data(item, lt, crit, lt.diagnosed(judgment),
                                                  name, judgment=judgment)
        raise
    if body_error is not None:
        # Raised outside the except block, so that its own chain stays as the body left it.
        raise body_error
    _reemit(caught)
    requested = item.nodeid.split("[", 1)[0] not in item.config.stash[_CONFIG_KEY].unrequested
    data, action, message = judge_item(
        item, lt=lt, marker=name, crit=crit, cause=cause, stop=stop, fixture_requested=requested,
        warnings_seen=[str(w.message) for w in caught],
    )
    settings = item.config.stash[_CONFIG_KEY]
    b = settings.baselines
    if b is not None and name == MARK_DECREASES:
        from pytest_losstrend.reports.baseline import environment

        # Recorded where the test ran: a pytest-xdist controller never imports the frameworks.
        data["environment"] = environment()
    if b is not None and b.compare is not None and name == MARK_DECREASES and data["series"]:
        comp = data["baseline"] = b.compare_test(data)
        if b.gated and comp["status"] == "regressed":
            note = f"losstrend: {comp['message']}"
            message = note if action != "fail" else f"{message}\n{note}"
            action = "fail"
    if (
        settings.mutate and name == MARK_DECREASES and action == "pass" and lt is not None
        and lt.fit_framework is not None
    ):
        # Only a passing test is mutated: a failing one catches every mutant trivially.
        from pytest_losstrend.catalogue.mutate import run_mutants

        run_mutants(item, lt, crit, data)
    item.stash[_RESULT_KEY] = data
    _junit_properties(item, data)
    if action != "fail" and name == MARK_DECREASES:
        _warn_sure(item, data.get("warnings") or [])
    if action == "fail":
        pytest.fail(message, pytrace=False)
    if action == "skip":
        pytest.skip(message)
    return result


def capture_on(item: pytest.Item, mark: pytest.Mark, crit: Criteria) -> bool:
    """Whether automatic capture runs for a marked test: the marker's own ``capture=`` beats
    ``--losstrend-capture``, which beats the ini option ``losstrend_capture``."""
    if "capture" in mark.kwargs:
        return bool(crit.capture)
    return bool(item.config.stash[_CONFIG_KEY].capture)


def _start_capture(item: pytest.Item, lt: LossTrend | None, mark: pytest.Mark,
                   crit: Criteria) -> Any:
    """Start automatic capture into a staging recorder for the call phase (None when off)."""
    if lt is None or not capture_on(item, mark, crit):
        return None
    from pytest_losstrend.capture.auto import AutoCapture
    from pytest_losstrend.capture.recorder import Recorder

    staging = Recorder(lt.criteria, fail_fast=lt.fail_fast, seed=lt.seed,
                       base_seed=lt.base_seed, nodeid=lt.nodeid, marker=lt.marker)
    capture = AutoCapture(staging, owner=lt)
    try:
        return capture.start()
    except BaseException:
        capture.stop()
        raise


def _end_capture(capture: Any, lt: LossTrend | None) -> None:
    """Stop automatic capture (everything patched is restored) and let the test's recorder
    adopt what it captured when the test recorded nothing itself."""
    try:
        capture.stop()
    finally:
        if lt is not None:
            lt.adopt(capture.recorder)


def _body_error(stop: BaseException, stop_type: type[BaseException]) -> BaseException | None:
    """The exception the test body was raising when ``stop`` was raised (in a ``finally`` or
    an ``except``), or None when the stop came first."""
    context = stop.__context__
    while context is not None and isinstance(context, stop_type):
        context = context.__context__
    return context


def _add_note(exc: BaseException, note: str) -> None:
    """PEP 678 note, which pytest shows under the exception (set by hand before 3.11)."""
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    else:  # pragma: no cover - python 3.10
        exc.__notes__ = [*getattr(exc, "__notes__", []), note]  # type: ignore[attr-defined]


def _junit_properties(item: pytest.Item, data: TestRecord) -> None:
    """The verdict, top cause, start and end loss as JUnit XML properties (--junitxml)."""
    verdict = data.get("verdict")
    stats = verdict["stats"] if verdict is not None else {}
    diagnoses = data.get("diagnoses") or []
    props = [("losstrend_verdict", verdict["status"] if verdict is not None else None),
             ("losstrend_reason", verdict["reason"] if verdict is not None else None),
             ("losstrend_top_cause", diagnoses[0]["cause"] if diagnoses else None),
             ("losstrend_start", stats.get("start")),
             ("losstrend_end", stats.get("end"))]
    invariants = data.get("invariants") or []
    if invariants:
        from pytest_losstrend.reports.rows import invariant_state

        # "stale_gradients=broken, negative_loss=held, ...": one property, every invariant.
        props.append(("losstrend_invariants", ", ".join(
            f"{i['name']}={invariant_state(i)}" for i in invariants)))
    item.user_properties.extend((k, v) for k, v in props if v is not None)


def _warn_sure(item: pytest.Item, notes: list[str]) -> None:
    """Each warning the evidence makes certain (``SURE_WARNINGS``) of a passing or skipped
    test, as a :class:`~pytest_losstrend.LossTrendWarning` at the test's own file and line: it
    shows in pytest's warnings summary, and ``-W error::pytest_losstrend.LossTrendWarning``
    turns it into the test's failure."""
    from pytest_losstrend import LossTrendWarning
    from pytest_losstrend.diagnosis.watch_rules import SURE_WARNINGS

    for note in notes:
        if note.split(":", 1)[0] in SURE_WARNINGS:
            item.warn(LossTrendWarning(f"losstrend: {note}"))


def _reemit(caught: list[warnings.WarningMessage]) -> None:
    """Warn again, for pytest's warnings summary, what the test's body warned."""
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def attach_result(
    item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport
) -> None:
    """Attach the loss-trend result to the call-phase report as plain data, with the test's
    outcome as pytest counts it (``pytest_runtest_makereport``, for a test that has one).

    A ``loss_fails`` test whose verdict failed as expected is reported the way pytest reports
    an xfail (outcome ``skipped`` with ``wasxfail``), so pytest's summary, JUnit XML and
    pytest-xdist count it as xfailed. A skip :func:`judge_call` raised (an inconclusive
    verdict) is placed at the test, as pytest places a skip mark's, not in this file.

    Example::

        report = yield
        if call.when == "call":
            attach_result(item, call, report)
    """
    data = item.stash.get(_RESULT_KEY, None)
    lt = item.stash.get(_LT_KEY, None)
    if data is None and lt is not None and lt.series_names:
        data = unmarked_result(item, lt)
    if data is None:
        return
    verdict = data.get("verdict")
    broken = [i for i in data.get("invariants") or []
              if not i["held"] and not i.get("allowed")]
    if (
        data.get("marker") == MARK_FAILS and report.passed and call.excinfo is None
        and ((verdict is not None and verdict.get("status") == "fail") or broken)
    ):
        report.outcome = "skipped"
        if verdict is not None and verdict.get("status") == "fail":
            report.wasxfail = f"loss_fails: {verdict.get('reason', 'the loss check failed')}"
        else:
            report.wasxfail = "loss_fails: training invariant broken: " + ", ".join(
                i["name"] for i in broken)
    if report.skipped and not hasattr(report, "wasxfail"):
        _skip_at_the_test(item, report)
    if hasattr(report, "wasxfail"):
        # pytest's own words: "xfailed" and "xpassed" are counted apart from skipped/passed.
        outcome = "xfailed" if report.skipped else "xpassed"
    else:
        outcome = report.outcome
    # mypy's strict extra checks want every optional key named in a literal built with **;
    # "reruns" is the session's to add, when pytest-rerunfailures reran the test.
    result: TestResult = {
        **data, "outcome": outcome,  # type: ignore[typeddict-item]
        "verdict_ok": bool(verdict["ok"]) if verdict is not None else None,
    }
    setattr(report, REPORT_ATTR, result)


def _skip_at_the_test(item: pytest.Item, report: pytest.TestReport) -> None:
    """Point a skip raised in this file (by :func:`judge_call`) at the test's own file and line."""
    import os
    from pathlib import Path

    longrepr = report.longrepr
    if not (isinstance(longrepr, tuple) and len(longrepr) == 3):
        return
    where, _, message = longrepr
    try:
        ours = Path(str(where)).resolve() == Path(__file__).resolve()
    except OSError:
        return
    if ours:
        path, line = item.reportinfo()[:2]
        if line is not None:
            report.longrepr = (os.fspath(path), line + 1, message)

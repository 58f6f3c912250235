"""Judging a marked test after its body ran (imported only when a marked test runs)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_losstrend.diagnosis.messages import failure_message
from pytest_losstrend.verdict.criteria import Criteria
from pytest_losstrend.verdict.result import Verdict
from pytest_losstrend.verdict.trend import judge

if TYPE_CHECKING:
    import pytest

    from pytest_losstrend.fixture import LossTrend, LossTrendStop

MARK_FAILS = "loss_fails"


def _series_data(lt: LossTrend, crit: Criteria) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in lt.series_names:
        losses = lt.losses(name)
        # Only the judged series is held to the test's criteria; the others are shown with
        # the defaults, for information.
        own = crit if name == crit.series else Criteria(series=name)
        verdict = judge(lt.array(name), own)
        out[name] = {"losses": losses, "verdict": verdict.as_dict()}
    return out


def result_data(
    item: pytest.Item, lt: LossTrend | None, crit: Criteria, verdict: Verdict | None,
    marker: str | None,
) -> dict[str, Any]:
    """The plain-data record of one test, as it goes into the reports."""
    series = _series_data(lt, crit) if lt is not None else {}
    if verdict is not None and crit.series in series:
        # The judged series carries the verdict that decided the test, stop included.
        series[crit.series]["verdict"] = verdict.as_dict()
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


def unmarked_result(item: pytest.Item, lt: LossTrend) -> dict[str, Any]:
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
) -> tuple[dict[str, Any], str, str]:
    """Judge a marked test: ``(result data, action, message)``.

    ``action`` is ``"pass"``, ``"fail"`` or ``"skip"``; the message says why.
    """
    if lt is None or (not fixture_requested and not lt.series_names):
        verdict = Verdict(
            "fail",
            "the test did not use the losstrend fixture, so nothing was recorded; add a "
            "`losstrend` argument and call losstrend.record(loss) once per optimizer step",
            "empty",
        )
    elif stop is not None:
        verdict = stop.verdict
        crit = crit.merged(series=stop.series)
    else:
        verdict = lt.check()
    notes: list[str] = []
    if lt is not None:
        verdict, notes = _diagnose(item, lt, crit, verdict, warnings_seen or [])
    data = result_data(item, lt, crit, verdict, marker)
    data["warnings"] = notes
    losses = lt.losses(crit.series) if lt is not None else []
    seed = lt.seed_line() if lt is not None else None

    if marker == MARK_FAILS:
        return (data, *_expect_failure(verdict, losses, crit, cause, seed))

    if verdict.ok:
        return data, "pass", verdict.reason
    # Rebuilt rather than taken from the stop, so that every rule's diagnoses are in it.
    message = failure_message(verdict, losses, crit, seed=seed)
    if stop is not None:
        message += f"\n  stopped:  at step {len(losses) - 1}, the remaining steps were skipped"
    if verdict.inconclusive and crit.inconclusive != "fail":
        return data, crit.inconclusive, verdict.reason
    return data, "fail", message


def _diagnose(
    item: pytest.Item, lt: LossTrend, crit: Criteria, verdict: Verdict, seen: list[str]
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
    ctx = context_for(series, crit.series, verdict, evidence=lt.evidence, warnings=seen)
    if verdict.ok:
        return verdict, passing_warnings(ctx)
    found = item.config.hook.pytest_losstrend_diagnose(context=ctx)
    flat = [d for batch in found if batch for d in batch]
    return with_diagnoses(verdict, flat), []


def _expect_failure(
    verdict: Verdict, losses: list[float], crit: Criteria, cause: str | None, seed: str | None
) -> tuple[str, str]:
    header = "loss_fails"
    if verdict.status != "fail":
        what = "passed" if verdict.ok else "was inconclusive"
        return "fail", (
            f"{header}: expected the loss verdict to fail, but it {what}\n"
            + failure_message(verdict, losses, crit, header=header, seed=seed)
        )
    if cause is not None:
        causes = [d.cause for d in verdict.diagnoses]
        if not causes or causes[0] != cause:
            got = ", ".join(causes) if causes else "no diagnosis"
            return "fail", (
                f"{header}: the verdict failed, but its top cause is not {cause!r} "
                f"(got: {got})\n" + failure_message(verdict, losses, crit, header=header,
                                                    seed=seed)
            )
    return "pass", verdict.reason

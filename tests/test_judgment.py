"""One judgment per series per test: the message, the report, the baseline and the JUnit
properties read one judgment instead of each judging the curves again."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_losstrend.verdict import trend
from pytest_losstrend.verdict.criteria import Criteria
from pytest_losstrend.verdict.judgment import judge_series

INNER = """
import pytest

FALLING = [2.0 / (1 + 0.2 * t) for t in range(40)]
STALLED = [1.0 + 0.01 * (t % 3) for t in range(40)]

@pytest.mark.loss_decreases
def test_passes(losstrend):
    losstrend.record(FALLING)
    losstrend.record(FALLING[::4], series="eval")

@pytest.mark.loss_decreases(inconclusive="fail")
def test_fails(losstrend):
    losstrend.record(STALLED)
    losstrend.record(FALLING[::4], series="eval")
"""


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the curves ``judge`` judges (each judgment builds one ``Curve``)."""
    calls: list[int] = []
    real = trend.Curve

    def counting(x: Any, crit: Criteria, reference: Any = None) -> Any:
        calls.append(len(x))
        return real(x, crit, reference)

    monkeypatch.setattr(trend, "Curve", counting)
    return calls


@pytest.mark.parametrize(("test", "outcome"), [("test_passes", "passed"),
                                               ("test_fails", "failed")])
def test_each_series_is_judged_once(
    pytester: pytest.Pytester, counted: list[int], test: str, outcome: str
) -> None:
    """Two series, a failure message, diagnoses, the JSON report, the term table and JUnit
    properties: two judgments in all, one per series (the judged series 40 points, the eval
    series 10)."""
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_inprocess(
        f"test_inner.py::{test}", "--losstrend-report=json:r.json", "--losstrend-report",
        "--junitxml=j.xml")
    result.assert_outcomes(**{outcome: 1})
    assert sorted(counted) == [10, 40]
    (doc,) = json.loads((pytester.path / "r.json").read_text())["tests"]
    assert set(doc["series"]) == {"train", "eval"}


def test_judge_series_takes_the_judged_verdict_it_is_given() -> None:
    falling = [2.0 / (1 + 0.2 * t) for t in range(40)]
    plain = judge_series({"train": falling, "eval": falling[::4]}, Criteria())
    given = judge_series({"train": falling, "eval": falling[::4]}, Criteria(),
                         verdict=plain.verdicts["eval"])
    assert given.verdicts["train"] is plain.verdicts["eval"]
    assert given.verdicts["eval"] == plain.verdicts["eval"]
    assert plain.with_verdict(plain.verdicts["eval"]).verdicts["train"] is plain.verdicts["eval"]

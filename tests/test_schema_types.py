"""The report's TypedDicts (``pytest_losstrend.reports.schema``) against the shipped JSON Schema,
so that the two cannot drift apart.

Walked from the document down: at each object the schema describes, every key the schema
requires is a required key of the TypedDict, and every key of the TypedDict is a property the
schema names (where it names any: a free-form ``object`` leaves the keys to the code). Where a
key's type holds another TypedDict (directly, in a list, as a mapping's values or beside
None), the walk goes into it and the schema node at that key.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import fields
from typing import Any, get_args, get_origin, get_type_hints, is_typeddict

import pytest

from pytest_losstrend.reports import schema
from pytest_losstrend.reports.report import SCHEMA, SCHEMA_PATH
from pytest_losstrend.verdict.criteria import Criteria

DOC = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))

#: TypedDicts of the module that are no schema object of their own, only parts of one: the
#: record before pytest's outcome (checked through TestResult, which extends it) and the
#: mixins of ComparisonRow and Environment.
PARTS = {"TestRecord", "ComparisonSpan", "ComparisonNote", "MachineData"}


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    """The schema node behind a ``$ref``, and the one arm of an ``anyOf`` that is not null
    (a choice of scalars, such as a loss's number or string, is left as it is)."""
    while True:
        if "$ref" in node:
            ref = node["$ref"]
            assert ref.startswith("#/$defs/"), ref
            node = DOC["$defs"][ref.removeprefix("#/$defs/")]
        elif "anyOf" in node:
            arms = [a for a in node["anyOf"] if a.get("type") != "null"]
            if len(arms) != 1:
                return node
            node = arms[0]
        else:
            return node


def _inner(tp: Any, node: dict[str, Any]) -> tuple[Any, dict[str, Any]] | None:
    """The TypedDict inside type ``tp`` and the schema node that describes it, or None when
    ``tp`` holds none."""
    node = _resolve(node)
    if is_typeddict(tp):
        return tp, node
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        arms = [a for a in get_args(tp) if a is not type(None)]
        return _inner(arms[0], node) if len(arms) == 1 else None
    if origin is list:
        return _inner(get_args(tp)[0], node["items"]) if "items" in node else None
    if origin is dict:
        extra = node.get("additionalProperties")
        return _inner(get_args(tp)[1], extra) if isinstance(extra, dict) else None
    return None


def _walk(td: Any, node: dict[str, Any], where: str, seen: dict[str, str]) -> None:
    node = _resolve(node)
    seen.setdefault(td.__name__, where)
    required = set(node.get("required", []))
    missing = required - td.__required_keys__
    assert not missing, f"{where} ({td.__name__}): schema requires {sorted(missing)}"
    if "properties" in node:
        extra = set(td.__annotations__) - set(node["properties"])
        assert not extra, f"{where} ({td.__name__}): not in the schema: {sorted(extra)}"
    hints = get_type_hints(td)
    for key, tp in hints.items():
        sub = node.get("properties", {}).get(key)
        if sub is None:
            continue
        found = _inner(tp, sub)
        if found is not None:
            _walk(found[0], found[1], f"{where}.{key}", seen)


@pytest.fixture(scope="module")
def walked() -> dict[str, str]:
    """Every TypedDict the walk from ReportDoc reached, with where."""
    seen: dict[str, str] = {}
    _walk(schema.ReportDoc, DOC, "document", seen)
    return seen


def test_typeddicts_match_the_schema(walked: dict[str, str]) -> None:
    # The walk asserts as it goes; here, that it reached the whole tree.
    assert walked["TestResult"] == "document.tests"
    assert walked["SeriesResult"] == "document.tests.series"
    assert walked["VerdictData"] == "document.tests.series.verdict"
    assert walked["ReferenceData"] == "document.tests.series.reference"
    assert walked["ComparisonRow"] == "document.tests.baseline.rows"
    assert walked["Envelope"] == "document.tests.baseline.envelope"


def test_every_report_typeddict_is_checked(walked: dict[str, str]) -> None:
    mine = {name for name in schema.__all__ if is_typeddict(getattr(schema, name))}
    assert mine - PARTS - set(walked) == set()
    # The parts are parts of a checked one.
    assert issubclass(schema.TestResult, dict)
    assert schema.TestRecord.__required_keys__ <= schema.TestResult.__required_keys__
    assert set(schema.ComparisonSpan.__annotations__) <= set(schema.ComparisonRow.__annotations__)
    assert set(schema.MachineData.__annotations__) <= set(schema.Environment.__annotations__)


def test_the_schema_constant_is_the_typeddicts() -> None:
    assert get_type_hints(schema.ReportDoc)["schema"] == typing.Literal[SCHEMA]
    assert DOC["properties"]["schema"]["const"] == SCHEMA


def test_criteria_data_names_every_criterion() -> None:
    """``Criteria.as_dict`` writes the dataclass' fields; CriteriaData names the same ones."""
    assert list(schema.CriteriaData.__annotations__) == [f.name for f in fields(Criteria)]
    assert set(Criteria().as_dict()) == schema.CriteriaData.__required_keys__


def test_the_outcome_is_the_report_tests_not_the_records() -> None:
    """The schema requires ``outcome``, which only the test's report knows: the record
    ``result_data`` builds has none, the report's test requires it."""
    assert "outcome" not in schema.TestRecord.__annotations__
    assert "outcome" in schema.TestResult.__required_keys__
    assert {"verdict_ok", "reruns"} <= schema.TestResult.__optional_keys__


def test_a_real_document_has_the_typeddicts_keys(pytester: pytest.Pytester) -> None:
    """A written report's tests carry every required key of TestResult, and no key it does
    not name."""
    pytester.makepyfile("""
        import pytest

        @pytest.mark.loss_decreases
        def test_learns(losstrend):
            for i in range(20):
                losstrend.record(1.0 / (i + 1))
    """)
    pytester.runpytest("-p", "no:cacheprovider", "--losstrend-report=json:r.json")
    doc = json.loads((pytester.path / "r.json").read_text(encoding="utf-8"))
    (test,) = doc["tests"]
    assert schema.TestResult.__required_keys__ <= set(test)
    assert set(test) <= set(schema.TestResult.__annotations__)
    (series,) = test["series"].values()
    assert set(series["verdict"]) == set(schema.VerdictData.__annotations__)

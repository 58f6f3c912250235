"""The Markdown report, JUnit properties and the report sink hook."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

# Imported before pytester snapshots the modules: numpy cannot be loaded twice in one process.
import pytest_losstrend.diagnosis.rules
import pytest_losstrend.reports.report
import pytest_losstrend.runner  # noqa: F401

SUITE = """
import pytest

@pytest.mark.loss_decreases
def test_falls(losstrend):
    for i in range(40):
        losstrend.record(1.0 / (1 + i) + 0.01 * (i % 3))

@pytest.mark.loss_decreases
def test_rises(losstrend):
    for i in range(40):
        losstrend.record(1.0 + 0.1 * i)

@pytest.mark.loss_fails
def test_known_bad(losstrend):
    for i in range(40):
        losstrend.record(1.0 + 0.1 * i)
"""


def test_markdown_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_curves=SUITE)
    result = pytester.runpytest_inprocess("--losstrend-report=md:out/summary.md")
    result.assert_outcomes(passed=1, failed=1, xfailed=1)
    text = (pytester.path / "out" / "summary.md").read_text()
    assert text.startswith("## Loss trends\n")
    assert "3 tests (seed 0): 1 failed, 1 passed, 1 xfailed." in text
    assert "| `test_curves.py::test_falls` | train | 40 |" in text
    # The verdict, then pytest's outcome.
    assert "| FAIL | XFAIL |" in text and "| FAIL | FAILED |" in text
    assert "### Failing" in text and "`test_curves.py::test_rises`" in text
    assert "test_known_bad`:" not in text.split("### Failing")[1]
    result.stdout.fnmatch_lines(["losstrend: Markdown report written to */out/summary.md"])


def test_junit_properties(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_curves=SUITE)
    pytester.runpytest_inprocess("--junitxml=junit.xml")
    root = ET.parse(pytester.path / "junit.xml").getroot()
    props = {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in root.iter("testcase")
    }
    assert props["test_falls"]["losstrend_verdict"] == "pass"
    assert props["test_rises"]["losstrend_verdict"] == "fail"
    assert float(props["test_rises"]["losstrend_end"]) > float(
        props["test_rises"]["losstrend_start"])
    assert "losstrend_reason" in props["test_rises"]


def test_sink_hook_receives_the_document(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import json

        def pytest_losstrend_report(report, config):
            with open("sink.json", "w") as fh:
                json.dump({"schema": report["schema"],
                           "nodeids": [t["nodeid"] for t in report["tests"]]}, fh)
        """
    )
    pytester.makepyfile(test_curves=SUITE)
    pytester.runpytest_inprocess()
    got = json.loads((pytester.path / "sink.json").read_text())
    assert got["schema"] == "losstrend-report/1"
    assert len(got["nodeids"]) == 3


def test_md_needs_a_path(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess("--losstrend-report=md")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*the md report needs a path*"])


VARIED = """
import pytest

@pytest.mark.loss_decreases
def test_falls(losstrend):
    for i in range(40):
        losstrend.record(1.0 / (1 + i) + 0.01 * (i % 3))
    losstrend.record(0.5, series="eval")

@pytest.mark.loss_decreases
def test_nan(losstrend):
    for v in [1.0, 0.9, float("nan")]:
        losstrend.record(v)

@pytest.mark.loss_fails
def test_known_bad(losstrend):
    for i in range(40):
        losstrend.record(1.0 + 0.1 * i)

@pytest.mark.loss_decreases
def test_short(losstrend):
    losstrend.record(1.0)

def test_unmarked(losstrend):
    losstrend.record([3.0, 2.0, 1.0])
"""


def _validate(doc: dict[str, object]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from pytest_losstrend.reports.report import SCHEMA_PATH

    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))


def test_json_report_matches_the_shipped_schema(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_varied=VARIED)
    result = pytester.runpytest_inprocess("--losstrend-report=json:r.json")
    result.assert_outcomes(passed=2, failed=1, skipped=1, xfailed=1)
    doc = json.loads((pytester.path / "r.json").read_text())
    _validate(doc)
    assert {t["nodeid"].split("::")[1] for t in doc["tests"]} == {
        "test_falls", "test_nan", "test_known_bad", "test_short", "test_unmarked"}
    nan_test = next(t for t in doc["tests"] if t["nodeid"].endswith("test_nan"))
    assert nan_test["series"]["train"]["losses"][-1] == "nan"


def test_schema_rejects_a_foreign_document() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    with pytest.raises(jsonschema.ValidationError):
        _validate({"schema": "something-else/1", "seed": 0, "tests": []})


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_interrupted_run_still_writes_its_reports(pytester: pytest.Pytester, signame: str) -> None:
    """Ctrl-C or a CI runner's SIGTERM mid-run: the tests that finished are in the report."""
    pytester.makepyfile(
        test_interrupted=f"""
        import os, signal, time
        import pytest

        @pytest.mark.loss_decreases
        def test_finished(losstrend):
            for i in range(30):
                losstrend.record(1.0 / (1 + i))

        def test_interrupt():
            os.kill(os.getpid(), signal.{signame})
            time.sleep(2)

        @pytest.mark.loss_decreases
        def test_never_ran(losstrend):
            losstrend.record([1.0, 0.5])
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--losstrend-report=json:r.json", "--losstrend-report=md:r.md"
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED
    doc = json.loads((pytester.path / "r.json").read_text())
    _validate(doc)
    assert [t["nodeid"] for t in doc["tests"]] == ["test_interrupted.py::test_finished"]
    assert "test_finished" in (pytester.path / "r.md").read_text()
    assert not list(pytester.path.glob(".r.json.*.tmp"))


def test_atomic_write_removes_orphans_of_killed_writers(tmp_path: Path) -> None:
    """A writer killed between its write and its rename leaves a temporary file; the next write
    of that file removes it, and leaves alone one whose writer is still alive."""
    import subprocess
    import sys

    from pytest_losstrend.reports.files import write_text_atomic

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    orphan = tmp_path / f".r.json.{dead}.abc123.tmp"
    in_flight = tmp_path / f".r.json.{os.getppid()}.def456.tmp"
    other = tmp_path / f".other.json.{dead}.ghi789.tmp"
    for p in (orphan, in_flight, other):
        p.write_text("{")
    write_text_atomic(tmp_path / "r.json", "{}\n")
    assert (tmp_path / "r.json").read_text() == "{}\n"
    assert not orphan.exists()
    assert in_flight.exists() and other.exists()

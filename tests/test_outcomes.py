"""The reports show pytest's outcome of each test beside its loss verdict: a body that raised,
a timeout, an expected failure (``loss_fails``, counted as xfailed), reruns; the terminal table
fits the terminal; an inconclusive skip points at the test."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest

# Imported before pytester snapshots the modules: numpy cannot be loaded twice in one process.
import pytest_losstrend.diagnosis.rules
import pytest_losstrend.reports.report
import pytest_losstrend.runner  # noqa: F401
from pytest_losstrend.reports.html import html_report
from pytest_losstrend.reports.report import SCHEMA_PATH, elide_middle, markdown_report, term_lines


def _validate(doc: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))


def _doc(pytester: pytest.Pytester, name: str = "r.json") -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((pytester.path / name).read_text())
    _validate(doc)
    return doc


def _test(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in doc["tests"] if t["nodeid"].endswith(f"::{name}"))


def _term_row(stdout: list[str], name: str) -> dict[str, str]:
    """The terminal table's row of test ``name``, by column (cells split on 2+ spaces)."""
    head = next(ln for ln in stdout if ln.startswith("test  "))
    row = next(ln for ln in stdout if ln.split("  ", 1)[0].endswith(name)
               and not ln.startswith(("warning", "FAILED", "SKIPPED", "XFAIL")))
    return dict(zip(re.split(r"\s{2,}", head.strip()), re.split(r"\s{2,}", row.strip()),
                    strict=False))


def _cells(row: dict[str, str], *names: str) -> list[str]:
    return [row[n] for n in names]


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inner runs get a wide terminal, so that the table shows whole ids and every column
    (the width tests set their own)."""
    monkeypatch.setenv("COLUMNS", "200")


REPORTS = ("--losstrend-report=term", "--losstrend-report=json:r.json",
           "--losstrend-report=md:r.md", "--losstrend-report=html:r.html")


# -- 7: the outcome beside the verdict ---------------------------------------------------------


RAISES = """
import time
import pytest
from lt_helpers import train

@pytest.mark.loss_decreases
def test_raises_after_a_good_curve(losstrend):
    train(losstrend, steps=30)
    raise RuntimeError("the checkpoint could not be written")

@pytest.mark.loss_decreases
def test_killed_by_timeout(losstrend):
    train(losstrend, steps=30)
    time.sleep(5)

@pytest.mark.loss_decreases
def test_learns(losstrend):
    train(losstrend, steps=30)
"""


def test_a_failed_test_reads_failed_whatever_its_curve(lt_pytester: pytest.Pytester) -> None:
    """A good curve, then the body raised (or pytest-timeout killed it): the verdict is PASS,
    the outcome FAILED, in every report."""
    lt_pytester.makepyfile(test_curves=RAISES)
    lt_pytester.makeini("[pytest]\ntimeout_method = signal\n")
    result = lt_pytester.runpytest_inprocess("-p", "timeout", "--timeout=3", *REPORTS)
    result.assert_outcomes(passed=1, failed=2)

    doc = _doc(lt_pytester)
    for name in ("test_raises_after_a_good_curve", "test_killed_by_timeout"):
        t = _test(doc, name)
        assert (t["outcome"], t["verdict_ok"], t["verdict"]["status"]) == ("failed", True, "pass")
        assert _cells(_term_row(result.outlines, name), "verdict", "outcome") == [
            "PASS", "FAILED"]
    assert (_test(doc, "test_learns")["outcome"], _test(doc, "test_learns")["verdict_ok"]) == (
        "passed", True)
    assert _cells(_term_row(result.outlines, "test_learns"), "verdict", "outcome") == [
        "PASS", "PASSED"]
    result.stdout.fnmatch_lines(["*= loss trends: 3 tests (2 failed, 1 passed), seed 0 =*"])

    md = (lt_pytester.path / "r.md").read_text()
    assert "3 tests (seed 0): 2 failed, 1 passed." in md
    assert "| `test_curves.py::test_killed_by_timeout` | train | 30 |" in md
    assert "| PASS | FAILED |" in md
    failing = md.split("### Failing")[1]
    assert "`test_curves.py::test_raises_after_a_good_curve`: the loss check passed, but the " \
           "test failed on its own" in failing
    assert "test_killed_by_timeout" in failing and "test_learns" not in failing

    page = (lt_pytester.path / "r.html").read_text()
    card = page.split('id="t-test_curves-py-test_raises_after_a_good_curve"')[1]
    card = card.split("</section>")[0]
    assert re.search(r'<h2><span class="badge fail"[^>]*>FAILED</span>', card)
    assert "outcome <b>failed</b>" in card
    assert 'verdict <span class="badge pass">PASS</span>' in card


def test_markdown_counts_every_failed_test(lt_pytester: pytest.Pytester) -> None:
    """All four tests failed, for four different reasons: the summary says 4 failed and
    lists all four."""
    lt_pytester.makepyfile(
        test_four="""
        import pytest
        from lt_helpers import diverge, train

        @pytest.mark.loss_decreases
        def test_diverges(losstrend):
            diverge(losstrend)

        @pytest.mark.loss_decreases
        def test_raises(losstrend):
            train(losstrend, steps=30)
            assert False, "a later check failed"

        @pytest.mark.loss_fails
        def test_known_bad_that_learns(losstrend):
            train(losstrend, steps=30)

        def test_unmarked_raises(losstrend):
            train(losstrend, steps=30)
            raise ValueError("no")
        """
    )
    result = lt_pytester.runpytest_inprocess("--losstrend-report=md:r.md",
                                             "--losstrend-report=json:r.json")
    result.assert_outcomes(failed=4)
    md = (lt_pytester.path / "r.md").read_text()
    assert "4 tests (seed 0): 4 failed." in md
    failing = md.split("### Failing")[1]
    assert len(re.findall(r"^- `", failing, flags=re.M)) == 4
    assert "loss_fails: expected the loss check to fail, but it passed" in failing
    assert "`test_four.py::test_unmarked_raises`: the test failed" in failing
    doc = _doc(lt_pytester)
    assert {t["outcome"] for t in doc["tests"]} == {"failed"}
    assert _test(doc, "test_unmarked_raises")["verdict_ok"] is None


# -- 8: loss_fails is an expected failure --------------------------------------------------------


KNOWN_BAD = """
import pytest
from lt_helpers import diverge, train

@pytest.mark.loss_fails(cause="lr_too_high")
def test_known_bad(losstrend):
    diverge(losstrend)

@pytest.mark.loss_fails
def test_known_bad_no_cause(losstrend):
    diverge(losstrend)

@pytest.mark.loss_decreases
def test_learns(losstrend):
    train(losstrend, steps=30)
"""


def test_loss_fails_is_counted_as_xfailed(lt_pytester: pytest.Pytester) -> None:
    """pytest counts a known-bad case that failed as expected as xfailed (exit 0, JUnit
    skipped type pytest.xfail), and so does every report: no "fail" count, no red badge."""
    lt_pytester.makepyfile(test_known=KNOWN_BAD)
    result = lt_pytester.runpytest_inprocess("-rx", "--junitxml=junit.xml", *REPORTS)
    result.assert_outcomes(passed=1, xfailed=2)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([
        "XFAIL test_known.py::test_known_bad - loss_fails: *",
        "*1 passed, 2 xfailed*",
    ])
    assert _cells(_term_row(result.outlines, "::test_known_bad"), "verdict", "outcome") == [
        "FAIL", "XFAIL"]
    result.stdout.fnmatch_lines(["*= loss trends: 3 tests (1 passed, 2 xfailed), seed 0 =*"])

    doc = _doc(lt_pytester)
    t = _test(doc, "test_known_bad")
    assert (t["outcome"], t["verdict_ok"]) == ("xfailed", False)

    md = (lt_pytester.path / "r.md").read_text()
    assert "3 tests (seed 0): 1 passed, 2 xfailed." in md
    assert "fail," not in md.split("\n")[2] and "### Failing" not in md
    assert "| FAIL | XFAIL | lr_too_high |" in md

    page = (lt_pytester.path / "r.html").read_text()
    assert 'class="badge fail"' not in page
    header = page.split("</header>")[0]
    assert ">1 passed<" in header and ">2 xfailed<" in header

    cases = {c.get("name"): c for c in ET.parse(lt_pytester.path / "junit.xml").iter("testcase")}
    skipped = cases["test_known_bad"].find("skipped")
    assert skipped is not None and skipped.get("type") == "pytest.xfail"
    assert cases["test_learns"].find("skipped") is None


def test_loss_fails_whose_loss_falls_still_fails(lt_pytester: pytest.Pytester) -> None:
    """Like a strict xfail: the known-bad case that learns after all is a failure."""
    lt_pytester.makepyfile(
        test_known="""
        import pytest
        from lt_helpers import train

        @pytest.mark.loss_fails
        def test_learns_after_all(losstrend):
            train(losstrend, steps=30)
        """
    )
    result = lt_pytester.runpytest_inprocess("--losstrend-report=json:r.json")
    result.assert_outcomes(failed=1)
    t = _test(_doc(lt_pytester), "test_learns_after_all")
    assert (t["outcome"], t["verdict_ok"]) == ("failed", True)


def test_loss_fails_is_xfailed_under_xdist(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(test_known=KNOWN_BAD)
    result = lt_pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2",
                                              "--losstrend-report=json:r.json")
    result.assert_outcomes(passed=1, xfailed=2)
    doc = _doc(lt_pytester)
    assert sorted(t["outcome"] for t in doc["tests"]) == ["passed", "xfailed", "xfailed"]


# -- 9: reruns -----------------------------------------------------------------------------------


def test_a_rerun_test_has_one_row_with_its_final_outcome(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(
        test_flaky="""
        import pytest
        from pathlib import Path
        from lt_helpers import train

        @pytest.mark.loss_decreases
        def test_always_fails(losstrend):
            train(losstrend, steps=30)
            raise RuntimeError("deterministic")

        @pytest.mark.loss_decreases
        def test_passes_on_the_second_try(losstrend):
            train(losstrend, steps=30)
            tries = Path("tries.txt")
            n = int(tries.read_text()) if tries.exists() else 0
            tries.write_text(str(n + 1))
            assert n >= 1

        @pytest.mark.loss_decreases
        def test_learns(losstrend):
            train(losstrend, steps=30)
        """
    )
    result = lt_pytester.runpytest_inprocess("-p", "rerunfailures", "--reruns", "2",
                                             "-p", "no:randomly", *REPORTS)
    assert result.parseoutcomes() == {"passed": 2, "failed": 1, "rerun": 3}
    doc = _doc(lt_pytester)
    assert [t["nodeid"].split("::")[1] for t in doc["tests"]] == [
        "test_always_fails", "test_learns", "test_passes_on_the_second_try"]
    by = {t["nodeid"].split("::")[1]: t for t in doc["tests"]}
    assert (by["test_always_fails"]["outcome"], by["test_always_fails"]["reruns"]) == ("failed", 2)
    assert (by["test_passes_on_the_second_try"]["outcome"],
            by["test_passes_on_the_second_try"]["reruns"]) == ("passed", 1)
    assert "reruns" not in by["test_learns"]

    rows = [ln for ln in result.outlines if ln.startswith("test_flaky.py::")]
    assert len(rows) == 3
    assert _cells(_term_row(result.outlines, "test_always_fails"), "verdict", "outcome",
                  "reruns") == ["PASS", "FAILED", "2"]

    md = (lt_pytester.path / "r.md").read_text()
    assert "3 tests (seed 0): 1 failed, 2 passed." in md
    assert md.count("`test_flaky.py::test_always_fails`") == 2  # its row, and under Failing
    assert "| PASS | FAILED | 2 |" in md
    page = (lt_pytester.path / "r.html").read_text()
    assert "reruns <b>2</b>" in page and "(2 tests rerun)" in page


# -- 12: the terminal table fits the terminal ----------------------------------------------------


def _result(nodeid: str, status: str = "pass", outcome: str = "passed",
            series: tuple[str, ...] = ("train",)) -> dict[str, Any]:
    verdict = {"ok": status == "pass", "status": status, "reason": "r", "kind": "decrease",
               "stats": {"start": 2.3456, "end": 0.0123456, "drop": 0.9947}}
    return {
        "nodeid": nodeid, "outcome": outcome, "marker": "loss_decreases", "framework": "torch",
        "criteria": {"series": "train", "min_drop": 0.1},
        "series": {s: {"losses": [2.3, 1.5, 0.9, 0.4, 0.1], "verdict": verdict} for s in series},
        "verdict": verdict,
        "diagnoses": [] if status == "pass" else [
            {"cause": "unshuffled_batches", "confidence": 0.8, "evidence": "e", "fix": "f"}],
    }


LONG_IDS = [
    "tests/integration/models/very_long_folder_name/test_training_loops.py::"
    "TestOptimisers::test_adam_converges_on_the_regression_task[seed0]",
    "tests/integration/models/very_long_folder_name/test_training_loops.py::"
    "TestOptimisers::test_adam_converges_on_the_regression_task[seed1]",
    "tests/integration/models/other_long_folder_name/test_training_loops.py::"
    "TestOptimisers::test_adam_converges_on_the_regression_task[seed0]",
    "tests/unit/test_small.py::test_sgd",
]


@pytest.mark.parametrize("width", [120, 100, 80, 60, 40])
def test_term_table_fits_the_width_and_keeps_ids_apart(width: int) -> None:
    results = [_result(LONG_IDS[0], series=("train", "eval")), _result(LONG_IDS[1]),
               _result(LONG_IDS[2], status="fail", outcome="failed"),
               _result(LONG_IDS[3], outcome="xfailed")]
    results[0]["warnings"] = ["the loss fell only in the last " + "very " * 20 + "few steps"]
    lines = term_lines(results, width)
    assert max(len(ln) for ln in lines) <= width, "\n".join(lines)
    rows = lines[1:6]
    ids = [r.split("  ", 1)[0] for r in rows]
    # Sorted by node id: other_long_folder (failed), seed0 (train, eval), seed1, test_small.
    assert len(set(ids)) == 4 and ids[1] == ids[2], "\n".join(lines)
    # The verdict and the outcome always stay.
    head = re.split(r"\s{2,}", lines[0])
    assert head[-2:] == ["verdict", "outcome"] or {"verdict", "outcome"} < set(head)
    assert re.search(r"  FAIL +FAILED\b", rows[0]) and re.search(r"  PASS +XFAIL\b", rows[4])
    for label, nodeid in zip(ids, [LONG_IDS[2], LONG_IDS[0], LONG_IDS[0], LONG_IDS[1],
                                   LONG_IDS[3]], strict=True):
        # The end of the test name stays; so does the file, or the folder that differs.
        assert label.endswith(nodeid[-5:])
        if width >= 80:
            assert any(part in label for part in ("test_training_lo", "test_small.py",
                                                  "other_long_folder", "very_long_folder"))
    if width >= 80:
        assert "series" in head


def test_term_table_drops_columns_in_the_stated_order() -> None:
    results = [_result(LONG_IDS[0], status="fail", outcome="failed")]
    heads = {w: re.split(r"\s{2,}", term_lines(results, w)[0]) for w in (200, 120, 80, 40)}
    assert heads[200] == ["test", "series", "steps", "start -> end", "drop", "verdict",
                          "outcome", "why", "curve"]
    order = ["curve", "start -> end", "steps", "drop", "why", "series"]
    for w in (120, 80, 40):
        gone = [c for c in heads[200] if c not in heads[w]]
        assert set(gone) == set(order[:len(gone)])
    assert heads[40][-2:] == ["verdict", "outcome"]


def test_elide_middle_keeps_file_and_test_name() -> None:
    nodeid = "tests/deep/folder/test_file.py::TestClass::test_name[param]"
    assert elide_middle(nodeid, 100) == nodeid
    assert elide_middle(nodeid, 50) == "…/test_file.py::TestClass::test_name[param]"
    assert elide_middle(nodeid, 40) == "…/test_file.py::…::test_name[param]"
    assert elide_middle(nodeid, 30) == "test_file.py::test_name[param]"
    short = elide_middle(nodeid, 20)
    assert len(short) == 20 and short.startswith("test_") and short.endswith("[param]")


@pytest.mark.parametrize("columns", [80, 100])
def test_term_table_fits_the_terminal_of_a_real_run(
    lt_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, columns: int
) -> None:
    """pytest's own terminal width (COLUMNS) is the table's width."""
    folder = "a_rather_long_folder_name_for_integration_tests"
    lt_pytester.mkpydir(folder)
    (lt_pytester.path / folder / "test_regression_training.py").write_text(
        "import pytest\nfrom lt_helpers import train\n\n"
        + "".join(f"@pytest.mark.loss_decreases\ndef test_linear_model_learns_variant_{i}"
                  f"(losstrend):\n    train(losstrend, steps=20, eval_every=5)\n\n"
                  for i in range(2)))
    monkeypatch.setenv("COLUMNS", str(columns))
    result = lt_pytester.runpytest_inprocess("--losstrend-report=term", "--rootdir",
                                             str(lt_pytester.path), str(lt_pytester.path))
    result.assert_outcomes(passed=2)
    start = next(i for i, ln in enumerate(result.outlines) if "loss trends:" in ln)
    table = result.outlines[start:start + 6]
    assert max(len(ln) for ln in table) <= columns, "\n".join(table)
    labels = {ln.split("  ", 1)[0] for ln in table[2:]}
    assert len(labels) == 2
    assert all("test_regression_training.py" in lab and "variant_" in lab for lab in labels)


# -- 13: an inconclusive skip points at the test ------------------------------------------------


def test_inconclusive_skip_points_at_the_test(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(
        test_short="""
        import pytest
        from lt_helpers import train

        @pytest.mark.loss_decreases
        def test_too_short(losstrend):
            train(losstrend, steps=1)
        """
    )
    result = lt_pytester.runpytest_inprocess("-rs", "--losstrend-report=json:r.json")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] test_short.py:4: *"])
    assert "plugin.py" not in result.stdout.str()
    assert _test(_doc(lt_pytester), "test_too_short")["outcome"] == "skipped"


def test_a_skip_in_the_test_body_keeps_its_own_line(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(
        test_skip="""
        import pytest
        from lt_helpers import train

        @pytest.mark.loss_decreases
        def test_skips_itself(losstrend):
            train(losstrend, steps=20)
            pytest.skip("no GPU")
        """
    )
    result = lt_pytester.runpytest_inprocess("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] test_skip.py:7: no GPU"])


# -- rendering from the plain document ------------------------------------------------------------


def test_reports_render_a_document_without_the_new_fields() -> None:
    """A document written before verdict_ok and reruns still renders."""
    t = _result("t.py::test_a")
    doc = {"schema": "losstrend-report/1", "seed": 0, "tests": [t]}
    _validate(doc)
    assert "1 test (seed 0): 1 passed." in markdown_report(doc)
    assert ">1 passed<" in html_report(doc)

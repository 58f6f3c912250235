"""pytest-xdist: identical reports with and without workers, settings reaching the workers, and
a worker that dies mid-run costing only its own test."""

from __future__ import annotations

import json

import pytest

# Imported before pytester snapshots the modules: numpy cannot be loaded twice in one process.
import pytest_losstrend.diagnosis.rules
import pytest_losstrend.reports.report
import pytest_losstrend.runner  # noqa: F401

SUITE = """
import pytest
from lt_helpers import diverge, train

@pytest.mark.loss_decreases
@pytest.mark.parametrize("lr", [0.02, 0.05])
def test_minibatch(losstrend, lr):
    train(losstrend, steps=60, lr=lr, batch=16, eval_every=10)

@pytest.mark.loss_decreases(seeds=2)
def test_seeded(losstrend):
    train(losstrend, steps=50, batch=8)

@pytest.mark.loss_decreases
def test_diverges(losstrend):
    diverge(losstrend)

@pytest.mark.loss_fails(cause="lr_too_high")
def test_known_bad(losstrend):
    diverge(losstrend)

def test_unmarked(losstrend):
    train(losstrend, steps=30, batch=16)

def test_plain():
    pass
"""

REPORTS = ("--losstrend-report=json:r.json", "--losstrend-report=md:r.md",
           "--losstrend-report=html:r.html", "--losstrend-report=term")


def _run(p: pytest.Pytester, *mode: str) -> dict[str, str]:
    result = p.runpytest_subprocess("-p", "no:cacheprovider", "--losstrend-seed=5", *REPORTS,
                                    *mode)
    result.assert_outcomes(passed=6, failed=1, xfailed=1)
    return {ext: (p.path / f"r.{ext}").read_text() for ext in ("json", "md", "html")}


def test_reports_are_identical_with_and_without_workers(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(test_suite=SUITE)
    serial = _run(lt_pytester, "-p", "no:xdist")
    zero = _run(lt_pytester, "-n", "0")
    two = _run(lt_pytester, "-n", "2")
    for ext in ("json", "md", "html"):
        assert zero[ext] == serial[ext], ext
        assert two[ext] == serial[ext], ext
    doc = json.loads(two["json"])
    # The seed reached the workers: every test ran under --losstrend-seed=5 (plus its
    # seeds=N index), exactly as in one process.
    seeds = {t["nodeid"].split("::")[1]: t["seed"] for t in doc["tests"]}
    assert doc["seed"] == 5
    assert seeds == {"test_minibatch[0.02]": 5, "test_minibatch[0.05]": 5,
                     "test_seeded[seed0]": 5, "test_seeded[seed1]": 6, "test_diverges": 5,
                     "test_known_bad": 5, "test_unmarked": 5}


CRASH_SUITE = """
import os

import pytest
from lt_helpers import train

@pytest.mark.loss_decreases
@pytest.mark.parametrize("i", range(4))
def test_trains(losstrend, i):
    train(losstrend, steps=40, batch=16)

@pytest.mark.loss_decreases
def test_crashes(losstrend):
    train(losstrend, steps=10, batch=16)
    os._exit(3)  # the worker process dies mid-test, as on a segfault or an OOM kill
"""


def test_a_crashed_worker_costs_only_its_own_test(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(test_crash=CRASH_SUITE)
    result = lt_pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider",
                                              "--losstrend-report=json:r.json",
                                              "--losstrend-report=md:r.md")
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["*worker 'gw*' crashed while running "
                                 "'test_crash.py::test_crashes'*"])
    doc = json.loads((lt_pytester.path / "r.json").read_text())
    assert [t["nodeid"] for t in doc["tests"]] == [
        f"test_crash.py::test_trains[{i}]" for i in range(4)]
    assert all(t["verdict"]["status"] == "pass" for t in doc["tests"])
    assert "4 tests (seed 0): 4 passed." in (lt_pytester.path / "r.md").read_text()

"""The catalogue API, its hook, and the generated catalogue page."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_losstrend.catalogue.entries import builtin_entries, entries, markdown
from pytest_losstrend.diagnosis.rules import CAUSES

ROOT = Path(__file__).resolve().parents[1]


def test_docs_catalogue_page_is_current() -> None:
    """docs/catalogue.md is generated from the entries; regenerate it when this fails:
    python -m pytest_losstrend.catalogue.entries > docs/catalogue.md"""
    assert (ROOT / "docs" / "catalogue.md").read_text() == markdown()


def test_every_entry_is_complete_and_named_once() -> None:
    items = builtin_entries()
    assert len({e.name for e in items}) == len(items)
    for e in items:
        assert e.cause in CAUSES, e.name
        assert e.framework in ("torch", "keras"), e.name
        assert len(e.explanation.split()) >= 10 and e.fix, e.name


def test_entries_cover_every_cause_code() -> None:
    assert {e.cause for e in builtin_entries()} == set(CAUSES)


def test_entries_without_pytest_are_the_builtin_ones() -> None:
    assert entries() == builtin_entries()


def test_a_conftest_adds_an_entry_through_the_hook(pytester: pytest.Pytester) -> None:
    """A team's entry from a conftest runs beside the built-in ones."""
    pytester.makeconftest(
        """
        from pytest_losstrend.catalogue.scenarios import Scenario

        def _train(lt, bad):
            for i in range(30):
                lt.record(1.0 if bad else 1.0 / (1 + i))

        def pytest_losstrend_catalogue_entries():
            return [Scenario("team_frozen_loss", "no_learning", "torch", {},
                             "A loss that never moves at all: nothing reaches the weights.",
                             "Hand the parameters to the optimizer.", _train)]
        """
    )
    result = pytester.runpytest_subprocess(
        "--losstrend-catalogue", "-p", "no:cacheprovider", "-k", "team_frozen_loss"
    )
    result.assert_outcomes(passed=4)

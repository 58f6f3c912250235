"""The markers: ``@pytest.mark.loss_decreases`` and ``@pytest.mark.loss_fails``.

Registered with pytest, read from a test, validated at collection (a bad argument is a
collection error naming it), and expanded (``seeds=N`` into N parametrized tests). Nothing
here imports numpy, torch or tensorflow.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from pytest_losstrend.session import _CONFIG_KEY
from pytest_losstrend.verdict.criteria import Criteria, CriteriaError, validate_criteria

MARK_DECREASES = "loss_decreases"
MARK_FAILS = "loss_fails"
#: The parameter ``seeds=N`` adds to a marked test: its run's offset from the base seed.
SEED_ARG = "_losstrend_seed_index"


def add_markers(config: pytest.Config) -> None:
    """Register the markers, so that ``--strict-markers`` and ``pytest --markers`` know them.

    Example::

        def pytest_configure(config):
            add_markers(config)
    """
    config.addinivalue_line(
        "markers",
        f"{MARK_DECREASES}(series='train', min_drop=0.1, below=None, tolerance=0.1, warmup=0, "
        "min_points=8, seeds=1, inconclusive='skip'): the test trains a model and records its "
        "loss with the losstrend fixture; the recorded series must decrease.",
    )
    config.addinivalue_line(
        "markers",
        f"{MARK_FAILS}(cause=None, **criteria): a regression case for a known-bad training "
        "configuration; passes when the loss verdict fails (with that cause first, if given).",
    )
    config.addinivalue_line(
        "markers",
        "losstrend_catalogue: a test of the built-in catalogue of known-bad training "
        "configurations (added by --losstrend-catalogue).",
    )


def marker_criteria(node: pytest.Item | pytest.Function | Any) -> tuple[str | None, Any]:
    """The marker kind and its raw arguments, or ``(None, None)``.

    Example::

        name, mark = marker_criteria(item)  # ("loss_decreases", Mark(...)) or (None, None)
    """
    for name in (MARK_DECREASES, MARK_FAILS):
        mark = node.get_closest_marker(name)
        if mark is not None:
            return name, mark
    return None, None


def parse_marker(name: str, mark: pytest.Mark) -> tuple[Criteria, str | None]:
    """Validate a marker's arguments; raises :class:`CriteriaError` naming the bad one.

    Example::

        crit, cause = parse_marker("loss_fails", pytest.mark.loss_fails("lr_too_high").mark)
    """
    kwargs = dict(mark.kwargs)
    cause: str | None = None
    args = list(mark.args)
    if name == MARK_FAILS:
        if args:
            if "cause" in kwargs:
                raise CriteriaError(f"{name}: cause given twice")
            kwargs["cause"] = args.pop(0)
        cause = kwargs.pop("cause", None)
        if cause is not None and (
            not isinstance(cause, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", cause)
        ):
            raise CriteriaError(
                f"{name}: cause must be a cause code such as 'lr_too_high', got {cause!r}"
            )
    if args:
        raise CriteriaError(
            f"{name} takes keyword criteria only, got positional {args!r} "
            f"(e.g. @pytest.mark.{name}(min_drop=0.2))"
        )
    return Criteria().merged(**validate_criteria(kwargs)), cause


def generate_tests(metafunc: pytest.Metafunc) -> None:
    """Validate the markers at collection and expand ``seeds=N`` into N parametrized tests
    (``pytest_generate_tests``).

    Example::

        def pytest_generate_tests(metafunc):
            generate_tests(metafunc)
    """
    name, mark = marker_criteria(metafunc.definition)
    if name is None:
        if "losstrend" in metafunc.fixturenames:
            seed_first(metafunc)
        return
    if metafunc.definition.get_closest_marker(MARK_FAILS) is not None and name == MARK_DECREASES:
        # One would be silently ignored: a regression case that passes when the loss falls,
        # or a training test that passes when it does not.
        raise pytest.Collector.CollectError(
            f"{metafunc.definition.nodeid}: both @pytest.mark.{MARK_DECREASES} and "
            f"@pytest.mark.{MARK_FAILS}; a test either must learn or is a known-bad case: "
            "keep one of the two"
        )
    try:
        crit, _ = parse_marker(name, mark)
    except CriteriaError as exc:
        raise pytest.Collector.CollectError(
            f"{metafunc.definition.nodeid}: @pytest.mark.{name}: {exc}"
        ) from None
    if "losstrend" not in metafunc.fixturenames:
        # The fixture is added anyway, so the test is seeded; that it was not asked for is
        # remembered, so that a test recording nothing is told to ask for it.
        metafunc.fixturenames.append("losstrend")
        metafunc.config.stash[_CONFIG_KEY].unrequested.add(metafunc.definition.nodeid)
    seed_first(metafunc)
    if crit.seeds > 1:
        metafunc.fixturenames.append(SEED_ARG)
        metafunc.parametrize(
            SEED_ARG, list(range(crit.seeds)), ids=[f"seed{i}" for i in range(crit.seeds)]
        )


def keep_fixture(item: pytest.Item) -> None:
    """Put the ``losstrend`` fixture back into a marked test's fixtures when pytest dropped it.

    :func:`generate_tests` adds the fixture to a marked test that does not name it; for a
    parametrized test pytest then prunes the fixture closure to the names the function asks
    for (``FuncFixtureInfo.prune_dependency_tree``), which drops it: the marker alone would
    record nothing. The fixture goes back before the first function-scoped fixture, as
    :func:`seed_first` places it.

    Example::

        def pytest_itemcollected(item):
            keep_fixture(item)
    """
    names = getattr(item, "fixturenames", None)
    if not isinstance(names, list) or "losstrend" in names or marker_criteria(item)[0] is None:
        return
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {}) or {}

    def function_scoped(name: str) -> bool:
        fixturedefs = defs.get(name)
        return not fixturedefs or getattr(fixturedefs[-1], "scope", "function") == "function"

    first = next((i for i, n in enumerate(names) if function_scoped(n)), len(names))
    names.insert(first, "losstrend")


def seed_first(metafunc: pytest.Metafunc) -> None:
    """Set the fixture up before the test's other function-scoped fixtures, so that a model
    or data fixture draws from the seeded generators, whatever another plugin seeded them
    with at setup (pytest-randomly does)."""
    names = metafunc.fixturenames
    defs = getattr(metafunc, "_arg2fixturedefs", {})

    def function_scoped(name: str) -> bool:
        fixturedefs = defs.get(name)
        return not fixturedefs or getattr(fixturedefs[-1], "scope", "function") == "function"

    first = next((i for i, n in enumerate(names) if function_scoped(n)), len(names))
    names.remove("losstrend")
    names.insert(min(first, len(names)), "losstrend")

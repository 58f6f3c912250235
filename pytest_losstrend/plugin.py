"""pytest entry point (``pytest11: losstrend``): the hooks pytest calls by name, and the fixture.

Glue only: each hook delegates, to :mod:`~pytest_losstrend.options` (the ``--losstrend-*``
options and their resolution), :mod:`~pytest_losstrend.session` (run-wide state and the end
of the run), :mod:`~pytest_losstrend.markers` (the markers) and
:mod:`~pytest_losstrend.runner` (judging a marked test). pytest finds hook implementations by
name on this module (and on the objects :func:`start_session` registers), so they stay here.

Nothing here imports numpy, torch or tensorflow at load time, so a suite that never uses the
marker or the fixture pays nothing; the judging code is imported on first use.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_losstrend.markers import (
    MARK_DECREASES,
    SEED_ARG,
    add_markers,
    generate_tests,
    keep_fixture,
    marker_criteria,
    parse_marker,
)
from pytest_losstrend.options import add_options, resolve_settings
from pytest_losstrend.session import (
    _CONFIG_KEY,
    _LT_KEY,
    _RESULT_KEY,
    _RNG_KEY,
    report_header_lines,
    start_session,
)
from pytest_losstrend.verdict.criteria import Criteria

if TYPE_CHECKING:
    from pytest_losstrend.fixture import LossTrend


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``--losstrend-*`` options and their ini twins.

    Example::

        pytest --losstrend-report=json:losstrend.json --losstrend-seed=7
    """
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Add the ``pytest_losstrend_*`` hook specifications.

    Example (a ``conftest.py`` implementing one)::

        def pytest_losstrend_report(report, config):
            upload(report)
    """
    from pytest_losstrend import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers, resolve the options (command line beats ini) and start the run's
    session.

    Example::

        pytest --losstrend-catalogue -m losstrend_catalogue
    """
    add_markers(config)
    settings = resolve_settings(config)
    if settings.catalogue:
        # Collected like a file named on the command line (by every pytest-xdist worker too,
        # since each parses the options itself).
        config.args.append(str(Path(__file__).parent / "catalogue" / "_catalogue_tests.py"))
    start_session(config, settings)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Show the seed, so a run can be reproduced, and the baselines in play.

    Example (the header line)::

        losstrend: seed 42 (--losstrend-seed=N to change)
    """
    return report_header_lines(config)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Validate the markers at collection and expand ``seeds=N`` into N parametrized tests.

    Example::

        @pytest.mark.loss_decreases(seeds=3)  # test_trains[seed0] .. test_trains[seed2]
        def test_trains(losstrend): ...
    """
    generate_tests(metafunc)


@pytest.fixture
def losstrend(request: pytest.FixtureRequest) -> Generator[LossTrend, None, None]:
    """Record a training loop's loss and judge the curve.

    The random generators of python, numpy, torch and tensorflow (those imported) are seeded
    before the test (``--losstrend-seed``). Under ``@pytest.mark.loss_decreases`` the recorded
    series is judged after the test body, and a non-finite or diverging loss stops the test at
    that step.

    Example::

        @pytest.mark.loss_decreases(min_drop=0.2)
        def test_trains(losstrend):
            model = torch.nn.Linear(3, 1)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            for _ in range(50):
                opt.zero_grad()
                loss = torch.nn.functional.mse_loss(model(x), y)
                loss.backward()
                opt.step()
                losstrend.record(loss)
    """
    from pytest_losstrend.capture.seeding import release_seed, seed_everything
    from pytest_losstrend.fixture import LossTrend

    settings = request.config.stash[_CONFIG_KEY]
    node = request.node
    name, mark = marker_criteria(node)
    crit = parse_marker(name, mark)[0] if name else Criteria()
    index = 0
    callspec = getattr(node, "callspec", None)
    if callspec is not None:
        index = int(callspec.params.get(SEED_ARG, 0))
    seed = settings.seed + index
    seed_everything(seed)
    lt = LossTrend(
        crit,
        fail_fast=name is not None,
        seed=seed,
        base_seed=settings.seed,
        nodeid=node.nodeid,
        marker=name or MARK_DECREASES,
    )
    node.stash[_LT_KEY] = lt
    yield lt
    # A watched model's hooks (some process-wide) must not outlive the test, whatever its
    # outcome; finishing twice is harmless. Nor must the seeding's Keras reshuffling.
    try:
        lt.finish_watching()
    finally:
        release_seed()


def pytest_itemcollected(item: pytest.Item) -> None:
    """A parametrized marked test keeps the ``losstrend`` fixture the marker gave it."""
    keep_fixture(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    """Take the generators' states once a seeded test's fixtures are set up."""
    yield
    if _LT_KEY in item.stash:
        from pytest_losstrend.capture.seeding import rng_states

        item.stash[_RNG_KEY] = rng_states()


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, Any, Any]:
    """Put the generators back as the fixtures left them, right before the body runs.

    Any ``pytest_runtest_call`` hook runs between setup and the body, and some reseed there
    (pytest-randomly reseeds python and numpy with ``--randomly-seed``): without this the
    curve would follow their seed, and the printed ``--losstrend-seed`` rerun line would not
    reproduce it.
    """
    states = pyfuncitem.stash.get(_RNG_KEY, None)
    if states is not None:
        from pytest_losstrend.capture.seeding import restore_rng_states

        restore_rng_states(states)
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    """Judge the recorded series of a marked test after its body ran.

    Example (a test this fails, with the diagnosis, when its loss does not fall)::

        @pytest.mark.loss_decreases(min_drop=0.2)
        def test_trains(losstrend): ...
    """
    name, mark = marker_criteria(item)
    if name is None:
        return (yield)
    from pytest_losstrend.runner import judge_call

    return (yield from judge_call(item, name, mark))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the loss-trend result to the call-phase report as plain data, with the test's
    outcome as pytest counts it (a ``loss_fails`` test failing as expected is an xfail).

    Example (what a ``pytest_runtest_logreport`` hook then reads)::

        getattr(report, "losstrend", None)  # {"nodeid": ..., "verdict": ..., ...}
    """
    report = yield
    if call.when != "call":
        return report
    lt = item.stash.get(_LT_KEY, None)
    # Only a test that was judged or recorded something loads the judging code.
    if _RESULT_KEY in item.stash or (lt is not None and lt.series_names):
        from pytest_losstrend.runner import attach_result

        attach_result(item, call, report)
    return report

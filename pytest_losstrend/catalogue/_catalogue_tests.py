"""The catalogue of known-bad training configurations, run as tests.

``pytest --losstrend-catalogue`` adds this module to any run, in any folder: every catalogue
entry (the built-in ones and those a ``pytest_losstrend_catalogue_entries`` hook adds) is
trained for real under each seed of :data:`SEEDS`; its bad side must fail with its cause first
among the diagnoses, and its healthy twin must pass. Select them alone with
``-m losstrend_catalogue``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_losstrend.catalogue.entries import entries
from pytest_losstrend.catalogue.scenarios import Scenario, run_scenario

#: The seeds every entry runs under.
SEEDS = (0, 1)

pytestmark = [
    pytest.mark.losstrend_catalogue,
    # Keras' own numpy-2 deprecation notices are not the user's to fix.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """The entries train tiny models: one thread each is faster, and under pytest-xdist the
    workers' thread pools would otherwise fight over the cores (45 s instead of 13 s on 2)."""
    if importlib.util.find_spec("torch") is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per entry and seed, the entries taken through the hook."""
    if "scenario" not in metafunc.fixturenames:
        return
    params: list[Any] = []
    for scenario in entries(metafunc.config):
        module = "keras" if scenario.framework == "keras" else "torch"
        missing = importlib.util.find_spec(module) is None
        marks = [pytest.mark.skip(reason=f"{module} is not installed")] if missing else []
        for seed in SEEDS:
            params.append(pytest.param(scenario, seed, id=f"{scenario.name}-seed{seed}",
                                       marks=marks))
    metafunc.parametrize(("scenario", "seed"), params)


def test_bad_configuration_fails_with_its_cause(scenario: Scenario, seed: int) -> None:
    """The known-bad configuration fails, and its top diagnosis names its cause."""
    verdict = run_scenario(scenario, bad=True, seed=seed)
    causes = [f"{d.cause} ({d.confidence:.2f})" for d in verdict.diagnoses]
    assert verdict.status == scenario.bad_status, (
        f"{scenario.name}: expected a {scenario.bad_status} verdict, got {verdict.status}: "
        f"{verdict.reason}"
    )
    assert verdict.diagnoses and verdict.diagnoses[0].cause == scenario.cause, (
        f"{scenario.name}: expected the top cause {scenario.cause!r}, got "
        f"{', '.join(causes) or 'no diagnosis'}; verdict: {verdict.reason}"
    )


def test_healthy_twin_passes(scenario: Scenario, seed: int) -> None:
    """The same configuration with its fault fixed passes."""
    verdict = run_scenario(scenario, bad=False, seed=seed)
    assert verdict.ok, f"{scenario.name} twin ({scenario.fix}): {verdict.reason}"

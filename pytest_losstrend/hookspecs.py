"""Hook specifications of pytest-losstrend (``pytest_losstrend_*``).

Implement them in a ``conftest.py`` or a plugin. The built-in diagnosis rules are registered
through the same hook, as the plugin ``losstrend-rules``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_losstrend.catalogue.mutate import Mutation
    from pytest_losstrend.catalogue.scenarios import Scenario
    from pytest_losstrend.diagnosis.context import DiagnosisContext
    from pytest_losstrend.reports.schema import ReportDoc
    from pytest_losstrend.verdict.result import Diagnosis

hookspec = pytest.hookspec


@hookspec
def pytest_losstrend_diagnose(context: DiagnosisContext) -> list[Diagnosis] | None:
    """Add diagnoses of a failing (or inconclusive) loss curve.

    Called once per judged test whose verdict did not pass. Return a list of
    :class:`pytest_losstrend.Diagnosis` (or ``None``); every implementation's results are
    merged, one per cause (the most confident), and ranked by confidence, most likely first.
    ``context`` holds the recorded series, the verdict, what ``watch`` saw
    (``context.evidence``, or ``None``) and the warnings the test emitted.

    Example, in a ``conftest.py``:

    .. code-block:: python

        from pytest_losstrend import Diagnosis

        def pytest_losstrend_diagnose(context):
            if context.evidence and context.evidence.optimizer == "LBFGS":
                return [Diagnosis("lbfgs_misuse", 0.9, "LBFGS needs a closure",
                                  "pass closure= to optimizer.step")]
            return None
    """


@hookspec
def pytest_losstrend_catalogue_entries() -> list[Scenario] | None:
    """Add entries to the catalogue of known-bad training configurations.

    Return a list of :class:`pytest_losstrend.catalogue.scenarios.Scenario`; every implementation's
    entries are run by ``pytest --losstrend-catalogue`` (names must be unique). The built-in
    entries come through this hook too.

    Example, in a ``conftest.py``:

    .. code-block:: python

        from pytest_losstrend.catalogue.scenarios import Scenario

        def _train(lt, bad):
            ...  # train your model; with bad=True, with the fault

        def pytest_losstrend_catalogue_entries():
            return [Scenario("our_lr_warmup_bug", "lr_too_high", "torch", {},
                             "The warm-up never ends.", "Cap the schedule.", _train)]
    """


@hookspec
def pytest_losstrend_mutations() -> list[Mutation] | None:
    """Add mutation operators for ``--losstrend-mutate``.

    Return a list of :class:`pytest_losstrend.catalogue.mutate.Mutation`; each is applied, one at a
    time, to every marked test that trains through ``losstrend.fit`` (when its ``frameworks``
    include the test's). The built-in mutations come through this hook too; a ``conftest.py``
    is called first, so a mutation of the same name replaces a built-in one.

    Example, in a ``conftest.py``:

    .. code-block:: python

        from pytest_losstrend.catalogue.mutate import Mutation

        def _labels_shuffled(x, y, shuffle):
            import numpy as np

            return x, np.random.default_rng(0).permutation(np.asarray(y)), shuffle

        def pytest_losstrend_mutations():
            return [Mutation("labels_shuffled", "targets permuted", on_data=_labels_shuffled)]
    """


@hookspec
def pytest_losstrend_report(report: ReportDoc, config: pytest.Config) -> None:
    """Receive the finished loss-trend report document (a sink).

    Called once per session, on the pytest-xdist controller when distributed, with the
    ``losstrend-report/1`` document as plain data (``report["tests"]``...). The built-in file
    reports (``json:PATH``, ``md:PATH``) are written by an implementation of this hook.

    Example, in a ``conftest.py``:

    .. code-block:: python

        def pytest_losstrend_report(report, config):
            failing = [t["nodeid"] for t in report["tests"]
                       if t["verdict"] and t["verdict"]["status"] == "fail"]
            print("loss-trend failures:", failing)
    """

"""Run-wide state: the session object registered with pytest, and the hooks that write the
reports when the run ends.

:class:`LossTrendSession` collects every test's plain-data result (from pytest-xdist workers
too), turns SIGTERM into an interrupt while reports are requested, saves the baseline and
fails the session when an output could not be written. :class:`XdistHooks` sends the
controller's settings to each worker; :class:`BuiltinRules` registers the built-in rules,
catalogue entries, mutations and report files through the public hooks.

The stash keys shared by the plugin's modules are defined here, once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_losstrend.fixture import LossTrend
    from pytest_losstrend.options import Settings
    from pytest_losstrend.reports.schema import ReportDoc, TestRecord, TestResult

#: The run's :class:`LossTrendSession`, on ``config.stash``.
_CONFIG_KEY: pytest.StashKey[LossTrendSession] = pytest.StashKey()
#: A test's :class:`~pytest_losstrend.fixture.LossTrend`, on ``item.stash``.
_LT_KEY: pytest.StashKey[LossTrend] = pytest.StashKey()
#: A test's plain-data result once judged, on ``item.stash``.
_RESULT_KEY: pytest.StashKey[TestRecord] = pytest.StashKey()
#: The random generators' states once a seeded test's fixtures are set up, on ``item.stash``.
_RNG_KEY: pytest.StashKey[dict[str, object]] = pytest.StashKey()
# The plain-data result travels on the test report under this attribute, which pytest
# serialises for pytest-xdist, so the controller sees every worker's results.
REPORT_ATTR = "losstrend"


class BuiltinRules:
    """The built-in diagnosis rules and catalogue entries, registered through the public
    hooks like anyone's."""

    @pytest.hookimpl
    def pytest_losstrend_diagnose(self, context: Any) -> Any:
        """Every built-in rule's diagnoses of ``context``."""
        from pytest_losstrend.diagnosis.rules import builtin_diagnoses

        return builtin_diagnoses(context)

    @pytest.hookimpl
    def pytest_losstrend_catalogue_entries(self) -> Any:
        """The built-in catalogue entries."""
        from pytest_losstrend.catalogue.entries import builtin_entries

        return list(builtin_entries())

    @pytest.hookimpl(tryfirst=True)
    def pytest_losstrend_report(self, report: ReportDoc, config: pytest.Config) -> None:
        """Write the requested file reports (json, html, md) from the finished document.

        First of the sinks, so that another sink raising cannot cost the user's files.
        """
        from pytest_losstrend.reports.report import write_files

        session = config.stash[_CONFIG_KEY]
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        written, failed = write_files(report, session.reports)
        for kind, path in written:
            if reporter is not None:
                reporter.write_line(f"losstrend: {kind} report written to {path}")
        for kind, where, error in failed:
            session.fail_session(f"losstrend: the {kind} report could not be written to "
                                 f"{where}: {error}")

    @pytest.hookimpl
    def pytest_losstrend_mutations(self) -> Any:
        """The built-in mutations."""
        from pytest_losstrend.catalogue.mutate import builtin_mutations

        return builtin_mutations()


class XdistHooks:
    """Sends the controller's resolved settings to each pytest-xdist worker."""

    def __init__(self, session: LossTrendSession) -> None:
        self.session = session

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """Put the seed and the run settings into the worker's ``workerinput``."""
        b = self.session.baselines
        node.workerinput["losstrend"] = {
            "seed": self.session.seed,
            "mutate": self.session.mutate,
            "baselines": b.as_plain() if b is not None else None,
        }


class LossTrendSession:
    """Run-wide state: the seed, the requested reports and the collected results.

    Registered as a plugin object so that its hooks see the results of every test, including
    those pytest-xdist workers send back to the controller as serialised reports.
    """

    def __init__(
        self, config: pytest.Config, seed: int, reports: list[tuple[str, str | None]]
    ) -> None:
        self.config = config
        self.seed = seed
        self.reports = reports
        self.results: list[TestResult] = []
        #: Where each node id's result is in ``results`` (a rerun replaces it).
        self._index: dict[str, int] = {}
        #: Node ids of marked test functions that did not ask for the fixture.
        self.unrequested: set[str] = set()
        #: --losstrend-mutate, and the score under which the session fails (None: never).
        self.mutate = False
        #: ``--losstrend-capture`` (ini ``losstrend_capture``): automatic capture is on.
        self.capture = True
        self.fail_under: float | None = None
        #: Node ids of mutated tests scoring below ``fail_under`` (controller side).
        self.below: list[str] = []
        #: The baseline settings (None: nothing saved or compared), and what saving did.
        self.baselines: Any = None
        self.saved: dict[str, Any] | None = None
        #: The pytest session (set when it starts) and what went wrong writing its outputs.
        self.session: pytest.Session | None = None
        self.errors: list[str] = []

    def fail_session(self, message: str) -> None:
        """Record an output the run could not write; an otherwise green session fails."""
        self.errors.append(message)
        if self.session is not None and self.session.exitstatus == pytest.ExitCode.OK:
            self.session.exitstatus = pytest.ExitCode.TESTS_FAILED

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """With reports requested, turn SIGTERM (a CI runner's cancel) into an interrupt, so
        that pytest's summary, and with it every report, is still written for the tests that
        finished. A handler someone else installed is left alone."""
        self.session = session
        if not self.reports or hasattr(self.config, "workerinput"):
            return
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
            self._sigterm_installed = True

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """Restore the default SIGTERM handling."""
        if getattr(self, "_sigterm_installed", False):
            import signal

            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            self._sigterm_installed = False

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Collect the plain-data result a test's call report carries: one per test, from its
        final attempt, with the number of reruns (pytest-rerunfailures) before it."""
        # Plain data (pytest-xdist rebuilds it from JSON-able dicts on the controller).
        data: TestResult | None = getattr(report, REPORT_ATTR, None)
        # pytest-rerunfailures logs each attempt but the last with outcome "rerun": superseded
        # by the final attempt, which carries the count.
        if data is None or report.when != "call" or str(report.outcome) == "rerun":
            return
        reruns = getattr(report, "rerun", 0)
        if isinstance(reruns, int) and reruns > 0:
            data = {**data, "reruns": reruns}
        at = self._index.get(data["nodeid"])
        if at is None:
            self._index[data["nodeid"]] = len(self.results)
            self.results.append(data)
        else:
            # An attempt whose call passed but whose teardown was rerun logged its call
            # report already: the later attempt replaces it.
            self.results[at] = data

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Save the baseline, and fail an otherwise green session when a mutation score is
        below the threshold or a baseline could not be saved as asked."""
        if hasattr(self.config, "workerinput"):
            return
        if self.baselines is not None and self.baselines.save is not None:
            from pytest_losstrend.reports.baseline import save_session

            self.saved = save_session(self.baselines, self.results,
                                      seed=self.seed, exitstatus=int(session.exitstatus))
            if self.saved.get("failed") and session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if self.fail_under is None:
            return
        from pytest_losstrend.catalogue.mutate import below

        self.below = sorted({r["nodeid"] for r in self.results if below(r, self.fail_under)})
        if self.below and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Write the requested loss-trend reports (and the mutation scores)."""
        if hasattr(self.config, "workerinput"):
            return
        if any(fmt == "term" for fmt, _ in self.reports):
            from pytest_losstrend.reports.report import write_term

            write_term(terminalreporter, self.seed, self.results)
        if self.results or self.reports:
            from pytest_losstrend.reports.report import final_document

            try:
                self.config.hook.pytest_losstrend_report(
                    report=final_document(self.seed, self.results), config=self.config
                )
            except Exception as exc:
                # A third-party sink's bug: said plainly, after the built-in files are written.
                self.fail_session(f"losstrend: a pytest_losstrend_report hook raised "
                                  f"{type(exc).__name__}: {exc}")
        for line in self.errors:
            terminalreporter.write_line(line, red=True)
        if self.mutate and not any(fmt == "term" for fmt, _ in self.reports):
            # The scores are the point of --losstrend-mutate: shown without the table too.
            from pytest_losstrend.reports.report import mutation_lines

            lines = mutation_lines(self.results)
            if lines:
                terminalreporter.write_sep("=", "loss-trend mutation scores")
                for ln in lines:
                    terminalreporter.write_line(ln)
        if self.baselines is not None:
            from pytest_losstrend.reports.report import baseline_lines

            terminalreporter.write_sep("-", "loss-trend baselines")
            for ln, red in baseline_lines(self.baselines, self.results, self.saved):
                terminalreporter.write_line(ln, red=red)
        if self.below:
            terminalreporter.write_line(
                f"losstrend: mutation score below {self.fail_under:g}% "
                f"(--losstrend-mutate-fail-under): {', '.join(self.below)}",
                red=True,
            )


def _sigterm_to_interrupt(signum: int, frame: Any) -> None:
    """SIGTERM handler: end the run as Ctrl-C would, so its summary and reports are written."""
    raise KeyboardInterrupt(f"signal {signum} (SIGTERM)")


def start_session(config: pytest.Config, settings: Settings) -> LossTrendSession:
    """Build the run's session from its settings, stash it and register the plugin objects.

    Example::

        def pytest_configure(config):
            start_session(config, resolve_settings(config))
    """
    session = LossTrendSession(config, seed=settings.seed, reports=settings.reports)
    session.mutate = settings.mutate
    session.fail_under = settings.fail_under
    session.baselines = settings.baselines
    session.capture = settings.capture
    config.stash[_CONFIG_KEY] = session
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(session), "losstrend-xdist")
    config.pluginmanager.register(session, "losstrend-session")
    config.pluginmanager.register(BuiltinRules(), "losstrend-rules")
    return session


def report_header_lines(config: pytest.Config) -> list[str]:
    """The seed, so a run can be reproduced, and the baselines in play (``pytest_report_header``).

    Example::

        report_header_lines(config)  # ["losstrend: seed 42 (--losstrend-seed=N to change)"]
    """
    session = config.stash[_CONFIG_KEY]
    lines = [f"losstrend: seed {session.seed} (--losstrend-seed=N to change)"]
    b = session.baselines
    if b is not None and b.compare is not None:
        # Imported only here: a run that compares nothing loads no report code at start.
        from pytest_losstrend.reports.rows import _plural

        path = b.display(b.path(b.compare))
        if b.compare_doc is None:
            what = "missing"
        else:
            tests = b.compare_doc["tests"]
            runs = sum(len(e["runs"]) for e in tests.values())
            what = f"{_plural(len(tests), 'test')}, {_plural(runs, 'run')}"
        gate = ",".join(g.label for g in b.gates) if b.gated else "not gated"
        lines.append(f"losstrend: comparing with {path} ({what}; {gate})")
    if b is not None and b.save is not None:
        mode = "replacing saved runs" if b.update else "adding new runs only"
        lines.append(f"losstrend: saving to {b.display(b.path(b.save))} ({mode})")
    return lines

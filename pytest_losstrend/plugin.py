"""pytest entry point (``pytest11: losstrend``): options, markers, the fixture and hooks.

Glue only. Nothing here imports numpy, torch or tensorflow at load time, so a suite that
never uses the marker or the fixture pays nothing; the judging code is imported on first use.
"""

from __future__ import annotations

import argparse
import re
import warnings
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_losstrend.capture.seeding import DEFAULT_SEED, MAX_SEED
from pytest_losstrend.verdict.criteria import Criteria, CriteriaError, validate_criteria

if TYPE_CHECKING:
    from pytest_losstrend.fixture import LossTrend

MARK_DECREASES = "loss_decreases"
MARK_FAILS = "loss_fails"
SEED_ARG = "_losstrend_seed_index"
REPORT_FORMATS = ("term", "json", "html", "md")

_LT_KEY = pytest.StashKey["LossTrend"]()
_RESULT_KEY = pytest.StashKey[dict[str, Any]]()
# The plain-data result travels on the test report under this attribute, which pytest
# serialises for pytest-xdist, so the controller sees every worker's results.
REPORT_ATTR = "losstrend"


def _parse_report(value: str) -> tuple[str, str | None]:
    fmt, _, path = value.partition(":")
    fmt = fmt.strip().lower() or "term"
    if fmt not in REPORT_FORMATS:
        raise argparse.ArgumentTypeError(
            f"unknown report format {fmt!r}; expected one of {', '.join(REPORT_FORMATS)} "
            "(e.g. --losstrend-report=json:losstrend.json). A bare --losstrend-report takes "
            "the next argument as its format: write --losstrend-report=term before a path"
        )
    if fmt == "term":
        if path:
            raise argparse.ArgumentTypeError("the term report takes no path")
        return fmt, None
    if not path:
        raise argparse.ArgumentTypeError(f"the {fmt} report needs a path, e.g. {fmt}:out.{fmt}")
    return fmt, path


def _parse_seed(value: str) -> int:
    try:
        seed = int(value)
    except ValueError:
        seed = -1
    if not 0 <= seed <= MAX_SEED:
        # numpy's legacy seeding, which Keras uses too, takes 32 bits.
        raise argparse.ArgumentTypeError(
            f"seed must be an integer from 0 to {MAX_SEED} (2**32 - 1), got {value!r}")
    return seed


def _parse_percent(value: str) -> float:
    try:
        pct = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a percentage from 0 to 100, got {value!r}"
        ) from None
    if not 0 <= pct <= 100:
        raise argparse.ArgumentTypeError(f"expected a percentage from 0 to 100, got {value!r}")
    return pct


class _HelpEscaping:
    """An option group whose help texts are taken literally.

    argparse %-formats every option's help (``%(default)s``), so a bare ``%`` in a text such
    as ``final:10%`` crashes ``pytest --help`` for every project with the plugin installed.
    """

    def __init__(self, group: Any) -> None:
        self._group = group

    def addoption(self, *names: str, **kwargs: Any) -> None:
        """Add the option to the group, with its help text's ``%`` escaped."""
        if "help" in kwargs:
            kwargs["help"] = kwargs["help"].replace("%", "%%")
        self._group.addoption(*names, **kwargs)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``--losstrend-*`` options and their ini twins."""
    group = _HelpEscaping(parser.getgroup("losstrend", "loss-trend checks for training loops"))
    group.addoption(
        "--losstrend-report",
        action="append",
        dest="losstrend_report",
        metavar="FORMAT[:PATH]",
        nargs="?",
        const="term",
        type=_parse_report,
        help="Write a loss-trend report: term (a table in the terminal), json:PATH, html:PATH "
        "(one self-contained page with a chart per series), md:PATH (Markdown, for a CI job "
        "summary). Repeatable.",
    )
    group.addoption(
        "--losstrend-seed",
        dest="losstrend_seed",
        metavar="N",
        type=_parse_seed,
        default=None,
        help=f"Seed python, numpy, torch and tensorflow before each test using the losstrend "
        f"fixture. Default: {DEFAULT_SEED}.",
    )
    group.addoption(
        "--losstrend-catalogue",
        dest="losstrend_catalogue",
        action="store_true",
        default=None,
        help="Also run the built-in catalogue of known-bad training configurations as tests "
        "(each must fail with its cause; each healthy twin must pass). Select them alone with "
        "-m losstrend_catalogue.",
    )
    group.addoption(
        "--losstrend-mutate",
        dest="losstrend_mutate",
        action="store_true",
        default=None,
        help="Re-run each marked test that trains through losstrend.fit under each mutation "
        "(injected training bug) that applies, and report its mutation score.",
    )
    group.addoption(
        "--losstrend-mutate-fail-under",
        dest="losstrend_mutate_fail_under",
        metavar="PCT",
        type=_parse_percent,
        default=None,
        help="With --losstrend-mutate: fail the session when a test's mutation score is below "
        "PCT percent (otherwise mutants never change the exit status).",
    )
    group.addoption(
        "--losstrend-save",
        dest="losstrend_save",
        metavar="NAME",
        nargs="?",
        const="default",
        default=None,
        help="Save the loss curves of the passing marked tests as baseline NAME (default: "
        "'default') under the baseline folder. Runs under a new --losstrend-seed are added "
        "beside the saved ones; a saved run is replaced only with --losstrend-update.",
    )
    group.addoption(
        "--losstrend-compare",
        dest="losstrend_compare",
        metavar="NAME",
        nargs="?",
        const="default",
        default=None,
        help="Compare each marked test's curves with baseline NAME (default: 'default') and "
        "show the figures. Fails nothing unless --losstrend-compare-fail is given.",
    )
    group.addoption(
        "--losstrend-compare-fail",
        dest="losstrend_compare_fail",
        metavar="EXPR",
        action="append",
        default=None,
        help="Fail a marked test whose curve regressed against the baseline (implies "
        "--losstrend-compare): comma-separated final:PCT (end level), auc:PCT (mean loss), "
        "steps_to:LEVEL:PCT (steps until the loss reaches LEVEL), each PCT above the band "
        "of the baseline's runs. E.g. final:10%,auc:15%.",
    )
    group.addoption(
        "--losstrend-update",
        dest="losstrend_update",
        action="store_true",
        default=None,
        help="Let --losstrend-save replace runs already saved for the same test and seed "
        "(implies --losstrend-save).",
    )
    group.addoption(
        "--losstrend-baseline-dir",
        dest="losstrend_baseline_dir",
        metavar="DIR",
        default=None,
        help="Folder of the baseline files, relative to the rootdir (default: .losstrend).",
    )
    parser.addini(
        "losstrend_save", type="string", default="",
        help="Save baselines under this name (as --losstrend-save=NAME).",
    )
    parser.addini(
        "losstrend_compare", type="string", default="",
        help="Compare with the baseline of this name (as --losstrend-compare=NAME).",
    )
    parser.addini(
        "losstrend_compare_fail", type="string", default="",
        help="Gate expression, e.g. final:10%,auc:15% (as --losstrend-compare-fail).",
    )
    parser.addini(
        "losstrend_update", type="bool", default=False,
        help="Replace saved baseline runs (as --losstrend-update).",
    )
    parser.addini(
        "losstrend_baseline_dir", type="string", default=".losstrend",
        help="Folder of the baseline files, relative to the rootdir (as "
        "--losstrend-baseline-dir).",
    )
    parser.addini(
        "losstrend_mutate",
        type="bool",
        default=False,
        help="Mutation-test the marked tests that use losstrend.fit (as --losstrend-mutate).",
    )
    parser.addini(
        "losstrend_mutate_fail_under",
        type="string",
        default="",
        help="Fail the session below this mutation score, in percent "
        "(as --losstrend-mutate-fail-under).",
    )
    parser.addini(
        "losstrend_catalogue",
        type="bool",
        default=False,
        help="Run the built-in catalogue of known-bad configurations (as --losstrend-catalogue).",
    )
    parser.addini(
        "losstrend_report",
        type="linelist",
        default=[],
        help="Loss-trend reports to write, one FORMAT[:PATH] per line (as --losstrend-report).",
    )
    parser.addini(
        "losstrend_seed",
        type="string",
        default=str(DEFAULT_SEED),
        help=f"Seed for tests using the losstrend fixture (as --losstrend-seed). "
        f"Default: {DEFAULT_SEED}.",
    )


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Add the ``pytest_losstrend_*`` hook specifications."""
    from pytest_losstrend import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


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
    def pytest_losstrend_report(self, report: dict[str, Any], config: pytest.Config) -> None:
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


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers and resolve the seed and the reports (command line beats ini)."""
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
    catalogue = config.getoption("losstrend_catalogue", None)
    if catalogue is None:
        catalogue = bool(config.getini("losstrend_catalogue"))
    if catalogue:
        # Collected like a file named on the command line (by every pytest-xdist worker too,
        # since each parses the options itself).
        from pathlib import Path

        config.args.append(str(Path(__file__).parent / "catalogue" / "_catalogue_tests.py"))
    seed = config.getoption("losstrend_seed", None)
    if seed is None:
        raw = config.getini("losstrend_seed")
        try:
            seed = _parse_seed(str(raw))
        except argparse.ArgumentTypeError as exc:
            raise pytest.UsageError(f"ini option losstrend_seed: {exc}") from None
    reports = config.getoption("losstrend_report", None)
    source = "--losstrend-report"
    if not reports:
        source = "ini option losstrend_report"
        parsed = []
        for line in config.getini("losstrend_report"):
            try:
                parsed.append(_parse_report(line))
            except argparse.ArgumentTypeError as exc:
                raise pytest.UsageError(f"ini option losstrend_report: {exc}") from None
        reports = parsed
    # Report paths are relative to where pytest was invoked, as --junitxml's are, whatever the
    # working directory is when the session ends.
    root = config.invocation_params.dir
    if not hasattr(config, "workerinput"):
        reports = _check_report_paths(reports, source, root, config.getoption("xmlpath", None))
    reports = [(fmt, str(root / path) if path else None) for fmt, path in reports]
    mutate = config.getoption("losstrend_mutate", None)
    if mutate is None:
        mutate = bool(config.getini("losstrend_mutate"))
    fail_under = config.getoption("losstrend_mutate_fail_under", None)
    if fail_under is None and str(config.getini("losstrend_mutate_fail_under")).strip():
        try:
            fail_under = _parse_percent(str(config.getini("losstrend_mutate_fail_under")))
        except argparse.ArgumentTypeError as exc:
            raise pytest.UsageError(f"ini option losstrend_mutate_fail_under: {exc}") from None
    session = LossTrendSession(config, seed=seed, reports=reports)
    session.mutate = bool(mutate)
    session.fail_under = fail_under
    workerinput = getattr(config, "workerinput", None)
    sent = workerinput.get("losstrend") if isinstance(workerinput, dict) else None
    if sent is not None:
        # A pytest-xdist worker runs with the controller's resolved settings, so a seed or a
        # baseline folder resolved against the controller's directories is the same here.
        session.seed = int(sent["seed"])
        session.mutate = bool(sent["mutate"])
        if sent["baselines"] is not None:
            from pytest_losstrend.reports.baseline import BaselineSettings

            session.baselines = BaselineSettings.from_plain(sent["baselines"])
    else:
        session.baselines = _baseline_settings(config)
    if session.baselines is not None:
        from pytest_losstrend.reports.baseline import BaselineError

        try:
            if sent is None:
                # The controller saves: a folder it cannot write stops the run now, not after
                # an all-green one.
                session.baselines.check_writable()
            session.baselines.load_files()
        except BaselineError as exc:
            raise pytest.UsageError(f"losstrend: {exc}") from None
    config.stash[_CONFIG_KEY] = session
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(session), "losstrend-xdist")
    config.pluginmanager.register(session, "losstrend-session")
    config.pluginmanager.register(BuiltinRules(), "losstrend-rules")


def _check_report_paths(
    reports: list[tuple[str, str | None]], source: str, root: Any, junitxml: str | None
) -> list[tuple[str, str | None]]:
    """The requested reports without repeats, once every path is known to be writable.

    Checked when pytest configures, so that a typo costs a usage error before any test
    trains, not a traceback (and the other reports) after an hour of green tests. A missing
    folder is created when the report is written, as ``--junitxml`` does; whether it can be
    is tried with a throw-away file in the nearest folder that exists, which also catches a
    read-only file system that permission bits (and root) do not show.
    """
    import os
    import tempfile
    from pathlib import Path

    taken: dict[Path, str] = {}
    if junitxml:
        taken[Path(os.path.normpath(root / junitxml))] = "--junitxml"
    out: list[tuple[str, str | None]] = []
    for fmt, path in reports:
        if path is None:
            if (fmt, None) not in out:
                out.append((fmt, None))
            continue
        where = f"{source}={fmt}:{path}"
        target = Path(os.path.normpath(root / path))
        other = taken.get(target)
        if other == fmt:
            continue  # the same report asked for twice
        if other is not None:
            raise pytest.UsageError(
                f"{where}: the {other} report goes to the same file; give each report "
                "its own path"
            )
        if target.is_dir():
            raise pytest.UsageError(
                f"{where}: {path} is a directory; give a file path such as "
                f"{Path(path) / ('losstrend.' + fmt)}"
            )
        parent = target.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise pytest.UsageError(
                f"{where}: {parent} is a file, so no report can be written under it"
            )
        try:
            with tempfile.TemporaryFile(dir=parent, prefix=".losstrend-probe-"):
                pass
        except OSError as exc:
            raise pytest.UsageError(
                f"{where}: cannot write under {parent} ({exc.strerror or exc})"
            ) from None
        if target.exists() and not os.access(target, os.W_OK):
            raise pytest.UsageError(f"{where}: {path} exists and is not writable")
        taken[target] = fmt
        out.append((fmt, path))
    return out


def _baseline_settings(config: pytest.Config) -> Any:
    """The resolved baseline options (None when the run neither saves nor compares)."""
    from pathlib import Path

    def opt(name: str) -> Any:
        value = config.getoption(name, None)
        if value is None or value is False:
            value = config.getini(name)
            if isinstance(value, str):
                value = value.strip() or None
        return value

    # An empty value (`--losstrend-save=`, often an unset CI variable) would otherwise mean
    # "not given" and the run would silently save or gate nothing.
    for dest, flag in (("losstrend_save", "NAME"), ("losstrend_compare", "NAME"),
                       ("losstrend_baseline_dir", "DIR")):
        given = config.getoption(dest, None)
        if isinstance(given, str) and not given.strip():
            option = "--" + dest.replace("_", "-")
            raise pytest.UsageError(
                f"losstrend: {option}= is empty: give a {flag}"
                + (f" (or write {option} alone for 'default')" if flag == "NAME" else ""))
    if not str(config.getini("losstrend_baseline_dir")).strip():
        raise pytest.UsageError("losstrend: ini option losstrend_baseline_dir is empty: give a "
                                "folder (default .losstrend)")
    fails = config.getoption("losstrend_compare_fail", None)
    if fails and not all(f.strip() for f in fails):
        raise pytest.UsageError("losstrend: --losstrend-compare-fail= is empty: give gates, "
                                "e.g. final:10%,auc:15%")
    fail = ",".join(fails) if fails else (str(config.getini("losstrend_compare_fail")).strip()
                                          or None)
    save, compare, update = opt("losstrend_save"), opt("losstrend_compare"), opt("losstrend_update")
    if not (save or compare or fail or update):
        return None
    from pytest_losstrend.reports.baseline import BaselineError, BaselineSettings

    directory = Path(opt("losstrend_baseline_dir") or ".losstrend")
    try:
        return BaselineSettings.resolve(
            directory=config.rootpath / directory, save=save, compare=compare, fail=fail,
            update=bool(update),
        )
    except BaselineError as exc:
        raise pytest.UsageError(f"losstrend: {exc}") from None


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
        self.results: list[dict[str, Any]] = []
        #: Where each node id's result is in ``results`` (a rerun replaces it).
        self._index: dict[str, int] = {}
        #: Node ids of marked test functions that did not ask for the fixture.
        self.unrequested: set[str] = set()
        #: --losstrend-mutate, and the score under which the session fails (None: never).
        self.mutate = False
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
        data = getattr(report, REPORT_ATTR, None)
        # pytest-rerunfailures logs each attempt but the last with outcome "rerun": superseded
        # by the final attempt, which carries the count.
        if data is None or report.when != "call" or str(report.outcome) == "rerun":
            return
        reruns = getattr(report, "rerun", 0)
        if isinstance(reruns, int) and reruns > 0:
            data = dict(data, reruns=reruns)
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


_CONFIG_KEY = pytest.StashKey[LossTrendSession]()


def _sigterm_to_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum} (SIGTERM)")


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Show the seed, so a run can be reproduced, and the baselines in play."""
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


def _marker_criteria(node: pytest.Item | pytest.Function | Any) -> tuple[str | None, Any]:
    """The marker kind and its raw arguments, or ``(None, None)``."""
    for name in (MARK_DECREASES, MARK_FAILS):
        mark = node.get_closest_marker(name)
        if mark is not None:
            return name, mark
    return None, None


def parse_marker(name: str, mark: pytest.Mark) -> tuple[Criteria, str | None]:
    """Validate a marker's arguments; raises :class:`CriteriaError` naming the bad one."""
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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Validate the markers at collection and expand ``seeds=N`` into N parametrized tests."""
    name, mark = _marker_criteria(metafunc.definition)
    if name is None:
        if "losstrend" in metafunc.fixturenames:
            _seed_first(metafunc)
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
    _seed_first(metafunc)
    if crit.seeds > 1:
        metafunc.fixturenames.append(SEED_ARG)
        metafunc.parametrize(
            SEED_ARG, list(range(crit.seeds)), ids=[f"seed{i}" for i in range(crit.seeds)]
        )


def _seed_first(metafunc: pytest.Metafunc) -> None:
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
    from pytest_losstrend.capture.seeding import seed_everything
    from pytest_losstrend.fixture import LossTrend

    settings = request.config.stash[_CONFIG_KEY]
    node = request.node
    name, mark = _marker_criteria(node)
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
    # outcome; finishing twice is harmless.
    lt.finish_watching()


_RNG_KEY = pytest.StashKey[dict[str, object]]()


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
    """Judge the recorded series of a marked test after its body ran."""
    name, mark = _marker_criteria(item)
    if name is None:
        return (yield)
    from pytest_losstrend.fixture import LossTrendStop
    from pytest_losstrend.runner import judge_item

    stop = None
    body_error: BaseException | None = None
    result = None
    lt = item.stash.get(_LT_KEY, None)
    crit, cause = parse_marker(name, mark)
    # The test's warnings are recorded (under the filters in force, so "error" still raises
    # in the test) for the diagnosis, then re-emitted for pytest's own warnings summary.
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as recording:
            try:
                result = yield
            finally:
                caught = list(recording or [])
    except LossTrendStop as exc:
        body = _body_error(exc, LossTrendStop)
        if body is None:
            stop = exc
        else:
            # A record() in a finally or except stopped the run while the body's own error was
            # on its way out: that error is the test's failure, the verdict is shown with it.
            _reemit(caught)
            if lt is not None and lt.series_names:
                from pytest_losstrend.runner import result_data

                item.stash[_RESULT_KEY] = result_data(item, lt, crit, exc.verdict, name)
            _add_note(body, "losstrend: after this error, the loss check failed too:\n"
                      + str(exc))
            body_error = body
    except BaseException:
        _reemit(caught)
        # The body failed (or skipped) on its own: that outcome stands, but the report still
        # shows what was recorded, under the test's marker.
        if lt is not None and lt.series_names:
            from pytest_losstrend.runner import result_data

            item.stash[_RESULT_KEY] = result_data(item, lt, crit, lt.check(), name)
        raise
    if body_error is not None:
        # Raised outside the except block, so that its own chain stays as the body left it.
        raise body_error
    _reemit(caught)
    requested = item.nodeid.split("[", 1)[0] not in item.config.stash[_CONFIG_KEY].unrequested
    data, action, message = judge_item(
        item, lt=lt, marker=name, crit=crit, cause=cause, stop=stop, fixture_requested=requested,
        warnings_seen=[str(w.message) for w in caught],
    )
    settings = item.config.stash[_CONFIG_KEY]
    b = settings.baselines
    if b is not None and name == MARK_DECREASES:
        from pytest_losstrend.reports.baseline import environment

        # Recorded where the test ran: a pytest-xdist controller never imports the frameworks.
        data["environment"] = environment()
    if b is not None and b.compare is not None and name == MARK_DECREASES and data["series"]:
        comp = data["baseline"] = b.compare_test(data)
        if b.gated and comp["status"] == "regressed":
            note = f"losstrend: {comp['message']}"
            message = note if action != "fail" else f"{message}\n{note}"
            action = "fail"
    if (
        settings.mutate and name == MARK_DECREASES and action == "pass" and lt is not None
        and lt.fit_framework is not None
    ):
        # Only a passing test is mutated: a failing one catches every mutant trivially.
        from pytest_losstrend.catalogue.mutate import run_mutants

        run_mutants(item, lt, crit, data)
    item.stash[_RESULT_KEY] = data
    _junit_properties(item, data)
    if action == "fail":
        pytest.fail(message, pytrace=False)
    if action == "skip":
        pytest.skip(message)
    return result


def _body_error(stop: BaseException, stop_type: type[BaseException]) -> BaseException | None:
    """The exception the test body was raising when ``stop`` was raised (in a ``finally`` or
    an ``except``), or None when the stop came first."""
    context = stop.__context__
    while context is not None and isinstance(context, stop_type):
        context = context.__context__
    return context


def _add_note(exc: BaseException, note: str) -> None:
    """PEP 678 note, which pytest shows under the exception (set by hand before 3.11)."""
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    else:  # pragma: no cover - python 3.10
        exc.__notes__ = [*getattr(exc, "__notes__", []), note]  # type: ignore[attr-defined]


def _junit_properties(item: pytest.Item, data: dict[str, Any]) -> None:
    """The verdict, top cause, start and end loss as JUnit XML properties (--junitxml)."""
    verdict = data.get("verdict") or {}
    stats = verdict.get("stats", {})
    props = [("losstrend_verdict", verdict.get("status")),
             ("losstrend_reason", verdict.get("reason")),
             ("losstrend_top_cause", (data.get("diagnoses") or [{}])[0].get("cause")),
             ("losstrend_start", stats.get("start")),
             ("losstrend_end", stats.get("end"))]
    item.user_properties.extend((k, v) for k, v in props if v is not None)


def _reemit(caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the loss-trend result to the call-phase report as plain data, with the test's
    outcome as pytest counts it.

    A ``loss_fails`` test whose verdict failed as expected is reported the way pytest reports
    an xfail (outcome ``skipped`` with ``wasxfail``), so pytest's summary, JUnit XML and
    pytest-xdist count it as xfailed. A skip our hook raised (an inconclusive verdict) is
    placed at the test, as pytest places a skip mark's, not in this file.
    """
    report = yield
    if call.when != "call":
        return report
    data = item.stash.get(_RESULT_KEY, None)
    lt = item.stash.get(_LT_KEY, None)
    if data is None and lt is not None and lt.series_names:
        from pytest_losstrend.runner import unmarked_result

        data = unmarked_result(item, lt)
    if data is None:
        return report
    verdict = data.get("verdict")
    if (
        data.get("marker") == MARK_FAILS and report.passed and call.excinfo is None
        and verdict is not None and verdict.get("status") == "fail"
    ):
        report.outcome = "skipped"
        report.wasxfail = f"loss_fails: {verdict.get('reason', 'the loss check failed')}"
    if report.skipped and not hasattr(report, "wasxfail"):
        _skip_at_the_test(item, report)
    if hasattr(report, "wasxfail"):
        # pytest's own words: "xfailed" and "xpassed" are counted apart from skipped/passed.
        outcome = "xfailed" if report.skipped else "xpassed"
    else:
        outcome = report.outcome
    data = dict(data, outcome=outcome,
                verdict_ok=bool(verdict["ok"]) if verdict is not None else None)
    setattr(report, REPORT_ATTR, data)
    return report


def _skip_at_the_test(item: pytest.Item, report: pytest.TestReport) -> None:
    """Point a skip raised in this file at the test's own file and line."""
    import os
    from pathlib import Path

    longrepr = report.longrepr
    if not (isinstance(longrepr, tuple) and len(longrepr) == 3):
        return
    where, _, message = longrepr
    try:
        ours = Path(str(where)).resolve() == Path(__file__).resolve()
    except OSError:
        return
    if ours:
        path, line = item.reportinfo()[:2]
        if line is not None:
            report.longrepr = (os.fspath(path), line + 1, message)

"""The ``--losstrend-*`` options and their ini twins: declared, parsed and resolved.

:func:`add_options` declares them (``pytest_addoption``); :func:`resolve_settings` turns the
command line, the ini file and, on a pytest-xdist worker, the controller's settings into one
:class:`Settings` (``pytest_configure``). A bad value is a :class:`pytest.UsageError` raised
before any test trains. Nothing here imports numpy, torch or tensorflow at load time.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from pytest_losstrend.capture.seeding import DEFAULT_SEED, MAX_SEED

if TYPE_CHECKING:
    from pytest_losstrend.reports.baseline import BaselineSettings

REPORT_FORMATS = ("term", "json", "html", "md")


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


def _parse_on_off(value: str) -> bool:
    word = value.strip().lower()
    if word in ("on", "true", "yes", "1"):
        return True
    if word in ("off", "false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, got {value!r}")


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



def add_options(parser: pytest.Parser) -> None:
    """Register the ``--losstrend-*`` options and their ini twins (``pytest_addoption``).

    Example::

        def pytest_addoption(parser):
            add_options(parser)
    """
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
    group.addoption(
        "--losstrend-capture",
        dest="losstrend_capture",
        metavar="on|off",
        type=_parse_on_off,
        default=None,
        help="Automatic capture for marked tests that record nothing themselves: the loss of "
        "each torch backward() (grouped per optimizer step) or Keras fit, and the training "
        "watched for diagnosis. Default: on. A marker's capture=True/False beats it.",
    )
    parser.addini(
        "losstrend_capture", type="string", default="on",
        help="Automatic capture for marked tests, on or off (as --losstrend-capture).",
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


@dataclass(frozen=True)
class Settings:
    """The run's resolved loss-trend settings (command line beats ini; a pytest-xdist worker
    takes the controller's).

    Example::

        settings = resolve_settings(config)
        settings.seed, settings.reports  # 42, [("json", "/abs/path/r.json")]
    """

    #: The base seed (``--losstrend-seed``); a test's ``seeds=N`` runs add 0 .. N-1 to it.
    seed: int
    #: The reports to write, ``(format, absolute path or None for term)``; on the controller
    #: each path is checked writable and a report asked for twice is kept once.
    reports: list[tuple[str, str | None]]
    #: ``--losstrend-mutate``, and the score under which the session fails (None: never).
    mutate: bool
    fail_under: float | None
    #: ``--losstrend-catalogue``: the built-in catalogue is collected too.
    catalogue: bool
    #: The baseline settings, files loaded (None: nothing saved or compared).
    baselines: BaselineSettings | None
    #: ``--losstrend-capture``: automatic capture for marked tests that record nothing
    #: themselves (a marker's explicit ``capture=`` beats it).
    capture: bool = True


def resolve_settings(config: pytest.Config) -> Settings:
    """Every ``--losstrend-*`` option resolved against its ini twin, checked and loaded.

    Raises :class:`pytest.UsageError` for a bad value, a report path that cannot be written,
    or a baseline folder or file that cannot be used, in the order the options are resolved.

    Example::

        def pytest_configure(config):
            settings = resolve_settings(config)
    """
    catalogue = config.getoption("losstrend_catalogue", None)
    if catalogue is None:
        catalogue = bool(config.getini("losstrend_catalogue"))
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
    capture = config.getoption("losstrend_capture", None)
    if capture is None:
        try:
            capture = _parse_on_off(str(config.getini("losstrend_capture")))
        except argparse.ArgumentTypeError as exc:
            raise pytest.UsageError(f"ini option losstrend_capture: {exc}") from None
    baselines: BaselineSettings | None
    workerinput = getattr(config, "workerinput", None)
    sent = workerinput.get("losstrend") if isinstance(workerinput, dict) else None
    if sent is not None:
        # A pytest-xdist worker runs with the controller's resolved settings, so a seed or a
        # baseline folder resolved against the controller's directories is the same here.
        seed = int(sent["seed"])
        mutate = bool(sent["mutate"])
        baselines = None
        if sent["baselines"] is not None:
            from pytest_losstrend.reports.baseline import BaselineSettings

            baselines = BaselineSettings.from_plain(sent["baselines"])
    else:
        baselines = _baseline_settings(config)
    if baselines is not None:
        from pytest_losstrend.reports.baseline import BaselineError

        try:
            if sent is None:
                # The controller saves: a folder it cannot write stops the run now, not after
                # an all-green one.
                baselines.check_writable()
            baselines.load_files()
        except BaselineError as exc:
            raise pytest.UsageError(f"losstrend: {exc}") from None
    return Settings(seed=seed, reports=reports, mutate=bool(mutate), fail_under=fail_under,
                    catalogue=bool(catalogue), baselines=baselines, capture=bool(capture))


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


def _baseline_settings(config: pytest.Config) -> BaselineSettings | None:
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


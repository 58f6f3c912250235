"""The command line as a new user first meets it: ``pytest --help`` and bad option values."""

from __future__ import annotations

import re
from pathlib import Path

import numpy  # noqa: F401  (imported before pytester snapshots sys.modules: it cannot load twice)
import pytest

import pytest_losstrend.options

OPTIONS_SOURCE = Path(pytest_losstrend.options.__file__).read_text(encoding="utf-8")
OPTIONS = sorted(set(re.findall(r'"(--losstrend-[a-z-]+)"', OPTIONS_SOURCE)))
INI_NAMES = sorted(set(re.findall(r'parser\.addini\(\s*"(losstrend_[a-z_]+)"', OPTIONS_SOURCE)))


def test_every_option_is_found_in_the_source() -> None:
    # Guards the two tests below against a regex that finds nothing.
    assert len(OPTIONS) >= 10 and "--losstrend-compare-fail" in OPTIONS
    assert len(INI_NAMES) >= 10 and "losstrend_compare_fail" in INI_NAMES


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_option(pytester: pytest.Pytester, flag: str) -> None:
    """argparse %-formats help texts: one bare '%' (as in 'final:10%') crashed --help in
    every project with the plugin installed. Run it as a user would, in a fresh process."""
    result = pytester.runpytest_subprocess(flag)
    assert result.ret == 0, result.stderr.str()
    out = result.stdout.str()
    for option in OPTIONS:
        assert option in out, option
    for name in INI_NAMES:
        assert name in out, name
    # The gate example reads as written, with one percent sign.
    assert "final:10%,auc:15%" in out.replace("\n", "").replace(" ", "")


# -- report paths -------------------------------------------------------------------------------

BODY = """
from pathlib import Path

def test_trains(losstrend):
    Path("ran.txt").write_text("yes")
    losstrend.record([3.0, 2.5, 2.0, 1.6, 1.3, 1.1, 1.0, 0.9, 0.8, 0.7])
"""


@pytest.mark.parametrize(
    ("report", "says"),
    [
        ("md:afile/x.md", "afile is a file, so no report can be written under it"),
        ("json:adir", "adir is a directory; give a file path such as adir/losstrend.json"),
        ("json:/proc/losstrend.json", "cannot write under /proc"),
        ("json:/proc/nope/deeper/r.json", "cannot write under /proc"),
        ("html:adir/../r.html --losstrend-report=json:r.html",
         "--losstrend-report=json:r.html: the html report goes to the same file"),
        ("json:out.xml --junitxml=out.xml", "the --junitxml report goes to the same file"),
    ],
    ids=["parent-is-a-file", "path-is-a-directory", "unwritable-root", "missing-under-unwritable",
         "json-and-html-same-file", "same-as-junitxml"],
)
def test_bad_report_path_is_a_usage_error_before_any_test(
    pytester: pytest.Pytester, report: str, says: str
) -> None:
    pytester.makepyfile(test_inner=BODY)
    (pytester.path / "afile").write_text("not a folder")
    (pytester.path / "adir").mkdir()
    result = pytester.runpytest_inprocess(*f"--losstrend-report={report}".split())
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    # The message names the option and the path as the user wrote them.
    assert "ERROR: --losstrend-report=" in result.stderr.str()
    assert says in result.stderr.str()
    assert not (pytester.path / "ran.txt").exists(), "no test may run"


def test_bad_report_path_from_ini_names_the_ini_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=BODY)
    (pytester.path / "afile").write_text("")
    pytester.makeini("[pytest]\nlosstrend_report =\n    term\n    json:afile/r.json\n")
    result = pytester.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "ini option losstrend_report=json:afile/r.json" in result.stderr.str()


def test_missing_folders_are_created_and_a_repeat_is_written_once(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_inner=BODY)
    result = pytester.runpytest_inprocess("--losstrend-report=json:new/deep/r.json",
                                          "--losstrend-report=json:new/deep/r.json")
    assert result.ret == 0
    assert (pytester.path / "new/deep/r.json").is_file()
    assert result.stdout.str().count("JSON report written") == 1


def test_one_failing_writer_never_stops_the_others(pytester: pytest.Pytester) -> None:
    """A folder that turns into a file during the run (as a disk filling up or a cleanup
    would) costs that report alone: the others are written, the failure is said in red and
    the session fails."""
    pytester.makepyfile(test_inner=BODY + """
def test_breaks_the_folder():
    Path("gone").write_text("a file where the md report's folder should be")
""")
    result = pytester.runpytest_inprocess(
        "--losstrend-report=md:gone/r.md", "--losstrend-report=json:r.json",
        "--losstrend-report=html:r.html", "-p", "no:randomly")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*losstrend: JSON report written to *r.json",
        "*losstrend: HTML report written to *r.html",
        "*losstrend: the Markdown report could not be written to *gone/r.md: *",
    ])
    assert "Traceback" not in result.stdout.str()
    assert (pytester.path / "r.json").is_file() and (pytester.path / "r.html").is_file()
    result.assert_outcomes(passed=2)


def test_a_raising_report_sink_costs_no_file(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=BODY)
    pytester.makeconftest("""
def pytest_losstrend_report(report, config):
    raise RuntimeError("my sink is broken")
""")
    result = pytester.runpytest_inprocess("--losstrend-report=json:r.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*a pytest_losstrend_report hook raised RuntimeError: my sink is broken*"])
    assert (pytester.path / "r.json").is_file()


@pytest.mark.parametrize(("flag", "shows"), [
    ("--markers", "@pytest.mark.loss_decreases(series='train'"),
    ("--fixtures", "losstrend -- "),
])
def test_markers_and_fixtures_listings_work(pytester: pytest.Pytester, flag: str,
                                            shows: str) -> None:
    """The other listings a new user types show the plugin's markers and fixture."""
    result = pytester.runpytest_subprocess(flag)
    assert result.ret == 0, result.stderr.str()
    assert shows in result.stdout.str()

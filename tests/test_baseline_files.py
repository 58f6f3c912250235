"""Baseline files under stress: damaged and hand-edited files, non-finite points, folders that
cannot be written, saves that fail at the end, and two sessions saving at once.

The inner suites here record hand-made curves (no training), so that many inner runs stay
cheap; tests/test_baseline.py covers the real training loops.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import pytest_losstrend.diagnosis.rules

# Imported before pytester snapshots the modules: numpy cannot be loaded twice in one process.
import pytest_losstrend.reports.baseline
import pytest_losstrend.reports.report
import pytest_losstrend.runner
from pytest_losstrend.reports.baseline import load, write

CURVES = """
import random

import pytest

@pytest.mark.loss_decreases
def test_fit(losstrend):
    # A noisy decay whose noise the test seed picks: each seed saves a different curve.
    losstrend.record([2.0 * 0.97 ** i + 0.05 * random.random() for i in range(60)])

@pytest.mark.loss_decreases
def test_fit_too(losstrend):
    losstrend.record([3.0 * 0.95 ** i + 0.05 * random.random() for i in range(40)])
"""

KEY = "test_curves.py::test_fit"


@pytest.fixture
def curves(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_curves=CURVES)
    return pytester


def valid_doc() -> dict[str, Any]:
    """A well-formed baseline of two runs, as this plugin writes one."""
    def run(seed: int) -> dict[str, Any]:
        return {"seed": seed, "framework": None, "saved": "2025-01-01T00:00:00Z",
                "series": {"train": [2.0 * 0.97 ** i for i in range(60)]}}

    return {"schema": "losstrend-baseline/1", "name": "main", "created": "2025-01-01T00:00:00Z",
            "updated": "2025-01-01T00:00:00Z",
            "environment": {"python": "3.12.0", "device": "cpu", "frameworks": {"numpy": "2.0"}},
            "tests": {KEY: {"runs": [run(0), run(1)]}}}


def edit(change: Callable[[dict[str, Any]], Any]) -> str:
    doc = valid_doc()
    change(doc)
    return json.dumps(doc)


def runs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = doc["tests"][KEY]["runs"]
    return result


def set_point(value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        runs(doc)[1]["series"]["train"][3] = value
    return change


RUN1 = f"tests[{KEY!r}].runs[1]"
POINT = f"{RUN1}.series['train'][3]"
VALID = json.dumps(valid_doc())

# (id, file content, the field and complaint the message must carry)
DAMAGE: list[tuple[str, str | bytes, str]] = [
    ("point-string", edit(set_point("abc")), f"{POINT}: expected a number, got 'abc'"),
    ("point-bool", edit(set_point(True)), f"{POINT}: expected a number, got True"),
    ("point-list", edit(set_point([1.0])), f"{POINT}: expected a number, got [1.0]"),
    ("point-other-string", edit(set_point("Infinity")), f"{POINT}: expected a number"),
    ("point-overflows", VALID.replace("1.825346", "1e999", 1),
     "series['train'][3]: expected a finite number (or null"),
    ("point-huge-int", VALID.replace("1.825346", "1" + "0" * 400, 1),
     "series['train'][3]: expected a number, got an integer too large"),
    ("nan-literal", VALID.replace("1.825346", "NaN", 1), "is not valid JSON (NaN is not JSON"),
    ("series-of-strings", edit(lambda d: runs(d)[1]["series"].update(train="1, 2, 3")),
     f"{RUN1}.series['train']: expected a list of losses, got '1, 2, 3'"),
    ("series-not-mapping", edit(lambda d: runs(d)[1].update(series=[1.0, 2.0])),
     f"{RUN1}.series: expected a mapping of series -> losses, got [1.0, 2.0]"),
    ("series-missing", edit(lambda d: runs(d)[1].pop("series")),
     f"{RUN1}.series: expected a mapping of series -> losses, got None"),
    ("seed-string", edit(lambda d: runs(d)[1].update(seed="1")),
     f"{RUN1}.seed: expected an integer or null, got '1'"),
    ("seed-float", edit(lambda d: runs(d)[1].update(seed=1.5)),
     f"{RUN1}.seed: expected an integer or null, got 1.5"),
    ("seed-bool", edit(lambda d: runs(d)[1].update(seed=True)),
     f"{RUN1}.seed: expected an integer or null, got True"),
    ("seed-twice", edit(lambda d: runs(d)[1].update(seed=0)),
     f"{RUN1}.seed: expected a seed not already in the runs, got 0"),
    ("framework-number", edit(lambda d: runs(d)[1].update(framework=3)),
     f"{RUN1}.framework: expected a string or null, got 3"),
    ("run-not-mapping", edit(lambda d: runs(d).append([1.0, 2.0])),
     f"tests[{KEY!r}].runs[2]: expected a mapping with 'seed' and 'series', got [1.0, 2.0]"),
    ("runs-missing", edit(lambda d: d["tests"][KEY].pop("runs")),
     f"tests[{KEY!r}].runs: expected a list of runs, got None"),
    ("entry-not-mapping", edit(lambda d: d["tests"].update({KEY: [1]})),
     f"tests[{KEY!r}]: expected a mapping with 'runs', got [1]"),
    ("tests-list", edit(lambda d: d.update(tests=[KEY])),
     "tests: expected a mapping of test -> runs, got ['test_curves.py::test_fit']"),
    ("tests-missing", edit(lambda d: d.pop("tests")),
     "tests: expected a mapping of test -> runs, got None"),
    ("name-number", edit(lambda d: d.update(name=7)), "name: expected a string or null, got 7"),
    ("environment-string", edit(lambda d: d.update(environment="cpu")),
     "environment: expected a mapping, got 'cpu'"),
    ("framework-version-number", edit(lambda d: d["environment"]["frameworks"].update(numpy=2)),
     "environment.frameworks['numpy']: expected a version string, got 2"),
    ("truncated", VALID[: len(VALID) // 2], "is not valid JSON ("),
    ("empty", "", "is not valid JSON (Expecting value: line 1 column 1"),
    ("not-utf8", VALID.encode().replace(b"cpu", b"\xff\xfe\xfd"), "is not valid JSON (not UTF-8"),
    ("nested-too-deep", '{"schema": "losstrend-baseline/1", "tests": ' + "[" * 100_000,
     "is not valid JSON (nested too deeply)"),
    ("foreign-schema", '{"schema": "pytest-benchmark/3", "tests": {}}',
     "is not a pytest-losstrend baseline (schema 'pytest-benchmark/3'"),
]


def test_the_damage_cases_start_from_a_file_that_loads(tmp_path: Path) -> None:
    """The cases damage one value each: the file they start from is a good baseline."""
    path = tmp_path / "main.json"
    path.write_text(VALID)
    assert "1.825346" in VALID  # the point the raw-text cases overwrite
    doc = load(path)
    assert doc is not None and len(runs(doc)) == 2


@pytest.mark.parametrize("option", ["--losstrend-compare=main", "--losstrend-save=main"])
@pytest.mark.parametrize("content, message", [c[1:] for c in DAMAGE], ids=[c[0] for c in DAMAGE])
def test_a_damaged_baseline_is_a_usage_error_naming_file_and_field(
    curves: pytest.Pytester, content: str | bytes, message: str, option: str
) -> None:
    folder = curves.path / ".losstrend"
    folder.mkdir()
    path = folder / "main.json"
    data = content if isinstance(content, bytes) else content.encode()
    path.write_bytes(data)
    result = curves.runpytest_inprocess(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "ERROR: losstrend: " in err and str(path) in err and message in err, err
    assert "left untouched" in err
    assert "passed" not in result.stdout.str()  # stopped before any test ran
    assert path.read_bytes() == data
    assert [p.name for p in folder.iterdir()] == ["main.json"]  # no temp or lock file


def test_non_finite_points_are_saved_as_null_and_read_back_as_nan(tmp_path: Path) -> None:
    doc = valid_doc()
    runs(doc)[0]["series"]["train"][:3] = [math.nan, math.inf, -math.inf]
    path = tmp_path / "b.json"
    write(path, doc)
    text = path.read_text()
    assert '"train": [null, null, null, 1.825346, ' in text
    assert "nan" not in text.lower() and "inf" not in text.lower()
    loaded = load(path)
    assert loaded is not None
    train = runs(loaded)[0]["series"]["train"]
    assert all(math.isnan(v) for v in train[:3]) and train[3] == 1.825346
    write(path, loaded)
    assert path.read_text() == text  # a round trip changes nothing


def test_legacy_nan_and_inf_strings_still_load_and_are_rewritten_as_null(
    curves: pytest.Pytester,
) -> None:
    doc = valid_doc()
    runs(doc)[0]["series"]["eval"] = [1.0, "nan", "inf", "-inf", 0.5]
    runs(doc)[0]["series"]["train"][1:4] = ["nan", "inf", "-inf"]
    path = curves.path / ".losstrend" / "main.json"
    path.parent.mkdir()
    path.write_text(json.dumps(doc))
    loaded = load(path)
    assert loaded is not None
    evals = runs(loaded)[0]["series"]["eval"]
    assert math.isnan(evals[1]) and evals[2] == math.inf and evals[3] == -math.inf
    result = curves.runpytest_inprocess("--losstrend-compare-fail=final:50%",
                                        "--losstrend-compare=main", "--losstrend-save=main",
                                        "--losstrend-seed=5")
    result.assert_outcomes(passed=2)
    saved = json.loads(path.read_text())
    assert runs(saved)[0]["series"]["eval"] == [1.0, None, None, None, 0.5]
    assert runs(saved)[0]["series"]["train"][:5] == [2.0, None, None, None, 1.770586]
    assert [r["seed"] for r in runs(saved)] == [0, 1, 5]


@pytest.mark.parametrize("args, message", [
    (["--losstrend-save="], "--losstrend-save= is empty: give a NAME"),
    (["--losstrend-compare="], "--losstrend-compare= is empty: give a NAME"),
    (["--losstrend-save", "--losstrend-baseline-dir="], "--losstrend-baseline-dir= is empty"),
    (["--losstrend-compare-fail="], "--losstrend-compare-fail= is empty"),
    (["--losstrend-save= "], "--losstrend-save= is empty"),
])
def test_an_empty_baseline_option_is_an_error_naming_it(
    curves: pytest.Pytester, args: list[str], message: str
) -> None:
    result = curves.runpytest_inprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: losstrend: {message}*"])
    assert not (curves.path / ".losstrend").exists()


def test_an_empty_ini_baseline_dir_is_an_error(curves: pytest.Pytester) -> None:
    curves.makeini("[pytest]\nlosstrend_baseline_dir =\nlosstrend_save = main\n")
    result = curves.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: losstrend: ini option losstrend_baseline_dir is empty*"])


# --- folders that cannot be written ---------------------------------------------------------

def _file_parent(p: pytest.Pytester) -> tuple[str, str]:
    (p.path / "afile").write_text("not a folder")
    return "afile/curves", f"cannot be created: {p.path / 'afile'} is not a directory"


def _file_itself(p: pytest.Pytester) -> tuple[str, str]:
    (p.path / "afile").write_text("not a folder")
    return "afile", "is not a directory"


def _proc(p: pytest.Pytester) -> tuple[str, str]:
    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux /proc")
    return "/proc/losstrend/curves", "cannot be created in /proc"


def _read_only(p: pytest.Pytester) -> tuple[str, str]:
    if os.geteuid() == 0:
        pytest.skip("root writes into a read-only folder")
    folder = p.path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    return "ro", "cannot be written: Permission denied"


@pytest.mark.parametrize("make", [_file_parent, _file_itself, _proc, _read_only],
                         ids=["parent-is-a-file", "folder-is-a-file", "under-proc", "read-only"])
def test_an_unwritable_baseline_folder_stops_the_run_at_start(
    curves: pytest.Pytester, make: Callable[[pytest.Pytester], tuple[str, str]]
) -> None:
    folder, why = make(curves)
    before = sorted(p.name for p in curves.path.iterdir())
    result = curves.runpytest_inprocess("-p", "no:cacheprovider", "--losstrend-save",
                                        f"--losstrend-baseline-dir={folder}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "passed" not in result.stdout.str()
    result.stderr.fnmatch_lines([
        f"ERROR: losstrend: baseline folder *{folder} (set by --losstrend-baseline-dir or ini "
        f"losstrend_baseline_dir) *{why}*"])
    assert sorted(p.name for p in curves.path.iterdir()) == before  # no probe left behind


def test_compare_only_with_a_missing_folder_is_fine(curves: pytest.Pytester) -> None:
    result = curves.runpytest_inprocess("--losstrend-compare",
                                        "--losstrend-baseline-dir=nowhere/curves")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["no baseline file nowhere/curves/default.json: nothing compared*"])


def test_a_save_that_fails_at_the_end_is_a_red_line_and_the_reports_are_written(
    pytester: pytest.Pytester,
) -> None:
    # The folder was writable at start, then became a file mid-run: what a permission change
    # or a full disk looks like at the end of a run, reproducible as root.
    pytester.makepyfile(test_curves=CURVES + """

def test_zz_folder_vanishes():
    from pathlib import Path
    Path("curves").rmdir()
    Path("curves").write_text("now a file")
""")
    (pytester.path / "curves").mkdir()
    result = pytester.runpytest_inprocess("-p", "no:randomly", "--losstrend-save",
                                          "--losstrend-baseline-dir=curves",
                                          "--losstrend-report=json:r.json",
                                          "--losstrend-report=md:s.md")
    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"baseline {pytester.path}/curves/default.json not saved: "
                                 f"{pytester.path}/curves: File exists; the baseline was left "
                                 "as it was"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert len(json.loads((pytester.path / "r.json").read_text())["tests"]) == 2
    assert (pytester.path / "s.md").is_file()
    assert (pytester.path / "curves").read_text() == "now a file"


def test_a_lock_held_too_long_is_a_red_line_naming_the_lock_file(
    curves: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    curves.runpytest_inprocess("--losstrend-save").assert_outcomes(passed=2)
    path = curves.path / ".losstrend" / "default.json"
    before = path.read_bytes()
    lock = path.with_name("default.json.lock")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time\nfrom filelock import FileLock\n"
         f"held = FileLock({str(lock)!r})\nheld.acquire()\n"
         "print('held', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(pytest_losstrend.reports.baseline, "LOCK_TIMEOUT", 0.5)
        start = time.monotonic()
        result = curves.runpytest_inprocess("--losstrend-save", "--losstrend-seed=1")
        took = time.monotonic() - start
    finally:
        holder.kill()
        holder.wait()
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"baseline {path} not saved: another session held its lock "
                                 f"{lock} for more than 0.5 s *left as it was*"])
    assert path.read_bytes() == before
    assert took < 30
    # Once the holder is gone (a dead process's lock is released) the save goes through.
    result = curves.runpytest_inprocess("--losstrend-save", "--losstrend-seed=1")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["baseline .losstrend/default.json: 2 tests added"])


# --- two sessions saving at once --------------------------------------------------------------

MANY = """
import random

import pytest

@pytest.mark.parametrize("i", range({tests}))
@pytest.mark.loss_decreases
def test_curve(losstrend, i):
    losstrend.record([2.0 * 0.99 ** k + 0.05 * random.random() for k in range({points})])
"""

# Holds each session at the start of its session finish until every session of the round has
# got there, so that their saves overlap (the race a real CI matrix hits by chance).
BARRIER = """
import os
import time
from pathlib import Path

import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    folder, me, n = os.environ["BARRIER_DIR"], os.environ["BARRIER_ME"], os.environ["BARRIER_N"]
    Path(folder).mkdir(exist_ok=True)
    (Path(folder) / me).touch()
    deadline = time.monotonic() + 120
    while len(os.listdir(folder)) < int(n) and time.monotonic() < deadline:
        time.sleep(0.0005)
"""


def test_two_sessions_saving_at_once_keep_every_run(pytester: pytest.Pytester) -> None:
    tests, rounds = 30, 3
    pytester.makepyfile(test_many=MANY.format(tests=tests, points=400))
    pytester.makeconftest(BARRIER)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    seeds: list[int] = []
    for r in range(rounds):
        pair = [2 * r, 2 * r + 1]
        procs = [subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
             "-p", "no:xdist", "--losstrend-save", f"--losstrend-seed={seed}"],
            cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**env, "BARRIER_DIR": f"barrier{r}", "BARRIER_ME": str(seed),
                 "BARRIER_N": "2"}) for seed in pair]
        outs = [p.communicate(timeout=300)[0] for p in procs]
        for p, out in zip(procs, outs, strict=True):
            assert p.returncode == 0, out
            assert f"baseline .losstrend/default.json: {tests} tests added" in out, out
        seeds += pair
        doc = json.loads((pytester.path / ".losstrend" / "default.json").read_text())
        assert len(doc["tests"]) == tests
        kept = {k: [run["seed"] for run in v["runs"]] for k, v in doc["tests"].items()}
        assert all(s == seeds for s in kept.values()), f"round {r}: {kept}"
    assert sorted(p.name for p in (pytester.path / ".losstrend").iterdir()) == [
        "default.json", "default.json.lock"]

"""Curve baselines: save, compare, gate, update, and the damaged-file and missing paths.

The inner suites train a real linear model with mini-batch SGD (``lt_helpers.train``); a
"model change" is a learning rate ten times lower, which halves what the run learns in its
steps. The learning rate is read from a file, so one suite serves both sides of a gate.
"""

from __future__ import annotations

import json
import math

import jsonschema
import pytest

import pytest_losstrend.diagnosis.rules

# Imported before pytester snapshots the modules: numpy cannot be loaded twice in one process.
import pytest_losstrend.reports.baseline
import pytest_losstrend.reports.report
import pytest_losstrend.runner  # noqa: F401
from pytest_losstrend.reports.baseline import (
    BaselineError,
    auc,
    baseline_key,
    compare_series,
    final_level,
    parse_gates,
    steps_to,
)
from pytest_losstrend.reports.report import SCHEMA_PATH

SUITE = """
from pathlib import Path

import pytest
from lt_helpers import train

def lr():
    return float(Path("lr.txt").read_text())

@pytest.mark.loss_decreases
def test_fit(losstrend):
    train(losstrend, steps=80, lr=lr(), batch=16)

@pytest.mark.loss_decreases
def test_fit_full_batch(losstrend):
    train(losstrend, steps=60, lr=lr())
"""

GATE = "--losstrend-compare-fail=final:10%,auc:10%,steps_to:1.0:20%"


@pytest.fixture
def suite(lt_pytester: pytest.Pytester) -> pytest.Pytester:
    lt_pytester.makepyfile(test_models=SUITE)
    (lt_pytester.path / "lr.txt").write_text("0.05")
    return lt_pytester


def baseline(p: pytest.Pytester, name: str = "default") -> dict:
    return json.loads((p.path / ".losstrend" / f"{name}.json").read_text())


def save_seeds(p: pytest.Pytester, seeds: range, *args: str) -> None:
    for seed in seeds:
        p.runpytest_inprocess("--losstrend-save", f"--losstrend-seed={seed}", *args
                              ).assert_outcomes(passed=2)


def test_save_builds_a_multi_seed_baseline(suite: pytest.Pytester) -> None:
    save_seeds(suite, range(3))
    doc = baseline(suite)
    assert doc["schema"] == "losstrend-baseline/1"
    env = doc["environment"]
    import torch

    assert env["frameworks"]["torch"] == torch.__version__
    assert env["device"] == "cpu" and env["python"].count(".") == 2
    runs = doc["tests"]["test_models.py::test_fit"]["runs"]
    assert [r["seed"] for r in runs] == [0, 1, 2]
    assert len(runs[0]["series"]["train"]) == 80 and runs[0]["framework"] == "torch"
    # Different seeds, different mini-batches: three different curves.
    assert runs[0]["series"]["train"] != runs[1]["series"]["train"]


def test_compare_clean_passes_and_reports_the_figures(suite: pytest.Pytester) -> None:
    save_seeds(suite, range(3))
    result = suite.runpytest_inprocess(GATE, "--losstrend-seed=7", "--losstrend-report=json:r.json")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["losstrend: comparing with .losstrend/default.json (2 tests, 6 "
                                 "runs; final:10%,auc:10%,steps_to:1:20%)"])
    result.stdout.fnmatch_lines(["*compared with .losstrend/default.json (gate final:10%,auc:10%,"
                                 "steps_to:1:20%): 2 ok*"])
    result.stdout.no_fnmatch_line("*fewer than 3 saved seeds*")
    doc = json.loads((suite.path / "r.json").read_text())
    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))
    comp = doc["tests"][0]["baseline"]
    assert comp["status"] == "ok" and comp["gated"] is True and comp["seeds"] == [0, 1, 2]
    assert {r["metric"] for r in comp["rows"]} == {"final", "auc", "steps_to"}
    assert all(r["runs"] == 3 and r["value"] <= r["limit"] for r in comp["rows"])


def test_a_regression_fails_the_test_naming_file_and_figures(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")  # the table keeps its 'why' column
    save_seeds(suite, range(3))
    (suite.path / "lr.txt").write_text("0.005")
    result = suite.runpytest_inprocess(GATE, "--losstrend-report=json:r.json",
                                       "--losstrend-report=md:s.md", "--losstrend-report",
                                       "--losstrend-report=html:r.html")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=2)
    # The tables say what failed the test: the gate, not the curve's own verdict.
    result.stdout.fnmatch_lines(
        ["test_models.py::test_fit *train *80 *REGRESSED *FAILED *baseline final,auc*"])
    md = (suite.path / "s.md").read_text()
    assert "| REGRESSED | FAILED | baseline " in md
    assert "### Baseline\n\nCompared with `default` (gated): 2 regressed." in md
    assert "| `test_models.py::test_fit` | train | final:10% | **" in md
    page = (suite.path / "r.html").read_text()
    assert page.count("<h3>Baseline <code>default</code> (gated): regressed</h3>") == 2
    # The card's header badge is pytest's outcome; the gate's verdict is in its facts line.
    assert page.count('<span>verdict <span class="badge fail">REGRESSED</span></span>') == 2
    # Each chart shades the band of the baseline's runs behind the current curve.
    assert page.count('<polygon class="band"') == 2
    band = json.loads((suite.path / "r.json").read_text())["tests"][0]["baseline"]
    doc_band = band["envelope"]["train"]
    assert len(doc_band["steps"]) == 80 and all(
        lo <= hi for lo, hi in zip(doc_band["lo"], doc_band["hi"], strict=True))
    result.stdout.fnmatch_lines([
        "losstrend: regressed against baseline .losstrend/default.json, seeds 0, 1, 2:",
        "  train final loss: * vs baseline *-* (3 runs): *% above the band; limit * "
        "(final:10%): REGRESSED",
    ])
    doc = json.loads((suite.path / "r.json").read_text())
    rows = doc["tests"][0]["baseline"]["rows"]
    final = next(r for r in rows if r["metric"] == "final")
    assert final["regressed"] and final["value"] > 1.5 * final["band"][1]


def test_a_baseline_from_another_set_up_is_noted(suite: pytest.Pytester) -> None:
    save_seeds(suite, range(1))
    path = suite.path / ".losstrend" / "default.json"
    doc = json.loads(path.read_text())
    doc["environment"]["frameworks"]["torch"] = "1.13.1"
    doc["environment"]["python"] = "3.9.0"
    path.write_text(json.dumps(doc))
    result = suite.runpytest_inprocess("--losstrend-compare")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["  the baseline was saved on another set-up (python 3.9.0 -> 3.*, "
                                 "torch 1.13.1 -> *): compared all the same*"])


def test_compare_without_a_gate_shows_but_never_fails(suite: pytest.Pytester) -> None:
    save_seeds(suite, range(1))
    (suite.path / "lr.txt").write_text("0.005")
    result = suite.runpytest_inprocess("--losstrend-compare")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        "compared with .losstrend/default.json (shown with final:10%,auc:10%, not gated): "
        "2 regressed",
        "  test_models.py::test_fit: train final loss: *REGRESSED",
    ])
    # One saved seed: the run is told its band cannot know the spread between seeds.
    result.stdout.fnmatch_lines(["  2 tests compared with fewer than 3 saved seeds: *"])


def test_missing_baselines_are_reported_not_crashed_on(suite: pytest.Pytester) -> None:
    result = suite.runpytest_inprocess(GATE, "--losstrend-report=md:s.md")
    result.assert_outcomes(passed=2)
    assert "**No baseline file** `" in (suite.path / "s.md").read_text()
    result.stdout.fnmatch_lines(["no baseline file .losstrend/default.json: nothing compared "
                                 "(save one with --losstrend-save=default)"])
    # A test added after the baseline was saved: compared as missing, the others as usual.
    suite.runpytest_inprocess("--losstrend-save", "-k", "full_batch").assert_outcomes(passed=1)
    result = suite.runpytest_inprocess(GATE, "--losstrend-report=json:r.json")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*: 1 ok, 1 missing", "  test_models.py::test_fit: no baseline"])
    doc = json.loads((suite.path / "r.json").read_text())
    status = {t["nodeid"]: t["baseline"]["status"] for t in doc["tests"]}
    assert status == {"test_models.py::test_fit": "missing",
                      "test_models.py::test_fit_full_batch": "ok"}


@pytest.mark.parametrize("content, why", [
    ('{"schema": "losstrend-baseline/1", "tests": ', "is not valid JSON"),
    ('{"schema": "pytest-benchmark/3", "tests": {}}', "is not a pytest-losstrend baseline"),
    ('[1, 2, 3]', "is not a pytest-losstrend baseline"),
    ('{"schema": "losstrend-baseline/1", "tests": {"t": {"runs": 3}}}', "is damaged"),
])
@pytest.mark.parametrize("option", ["--losstrend-compare=main", "--losstrend-save=main",
                                    "--losstrend-update"])
def test_a_damaged_or_foreign_file_is_an_error_and_left_untouched(
    suite: pytest.Pytester, content: str, why: str, option: str
) -> None:
    name = "default" if option == "--losstrend-update" else "main"
    path = suite.path / ".losstrend" / f"{name}.json"
    path.parent.mkdir()
    path.write_text(content)
    result = suite.runpytest_inprocess(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: losstrend: *{path}*{why}*left untouched*"])
    assert path.read_text() == content
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind


def test_a_saved_run_is_replaced_only_with_update(suite: pytest.Pytester) -> None:
    save_seeds(suite, range(1))
    path = suite.path / ".losstrend" / "default.json"
    before = path.read_text()
    (suite.path / "lr.txt").write_text("0.005")
    result = suite.runpytest_inprocess("--losstrend-save")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["baseline .losstrend/default.json: 2 tests already saved for "
                                 "this seed, not overwritten (add --losstrend-update *"])
    assert path.read_text() == before
    # --losstrend-update alone saves (under the default name), replacing seed 0's runs.
    result = suite.runpytest_inprocess("--losstrend-update")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["baseline .losstrend/default.json: 2 tests replaced"])
    runs = baseline(suite)["tests"]["test_models.py::test_fit"]["runs"]
    assert len(runs) == 1 and runs[0]["seed"] == 0
    assert final_level(runs[0]["series"]["train"]) > 1.5 * final_level(
        json.loads(before)["tests"]["test_models.py::test_fit"]["runs"][0]["series"]["train"])


def test_only_passing_marked_tests_are_saved(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(test_mixed="""
        import pytest
        from lt_helpers import train, diverge

        @pytest.mark.loss_decreases(seeds=3)
        def test_good(losstrend):
            train(losstrend, steps=60, batch=16)

        @pytest.mark.loss_decreases
        def test_diverges(losstrend):
            diverge(losstrend)

        @pytest.mark.loss_fails
        def test_known_bad(losstrend):
            diverge(losstrend)

        def test_unmarked(losstrend):
            train(losstrend, steps=20)
    """)
    result = lt_pytester.runpytest_inprocess("--losstrend-save=ref")
    result.assert_outcomes(passed=4, failed=1, xfailed=1)
    result.stdout.fnmatch_lines(["baseline .losstrend/ref.json: 3 tests added",
                                 "not saved (the test did not pass): test_mixed.py::test_diverges"])
    tests = baseline(lt_pytester, "ref")["tests"]
    # The seeds=3 parametrisations are one test with three runs.
    assert list(tests) == ["test_mixed.py::test_good"]
    assert [r["seed"] for r in tests["test_mixed.py::test_good"]["runs"]] == [0, 1, 2]


def test_an_interrupted_run_saves_nothing(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(test_stop="""
        import pytest
        from lt_helpers import train

        @pytest.mark.loss_decreases
        def test_a(losstrend):
            train(losstrend, steps=40)

        def test_b():
            raise KeyboardInterrupt
    """)
    # In a subprocess: an interrupt inside an in-process run would reach this session too.
    result = lt_pytester.runpytest_subprocess("--losstrend-save")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["baseline */.losstrend/default.json not saved: the run was "
                                 "interrupted"])
    assert not (lt_pytester.path / ".losstrend").exists()


def test_ini_twins_and_baseline_dir(suite: pytest.Pytester) -> None:
    suite.makeini("""
        [pytest]
        losstrend_baseline_dir = ci/curves
        losstrend_save = nightly
    """)
    suite.runpytest_inprocess().assert_outcomes(passed=2)
    assert (suite.path / "ci" / "curves" / "nightly.json").is_file()
    suite.makeini("""
        [pytest]
        losstrend_baseline_dir = ci/curves
        losstrend_compare_fail = final:10%
        losstrend_compare = nightly
    """)
    (suite.path / "lr.txt").write_text("0.005")
    result = suite.runpytest_inprocess()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*compared with ci/curves/nightly.json (gate final:10%): "
                                 "2 regressed"])


@pytest.mark.parametrize("args, message", [
    (["--losstrend-compare-fail=final"], "'final': expected final:PCT"),
    (["--losstrend-compare-fail=loss:5%"], "unknown gate metric 'loss'"),
    (["--losstrend-compare-fail=steps_to:5%"], "expected steps_to:LEVEL:PCT"),
    (["--losstrend-compare-fail=auc:lots"], "tolerance must be a percentage"),
    (["--losstrend-save=../up"], "baseline name '../up' must be letters"),
])
def test_bad_options_are_usage_errors(
    suite: pytest.Pytester, args: list[str], message: str
) -> None:
    result = suite.runpytest_inprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_xdist_saves_and_gates_like_a_single_process(suite: pytest.Pytester) -> None:
    suite.runpytest_subprocess("--losstrend-save=one", "-p", "no:xdist").assert_outcomes(passed=2)
    suite.runpytest_subprocess("--losstrend-save=two", "-n", "2").assert_outcomes(passed=2)
    one, two = baseline(suite, "one"), baseline(suite, "two")
    # The workers' environment is recorded, not the controller's (which never imports torch).
    import torch

    assert two["environment"]["frameworks"]["torch"] == torch.__version__
    assert {k: v["runs"][0]["series"] for k, v in one["tests"].items()} == {
        k: v["runs"][0]["series"] for k, v in two["tests"].items()}
    (suite.path / "lr.txt").write_text("0.005")
    result = suite.runpytest_subprocess("-n", "2", "--losstrend-compare-fail=final:10%",
                                        "--losstrend-compare=two")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*regressed against baseline *.losstrend/two.json, seeds 0:"])


# --- the gate arithmetic, on plain curves -------------------------------------------------

def test_gate_expressions() -> None:
    gates = parse_gates("final:10%, auc:15 ,steps_to:0.5:20%")
    assert [(g.metric, g.tolerance, g.level) for g in gates] == [
        ("final", 0.1, None), ("auc", 0.15, None), ("steps_to", 0.2, 0.5)]
    assert [g.label for g in gates] == ["final:10%", "auc:15%", "steps_to:0.5:20%"]
    for bad in ["", "final:-1%", "steps_to:nan:5%", "auc:5%:1"]:
        with pytest.raises(BaselineError):
            parse_gates(bad)


@pytest.mark.parametrize("nodeid, key", [
    ("t.py::test", "t.py::test"),
    ("t.py::test[seed2]", "t.py::test"),
    ("t.py::test[adam-seed1]", "t.py::test[adam]"),
    ("t.py::test[seed1-adam]", "t.py::test[adam]"),
    ("t.py::test[seedless]", "t.py::test[seedless]"),
    ("t.py::C::test[x-seed10-y]", "t.py::C::test[x-y]"),
])
def test_runs_of_one_test_under_several_seeds_share_a_key(nodeid: str, key: str) -> None:
    assert baseline_key(nodeid) == key


def test_metrics() -> None:
    curve = [4.0, 2.0, 1.0, 0.5, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25]
    assert final_level(curve) == 0.25
    assert math.isclose(auc(curve), math.exp(sum(map(math.log, curve)) / 10))
    assert auc([1.0, -1.0]) == 0.0  # linear scale where a loss is not positive
    assert steps_to(curve, 1.0) == 3  # the running median of 3 reaches 1.0 at step 3
    assert steps_to(curve, 0.1) is None
    assert final_level(["nan"] * 3) == math.inf and auc([1.0, "inf"]) == math.inf


def test_the_band_is_widened_by_its_own_width_then_the_tolerance() -> None:
    gates = parse_gates("final:10%")
    runs = [[1.0] * 10, [1.2] * 10]
    (row,) = compare_series([1.4] * 10, runs, gates, "train")
    assert row["band"] == [1.0, 1.2] and math.isclose(row["limit"], 1.2 + 0.2 + 0.12)
    assert not row["regressed"]
    (row,) = compare_series([1.6] * 10, runs, gates, "train")
    assert row["regressed"]
    (row,) = compare_series(["nan"] * 10, runs, gates, "train")
    assert row["regressed"]
    # Lower is better: an improvement never fails.
    (row,) = compare_series([0.1] * 10, runs, gates, "train")
    assert not row["regressed"]

"""``--losstrend-mutate``: real torch training re-run under injected bugs, and the scores.

The inner tests train a small MLP on standardised diabetes through ``losstrend.fit``. A sound
test (a real drop and an absolute level) catches every built-in mutant; a weak one (any drop,
any bounce, inconclusive passes) lets most of them through.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pytest_losstrend.catalogue.fit  # imported before pytester's module snapshot
import pytest_losstrend.catalogue.mutate
from pytest_losstrend.catalogue.mutate import Mutation, builtin_mutations
from pytest_losstrend.reports.rows import score_line

INNER = '''
import numpy as np
import pytest
from torch import nn


def data():
    d = np.load("diabetes.npz")
    return d["x"], d["y"]


def model():
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 1))


@pytest.mark.loss_decreases(min_drop=0.4, below=0.7)
def test_sound(losstrend):
    losstrend.fit(model(), data(), loss="mse", optimizer=("adam", 1e-2), epochs=5)


# Weak on purpose: no drop required, any rebound allowed, no reference level (a run that
# learned nothing from its inputs passes).
@pytest.mark.loss_decreases(min_drop=0, tolerance=100, inconclusive="pass", reference=None)
def test_weak(losstrend):
    losstrend.fit(model(), data(), loss="mse", optimizer=("adam", 1e-2), epochs=5)


@pytest.mark.loss_decreases(min_drop=0.2)
def test_own_loop(losstrend):
    import torch

    m = model()
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    x, y = (torch.as_tensor(a) for a in data())
    for _ in range(40):
        opt.zero_grad()
        loss = nn.functional.mse_loss(m(x), y)
        loss.backward()
        opt.step()
        losstrend.record(loss)
'''

CUSTOM = '''
import numpy as np

from pytest_losstrend.catalogue.mutate import Mutation


def _targets_permuted(x, y, shuffle):
    return x, np.random.default_rng(0).permutation(np.asarray(y)), shuffle


def pytest_losstrend_mutations():
    return [Mutation("targets_permuted", "targets permuted", frameworks=("torch",),
                     on_data=_targets_permuted)]
'''


@pytest.fixture
def mut_pytester(lt_pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester holding the inner tests and standardised diabetes as ``diabetes.npz``."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)

    def standardize(a: np.ndarray) -> np.ndarray:
        out: np.ndarray = ((a - a.mean(0)) / a.std(0)).astype("float32")
        return out

    np.savez(lt_pytester.path / "diabetes.npz", x=standardize(x), y=standardize(y[:, None]))
    lt_pytester.makepyfile(test_inner=INNER)
    return lt_pytester


def _tests(path: Path) -> dict[str, dict[str, Any]]:
    import jsonschema

    from pytest_losstrend.reports.report import SCHEMA_PATH

    doc = json.loads(path.read_text())
    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))
    return {t["nodeid"].rsplit("::", 1)[-1]: t for t in doc["tests"]}


def test_sound_beats_weak_and_the_report_shows_both(mut_pytester: pytest.Pytester) -> None:
    result = mut_pytester.runpytest_inprocess(
        "--losstrend-mutate", "--losstrend-report", "--losstrend-report=json:r.json"
    )
    # The mutants never change the outcome without a threshold.
    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.OK
    names = [m.name for m in builtin_mutations()]
    result.stdout.fnmatch_lines([
        "*loss trends: 3 tests*",
        f"*test_inner.py::test_sound: mutation score {len(names)}/{len(names)} (100%)",
        "*test_inner.py::test_weak: mutation score */8 (*%): missed *lr_div1e4*",
    ])
    result.stdout.no_fnmatch_line("*test_own_loop: mutation score*")

    tests = _tests(mut_pytester.path / "r.json")
    sound, weak = tests["test_sound"], tests["test_weak"]
    assert [m["mutation"] for m in sound["mutants"]] == names
    assert all(m["mutant"] is True for m in sound["mutants"])
    # Mutant runs are real runs: each carries its own recorded losses.
    assert all(len(m["series"]["train"]) == 5 * 14 for m in sound["mutants"])
    assert sound["mutation_score"] == {"caught": 8, "applied": 8}
    assert weak["mutation_score"]["caught"] < sound["mutation_score"]["caught"]
    missed = {m["mutation"] for m in weak["mutants"] if not m["caught"]}
    assert {"lr_div1e4", "freeze_weights"} <= missed
    assert all(m["reason"] for m in weak["mutants"])
    # The test's own series is the unmutated run's.
    assert weak["series"]["train"]["losses"] == sound["series"]["train"]["losses"]
    # A test that trains with its own loop is not mutated.
    assert "mutants" not in tests["test_own_loop"]


def test_fail_under_fails_the_session_naming_the_test(mut_pytester: pytest.Pytester) -> None:
    result = mut_pytester.runpytest_inprocess(
        "--losstrend-mutate", "--losstrend-mutate-fail-under=100", "-k", "sound or weak"
    )
    result.assert_outcomes(passed=2, deselected=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*loss-trend mutation scores*",
        "losstrend: mutation score below 100% (--losstrend-mutate-fail-under): "
        "test_inner.py::test_weak",
    ])


def test_without_mutate_nothing_is_mutated(mut_pytester: pytest.Pytester) -> None:
    result = mut_pytester.runpytest_inprocess("--losstrend-report=json:r.json", "-k", "weak")
    result.assert_outcomes(passed=1, deselected=2)
    result.stdout.no_fnmatch_line("*mutation score*")
    assert "mutants" not in _tests(mut_pytester.path / "r.json")["test_weak"]


def test_a_conftest_adds_a_mutation_through_the_hook(mut_pytester: pytest.Pytester) -> None:
    mut_pytester.makeconftest(CUSTOM)
    mut_pytester.makeini("[pytest]\nlosstrend_mutate = true\n")
    result = mut_pytester.runpytest_inprocess("--losstrend-report=json:r.json", "-k", "sound")
    result.assert_outcomes(passed=1, deselected=2)
    result.stdout.fnmatch_lines(["*test_sound: mutation score 9/9 (100%)"])
    mutants = _tests(mut_pytester.path / "r.json")["test_sound"]["mutants"]
    custom = [m for m in mutants if m["mutation"] == "targets_permuted"]
    assert len(custom) == 1 and custom[0]["caught"] and custom[0]["mutant"]


@pytest.mark.parametrize("value", ["150", "-1", "lots"])
def test_fail_under_is_validated(pytester: pytest.Pytester, value: str) -> None:
    result = pytester.runpytest_inprocess(f"--losstrend-mutate-fail-under={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*percentage from 0 to 100*"])


def test_fail_under_ini_is_validated(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nlosstrend_mutate_fail_under = 101\n")
    result = pytester.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*losstrend_mutate_fail_under*percentage from 0 to 100*"])


def test_mutation_applies_and_score_line() -> None:
    m = Mutation("x", "y", frameworks=("torch",))
    assert m.applies("torch") and not m.applies("keras") and not m.applies(None)
    data = {
        "mutation_score": {"caught": 1, "applied": 2},
        "mutants": [{"mutation": "a", "caught": True}, {"mutation": "b", "caught": False}],
    }
    assert score_line(data) == "mutation score 1/2 (50%): missed b"
    assert score_line({}) is None
    mutate = pytest_losstrend.catalogue.mutate
    assert mutate.below(data, 60) and not mutate.below(data, 50)


def test_example_scores_sound_torch_and_keras_tests_fully(pytester: pytest.Pytester) -> None:
    """The example file's sound tests (torch and Keras) catch every mutant that applies; its
    weak test does not."""
    example = Path(__file__).resolve().parents[1] / "examples" / "test_fit_and_mutation.py"
    pytester.makepyfile(test_example=example.read_text())
    result = pytester.runpytest_subprocess("--losstrend-mutate", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines_random([
        "*test_keras_fit: mutation score 6/6 (100%)",
        "*test_sound: mutation score 8/8 (100%)",
        "*test_weak: mutation score */8 *: missed *",
    ])

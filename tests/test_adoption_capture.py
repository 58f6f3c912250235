"""What the adoption benchmark (``benchmarks/bench_adoption.py``, issue 12) found, fixed and kept
fixed: the marker alone on the test shapes people write.

- A parametrized marked test that does not name the ``losstrend`` fixture: pytest prunes the
  fixture closure of a parametrized function to the names it asks for, which dropped the
  fixture the marker added, so automatic capture never ran and the test failed with "nothing
  was recorded".
- A broken invariant is the root cause, and its diagnosis comes first: before, a test failed on
  ``params_not_in_optimizer`` with no diagnosis at all (the loss had fallen), and a run whose
  gradients were never cleared could lead with a symptom of the curve.
- A classifier stalled at the chance level ln(C) with no reference level is ``chance_level``
  (labels shuffled against their inputs), not a bare ``plateau``.

Real tiny torch loops on scikit-learn's digits and synthetic regression, run in one inner pytest
session with the JSON report.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pytest_losstrend import LossTrend

pytest.importorskip("sklearn.datasets")

INNER = '''
import pytest
import torch
from sklearn.datasets import load_digits

X, Y = load_digits(return_X_y=True)


def digits_run(steps=80, left_out=False, shuffled=False, zero_grad=True, lr=0.05, seed=0,
               smoothing=0.0):
    torch.manual_seed(seed)
    x = torch.tensor(X / 16.0, dtype=torch.float32)
    y = torch.tensor(Y)
    g = torch.Generator().manual_seed(seed)
    if shuffled:
        y = y[torch.randperm(len(y), generator=g)]
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 10))
    params = model[0].parameters() if left_out else model.parameters()
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
    for _ in range(steps):
        idx = torch.randint(len(x), (64,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx],
                                               label_smoothing=smoothing)
        if zero_grad:
            opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.loss_decreases
@pytest.mark.parametrize("seed", [0, 1])
def test_parametrized_marker_alone(seed):
    digits_run(seed=seed)


@pytest.mark.loss_decreases(seeds=2)
def test_seeds_marker_alone():
    digits_run()


@pytest.mark.loss_decreases
@pytest.mark.parametrize("fault", ["left_out"])
def test_left_out(fault):
    digits_run(left_out=True)


@pytest.mark.loss_decreases
def test_never_zeroed():
    digits_run(zero_grad=False)


@pytest.mark.loss_decreases
@pytest.mark.parametrize("seed", [0, 1])
def test_shuffled(seed):
    digits_run(shuffled=True, seed=seed)


# Label smoothing leaves the captured loss without a reference level: the ln(C) path.
@pytest.mark.loss_decreases
@pytest.mark.parametrize("seed", [0, 1])
def test_shuffled_smoothed(seed):
    digits_run(shuffled=True, seed=seed, smoothing=0.05)
'''


@pytest.fixture(scope="module")
def inner(torch_module: ModuleType,
          inner_session: Callable[[str, str], dict[str, Any]]) -> dict[str, Any]:
    """One inner session of the cases above: nodeid (without the file) -> JSON test record."""
    return inner_session("adoption", INNER)


@pytest.mark.parametrize("case", ["test_parametrized_marker_alone[0]",
                                  "test_parametrized_marker_alone[1]",
                                  "test_seeds_marker_alone[seed0]",
                                  "test_seeds_marker_alone[seed1]"])
def test_parametrized_marked_test_is_captured_without_the_fixture(
        inner: dict[str, Any], case: str) -> None:
    test = inner[case]
    assert test["outcome"] == "passed", test["verdict"]
    assert len(test["series"]["train"]["losses"]) == 80  # one point per optimizer step


def test_broken_invariant_leads_the_diagnoses_though_the_loss_fell(
        inner: dict[str, Any]) -> None:
    test = inner["test_left_out[left_out]"]
    assert test["outcome"] == "failed"
    assert test["verdict_ok"] is True  # the loss fell: before, no diagnosis at all
    top = test["diagnoses"][0]
    assert top["cause"] == "no_learning"
    assert top["confidence"] == 1.0
    assert top["evidence"].startswith("params_not_in_optimizer: ")
    assert "2.weight" in top["evidence"]
    assert "model.parameters()" in top["fix"]


def test_stale_gradients_lead_the_curves_symptoms(inner: dict[str, Any]) -> None:
    test = inner["test_never_zeroed"]
    assert test["outcome"] == "failed"
    causes = [d["cause"] for d in test["diagnoses"]]
    assert causes[0] == "stale_gradients"
    assert causes.count("stale_gradients") == 1


@pytest.mark.parametrize("seed", [0, 1])
def test_shuffled_labels_stall_at_chance_level(inner: dict[str, Any], seed: int) -> None:
    """The captured cross-entropy has its reference level (the label frequencies' entropy):
    the verdict itself is chance_level."""
    test = inner[f"test_shuffled[{seed}]"]
    assert test["outcome"] == "failed"
    assert test["series"]["train"]["reference"]["value"] > 2.2
    top = test["diagnoses"][0]
    assert top["cause"] == "chance_level"
    assert "reference level" in top["evidence"]


@pytest.mark.parametrize("seed", [0, 1])
def test_shuffled_labels_without_reference_stall_at_ln_c(inner: dict[str, Any],
                                                         seed: int) -> None:
    """Without a reference level (label smoothing), the stall at ln(C) of the 10-wide output
    is still chance_level, not a bare plateau."""
    test = inner[f"test_shuffled_smoothed[{seed}]"]
    assert test["outcome"] == "failed"
    assert "reference" not in test["series"]["train"]
    top = test["diagnoses"][0]
    assert top["cause"] == "chance_level"
    assert "ln(10)" in top["evidence"]


def test_chance_level_needs_the_loss_at_chance(torch_module: ModuleType) -> None:
    """A classifier that learns its labels is never called chance_level, even when it stalls
    early (a plateau below ln(C))."""
    torch = torch_module
    from sklearn.datasets import load_digits

    x_np, y_np = load_digits(return_X_y=True)
    x = torch.tensor(x_np / 16.0, dtype=torch.float32)
    y = torch.tensor(y_np)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    lt = LossTrend()
    lt.watch(model, opt, loss_fn=torch.nn.CrossEntropyLoss(), batch=(x[:64], y[:64]))
    for step in range(120):
        # Learns for 40 steps, then the learning rate is 0: a stall well below ln(10).
        if step == 40:
            for group in opt.param_groups:
                group["lr"] = 0.0
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        lt.record(loss)
    verdict = lt.check(min_drop=0.1, reference=None, warmup=60)
    assert not verdict.ok
    assert "chance_level" not in [d.cause for d in verdict.diagnoses]


def test_adoption_files_are_not_collected_by_the_suite() -> None:
    """The benchmark's ``test_*.py`` files run only under ``bench_adoption.py``."""
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k != "ADOPTION_MODE"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "benchmarks/adoption"],
        cwd=root, capture_output=True, text=True, timeout=300, check=False, env=env)
    assert "no tests collected" in proc.stdout or "no tests ran" in proc.stdout, proc.stdout


def test_zero_gradients_from_a_blow_up_rank_below_the_learning_rate() -> None:
    """ReLUs a 100x learning rate killed have exactly zero gradients: the ``zero_gradients``
    invariant still fails the test, but in a run that rose ``lr_too_high`` is named first;
    ``stale_gradients`` stays first whatever the curve did (the benchmark's Keras and manual
    runs, as plain data)."""
    from pytest_losstrend.diagnosis.invariants import InvariantResult, invariant_diagnoses
    from pytest_losstrend.diagnosis.ranking import leading
    from pytest_losstrend.verdict.result import Diagnosis, Verdict

    rose = Verdict("fail", "rose overall", "rise", stats={"start": 2.3, "end": 7.8},
                   diagnoses=(Diagnosis("lr_too_high", 0.85, "lr past the limit", "lower it"),
                              Diagnosis("dead_units", 0.92, "90% dead", "...")))
    zero = InvariantResult("zero_gradients", False, "1 module(s) had exactly zero gradients")
    stale = InvariantResult("stale_gradients", False, "carried over at 12 of 12")
    causes = [d.cause for d in leading(rose, invariant_diagnoses([zero])).diagnoses]
    assert causes[0] == "lr_too_high"
    assert set(causes[1:]) == {"no_learning", "dead_units"}
    causes = [d.cause for d in leading(rose, invariant_diagnoses([zero, stale])).diagnoses]
    assert causes[:2] == ["stale_gradients", "lr_too_high"]
    # A stall is no blow-up: the zero-gradient module keeps its rank.
    stall = Verdict("fail", "stalled", "stall", stats={"start": 2.3, "end": 2.29},
                    diagnoses=(Diagnosis("plateau", 0.5, "flat", "..."),))
    assert leading(stall, invariant_diagnoses([zero])).diagnoses[0].cause == "no_learning"

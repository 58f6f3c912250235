"""``stale_gradients`` in a manual SGD loop (no optimizer object) under the marker alone: read
from the gradients themselves at sampled ``backward()`` calls (issue 12, item 2).

Before, such a loop that never cleared its gradients was ``lr_too_high`` (its curve swings) or
passed with a small learning rate. Every clearing form counts as cleared; accumulating 4
backward passes per update, and a parameter that is never updated, are not stale.

Real tiny torch loops on scikit-learn's diabetes data, run in one inner pytest session with the
JSON report; the invariant's thresholds and wording on plain evidence.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("sklearn.datasets")

INNER = '''
import pytest
import torch
from sklearn.datasets import load_diabetes

XN, YN = load_diabetes(return_X_y=True)
X = torch.tensor((XN - XN.mean(0)) / XN.std(0), dtype=torch.float32)
Y = torch.tensor((YN - YN.mean()) / YN.std(), dtype=torch.float32).unsqueeze(1)


def sgd(clear="none", lr=0.05, steps=120, accum=1, phase=0, update_b=True):
    w = torch.zeros(10, 1, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    for step in range(steps):
        loss = ((X @ w + b - Y) ** 2).mean()
        loss.backward()
        if (step + phase) % accum:
            continue  # accumulate: no update, no clearing
        with torch.no_grad():
            w -= lr * w.grad
            if update_b:
                b -= lr * b.grad
        if clear == "set_none":
            w.grad = None
            b.grad = None
        elif clear == "zero_":
            w.grad.zero_()
            b.grad.zero_()
        elif clear == "detach_zero":
            w.grad.detach_().zero_()
            b.grad.detach_().zero_()
        elif clear == "w_only":
            w.grad = None


def module_sgd(clear, steps=120):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.Tanh(),
                                torch.nn.Linear(16, 1))
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(model(X), Y)
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.05 * p.grad
        if clear:
            model.zero_grad()


@pytest.mark.loss_decreases
@pytest.mark.parametrize("lr", [0.05, 0.002])
def test_missing(lr):
    sgd(lr=lr)


@pytest.mark.loss_decreases
def test_module_missing():
    module_sgd(clear=False)


@pytest.mark.loss_decreases
@pytest.mark.parametrize("clear", ["set_none", "zero_", "detach_zero"])
def test_cleared(clear):
    sgd(clear=clear)


@pytest.mark.loss_decreases
def test_module_zero_grad():
    module_sgd(clear=True)


@pytest.mark.loss_decreases
@pytest.mark.parametrize("phase", [0, 1])
def test_accumulation(phase):
    sgd(clear="zero_", accum=4, phase=phase, steps=400)


# b is never updated (frozen by hand): its gradient piles up, but nothing applies it.
@pytest.mark.loss_decreases
def test_b_never_updated():
    sgd(clear="w_only", update_b=False)


@pytest.mark.loss_decreases
def test_never_updated():
    sgd(lr=0.0)
'''


@pytest.fixture(scope="module")
def inner(torch_module: ModuleType,
          inner_session: Callable[[str, str], dict[str, Any]]) -> dict[str, Any]:
    """One inner session of the cases above: nodeid (without the file) -> JSON test record."""
    return inner_session("manual_stale", INNER)


def _stale(test: dict[str, Any]) -> dict[str, Any] | None:
    return next((i for i in test.get("invariants", []) if i["name"] == "stale_gradients"), None)


@pytest.mark.parametrize("case", ["test_missing[0.05]", "test_missing[0.002]"])
def test_missing_clearing_fails_as_stale_gradients(inner: dict[str, Any], case: str) -> None:
    """lr 0.05 swings (it was lr_too_high); lr 0.002 falls (it passed): both are the same bug."""
    test = inner[case]
    assert test["outcome"] == "failed"
    top = test["diagnoses"][0]
    assert top["cause"] == "stale_gradients"
    assert top["confidence"] == 1.0
    assert "w.grad" in top["evidence"] and "b.grad" in top["evidence"]
    # Checked at backward calls 3, 4, 11, 18... 109: 17 of them, each after an update.
    assert "carried over after the update on 17 of 17 sampled steps" in top["evidence"]
    assert "clear the gradients after each update" in top["fix"]
    assert [d["cause"] for d in test["diagnoses"]].count("stale_gradients") == 1
    stale = _stale(test)
    assert stale is not None and stale["held"] is False
    assert test["evidence"]["manual_backward"] == 120


def test_missing_clearing_of_a_module_names_its_parameters(inner: dict[str, Any]) -> None:
    test = inner["test_module_missing"]
    assert test["outcome"] == "failed"
    top = test["diagnoses"][0]
    assert top["cause"] == "stale_gradients"
    assert "model.0.weight.grad" in top["evidence"]


@pytest.mark.parametrize("case", ["test_cleared[set_none]", "test_cleared[zero_]",
                                  "test_cleared[detach_zero]", "test_module_zero_grad",
                                  "test_accumulation[0]", "test_accumulation[1]",
                                  "test_b_never_updated"])
def test_cleared_gradients_hold_the_invariant(inner: dict[str, Any], case: str) -> None:
    test = inner[case]
    assert test["outcome"] == "passed", test["diagnoses"]
    stale = _stale(test)
    assert stale is not None, test.get("invariants")
    assert stale["held"] is True
    assert "gradients cleared after the update on" in stale["evidence"]
    checks = test["evidence"]["manual_checks"]
    # Accumulation: only the checks that straddle an update count, at both phases.
    assert checks >= (5 if case.startswith("test_accumulation") else 10)
    assert test["evidence"]["manual_stale"] == 0


def test_never_updated_parameters_are_not_stale(inner: dict[str, Any]) -> None:
    """Gradients pile up, but the parameters never change: nothing to check."""
    test = inner["test_never_updated"]
    assert test["evidence"]["manual_checks"] == 0
    assert _stale(test) is None
    assert "stale_gradients" not in [d["cause"] for d in test["diagnoses"]]


def _manual(checks: int, stale: int, *, steps: int = 0) -> Any:
    from pytest_losstrend.diagnosis.evidence import Evidence

    grads = {"w.grad": stale, "b.grad": stale} if stale else {}
    return Evidence(framework="torch", optimizer_steps=steps, manual_backward=200,
                    manual_checks=checks, manual_stale=stale, manual_stale_grads=grads)


def test_the_invariant_on_plain_evidence() -> None:
    """Carried over on most checks breaks it, with its own fix; half or fewer holds; fewer
    than 2 checks is unchecked; an optimizer that stepped leaves it to the optimizer probes;
    allowing it keeps the fix."""
    from pytest_losstrend.diagnosis.invariants import check_invariants, invariant_diagnoses

    check = check_invariants(_manual(9, 9), [1.0, 0.5])
    [broken] = check.failing
    assert broken.name == "stale_gradients"
    assert broken.evidence.startswith(
        "w.grad, b.grad carried over after the update on 9 of 9 sampled steps "
        "(a loop with no optimizer, 200 backward passes): never cleared")
    [diag] = invariant_diagnoses(check.failing)
    assert (diag.cause, diag.confidence) == ("stale_gradients", 1.0)
    assert diag.fix.startswith("clear the gradients after each update")
    assert "not always cleared" in check_invariants(_manual(9, 5), []).failing[0].evidence
    held = check_invariants(_manual(9, 4), []).results
    assert [r.held for r in held if r.name == "stale_gradients"] == [True]
    assert "stale_gradients" in check_invariants(_manual(1, 1), []).unchecked
    # An optimizer stepped: the manual counts are not this run's evidence.
    assert "stale_gradients" in check_invariants(_manual(9, 9, steps=5), []).unchecked
    allowed = check_invariants(_manual(9, 9), [], allow=("stale_gradients",))
    assert not allowed.failing and allowed.broken[0].allowed
    assert allowed.broken[0].fix.startswith("clear the gradients after each update")


def test_invariants_it_cannot_check_are_listed_with_why(inner: dict[str, Any]) -> None:
    """A loop with no optimizer cannot show parameters left out of one: the report lists that
    invariant as not checked, with why, instead of leaving it out (which reads as held), and
    the HTML report shows it in the invariants table."""
    from pytest_losstrend.reports.html import html_report

    test = inner["test_cleared[set_none]"]
    unchecked = test["invariants_unchecked"]
    assert unchecked["params_not_in_optimizer"] == "not checked: no optimizer was watched"
    checked = {i["name"] for i in test["invariants"]}
    assert not checked & set(unchecked)
    doc: Any = {"schema": "losstrend-report-1", "tests": [test]}
    html = html_report(doc)
    assert "not checked</span></td><td>no optimizer was watched</td>" in html

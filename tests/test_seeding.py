"""The seed a test reports is the seed its body ran under, whatever other plugins reseed."""

from __future__ import annotations

import json

import pytest

INNER = """
import random

import numpy as np
import pytest
import torch
from torch.nn.functional import mse_loss


@pytest.fixture
def model():
    # Built before the losstrend fixture in argument order: it must still draw from the
    # seeded generators.
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


@pytest.mark.loss_decreases
def test_trains(model, losstrend):
    x = torch.tensor(np.random.randn(256, 4), dtype=torch.float32)
    y = x.sum(1, keepdim=True) + 0.1 * torch.randn(256, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(40):
        idx = random.sample(range(256), 16)      # python's generator picks the batch
        opt.zero_grad()
        loss = mse_loss(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        losstrend.record(loss)
"""


def _curve(pytester: pytest.Pytester, *args: str) -> list[float]:
    out = pytester.path / "r.json"
    result = pytester.runpytest_inprocess(f"--losstrend-report=json:{out}", *args)
    result.assert_outcomes(passed=1)
    (test,) = json.loads(out.read_text())["tests"]
    losses: list[float] = test["series"]["train"]["losses"]
    return losses


def test_seed_survives_pytest_randomly(lt_pytester: pytest.Pytester) -> None:
    """pytest-randomly reseeds python and numpy at setup and again right before the body with
    its own seed; the curve must follow --losstrend-seed alone, bit for bit."""
    pytest.importorskip("pytest_randomly")
    lt_pytester.makepyfile(test_inner=INNER)
    plain = _curve(lt_pytester, "-p", "no:randomly", "--losstrend-seed=4")
    first = _curve(lt_pytester, "-p", "randomly", "--randomly-seed=1", "--losstrend-seed=4")
    second = _curve(lt_pytester, "-p", "randomly", "--randomly-seed=2", "--losstrend-seed=4")
    assert first == plain
    assert second == plain
    other = _curve(lt_pytester, "-p", "randomly", "--randomly-seed=1", "--losstrend-seed=5")
    assert other != plain, "another --losstrend-seed must give another curve"


def test_printed_rerun_line_reproduces_the_curve_under_randomly(
    lt_pytester: pytest.Pytester,
) -> None:
    """The 'rerun:' line of a failure, run again with another --randomly-seed, gives the same
    curve bit for bit."""
    pytest.importorskip("pytest_randomly")
    lt_pytester.makepyfile(test_inner=INNER.replace("loss_decreases", "loss_decreases(below=1e-9)"))
    out = lt_pytester.path / "a.json"
    result = lt_pytester.runpytest_inprocess("-p", "randomly", "--randomly-seed=11",
                                             "--losstrend-seed=7", f"--losstrend-report=json:{out}")
    result.assert_outcomes(failed=1)
    line = next(ln for ln in result.outlines if "rerun: pytest" in ln)
    seed_opt = line.split("' ", 1)[1].rstrip(")")
    assert seed_opt == "--losstrend-seed=7"
    again = lt_pytester.path / "b.json"
    rerun = lt_pytester.runpytest_inprocess("-p", "randomly", "--randomly-seed=99", seed_opt,
                                            f"--losstrend-report=json:{again}")
    rerun.assert_outcomes(failed=1)
    a = json.loads(out.read_text())["tests"][0]["series"]["train"]["losses"]
    b = json.loads(again.read_text())["tests"][0]["series"]["train"]["losses"]
    assert a == b

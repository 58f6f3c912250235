"""The ``losstrend`` fixture in this very suite, on real torch training of scikit-learn data.

The marked tests here are judged by the plugin itself; the unmarked ones judge explicitly with
``check`` and ``assert_decreases``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch.nn.functional import binary_cross_entropy_with_logits, mse_loss

from pytest_losstrend import LossTrend, Verdict

Data = tuple[torch.Tensor, torch.Tensor]


def _standardize(a: np.ndarray) -> torch.Tensor:
    """Columns scaled to zero mean and unit variance, as float32."""
    return torch.as_tensor((a - a.mean(0)) / a.std(0), dtype=torch.float32)


@pytest.fixture(scope="module")
def breast_cancer() -> Data:
    """569 x 30 standardized features and 0/1 labels."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    return _standardize(x), torch.as_tensor(y, dtype=torch.float32)[:, None]


@pytest.fixture(scope="module")
def diabetes() -> Data:
    """442 x 10 standardized features and a standardized target."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    return _standardize(x), _standardize(y[:, None])


def _classify(
    losstrend: LossTrend,
    data: Data,
    steps: int = 60,
    batch: int | None = 64,
    frozen: bool = False,
) -> None:
    """Logistic regression with Adam (lr 0.01) on random minibatches (``batch=None``: the
    full batch), recording each step's loss. ``frozen``: the optimizer gets none of the
    model's parameters."""
    x, y = data
    model = torch.nn.Linear(x.shape[1], 1)
    params = [torch.nn.Parameter(torch.zeros(1))] if frozen else model.parameters()
    opt = torch.optim.Adam(params, lr=0.01)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,)) if batch else slice(None)
        opt.zero_grad()
        loss = binary_cross_entropy_with_logits(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        losstrend.record(loss)


def _regress(losstrend: LossTrend, data: Data, epochs: int = 6) -> list[float]:
    """A small MLP on 80% of the rows with SGD on minibatches of 32; every 4 steps the loss
    on the held-out 20% is recorded as "eval". Returns the train losses."""
    x, y = data
    n_train = int(0.8 * len(x))
    model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.02)
    recorded = []
    for _ in range(epochs):
        perm = torch.randperm(n_train)
        for i in range(0, n_train, 32):
            idx = perm[i : i + 32]
            opt.zero_grad()
            loss = mse_loss(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            losstrend.record(loss)
            recorded.append(loss.item())
            if len(recorded) % 4 == 0:
                with torch.no_grad():
                    held_out = mse_loss(model(x[n_train:]), y[n_train:])
                losstrend.record(held_out, series="eval")
    return recorded


# -- judged by the plugin -----------------------------------------------------------------------


@pytest.mark.loss_decreases(min_drop=0.3, seeds=2)
def test_logistic_regression_learns(losstrend: LossTrend, breast_cancer: Data) -> None:
    _classify(losstrend, breast_cancer)


@pytest.mark.loss_decreases(series="eval", min_drop=0.2)
def test_mlp_generalizes(losstrend: LossTrend, diabetes: Data) -> None:
    _regress(losstrend, diabetes)


@pytest.mark.loss_fails
def test_frozen_model_is_caught(losstrend: LossTrend, breast_cancer: Data) -> None:
    _classify(losstrend, breast_cancer, batch=None, frozen=True)


@pytest.mark.loss_fails
def test_exploding_learning_rate_is_caught(losstrend: LossTrend) -> None:
    """Under a marker, record() stops the loop at the step the loss passes 1e4 x its start."""
    x = torch.rand(100, 1) * 10
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    done = []
    try:
        for step in range(200):
            opt.zero_grad()
            loss = mse_loss(model(x), 3 * x + 1)
            loss.backward()
            opt.step()
            losstrend.record(loss)
            done.append(step)
    finally:
        assert len(done) < 10
        assert losstrend.stopped is not None


# -- judged explicitly, without a marker --------------------------------------------------------


def test_check_without_marker(losstrend: LossTrend, breast_cancer: Data) -> None:
    _classify(losstrend, breast_cancer)
    verdict = losstrend.check()
    assert isinstance(verdict, Verdict)
    assert verdict.ok, verdict.reason
    assert verdict.kind == "decrease"
    assert losstrend.criteria.min_drop == 0.1  # the defaults, with no marker
    strict = losstrend.check(min_drop=0.99)
    assert not strict.ok
    assert losstrend.check(series="eval").kind == "empty"


def test_losses_without_marker(losstrend: LossTrend, diabetes: Data) -> None:
    recorded = _regress(losstrend, diabetes, epochs=2)
    assert losstrend.losses() == recorded
    assert len(recorded) == 24  # 353 training rows in batches of 32: 12 steps an epoch
    assert len(losstrend.losses("eval")) == 6
    assert losstrend.series_names == ["train", "eval"]
    assert losstrend.framework == "torch"
    assert losstrend.stopped is None


def test_assert_decreases_passes_and_returns_the_verdict(
    losstrend: LossTrend, breast_cancer: Data
) -> None:
    _classify(losstrend, breast_cancer)
    verdict = losstrend.assert_decreases(min_drop=0.3)
    assert verdict.ok


def test_assert_decreases_raises_with_the_message(
    losstrend: LossTrend, breast_cancer: Data
) -> None:
    _classify(losstrend, breast_cancer)
    with pytest.raises(AssertionError) as info:
        losstrend.assert_decreases(below=1e-6)
    message = str(info.value)
    assert message.startswith("assert_decreases FAILED on series 'train': end level ")
    assert "is above below=1e-06" in message
    assert "  figures:  start " in message
    assert "  curve:    " in message
    assert "  criteria: series=train min_drop=0.1 below=1e-06 " in message
    assert f"  seed:     {losstrend.seed} (rerun: pytest '{losstrend.nodeid}' " in message
    assert f"--losstrend-seed={losstrend.base_seed})" in message


def test_assert_decreases_on_a_frozen_run(losstrend: LossTrend, breast_cancer: Data) -> None:
    _classify(losstrend, breast_cancer, batch=None, frozen=True)
    with pytest.raises(AssertionError, match="FAILED on series 'train': frozen: all 60 losses"):
        losstrend.assert_decreases()


def test_assert_decreases_inconclusive_policies(
    losstrend: LossTrend, breast_cancer: Data
) -> None:
    _classify(losstrend, breast_cancer, steps=1)
    with pytest.raises(AssertionError, match="INCONCLUSIVE on series 'train'"):
        losstrend.assert_decreases(inconclusive="fail")
    assert losstrend.assert_decreases(inconclusive="pass").inconclusive
    with pytest.raises(pytest.skip.Exception, match="1 point after warmup"):
        losstrend.assert_decreases(inconclusive="skip")
    # The default is to skip.
    with pytest.raises(pytest.skip.Exception, match="one point cannot show a trend"):
        losstrend.assert_decreases()


def test_assert_decreases_with_nothing_recorded(losstrend: LossTrend) -> None:
    with pytest.raises(AssertionError, match="no loss was recorded in series 'train'"):
        losstrend.assert_decreases()


def test_unmarked_fixture_does_not_stop_on_nan(losstrend: LossTrend) -> None:
    losstrend.record(torch.tensor(1.0))
    losstrend.record(torch.tensor(float("nan")))
    losstrend.record(torch.tensor(0.5))
    assert losstrend.stopped is None
    assert losstrend.check().kind == "non_finite"


def test_bad_criteria_in_check_raise(losstrend: LossTrend) -> None:
    from pytest_losstrend import CriteriaError

    losstrend.record([1.0, 0.5])
    with pytest.raises(CriteriaError, match="unknown criterion 'min_dorp'"):
        losstrend.check(min_dorp=0.2)
    with pytest.raises(CriteriaError, match=r"min_drop=1\.5"):
        losstrend.assert_decreases(min_drop=1.5)


def test_fixture_seeds_every_generator(losstrend: LossTrend) -> None:
    seed = losstrend.seed
    assert seed is not None
    draws: list[Callable[[], float]] = [
        random.random,
        lambda: float(np.random.rand()),
        lambda: float(torch.rand(1)),
    ]
    expected = [
        random.Random(seed).random(),
        float(np.random.RandomState(seed).rand()),
        float(torch.rand(1, generator=torch.Generator().manual_seed(seed))),
    ]
    assert [draw() for draw in draws] == expected

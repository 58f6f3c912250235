"""Quick start: a real (tiny) training loop as a pytest test.

A test that trains for a few dozen steps and asserts ``loss[-1] < loss[0]`` is flaky: one
unlucky mini-batch at the end fails it, and a run that blew up and came back can still pass.
``@pytest.mark.loss_decreases`` judges the whole recorded curve instead, on medians of windows
and with a significance test for the downward trend, so mini-batch noise neither makes nor
breaks the test. The loop records its loss once per optimizer step with
``losstrend.record(loss)``; the verdict runs after the test body.

The model is a small MLP regressing sklearn's bundled diabetes data (10 standardised features,
a standardised target), trained with Adam on random mini-batches of 32 for 50 steps: it runs in
well under a second on one CPU thread.

* ``test_model_learns`` is the example from the README.
* ``test_model_learns_under_three_seeds`` adds ``seeds=3``: the test is collected three times
  (``[seed0]``, ``[seed1]``, ``[seed2]``), each run seeded differently, and every one must
  pass, so a model that learns only under a lucky initialisation is caught.
* ``test_held_out_loss_decreases`` also records a held-out ("eval") loss every 5 steps and
  judges that series (``series="eval"``) instead of the training loss.

The seed (python, numpy, torch) is set by the fixture before each test: 0 unless
``--losstrend-seed=N`` is given.
"""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn

from pytest_losstrend import LossTrend

torch.set_num_threads(1)


@pytest.mark.loss_decreases(min_drop=0.2)
def test_model_learns(losstrend: LossTrend) -> None:
    """The README example: 50 Adam steps on mini-batches of 32; the loss must fall by 20%."""
    x, y = load_diabetes(return_X_y=True)
    x = torch.tensor(StandardScaler().fit_transform(x), dtype=torch.float32)
    y = torch.tensor((y - y.mean()) / y.std(), dtype=torch.float32).unsqueeze(1)
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(50):
        idx = torch.randint(len(x), (32,))
        loss = nn.functional.mse_loss(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losstrend.record(loss)


def standardised_diabetes() -> tuple[torch.Tensor, torch.Tensor]:
    """The diabetes features and target, each standardised, as float32 tensors."""
    x, y = load_diabetes(return_X_y=True)
    xt = torch.tensor(StandardScaler().fit_transform(x), dtype=torch.float32)
    yt = torch.tensor((y - y.mean()) / y.std(), dtype=torch.float32).unsqueeze(1)
    return xt, yt


def mlp() -> nn.Module:
    """The quick start's model: 10 -> 16 -> 1."""
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 1))


@pytest.mark.loss_decreases(min_drop=0.2, seeds=3)
def test_model_learns_under_three_seeds(losstrend: LossTrend) -> None:
    """The same loop run under three seeds (three tests); each must pass on its own."""
    # A marker leaves the function as it is, so the README's test body can be reused.
    test_model_learns(losstrend)


EVAL_EVERY = 5


@pytest.mark.loss_decreases(series="eval")
def test_held_out_loss_decreases(losstrend: LossTrend) -> None:
    """Judge the held-out loss, not the training loss: 11 points, before training and every 5
    steps.

    The held-out loss of a quarter of the data is smooth (no mini-batch noise) but short: 11
    points. Two choices keep such a short series informative. It is recorded once *before*
    the first step, so the start level is the untrained model's. And the learning rate is half
    the quick start's (5e-3), so the descent spreads over the run instead of being over in
    the first three evaluations, after which a short series is mostly plateau. The training
    loss is recorded too ("train"); the report shows both, the judged one in capitals.
    """
    x, y = standardised_diabetes()
    x_train, x_eval, y_train, y_eval = train_test_split(x, y, test_size=0.25, random_state=0)
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)

    def record_eval() -> None:
        with torch.no_grad():
            losstrend.record(nn.functional.mse_loss(model(x_eval), y_eval), series="eval")

    record_eval()
    for step in range(1, 51):
        idx = torch.randint(len(x_train), (32,))
        loss = nn.functional.mse_loss(model(x_train[idx]), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losstrend.record(loss)
        if step % EVAL_EVERY == 0:
            record_eval()

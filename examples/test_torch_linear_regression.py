"""PyTorch: the "my linear regression loss increases" write-up, as regression tests.

The set-up is the textbook one: one feature drawn uniformly from [0, 10), a target
``y = 2x + 1 + noise``, a single ``nn.Linear(1, 1)``, mean squared error and plain SGD. The
write-up's loss grew instead of falling, in one case up to ``inf`` and ``nan``. Each bad
configuration below sits next to its fix, and each is a test:

* ``lr=1.0`` diverges. Gradient descent on a quadratic loss is stable only when the learning
  rate is below ``2 / λmax``, where ``λmax`` is the largest eigenvalue of the loss's Hessian.
  For the MSE of a line fit that Hessian is ``2·E[[x², x], [x, 1]]``; with x up to 10 its
  largest eigenvalue is about 68, so the limit is about 0.03. A step of 1.0 overshoots the
  minimum by a factor of about 67 on every step, so the loss grows about 4500-fold per step.
* ``lr=0.1``, the write-up's "divide the learning rate by 10", is still above 0.03: it diverges
  too, only a little more slowly. Dividing by 10 again (``lr=0.01``) fixes it, and so does
  standardising x (zero mean, unit variance), which brings ``λmax`` down to 2 and makes
  ``lr=0.1`` a perfectly good step.
* Features in the thousands (``x * 1000``) multiply the curvature by a million: a learning rate
  that is fine on standardised data blows up at once. Standardising the feature, as sklearn's
  ``StandardScaler`` does, fixes it without touching the learning rate.
* Mini-batches of 5 on data sorted by x, without shuffling: the write-up printed the loss of
  the *last batch* of each epoch and saw it creep up. The test records every optimizer step
  and the per-step series passes; its docstring explains why the last-batch printout misled.

The diverging runs are marked ``loss_fails``: pytest counts them as expected failures (xfailed)
because the loss check fails, so this suite stays green while keeping the failure on record
(run with ``--losstrend-report`` to see each verdict and its reason). Under a losstrend
marker a diverging loss stops the test at the step where it crosses the divergence bound, so
these tests cost a handful of steps.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pytest_losstrend import LossTrend

torch.set_num_threads(1)

N = 100  # samples
STEPS = 100  # full-batch gradient steps


def make_data(n: int = N, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The write-up's data: ``x`` uniform in [0, 10) (times ``scale``), ``y = 2x + 1 + noise``.

    Drawn from torch's global generator, which the losstrend fixture seeds before each test.
    """
    x = torch.rand(n, 1) * 10 * scale
    y = 2 * x + 1 + torch.randn(n, 1)
    return x, y


def standardise(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per feature, as sklearn's ``StandardScaler`` does."""
    return (x - x.mean(dim=0)) / x.std(dim=0, unbiased=False)


def lr_limit(mean_x2: float, mean_x: float) -> float:
    """``2 / λmax``: the largest stable full-batch learning rate for the MSE of a line fit.

    The MSE ``mean((w·x + b - y)²)`` is quadratic in ``(w, b)`` with Hessian
    ``2·[[E x², E x], [E x, 1]]``; gradient descent converges only for ``lr < 2 / λmax``.
    """
    hessian = 2.0 * np.array([[mean_x2, mean_x], [mean_x, 1.0]])
    return float(2.0 / np.linalg.eigvalsh(hessian).max())


def mse_lr_limit(x: torch.Tensor) -> float:
    """``2 / λmax`` on the sample ``x`` itself."""
    xs = x.double().numpy().ravel()
    return lr_limit(float(np.mean(xs * xs)), float(np.mean(xs)))


def fit_full_batch(
    losstrend: LossTrend, x: torch.Tensor, y: torch.Tensor, lr: float, steps: int = STEPS
) -> nn.Linear:
    """Full-batch SGD on ``nn.Linear(1, 1)`` with ``MSELoss``, recording every step's loss.

    The model is watched with its loss and the full batch, so a failing verdict measures the
    sharpness λmax and its diagnosis quotes the stable learning rate 2/λmax.
    """
    model = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.MSELoss()
    losstrend.watch(model, optimizer, loss_fn=loss_fn, batch=(x, y))
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        losstrend.record(loss)
    return model


# -- the learning rate -----------------------------------------------------------------------


@pytest.mark.loss_fails(cause="lr_too_high")
def test_lr_1_diverges(losstrend: LossTrend) -> None:
    """lr=1.0 is about 33 times the stable limit: the loss explodes within a few steps."""
    x, y = make_data()
    # On x uniform in [0, 10): E[x²] = 100/3 and E[x] = 5, so the Hessian 2·[[33.3, 5], [5, 1]]
    # has λmax ≈ 68 and the largest stable learning rate is 2 / λmax = 0.0293. Checked here,
    # and on the sample itself (100 points move it by up to about ±25%), so the number quoted
    # in the docs cannot drift from the data.
    assert lr_limit(100 / 3, 5.0) == pytest.approx(0.0293, abs=1e-4)
    assert mse_lr_limit(x) == pytest.approx(0.03, abs=0.01)
    fit_full_batch(losstrend, x, y, lr=1.0)


@pytest.mark.loss_fails(cause="lr_too_high")
def test_lr_divided_by_10_still_diverges(losstrend: LossTrend) -> None:
    """lr=0.1 (the write-up's "divide by 10") is still above 2/λmax ≈ 0.03: it diverges too."""
    x, y = make_data()
    assert mse_lr_limit(x) < 0.1
    fit_full_batch(losstrend, x, y, lr=0.1)


@pytest.mark.loss_decreases(min_drop=0.5)
def test_lr_below_the_limit_converges(losstrend: LossTrend) -> None:
    """lr=0.01, a third of 2/λmax: every step shrinks the error and the loss falls ~100-fold.

    ``min_drop`` is measured from the start level: the first loss here, since the first step
    falls far beyond the noise. The criterion asks for a 50% drop, which this run clears many
    times over.
    """
    x, y = make_data()
    assert mse_lr_limit(x) > 0.01
    fit_full_batch(losstrend, x, y, lr=0.01)


@pytest.mark.loss_decreases(min_drop=0.5)
def test_standardised_feature_converges_at_lr_0_1(losstrend: LossTrend) -> None:
    """Standardising x makes the Hessian 2·I (λmax = 2), so lr=0.1 is well inside the limit."""
    x, y = make_data()
    xs = standardise(x)
    assert mse_lr_limit(xs) == pytest.approx(1.0)
    fit_full_batch(losstrend, xs, y, lr=0.1)


# -- the scale of the features ---------------------------------------------------------------


@pytest.mark.loss_fails(cause="unscaled_features")
def test_features_in_the_thousands_diverge(losstrend: LossTrend) -> None:
    """x in [0, 10000): the curvature is a million times larger, lr=0.1 blows up at once."""
    x, y = make_data(scale=1000.0)
    assert mse_lr_limit(x) < 1e-7
    fit_full_batch(losstrend, x, y, lr=0.1)


@pytest.mark.loss_decreases(min_drop=0.5)
def test_features_in_the_thousands_standardised_converge(losstrend: LossTrend) -> None:
    """The same data with x standardised trains at the same lr=0.1.

    Only the features need scaling for stability: the limit 2/λmax depends on x alone. The
    target stays in its own units (thousands), so the loss starts near 1e8 and ends near the
    noise variance, 1.
    """
    x, y = make_data(scale=1000.0)
    model = fit_full_batch(losstrend, standardise(x), y, lr=0.1)
    # The slope in standardised units is 2·std(x), about 2·2900; the intercept is mean(y).
    assert model.weight.item() == pytest.approx(2.0 * x.std(unbiased=False).item(), rel=0.01)


# -- the order of the mini-batches -----------------------------------------------------------

SORTED_LR = 0.002
SORTED_EPOCHS = 10
BATCH = 5


@pytest.mark.loss_decreases(min_drop=0.5)
def test_sorted_unshuffled_minibatches_decrease_per_step(losstrend: LossTrend) -> None:
    """Batches of 5, data sorted by x, no shuffling: the per-step loss decreases.

    Why the write-up saw a rise. It printed one number per epoch, the loss of the epoch's last
    batch. Without shuffling, that is the same 5 samples every epoch, and because the data is
    sorted they are the 5 largest x (near 10). That printout is misleading in three ways:

    * It is the loss of 5 points, not of the training set, and training does not minimise it.
      Training minimises the loss over all 100 points; how well the line happens to fit the 5
      right-most ones can get worse while the total gets better. Here the intercept is the
      slow direction of the problem (it settles over many epochs) and the slope compensates
      for it meanwhile, so the line keeps moving at the right-hand end. With seed 0 the
      printout reads 0.558, 0.578, 0.577, ..., 0.570 over epochs 2 to 10 (up 3.6%, then
      nearly flat), while the loss on all the data reads 1.228, 1.198, 1.182, ..., 1.096
      (down steadily). The test records the last batch's loss per epoch as series
      ``last_batch`` (it shows in the report, unjudged) and prints both (``pytest -s``).
    * Those points have the largest x, so their residual ``Δw·x + Δb`` is ten times as
      sensitive to an error in the slope as that of points near x = 1: their loss is the
      largest and the one that moves most when the line moves.
    * Unshuffled batches come in the same order every epoch, so the per-step loss repeats the
      same pattern every epoch, each batch at a level set by its own 5 points. A printout
      that always reads the same place in that pattern says little about the trend.

    What to record instead: every optimizer step (this test), or the loss on a fixed
    held-out set once per epoch. And shuffle (``DataLoader(..., shuffle=True)``).

    The learning rate: the last batch alone has curvature about 2·(x² + 1) ≈ 200, so each
    step on it is stable only below about 0.01; 0.002 keeps a margin.
    """
    x, y = make_data()
    order = torch.argsort(x[:, 0])
    x, y = x[order], y[order]

    model = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=SORTED_LR)
    loss_fn = nn.MSELoss()
    full_data: list[float] = []  # the loss on all 100 points, once per epoch
    for _ in range(SORTED_EPOCHS):
        for start in range(0, N, BATCH):  # no shuffling: the same batches, in x order
            xb, yb = x[start : start + BATCH], y[start : start + BATCH]
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            losstrend.record(loss)  # every optimizer step: this series is judged
        # What the write-up printed: the epoch's last step (always the 5 largest x).
        losstrend.record(loss, series="last_batch")
        with torch.no_grad():
            full_data.append(loss_fn(model(x), y).item())

    last_batch = losstrend.losses("last_batch")
    print("\nlast-batch loss per epoch:", np.round(last_batch, 4).tolist())
    print("full-data loss per epoch: ", np.round(full_data, 4).tolist())
    # Whatever the last batch does, the loss on all the data ends no higher than it was after
    # the first epoch.
    assert full_data[-1] <= full_data[0]

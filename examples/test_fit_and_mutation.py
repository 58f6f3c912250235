"""Training through ``losstrend.fit``, and what mutation testing says about a test.

``losstrend.fit`` is the loop most training tests write by hand: mini-batches, the optimizer
step, the loss recorded every step and a held-out loss every epoch, the model watched for the
diagnosis. Because the plugin owns that loop, ``pytest --losstrend-mutate`` can re-run such a
test with a known training bug injected (a learning rate 100x too high or 10,000x too low,
features x1000, sorted data without shuffling, weights x50 at init, ``zero_grad`` skipped,
parameters left out of the optimizer, frozen weights) and count how many of those bugs the
test would have caught: its mutation score.

* ``test_sound`` asks for a real drop (``min_drop=0.4``) to a level a working model reaches
  (``below=0.7``): every mutant makes it fail.
* ``test_weak`` asks for nothing (``min_drop=0``, a huge ``tolerance``, inconclusive counts as
  a pass, and ``reference=None``: a run that ends no better than predicting the mean passes
  too): it is green here, and stays green under almost every bug. Its low score is the point:
  a passing test is only as good as the bugs it can catch.
* ``test_keras_fit`` is the same sound test on a Keras model (the torch-only mutations, such as
  a skipped ``zero_grad``, do not apply).

Run ``pytest examples/test_fit_and_mutation.py --losstrend-mutate`` to see the scores.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_diabetes
from sklearn.preprocessing import StandardScaler
from torch import nn

from pytest_losstrend import LossTrend

torch.set_num_threads(1)


def diabetes() -> tuple[np.ndarray, np.ndarray]:
    """The diabetes data, features and target standardised, as float32."""
    x, y = load_diabetes(return_X_y=True)
    xs = StandardScaler().fit_transform(x).astype("float32")
    ys = ((y - y.mean()) / y.std()).astype("float32").reshape(-1, 1)
    return xs, ys


def mlp() -> nn.Module:
    """10 -> 16 -> 1, ReLU."""
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 1))


@pytest.mark.loss_decreases(min_drop=0.4, below=0.7)
def test_sound(losstrend: LossTrend) -> None:
    """Five epochs of Adam: the loss must fall 40% and end below 0.7 (the target's variance
    is 1)."""
    losstrend.fit(mlp(), diabetes(), loss="mse", optimizer=("adam", 1e-2), epochs=5)


@pytest.mark.loss_decreases(min_drop=0, tolerance=100, inconclusive="pass", reference=None)
def test_weak(losstrend: LossTrend) -> None:
    """The same training with criteria that let almost anything through."""
    losstrend.fit(mlp(), diabetes(), loss="mse", optimizer=("adam", 1e-2), epochs=5)


@pytest.mark.loss_decreases(min_drop=0.4, below=0.7)
def test_keras_fit(losstrend: LossTrend) -> None:
    """The sound test on a Keras model."""
    keras = pytest.importorskip("keras")
    model = keras.Sequential([
        keras.Input((10,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1),
    ])
    losstrend.fit(model, diabetes(), loss="mse", optimizer=("adam", 1e-2), epochs=5)

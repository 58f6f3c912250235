"""Keras ``fit``: softmax regression plus one hidden layer on scikit-learn's digits (scaled to
[0, 1]), Adam, batches of 64, 3 epochs (72 steps).

Faults (labelled in ``bench_adoption.EXPECTED`` before any run):
- ``lr_x100``: lr 0.01 -> 1.0;
- ``shuffled_labels``: the labels permuted against the images;
- ``frozen_head``: the output layer frozen (``trainable=False``) with the hidden layer
  ``trainable=False`` too, as a fine-tuning test that froze the wrong layers: nothing trains;
- ``frozen_first``: the hidden layer frozen on purpose; the head still learns (random features
  separate the digits).
"""

from __future__ import annotations

import numpy as np
import pytest
from _common import SEEDS, explicit, marked, plain_check
from sklearn.datasets import load_digits

keras = pytest.importorskip("keras")

FAULTS = ["healthy", "lr_x100", "shuffled_labels", "frozen_head", "frozen_first"]
X, Y = load_digits(return_X_y=True)


@marked
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fault", FAULTS)
def test_keras_fit(fault: str, seed: int, request: pytest.FixtureRequest) -> None:
    lt = explicit(request)
    x = (X / 16.0).astype("float32")
    y = Y.copy()
    rng = np.random.default_rng(seed)
    if fault == "shuffled_labels":
        y = y[rng.permutation(len(y))]
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(10)])
    if fault in ("frozen_head", "frozen_first"):
        model.layers[0].trainable = False
    if fault == "frozen_head":
        model.layers[1].trainable = False
    model.compile(optimizer=keras.optimizers.Adam(1.0 if fault == "lr_x100" else 0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callbacks = []
    if lt is not None:
        lt.watch(model, batch=(x[:64], y[:64]))
        callbacks = [lt.keras_callback()]
    history = model.fit(x[:1536], y[:1536], batch_size=64, epochs=3, verbose=0,
                        callbacks=callbacks)
    plain_check(history.history["loss"])

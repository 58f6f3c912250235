"""A ``tf.GradientTape`` loop: linear regression on synthetic data (8 features, an intercept of
2, noise 0.1) with a Keras ``Dense(1)``, mini-batches of 64, SGD lr 0.05, 60 steps, the MSE
written by hand as ``tf.reduce_mean(tf.square(pred - y))``.

Faults (labelled in ``bench_adoption.EXPECTED`` before any run):
- ``lr_x100``: lr 0.05 -> 5.0;
- ``broadcast``: the prediction (B, 1) against the target (B,) in the hand-written MSE;
- ``shuffled_labels``: the targets permuted against their inputs.
"""

from __future__ import annotations

import numpy as np
import pytest
from _common import SEEDS, explicit, marked, plain_check

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

FAULTS = ["healthy", "lr_x100", "broadcast", "shuffled_labels"]


@marked
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fault", FAULTS)
def test_tf_gradienttape(fault: str, seed: int, request: pytest.FixtureRequest) -> None:
    lt = explicit(request)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1024, 8)).astype("float32")
    y = (x @ rng.normal(size=8) + 2.0 + 0.1 * rng.normal(size=1024)).astype("float32")
    if fault == "shuffled_labels":
        y = y[rng.permutation(len(y))]
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    opt = keras.optimizers.SGD(5.0 if fault == "lr_x100" else 0.05)
    if lt is not None:
        lt.watch(model, batch=(x[:64], y[:64, None]))
    losses = []
    for step in range(60):
        i = (step * 64) % 1024
        xb, yb = x[i:i + 64], y[i:i + 64]
        if fault != "broadcast":
            yb = yb[:, None]
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(xb) - yb))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        losses.append(float(loss))
        if lt is not None:
            lt.record(loss)
    plain_check(losses)

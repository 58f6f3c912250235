"""Keras: the "my linear regression loss increases" write-up, as regression tests.

The data is sklearn's bundled diabetes set: 442 patients, 10 features (age, sex, BMI, blood
pressure and six blood measurements), the target a disease-progression score around 150. The
model is a linear regression, a single ``Dense(1)``, trained with ``model.fit`` and SGD. The
losstrend fixture records the loss of every batch through ``losstrend.keras_callback()``.

* Standardised features (sklearn's ``StandardScaler``) with plain SGD: the loss falls.
  The same with a learning rate that decays exponentially
  (``keras.optimizers.schedules.ExponentialDecay``): it falls too.
* The raw features: blood measurements around 100 to 200 give the mean squared error a
  curvature near 1.5e5, so the largest stable learning rate is about 1.4e-5 (two over the
  largest eigenvalue of the Hessian ``2·E[x xᵀ]``, x with a 1 appended for the bias; the
  test computes it). Keras's SGD default of 0.01 is 700 times that: the loss overflows to
  ``inf`` within the first epoch (under the marker the test stops within a couple of batches,
  as soon as the loss passes 10⁴ times its first value). The test is marked ``loss_fails``:
  it passes because the loss check fails.
* A hand-written layer with the dimension bug: ``build`` makes its kernel
  ``(units, input_dim)`` where ``ops.matmul(x, kernel)`` needs ``(input_dim, units)``. With a
  single feature and a single unit both shapes are ``(1, 1)`` and the bug hides; on the 10
  diabetes features Keras 3 fails loudly the first time the layer is called, which is inside
  ``fit`` when the model was built without an ``Input``. The error names both shapes
  (``[?,10], [1,10]``), so the test asserts on them with ``pytest.raises``. Beside it the
  fixed layer, which trains.

  The other classic dimension bug, a prediction of shape ``(N,)`` against a target of shape
  ``(N, 1)`` (or the reverse), broadcasts to an ``(N, N)`` matrix of every prediction minus
  every target: the model then learns to predict the mean. Keras's built-in losses align the
  two ranks first, so it cannot happen inside ``model.fit`` with ``loss="mse"``; it can in a
  hand-written loss, which is why the ``tf.GradientTape`` example below checks the shapes.
* A custom training loop with ``tf.GradientTape`` records ``losstrend.record(loss)`` after
  every step, exactly as a PyTorch loop would.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers, ops
from sklearn.datasets import load_diabetes
from sklearn.preprocessing import StandardScaler

from pytest_losstrend import LossTrend

if keras.backend.backend() != "tensorflow":  # pragma: no cover - depends on KERAS_BACKEND
    pytest.skip("these examples use the TensorFlow backend of Keras", allow_module_level=True)

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

BATCH = 32  # 442 samples: 14 batches per epoch
EPOCHS = 8


def diabetes(*, scaled: bool) -> tuple[np.ndarray, np.ndarray]:
    """The diabetes features (standardised or raw) and the target as a column, float32."""
    x, y = load_diabetes(return_X_y=True, scaled=False)
    if scaled:
        x = StandardScaler().fit_transform(x)
    return x.astype("float32"), y.astype("float32").reshape(-1, 1)


def linear_model(
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule,
) -> keras.Model:
    """A linear regression: one ``Dense(1)`` on the 10 features, MSE, plain SGD."""
    model = keras.Sequential([keras.Input((10,)), layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=learning_rate), loss="mse")
    return model


# -- scaling -----------------------------------------------------------------------------------


@pytest.mark.loss_decreases(min_drop=0.5)
def test_standardised_features_sgd(losstrend: LossTrend) -> None:
    """StandardScaler + SGD: the MSE falls from ~29000 (the target's mean square) to ~3000."""
    x, y = diabetes(scaled=True)
    model = linear_model(0.05)
    model.fit(
        x, y, batch_size=BATCH, epochs=EPOCHS, callbacks=[losstrend.keras_callback()], verbose=0
    )


@pytest.mark.loss_decreases(min_drop=0.5)
def test_standardised_features_exponential_decay(losstrend: LossTrend) -> None:
    """A decaying learning rate: large steps first, then smaller ones (x0.5 every 2 epochs)."""
    x, y = diabetes(scaled=True)
    schedule = keras.optimizers.schedules.ExponentialDecay(
        initial_learning_rate=0.1, decay_steps=2 * 14, decay_rate=0.5
    )
    model = linear_model(schedule)
    model.fit(
        x, y, batch_size=BATCH, epochs=EPOCHS, callbacks=[losstrend.keras_callback()], verbose=0
    )


@pytest.mark.loss_fails(cause="unscaled_features")
def test_raw_features_sgd_diverges(losstrend: LossTrend) -> None:
    """Raw features in the hundreds: SGD's default lr=0.01 is 700 times the stable limit."""
    x, y = diabetes(scaled=False)
    # The MSE's Hessian in (kernel, bias) is 2·E[x₁ x₁ᵀ], x₁ = the features with a 1 appended.
    x1 = np.c_[x.astype("float64"), np.ones(len(x))]
    limit = 2.0 / np.linalg.eigvalsh(2.0 * x1.T @ x1 / len(x1)).max()
    assert limit == pytest.approx(1.4e-5, rel=0.1)
    model = linear_model(0.01)
    # Watching with a batch lets the diagnosis see the features' scales: the top cause is the
    # unscaled features (condition number 1e6 raw, 470 standardised), not the learning rate.
    losstrend.watch(model, batch=(x[:256], y[:256]))
    model.fit(
        x, y, batch_size=BATCH, epochs=EPOCHS, callbacks=[losstrend.keras_callback()], verbose=0
    )


# -- a hand-written layer ------------------------------------------------------------------


class TransposedKernelLinear(layers.Layer):
    """The bug: the kernel is built ``(units, input_dim)``; ``x @ kernel`` needs the reverse."""

    def __init__(self, units: int = 1, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        input_dim = input_shape[-1]
        self.kernel = self.add_weight(shape=(self.units, input_dim), initializer="glorot_uniform")
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros")

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return ops.matmul(x, self.kernel) + self.bias


class FixedLinear(TransposedKernelLinear):
    """The fix: the kernel is ``(input_dim, units)``, so ``x @ kernel`` is ``(batch, units)``."""

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        input_dim = input_shape[-1]
        self.kernel = self.add_weight(shape=(input_dim, self.units), initializer="glorot_uniform")
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros")


def test_custom_layer_with_transposed_kernel_fails_loudly() -> None:
    """Keras 3 raises a ValueError naming both shapes the first time the layer runs (in fit)."""
    x, y = diabetes(scaled=True)
    model = keras.Sequential([TransposedKernelLinear(1)])  # no Input: built lazily, in fit
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse")
    with pytest.raises(ValueError, match=r"input shapes: \[\?,10\], \[1,10\]") as excinfo:
        model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    assert "Dimensions must be equal, but are 10 and 1" in str(excinfo.value)


@pytest.mark.loss_decreases(min_drop=0.5)
def test_custom_layer_fixed_trains(losstrend: LossTrend) -> None:
    """The same layer with the kernel the right way round trains like ``Dense(1)``."""
    x, y = diabetes(scaled=True)
    model = keras.Sequential([FixedLinear(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse")
    model.fit(
        x, y, batch_size=BATCH, epochs=EPOCHS, callbacks=[losstrend.keras_callback()], verbose=0
    )
    assert model.layers[0].kernel.shape == (10, 1)


# -- a custom training loop ----------------------------------------------------------------


@pytest.mark.loss_decreases(min_drop=0.5)
def test_gradient_tape_loop(losstrend: LossTrend) -> None:
    """A ``tf.GradientTape`` loop over shuffled mini-batches, recording every step's loss."""
    x, y = diabetes(scaled=True)
    dataset = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(len(x), reshuffle_each_iteration=True)
        .batch(BATCH)
    )
    layer = FixedLinear(1)
    optimizer = keras.optimizers.SGD(learning_rate=0.05)

    @tf.function
    def train_step(xb: tf.Tensor, yb: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            pred = layer(xb)
            # Both (batch, 1): a (batch,) target here would broadcast to (batch, batch).
            tf.debugging.assert_equal(tf.shape(pred), tf.shape(yb))
            loss = tf.reduce_mean(tf.square(pred - yb))
        grads = tape.gradient(loss, layer.trainable_variables)
        optimizer.apply_gradients(zip(grads, layer.trainable_variables, strict=True))
        return loss

    for _ in range(EPOCHS):
        for xb, yb in dataset:
            losstrend.record(train_step(xb, yb))

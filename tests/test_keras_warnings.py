"""Keras support warns nothing in a user's project.

The repository's own ``filterwarnings`` hides TensorFlow's and Keras' deprecation warnings, so
these checks run an inner project with no filters and every warning shown (``-W always``), and
compare what each of our entry points adds to what the same Keras ``fit`` warns on its own.
"""

from __future__ import annotations

from collections import Counter

import keras
import pytest

if keras.backend.backend() != "tensorflow":  # pragma: no cover - depends on KERAS_BACKEND
    pytest.skip("the inner tests train with the TensorFlow backend", allow_module_level=True)

INNER = '''
import keras
import numpy as np
import pytest
import tensorflow as tf


def data(n=160):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 5)).astype("float32")
    return x, (x @ rng.normal(size=(5, 1))).astype("float32")


def model(lr=0.05):
    inputs = keras.Input((5,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    m = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    m.compile(optimizer=keras.optimizers.SGD(lr), loss="mse")
    return m


def test_plain_fit():
    model().fit(*data(), epochs=5, batch_size=32, validation_split=0.2, verbose=0)


@pytest.mark.loss_decreases
def test_callback(losstrend):
    model().fit(*data(), epochs=5, batch_size=32, validation_split=0.2, verbose=0,
                callbacks=[losstrend.keras_callback()])


@pytest.mark.loss_decreases
def test_watch_with_batch_and_schedule(losstrend):
    x, y = data()
    m = model(keras.optimizers.schedules.ExponentialDecay(0.05, 5, 0.9))
    losstrend.watch(m, batch=(x[:64], y[:64]))
    m.fit(x, y, epochs=5, batch_size=32, verbose=0, callbacks=[losstrend.keras_callback()])
    losstrend.measure_sharpness()


@pytest.mark.loss_decreases
def test_runner_fit(losstrend):
    x, y = data()
    losstrend.fit(model(), (x, y), loss="mse", optimizer="sgd", epochs=10,
                  eval_data=(x[:32], y[:32]))


class TotalLossModel(keras.Model):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tracker = keras.metrics.Mean(name="total_loss")

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((self(x, training=True) - y) ** 2)
        self.optimizer.apply(tape.gradient(loss, self.trainable_variables),
                             self.trainable_variables)
        self.tracker.update_state(loss)
        return {"total_loss": self.tracker.result(), "kl": 0.0 * loss}


@pytest.mark.loss_decreases
def test_custom_loss_key(losstrend):
    inputs = keras.Input((5,))
    m = TotalLossModel(inputs, keras.layers.Dense(1)(inputs))
    m.compile(optimizer=keras.optimizers.SGD(0.05))
    m.fit(*data(), epochs=5, batch_size=32, verbose=0,
          callbacks=[losstrend.keras_callback(loss_key="total_loss")])


@pytest.mark.loss_decreases
def test_gradient_tape_loop(losstrend):
    x, y = data()
    w, b = tf.Variable(tf.zeros((5, 1))), keras.Variable(0.0)
    opt = keras.optimizers.SGD(learning_rate=0.05)
    for xb, yb in tf.data.Dataset.from_tensor_slices((x, y)).batch(32).repeat(5):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((xb @ w + b.value - yb) ** 2)
        opt.apply_gradients(zip(tape.gradient(loss, [w, b.value]), [w, b.value]))
        losstrend.record(loss)
        losstrend.record(b, series="bias")
'''


def test_keras_entry_points_add_no_warnings(pytester: pytest.Pytester) -> None:
    """The callback (also with a custom ``loss_key``), the watcher, ``losstrend.fit`` and a
    GradientTape loop recording tf tensors warn nothing beyond what the same fit warns without
    us (none with Keras 3.15)."""
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_inner=INNER)
    rec = pytester.inline_run("-W", "always", "-p", "no:cacheprovider")
    rec.assertoutcome(passed=6)
    seen: dict[str, Counter[str]] = {}
    for call in rec.getcalls("pytest_warning_recorded"):
        w = call.warning_message
        where = f"{w.category.__name__} {w.filename}:{w.lineno}: {str(w.message)[:120]}"
        seen.setdefault(call.nodeid.rpartition("::")[2], Counter())[where] += 1
    keras_own = seen.pop("test_plain_fit", Counter())
    ours = {name: dict(found - keras_own) for name, found in seen.items()}
    assert ours == {name: {} for name in ours}

"""Watching a Keras model: what ``KerasWatcher`` puts in the evidence, on real tiny fits.

Each test fits a small model for a few epochs on synthetic data and checks one signal against
what it must be: the weights a custom layer or ``trainable = False`` froze, the weights a zero
learning rate leaves unchanged, a decaying learning rate per epoch, dead ReLU units, unscaled
features, the top Hessian eigenvalue of least squares (known in closed form) and a target shape
that broadcasts against the predictions.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from pytest_losstrend import LossTrend
from pytest_losstrend.capture.keras_watch import (
    KerasWatcher,
    input_stats,
    top_hessian_eigenvalue_keras,
)
from pytest_losstrend.diagnosis.evidence import Evidence
from pytest_losstrend.fixture import LossTrendStop

if keras.backend.backend() != "tensorflow":  # pragma: no cover - depends on KERAS_BACKEND
    pytest.skip("the watcher's gradients use tf.GradientTape", allow_module_level=True)

Arrays = tuple[np.ndarray, np.ndarray]


def _data(n: int = 128, d: int = 5, seed: int = 0) -> Arrays:
    """``n`` rows of a noisy ``d``-feature linear regression, float32, targets (n, 1)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    y = x @ rng.normal(size=(d, 1)) + 0.1 * rng.normal(size=(n, 1))
    return x, y.astype("float32")


def _fit(
    model: keras.Model,
    data: Arrays,
    *,
    optimizer: Any = None,
    loss: Any = "mse",
    epochs: int = 3,
    batch_size: int = 32,
    watch_batch: bool = False,
    lt: LossTrend | None = None,
) -> Evidence:
    """Compile, fit with the losstrend callback (watching ``data`` as the batch if asked) and
    return the finished evidence."""
    lt = lt or LossTrend()
    model.compile(optimizer=optimizer or keras.optimizers.SGD(learning_rate=0.05), loss=loss)
    if watch_batch:
        lt.watch(model, batch=data)
    model.fit(*data, epochs=epochs, batch_size=batch_size, shuffle=False,
              callbacks=[lt.keras_callback()], verbose=0)
    lt.finish_watching()
    assert lt.evidence is not None
    return lt.evidence


class HalfFrozen(keras.layers.Layer):
    """A linear layer whose kernel was created non-trainable (the bug), bias trainable."""

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.kernel = self.add_weight(
            shape=(input_shape[-1], 1), initializer="glorot_uniform", trainable=False,
            name="kernel",
        )
        self.bias = self.add_weight(shape=(1,), initializer="zeros", name="bias")

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return keras.ops.matmul(x, self.kernel) + self.bias


# -- frozen and unchanged weights ---------------------------------------------------------------


def test_add_weight_trainable_false_is_frozen() -> None:
    half = HalfFrozen(name="half")
    model = keras.Sequential([keras.Input((5,)), half])
    ev = _fit(model, _data())
    assert ev.frozen == [half.kernel.path]
    assert half.kernel.path.endswith("half/kernel")
    assert half.bias.path not in ev.unchanged


def test_layer_trainable_false_is_frozen() -> None:
    inputs = keras.Input((5,))
    body = keras.layers.Dense(8, activation="tanh", name="body")
    head = keras.layers.Dense(1, name="head")
    model = keras.Model(inputs, head(body(inputs)))
    body.trainable = False
    ev = _fit(model, _data())
    assert sorted(ev.frozen) == ["body/bias", "body/kernel"]
    assert ev.unchanged == []
    assert set(ev.update_ratio) == {"head/kernel", "head/bias"}


def test_statistics_of_normalisation_layers_are_not_frozen() -> None:
    """BatchNormalization's moving statistics and an adapted Normalization's mean, variance and
    count are non-trainable by design; Dropout's seed state is no weight at all."""
    x, y = _data()
    norm = keras.layers.Normalization()
    norm.adapt(x)
    model = keras.Sequential([
        keras.Input((5,)), norm, keras.layers.Dense(8, activation="relu"),
        keras.layers.BatchNormalization(), keras.layers.Dropout(0.1), keras.layers.Dense(1),
    ])
    assert len(model.non_trainable_weights) == 5
    ev = _fit(model, (x, y))
    assert ev.frozen == []
    assert ev.unchanged == []


def test_frozen_batchnorm_scale_and_offset_are_frozen() -> None:
    bn = keras.layers.BatchNormalization(name="bn")
    model = keras.Sequential([keras.Input((5,)), bn, keras.layers.Dense(1)])
    bn.trainable = False
    ev = _fit(model, _data(), epochs=1)
    assert sorted(ev.frozen) == sorted([bn.gamma.path, bn.beta.path])
    assert ev.frozen[0].endswith("bn/gamma")


def test_zero_learning_rate_leaves_every_weight_unchanged() -> None:
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="tanh"),
                              keras.layers.Dense(1)])
    ev = _fit(model, _data(), optimizer=keras.optimizers.SGD(learning_rate=0.0), epochs=2)
    names = [w.path for w in model.trainable_weights]
    assert ev.unchanged == names
    assert ev.frozen == []
    assert ev.update_ratio == {n: [0.0, 0.0] for n in names}
    assert ev.lr == [0.0, 0.0]
    assert ev.optimizer_steps == 8


# -- optimizer, learning rate and update ratios -----------------------------------------------


def test_update_ratios_and_decaying_learning_rate_per_epoch() -> None:
    data = _data(128)
    schedule = keras.optimizers.schedules.ExponentialDecay(
        initial_learning_rate=0.1, decay_steps=4, decay_rate=0.5
    )
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1, name="out")])
    ev = _fit(model, data, optimizer=keras.optimizers.SGD(learning_rate=schedule, momentum=0.5),
              epochs=4)
    assert ev.framework == "keras"
    assert (ev.optimizer, ev.momentum) == ("SGD", 0.5)
    assert ev.steps == [4, 8, 12, 16]
    assert ev.optimizer_steps == 16
    # The learning rate about to be used, the schedule at the optimizer's iteration.
    assert ev.lr == pytest.approx([0.1 * 0.5 ** (s / 4) for s in ev.steps], rel=1e-6)
    assert all(a > b for a, b in zip(ev.lr, ev.lr[1:], strict=False))
    kernel = ev.update_ratio[model.layers[0].kernel.path]
    assert len(kernel) == 4
    assert all(r > 0 for r in kernel)
    # Smaller steps near the optimum: the epoch's relative update shrinks.
    assert kernel[-1] < kernel[0]
    assert ev.zero_grad_calls is None
    assert ev.unchanged == []
    assert ev.first_loss is not None and ev.first_loss > 0
    assert ev.loss_name == "mean_squared_error"


def test_adam_classifier_loss_and_output_width() -> None:
    x, _ = _data(96)
    labels = np.argmax(x[:, :3], axis=1)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    ev = _fit(model, (x, labels), optimizer=keras.optimizers.Adam(learning_rate=0.01),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), epochs=1)
    assert (ev.optimizer, ev.momentum) == ("Adam", 0.9)
    assert ev.loss_name == "sparse_categorical_crossentropy"
    assert ev.loss_from_logits is True
    assert ev.output_features == 3


def test_loss_given_as_a_string_keeps_its_default_from_logits() -> None:
    x, _ = _data(64)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])
    ev = _fit(model, (x, np.argmax(x[:, :3], axis=1)), loss="sparse_categorical_crossentropy",
              epochs=1)
    assert ev.loss_name == "sparse_categorical_crossentropy"
    assert ev.loss_from_logits is False


def test_model_built_during_fit_gets_aligned_samples() -> None:
    """A Sequential without an Input has no weights until fit calls it: the first epoch has
    no update ratio (NaN keeps the lists aligned with ``steps``), unless a watched batch lets
    the watcher build the model first."""
    data = _data(64)
    ev = _fit(keras.Sequential([keras.layers.Dense(1)]), data, epochs=2)
    assert ev.steps == [2, 4]
    assert all(len(r) == 2 and math.isnan(r[0]) and r[1] > 0 for r in ev.update_ratio.values())
    assert len(ev.update_ratio) == 2
    ev = _fit(keras.Sequential([keras.layers.Dense(1)]), data, epochs=2, watch_batch=True)
    assert all(len(r) == 2 and min(r) > 0 for r in ev.update_ratio.values())
    assert ev.output_features == 1


# -- the callback watches by itself ----------------------------------------------------------


def test_callback_watches_once_and_only_per_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``watch`` call: the callback creates the watcher, reuses it on the next fit, and calls
    it at train begin, each epoch end and train end only: never per batch."""
    calls: dict[str, int] = {}
    for hook in ("on_train_begin", "on_epoch_end", "on_train_end", "_snapshot"):
        original = getattr(KerasWatcher, hook)

        def counted(self: KerasWatcher, *args: Any, _f: Any = original, _h: str = hook,
                    **kwargs: Any) -> Any:
            calls[_h] = calls.get(_h, 0) + 1
            return _f(self, *args, **kwargs)

        monkeypatch.setattr(KerasWatcher, hook, counted)
    lt = LossTrend()
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse")
    callback = lt.keras_callback()
    assert callback.async_safe is True
    x, y = _data(128)
    for _ in range(2):
        model.fit(x, y, epochs=2, batch_size=16, callbacks=[callback], verbose=0)
    assert len(lt._watchers) == 1
    assert lt.evidence is lt._watchers[0].evidence
    assert len(lt.losses()) == 2 * 2 * 8
    # Construction, then per fit one at train begin and one per epoch: 16 batches each.
    assert calls == {"on_train_begin": 2, "on_epoch_end": 4, "on_train_end": 2, "_snapshot": 7}
    assert lt.evidence.steps == [8, 16, 24, 32]


def test_callback_uses_the_watcher_watch_made() -> None:
    lt = LossTrend()
    x, y = _data(64)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])
    lt.watch(model, batch=(x, y))
    ev = _fit(model, (x, y), lt=lt, epochs=2)
    assert len(lt._watchers) == 1
    assert ev is lt._watchers[0].evidence
    assert len(ev.grad_norm) == len(ev.steps) == 2
    assert ev.grad_norm[1] < ev.grad_norm[0]


def test_evidence_survives_a_fit_stopped_for_divergence() -> None:
    """The epoch whose loss stops the test is still sampled: its updates are the telling ones."""
    x, y = _data(200)
    lt = LossTrend(fail_fast=True)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=3.0), loss="mse")
    with pytest.raises(LossTrendStop):
        model.fit(10 * x, 10 * y, epochs=10, batch_size=20, callbacks=[lt.keras_callback()],
                  verbose=0)
    lt.finish_watching()
    ev = lt.evidence
    assert ev is not None
    assert ev.steps and ev.optimizer_steps == ev.steps[-1]
    assert max(max(r) for r in ev.update_ratio.values()) > 0.5


def test_watch_a_gradient_tape_loop() -> None:
    """No callback: ``finish`` compares the weights with those ``watch`` saw. The loop below
    forgets the first layer's variables, which therefore never change."""
    x, y = _data(64)
    first = keras.layers.Dense(4, activation="tanh", name="first")
    last = keras.layers.Dense(1, name="last")
    model = keras.Sequential([keras.Input((5,)), first, last])
    opt = keras.optimizers.SGD(learning_rate=0.05)
    lt = LossTrend()
    lt.watch(model, opt)
    for _ in range(5):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((model(x) - y) ** 2)
        grads = tape.gradient(loss, last.trainable_variables)
        opt.apply_gradients(zip(grads, last.trainable_variables, strict=True))
        lt.record(loss)
    lt.finish_watching()
    ev = lt.evidence
    assert ev is not None
    assert ev.optimizer == "SGD"
    assert ev.optimizer_steps == 5
    assert ev.unchanged == [first.kernel.path, first.bias.path]


def test_finish_is_idempotent() -> None:
    lt = LossTrend()
    x, y = _data(64)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(1)])
    lt.watch(model, batch=(x, y))
    ev = _fit(model, (x, y), lt=lt, epochs=1)
    before = ev.as_dict()
    lt.finish_watching()
    assert ev.as_dict() == before


# -- signals on the watched batch ---------------------------------------------------------------


def test_dead_relu_layer() -> None:
    """A bias of -10 keeps every pre-activation negative: the layer never fires, gets no
    gradient, and stays dead; the healthy ReLU layer beside it does not."""
    data = _data(128)
    inputs = keras.Input((5,))
    dead = keras.layers.Dense(16, activation="relu", name="dead",
                              bias_initializer=keras.initializers.Constant(-10.0))(inputs)
    alive = keras.layers.Dense(16, activation="relu", name="alive")(inputs)
    out = keras.layers.Dense(1, name="out")(keras.layers.Concatenate()([dead, alive]))
    ev = _fit(keras.Model(inputs, out), data, watch_batch=True)
    assert ev.dead_fraction["dead"] == 1.0
    assert ev.dead_fraction["alive"] < 0.5
    assert {"dead/kernel", "dead/bias"} <= set(ev.zero_grad_params)
    assert "alive/kernel" not in ev.zero_grad_params
    # The dead layer's weights never move; with lr > 0 that is a gradient problem, not a freeze.
    assert {"dead/kernel", "dead/bias"} <= set(ev.unchanged)
    assert ev.frozen == []


def test_relu_activation_layer_is_probed() -> None:
    model = keras.Sequential([
        keras.Input((5,)),
        keras.layers.Dense(8, bias_initializer=keras.initializers.Constant(-10.0)),
        keras.layers.Activation("relu", name="act"),
        keras.layers.Dense(8),
        keras.layers.ReLU(name="relu"),
        keras.layers.Dense(1),
    ])
    ev = _fit(model, _data(64), watch_batch=True, epochs=1)
    assert ev.dead_fraction["act"] == 1.0
    assert set(ev.dead_fraction) == {"act", "relu"}


def test_unscaled_feature_in_input_stats() -> None:
    x, y = _data(256)
    x[:, 2] *= 1000.0
    ev = _fit(keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)]), (x, y),
              optimizer=keras.optimizers.SGD(learning_rate=1e-8), watch_batch=True, epochs=1)
    stats = ev.input_stats
    assert stats["n_features"] == 5
    assert stats["max_abs"] > 1000
    std = x.astype(np.float64).std(axis=0)
    assert stats["std_ratio"] == pytest.approx(std.max() / std.min(), rel=1e-9)
    assert stats["std_ratio"] > 100
    assert stats["cond"] > 1e5
    assert stats["cond_standardised"] < 3
    scaled = input_stats((x - x.mean(0)) / x.std(0))
    assert scaled["std_ratio"] == pytest.approx(1.0)
    assert scaled["cond"] == pytest.approx(scaled["cond_standardised"], rel=1e-6)


def test_input_stats_definitions() -> None:
    rng = np.random.default_rng(1)
    x = np.c_[rng.normal(5.0, 2.0, size=500), rng.normal(0.0, 0.5, size=500), np.zeros(500)]
    stats = input_stats(x.astype("float32"))
    a = x.astype(np.float32).astype(np.float64)
    mean, std = a.mean(0)[:2], a.std(0)[:2]
    assert stats["n_constant"] == 1
    assert stats["std_min"] == pytest.approx(std.min())
    assert stats["std_max"] == pytest.approx(std.max())
    assert stats["mean_abs_over_std"] == pytest.approx((np.abs(mean) / std).max())
    eig = np.linalg.eigvalsh(a[:, :2].T @ a[:, :2] / 500)
    assert stats["cond"] == pytest.approx(eig[-1] / eig[0], rel=1e-6)
    # Images: whole-batch figures only (0-255 pixels are raw magnitudes); integer inputs
    # count as numbers (uint8 pixels) unless the first layer embeds them as token ids.
    img = np.full((4, 3, 3), 255.0, dtype="float32")
    assert input_stats(img) == {"max_abs": 255.0, "rms": 255.0, "mean": 255.0, "std": 0.0}
    assert input_stats(np.arange(12).reshape(4, 3))["max_abs"] == 11.0
    assert input_stats(np.arange(12).reshape(4, 3), ids=True) == {}
    assert input_stats(np.array(["a", "b"])) == {}


def test_shape_mismatch_reported() -> None:
    """Targets of shape (N,) against predictions (N, 1): Keras' MSE aligns them, so the fit
    is fine, but a hand-written loss would compare every prediction with every target."""
    x, y = _data(64)
    ev = _fit(keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)]), (x, y[:, 0]),
              watch_batch=True, epochs=1)
    assert len(ev.shape_mismatches) == 1
    message = ev.shape_mismatches[0]
    assert "(64, 1)" in message and "(64,)" in message and "(64, 64)" in message
    assert "hand-written" in message


def test_matching_shapes_report_nothing() -> None:
    ev = _fit(keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)]), _data(64),
              watch_batch=True, epochs=1)
    assert ev.shape_mismatches == []


# -- sharpness ----------------------------------------------------------------------------------


def _least_squares_hessian(x: np.ndarray) -> np.ndarray:
    """The MSE's Hessian in (kernel, bias) for a Dense(1): ``2·AᵀA/N``, ``A = [X, 1]``."""
    a = np.c_[x.astype(np.float64), np.ones(len(x))]
    return 2.0 * a.T @ a / len(a)


def test_sharpness_of_linear_regression_matches_the_hessian() -> None:
    x, y = _data(200)
    x = x * np.array([1.0, 2.0, 0.5, 3.0, 1.0], dtype="float32") + 1.0
    lt = LossTrend()
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])
    lt.watch(model, batch=(x, y))
    _fit(model, (x, y), lt=lt, optimizer=keras.optimizers.SGD(learning_rate=0.01), epochs=2)
    exact = float(np.linalg.eigvalsh(_least_squares_hessian(x)).max())
    measured = lt.measure_sharpness()
    assert measured == pytest.approx(exact, rel=0.01)
    assert lt.evidence is not None
    assert lt.evidence.sharpness == measured
    assert lt.evidence.sharpness_lr == pytest.approx(0.01)


def test_sharpness_shifts_past_a_dominant_negative_eigenvalue() -> None:
    """Loss = MSE - 10·|kernel|²: the Hessian's eigenvalue largest in magnitude is negative,
    so plain power iteration finds it; the shifted rerun finds the top one."""
    x, y = _data(200)
    x[:, 0] *= 4.0
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])
    kernel = model.layers[0].kernel

    def loss(y_true: Any, y_pred: Any) -> Any:
        mse = keras.ops.mean(keras.ops.square(y_pred - y_true))
        return mse - 10.0 * keras.ops.sum(keras.ops.square(kernel))

    h = _least_squares_hessian(x) - 20.0 * np.diag([1.0] * 5 + [0.0])
    eig = np.linalg.eigvalsh(h)
    assert -eig[0] > eig[-1] > 0
    measured = top_hessian_eigenvalue_keras(model, loss, x, y, iters=200)
    assert measured == pytest.approx(eig[-1], rel=0.01)


def test_no_sharpness_without_a_batch() -> None:
    lt = LossTrend()
    _fit(keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)]), _data(64), lt=lt,
         epochs=1)
    assert lt.measure_sharpness() is None

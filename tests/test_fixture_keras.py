"""The ``losstrend`` fixture with Keras 3 ``model.fit`` and with a ``tf.GradientTape`` loop.

The callback must record each batch's own loss, not the epoch's running mean that Keras puts in
``logs["loss"]``. With ``learning_rate=0.0`` the weights never change, so every batch's loss can
be computed directly afterwards and compared with what was recorded.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from pytest_losstrend import LossTrend
from pytest_losstrend.fixture import LossTrendStop

Arrays = tuple[np.ndarray, np.ndarray]


def _data(n: int, seed: int = 0) -> Arrays:
    """``n`` rows of a noisy 5-feature linear regression, float32, targets of shape (n, 1)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype("float32")
    y = x @ rng.normal(size=(5, 1)) + 0.1 * rng.normal(size=(n, 1))
    return x, y.astype("float32")


def _dense(cls: type[keras.Model] = keras.Model) -> keras.Model:
    """A single Dense(1) layer built as a functional model of class ``cls``."""
    inputs = keras.Input((5,))
    return cls(inputs, keras.layers.Dense(1)(inputs))


def _batch_losses(model: keras.Model, data: Arrays, batch: int) -> list[float]:
    """Each batch's own mean squared error, computed directly, in fit's (unshuffled) order."""
    x, y = data
    out = []
    for i in range(0, len(x), batch):
        pred = np.asarray(model(x[i : i + batch]))
        out.append(float(np.mean((pred - y[i : i + batch]) ** 2)))
    return out


def _frozen_fit(model: keras.Model, data: Arrays, batch: int, epochs: int = 2) -> list[float]:
    """Fit with learning rate 0 (the weights never move) and return what the callback recorded."""
    lt = LossTrend()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    model.fit(
        *data, epochs=epochs, batch_size=batch, shuffle=False,
        callbacks=[lt.keras_callback()], verbose=0,
    )
    return lt.losses()


# -- the callback's series ----------------------------------------------------------------------


@pytest.mark.parametrize(("n", "batch"), [(128, 32), (100, 32)], ids=["even", "last-batch-of-4"])
def test_callback_records_each_batch_loss(n: int, batch: int) -> None:
    data = _data(n)
    model = _dense()
    recorded = _frozen_fit(model, data, batch)
    per_batch = _batch_losses(model, data, batch)
    assert recorded == pytest.approx(per_batch * 2, rel=1e-4)
    # The running mean Keras logs differs from the per-batch series, so the check has teeth.
    sizes = np.diff([*range(0, n, batch), n])
    running = np.cumsum(np.multiply(per_batch, sizes)) / np.cumsum(sizes)
    assert not np.allclose(per_batch, running, rtol=1e-2)


class GuideModel(keras.Model):
    """The Keras guide's custom ``train_step``: updates ``self.metrics`` itself."""

    def train_step(self, data: Any) -> dict[str, Any]:
        x, y = data
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(y=y, y_pred=y_pred)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
            else:
                metric.update_state(y, y_pred)
        return {m.name: m.result() for m in self.metrics}


class OwnTrackerModel(keras.Model):
    """A custom ``train_step`` with its own ``Mean`` loss tracker over per-sample losses (the
    compiled loss tracker is never updated)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def train_step(self, data: Any) -> dict[str, Any]:
        x, y = data
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = keras.losses.mean_squared_error(y, y_pred)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    @property
    def metrics(self) -> list[Any]:
        return [self.loss_tracker]


class BatchLossModel(keras.Model):
    """A custom ``train_step`` that returns the batch's own loss and tracks no metric."""

    def train_step(self, data: Any) -> dict[str, Any]:
        x, y = data
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(y=y, y_pred=y_pred)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        return {"loss": loss}


@pytest.mark.parametrize("cls", [GuideModel, OwnTrackerModel, BatchLossModel])
def test_callback_with_custom_train_step(cls: type[keras.Model]) -> None:
    """Whatever the train_step does with the loss tracker, the series holds each batch's own
    loss (100 rows in batches of 32: the last batch has 4)."""
    data = _data(100)
    model = _dense(cls)
    recorded = _frozen_fit(model, data, 32, epochs=1)
    assert recorded == pytest.approx(_batch_losses(model, data, 32), rel=1e-4)


class _StepModel(keras.Model):
    """Base of the custom-key models below: one SGD step on the batch's mean squared error.

    Run eagerly, each model keeps the losses its train_step computed, so the recorded series
    can be checked against them while the model learns.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.computed: list[float] = []

    def step(self, data: Any) -> Any:
        """One step; returns the per-sample losses (their mean is the batch's loss)."""
        x, y = data
        with tf.GradientTape() as tape:
            per_sample = keras.losses.mean_squared_error(y, self(x, training=True))
            loss = tf.reduce_mean(per_sample)
        self.optimizer.apply(tape.gradient(loss, self.trainable_variables),
                             self.trainable_variables)
        if tf.executing_eagerly():
            self.computed.append(float(loss.numpy()))
        return per_sample


class RawKeysModel(_StepModel):
    """Returns the batch's loss under "total_loss", beside another term: no "loss" key."""

    def train_step(self, data: Any) -> dict[str, Any]:
        loss = tf.reduce_mean(self.step(data))
        return {"total_loss": loss, "kl": 0.5 * loss}


class MeanKeyModel(_StepModel):
    """Keeps a ``keras.metrics.Mean`` of the batch losses (one count per batch, whatever its
    size) and returns its running mean under "total_loss"."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.total_loss_tracker = keras.metrics.Mean(name="total_loss")

    def train_step(self, data: Any) -> dict[str, Any]:
        self.total_loss_tracker.update_state(tf.reduce_mean(self.step(data)))
        return {"total_loss": self.total_loss_tracker.result(), "kl": tf.constant(0.0)}


class VaeGuideModel(MeanKeyModel):
    """The Keras VAE guide's pattern: the running mean of a Mean named "total_loss" returned
    under "loss", so no metric named "loss" moves."""

    def train_step(self, data: Any) -> dict[str, Any]:
        self.total_loss_tracker.update_state(tf.reduce_mean(self.step(data)))
        return {"loss": self.total_loss_tracker.result()}


class TrackedRawModel(MeanKeyModel):
    """Updates its Mean tracker but returns the batch's own loss under the tracker's name."""

    def train_step(self, data: Any) -> dict[str, Any]:
        loss = tf.reduce_mean(self.step(data))
        self.total_loss_tracker.update_state(loss)
        return {"total_loss": loss}


class PerSampleKeyModel(_StepModel):
    """A Mean over per-sample losses (counts rows: 32 a batch, 4 for the last) under "my_loss"."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tracker = keras.metrics.Mean(name="my_loss")

    def train_step(self, data: Any) -> dict[str, Any]:
        self.tracker.update_state(self.step(data))
        return {"my_loss": self.tracker.result()}


class TwoTrackersModel(_StepModel):
    """Two running means of the same loss: over rows ("rows", counts 32 a batch and 4 for the
    last) and over batches ("total_loss", counts 1 a batch). They agree until the short last
    batch, so the callback must tell them apart at the epoch's end."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rows_tracker = keras.metrics.Mean(name="rows")
        self.batch_tracker = keras.metrics.Mean(name="total_loss")

    def train_step(self, data: Any) -> dict[str, Any]:
        per_sample = self.step(data)
        self.rows_tracker.update_state(per_sample)
        self.batch_tracker.update_state(tf.reduce_mean(per_sample))
        return {"total_loss": self.batch_tracker.result(), "rows": self.rows_tracker.result()}


CUSTOM_KEYS = [
    (RawKeysModel, "total_loss"), (MeanKeyModel, "total_loss"), (VaeGuideModel, "loss"),
    (TrackedRawModel, "total_loss"), (PerSampleKeyModel, "my_loss"),
    (TwoTrackersModel, "total_loss"), (TwoTrackersModel, "rows"),
]
CUSTOM_IDS = [f"{cls.__name__}-{key}" for cls, key in CUSTOM_KEYS]


@pytest.mark.parametrize(("cls", "key"), CUSTOM_KEYS, ids=CUSTOM_IDS)
def test_callback_with_custom_loss_key_records_each_batch_loss(
    cls: type[keras.Model], key: str
) -> None:
    """Frozen weights, compiled train step: a returned value is recorded as it is and a
    running mean is undone, over two epochs (the trackers reset between them)."""
    data = _data(100)
    model = _dense(cls)
    lt = LossTrend()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0))
    model.fit(*data, epochs=2, batch_size=32, shuffle=False, verbose=0,
              callbacks=[lt.keras_callback(loss_key=key)])
    assert lt.losses() == pytest.approx(_batch_losses(model, data, 32) * 2, rel=1e-4)


@pytest.mark.parametrize(("cls", "key"), CUSTOM_KEYS, ids=CUSTOM_IDS)
def test_callback_with_custom_loss_key_matches_what_train_step_computed(
    cls: type[keras.Model], key: str
) -> None:
    """A learning model run eagerly: the series is the losses its train_step computed."""
    model = _dense(cls)
    lt = LossTrend()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), run_eagerly=True)
    model.fit(*_data(100), epochs=3, batch_size=32, verbose=0,
              callbacks=[lt.keras_callback(loss_key=key)])
    assert len(model.computed) == 12
    assert lt.losses() == pytest.approx(model.computed, rel=1e-4)


@pytest.mark.parametrize("n", [32, 40, 64], ids=["one-batch", "32+8", "32+32"])
@pytest.mark.parametrize("cls", [VaeGuideModel, TwoTrackersModel])
def test_callback_with_custom_train_step_in_short_epochs(cls: type[keras.Model], n: int) -> None:
    """Epochs of one or two batches: too short to read the trackers twice before the end."""
    data = _data(n)
    model = _dense(cls)
    lt = LossTrend()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0))
    model.fit(*data, epochs=2, batch_size=32, shuffle=False, verbose=0,
              callbacks=[lt.keras_callback(loss_key="loss" if cls is VaeGuideModel else
                                           "total_loss")])
    assert lt.losses() == pytest.approx(_batch_losses(model, data, 32) * 2, rel=1e-4)


def test_callback_without_the_loss_key_names_the_keys_it_saw() -> None:
    x, y = _data(320)
    model = _dense(RawKeysModel)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05))
    lt = LossTrend()
    with pytest.raises(LookupError) as err:
        model.fit(x, y, epochs=5, batch_size=32, verbose=0, callbacks=[lt.keras_callback()])
    assert str(err.value) == (
        "losstrend.keras_callback(): Keras' training logs have no 'loss' (they hold 'kl', "
        "'total_loss'). A custom train_step that returns its loss under another name needs "
        "the callback pointed at it: losstrend.keras_callback(loss_key='total_loss')"
    )
    # Stopped within the first epoch of ten batches, not after five epochs.
    assert int(model.optimizer.iterations.numpy()) < 10


class ValKeyModel(RawKeysModel):
    """Also a custom test_step, so validation logs "val_total_loss"."""

    def test_step(self, data: Any) -> dict[str, Any]:
        x, y = data
        return {"total_loss": tf.reduce_mean((self(x) - y) ** 2)}


def test_callback_with_custom_loss_key_records_its_val_twin_as_eval() -> None:
    x, y = _data(160)
    model = _dense(ValKeyModel)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05))
    lt = LossTrend()
    history = model.fit(x, y, epochs=3, batch_size=32, validation_data=(x[:32], y[:32]),
                        verbose=0, callbacks=[lt.keras_callback(loss_key="total_loss")])
    assert lt.series_names == ["train", "eval"]
    assert len(lt.losses()) == 15
    assert lt.losses("eval") == pytest.approx(history.history["val_total_loss"], rel=1e-6)


@pytest.mark.parametrize(
    ("key", "error", "match"),
    [
        (None, TypeError, "takes the name of a key in the training logs .* got NoneType"),
        (3, TypeError, "got int: 3"),
        ("", ValueError, "got an empty string"),
        ("  ", ValueError, "got an empty string"),
        ("val_total_loss", ValueError, r"names a validation key; pass the training key \('tot"),
    ],
)
def test_callback_rejects_a_bad_loss_key_at_creation(
    key: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        LossTrend().keras_callback(loss_key=key)


def test_callback_records_val_loss_per_epoch() -> None:
    x, y = _data(160)
    lt = LossTrend()
    model = _dense()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse")
    history = model.fit(
        x, y, epochs=3, batch_size=32, validation_data=(x[:32], y[:32]),
        callbacks=[lt.keras_callback()], verbose=0,
    )
    assert lt.series_names == ["train", "eval"]
    assert len(lt.losses()) == 3 * 5
    assert lt.losses("eval") == pytest.approx(history.history["val_loss"], rel=1e-6)
    assert lt.framework == "keras"


def test_callback_stops_a_diverging_fit_early() -> None:
    x, y = _data(200)
    lt = LossTrend(fail_fast=True)
    model = _dense()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=3.0), loss="mse")
    with pytest.raises(LossTrendStop, match="diverged"):
        model.fit(
            10 * x, 10 * y, epochs=10, batch_size=20, callbacks=[lt.keras_callback()], verbose=0
        )
    assert len(lt.losses()) < 10  # of 100 batches


# -- judged by the plugin -----------------------------------------------------------------------


@pytest.mark.loss_decreases(min_drop=0.5)
def test_keras_fit_learns(losstrend: LossTrend) -> None:
    x, y = _data(400)
    model = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse")
    model.fit(
        x, y, epochs=3, batch_size=32, validation_split=0.2,
        callbacks=[losstrend.keras_callback()], verbose=0,
    )
    assert len(losstrend.losses()) == 30
    assert len(losstrend.losses("eval")) == 3
    assert losstrend.framework == "keras"


@pytest.mark.loss_fails
def test_keras_fit_with_exploding_learning_rate_is_caught(losstrend: LossTrend) -> None:
    x, y = _data(200)
    model = _dense()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=3.0), loss="mse")
    model.fit(
        10 * x, 10 * y, epochs=10, batch_size=20, callbacks=[losstrend.keras_callback()],
        verbose=0,
    )
    pytest.fail("the diverging fit should have been stopped")  # pragma: no cover


@pytest.mark.loss_decreases(min_drop=0.5)
def test_gradient_tape_loop_records_tf_tensors(losstrend: LossTrend) -> None:
    x, y = _data(256)
    w = tf.Variable(tf.zeros((5, 1)))
    b = tf.Variable(0.0)
    opt = keras.optimizers.Adam(learning_rate=0.05)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(256, seed=0).batch(32).repeat(6)
    for xb, yb in ds:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((xb @ w + b - yb) ** 2)
        opt.apply_gradients(zip(tape.gradient(loss, [w, b]), [w, b], strict=True))
        losstrend.record(loss)
    assert len(losstrend.losses()) == 48
    assert losstrend.framework == "tensorflow"

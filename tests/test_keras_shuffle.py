"""Keras 3 ``fit`` under the fixture's seed reshuffles its batches every epoch, reproducibly.

Under a TensorFlow global seed, Keras' array pipeline would replay one batch order every epoch
(tensorflow#29558), and a per-batch curve would repeat with the period of an epoch. Each batch
is identified here by its first row: the model's ``train_step`` logs the first feature of the
batch's first row, which is unique to that row (the features are random floats).
"""

from __future__ import annotations

import sys
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from pytest_losstrend import LossTrend
from pytest_losstrend.capture.seeding import seed_everything

ROWS, BATCH, EPOCHS = 48, 16, 4  # three batches an epoch


class FirstRowModel(keras.Model):
    """Logs, with each batch's loss, the first feature of the batch's first row."""

    def train_step(self, data: Any) -> dict[str, Any]:
        logs = dict(super().train_step(data))
        logs["first_row"] = data[0][0, 0]
        return logs


class Batches(keras.callbacks.Callback):
    """The ``first_row`` of every batch, as a list per epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[list[float]] = []

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epochs.append([])

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        assert logs is not None
        self.epochs[-1].append(float(logs["first_row"]))


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 1))).astype("float32")
    return x, y


def _fit(lt: LossTrend, data: Any, *, epochs: int = EPOCHS, fits: int = 1,
         **fit_kw: Any) -> list[list[float]]:
    """Train a fresh model (``fits`` calls of ``fit``); each epoch's batches, by first row."""
    inputs = keras.Input((4,))
    model = FirstRowModel(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    seen = Batches()
    for _ in range(fits):
        model.fit(*data, epochs=epochs, callbacks=[lt.keras_callback(), seen], verbose=0,
                  **fit_kw)
    return seen.epochs


def _distinct(epochs: list[list[float]]) -> int:
    return len({tuple(e) for e in epochs})


def test_fit_on_arrays_reshuffles_every_epoch_and_reproduces(losstrend: LossTrend) -> None:
    data = _data()
    epochs = _fit(losstrend, data, batch_size=BATCH)
    assert [len(e) for e in epochs] == [ROWS // BATCH] * EPOCHS
    assert _distinct(epochs) == EPOCHS, f"batch order replayed across epochs: {epochs}"
    curve = losstrend.losses()
    assert len(curve) == EPOCHS * ROWS // BATCH

    # The fixture seeded the run; seeding again with its seed gives the same run bit for bit.
    seed_everything(losstrend.seed or 0)
    again = LossTrend()
    assert _fit(again, data, batch_size=BATCH) == epochs
    assert again.losses() == curve


def test_successive_fits_on_the_same_arrays_reshuffle(losstrend: LossTrend) -> None:
    """``fit(epochs=1)`` in a loop is epochs too: each call takes another order."""
    epochs = _fit(losstrend, _data(), epochs=1, fits=3, batch_size=BATCH)
    assert _distinct(epochs) == 3


def test_another_seed_gives_another_order(losstrend: LossTrend) -> None:
    epochs = _fit(losstrend, _data(), batch_size=BATCH)
    seed_everything((losstrend.seed or 0) + 1)
    assert _fit(LossTrend(), _data(), batch_size=BATCH) != epochs


def test_batch_shuffle_keeps_each_batch_s_rows(losstrend: LossTrend) -> None:
    """``shuffle="batch"`` shuffles within fixed batches, in order: the same rows every epoch."""
    x, y = _data()
    epochs = _fit(losstrend, (x, y), batch_size=BATCH, shuffle="batch")
    chunks = [set(x[i : i + BATCH, 0].tolist()) for i in range(0, ROWS, BATCH)]
    assert all(first in chunk for e in epochs for first, chunk in zip(e, chunks, strict=True))


def test_tf_data_shuffle_reshuffles_every_epoch_under_the_seed(losstrend: LossTrend) -> None:
    """A ``Dataset.shuffle`` without a seed already reshuffles each iteration under a global
    seed, and reproducibly: nothing is changed for it."""
    x, y = _data()

    def dataset() -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(ROWS).batch(BATCH)

    epochs = _fit(losstrend, (dataset(),), shuffle=False)
    assert _distinct(epochs) == EPOCHS
    seed_everything(losstrend.seed or 0)
    assert _fit(LossTrend(), (dataset(),), shuffle=False) == epochs


def test_released_seed_gives_keras_its_own_shuffling_back() -> None:
    """After the test (the fixture's teardown), Keras shuffles as it does alone: under a global
    seed, one order every epoch."""
    from pytest_losstrend.capture import keras_shuffle
    from pytest_losstrend.capture.seeding import release_seed

    seed_everything(3)
    assert keras_shuffle.is_armed()
    release_seed()
    assert not keras_shuffle.is_armed()
    epochs = _fit(LossTrend(), _data(), batch_size=BATCH)
    assert _distinct(epochs) == 1


def test_reshuffling_survives_a_fresh_import_of_its_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pytester's in-process runs drop the modules they imported: a later import of the
    reshuffling module must still arm and disarm the wrapper Keras holds."""
    import importlib

    from pytest_losstrend.capture.seeding import release_seed

    seed_everything(3)
    release_seed()
    name = "pytest_losstrend.capture.keras_shuffle"
    monkeypatch.delitem(sys.modules, name)
    fresh = importlib.import_module(name)
    try:
        seed_everything(3)
        assert fresh.is_armed()
        assert _distinct(_fit(LossTrend(), _data(), batch_size=BATCH)) == EPOCHS
    finally:
        release_seed()
    assert not fresh.is_armed()


def test_without_a_global_seed_keras_shuffles_as_it_does_alone() -> None:
    """No TensorFlow global seed: Keras' own unseeded shuffle, fresh every epoch."""
    from pytest_losstrend.capture.seeding import release_seed

    seed_everything(3)
    tf.random.set_seed(None)
    try:
        epochs = _fit(LossTrend(), _data(), batch_size=BATCH)
    finally:
        release_seed()
    assert _distinct(epochs) == EPOCHS

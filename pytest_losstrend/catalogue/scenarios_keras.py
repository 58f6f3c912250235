"""The Keras scenarios of the catalogue: each a training run, ``run(lt, bad)``, with one known
fault when ``bad`` and fixed otherwise, trained with ``model.fit`` and the recorder's callback.

:data:`~pytest_losstrend.catalogue.scenarios.SCENARIOS` pairs each with its name, cause,
criteria and explanation. Keras is imported inside the functions, so importing this module
costs numpy only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_losstrend.catalogue.scenario_data import digits

if TYPE_CHECKING:
    from pytest_losstrend.capture.recorder import Recorder


def _digits() -> tuple[Any, Any]:
    """The digits, float32 features and int labels, for the frozen-model entries.

    They judge a classifier's cross-entropy on the digits, as their torch counterparts do: a
    frozen model's per-batch loss is then steady enough for the curve alone to confirm the
    stall. On the diabetes regression (MSE) a frozen model's mini-batch noise hides it from
    the curve in most seeds; only Keras' replay of one batch order every epoch under the seed,
    which made the noise repeat exactly, used to get those runs failed (as an oscillation).
    """
    xs, ys = digits()
    return xs.astype("float32"), ys


def _ce() -> Any:
    import keras

    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def keras_lr_too_high(lt: Recorder, bad: bool) -> None:
    import keras

    x = (np.random.rand(100, 1) * 10).astype("float32")
    y = (2 * x + 1 + 0.5 * np.random.randn(100, 1)).astype("float32")
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0 if bad else 0.01),
                  loss="mse")
    lt.watch(model, batch=(x, y))
    model.fit(x, y, epochs=6, batch_size=10, callbacks=[lt.keras_callback()], verbose=0)


def keras_no_learning(lt: Recorder, bad: bool) -> None:
    import keras

    x, y = _digits()
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(10)])
    if bad:
        # Meant to freeze a pretrained base, this freezes the whole model: fit runs, the
        # weights never move and the loss is mini-batch noise around its first level.
        model.trainable = False
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss=_ce())
    lt.watch(model, batch=(x[:256], y[:256]))
    model.fit(x, y, epochs=4, batch_size=64, callbacks=[lt.keras_callback()], verbose=0)


def keras_frozen_weight(lt: Recorder, bad: bool) -> None:
    import keras

    class Linear(keras.layers.Layer):  # type: ignore[misc]
        """A hand-written bias-free dense layer; ``train_kernel=False`` is the bug."""

        def __init__(self, units: int, train_kernel: bool) -> None:
            super().__init__()
            self.units = units
            self.train_kernel = train_kernel

        def build(self, input_shape: tuple[int, ...]) -> None:
            self.kernel = self.add_weight(shape=(input_shape[-1], self.units),
                                          initializer="glorot_uniform",
                                          trainable=self.train_kernel)

        def call(self, inputs: Any) -> Any:
            return inputs @ self.kernel

    x, y = _digits()
    # Every instance of the layer has the bug, so no weight of the model can learn.
    model = keras.Sequential([keras.Input((64,)), Linear(32, train_kernel=not bad),
                              keras.layers.ReLU(), Linear(10, train_kernel=not bad)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss=_ce())
    lt.watch(model, batch=(x[:256], y[:256]))
    model.fit(x, y, epochs=4, batch_size=64, callbacks=[lt.keras_callback()], verbose=0)

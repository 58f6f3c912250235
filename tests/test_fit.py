"""``losstrend.fit``: real training of scikit-learn data with torch and Keras, and its errors.

The marked tests are judged by the plugin itself, so they check that ``fit`` records what the
marker needs; the unmarked ones use a bare :class:`LossTrend` to look at the series and errors.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pytest_losstrend import LossTrend

Arrays = tuple[np.ndarray, np.ndarray]


def _standardize(a: np.ndarray) -> np.ndarray:
    return ((a - a.mean(0)) / a.std(0)).astype("float32")


@pytest.fixture(scope="module")
def diabetes() -> tuple[Arrays, Arrays]:
    """Standardised diabetes: 352 training rows and 90 held out, targets of shape (n, 1)."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    x, y = _standardize(x), _standardize(y[:, None])
    return (x[:352], y[:352]), (x[352:], y[352:])


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 1))


# -- torch -------------------------------------------------------------------------------------


@pytest.mark.loss_decreases(min_drop=0.2)
def test_torch_arrays_with_eval(losstrend: LossTrend, diabetes: tuple[Arrays, Arrays]) -> None:
    train, held = diabetes
    model, series = losstrend.fit(_mlp(), train, loss="mse", optimizer=("adam", 1e-2),
                                  epochs=4, eval_data=held)
    assert isinstance(model, nn.Module)
    assert set(series) == {"train", "eval"}
    assert len(series["train"]) == 4 * 11  # ceil(352 / 32) steps an epoch
    assert len(series["eval"]) == 4
    assert series["eval"][-1] < series["eval"][0]
    assert losstrend.evidence is not None and losstrend.evidence.framework == "torch"


@pytest.mark.loss_decreases(min_drop=0.2)
def test_torch_dataloader(losstrend: LossTrend, diabetes: tuple[Arrays, Arrays]) -> None:
    (x, y), held = diabetes
    loader = DataLoader(TensorDataset(torch.as_tensor(x), torch.as_tensor(y)), batch_size=16,
                        shuffle=True)
    eval_loader = DataLoader(TensorDataset(*map(torch.as_tensor, held)), batch_size=64)
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    _, series = losstrend.fit(model, loader, loss=nn.MSELoss(), optimizer=opt, epochs=2,
                              eval_data=eval_loader)
    assert len(series["train"]) == 2 * 22
    assert len(series["eval"]) == 2


def test_steps_span_epochs(diabetes: tuple[Arrays, Arrays]) -> None:
    (x, y), held = diabetes
    lt = LossTrend()
    # 100 rows in batches of 32: 4 steps an epoch, so 25 steps are 6 epochs and one step.
    _, series = lt.fit(_mlp(), (x[:100], y[:100]), loss="mse", optimizer=torch.optim.SGD, steps=25,
                       eval_data=held)
    assert len(series["train"]) == 25
    assert len(series["eval"]) == 7


def test_neither_steps_nor_epochs_is_one_epoch(diabetes: tuple[Arrays, Arrays]) -> None:
    (x, y), _ = diabetes
    _, series = LossTrend().fit(_mlp(), (x, y), loss="mse", optimizer="sgd", batch_size=64)
    assert series == {"train": series["train"]} and len(series["train"]) == 6


@pytest.mark.loss_decreases(min_drop=0.3)
def test_torch_classification_cross_entropy(losstrend: LossTrend) -> None:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)  # y: int64 class indices
    _, series = losstrend.fit(nn.Linear(30, 2), (_standardize(x), y), loss="cross_entropy",
                              optimizer=(torch.optim.SGD, 0.05), epochs=2, batch_size=64)
    assert len(series["train"]) == 2 * 9


def test_shuffling_follows_the_seed(diabetes: tuple[Arrays, Arrays]) -> None:
    (x, y), _ = diabetes

    def run() -> list[float]:
        torch.manual_seed(0)
        return LossTrend(seed=3).fit(_mlp(), (x, y), loss="mse", optimizer="sgd")[1]["train"]

    assert run() == run()


@pytest.mark.loss_fails(cause="lr_too_high")
def test_diverging_sgd_is_lr_too_high(losstrend: LossTrend) -> None:
    x = torch.rand(100, 1) * 10
    losstrend.fit(nn.Linear(1, 1), (x, 3 * x + 1), loss="mse", optimizer=("sgd", 1.0),
                  steps=200, batch_size=100)


# -- Keras -------------------------------------------------------------------------------------


def _keras_mlp() -> Any:
    inputs = keras.Input((10,))
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1)(hidden))


@pytest.mark.loss_decreases(min_drop=0.2)
def test_keras_arrays(losstrend: LossTrend, diabetes: tuple[Arrays, Arrays]) -> None:
    train, held = diabetes
    _, series = losstrend.fit(_keras_mlp(), train, loss="mse", optimizer=("adam", 1e-2),
                              epochs=3, eval_data=held)
    assert len(series["train"]) == 3 * 11
    assert len(series["eval"]) == 3
    assert losstrend.evidence is not None and losstrend.evidence.input_stats


@pytest.mark.loss_decreases(min_drop=0.2)
def test_keras_dataset_steps(losstrend: LossTrend, diabetes: tuple[Arrays, Arrays]) -> None:
    (x, y), _ = diabetes
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(352, seed=0).batch(32)
    _, series = losstrend.fit(_keras_mlp(), ds, loss="mse", optimizer=("adam", 1e-2), steps=30)
    assert len(series["train"]) == 30  # 11 batches an epoch: stopped inside the third


# -- errors ------------------------------------------------------------------------------------


def _bad(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"loss": "mse", "optimizer": "sgd"}
    base.update(kw)
    return base


X = np.zeros((20, 10), "float32")
Y = np.zeros((20, 1), "float32")


@pytest.mark.parametrize(("data", "kw", "error", "match"), [
    ((X, Y[:15]), {}, ValueError, r"X has 20 rows .* y has 15"),
    ((X, Y[:, 0]), {}, ValueError, r"output has shape \(20, 1\) but y in data has shape \(20,\)"),
    ((X, Y[:, 0]), {"loss": lambda p, t: ((p - t) ** 2).mean()}, ValueError, "broadcast"),
    ((X[:0], Y[:0]), {}, ValueError, "data is empty"),
    ((X, Y), {"loss": nn.MSELoss(reduction="none")}, ValueError,
     r"loss returned \(20, 1\), not a scalar"),
    ((X, Y), {"steps": 0}, ValueError, "steps must be a positive int, got 0"),
    ((X, Y), {"epochs": 1.5}, ValueError, "epochs must be a positive int"),
    ((X, Y), {"batch_size": -1}, ValueError, "batch_size must be a positive int"),
    ((X, Y), {"steps": 3, "epochs": 2}, ValueError, "not both"),
    ((X, Y), {"optimizer": "sgdd"}, ValueError, "unknown optimizer 'sgdd'"),
    ((X, Y), {"optimizer": ("sgd", -1)}, ValueError, "learning rate"),
    ((X, Y), {"loss": "msee"}, ValueError, "unknown loss 'msee'"),
    ((X, Y), {"loss": None}, TypeError, "needs loss="),
    ((X, Y, Y), {}, TypeError, "data must be"),
    ((X, Y), {"eval_data": (X, Y[:3])}, ValueError, "eval_data has X and y"),
], ids=["lengths", "n-vs-n1", "custom-broadcast", "empty", "non-scalar", "steps", "epochs",
        "batch-size", "both", "opt-name", "opt-lr", "loss-name", "no-loss", "triple", "eval"])
def test_torch_bad_input(data: Any, kw: dict[str, Any], error: type[Exception],
                         match: str) -> None:
    with pytest.raises(error, match=match):
        LossTrend().fit(nn.Linear(10, 1), data, steps=kw.pop("steps", 2), **_bad(**kw))


def test_torch_model_with_tf_dataset() -> None:
    ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(4)
    with pytest.raises(TypeError, match=r"data is a tf\.data\.Dataset but the model is a torch"):
        LossTrend().fit(nn.Linear(10, 1), ds, **_bad())


def test_empty_dataloader() -> None:
    loader = DataLoader(TensorDataset(torch.zeros(0, 10), torch.zeros(0, 1)), batch_size=4)
    with pytest.raises(ValueError, match="data is empty: it yielded no batches"):
        LossTrend().fit(nn.Linear(10, 1), loader, **_bad())


def test_keras_model_with_dataloader() -> None:
    loader = DataLoader(TensorDataset(torch.as_tensor(X), torch.as_tensor(Y)), batch_size=4)
    with pytest.raises(TypeError, match="data is a torch DataLoader but the model is a Keras"):
        LossTrend().fit(_keras_mlp(), loader, **_bad())


def test_keras_bad_input() -> None:
    with pytest.raises(ValueError, match=r"X has 20 rows .* y has 15"):
        LossTrend().fit(_keras_mlp(), (X, Y[:15]), **_bad())
    with pytest.raises(ValueError, match=r"output has shape \(-1, 1\) .* shape \(-1, 3\)"):
        LossTrend().fit(_keras_mlp(), (X, np.zeros((20, 3), "float32")), **_bad())
    empty = tf.data.Dataset.from_tensor_slices((X, Y)).batch(4).take(0)
    with pytest.raises(ValueError, match=r"data is an empty tf\.data\.Dataset"):
        LossTrend().fit(_keras_mlp(), empty, **_bad())
    with pytest.raises(TypeError, match="not compiled: pass loss="):
        LossTrend().fit(_keras_mlp(), (X, Y))


def test_neither_framework() -> None:
    with pytest.raises(TypeError, match=r"model must be a torch nn\.Module or a Keras model, got"):
        LossTrend().fit(object(), (X, Y), **_bad())

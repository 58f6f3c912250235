"""Reference levels from real training: ``reference_for`` on torch and Keras losses, the
recorder's per-series references (``set_reference``, ``watch``, ``fit``), the marker failing a
signal-free run as ``chance_level``, and the reference carried into the JSON, Markdown and HTML
reports, the failure message and pytest-xdist.

Every value is checked against the framework's own loss of a constant prediction, on
scikit-learn data; every run trains a real (tiny) model.
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
from scipy.optimize import minimize_scalar
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from pytest_losstrend import LossTrend
from pytest_losstrend.capture.recorder import Recorder
from pytest_losstrend.capture.references import reference_for
from pytest_losstrend.diagnosis.messages import failure_message
from pytest_losstrend.reports.html_chart import chart_svg
from pytest_losstrend.verdict.criteria import Criteria
from pytest_losstrend.verdict.reference import Reference

# -- data --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """Standardised 8x8 digits (1797 rows, 64 features) and their labels 0-9."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    return x.astype("float32"), y.astype("int64")


@pytest.fixture(scope="module")
def cancer() -> np.ndarray:
    """The breast-cancer labels, 0/1 (37% positive... of 569), as float32."""
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer().target.astype("float32")


@pytest.fixture(scope="module")
def diabetes_y() -> np.ndarray:
    """The diabetes targets (442 values, 25 to 346), as float32."""
    from sklearn.datasets import load_diabetes

    return load_diabetes().target.astype("float32")


def _best_constant(loss: Any, y: np.ndarray) -> float:
    """The smallest value of the framework's ``loss(prediction, target)`` over constant
    predictions, found numerically (for the Huber-type losses)."""
    t = torch.tensor(y, dtype=torch.float64)
    res = minimize_scalar(lambda c: float(loss(torch.full_like(t, c), t)),
                          bounds=(float(y.min()), float(y.max())), method="bounded",
                          options={"xatol": 1e-10})
    return float(res.fun)


# -- reference_for: each loss against the framework's own loss of the best constant ------------


def test_torch_cross_entropy_and_nll_are_the_loss_of_the_label_frequencies(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    y = torch.tensor(digits[1])
    freq = torch.bincount(y).double() / len(y)
    logits = freq.log().expand(len(y), -1)
    expected = float(nn.CrossEntropyLoss()(logits, y))
    for loss in (nn.CrossEntropyLoss(), F.cross_entropy, "cross_entropy", nn.NLLLoss(),
                 F.nll_loss):
        ref = reference_for(loss, y)
        assert ref is not None, loss
        assert ref.value == pytest.approx(expected, rel=1e-9), loss
    # Digits: ten nearly balanced classes, so nearly ln 10.
    assert expected == pytest.approx(math.log(10), abs=0.01)


def test_torch_cross_entropy_on_probability_rows_along_dim_1() -> None:
    """Soft targets (N, C, d): the entropy of the mean row, the loss of predicting it."""
    g = torch.Generator().manual_seed(0)
    y = torch.softmax(torch.randn(40, 4, 3, generator=g), dim=1)
    mean = y.mean(dim=(0, 2))
    logits = mean.log()[None, :, None].expand(40, 4, 3)
    ref = reference_for(nn.CrossEntropyLoss(), y)
    assert ref is not None
    assert ref.value == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-6)


def test_torch_cross_entropy_leaves_out_ignore_index() -> None:
    y = torch.tensor([0, 1, 1, 1, -100, -100, 3, 3, 3, 3])
    kept = y[y != -100]
    assert reference_for(nn.CrossEntropyLoss(), y).value == pytest.approx(
        reference_for(nn.CrossEntropyLoss(), kept).value)
    ref = reference_for(nn.CrossEntropyLoss(ignore_index=3), y[y != -100])
    assert ref is not None and ref.value == pytest.approx(-(0.25 * math.log(0.25)
                                                            + 0.75 * math.log(0.75)))


def test_torch_binary_cross_entropy_is_h_of_the_positive_rate(cancer: np.ndarray) -> None:
    y = torch.tensor(cancer)
    p = float(y.mean())
    by_prob = float(nn.BCELoss()(torch.full_like(y, p), y))
    by_logit = float(nn.BCEWithLogitsLoss()(torch.full_like(y, math.log(p / (1 - p))), y))
    for loss in (nn.BCELoss(), nn.BCEWithLogitsLoss(), F.binary_cross_entropy,
                 F.binary_cross_entropy_with_logits, "bce_with_logits"):
        ref = reference_for(loss, y)
        assert ref is not None, loss
        assert ref.value == pytest.approx(by_prob, rel=1e-5), loss
        assert ref.value == pytest.approx(by_logit, rel=1e-5), loss


def test_hand_computed_values() -> None:
    # H(1/4) = -(1/4 ln 1/4 + 3/4 ln 3/4)
    assert reference_for(nn.BCELoss(), [1.0, 0.0, 0.0, 0.0]).value == pytest.approx(0.562335,
                                                                                     abs=1e-6)
    # Frequencies 1/2, 1/4, 1/4: -(1/2 ln 1/2 + 2 * 1/4 ln 1/4) = 1.5 ln 2
    assert reference_for(nn.CrossEntropyLoss(), torch.tensor([0, 0, 1, 2])).value == (
        pytest.approx(1.5 * math.log(2)))
    # Variance of 1, 2, 3, 4 (population): 1.25; mean absolute deviation from the median: 1.
    assert reference_for(nn.MSELoss(), [1.0, 2.0, 3.0, 4.0]).value == pytest.approx(1.25)
    assert reference_for(nn.L1Loss(), [1.0, 2.0, 3.0, 4.0]).value == pytest.approx(1.0)
    # Huber with delta 1 on 0 and 10: the constant 5 is 5 away from each: 1 * (5 - 0.5).
    assert reference_for(nn.HuberLoss(), [0.0, 10.0]).value == pytest.approx(4.5)
    # Smooth L1 with beta 2 is Huber(delta=2) / 2: (2 * (5 - 1)) / 2.
    assert reference_for(nn.SmoothL1Loss(beta=2.0), [0.0, 10.0]).value == pytest.approx(4.0)


def test_torch_regression_losses(diabetes_y: np.ndarray) -> None:
    y = torch.tensor(diabetes_y)
    mse = float(nn.MSELoss()(torch.full_like(y, float(y.double().mean())), y))
    l1 = float(nn.L1Loss()(torch.full_like(y, float(np.median(diabetes_y))), y))
    for loss in (nn.MSELoss(), F.mse_loss, "mse"):
        assert reference_for(loss, y).value == pytest.approx(mse, rel=1e-5), loss
    for loss in (nn.L1Loss(), F.l1_loss, "l1"):
        assert reference_for(loss, y).value == pytest.approx(l1, rel=1e-6), loss
    # Targets of shape (N, 1), as a regression model outputs them, give the same level.
    assert reference_for(nn.MSELoss(), y[:, None]).value == pytest.approx(mse, rel=1e-5)


@pytest.mark.parametrize("delta", [1.0, 30.0])
def test_torch_huber_and_smooth_l1_are_their_best_constant(diabetes_y: np.ndarray,
                                                           delta: float) -> None:
    y = diabetes_y
    for loss in (nn.HuberLoss(delta=delta), functools.partial(F.huber_loss, delta=delta),
                 nn.SmoothL1Loss(beta=delta), functools.partial(F.smooth_l1_loss, beta=delta)):
        ref = reference_for(loss, torch.tensor(y))
        assert ref is not None, loss
        assert ref.value == pytest.approx(_best_constant(loss, y), rel=1e-6), loss
    assert reference_for(nn.SmoothL1Loss(beta=0.0), y).value == pytest.approx(
        reference_for(nn.L1Loss(), y).value)


def test_keras_losses_against_keras_on_a_constant_prediction(
    digits: tuple[np.ndarray, np.ndarray], cancer: np.ndarray, diabetes_y: np.ndarray,
) -> None:
    labels = digits[1]
    freq = np.bincount(labels) / len(labels)
    probs = np.tile(freq, (len(labels), 1)).astype("float32")
    one_hot = np.eye(10, dtype="float32")[labels]
    p = float(cancer.mean())
    pairs: list[tuple[Any, Any, Any]] = [
        (keras.losses.SparseCategoricalCrossentropy(), labels, probs),
        (keras.losses.sparse_categorical_crossentropy, labels[:, None], probs),
        ("sparse_categorical_crossentropy", tf.constant(labels), probs),
        (keras.losses.CategoricalCrossentropy(), one_hot, probs),
        ("categorical_crossentropy", one_hot, probs),
        (keras.losses.BinaryCrossentropy(), cancer[:, None], np.full((len(cancer), 1), p)),
        ("binary_crossentropy", cancer[:, None], np.full((len(cancer), 1), p)),
        (keras.losses.MeanSquaredError(), diabetes_y[:, None],
         np.full((len(diabetes_y), 1), diabetes_y.astype("float64").mean())),
        ("mse", diabetes_y[:, None],
         np.full((len(diabetes_y), 1), diabetes_y.astype("float64").mean())),
        (keras.losses.MeanAbsoluteError(), diabetes_y[:, None],
         np.full((len(diabetes_y), 1), np.median(diabetes_y))),
        (keras.losses.mean_absolute_error, diabetes_y[:, None],
         np.full((len(diabetes_y), 1), np.median(diabetes_y))),
    ]
    for loss, y, pred in pairs:
        fn = keras.losses.get(loss) if isinstance(loss, str) else loss
        expected = float(np.mean(fn(y, pred.astype("float32"))))
        ref = reference_for(loss, y)
        assert ref is not None, loss
        assert ref.value == pytest.approx(expected, rel=1e-4), loss


def test_keras_huber_is_its_best_constant(diabetes_y: np.ndarray) -> None:
    y = diabetes_y.astype("float64")
    for delta in (1.0, 30.0):
        loss = keras.losses.Huber(delta=delta)
        res = minimize_scalar(lambda c, loss=loss: float(loss(y, np.full_like(y, c))),
                              bounds=(y.min(), y.max()), method="bounded",
                              options={"xatol": 1e-9})
        assert reference_for(loss, y).value == pytest.approx(float(res.fun), rel=1e-5)
    assert reference_for(keras.losses.huber, y).value == pytest.approx(
        reference_for(nn.HuberLoss(), y).value)


class _MyMSE(nn.MSELoss):
    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 2 * super().forward(pred, target)


class _MyKerasMSE(keras.losses.MeanSquaredError):  # type: ignore[misc]
    pass


@pytest.mark.parametrize("loss", [
    nn.MSELoss(reduction="sum"),
    nn.MSELoss(reduction="none"),
    nn.CrossEntropyLoss(label_smoothing=0.1),
    nn.CrossEntropyLoss(weight=torch.ones(3)),
    nn.NLLLoss(weight=torch.ones(3)),
    nn.BCEWithLogitsLoss(pos_weight=torch.tensor(2.0)),
    nn.BCELoss(weight=torch.ones(6)),
    functools.partial(F.cross_entropy, label_smoothing=0.2),
    functools.partial(F.mse_loss, reduction="sum"),
    nn.KLDivLoss(),
    _MyMSE(),
    lambda pred, target: ((pred - target) ** 2).mean(),
    keras.losses.MeanSquaredError(reduction="sum"),
    keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
    keras.losses.KLDivergence(),
    _MyKerasMSE(),
    "kl_divergence",
    "hinge",
], ids=lambda loss: getattr(loss, "__name__", None) or repr(loss)[:40])
def test_no_reference_when_the_units_differ_or_the_loss_is_unknown(loss: Any) -> None:
    y = np.array([0, 1, 2, 0, 1, 2])
    assert reference_for(loss, y) is None


def test_targets_that_do_not_fit_the_loss_give_none() -> None:
    assert reference_for(nn.BCELoss(), [0.0, 2.0]) is None           # not in [0, 1]
    assert reference_for(nn.CrossEntropyLoss(), [0.5, 1.0]) is None  # not class indices
    assert reference_for(nn.MSELoss(), [1.0, float("nan")]) is None
    assert reference_for(nn.MSELoss(), []) is None
    assert reference_for(nn.MSELoss(), ["a", "b"]) is None
    # A tensor that holds no values: no level, and watch goes on.
    meta = torch.empty(4, 1, device="meta")
    assert reference_for(nn.MSELoss(), meta) is None
    lt = Recorder()
    lt.watch(nn.Linear(2, 1), None, loss_fn=nn.MSELoss(), batch=(torch.empty(4, 2), meta))
    assert lt.references == {}


def test_targets_with_a_graph_are_read_without_keeping_it() -> None:
    w = torch.ones(5, requires_grad=True)
    y = (w * torch.arange(5.0)).unsqueeze(1)   # a tensor holding an autograd graph
    ref = reference_for(nn.MSELoss(), y)
    assert ref is not None and ref.value == pytest.approx(2.0)
    lt = Recorder()
    lt.set_reference(nn.MSELoss(), y)
    # Only the level is kept: the recorder holds no tensor, so no graph.
    entry = lt._references["train"]
    assert not any(isinstance(getattr(entry, k), torch.Tensor) for k in entry.__slots__)
    assert entry.pending is None and y.grad_fn is not None


# -- the recorder ----------------------------------------------------------------------------


def test_set_reference_returns_it_and_the_recorder_keeps_it_per_series() -> None:
    lt = Recorder()
    ref = lt.set_reference(nn.CrossEntropyLoss(), torch.arange(10).repeat(3))
    assert ref is not None and ref.value == pytest.approx(math.log(10))
    assert lt.set_reference("mse", np.array([1.0, 2.0, 3.0, 4.0]), series="eval") == Reference(
        1.25, "the variance of the targets (1.25: predicting their mean)")
    assert set(lt.references) == {"train", "eval"}
    assert lt.reference_source("train", lt.references["train"]) == (
        "the 30 targets given to set_reference()")
    # An unknown loss: None, and the series has no reference any more.
    assert lt.set_reference(lambda p, t: p, [1.0, 2.0], series="eval") is None
    assert set(lt.references) == {"train"}


@pytest.mark.parametrize("series", [None, "", 3, ("train",)])
def test_set_reference_series_must_be_a_string(series: Any) -> None:
    with pytest.raises(TypeError, match="series must be a non-empty string"):
        Recorder().set_reference("mse", [1.0, 2.0], series=series)


def test_watch_sets_the_train_reference_unless_one_was_set(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    x, y = (torch.tensor(a) for a in digits)
    model = nn.Linear(64, 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    lt = Recorder()
    lt.watch(model, opt, loss_fn=nn.CrossEntropyLoss(), batch=(x[:200], y[:200]))
    ref = lt.references["train"]
    assert ref.value == pytest.approx(float(reference_for("cross_entropy", y[:200]).value))
    assert lt.reference_source("train", ref) == "the 200 targets of the batch given to watch()"
    # A second watch does not replace it; set_reference does, and a later watch keeps it.
    lt.watch(model, opt, loss_fn=nn.MSELoss(), batch=(x, torch.zeros(len(x))))
    assert lt.references["train"] is ref
    mine = lt.set_reference(nn.CrossEntropyLoss(), y)
    lt.watch(model, opt, loss_fn=nn.CrossEntropyLoss(), batch=(x[:5], y[:5]))
    assert lt.references["train"] is mine
    # Without loss_fn a torch watch knows no loss: no reference.
    other = Recorder()
    other.watch(model, opt, batch=(x, y))
    assert other.references == {}


def test_keras_watch_reads_the_compiled_loss_when_needed(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    x, y = digits
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    lt = Recorder()
    lt.watch(model, batch=(x[:300], y[:300]))   # watched before it is compiled
    assert lt.references == {}
    model.compile(optimizer="sgd",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert lt.references["train"].value == pytest.approx(
        reference_for("cross_entropy", y[:300]).value)


def _mlp(d_in: int = 64, d_out: int = 10) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, 32), nn.ReLU(), nn.Linear(32, d_out))


def test_torch_fit_on_shuffled_labels_fails_at_chance(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    x, y = digits
    shuffled = np.random.default_rng(0).permutation(y)
    lt = LossTrend(seed=0)
    torch.manual_seed(0)
    lt.fit(_mlp(), (x[:1500], shuffled[:1500]), loss="cross_entropy",
           optimizer=("adam", 1e-2), epochs=2, eval_data=(x[1500:], shuffled[1500:]))
    verdict = lt.check()
    assert verdict.status == "fail" and verdict.kind == "chance_level", verdict.reason
    assert "reference level 2.30" in verdict.reason
    assert lt.reference_source("train", lt.references["train"]) == (
        "the 1500 targets given to fit() to train on")
    assert lt.reference_source("eval", lt.references["eval"]) == (
        "the 297 targets given to fit() as eval_data")
    # The eval series is judged against its own reference too.
    assert lt.judgment().series["eval"].reference is lt.references["eval"]
    # reference=None turns it off: the same curve is no longer held to chance.
    assert lt.check(reference=None).kind != "chance_level"

    healthy = LossTrend(seed=0)
    torch.manual_seed(0)
    healthy.fit(_mlp(), (x[:1500], y[:1500]), loss="cross_entropy",
                optimizer=("adam", 1e-2), epochs=2)
    assert healthy.check().ok, healthy.check().reason


def test_torch_fit_gathers_a_dataloaders_targets(digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = (torch.tensor(a) for a in digits)
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    lt = LossTrend(seed=0)
    lt.fit(_mlp(), loader, loss=nn.CrossEntropyLoss(), optimizer=("adam", 1e-2), epochs=1,
           eval_data=DataLoader(TensorDataset(x[:100], y[:100]), batch_size=50))
    assert lt.references["train"].value == pytest.approx(reference_for("cross_entropy", y).value)
    assert lt.reference_source("train", lt.references["train"]) == (
        "the 1797 targets given to fit() to train on")
    assert lt.references["eval"].value == pytest.approx(
        reference_for("cross_entropy", y[:100]).value)
    # A custom loss: fit derives no reference, and replaces none a watch derived.
    custom = LossTrend(seed=0)
    custom.fit(_mlp(), (digits[0], digits[1]),
               loss=lambda p, t: F.cross_entropy(p, t) + 0.0, optimizer="adam", steps=3)
    assert custom.references == {}


def _keras_mlp() -> keras.Model:
    return keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                             keras.layers.Dense(10)])


def test_keras_fit_on_shuffled_labels_fails_at_chance(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    x, y = digits
    shuffled = np.random.default_rng(0).permutation(y)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    keras.utils.set_random_seed(0)
    lt = LossTrend(seed=0)
    lt.fit(_keras_mlp(), (x[:1500], shuffled[:1500]), loss=loss, optimizer=("adam", 1e-2),
           epochs=2, eval_data=(x[1500:], shuffled[1500:]))
    verdict = lt.check()
    assert verdict.status == "fail" and verdict.kind == "chance_level", verdict.reason
    assert lt.references["train"].value == pytest.approx(
        reference_for("cross_entropy", shuffled[:1500]).value)
    assert "eval" in lt.references

    keras.utils.set_random_seed(0)
    healthy = LossTrend(seed=0)
    healthy.fit(_keras_mlp(), (x[:1500], y[:1500]), loss=loss, optimizer=("adam", 1e-2),
                epochs=2)
    assert healthy.check().ok, healthy.check().reason


def test_keras_fit_reads_a_datasets_targets(digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = digits
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(100)
    lt = LossTrend(seed=0)
    lt.fit(_keras_mlp(), ds, loss="sparse_categorical_crossentropy", optimizer="adam", steps=5,
           eval_data=tf.data.Dataset.from_tensor_slices((x[:64], y[:64])).batch(32))
    # The five batches training uses.
    assert lt.references["train"].value == pytest.approx(
        reference_for("cross_entropy", y[:500]).value)
    assert lt.reference_source("train", lt.references["train"]) == (
        "the 500 targets given to fit() to train on")
    assert lt.references["eval"].value == pytest.approx(
        reference_for("cross_entropy", y[:64]).value)


# -- the failure message and the chart --------------------------------------------------------


def test_failure_message_states_the_reference_and_its_source() -> None:
    lt = Recorder()
    lt.set_reference("cross_entropy", np.repeat(np.arange(10), 3))
    lt.record([2.31, 2.30, 2.32, 2.29, 2.31, 2.30, 2.30, 2.31, 2.30, 2.30])
    verdict = lt.check()
    assert verdict.kind == "chance_level"
    msg = failure_message(verdict, lt.losses(), lt.criteria, **lt.reference_note(lt.criteria))
    lines = msg.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith("  figures:"))
    assert lines[at + 1] == (
        "  reference: 2.303, the entropy of the label frequencies (ln 10 = 2.303: 10 balanced "
        "classes), from the 30 targets given to set_reference(); the run ended at 0.999x it")
    # A number set by the criterion has no source.
    crit = Criteria(reference=2.5)
    msg = failure_message(lt.check(reference=2.5), lt.losses(), crit,
                          **lt.reference_note(crit))
    assert "  reference: 2.5, reference=2.5, as the test set it; the run ended at" in msg


def _ys(svg: str, cls: str) -> list[float]:
    return [float(v) for v in re.findall(rf'<line class="{cls}"[^>]* y1="([-0-9.]+)"', svg)]


def test_chart_draws_the_reference_as_a_dashed_labelled_line() -> None:
    losses = [2.4, 2.0, 1.5, 1.1, 0.9]
    svg = chart_svg("train", losses, None, reference=2.302585)
    assert 'class="reference"' in svg and 'stroke-dasharray="6 4"' in svg
    assert ">reference 2.303</text>" in svg
    (y,) = _ys(svg, "reference")
    assert 14 <= y <= 184   # inside the plot area
    # Above the curve's top: the reference sits above every point of the curve.
    points = [float(p.split(",")[1]) for p in re.search(r'class="loss" points="([^"]+)"',
                                                       svg)[1].split()]
    assert y < min(points[1:])


def test_chart_holds_the_reference_on_a_log_axis() -> None:
    # The curve spans four decades: a log axis; a reference below the curve widens it.
    losses = [100.0 * 0.5**k for k in range(14)]
    svg = chart_svg("train", losses, None, reference=0.001)
    assert "loss (log)" in svg
    (y,) = _ys(svg, "reference")
    assert 14 <= y <= 184
    assert ">reference 0.001</text>" in svg


@pytest.mark.parametrize("reference", [None, 0.0, -1.0, float("nan"), "x"])
def test_chart_without_a_usable_reference_draws_none(reference: Any) -> None:
    svg = chart_svg("train", [2.0, 1.0, 0.5], None, reference=reference)
    assert 'class="reference"' not in svg


# -- the marker, the reports, pytest-xdist ----------------------------------------------------

INNER = '''
import numpy as np
import pytest
import torch
from torch import nn

d = np.load("digits.npz")
X, Y = torch.tensor(d["x"]), torch.tensor(d["y"])
SHUFFLED = torch.tensor(np.random.default_rng(0).permutation(d["y"]))


def train(losstrend, y, steps=60):
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()
    losstrend.watch(model, opt, loss_fn=loss_fn, batch=(X[:256], y[:256]))
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(len(X), (64,), generator=g)
        opt.zero_grad()
        loss = loss_fn(model(X[idx]), y[idx])
        loss.backward()
        opt.step()
        losstrend.record(loss)


@pytest.mark.loss_decreases
def test_signal_free(losstrend):
    train(losstrend, SHUFFLED)


@pytest.mark.loss_decreases
def test_healthy(losstrend):
    train(losstrend, Y)


# A test asking for a small drop: the signal-free curve falls that much (the model memorises a
# little), so only the reference level tells it from learning.
@pytest.mark.loss_decreases(min_drop=0.02)
def test_small_drop(losstrend):
    train(losstrend, SHUFFLED)


@pytest.mark.loss_decreases(min_drop=0.02, reference=None)
def test_small_drop_reference_off(losstrend):
    train(losstrend, SHUFFLED)
'''


@pytest.fixture
def digits_pytester(lt_pytester: pytest.Pytester,
                    digits: tuple[np.ndarray, np.ndarray]) -> pytest.Pytester:
    np.savez(lt_pytester.path / "digits.npz", x=digits[0], y=digits[1])
    lt_pytester.makepyfile(test_inner=INNER)
    return lt_pytester


REPORTS = ("--losstrend-report=json:r.json", "--losstrend-report=md:r.md",
           "--losstrend-report=html:r.html")


def test_marker_fails_a_signal_free_run_at_chance_and_names_the_reference(
    digits_pytester: pytest.Pytester,
) -> None:
    result = digits_pytester.runpytest_inprocess("-p", "no:cacheprovider", *REPORTS)
    result.assert_outcomes(passed=2, failed=2)
    out = result.stdout.str()
    assert re.search(r"loss_decreases FAILED on series 'train': no better than chance: ended at "
                     r"2\.\d+, not 10% below the reference level 2\.\d+, the entropy of the "
                     r"label frequencies", out), out
    assert re.search(r"\n  reference: 2\.\d+, the entropy of the label frequencies \(2\.\d+ over "
                     r"10 classes\), from the 256 targets of the batch given to watch\(\); the "
                     r"run ended at 0\.9\d+x it\n", out), out
    result.stdout.fnmatch_lines(["*FAILED test_inner.py::test_signal_free - *",
                                 "*FAILED test_inner.py::test_small_drop - *"])

    import jsonschema

    from pytest_losstrend.reports.report import SCHEMA_PATH

    doc = json.loads((digits_pytester.path / "r.json").read_text())
    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))
    tests = {t["nodeid"].rsplit("::", 1)[-1]: t for t in doc["tests"]}
    bad, good, small, off = (tests[k] for k in ("test_signal_free", "test_healthy",
                                                "test_small_drop",
                                                "test_small_drop_reference_off"))
    assert bad["verdict"]["kind"] == small["verdict"]["kind"] == "chance_level"
    ref = bad["series"]["train"]["reference"]
    assert set(ref) == {"value", "how", "source"}
    assert ref["value"] == pytest.approx(reference_for("cross_entropy",
                                                       _shuffled(digits_pytester)[:256]).value)
    assert ref["source"] == "the 256 targets of the batch given to watch()"
    assert good["verdict"]["ok"] and "reference" in good["series"]["train"]
    # reference=None: the same curve passes on its small drop, and no reference is reported.
    assert off["verdict"]["ok"] and off["outcome"] == "passed"
    assert off["series"]["train"]["losses"] == small["series"]["train"]["losses"]
    assert "reference" not in off["series"]["train"]

    md = (digits_pytester.path / "r.md").read_text()
    head = next(ln for ln in md.splitlines() if ln.startswith("| test |"))
    assert "| reference |" in head
    row = next(ln for ln in md.splitlines() if "test_signal_free`" in ln)
    assert f"| {ref['value']:.3g} |" in row
    off_row = next(ln for ln in md.splitlines() if "test_small_drop_reference_off`" in ln)
    assert "| - |" in off_row

    html = (digits_pytester.path / "r.html").read_text()
    assert html.count('<line class="reference"') == 3   # the runs judged against it
    assert f">reference {ref['value']:.4g}</text>" in html
    assert "from the 256 targets of the batch given to watch()" in html


def _shuffled(p: pytest.Pytester) -> np.ndarray:
    y = np.load(p.path / "digits.npz")["y"]
    return np.random.default_rng(0).permutation(y)


def test_the_reference_survives_pytest_xdist(digits_pytester: pytest.Pytester) -> None:
    serial = digits_pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist",
                                                  *REPORTS)
    serial.assert_outcomes(passed=2, failed=2)
    one = {ext: (digits_pytester.path / f"r.{ext}").read_text() for ext in ("json", "md", "html")}
    workers = digits_pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", *REPORTS)
    workers.assert_outcomes(passed=2, failed=2)
    two = {ext: (digits_pytester.path / f"r.{ext}").read_text() for ext in ("json", "md", "html")}
    assert two == one
    doc = json.loads(two["json"])
    refs = {t["nodeid"].rsplit("::", 1)[-1]: t["series"]["train"].get("reference")
            for t in doc["tests"]}
    assert refs["test_signal_free"]["source"] == "the 256 targets of the batch given to watch()"
    assert refs["test_healthy"]["value"] == pytest.approx(2.30, abs=0.02)
    assert refs["test_small_drop"] == refs["test_signal_free"]
    assert refs["test_small_drop_reference_off"] is None

"""Reference levels agree with the frameworks' own losses of the best constant predictor."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_losstrend.verdict.reference import canonical_loss, reference_level

torch = pytest.importorskip("torch")
F = torch.nn.functional


def test_cross_entropy_is_the_loss_of_predicting_the_label_frequencies() -> None:
    from sklearn.datasets import load_digits

    y = load_digits().target
    ref = reference_level("CrossEntropyLoss", y)
    freq = np.bincount(y) / len(y)
    logits = torch.tensor(np.log(freq), dtype=torch.float64).expand(len(y), -1)
    assert ref.value == pytest.approx(float(F.cross_entropy(logits, torch.tensor(y))), rel=1e-9)
    assert abs(ref.value - math.log(10)) < 0.01  # digits: ten nearly balanced classes


def test_balanced_classes_read_ln_c() -> None:
    ref = reference_level("sparse_categorical_crossentropy", np.repeat(np.arange(4), 25))
    assert ref.value == pytest.approx(math.log(4))
    assert "ln 4" in ref.how


def test_one_hot_rows_give_the_same_entropy_as_indices() -> None:
    y = np.array([0, 0, 1, 2, 2, 2])
    assert reference_level("categorical_crossentropy", np.eye(3)[y]).value == pytest.approx(
        reference_level("cross_entropy", y).value)


def test_binary_cross_entropy_is_h_of_the_positive_rate() -> None:
    from sklearn.datasets import load_breast_cancer

    y = load_breast_cancer().target.astype(np.float64)
    ref = reference_level("BCEWithLogitsLoss", y)
    p = y.mean()
    pred = torch.full((len(y),), float(p), dtype=torch.float64)
    assert ref.value == pytest.approx(float(F.binary_cross_entropy(pred, torch.tensor(y))))


@pytest.mark.parametrize("loss", ["mse", "l1", "huber"])
def test_regression_references_are_the_best_constants_loss(loss: str) -> None:
    from sklearn.datasets import load_diabetes

    y = load_diabetes().target / 100.0
    ref = reference_level(loss, y)
    t = torch.tensor(y)
    fn = {"mse": F.mse_loss, "l1": F.l1_loss, "huber": F.huber_loss}[loss]
    grid = np.linspace(y.min(), y.max(), 4001)
    best = min(float(fn(torch.full_like(t, c), t)) for c in grid)
    assert ref.value <= best + 1e-9
    assert ref.value == pytest.approx(best, rel=1e-4)


def test_multi_output_mse_averages_the_outputs() -> None:
    y = np.column_stack([np.arange(10.0), 10 * np.arange(10.0)])
    t = torch.tensor(y)
    assert reference_level("mse", y).value == pytest.approx(
        float(F.mse_loss(t.mean(0).expand_as(t), t)))


@pytest.mark.parametrize(("loss", "targets", "says"), [
    ("hinge", [0, 1], "no reference level for the loss 'hinge'"),
    ("mse", [], "empty targets"),
    ("mse", [1.0, float("nan")], "not all finite"),
    ("cross_entropy", [0.5, 1.0], "class indices"),
    ("binary_cross_entropy", [0.0, 2.0], "in [0, 1]"),
])
def test_bad_input_is_an_error_naming_it(loss: str, targets: list[float], says: str) -> None:
    with pytest.raises(ValueError, match=says.replace("[", r"\[").replace("]", r"\]")):
        reference_level(loss, targets)


def test_spellings_of_torch_and_keras_are_known() -> None:
    assert canonical_loss("MSELoss") == "mse"
    assert canonical_loss("mean_absolute_error") == "l1"
    assert canonical_loss("SmoothL1Loss") == "huber"
    assert canonical_loss("made_up") is None

"""The top Hessian eigenvalue by power iteration, against ``numpy.linalg.eigvalsh``.

For mean squared error of a linear model the Hessian is exact and constant: ``H = 2 AᵀA / N``
with ``A`` the inputs and a ones column for the bias. The power iteration on Hessian-vector
products (torch double backward, TensorFlow nested tapes) must find its top eigenvalue to 1%.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import numpy as np
import pytest
import torch

from pytest_losstrend.capture.sharpness import (
    power_iteration,
    top_eigenvalue,
    top_hessian_eigenvalue_tf,
    top_hessian_eigenvalue_torch,
)

Data = tuple[np.ndarray, np.ndarray]


def _synthetic() -> Data:
    """256 x 6 Gaussian features, one of them x10, and a noisy linear target."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 6))
    x[:, 2] *= 10
    return x, x @ rng.standard_normal(6) + 0.1 * rng.standard_normal(256)


def _close_gap() -> Data:
    """Two large features of similar scale (x10 and x8): λ₂/λ₁ about 0.64, a slower start."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 5))
    x[:, 0] *= 10
    x[:, 1] *= 8
    return x, x.sum(1)


def _diabetes() -> Data:
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    return x, y


def _diabetes_raw() -> Data:
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True, scaled=False)
    return x, y


DATASETS: dict[str, Callable[[], Data]] = {
    "synthetic_x10": _synthetic,
    "close_gap": _close_gap,
    "diabetes": _diabetes,
    "diabetes_raw": _diabetes_raw,
}


def _exact(x: np.ndarray) -> float:
    """The top eigenvalue of the MSE Hessian of a linear model with a bias."""
    a = np.c_[x.astype(np.float32).astype(np.float64), np.ones(len(x))]
    return float(np.linalg.eigvalsh(2 * a.T @ a / len(a))[-1])


@pytest.mark.parametrize("name", list(DATASETS))
def test_torch_matches_eigvalsh(name: str) -> None:
    x, y = DATASETS[name]()
    torch.manual_seed(0)
    model = torch.nn.Linear(x.shape[1], 1)
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.float32)[:, None]
    got = top_hessian_eigenvalue_torch(model, torch.nn.functional.mse_loss, xt, yt)
    exact = _exact(x)
    assert got == pytest.approx(exact, rel=0.01)


@pytest.fixture(scope="module")
def keras() -> ModuleType:
    """Keras on TensorFlow, imported once (the import takes seconds, not the test)."""
    return pytest.importorskip("keras")


@pytest.mark.parametrize("name", ["synthetic_x10", "close_gap", "diabetes"])
def test_tf_matches_eigvalsh(name: str, keras: ModuleType) -> None:
    x, y = DATASETS[name]()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(1)])
    got = top_hessian_eigenvalue_tf(model, keras.losses.MeanSquaredError(),
                                    x.astype("float32"), y[:, None].astype("float32"))
    assert got == pytest.approx(_exact(x), rel=0.01)


class _Quadratic(torch.nn.Module):
    """A 'model' whose prediction is its own parameter vector, for a loss ½ wᵀDw."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w


def test_negative_dominant_eigenvalue_is_shifted_away() -> None:
    # Eigenvalues -5, 1, 2: power iteration first finds -5 (largest magnitude); the shifted
    # rerun on H + 5I (eigenvalues 0, 6, 7) finds 7, so the top eigenvalue is 2.
    d = torch.tensor([-5.0, 1.0, 2.0])

    def loss(pred: torch.Tensor, _: object) -> torch.Tensor:
        return 0.5 * (d * pred * pred).sum()

    got = top_hessian_eigenvalue_torch(_Quadratic(3), loss, torch.zeros(1), None)
    assert got == pytest.approx(2.0, rel=1e-3)


def test_concave_loss_gives_its_largest_negative_eigenvalue() -> None:
    d = torch.tensor([-5.0, -1.0, -3.0])

    def loss(pred: torch.Tensor, _: object) -> torch.Tensor:
        return 0.5 * (d * pred * pred).sum()

    got = top_hessian_eigenvalue_torch(_Quadratic(3), loss, torch.zeros(1), None)
    assert got == pytest.approx(-1.0, rel=1e-2)


def test_loss_linear_in_the_parameters_has_zero_curvature() -> None:
    model = torch.nn.Linear(3, 1)
    x = torch.randn(8, 3)
    got = top_hessian_eigenvalue_torch(model, lambda p, y: p.sum(), x, None)
    assert got == 0.0


def test_modes_grads_and_global_rng_are_left_alone() -> None:
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8),
                                torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
    model.train()
    model[2].eval()  # a mixed state must come back as it was
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    state = torch.random.get_rng_state()
    running = model[1].running_mean.clone()
    first = top_hessian_eigenvalue_torch(model, torch.nn.functional.mse_loss, x, y)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert [m.training for m in model] == [True, True, False, True]
    assert all(p.grad is None for p in model.parameters())
    # Eval mode: batch norm used, and did not update, its running statistics.
    assert torch.equal(model[1].running_mean, running)
    # Deterministic: the same model gives the same figure.
    again = top_hessian_eigenvalue_torch(model, torch.nn.functional.mse_loss, x, y)
    assert first == again
    assert first > 0


def test_frozen_parameters_are_left_out() -> None:
    # Only the bias learns: the Hessian is the 1x1 matrix 2 (mean of 2 * 1 * 1).
    model = torch.nn.Linear(3, 1)
    model.weight.requires_grad_(False)
    x, y = torch.randn(16, 3) * 100, torch.randn(16, 1)
    got = top_hessian_eigenvalue_torch(model, torch.nn.functional.mse_loss, x, y)
    assert got == pytest.approx(2.0, rel=1e-4)


def test_no_trainable_parameters_is_an_error() -> None:
    model = torch.nn.Linear(3, 1).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        top_hessian_eigenvalue_torch(model, torch.nn.functional.mse_loss,
                                     torch.randn(4, 3), torch.randn(4, 1))


def test_power_iteration_on_a_matrix() -> None:
    rng = np.random.default_rng(5)
    q, _ = np.linalg.qr(rng.standard_normal((20, 20)))
    eig = np.linspace(-3.0, 10.0, 20)
    m = q @ np.diag(eig) @ q.T

    def dot(a: np.ndarray, b: np.ndarray) -> float:
        return float(a @ b)

    starts = iter(rng.standard_normal((2, 20)))
    assert power_iteration(lambda v: m @ v, rng.standard_normal(20), dot,
                           iters=500, tol=1e-10) == pytest.approx(10.0, rel=1e-6)
    # Dominated by a negative eigenvalue: the shift recovers the top one.
    assert top_eigenvalue(lambda v: -m @ v, lambda: next(starts), dot,
                          iters=2000, tol=1e-12) == pytest.approx(3.0, rel=1e-3)


def test_non_finite_curvature_is_nan() -> None:
    def dot(a: np.ndarray, b: np.ndarray) -> float:
        return float(a @ b)

    got = power_iteration(lambda v: v * np.inf, np.ones(3), dot)
    assert np.isnan(got)

"""Reference levels: the loss of the best constant predictor on a run's targets (numpy only).

A model that learned nothing from its inputs can still predict the best constant: the label
frequencies for a classifier, the mean (or median) of the targets for a regression. Its loss is
the level a run must end clearly below to have learned anything, whatever the shape of its curve:

- cross-entropy: the entropy of the label frequencies (``ln C`` when the C classes are balanced);
- binary cross-entropy: ``H(p)``, with ``p`` the fraction of positive targets;
- mean squared error: the variance of the targets (the mean over outputs);
- mean absolute error (L1): the mean absolute deviation from the median;
- Huber (``delta``): the smallest mean Huber loss of a constant, found by a bisection on its
  derivative (the loss is convex in the constant).

All losses are in nats and in the units the frameworks' default ``mean`` reduction uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_losstrend.verdict.stats import FloatArray

#: The loss names :func:`reference_level` knows, and the spellings it accepts for each.
LOSS_NAMES: dict[str, tuple[str, ...]] = {
    "cross_entropy": ("cross_entropy", "crossentropyloss", "nllloss",
                      "sparse_categorical_crossentropy", "categorical_crossentropy"),
    "binary_cross_entropy": ("binary_cross_entropy", "bceloss", "bcewithlogitsloss",
                             "bce_with_logits", "binary_crossentropy"),
    "mse": ("mse", "mseloss", "mean_squared_error"),
    "l1": ("l1", "l1loss", "mae", "mean_absolute_error"),
    "huber": ("huber", "huberloss", "smooth_l1", "smoothl1loss"),
}


@dataclass(frozen=True)
class Reference:
    """A reference level and how it was derived, in words a failure message can quote.

    Example:
        >>> reference_level("cross_entropy", np.repeat(np.arange(10), 5)).how
        'the entropy of the label frequencies (ln 10 = 2.303: 10 balanced classes)'
    """

    value: float
    how: str

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the report."""
        return {"value": self.value, "how": self.how}


def resolve_reference(setting: float | str | None, computed: Reference | None) -> Reference | None:
    """The reference a run is judged against: the criterion ``reference`` (a number, ``"auto"``
    or None) applied to the level computed from the run's loss and targets (None if unknown).

    Example:
        >>> resolve_reference(2.3, None).how
        'reference=2.3, as the test set it'
        >>> resolve_reference(None, Reference(2.3, "ln 10")) is None
        True
    """
    if setting is None:
        return None
    if isinstance(setting, str):
        return computed
    return Reference(float(setting), f"reference={setting:g}, as the test set it")


def canonical_loss(name: str) -> str | None:
    """The canonical name of a loss spelled as torch or Keras spell it, or None."""
    key = name.lower().replace("-", "_").replace(" ", "_")
    for canonical, spellings in LOSS_NAMES.items():
        if key in spellings:
            return canonical
    return None


def reference_level(loss: str, targets: Any, *, delta: float = 1.0) -> Reference:
    """The loss of the best constant predictor for ``loss`` on ``targets``.

    ``targets`` are what the loss compares the predictions with: class indices (or one-hot /
    probability rows) for cross-entropy, 0/1 (or soft) labels for binary cross-entropy, values
    for the regression losses. Raises ``ValueError`` naming the problem for an unknown loss,
    empty targets or targets that do not fit the loss.

    Example:
        >>> round(reference_level("mse", [1.0, 2.0, 3.0, 4.0]).value, 4)
        1.25
    """
    canonical = canonical_loss(loss)
    if canonical is None:
        known = ", ".join(LOSS_NAMES)
        raise ValueError(f"no reference level for the loss {loss!r}; known: {known}")
    y = np.asarray(targets, dtype=np.float64)
    if y.size == 0:
        raise ValueError("no reference level for empty targets")
    if not np.all(np.isfinite(y)):
        raise ValueError("no reference level for targets that are not all finite")
    if canonical == "cross_entropy":
        return _cross_entropy(y)
    if canonical == "binary_cross_entropy":
        return _binary_cross_entropy(y)
    if y.ndim == 1:
        y = y[:, None]
    y = y.reshape(len(y), -1)
    if canonical == "mse":
        value = float(np.mean(np.var(y, axis=0)))
        return Reference(value, f"the variance of the targets ({value:.4g}: predicting their mean)")
    if canonical == "l1":
        med = np.median(y, axis=0)
        value = float(np.mean(np.abs(y - med)))
        return Reference(value, f"the mean absolute deviation of the targets from their median "
                                f"({value:.4g})")
    value = float(np.mean([_huber_constant(col, delta) for col in y.T]))
    return Reference(value, f"the Huber loss (delta={delta:g}) of the best constant ({value:.4g})")


def _cross_entropy(y: FloatArray) -> Reference:
    if y.ndim == 1:
        if np.any(y < 0) or np.any(y != np.round(y)):
            raise ValueError("cross-entropy targets must be class indices (0, 1, 2, ...) or rows "
                             "of class probabilities")
        counts = np.bincount(y.astype(np.int64))
        freq = counts[counts > 0] / len(y)
        classes = int(np.count_nonzero(counts))
    else:
        if np.any(y < 0):
            raise ValueError("cross-entropy probability rows must not be negative")
        freq = y.reshape(len(y), -1).mean(axis=0)
        freq = freq[freq > 0] / freq.sum()
        classes = len(freq)
    value = float(-np.sum(freq * np.log(freq)))
    balanced = classes > 1 and math.isclose(value, math.log(classes), rel_tol=1e-9)
    if balanced:
        how = (f"the entropy of the label frequencies (ln {classes} = {value:.4g}: "
               f"{classes} balanced classes)")
    else:
        how = f"the entropy of the label frequencies ({value:.4g} over {classes} classes)"
    return Reference(value, how)


def _binary_cross_entropy(y: FloatArray) -> Reference:
    if np.any(y < 0) or np.any(y > 1):
        raise ValueError("binary cross-entropy targets must lie in [0, 1]")
    p = float(np.mean(y))
    if y.ndim > 1 and y.shape[-1] > 1:
        ps = y.reshape(len(y), -1).mean(axis=0)
        value = float(np.mean([_entropy2(float(q)) for q in ps]))
    else:
        value = _entropy2(p)
    return Reference(value, f"H(p) of the positive rate p = {p:.3g} ({value:.4g})")


def _entropy2(p: float) -> float:
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def _huber_constant(y: FloatArray, delta: float) -> float:
    """The smallest mean Huber loss over constants: bisection on the (monotone) derivative."""
    lo, hi = float(np.min(y)), float(np.max(y))

    def slope(c: float) -> float:
        return float(np.mean(np.clip(c - y, -delta, delta)))

    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if slope(mid) > 0:
            hi = mid
        else:
            lo = mid
    c = 0.5 * (lo + hi)
    r = np.abs(y - c)
    return float(np.mean(np.where(r <= delta, 0.5 * r**2, delta * (r - 0.5 * delta))))


__all__ = ["LOSS_NAMES", "Reference", "canonical_loss", "reference_level", "resolve_reference"]

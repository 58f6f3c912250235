"""The data sets the catalogue's scenarios train on, torch and Keras alike.

Bundled scikit-learn data sets, standardised (fixed: they do not depend on the seed) and cached
for the process, and synthetic blobs drawn from numpy's global generator (seeded by the caller,
so the seed moves them). scikit-learn is imported inside the loaders, so importing this module
costs numpy only.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def _standardise(a: FloatArray) -> FloatArray:
    std = a.std(0)
    return np.asarray((a - a.mean(0)) / np.where(std > 0, std, 1.0), dtype=np.float64)


@functools.cache
def diabetes() -> tuple[FloatArray, FloatArray]:
    """442 x 10 standardised features and a standardised target (sklearn's diabetes)."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    return _standardise(np.asarray(x, np.float64)), _standardise(np.asarray(y, np.float64))


@functools.cache
def digits() -> tuple[FloatArray, np.ndarray[Any, np.dtype[np.int64]]]:
    """1797 8x8 digit images as 64 standardised features, and labels 0..9."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return _standardise(np.asarray(x, np.float64)), np.asarray(y, np.int64)


@functools.cache
def breast_cancer() -> tuple[FloatArray, FloatArray]:
    """569 x 30 standardised features and 0/1 labels."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    return _standardise(np.asarray(x, np.float64)), np.asarray(y, np.float64)


def blobs(n: int, classes: int, dim: int, spread: float) -> tuple[FloatArray, FloatArray]:
    """``n`` points around ``classes`` random centres (spread ``spread``) with unit noise,
    in random order, and their labels; drawn from numpy's global (seeded) generator."""
    centres = np.random.randn(classes, dim) * spread
    y = np.random.randint(0, classes, n)
    return centres[y] + np.random.randn(n, dim), y.astype(np.float64)

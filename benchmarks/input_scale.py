"""What the input-scale check (``unscaled_features``) says about common inputs.

Usage::

    python benchmarks/input_scale.py

For each data set, the statistics ``watch`` takes of the first batch a model is given (its
first 512 rows, :func:`pytest_losstrend.capture.torch_signals.input_stats`; Keras' own,
:func:`pytest_losstrend.capture.keras_signals.input_stats`, on up to 4096 rows) and whether
:func:`pytest_losstrend.diagnosis.signals.unscaled` flags it, before (magnitude above 1e3, std
ratio above 100, or ill-conditioning standardising removes) and now (the std ratio counts only
when the features' ranges differ as much, ``range_ratio``; and the raw-magnitude rule: max |x|
above ``UNSCALED_RAW_MAX`` with a root mean square above ``UNSCALED_RMS``). Raw 0-255
images must be flagged; standardised, [0, 1]-scaled and one-hot inputs, the 0-16 digits and
token ids must not. Prints a markdown table; the exit status is 1 when a row is not as expected.
Takes a few seconds, no downloads (scikit-learn's bundled data sets and sample images).
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from sklearn import datasets
from sklearn.preprocessing import StandardScaler

from pytest_losstrend.capture.keras_signals import input_stats as keras_input_stats
from pytest_losstrend.capture.torch_signals import input_stats
from pytest_losstrend.diagnosis import signals

ROWS = 512


def _old(stats: dict[str, float]) -> bool:
    """The check as it was: a std ratio above 100 (whatever the ranges), a magnitude above
    1e3, or ill-conditioning that standardising removes."""
    cond, cond_s = stats.get("cond", 0.0), stats.get("cond_standardised", 0.0)
    ill = (np.isfinite(cond) and cond > signals.UNSCALED_COND and cond_s > 0
           and cond / cond_s > signals.UNSCALED_COND_GAIN)
    return bool(stats.get("std_ratio", 0.0) > signals.UNSCALED_STD_RATIO
                or stats.get("max_abs", 0.0) > signals.UNSCALED_MAX_ABS or ill)


def _patches(scale: float) -> np.ndarray:
    """32x32 RGB patches of scikit-learn's two sample photographs, channels first."""
    out = []
    for img in datasets.load_sample_images().images:
        h, w, _ = img.shape
        for i in range(0, h - 32, 48):
            for j in range(0, w - 32, 48):
                out.append(img[i:i + 32, j:j + 32].transpose(2, 0, 1))
    rng = np.random.default_rng(0)
    arr = np.stack(out).astype(np.float32) * scale
    return arr[rng.permutation(len(arr))]


def cases() -> list[tuple[str, np.ndarray, bool]]:
    """(name, inputs, should be flagged)."""
    digits = datasets.load_digits().data.astype(np.float32)
    cancer = datasets.load_breast_cancer().data.astype(np.float32)
    wine = datasets.load_wine().data.astype(np.float32)
    iris = datasets.load_iris().data.astype(np.float32)
    diabetes = datasets.load_diabetes().data.astype(np.float32)
    rng = np.random.default_rng(0)
    heavy = rng.lognormal(0.0, 2.0, size=(ROWS, 8))
    labels = datasets.load_digits().target
    std = StandardScaler()
    return [
        ("digits, raw 0-16 (MLP)", digits, False),
        ("digits / 16, [0, 1]", digits / 16, False),
        ("digits, standardised", std.fit_transform(digits), False),
        ("digits x 255/16, 0-255 (MLP, flattened)", np.round(digits * 255 / 16), True),
        ("digits x 255/16, 0-255 (CNN, N x 1 x 8 x 8)",
         np.round(digits * 255 / 16).reshape(-1, 1, 8, 8), True),
        ("photo patches, 0-255 (CNN, N x 3 x 32 x 32)", _patches(1.0), True),
        ("photo patches / 255, [0, 1]", _patches(1 / 255), False),
        ("photo patches, per-channel standardised",
         (_patches(1.0) - _patches(1.0).mean((0, 2, 3), keepdims=True))
         / _patches(1.0).std((0, 2, 3), keepdims=True), False),
        ("breast cancer, raw", cancer, True),
        ("breast cancer, standardised", std.fit_transform(cancer), False),
        ("wine, raw", wine, True),
        ("wine, standardised", std.fit_transform(wine), False),
        ("iris, raw (cm)", iris, False),
        ("diabetes, as shipped (scaled)", diabetes, False),
        ("lognormal(0, 2), standardised (outliers)", std.fit_transform(heavy), False),
        ("one-hot digit labels", np.eye(10, dtype=np.float32)[labels], False),
        ("standard normal, 20 features", rng.standard_normal((ROWS, 20)), False),
    ]


def main() -> int:
    """Print the table; 1 when a data set is flagged against expectation."""
    ok = True
    print("| data set | max abs | rms | std | std ratio | range ratio | flagged before | "
          "flagged now | flagged now (Keras statistics) | expected |")
    print("|---|---:|---:|---:|---:|---:|---|---|---|---|")
    for name, x, expected in cases():
        t = torch.as_tensor(np.asarray(x, dtype=np.float32)[:ROWS])
        st = input_stats(t)
        spread = st.get("std", float(np.asarray(x[:ROWS], dtype=np.float64).std()))
        now = signals.unscaled(st)
        ks = keras_input_stats(np.asarray(x, dtype=np.float32))
        keras_now = signals.unscaled(ks)
        ok = ok and now == expected and keras_now == expected
        ratios = (f"{st['std_ratio']:.3g} | {st['range_ratio']:.3g}" if "std_ratio" in st
                  else "- | -")
        print(f"| {name} | {st['max_abs']:.3g} | {st['rms']:.3g} | {spread:.3g} | {ratios} | "
              f"{'yes' if _old(st) else 'no'} | {'yes' if now else 'no'} | "
              f"{'yes' if keras_now else 'no'} ({'yes' if _old(ks) else 'no'} before) | "
              f"{'yes' if expected else 'no'} |")
    ids = input_stats(torch.randint(0, 30000, (ROWS, 16)))
    flagged = signals.unscaled(ids)
    ok = ok and not flagged
    keras_ids = keras_input_stats(np.arange(ROWS * 16).reshape(ROWS, 16), ids=True)
    flagged = flagged or signals.unscaled(keras_ids)
    ok = ok and not flagged
    print(f"| token ids 0-30000 (int64, nn.Embedding) | - | - | - | - | - | no | "
          f"{'yes' if flagged else 'no'} (no statistics: not a float input) | no (no "
          f"statistics: a first Embedding layer) | no |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

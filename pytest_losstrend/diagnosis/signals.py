"""The figures several diagnosis rules read off a curve or off what ``watch`` saw (numpy only).

Each helper here is shared by more than one rule (or by a rule and the passing warnings), so it
lives once, with the constants it compares against. The constants come from the research digest
(trend_methods.md, section 5) and were checked on the benchmark corpus and the scenarios
(``benchmarks/README.md``, "Diagnosis").
"""

from __future__ import annotations

import math

import numpy as np

from pytest_losstrend.diagnosis.evidence import Evidence
from pytest_losstrend.verdict.stats import FloatArray

#: A feature std ratio (largest over smallest) above this is features on different scales.
UNSCALED_STD_RATIO = 100.0
#: A raw input magnitude above this is features that were never standardised.
UNSCALED_MAX_ABS = 1e3
#: Ill-conditioning that standardising would remove: raw features whose Gram matrix is this
#: much worse conditioned than the standardised one (``UNSCALED_COND_GAIN``) and badly
#: conditioned in absolute terms (``UNSCALED_COND``).
UNSCALED_COND_GAIN = 100.0
UNSCALED_COND = 1e4


def fmt_g(v: float) -> str:
    """A figure in an evidence or fix line: three significant digits."""
    return f"{v:.3g}"


def adaptive(ev: Evidence | None) -> bool:
    """Whether the watched optimizer adapts its step per parameter (Adam, RMSprop, Ada*):
    the SGD stability limit 2/lambda_max is then only an upper bound for its lr."""
    return ev is not None and (ev.optimizer or "").lower().startswith(("adam", "rmsprop", "ada"))


def growth(losses: FloatArray) -> float | None:
    """Per-step growth of log-loss over the finite, positive, rising end of the curve.

    A least-squares slope of log-loss from the lowest point to the end; None when the curve has
    fewer than two usable points, a non-positive value, or does not rise.
    """
    x = losses[np.isfinite(losses)]
    if len(x) < 2 or (x <= 0).any():
        return None
    y = np.log(x)
    start = int(np.argmin(y))
    tail = y[start:]
    if len(tail) < 2:
        return None
    slope = float(np.polyfit(np.arange(len(tail)), tail, 1)[0])
    return slope if slope > 0 else None


def sharpness(ev: Evidence) -> float | None:
    """The measured top Hessian eigenvalue lambda_max, when it is a usable positive number."""
    lam = ev.sharpness
    return lam if lam is not None and math.isfinite(lam) and lam > 0 else None


def typical_update(ev: Evidence | None) -> float | None:
    """The largest, over weight tensors, of each one's median update/weight ratio after the
    first sample. Biases (near zero, so any move is a large ratio) and the first step (Adam's
    and fresh inits' biggest) are left out; per-epoch samples (Keras) are divided per step."""
    if ev is None or not ev.update_ratio:
        return None
    per_step = 1.0
    if ev.framework == "keras" and len(ev.steps) >= 2:
        per_step = max(1.0, (ev.steps[-1] - ev.steps[0]) / (len(ev.steps) - 1))
    best: float | None = None
    for name, values in ev.update_ratio.items():
        if name.endswith("bias"):
            continue
        vals = sorted(v for v in values[1:] if math.isfinite(v)) or sorted(
            v for v in values if math.isfinite(v))
        if not vals:
            continue
        med = vals[len(vals) // 2] / per_step
        best = med if best is None else max(best, med)
    return best


def unscaled(stats: dict[str, float]) -> bool:
    """Whether the input statistics show features that standardising would fix.

    Any of: a feature std ratio above ``UNSCALED_STD_RATIO`` (100), a raw magnitude above
    ``UNSCALED_MAX_ABS`` (1e3), or a finite Gram condition number above ``UNSCALED_COND``
    (1e4) that standardising improves more than ``UNSCALED_COND_GAIN`` (100) times.
    """
    cond = stats.get("cond", 0.0)
    cond_s = stats.get("cond_standardised", 0.0)
    # An infinite condition number is a constant or duplicated feature, not a scale problem.
    ill = (math.isfinite(cond) and cond > UNSCALED_COND and cond_s > 0
           and cond / cond_s > UNSCALED_COND_GAIN)
    return bool(
        stats.get("std_ratio", 0.0) > UNSCALED_STD_RATIO
        or stats.get("max_abs", 0.0) > UNSCALED_MAX_ABS
        or ill
    )


def chance(ev: Evidence) -> float | None:
    """The chance-level loss ln(C) of a C-class cross-entropy classifier (C >= 2), else None."""
    name = (ev.loss_name or "").lower()
    c = ev.output_features
    if c is None or c < 2 or "entropy" not in name:
        return None
    return math.log(c)


__all__ = [
    "UNSCALED_COND",
    "UNSCALED_COND_GAIN",
    "UNSCALED_MAX_ABS",
    "UNSCALED_STD_RATIO",
    "adaptive",
    "chance",
    "fmt_g",
    "growth",
    "sharpness",
    "typical_update",
    "unscaled",
]

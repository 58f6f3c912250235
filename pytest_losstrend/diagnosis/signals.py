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
from pytest_losstrend.verdict import constants
from pytest_losstrend.verdict.result import Verdict
from pytest_losstrend.verdict.stats import FloatArray

#: A feature std ratio (largest over smallest) above this is features on different scales.
UNSCALED_STD_RATIO = 100.0
#: A raw input magnitude above this is features that were never standardised.
UNSCALED_MAX_ABS = 1e3
#: Inputs whose magnitude passes ``UNSCALED_RAW_MAX`` with a root mean square above
#: ``UNSCALED_RMS`` are raw, as 0-255 pixels are (max 255, rms 85-140 on the image sets of
#: ``benchmarks/input_scale.py``). Standardised features have an rms of 1 whatever their
#: outliers (a z-score of 100 in a skewed column), [0, 1]-scaled ones and one-hot rows at most 1,
#: and the raw 0-16 digits of scikit-learn, which train fine, a max of 16 (rms 7.7).
UNSCALED_RAW_MAX = 100.0
UNSCALED_RMS = 10.0
#: Ill-conditioning that standardising would remove: raw features whose Gram matrix is this
#: much worse conditioned than the standardised one (``UNSCALED_COND_GAIN``) and badly
#: conditioned in absolute terms (``UNSCALED_COND``).
UNSCALED_COND_GAIN = 100.0
UNSCALED_COND = 1e4


#: A typical update/weight ratio at or above this a step is weights that do move (healthy
#: training sits near 1e-3): no ``lr_too_low`` from the ratio or from the lr against the
#: stability limit, no ``no_learning`` from a curve with no trend.
HEALTHY_UPDATE = 1e-4
#: Nice values a suggested ``min_drop`` is rounded down to.
NICE_DROPS = (0.5, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01, 0.005, 0.002, 0.001)


def fmt_g(v: float) -> str:
    """A figure in an evidence or fix line: three significant digits."""
    return f"{v + 0.0:.3g}"  # + 0.0: -0.0 reads "0"


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

    Any of: a feature std ratio above ``UNSCALED_STD_RATIO`` (100) with a ratio of the
    features' ranges (``range_ratio``, their largest ``|x|``) above it too, a raw magnitude above
    ``UNSCALED_MAX_ABS`` (1e3), a magnitude above ``UNSCALED_RAW_MAX`` (100) with a root mean
    square above ``UNSCALED_RMS`` (10: raw 0-255 pixels), or, with that range ratio above 100
    too, a finite Gram condition number above ``UNSCALED_COND`` (1e4) that standardising
    improves more than ``UNSCALED_COND_GAIN`` (100) times.
    """
    cond = stats.get("cond", 0.0)
    cond_s = stats.get("cond_standardised", 0.0)
    # A feature of tiny std is in other units only if its range is small too: a pixel lit on
    # one image of the batch has a tiny std and the usual range (0-16 digits, [0, 1] pixels),
    # and its rare values make the raw Gram matrix ill-conditioned as well.
    units = stats.get("range_ratio", math.inf) > UNSCALED_STD_RATIO
    # An infinite condition number is a constant or duplicated feature, not a scale problem.
    ill = (units and math.isfinite(cond) and cond > UNSCALED_COND and cond_s > 0
           and cond / cond_s > UNSCALED_COND_GAIN)
    spread = units and stats.get("std_ratio", 0.0) > UNSCALED_STD_RATIO
    return bool(
        spread
        or stats.get("max_abs", 0.0) > UNSCALED_MAX_ABS
        or (stats.get("max_abs", 0.0) > UNSCALED_RAW_MAX
            and stats.get("rms", 0.0) > UNSCALED_RMS)
        or ill
    )


def unscaled_line(stats: dict[str, float]) -> str:
    """What the input statistics show, for an ``unscaled_features`` evidence or warning: the
    feature std range and ratio where there are features (a 2-d batch), the magnitude and
    root mean square of every input (images, sequences) otherwise."""
    tail = f"max |x| = {fmt_g(stats.get('max_abs', 0.0))}"
    if "rms" in stats:
        tail += f", root mean square {fmt_g(stats['rms'])}"
    if "std_ratio" not in stats:
        return f"inputs of {tail}"
    return (f"input features span std {fmt_g(stats.get('std_min', 0.0))}.."
            f"{fmt_g(stats.get('std_max', 0.0))} (ratio {fmt_g(stats['std_ratio'])}), {tail}")


def dead_line(ev: Evidence, name: str, frac: float, *, saturated: bool = False) -> str:
    """What a dead (or saturated) activation shows, in the words of its source: a module's
    outputs "after act", or a function call "fc1 via F.relu" over the sampled steps it was
    observed on."""
    pct = f"{100 * frac:.0f}%"
    steps = ev.activation_steps
    over = f" over {steps} sampled step{'s' if steps != 1 else ''}" if steps else ""
    if saturated:
        return f"{name}: {pct} of outputs saturated{over}"
    if " via " in name and steps:
        return f"{name}: {pct} of units never active{over}"
    return f"{pct} of the units after {name} output zero on every sample"


def chance(ev: Evidence) -> float | None:
    """The chance-level loss ln(C) of a C-class cross-entropy classifier (C >= 2), else None."""
    name = (ev.loss_name or "").lower()
    c = ev.output_features
    if c is None or c < 2 or "entropy" not in name:
        return None
    return math.log(c)


def blew_up(verdict: Verdict) -> bool:
    """Whether the judged run rose above its first level beyond the noise before it ended no
    lower: the ``blowup`` kind always, a ``chance_level`` verdict when its ``blew_up`` stat
    says so (the verdict decides it, with the run's own ``tolerance``)."""
    if verdict.kind == "blowup":
        return True
    return verdict.kind == "chance_level" and verdict.stats.get("blew_up") is True


def first_level(verdict: Verdict, losses: FloatArray) -> float | None:
    """The first recorded level after warmup: the verdict's ``first`` stat, else the first
    point after ``warmup`` of the judged series, when finite."""
    first = verdict.stats.get("first")
    if isinstance(first, (int, float)) and math.isfinite(first):
        return float(first)
    warmup = int(verdict.stats.get("warmup") or 0)
    if len(losses) > warmup and math.isfinite(float(losses[warmup])):
        return float(losses[warmup])
    return None


def reference_of(verdict: Verdict) -> float | None:
    """The reference level the verdict was judged against (the loss of the best constant
    predictor), when known and positive."""
    ref = verdict.stats.get("reference")
    if isinstance(ref, (int, float)) and math.isfinite(ref) and ref > 0:
        return float(ref)
    return None


def min_drop_of(verdict: Verdict) -> float | None:
    """The ``min_drop`` the verdict held the run to (its ``min_drop`` stat: stall and
    too-little-drop verdicts carry it); None when it does not say."""
    value = verdict.stats.get("min_drop")
    return float(value) if isinstance(value, (int, float)) else None


def log_scale(verdict: Verdict) -> bool:
    """Whether the verdict judged the curve on log-loss (every point positive); a curve that
    is negative or crosses zero is judged on a linear scale, where ratios mean nothing."""
    return verdict.stats.get("log_scale", True) is not False


def fmt_level(v: float) -> str:
    """A loss level, as the verdict's reason writes it (four significant digits)."""
    return f"{v + 0.0:.4g}"


def level_change(verdict: Verdict) -> str:
    """The change from the start level to the end level, a verb phrase that reads right on
    either scale: "fell 6.3%, from 2.3 to 2.156" on log-loss, "fell by 0.078, from -0.99 to
    -1.068" (the absolute change, no percentage) for a curve that is negative or crosses
    zero; "rose" when the end is higher."""
    st = verdict.stats
    start, end = st.get("start"), st.get("end")
    if not isinstance(start, (int, float)) or not isinstance(end, (int, float)):
        return "changed as the verdict says"
    word = "fell" if end <= start else "rose"
    if log_scale(verdict) and start > 0 and end > 0:
        return (f"{word} {100 * abs(1.0 - end / start):.3g}%, from {fmt_level(start)} to "
                f"{fmt_level(end)}")
    return (f"{word} by {fmt_g(abs(start - end))}, from {fmt_level(start)} to "
            f"{fmt_level(end)}")


def nice_min_drop(drop: float) -> float | None:
    """A ``min_drop`` a run that achieved ``drop`` passes with a margin for the seed's noise:
    the largest of :data:`NICE_DROPS` at or below 0.8 of it; None for no drop."""
    return next((v for v in NICE_DROPS if v <= 0.8 * drop), None) if drop > 0 else None


def lr_below_limit(ev: Evidence | None, lr: float | None) -> float | None:
    """How many times the learning rate sits below the stability limit 2/lambda_max measured
    on a fixed batch (SGD only: an adaptive optimizer's step does not scale with its lr that
    way); None when either is unknown."""
    if ev is None or not lr or adaptive(ev):
        return None
    lam = sharpness(ev)
    return (2.0 / lam) / lr if lam is not None else None


def grad_growth(ev: Evidence | None) -> tuple[float, float] | None:
    """The first and the largest gradient norm watched (a NaN counts as infinite), when the
    first is positive."""
    if ev is None or not ev.grad_norm or not ev.grad_norm[0] > 0:
        return None
    peak = max((g if not math.isnan(g) else math.inf) for g in ev.grad_norm)
    return ev.grad_norm[0], peak


def symptom(verdict: Verdict) -> str | None:
    """What the curve shows, for a root cause's evidence to name as its symptom: a plateau
    (a stall, too little drop) or an end at the reference level; None for other kinds."""
    st = verdict.stats
    if verdict.kind in ("stall", "too_little_drop"):
        return f"the loss plateaued (it {level_change(verdict)})"
    ref, end = reference_of(verdict), st.get("end")
    if verdict.kind == "chance_level" and ref is not None and isinstance(end, (int, float)):
        return (f"the loss ended at {fmt_level(end)}, {end / ref:.3g}x the reference level "
                f"{fmt_level(ref)} (the loss of the best constant predictor)")
    return None


def far_above_reference(first: float | None, ref: float | None) -> bool:
    """Whether a first loss is ``FAR_ABOVE_REFERENCE`` (10) times the reference level or more."""
    return first is not None and ref is not None and first >= (
        constants.FAR_ABOVE_REFERENCE * ref)


def learned_nothing(verdict: Verdict) -> bool:
    """Whether the run ended *at* its reference level: a ``chance_level`` verdict that did not
    blow up, whose end lies within ``REFERENCE_MARGIN`` (10%) of the reference on either side.
    Such a model learned nothing from its inputs; a run that climbed far above the reference
    is another story (a blow-up, units all dead)."""
    if verdict.kind != "chance_level" or blew_up(verdict):
        return False
    ref, end = reference_of(verdict), verdict.stats.get("end")
    return (ref is not None and isinstance(end, (int, float))
            and abs(end - ref) <= constants.REFERENCE_MARGIN * ref)


__all__ = [
    "HEALTHY_UPDATE",
    "NICE_DROPS",
    "UNSCALED_COND",
    "UNSCALED_COND_GAIN",
    "UNSCALED_MAX_ABS",
    "UNSCALED_RAW_MAX",
    "UNSCALED_RMS",
    "UNSCALED_STD_RATIO",
    "adaptive",
    "blew_up",
    "chance",
    "dead_line",
    "far_above_reference",
    "first_level",
    "fmt_g",
    "fmt_level",
    "grad_growth",
    "growth",
    "learned_nothing",
    "level_change",
    "log_scale",
    "lr_below_limit",
    "min_drop_of",
    "nice_min_drop",
    "reference_of",
    "sharpness",
    "symptom",
    "typical_update",
    "unscaled",
    "unscaled_line",
]

"""Causes the verdict's kind points at, named from the curves (numpy and plain data only).

One small rule per cause, keyed on :attr:`Verdict.kind` of the judged series and on the other
recorded series; what ``watch`` saw (the learning rate, the measured sharpness, the update
sizes, the momentum) sharpens a rule's figures and confidence when present, but every rule here
also works on the curves alone, which is what :func:`pytest_losstrend.check` gives them. They run
after the watch rules, in the order ``pytest_losstrend.diagnosis.rules.BUILTIN_RULES`` states.

Calibration: the confidences were set so that a root cause outranks the symptom it explains
(``lr_too_high`` at 0.8-0.9 over ``non_finite`` at 0.4 once the loss grew before the overflow),
and checked on the scenarios (``benchmarks/diagnosis_accuracy.py``) and on the bad runs of the
calibration corpus (``benchmarks/calibrate.py``); both are reported in ``benchmarks/README.md``,
"Diagnosis".
"""

from __future__ import annotations

import math

import numpy as np

from pytest_losstrend.diagnosis.context import DiagnosisContext
from pytest_losstrend.diagnosis.signals import (
    adaptive,
    fmt_g,
    growth,
    sharpness,
    typical_update,
)
from pytest_losstrend.verdict.result import Diagnosis
from pytest_losstrend.verdict.stats import (
    FloatArray,
    detrend,
    fmt_exp,
    rank_autocorrelations,
    safe_exp,
)

#: An update/weight ratio above this a step (healthy is about 1e-3) is a learning rate too
#: high, whatever the curve's shape says.
HUGE_UPDATE = 0.1
#: Log-loss growing at least this much per step before a NaN is an overflow the lr explains.
GROWTH_BEFORE_OVERFLOW = 0.05


def rule_stability(ctx: DiagnosisContext) -> list[Diagnosis]:
    """Divergence, overflow after growth, or a spike: ``lr_too_high``, a learning rate past
    the stability limit 2/lambda_max.

    Algorithm: speaks on a divergence, a non-finite loss the log-loss grew into (a tail slope
    of at least ``GROWTH_BEFORE_OVERFLOW``, 0.05 a step; an overflow without growth is
    :func:`rule_non_finite`'s), a spike, a rise, an oscillation, or a late rise of the train
    series. Base confidence by kind: divergence and non-finite 0.8, spike 0.6, oscillation and
    late rise 0.5, rise 0.45. Then, first match wins:

    - a learning rate that grew over the run by more than 1.5x: a schedule (0.85);
    - a measured sharpness lambda_max and a known lr: the limit 2/lambda_max; an lr above it is
      0.9, an lr within it (SGD) explains nothing, 0.3 at most; adaptive optimizers (Adam,
      RMSprop) get a 10x lower lr in the fix, since the bound is for SGD;
    - a known lr and a growth rate s: on a quadratic, lambda = (1 + e^(s/2)) / lr, so the limit
      is estimated (0.85 for a divergence or overflow).

    A typical update/weight ratio above ``HUGE_UPDATE`` (0.1 a step; healthy is about 1e-3)
    lifts it to 0.8, unless the measured limit already cleared the lr.
    """
    kind = ctx.verdict.kind
    if kind not in ("divergence", "non_finite", "spike", "rise", "oscillation", "late_rise"):
        return []
    if kind == "late_rise" and ctx.judged != "train":
        return []
    ev = ctx.evidence
    lr = ctx.lr
    s = growth(ctx.losses)
    if kind == "non_finite" and (s is None or s < GROWTH_BEFORE_OVERFLOW):
        return []  # overflow without growth: see rule_non_finite
    out: list[str] = []
    conf = {"divergence": 0.8, "non_finite": 0.8, "spike": 0.6, "rise": 0.45,
            "oscillation": 0.5, "late_rise": 0.5}[kind]
    if s is not None:
        out.append(f"log-loss grows {s:.3g} per step (x{fmt_exp(s)})")
    fix = "lower the learning rate 10x (watch() the optimizer for the exact stability limit)"
    if ev is not None and len(ev.lr) >= 2 and ev.lr[-1] > ev.lr[0] * 1.5:
        out.append(f"the learning rate grew from {fmt_g(ev.lr[0])} to {fmt_g(ev.lr[-1])}")
        conf = max(conf, 0.85)
        fix = (f"keep the learning rate at or below {fmt_g(ev.lr[0])}: check the schedule "
               "(a factor > 1, or a warm-up that never ends)")
    elif ev is not None and sharpness(ev) is not None and lr:
        lam_measured = sharpness(ev) or 1.0
        limit = 2.0 / lam_measured
        out.append(f"lambda_max = {fmt_g(lam_measured)} measured on a fixed batch, so "
                   f"2/lambda_max = {fmt_g(limit)}; lr = {fmt_g(lr)}")
        if lr > limit:
            conf = max(conf, 0.9)
        elif not adaptive(ev):
            # Below the limit measured at the start: the curvature explains nothing here.
            out.append("lr is within that limit")
            conf = min(conf, 0.3)
        fix = (f"lr <= {fmt_g(limit)}, the stability limit 2/lambda_max measured on this batch; "
               f"lr = {fmt_g(limit / 2)} (1/lambda_max) leaves a safe margin")
        if adaptive(ev):
            fix += (f" (the bound is for SGD; {ev.optimizer} needs a lower lr still: try "
                    f"{fmt_g(limit / 10)})")
    elif lr and s is not None:
        # Infinite for a log-loss growing past 1400 per step (1e-300 to 1e300 in one step).
        lam = (1.0 + safe_exp(s / 2.0)) / lr
        limit = 2.0 / lam
        out.append(f"lr = {fmt_g(lr)}; on a quadratic that growth means lambda_max = {fmt_g(lam)}, "
                   f"a stability limit 2/lambda_max = {fmt_g(limit)}")
        fix = (f"lr <= {fmt_g(limit)}, the stability limit 2/lambda_max estimated from the growth "
               f"rate; lr = {fmt_g(limit / 2)} (1/lambda_max) leaves a safe margin")
        if ev is not None and adaptive(ev):
            fix += f"; the estimate is for SGD: with {ev.optimizer}, lower the lr 10x"
        conf = max(conf, 0.85 if kind in ("divergence", "non_finite") else conf)
    big = typical_update(ev)
    if big is not None and big > HUGE_UPDATE and conf > 0.3:
        out.append(f"update/weight ratio {fmt_g(big)} (healthy is about 1e-3)")
        conf = max(conf, 0.8)
    evidence = "; ".join(out) or f"the verdict: {ctx.verdict.reason}"
    return [Diagnosis("lr_too_high", conf, evidence, fix)]


def rule_non_finite(ctx: DiagnosisContext) -> list[Diagnosis]:
    """A NaN or infinity with nothing better to explain it: ``non_finite``.

    Algorithm: on a non-finite verdict, the growth of log-loss before the first non-finite
    point; with none (below ``GROWTH_BEFORE_OVERFLOW``, 0.05 a step) the NaN is the root (an
    unclamped log, a division by zero), confidence 0.8; after growth it is the symptom of
    :func:`rule_stability`'s ``lr_too_high``, 0.4.
    """
    if ctx.verdict.kind != "non_finite":
        return []
    at = ctx.verdict.failed_at
    s = growth(ctx.losses[: at or None])
    grew = s is not None and s >= GROWTH_BEFORE_OVERFLOW
    conf = 0.4 if grew else 0.8
    x = ctx.losses
    before = f"{fmt_g(float(x[at - 1]))} at step {at - 1}" if at else "nothing"
    what = f"loss became {x[at] if at is not None else 'nan'} at step {at}, after {before}"
    what += " with the loss growing before it" if grew else " with no growth before it"
    return [Diagnosis(
        "non_finite", conf, what,
        "use a logits-based loss (BCEWithLogitsLoss, CrossEntropyLoss on logits, "
        "from_logits=True) or clamp the argument of log (torch.clamp(p, 1e-7, 1 - 1e-7)); "
        "check the inputs for NaN; clip the gradient norm (e.g. 1.0)",
    )]


def rule_overfitting(ctx: DiagnosisContext) -> list[Diagnosis]:
    """An eval series that falls, then climbs while the training series falls: ``overfitting``.

    Algorithm: the judged series is not ``train`` and its verdict is a late rise (0.9), a
    rise, a stall or a spike (0.6), while the train series (3 points or more) falls: the
    median of its last fifth is below the median of its first fifth. The evidence gives the
    judged series' best point and end level; the fix, early stopping at that best point.
    """
    if ctx.judged == "train" or ctx.verdict.kind not in ("late_rise", "rise", "stall", "spike"):
        return []
    train = ctx.series.get("train")
    if not train or len(train) < 3:
        return []
    t = np.asarray(train, dtype=np.float64)
    k = max(1, len(t) // 5)
    falling = float(np.median(t[-k:])) < float(np.median(t[:k]))
    if not falling:
        return []
    st = ctx.verdict.stats
    best = st.get("best_step")
    conf = 0.9 if ctx.verdict.kind == "late_rise" else 0.6
    return [Diagnosis(
        "overfitting", conf,
        f"{ctx.judged} fell to {fmt_g(st.get('best', float('nan')))} (point {best}) and ended at "
        f"{fmt_g(st.get('end', float('nan')))} while train kept falling "
        f"({fmt_g(float(np.median(t[:k])))} -> {fmt_g(float(np.median(t[-k:])))})",
        f"stop at the best {ctx.judged} point ({best}; early stopping), add regularisation "
        "(weight decay, dropout) or more data, or shrink the model",
    )]


def _periodic(x: FloatArray) -> tuple[int, float] | None:
    """Lag and rank autocorrelation of a periodic component of the detrended log curve.

    Needs 12 points or more, all finite and positive. The best lag from 2 up counts when its
    rank autocorrelation reaches max(0.3, 3/sqrt(n)) and the autocorrelation at half the lag
    dips at least 0.5 below it.
    """
    n = len(x)
    if n < 12 or (x <= 0).any() or not np.isfinite(x).all():
        return None
    rhos = rank_autocorrelations(detrend(np.log(x)))
    if not rhos:
        return None
    best = max(((lag, rho) for lag, rho in rhos.items() if lag >= 2), key=lambda t: t[1],
               default=(0, 0.0))
    threshold = max(0.3, 3.0 / math.sqrt(n))
    lag, rho = best
    # A period shows as a dip of the autocorrelation at half the lag; a smooth residual (a
    # full-batch curve) decays instead, and is no period.
    if rho < threshold or rhos.get(max(1, lag // 2), 1.0) > rho - 0.5:
        return None
    return best


def rule_unshuffled(ctx: DiagnosisContext) -> list[Diagnosis]:
    """Batches in a fixed order: ``unshuffled_batches``, the train series repeats with the
    period of an epoch while the eval series does not fall.

    Algorithm: not on a curve that blows up (divergence, non-finite, spike, rise): a fixed
    order makes a curve swing, stall or over-fit. The train series has a period
    (:func:`_periodic`), and neither heavy momentum (>= 0.95) nor an lr above 1/lambda_max
    explains it (both swing by themselves). Confidence: 0.85 when the eval series does not
    fall (it does not pass, or drops less than half of what train drops); 0.8 when the period
    cuts the run into 3 or more equal epochs of 12 steps or more (to within lag/20 steps, at
    least 1); 0.65 with no eval series to confirm; otherwise nothing.
    """
    train = ctx.series.get("train")
    # A fixed batch order makes a curve swing, stall or over-fit; it does not make it blow up.
    if not train or ctx.verdict.kind in ("divergence", "non_finite", "spike", "rise"):
        return []
    per = _periodic(np.asarray(train, dtype=np.float64))
    if per is None:
        return []
    lag, rho = per
    ev = ctx.evidence
    if ev is not None and (ev.momentum or 0.0) >= 0.95:
        return []  # heavy momentum swings periodically by itself: see rule_oscillation
    lam = sharpness(ev) if ev is not None else None
    if lam is not None and ctx.lr and ctx.lr > 1.0 / lam:
        return []  # near the stability limit: the optimizer oscillates
    ev_verdict = ctx.verdicts.get("eval")
    eval_stuck = ev_verdict is not None and not ev_verdict.ok
    if ev_verdict is not None and not eval_stuck:
        drop_eval = ev_verdict.stats.get("drop") or 0.0
        drop_train = ctx.verdicts.get("train", ctx.verdict).stats.get("drop") or 0.0
        eval_stuck = drop_eval < 0.5 * drop_train
    # Epochs have equal lengths: a period that cuts the run into whole epochs is the epoch.
    n = len(train)
    off = min(n % lag, lag - n % lag) if lag else n
    epochs = round(n / lag) if lag else 0
    epochish = lag >= 12 and epochs >= 3 and off <= max(1, lag // 20)
    if eval_stuck:
        conf, where = 0.85, "while the eval loss does not fall"
    elif epochish:
        conf, where = 0.8, f"and the period cuts the {n} steps into {epochs} equal epochs"
    elif ev_verdict is None:
        conf, where = 0.65, "(record an eval series to confirm)"
    else:
        return []
    return [Diagnosis(
        "unshuffled_batches", conf,
        f"the train loss repeats every {lag} steps (rank autocorrelation {rho:.2f}) - the same "
        f"batches in the same order each epoch - {where}",
        "shuffle the data each epoch (DataLoader(shuffle=True), "
        "Dataset.shuffle(buffer_size=len(data))); note that Keras' fit(shuffle=True) replays "
        "the same order every epoch once a TensorFlow global seed is set",
    )]


def rule_oscillation(ctx: DiagnosisContext) -> list[Diagnosis]:
    """A periodic swing larger than the net drop: ``oscillation`` (the verdict's own kind).

    Algorithm: on an oscillation verdict, the swing, period and autocorrelation the verdict
    measured; confidence 0.7 with the fix "lower the lr", 0.85 with heavy momentum (>= 0.95)
    watched, whose fix is to lower it to 0.9.
    """
    if ctx.verdict.kind != "oscillation":
        return []
    st = ctx.verdict.stats
    ev = ctx.evidence
    fix = "lower the learning rate 3-10x"
    conf = 0.7
    if ev is not None and (ev.momentum or 0.0) >= 0.95:
        fix = f"lower the momentum ({fmt_g(ev.momentum or 0.0)} -> 0.9) or the learning rate"
        conf = 0.85
    # The swing is in log-loss on the log scale, in loss units on the linear one (a curve
    # that goes negative).
    swing = st.get("swing", 0.0)
    swing_s = f"x{fmt_exp(swing)}" if st.get("log_scale", True) else f"by {fmt_g(swing)} (linear)"
    return [Diagnosis(
        "oscillation", conf,
        f"the loss swings {swing_s} with a period of "
        f"{st.get('period')} steps (autocorrelation {st.get('autocorrelation', 0.0):.2f})",
        fix,
    )]


def rule_plateau(ctx: DiagnosisContext) -> list[Diagnosis]:
    """A flat or creeping curve with nothing more specific found: the lowest-ranked guess.

    Algorithm: a frozen curve (every loss equal) is ``no_learning`` (0.7). Too little drop
    with no sign of healthy updates (a typical update/weight ratio of 1e-4 or more) and no
    watcher notes is ``lr_too_low`` (0.55). Any other stall, too little drop or level above the
    ceiling is ``plateau`` (0.5), with the update ratio and the notes as its evidence.
    """
    kind = ctx.verdict.kind
    if kind == "frozen":
        return [Diagnosis(
            "no_learning", 0.7,
            f"every loss equals {ctx.verdict.stats.get('start')}: no parameter moved",
            "check that the optimizer holds the model's parameters, that they require grad "
            "(trainable=True) and that the learning rate is not 0",
        )]
    notes = "; ".join(ctx.evidence.notes) if ctx.evidence is not None else ""
    typical = typical_update(ctx.evidence)
    healthy_updates = typical is not None and typical >= 1e-4
    if kind == "too_little_drop" and not healthy_updates and not notes:
        return [Diagnosis(
            "lr_too_low", 0.55, ctx.verdict.reason,
            "raise the learning rate 10x, or train for more steps",
        )]
    if kind in ("stall", "too_little_drop", "above_ceiling"):
        evidence = ctx.verdict.reason
        if healthy_updates:
            evidence += f"; the weights do move (update/weight ratio {fmt_g(typical or 0.0)})"
        if notes:
            evidence += f"; {notes}"
        return [Diagnosis(
            "plateau", 0.5, evidence,
            "check the loss/activation pairing (softmax or sigmoid fed to a from_logits loss "
            "such as CrossEntropyLoss), the targets' alignment with the inputs and the learning "
            "rate; watch() the model for more",
        )]
    return []


__all__ = [
    "GROWTH_BEFORE_OVERFLOW",
    "HUGE_UPDATE",
    "rule_non_finite",
    "rule_oscillation",
    "rule_overfitting",
    "rule_plateau",
    "rule_stability",
    "rule_unshuffled",
]

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
    HEALTHY_UPDATE,
    adaptive,
    blew_up,
    chance,
    far_above_reference,
    first_level,
    fmt_g,
    fmt_level,
    grad_growth,
    growth,
    learned_nothing,
    level_change,
    log_scale,
    min_drop_of,
    nice_min_drop,
    reference_of,
    sharpness,
    typical_update,
)
from pytest_losstrend.verdict import constants
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
#: A blow-up's limit estimated from its growth to the peak is an upper bound; above lr divided
#: by this it is no useful fix, and "lower the lr 10x" is given instead.
BLOWUP_BOUND_CUT = 10.0
#: A gradient norm whose peak is this many times its first value has grown: the evidence a
#: rising loss on a linear scale (negative, or crossing zero) needs before the lr is blamed.
GROWING_GRADIENTS = 10.0
#: A loss with no sign of a decrease at all: the one-sided Mann-Kendall p-value of a decrease
#: at or above this (a run without signal still learns the label frequencies or memorises:
#: its p-values sit below 0.045 on ``benchmarks/corpus_new``; runs that never step, 0.07-0.88).
NO_TREND_P = 0.1


def _blowup_growth(ctx: DiagnosisContext) -> float | None:
    """Per-step growth of log-loss from the first level to the peak of a run that blew up (a
    positive curve), from the verdict's ``first``, ``peak`` and ``peak_step``."""
    st = ctx.verdict.stats
    first, peak, at = st.get("first"), st.get("peak"), st.get("peak_step")
    if not (isinstance(first, (int, float)) and isinstance(peak, (int, float))
            and isinstance(at, int)):
        return None
    if not (first > 0 and peak > first and log_scale(ctx.verdict)):
        return None
    return math.log(peak / first) / max(1, at - int(st.get("warmup") or 0))


def _blowup_figures(ctx: DiagnosisContext) -> str:
    """The blow-up in figures: where it went, when, and where the run ended."""
    st = ctx.verdict.stats
    first, peak, at = st.get("first", math.nan), st.get("peak", math.nan), st.get("peak_step")
    end = st.get("end", math.nan)
    by = (f"x{peak / first:.3g} its first level {fmt_level(first)}"
          if log_scale(ctx.verdict) and first > 0 else
          f"up by {fmt_g(peak - first)} from its first level {fmt_level(first)}")
    ref = reference_of(ctx.verdict)
    if ctx.verdict.kind == "chance_level" and ref is not None:
        return (f"blew up to {fmt_level(peak)} at step {at} ({by}), then ended at "
                f"{fmt_level(end)}, {end / ref:.3g}x the reference level {fmt_level(ref)}")
    return (f"blew up to {fmt_level(peak)} at step {at} ({by}) and ended at {fmt_level(end)}, "
            "no lower than where it started")


def _train_falls(ctx: DiagnosisContext) -> tuple[float, float] | None:
    """The first-fifth and last-fifth medians of the train series (3 points or more) when it
    falls while another series is judged, else None."""
    train = ctx.series.get("train")
    if ctx.judged == "train" or not train or len(train) < 3:
        return None
    t = np.asarray(train, dtype=np.float64)
    k = max(1, len(t) // 5)
    head, tail = float(np.median(t[:k])), float(np.median(t[-k:]))
    return (head, tail) if tail < head else None


def rule_stability(ctx: DiagnosisContext) -> list[Diagnosis]:
    """Divergence, overflow after growth, a blow-up or a spike: ``lr_too_high``, a learning
    rate past the stability limit 2/lambda_max.

    Algorithm: speaks on a divergence, a non-finite loss the log-loss grew into (a tail slope
    of at least ``GROWTH_BEFORE_OVERFLOW``, 0.05 a step; an overflow without growth is
    :func:`rule_non_finite`'s), a blow-up (the ``blowup`` kind, or a ``chance_level`` run that
    blew up before it ended at the reference, see
    :func:`~pytest_losstrend.diagnosis.signals.blew_up`), a spike, a rise, an oscillation, or
    a late rise of the train series. A blow-up or late rise of another series while train
    falls is over-fitting's (:func:`rule_overfitting`). Base confidence by kind: divergence,
    non-finite and blow-up 0.8, spike 0.6, oscillation and late rise 0.5, rise 0.45. A curve
    that is negative or crosses zero (judged on a linear scale: a likelihood, an ELBO) rises
    for more reasons than the step size, so there it speaks only with ``watch`` evidence: an
    lr past the measured limit, or a gradient norm that grew ``GROWING_GRADIENTS`` (10) times.
    Then, first match wins:

    - a learning rate that grew over the run by more than 1.5x: a schedule (0.85);
    - a measured sharpness lambda_max and a known lr: the limit 2/lambda_max; an lr above it is
      0.9, an lr within it (SGD) explains nothing, 0.3 at most; adaptive optimizers (Adam,
      RMSprop) get a 10x lower lr in the fix, since the bound is for SGD;
    - a known lr and a growth rate s (the tail's, or first level to peak for a blow-up): on a
      quadratic, lambda = (1 + e^(s/2)) / lr, so the limit is estimated (0.85 for a
      divergence, an overflow or a blow-up).

    A typical update/weight ratio above ``HUGE_UPDATE`` (0.1 a step; healthy is about 1e-3)
    lifts it to 0.8, unless the measured limit already cleared the lr. A blow-up's evidence
    states the first level, the peak and its step, and where the run ended.
    """
    kind = ctx.verdict.kind
    blow = blew_up(ctx.verdict)
    if kind not in ("divergence", "non_finite", "spike", "rise", "oscillation", "late_rise",
                    "blowup") and not blow:
        return []
    if kind == "late_rise" and ctx.judged != "train":
        return []
    if blow and _train_falls(ctx) is not None:
        return []  # an eval series climbing while train falls: see rule_overfitting
    ev = ctx.evidence
    lr = ctx.lr
    s = _blowup_growth(ctx) if blow else growth(ctx.losses)
    if kind == "non_finite" and (s is None or s < GROWTH_BEFORE_OVERFLOW):
        return []  # overflow without growth: see rule_non_finite
    linear = not log_scale(ctx.verdict)
    lam_measured = sharpness(ev) if ev is not None else None
    grads = grad_growth(ev)
    grads_grew = grads is not None and grads[1] >= GROWING_GRADIENTS * grads[0]
    if linear and not (grads_grew or (lam_measured and lr and lr > 2.0 / lam_measured)):
        return []  # a negative loss rising: nothing here says it is the step size
    out: list[str] = []
    conf = 0.8 if blow else {"divergence": 0.8, "non_finite": 0.8, "spike": 0.6, "rise": 0.45,
                             "oscillation": 0.5, "late_rise": 0.5}[kind]
    if blow:
        out.append(_blowup_figures(ctx))
    elif linear:
        out.append(f"the loss {level_change(ctx.verdict)}")
    if s is not None:
        out.append(f"log-loss grows {s:.3g} per step (x{fmt_exp(s)})")
    if linear and grads_grew and grads is not None:
        out.append(f"the gradient norm grew from {fmt_g(grads[0])} to {fmt_g(grads[1])}")
    fix = "lower the learning rate 10x (watch() the optimizer for the exact stability limit)"
    if ev is not None and len(ev.lr) >= 2 and ev.lr[-1] > ev.lr[0] * 1.5:
        out.append(f"the learning rate grew from {fmt_g(ev.lr[0])} to {fmt_g(ev.lr[-1])}")
        conf = max(conf, 0.85)
        fix = (f"keep the learning rate at or below {fmt_g(ev.lr[0])}: check the schedule "
               "(a factor > 1, or a warm-up that never ends)")
    elif ev is not None and lam_measured is not None and lr:
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
        if blow and limit > lr / BLOWUP_BOUND_CUT:
            # A blow-up saturates (dead ReLUs, a saturated softmax): its average growth to the
            # peak understates the rate, so the limit it gives is only an upper bound, and one
            # this close to lr says little.
            fix = (f"lower the learning rate 10x (lr = {fmt_g(lr / 10)}): the growth to the peak "
                   f"only bounds the stability limit 2/lambda_max (at most {fmt_g(limit)}); "
                   "watch(model, optimizer, loss_fn=..., batch=...) measures it")
        elif ev is not None and adaptive(ev):
            fix += f"; the estimate is for SGD: with {ev.optimizer}, lower the lr 10x"
        conf = max(conf, 0.85 if kind in ("divergence", "non_finite") or blow else conf)
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
    rise, a stall, a spike, a blow-up or an end at the reference level (0.6; 0.9 when the
    series climbed back from its best level beyond the noise, which the verdict marks with
    ``failed_at`` in its stats), while the train series (3 points or more) falls: the
    median of its last fifth is below the median of its first fifth. The evidence gives the
    judged series' best point and end level; the fix, early stopping at that best point.
    """
    kind = ctx.verdict.kind
    if kind not in ("late_rise", "rise", "stall", "spike", "blowup", "chance_level"):
        return []
    falls = _train_falls(ctx)
    if falls is None:
        return []
    st = ctx.verdict.stats
    best = st.get("best_step")
    climbed = kind in ("blowup", "chance_level") and "failed_at" in st
    conf = 0.9 if kind == "late_rise" or climbed else 0.6
    return [Diagnosis(
        "overfitting", conf,
        f"{ctx.judged} fell to {fmt_g(st.get('best', float('nan')))} (point {best}) and ended at "
        f"{fmt_g(st.get('end', float('nan')))} while train kept falling "
        f"({fmt_g(falls[0])} -> {fmt_g(falls[1])})",
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


#: Confidence of ``unshuffled_batches`` from a period that neither an eval series nor whole
#: epochs confirm, in a run that ended at its reference level: below ``chance_level`` (0.6).
UNCONFIRMED_AT_REFERENCE = 0.55


def rule_unshuffled(ctx: DiagnosisContext) -> list[Diagnosis]:
    """Batches in a fixed order: ``unshuffled_batches``, the train series repeats with the
    period of an epoch while the eval series does not fall.

    Algorithm: not on a curve that blows up (divergence, non-finite, spike, rise, blow-up): a
    fixed order makes a curve swing, stall or over-fit. The train series has a period
    (:func:`_periodic`), and neither heavy momentum (>= 0.95) nor an lr above 1/lambda_max
    explains it (both swing by themselves). Confidence: 0.85 when the eval series does not
    fall (it does not pass, or drops less than half of what train drops); 0.8 when the period
    cuts the run into 3 or more equal epochs of 12 steps or more (to within lag/20 steps, at
    least 1); 0.65 with no eval series to confirm, or ``UNCONFIRMED_AT_REFERENCE`` (0.55,
    below ``chance_level``) when the run ended at its reference level: a fixed order changes
    the order of the gradients, not what they say, so a period nothing confirms does not
    explain a model that learned nothing from its inputs; otherwise nothing.
    """
    train = ctx.series.get("train")
    # A fixed batch order makes a curve swing, stall or over-fit; it does not make it blow up.
    if not train or ctx.verdict.kind in ("divergence", "non_finite", "spike", "rise",
                                         "blowup") or blew_up(ctx.verdict):
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
        conf = UNCONFIRMED_AT_REFERENCE if learned_nothing(ctx.verdict) else 0.65
        where = "(record an eval series to confirm)"
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


def rule_chance_level(ctx: DiagnosisContext) -> list[Diagnosis]:
    """A run that ended no better than the best constant predictor: its root, else
    ``chance_level`` itself.

    Algorithm: on a ``chance_level`` verdict, or a short run that did not fall and ended less
    than ``REFERENCE_MARGIN`` (10%) below the reference level. The roots, most specific first,
    are named by the rules that own them, each above this rule's ``chance_level``: a blow-up
    (:func:`rule_stability`'s ``lr_too_high``), parameters ``watch`` saw frozen, unchanged,
    outside the optimizer or without gradients
    (:func:`~pytest_losstrend.diagnosis.watch_rules.rule_params_cannot_learn`'s
    ``no_learning``, 0.9), a first level ``FAR_ABOVE_REFERENCE`` (10) times the reference
    (:func:`~pytest_losstrend.diagnosis.watch_rules.rule_bad_init`'s ``bad_init``, 0.75).
    This rule adds, from the curve: ``no_learning`` (0.65) when the loss shows no sign of a
    decrease at all (one-sided Mann-Kendall p at or above ``NO_TREND_P``, 0.1: even the label
    frequencies were not learned, so the optimizer is not changing the model), unless it blew
    up, started far above the reference, or ``watch`` saw the weights move (a typical
    update/weight ratio of 1e-4 or more). Then ``chance_level``: 0.6, or 0.4 when the curve
    names a root (the symptom, then), with a fix that checks what makes a model learn nothing
    from its inputs. Where ``watch`` saw probabilities fed to a loss that expects logits, the
    root is that pairing's flat loss surface: ``plateau`` (0.7) with the pairing's fix.
    """
    verdict = ctx.verdict
    st = verdict.stats
    ref = reference_of(verdict)
    end = st.get("end")
    if ref is None:
        return _at_chance(ctx)
    if not isinstance(end, (int, float)):
        return []
    if verdict.kind == "short_run":
        if not end > ref * (1.0 - constants.REFERENCE_MARGIN):
            return []
    elif verdict.kind != "chance_level":
        return []
    out: list[Diagnosis] = []
    blow = blew_up(verdict)
    far = far_above_reference(first_level(verdict, ctx.losses), ref)
    p = st.get("p_value")
    typical = typical_update(ctx.evidence)
    moved = typical is not None and typical >= HEALTHY_UPDATE
    if (verdict.kind == "chance_level" and isinstance(p, float) and p >= NO_TREND_P
            and not (blow or far or moved)):
        out.append(Diagnosis(
            "no_learning", 0.65,
            f"the loss shows no decrease at all (Mann-Kendall p={p:.2g}) and ended at "
            f"{fmt_level(end)}, {end / ref:.3g}x the reference level {fmt_level(ref)}: the "
            "model did not even learn the label frequencies (or the mean target), so its "
            "parameters are not learning",
            "check that optimizer.step() runs after loss.backward() (and apply_gradients in a "
            "custom train_step), that the optimizer holds the model's parameters and they "
            "require grad (trainable=True), that the weights are not all initialised to the "
            "same value (zeros), and that the learning rate is not ~0; watch() the model to see "
            "which parameters do not move",
        ))
    # The watcher saw the loss/activation pairing that flattens the loss surface (a softmax
    # fed to a loss that applies its own): the run is stuck on a plateau, not blind to its
    # inputs.
    pairing = [n for n in (ctx.evidence.notes if ctx.evidence is not None else [])
               if "expects logits" in n]
    if pairing and not blow:
        out.append(Diagnosis(
            "plateau", 0.7,
            f"ended at {fmt_level(end)}, {end / ref:.3g}x the reference level "
            f"{fmt_level(ref)}, on the flat loss surface of a double squashing: "
            + "; ".join(pairing),
            "feed the loss logits (drop the softmax or sigmoid before it), or use the loss "
            "made for probabilities (NLLLoss on log-probabilities; from_logits=False in Keras)",
        ))
    conf = 0.4 if (blow or far or out) else 0.6
    out.append(Diagnosis(
        "chance_level", conf,
        f"ended at {fmt_level(end)}, {end / ref:.3g}x the reference level {fmt_level(ref)} (the "
        "loss of the best constant predictor: the label frequencies, or the mean target): the "
        "model learned nothing from its inputs",
        "check that the inputs and the labels are aligned (shuffled together, with one "
        "permutation, never each on its own), that the features reach the model (not detached, "
        "zeroed or replaced by a constant, and the right tensor fed to it) and that the target "
        "is the right column; a model that sees its labels beats the reference within an epoch",
    ))
    return out


def _at_chance(ctx: DiagnosisContext) -> list[Diagnosis]:
    """With no reference level, a classifier that stalled at the chance level ln(C):
    ``chance_level`` (0.6, above ``plateau``'s 0.5).

    C is the output width ``watch`` saw. Under a known cross-entropy loss, a run that did not
    blow up and ended above ``(1 - REFERENCE_MARGIN)`` ln(C) qualifies: ln(C) is the reference
    level of balanced labels and an upper bound of any other's, so it learned nothing from its
    inputs (labels shuffled against them, inputs that carry no signal). Where the loss is not
    known (a functional ``F.cross_entropy``), the end must lie within ``REFERENCE_MARGIN`` of
    ln(C) on either side, and the confidence is 0.55.
    """
    verdict = ctx.verdict
    end = verdict.stats.get("end")
    ev = ctx.evidence
    c = ev.output_features if ev is not None else None
    if (ev is None or c is None or c < 2 or not isinstance(end, (int, float))
            or verdict.kind not in ("stall", "too_little_drop", "short_run")):
        return []
    level = math.log(c)
    margin = constants.REFERENCE_MARGIN
    if chance(ev) is not None:
        confidence = 0.6
        at_chance = end > level * (1.0 - margin)
    elif ev.loss_name is None:
        confidence = 0.55
        at_chance = level * (1.0 - margin) < end < level * (1.0 + margin)
    else:
        return []  # a loss that is not a cross-entropy: ln(C) means nothing to it
    if not at_chance:
        return []
    return [Diagnosis(
        "chance_level", confidence,
        f"the loss stalled at {fmt_level(end)}, {end / level:.3g}x the chance level "
        f"ln({c}) = {fmt_level(level)} of a {c}-class output: the model predicts no better "
        "than guessing",
        "check that the labels are aligned with their inputs (not shuffled or sorted apart), "
        "that the inputs carry the signal (not zeros, not the wrong column) and that the "
        "model's output is not cut from its input (a detach, a constant layer)",
    )]


def rule_plateau(ctx: DiagnosisContext) -> list[Diagnosis]:
    """A flat or creeping curve with nothing more specific found: the lowest-ranked guess.

    Algorithm: a frozen curve (every loss equal) is ``no_learning`` (0.7). On a stall, too
    little drop or a level above the ceiling the curve alone names no root: ``plateau``
    (0.5), with the update ratio and the notes as its evidence. A root needs ``watch``
    evidence: weights that barely move (a typical update/weight ratio below 1e-5, or an SGD lr
    100x below the measured stability limit) are
    :func:`~pytest_losstrend.diagnosis.watch_rules.rule_tiny_updates`'s ``lr_too_low`` (0.8);
    on too little drop, a ratio below ``HEALTHY_UPDATE`` (1e-4) with no watcher notes is
    ``lr_too_low`` here (0.55); frozen or unchanged parameters are ``no_learning`` (0.9). For
    a drop that is real but small (too little drop), the fix states the drop achieved,
    ``min_drop``, the reference level where known, and the ``min_drop`` that would accept it
    when a small drop is expected. A curve that is negative or crosses zero is described by
    its absolute change.
    """
    kind = ctx.verdict.kind
    if kind == "frozen":
        return [Diagnosis(
            "no_learning", 0.7,
            f"every loss equals {ctx.verdict.stats.get('start')}: no parameter moved",
            "check that the optimizer holds the model's parameters, that they require grad "
            "(trainable=True) and that the learning rate is not 0",
        )]
    if kind not in ("stall", "too_little_drop", "above_ceiling"):
        return []
    notes = "; ".join(ctx.evidence.notes) if ctx.evidence is not None else ""
    typical = typical_update(ctx.evidence)
    healthy_updates = typical is not None and typical >= HEALTHY_UPDATE
    change = level_change(ctx.verdict)
    out: list[Diagnosis] = []
    if kind == "too_little_drop" and typical is not None and not healthy_updates and not notes:
        out.append(Diagnosis(
            "lr_too_low", 0.55,
            f"the update/weight ratio is {fmt_g(typical)} a step (healthy is about 1e-3); "
            f"the loss plateaued (it {change})",
            "raise the learning rate 10x, or train for more steps",
        ))
    evidence = (ctx.verdict.reason if kind == "above_ceiling"
                else f"the loss plateaued: it {change}")
    if healthy_updates:
        evidence += f"; the weights do move (update/weight ratio {fmt_g(typical or 0.0)})"
    if notes:
        evidence += f"; {notes}"
    out.append(Diagnosis("plateau", 0.5, evidence, _plateau_fix(ctx)))
    return out


def _plateau_fix(ctx: DiagnosisContext) -> str:
    """A plateau's fix: for a real but small drop, the figures and the criterion that would
    accept it; then what to check."""
    check = ("check the loss/activation pairing (softmax or sigmoid fed to a from_logits loss "
             "such as CrossEntropyLoss), the targets' alignment with the inputs and the learning "
             "rate; watch() the model for more")
    verdict = ctx.verdict
    drop = verdict.stats.get("drop")
    if verdict.kind != "too_little_drop" or not isinstance(drop, float) or not drop > 0:
        return check
    min_drop = min_drop_of(verdict)
    parts = [f"it {level_change(verdict)}"
             + (f", less than min_drop={min_drop:g}" if min_drop is not None else "")]
    ref = reference_of(verdict)
    end = verdict.stats.get("end")
    if ref is not None and isinstance(end, (int, float)) and end < ref:
        parts.append(f"it ended at {end / ref:.3g}x the reference level {fmt_level(ref)}, so "
                     "it does learn from its inputs, only slowly")
    elif ref is not None and isinstance(end, (int, float)):
        parts.append(f"it ended at {end / ref:.3g}x the reference level {fmt_level(ref)}")
    suggest = nice_min_drop(drop)
    if suggest is not None:
        parts.append(f"if a small drop is expected (fine-tuning, a short run), set "
                     f"min_drop={suggest:g}")
    return "; ".join(parts) + "; otherwise " + check


__all__ = [
    "BLOWUP_BOUND_CUT",
    "GROWING_GRADIENTS",
    "GROWTH_BEFORE_OVERFLOW",
    "HUGE_UPDATE",
    "NO_TREND_P",
    "UNCONFIRMED_AT_REFERENCE",
    "rule_chance_level",
    "rule_non_finite",
    "rule_oscillation",
    "rule_overfitting",
    "rule_plateau",
    "rule_stability",
    "rule_unshuffled",
]

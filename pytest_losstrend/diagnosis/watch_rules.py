"""Root causes only ``watch`` can see (numpy and plain data only).

One small rule per cause, each reading :attr:`DiagnosisContext.evidence` (and, for a shape
mismatch, the test's warnings). Most of them speak only when the verdict's kind fits the cause:
a run that *blows up* (``BLOWING_UP``) or one that *stalls* (``STALLING``, which includes a run
that ends no better than the best constant predictor, ``chance_level``, and a short run that did
not decrease). A run that blew up and then ended at the reference is a blow-up first: the causes
of a stall (frozen or unchanged parameters, dead units) are then its consequences, and step down.
They run before the curve rules, in the order ``pytest_losstrend.diagnosis.rules.BUILTIN_RULES``
states; a root cause they find outranks the symptom a curve rule names by its confidence, not by
its place.

Calibration: the constants were set on the scenarios of ``pytest_losstrend.catalogue.scenarios``
(each fault next to its healthy twin, 10 seeds, ``benchmarks/diagnosis_accuracy.py``) and are
reported in ``benchmarks/README.md``, "Diagnosis": each cause these rules name is the top-1
cause of its bad scenario with ``watch`` on 10/10 seeds.
"""

from __future__ import annotations

import math

from pytest_losstrend.diagnosis.context import DiagnosisContext
from pytest_losstrend.diagnosis.evidence import Evidence
from pytest_losstrend.diagnosis.signals import (
    HEALTHY_UPDATE,
    blew_up,
    chance,
    dead_line,
    far_above_reference,
    first_level,
    fmt_g,
    fmt_level,
    learned_nothing,
    lr_below_limit,
    reference_of,
    sharpness,
    symptom,
    typical_update,
    unscaled,
    unscaled_line,
)
from pytest_losstrend.verdict.result import Diagnosis

#: Verdict kinds of a run that blows up: the causes that make a loss explode may speak.
BLOWING_UP = ("divergence", "non_finite", "spike", "oscillation", "rise", "blowup")
#: Verdict kinds of a run that stalls or creeps: the causes that keep a loss up may speak.
STALLING = ("stall", "too_little_drop", "frozen", "noisy", "late_rise", "above_ceiling",
            "chance_level", "short_run")

#: An activation layer with at least this fraction of zero outputs is dead (ReLUs that never
#: fire); the passing warnings note half-dead layers from 0.5.
DEAD_FRACTION = 0.7
#: A median update/weight ratio below this per step is a learning rate too low to move the
#: weights (healthy training sits near 1e-3).
TINY_UPDATE = 1e-5
#: An SGD learning rate this many times below the stability limit 2/lambda_max measured on a
#: fixed batch is too low: a step moves the loss along the sharpest direction by less than 2%
#: of what it could (healthy runs sit within 10x of the limit).
FAR_BELOW_LIMIT = 100.0
#: Adam, RMSprop and Adagrad move each weight by about ``lr`` a step at most (a few times it at
#: worst), whatever the gradient's scale: an lr times the steps below this cannot change weights
#: of the usual sizes (0.01-1) by more than a few percent. Healthy runs of
#: ``benchmarks/corpus_new`` reach 6e-3 or more (fine-tuning at lr 1e-4 for 64 steps).
ADAPTIVE_REACH = 1e-3
#: Optimizers whose step is bounded by the learning rate (lower-case name prefixes); Adadelta's
#: lr multiplies a unit-corrected step and is not among them.
LR_BOUNDED_STEP = ("adam", "rmsprop", "adagrad")
#: Confidence of a stall's cause (held-out or unchanged parameters, dead units) on a run that
#: blew up first: then they are more likely the blow-up's consequence than its root.
AFTER_BLOWUP = 0.6
#: A layer with fewer than this fraction of its units dead still passes signal (a few live
#: ReLUs are enough to beat the best constant predictor): in a run that ended at its reference
#: level it does not explain a model that learned nothing...
PASSES_SIGNAL_BELOW = 0.9
#: ...and ``dead_units`` then ranks below ``chance_level`` (0.6), as a symptom: a model
#: pushed towards the label frequencies (labels shuffled against the inputs) kills ReLUs.
PARTLY_DEAD_AT_REFERENCE = 0.5
#: Confidence of ``dead_units`` from saturated tanh/sigmoid units alone: below ``bad_init``
#: and ``lr_too_high``, whose symptom saturation usually is.
SATURATED_CONFIDENCE = 0.45
#: A gradient norm whose peak is this many times its first value has exploded.
EXPLODING_GRAD_RATIO = 70.0
#: A first gradient this many times the weights (|g|/|w|): the write-up regressions sit at 1-10,
#: a deep net with a x3 init at 900-3000.
EXPLODING_GRAD_AT_INIT = 100.0
#: A first loss above this multiple of the chance level ln(C) is a bad initialisation.
BAD_INIT_FACTOR = 2.0


def _dead(ev: Evidence) -> dict[str, float]:
    """Activation layers at or above ``DEAD_FRACTION`` zero outputs, with their fraction."""
    return {k: v for k, v in ev.dead_fraction.items() if v >= DEAD_FRACTION}


def _held_out(ev: Evidence) -> bool:
    """Whether parameters are kept out of training (not in the optimizer, or frozen)."""
    return bool(ev.not_in_optimizer or ev.frozen)


def _with_symptom(ctx: DiagnosisContext, evidence: str) -> str:
    """``evidence`` followed by what the curve shows (a plateau, an end at the reference)."""
    shown = symptom(ctx.verdict)
    return f"{evidence}; {shown}" if shown else evidence


def rule_shape_mismatch(ctx: DiagnosisContext) -> list[Diagnosis]:
    """Predictions broadcast against their targets in the loss call (confidence 0.95).

    Algorithm: the shape mismatches the watcher saw in the loss call, then torch's own
    broadcast warning among the test's warnings (a message naming both "target size" and
    "input size"); the first line of the first one is the evidence. Needs no ``watch``: the
    warning is captured by the marker. Whatever the verdict, since a broadcast loss is wrong
    even when it falls.
    """
    ev = ctx.evidence
    mismatches = list(ev.shape_mismatches) if ev is not None else []
    mismatches += [w for w in ctx.warnings if "target size" in w and "input size" in w]
    if not mismatches:
        return []
    return [Diagnosis(
        "shape_mismatch", 0.95, mismatches[0].splitlines()[0],
        "make the prediction and the target the same shape, e.g. pred.squeeze(-1) or "
        "y.reshape(-1, 1), before the loss: broadcasting (N,) against (N, 1) compares every "
        "prediction with every target",
    )]


def rule_stale_gradients(ctx: DiagnosisContext) -> list[Diagnosis]:
    """Gradients never cleared between optimizer steps (confidence 0.95).

    Algorithm: where the watcher checked the gradients themselves (``grad_checks`` >= 2), any
    sampled step whose gradients the next backward pass found still in place
    (``stale_steps``); otherwise at least 3 optimizer steps were watched and ``zero_grad`` (or
    an equivalent clearing) was seen 0 times, so each step applies the sum of all gradients
    so far. Keras clears gradients itself (``zero_grad_calls`` is None there), so it never
    fires on Keras.
    Whatever the verdict: summed gradients are a bug even on a curve that falls.
    """
    ev = ctx.evidence
    if ev is None:
        return []
    fix = ("call optimizer.zero_grad() before loss.backward() in every step (and check that it "
           "is the optimizer's own, not replaced by one that does nothing)")
    if ev.grad_checks is not None and ev.grad_checks >= 2:
        # Seen in the gradients themselves: a zero_grad that does nothing is caught too.
        if not ev.stale_steps:
            return []
        n = len(ev.stale_steps)
        how = ("gradients never cleared" if n == ev.grad_checks
               else "gradients not cleared after every step")
        return [Diagnosis(
            "stale_gradients", 0.95,
            f"{ev.optimizer_steps} optimizer steps and {how} (carried over at {n} of the "
            f"{ev.grad_checks} steps checked): each step applies the sum of the gradients so far",
            fix,
        )]
    if not (ev.zero_grad_calls == 0 and ev.optimizer_steps >= 3):
        return []
    return [Diagnosis(
        "stale_gradients", 0.95,
        f"{ev.optimizer_steps} optimizer steps and gradients never cleared: each step "
        "applies the sum of all gradients so far",
        fix,
    )]


def rule_params_cannot_learn(ctx: DiagnosisContext) -> list[Diagnosis]:
    """Parameters that cannot learn: ``no_learning`` (confidence 0.9).

    Algorithm: the parameters not in the optimizer, frozen, never changed, or with a zero
    gradient at every sample. Parameters *held out* of training (not in the optimizer, or
    frozen) are a root cause; parameters that merely did not move are one only when nothing
    explains it better (no layer is dead, see ``DEAD_FRACTION``) and at least half of the
    watched parameters are stuck. Speaks on a stalling or frozen curve (a plateau, an end at
    the reference level, a short run that did not fall), or on an oscillating one when
    parameters are held out (a few free parameters swinging around the held ones). On a run
    that blew up first (:func:`~pytest_losstrend.diagnosis.signals.blew_up`) the blow-up is the
    likelier root, so the confidence is ``AFTER_BLOWUP`` (0.6). The evidence ends with the
    symptom the curve shows.
    """
    ev = ctx.evidence
    if ev is None:
        return []
    kind = ctx.verdict.kind
    stalling = kind in STALLING
    dead = _dead(ev)
    cannot = list(dict.fromkeys(ev.not_in_optimizer + ev.frozen + ev.unchanged
                                + ev.zero_grad_params))
    # Parameters held out of training are a root cause; parameters that merely did not move
    # are one only when nothing explains it better (dead units) and most of the model is stuck.
    held_out = _held_out(ev)
    n_params = max(1, len(ev.update_ratio) or len(cannot))
    mostly_stuck = len(set(ev.unchanged + ev.zero_grad_params)) >= 0.5 * n_params
    relevant = stalling or kind == "frozen" or (held_out and kind == "oscillation")
    if not (cannot and relevant and (held_out or (mostly_stuck and not dead))):
        return []
    parts = []
    if ev.not_in_optimizer:
        parts.append(f"not in the optimizer: {', '.join(ev.not_in_optimizer[:4])}")
    if ev.frozen:
        parts.append(f"frozen: {', '.join(ev.frozen[:4])}")
    if ev.unchanged:
        parts.append(f"never changed: {', '.join(ev.unchanged[:4])}")
    if ev.zero_grad_params:
        parts.append(f"zero gradient: {', '.join(ev.zero_grad_params[:4])}")
    fix = ("give every parameter to the optimizer (optimizer = SGD(model.parameters(), "
           "...)), set requires_grad=True / trainable=True on the weights meant to learn, "
           "and check that the loss is not computed from detached tensors")
    conf = 0.9
    if blew_up(ctx.verdict):
        conf = AFTER_BLOWUP
        parts.append("after the loss blew up")
    return [Diagnosis("no_learning", conf, _with_symptom(ctx, "; ".join(parts)), fix)]


def rule_unscaled_features(ctx: DiagnosisContext) -> list[Diagnosis]:
    """Input features on very different scales (confidence 0.9 blowing up, 0.7 stalling).

    Algorithm: the statistics of the first batch of inputs fail
    :func:`~pytest_losstrend.diagnosis.signals.unscaled` (a feature std ratio above 100, a
    magnitude above 1e3, or a Gram condition number above 1e4 that standardising improves more
    than 100x) and the curve blows up (a run that blew up before it ended at the reference
    counts) or stalls. The evidence gives the std range, the ratio, max |x| and, when
    measured, both condition numbers.
    """
    ev = ctx.evidence
    if ev is None:
        return []
    blowing_up = ctx.verdict.kind in BLOWING_UP or blew_up(ctx.verdict)
    stalling = ctx.verdict.kind in STALLING
    stats = ev.input_stats
    if not (unscaled(stats) and (blowing_up or stalling)):
        return []
    conf = 0.9 if blowing_up else 0.7
    cond = stats.get("cond")
    cond_s = stats.get("cond_standardised")
    extra = (f", condition number {fmt_g(cond)} raw vs {fmt_g(cond_s)} standardised"
             if cond and cond_s else "")
    return [Diagnosis(
        "unscaled_features", conf, unscaled_line(stats) + extra,
        "standardise the inputs (sklearn StandardScaler, or (x - mean) / std per feature, "
        "or a keras.layers.Normalization layer; divide 0-255 pixels by 255); then recompute "
        "the learning rate",
    )]


def rule_dead_units(ctx: DiagnosisContext) -> list[Diagnosis]:
    """Dead ReLUs: ``dead_units`` (confidence 0.92, or 0.8 when parameters are held out).

    Algorithm: an activation layer with at least ``DEAD_FRACTION`` (0.7) of its outputs zero on
    every sampled batch, on a stalling, rising or blown-up curve; the deadest layer is the
    evidence. A module activation (``nn.ReLU``) is measured on one batch at the end; one called
    as a function (``F.relu(self.fc1(x))``, named ``"fc1 via F.relu"``) over the last sampled
    training steps. Held-out parameters explain a stall too, so they lower the confidence below
    ``no_learning``'s 0.9; a blow-up kills ReLUs, so after one the confidence is
    ``AFTER_BLOWUP`` (0.6), below the learning rate that blew it up. In a run that ended at its
    reference level (the model learned nothing), a deadest layer under ``PASSES_SIGNAL_BELOW``
    (90%) dead still passes signal and cannot be why: ``PARTLY_DEAD_AT_REFERENCE`` (0.5), below
    ``chance_level``.

    Saturated tanh or sigmoid outputs (at least ``DEAD_FRACTION`` of a layer's outputs over the
    sampled steps), with no dead ReLU, are named at ``SATURATED_CONFIDENCE`` (0.45): saturation
    is the symptom of an initialisation or a learning rate too large, which their own rules
    name above it.
    """
    ev = ctx.evidence
    if ev is None:
        return []
    dead = _dead(ev)
    kind = ctx.verdict.kind
    if not (kind in STALLING or kind in ("rise", "blowup")):
        return []
    if not dead:
        sat = {k: v for k, v in ev.saturated_fraction.items() if v >= DEAD_FRACTION}
        if not sat:
            return []
        name, frac = max(sat.items(), key=lambda kv: kv[1])
        return [Diagnosis(
            "dead_units", SATURATED_CONFIDENCE, dead_line(ev, name, frac, saturated=True),
            "use a default (Glorot) initialisation, standardise the inputs, normalise the "
            "pre-activations (LayerNorm or BatchNorm) or lower the learning rate",
        )]
    name, frac = max(dead.items(), key=lambda kv: kv[1])
    what = dead_line(ev, name, frac)
    conf = 0.92 if not _held_out(ev) else 0.8
    if blew_up(ctx.verdict):
        conf, what = AFTER_BLOWUP, what + ", after the loss blew up"
    elif frac < PASSES_SIGNAL_BELOW and learned_nothing(ctx.verdict):
        conf = min(conf, PARTLY_DEAD_AT_REFERENCE)
        what += (", but the live units still pass signal: not why the run ended at the "
                 "reference level")
    return [Diagnosis(
        "dead_units", conf, what,
        "use a default (He/Glorot) initialisation with zero or positive biases, a lower "
        "learning rate, or LeakyReLU",
    )]


def rule_tiny_updates(ctx: DiagnosisContext) -> list[Diagnosis]:
    """A learning rate too low to move the weights: ``lr_too_low`` (confidence 0.8).

    Algorithm: on a stalling curve that did not blow up first, with neither held-out
    parameters nor dead units to explain the stall, either of:

    - the typical update/weight ratio
      (:func:`~pytest_losstrend.diagnosis.signals.typical_update`: the largest per-tensor
      median, biases and the first step left out) is below ``TINY_UPDATE`` (1e-5 a step); the
      fix multiplies the watched lr by 30 (about the middle of 10-100x on a log scale);
    - an SGD learning rate ``FAR_BELOW_LIMIT`` (100) times or more below the stability limit
      2/lambda_max measured on a fixed batch, with no sign that the weights move anyway (a
      typical update/weight ratio of ``HEALTHY_UPDATE``, 1e-4, or more) and no watcher note
      naming another cause (a flat loss surface, such as softmax fed to a logits loss, makes
      the limit huge); the fix is lr = 1/lambda_max, half the limit;
    - an optimizer whose step is bounded by its lr (``LR_BOUNDED_STEP``: Adam, RMSprop,
      Adagrad) with lr times the optimizer steps (the recorded points when unknown) below
      ``ADAPTIVE_REACH`` (1e-3): no weight can have moved more than that over the run.

    The evidence ends with the symptom the curve shows (a plateau, an end at the reference).
    """
    ev = ctx.evidence
    if ev is None:
        return []
    stalling = ctx.verdict.kind in STALLING
    if not stalling or _held_out(ev) or _dead(ev) or blew_up(ctx.verdict):
        return []
    typical = typical_update(ev)
    lr = ctx.lr
    below = lr_below_limit(ev, lr)
    lam = sharpness(ev)
    if typical is not None and typical < TINY_UPDATE:
        what = (f"the update/weight ratio is {fmt_g(typical)} a step (healthy is about 1e-3)"
                + (f" at lr = {fmt_g(lr)}" if lr else ""))
        fix = (f"raise the learning rate 10-100x (lr = {fmt_g(lr * 30)})" if lr
               else "raise the learning rate 10-100x")
    elif (below is not None and below >= FAR_BELOW_LIMIT and lr and lam is not None
          and not (typical is not None and typical >= HEALTHY_UPDATE) and not ev.notes):
        what = (f"lr = {fmt_g(lr)} is {below:.3g}x below the stability limit 2/lambda_max = "
                f"{fmt_g(2.0 / lam)} measured on a fixed batch")
        fix = (f"raise the learning rate toward the limit: lr = {fmt_g(1.0 / lam)} "
               "(1/lambda_max, half the stability limit 2/lambda_max)")
    elif lr and (ev.optimizer or "").lower().startswith(LR_BOUNDED_STEP) and (
            lr * (ev.optimizer_steps or len(ctx.losses)) < ADAPTIVE_REACH):
        steps = ev.optimizer_steps or len(ctx.losses)
        what = (f"{ev.optimizer} moves each weight by about lr = {fmt_g(lr)} a step at most: "
                f"{fmt_g(lr * steps)} over {steps} steps, too little to change weights of the "
                "usual sizes (0.01-1)")
        fix = (f"raise the learning rate: {ev.optimizer}'s usual range is 1e-4 to 1e-2 "
               "(1e-3 is its default)")
    else:
        return []
    return [Diagnosis("lr_too_low", 0.8, _with_symptom(ctx, what), fix)]


def rule_exploding_gradients(ctx: DiagnosisContext) -> list[Diagnosis]:
    """Exploding gradients (confidence 0.92 at initialisation, 0.6 when they grow).

    Algorithm, on a curve that blows up: the gradient norm *grew*, its peak (a NaN counts as
    infinite) over its first value above ``EXPLODING_GRAD_RATIO`` (70); or, on torch, it was
    already huge *at initialisation*: the first step's |g|/|w| (the largest first
    update/weight ratio of a weight, over the first lr) above ``EXPLODING_GRAD_AT_INIT`` (100)
    with the inputs scaled. At initialisation is the root (the init or the architecture, not
    the lr), hence above ``lr_too_high``'s 0.9; growth alone is a symptom, hence below it.
    """
    ev = ctx.evidence
    if ev is None or not (ev.grad_norm and ctx.verdict.kind in BLOWING_UP):
        return []
    first = ev.grad_norm[0]
    peak = max((g if not math.isnan(g) else math.inf) for g in ev.grad_norm)
    grew = first > 0 and peak / first > EXPLODING_GRAD_RATIO
    # Gradients already huge before the first update come from the initialisation or the
    # architecture, not from the learning rate: that is the root.
    # |g| / |w| at the very first step (the first update ratio over the lr): a gradient a
    # hundred times the weights before any update has happened.
    first_ratio = max((v[0] for k, v in ev.update_ratio.items()
                       if v and not k.endswith("bias") and math.isfinite(v[0])), default=0.0)
    lr0 = ev.lr[0] if ev.lr else None
    at_init = (
        bool(ev.steps) and ev.steps[0] == 0 and ev.framework == "torch" and bool(lr0)
        and first_ratio / (lr0 or 1.0) > EXPLODING_GRAD_AT_INIT
        and not unscaled(ev.input_stats)
    )
    if not (grew or at_init):
        return []
    what = (f"the gradient norm is {fmt_g(first)} at the first step"
            + (f" ({fmt_g(first_ratio / (lr0 or 1.0))}x the weights)" if at_init else "")
            + (f" and grows to {fmt_g(peak)}" if grew else ""))
    return [Diagnosis(
        "exploding_gradients", 0.92 if at_init else 0.6, what,
        "use a default (He/Glorot) initialisation or normalisation layers, clip the "
        "gradient norm (torch.nn.utils.clip_grad_norm_(params, 1.0); clipnorm=1.0 in "
        "Keras) and lower the learning rate",
    )]


def rule_bad_init(ctx: DiagnosisContext) -> list[Diagnosis]:
    """A first loss far above where a sane initialisation starts: ``bad_init`` (confidence
    0.75 stalling, else 0.5).

    Algorithm, whatever the verdict (a stall makes it likelier the root), either of:

    - for a C-class cross-entropy classifier ``watch`` saw, the first loss above
      ``BAD_INIT_FACTOR`` (2) times the chance level ln(C), the loss of a uniform prediction;
    - the first level (after warmup) at least ``FAR_ABOVE_REFERENCE`` (10) times the
      reference level the verdict was judged against, the loss of the best constant predictor
      (weights x100 at init start at 15x to 4,000x it; healthy runs at most 6x). Needs no
      ``watch``: the reference is the verdict's.
    """
    ev = ctx.evidence
    conf = 0.75 if ctx.verdict.kind in STALLING else 0.5
    fix = ("use the default (He/Glorot) initialisation, scale the last layer down "
           "(or zero it), and standardise the inputs")
    level = chance(ev) if ev is not None else None
    first_loss = ev.first_loss if ev is not None else None
    if level is not None and first_loss is not None and first_loss > BAD_INIT_FACTOR * level:
        return [Diagnosis(
            "bad_init", conf,
            f"the first loss {fmt_g(first_loss)} is {first_loss / level:.3g}x the chance "
            f"level ln({ev.output_features if ev is not None else '?'}) = {fmt_g(level)}",
            fix,
        )]
    ref = reference_of(ctx.verdict)
    first = first_level(ctx.verdict, ctx.losses)
    if not far_above_reference(first, ref) or first is None or ref is None:
        return []
    return [Diagnosis(
        "bad_init", conf,
        f"first loss {fmt_level(first)} is {first / ref:.3g}x the reference {fmt_level(ref)} "
        "(the loss of the best constant predictor, which a sane initialisation starts near)",
        fix,
    )]


#: The warnings of a passing (or skipped) test that the evidence makes certain, by code: they
#: become a ``LossTrendWarning`` in pytest's warnings summary. ``bad_init``: a first loss 10x
#: the chance level ln(C) or 10x the reference level (a measured level against a computed one);
#: ``dead_units``: at least half of a layer's units never active (or saturated) on what was
#: measured; ``unscaled_features``: input statistics past the thresholds of
#: :func:`~pytest_losstrend.diagnosis.signals.unscaled`; ``loss_input``: probabilities (rows in
#: [0, 1] summing to 1) fed to a loss that expects logits. Parameters outside the optimizer and
#: broadcast shapes are left out: they are invariants, which fail the test unless ``allow=``
#: says they are meant.
SURE_WARNINGS = ("bad_init", "dead_units", "unscaled_features", "loss_input")
#: A passing test is warned about saturated tanh/sigmoid units from this fraction (as about
#: half-dead ReLUs).
WARN_SATURATED_FRACTION = 0.5


def sure_warnings(warnings: list[str], evidence: Evidence | None) -> tuple[list[str], list[str]]:
    """``(every warning, the sure ones)`` of a passing or skipped test: ``warnings`` (the
    passing warnings, ``code: text``) with the watcher's own certain notes added (saturated
    units, probabilities fed to a logits loss), and of those the ones whose code is in
    :data:`SURE_WARNINGS`."""
    out = list(warnings)
    if evidence is not None:
        for name, frac in evidence.saturated_fraction.items():
            if frac >= WARN_SATURATED_FRACTION:
                out.append("dead_units: " + dead_line(evidence, name, frac, saturated=True))
        out += [f"loss_input: {n}" for n in evidence.notes if "expects logits" in n]
    out = list(dict.fromkeys(out))
    return out, [w for w in out if w.split(":", 1)[0] in SURE_WARNINGS]


__all__ = [
    "ADAPTIVE_REACH",
    "AFTER_BLOWUP",
    "BAD_INIT_FACTOR",
    "BLOWING_UP",
    "DEAD_FRACTION",
    "EXPLODING_GRAD_AT_INIT",
    "EXPLODING_GRAD_RATIO",
    "FAR_BELOW_LIMIT",
    "LR_BOUNDED_STEP",
    "PARTLY_DEAD_AT_REFERENCE",
    "PASSES_SIGNAL_BELOW",
    "SATURATED_CONFIDENCE",
    "STALLING",
    "SURE_WARNINGS",
    "TINY_UPDATE",
    "WARN_SATURATED_FRACTION",
    "rule_bad_init",
    "rule_dead_units",
    "rule_exploding_gradients",
    "rule_params_cannot_learn",
    "rule_shape_mismatch",
    "rule_stale_gradients",
    "rule_tiny_updates",
    "rule_unscaled_features",
    "sure_warnings",
]

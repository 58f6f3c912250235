"""Why a loss does not fall: ranked diagnoses with their evidence and a fix (numpy only).

Each rule reads a :class:`DiagnosisContext` (the recorded series, the verdict, and what
``losstrend.watch`` saw, if anything) and returns :class:`Diagnosis` objects. Confidence ranks
them: a rule that names a root cause (missing ``zero_grad``, unscaled features, a learning rate
past the stability limit) scores above the symptom it explains (a non-finite loss, exploding
gradients). The rules are plain functions so that :func:`pytest_losstrend.check` can apply them
without pytest; under pytest they are registered through the ``pytest_losstrend_diagnose`` hook
like anyone else's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from pytest_losstrend.diagnosis.evidence import Evidence
from pytest_losstrend.verdict.result import Diagnosis, Verdict
from pytest_losstrend.verdict.stats import (
    FloatArray,
    detrend,
    fmt_exp,
    rank_autocorrelations,
    safe_exp,
)

#: The stable cause codes (DESIGN.md); rules may add others.
CAUSES = (
    "non_finite",
    "lr_too_high",
    "lr_too_low",
    "unscaled_features",
    "unshuffled_batches",
    "no_learning",
    "stale_gradients",
    "bad_init",
    "exploding_gradients",
    "dead_units",
    "shape_mismatch",
    "overfitting",
    "plateau",
    "oscillation",
)

# Thresholds, from the research digest (trend_methods.md, section 5) and the benchmark corpus.
UNSCALED_STD_RATIO = 100.0
UNSCALED_MAX_ABS = 1e3
# Ill-conditioning that standardising would remove: raw features whose Gram matrix is this much
# worse conditioned than the standardised one (and badly conditioned in absolute terms).
UNSCALED_COND_GAIN = 100.0
UNSCALED_COND = 1e4
DEAD_FRACTION = 0.7
TINY_UPDATE = 1e-5
HUGE_UPDATE = 0.1
EXPLODING_GRAD_RATIO = 70.0
# A first gradient this many times the weights (|g|/|w|): the write-up regressions sit at 1-10,
# a deep net with a x3 init at 900-3000.
EXPLODING_GRAD_AT_INIT = 100.0
BAD_INIT_FACTOR = 2.0
WARN_INIT_FACTOR = 10.0


@dataclass
class DiagnosisContext:
    """Everything a diagnosis rule may look at.

    Attributes:
        series: every recorded series, as floats.
        judged: the name of the judged series.
        verdict: the verdict of the judged series.
        verdicts: the verdict of every series (the others judged with the default criteria).
        evidence: what ``watch`` saw, or None.
        warnings: messages of the warnings the test emitted (e.g. torch's broadcast warning).
    """

    series: dict[str, list[float]]
    judged: str
    verdict: Verdict
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    evidence: Evidence | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def losses(self) -> FloatArray:
        """The judged series as a float array."""
        return np.asarray(self.series.get(self.judged, []), dtype=np.float64)

    @property
    def lr(self) -> float | None:
        """The learning rate in use (the last one watched), if known."""
        return self.evidence.last_lr if self.evidence is not None else None


Rule = Callable[[DiagnosisContext], Iterable[Diagnosis]]


def _g(v: float) -> str:
    return f"{v:.3g}"


def _adaptive(ev: Evidence | None) -> bool:
    return ev is not None and (ev.optimizer or "").lower().startswith(("adam", "rmsprop", "ada"))


def _growth(losses: FloatArray) -> float | None:
    """Per-step growth of log-loss over the finite, positive, rising end of the curve."""
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


def rule_stability(ctx: DiagnosisContext) -> list[Diagnosis]:
    """Divergence, overflow after growth, or a spike: a learning rate past the stability
    limit 2/lambda_max. The limit is estimated from the growth rate on a quadratic
    (lambda = (1 + e^(s/2)) / lr for a tail slope s of log-loss), or measured (sharpness)."""
    kind = ctx.verdict.kind
    if kind not in ("divergence", "non_finite", "spike", "rise", "oscillation", "late_rise"):
        return []
    if kind == "late_rise" and ctx.judged != "train":
        return []
    ev = ctx.evidence
    lr = ctx.lr
    s = _growth(ctx.losses)
    if kind == "non_finite" and (s is None or s < 0.05):
        return []  # overflow without growth: see rule_non_finite
    out: list[str] = []
    conf = {"divergence": 0.8, "non_finite": 0.8, "spike": 0.6, "rise": 0.45,
            "oscillation": 0.5, "late_rise": 0.5}[kind]
    if s is not None:
        out.append(f"log-loss grows {s:.3g} per step (x{fmt_exp(s)})")
    fix = "lower the learning rate 10x (watch() the optimizer for the exact stability limit)"
    if ev is not None and len(ev.lr) >= 2 and ev.lr[-1] > ev.lr[0] * 1.5:
        out.append(f"the learning rate grew from {_g(ev.lr[0])} to {_g(ev.lr[-1])}")
        conf = max(conf, 0.85)
        fix = (f"keep the learning rate at or below {_g(ev.lr[0])}: check the schedule "
               "(a factor > 1, or a warm-up that never ends)")
    elif ev is not None and _sharpness(ev) is not None and lr:
        lam_measured = _sharpness(ev) or 1.0
        limit = 2.0 / lam_measured
        out.append(f"lambda_max = {_g(lam_measured)} measured on a fixed batch, so "
                   f"2/lambda_max = {_g(limit)}; lr = {_g(lr)}")
        if lr > limit:
            conf = max(conf, 0.9)
        elif not _adaptive(ev):
            # Below the limit measured at the start: the curvature explains nothing here.
            out.append("lr is within that limit")
            conf = min(conf, 0.3)
        fix = (f"lr <= {_g(limit)}, the stability limit 2/lambda_max measured on this batch; "
               f"lr = {_g(limit / 2)} (1/lambda_max) leaves a safe margin")
        if _adaptive(ev):
            fix += (f" (the bound is for SGD; {ev.optimizer} needs a lower lr still: try "
                    f"{_g(limit / 10)})")
    elif lr and s is not None:
        # Infinite for a log-loss growing past 1400 per step (1e-300 to 1e300 in one step).
        lam = (1.0 + safe_exp(s / 2.0)) / lr
        limit = 2.0 / lam
        out.append(f"lr = {_g(lr)}; on a quadratic that growth means lambda_max = {_g(lam)}, "
                   f"a stability limit 2/lambda_max = {_g(limit)}")
        fix = (f"lr <= {_g(limit)}, the stability limit 2/lambda_max estimated from the growth "
               f"rate; lr = {_g(limit / 2)} (1/lambda_max) leaves a safe margin")
        if ev is not None and _adaptive(ev):
            fix += f"; the estimate is for SGD: with {ev.optimizer}, lower the lr 10x"
        conf = max(conf, 0.85 if kind in ("divergence", "non_finite") else conf)
    big = _typical_update(ev)
    if big is not None and big > HUGE_UPDATE and conf > 0.3:
        out.append(f"update/weight ratio {_g(big)} (healthy is about 1e-3)")
        conf = max(conf, 0.8)
    evidence = "; ".join(out) or f"the verdict: {ctx.verdict.reason}"
    return [Diagnosis("lr_too_high", conf, evidence, fix)]


def _sharpness(ev: Evidence) -> float | None:
    lam = ev.sharpness
    return lam if lam is not None and math.isfinite(lam) and lam > 0 else None


def _typical_update(ev: Evidence | None) -> float | None:
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


def rule_non_finite(ctx: DiagnosisContext) -> list[Diagnosis]:
    """A NaN or infinity with nothing better to explain it (no growth before it)."""
    if ctx.verdict.kind != "non_finite":
        return []
    at = ctx.verdict.failed_at
    s = _growth(ctx.losses[: at or None])
    grew = s is not None and s >= 0.05
    conf = 0.4 if grew else 0.8
    x = ctx.losses
    before = f"{_g(float(x[at - 1]))} at step {at - 1}" if at else "nothing"
    what = f"loss became {x[at] if at is not None else 'nan'} at step {at}, after {before}"
    what += " with the loss growing before it" if grew else " with no growth before it"
    return [Diagnosis(
        "non_finite", conf, what,
        "use a logits-based loss (BCEWithLogitsLoss, CrossEntropyLoss on logits, "
        "from_logits=True) or clamp the argument of log (torch.clamp(p, 1e-7, 1 - 1e-7)); "
        "check the inputs for NaN; clip the gradient norm (e.g. 1.0)",
    )]


def rule_overfitting(ctx: DiagnosisContext) -> list[Diagnosis]:
    """An eval series that falls, then climbs while the training series falls."""
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
        f"{ctx.judged} fell to {_g(st.get('best', float('nan')))} (point {best}) and ended at "
        f"{_g(st.get('end', float('nan')))} while train kept falling "
        f"({_g(float(np.median(t[:k])))} -> {_g(float(np.median(t[-k:])))})",
        f"stop at the best {ctx.judged} point ({best}; early stopping), add regularisation "
        "(weight decay, dropout) or more data, or shrink the model",
    )]


def _periodic(x: FloatArray) -> tuple[int, float] | None:
    """Lag and rank autocorrelation of a periodic component of the detrended log curve."""
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
    """Batches in a fixed order: the train series repeats with the period of an epoch while
    the eval series does not fall."""
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
    lam = _sharpness(ev) if ev is not None else None
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
    """A periodic swing larger than the net drop."""
    if ctx.verdict.kind != "oscillation":
        return []
    st = ctx.verdict.stats
    ev = ctx.evidence
    fix = "lower the learning rate 3-10x"
    conf = 0.7
    if ev is not None and (ev.momentum or 0.0) >= 0.95:
        fix = f"lower the momentum ({_g(ev.momentum or 0.0)} -> 0.9) or the learning rate"
        conf = 0.85
    # The swing is in log-loss on the log scale, in loss units on the linear one (a curve
    # that goes negative).
    swing = st.get("swing", 0.0)
    swing_s = f"x{fmt_exp(swing)}" if st.get("log_scale", True) else f"by {_g(swing)} (linear)"
    return [Diagnosis(
        "oscillation", conf,
        f"the loss swings {swing_s} with a period of "
        f"{st.get('period')} steps (autocorrelation {st.get('autocorrelation', 0.0):.2f})",
        fix,
    )]


def rule_evidence(ctx: DiagnosisContext) -> list[Diagnosis]:
    """Root causes only ``watch`` can see: parameters that cannot learn, gradients never
    cleared, unscaled inputs, dead units, tiny or huge updates, exploding gradients, and
    predictions broadcast against their targets."""
    ev = ctx.evidence
    out: list[Diagnosis] = []
    kind = ctx.verdict.kind
    blowing_up = kind in ("divergence", "non_finite", "spike", "oscillation", "rise")
    stalling = kind in ("stall", "too_little_drop", "frozen", "noisy", "late_rise",
                        "above_ceiling")
    mismatches = list(ev.shape_mismatches) if ev is not None else []
    mismatches += [w for w in ctx.warnings if "target size" in w and "input size" in w]
    if mismatches:
        out.append(Diagnosis(
            "shape_mismatch", 0.95, mismatches[0].splitlines()[0],
            "make the prediction and the target the same shape, e.g. pred.squeeze(-1) or "
            "y.reshape(-1, 1), before the loss: broadcasting (N,) against (N, 1) compares every "
            "prediction with every target",
        ))
    if ev is None:
        return out
    if ev.zero_grad_calls == 0 and ev.optimizer_steps >= 3:
        out.append(Diagnosis(
            "stale_gradients", 0.95,
            f"{ev.optimizer_steps} optimizer steps and gradients never cleared: each step "
            "applies the sum of all gradients so far",
            "call optimizer.zero_grad() before loss.backward() in every step",
        ))
    dead = {k: v for k, v in ev.dead_fraction.items() if v >= DEAD_FRACTION}
    cannot = list(dict.fromkeys(ev.not_in_optimizer + ev.frozen + ev.unchanged
                                + ev.zero_grad_params))
    # Parameters held out of training are a root cause; parameters that merely did not move
    # are one only when nothing explains it better (dead units) and most of the model is stuck.
    held_out = bool(ev.not_in_optimizer or ev.frozen)
    n_params = max(1, len(ev.update_ratio) or len(cannot))
    mostly_stuck = len(set(ev.unchanged + ev.zero_grad_params)) >= 0.5 * n_params
    relevant = stalling or kind == "frozen" or (held_out and kind == "oscillation")
    if cannot and relevant and (held_out or (mostly_stuck and not dead)):
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
        out.append(Diagnosis("no_learning", 0.9, "; ".join(parts), fix))
    stats = ev.input_stats
    ratio = stats.get("std_ratio", 0.0)
    max_abs = stats.get("max_abs", 0.0)
    if _unscaled(stats) and (blowing_up or stalling):
        conf = 0.9 if blowing_up else 0.7
        cond = stats.get("cond")
        cond_s = stats.get("cond_standardised")
        extra = (f", condition number {_g(cond)} raw vs {_g(cond_s)} standardised"
                 if cond and cond_s else "")
        out.append(Diagnosis(
            "unscaled_features", conf,
            f"input features span std {_g(stats.get('std_min', 0.0))}.."
            f"{_g(stats.get('std_max', 0.0))} (ratio {_g(ratio)}), max |x| = {_g(max_abs)}{extra}",
            "standardise the inputs (sklearn StandardScaler, or (x - mean) / std per feature, "
            "or a keras.layers.Normalization layer); then recompute the learning rate",
        ))
    if dead and (stalling or kind in ("rise",)):
        name, frac = max(dead.items(), key=lambda kv: kv[1])
        out.append(Diagnosis(
            "dead_units", 0.92 if not held_out else 0.8,
            f"{100 * frac:.0f}% of the units after {name} output zero on every sample",
            "use a default (He/Glorot) initialisation with zero or positive biases, a lower "
            "learning rate, or LeakyReLU",
        ))
    typical = _typical_update(ev)
    if typical is not None and stalling and typical < TINY_UPDATE and not held_out and not dead:
        lr = ctx.lr
        out.append(Diagnosis(
            "lr_too_low", 0.8,
            f"the update/weight ratio is {_g(typical)} a step (healthy is about 1e-3)"
            + (f" at lr = {_g(lr)}" if lr else ""),
            f"raise the learning rate 10-100x (lr = {_g(lr * 30)})" if lr
            else "raise the learning rate 10-100x",
        ))
    if ev.grad_norm and blowing_up:
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
            and not _unscaled(ev.input_stats)
        )
        if grew or at_init:
            what = (f"the gradient norm is {_g(first)} at the first step"
                    + (f" ({_g(first_ratio / (lr0 or 1.0))}x the weights)" if at_init else "")
                    + (f" and grows to {_g(peak)}" if grew else ""))
            out.append(Diagnosis(
                "exploding_gradients", 0.92 if at_init else 0.6, what,
                "use a default (He/Glorot) initialisation or normalisation layers, clip the "
                "gradient norm (torch.nn.utils.clip_grad_norm_(params, 1.0); clipnorm=1.0 in "
                "Keras) and lower the learning rate",
            ))
    chance = _chance(ev)
    first_loss = ev.first_loss
    if chance is not None and first_loss is not None and first_loss > BAD_INIT_FACTOR * chance:
        out.append(Diagnosis(
            "bad_init", 0.75 if stalling else 0.5,
            f"the first loss {_g(first_loss)} is {first_loss / chance:.3g}x the chance "
            f"level ln({ev.output_features}) = {_g(chance)}",
            "use the default (He/Glorot) initialisation, scale the last layer down "
            "(or zero it), and standardise the inputs",
        ))
    return out


def _unscaled(stats: dict[str, float]) -> bool:
    """Whether the input statistics show features that standardising would fix."""
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


def _chance(ev: Evidence) -> float | None:
    name = (ev.loss_name or "").lower()
    c = ev.output_features
    if c is None or c < 2 or "entropy" not in name:
        return None
    return math.log(c)


def rule_plateau(ctx: DiagnosisContext) -> list[Diagnosis]:
    """A flat or creeping curve with nothing more specific found: the lowest-ranked guess."""
    kind = ctx.verdict.kind
    if kind == "frozen":
        return [Diagnosis(
            "no_learning", 0.7,
            f"every loss equals {ctx.verdict.stats.get('start')}: no parameter moved",
            "check that the optimizer holds the model's parameters, that they require grad "
            "(trainable=True) and that the learning rate is not 0",
        )]
    notes = "; ".join(ctx.evidence.notes) if ctx.evidence is not None else ""
    typical = _typical_update(ctx.evidence)
    healthy_updates = typical is not None and typical >= 1e-4
    if kind == "too_little_drop" and not healthy_updates and not notes:
        return [Diagnosis(
            "lr_too_low", 0.55, ctx.verdict.reason,
            "raise the learning rate 10x, or train for more steps",
        )]
    if kind in ("stall", "too_little_drop", "above_ceiling"):
        evidence = ctx.verdict.reason
        if healthy_updates:
            evidence += f"; the weights do move (update/weight ratio {_g(typical or 0.0)})"
        if notes:
            evidence += f"; {notes}"
        return [Diagnosis(
            "plateau", 0.5, evidence,
            "check the loss/activation pairing (softmax or sigmoid fed to a from_logits loss "
            "such as CrossEntropyLoss), the targets' alignment with the inputs and the learning "
            "rate; watch() the model for more",
        )]
    return []


BUILTIN_RULES: tuple[Rule, ...] = (
    rule_evidence,
    rule_stability,
    rule_non_finite,
    rule_overfitting,
    rule_unshuffled,
    rule_oscillation,
    rule_plateau,
)


def builtin_diagnoses(ctx: DiagnosisContext) -> list[Diagnosis]:
    """Every built-in rule's diagnoses (unmerged)."""
    out: list[Diagnosis] = []
    for rule in BUILTIN_RULES:
        out.extend(rule(ctx))
    return out


def rank(diagnoses: Iterable[Diagnosis]) -> tuple[Diagnosis, ...]:
    """One diagnosis per cause (the most confident), most likely first."""
    best: dict[str, Diagnosis] = {}
    for d in diagnoses:
        if d.cause not in best or d.confidence > best[d.cause].confidence:
            best[d.cause] = d
    return tuple(sorted(best.values(), key=lambda d: -d.confidence))


def with_diagnoses(verdict: Verdict, diagnoses: Iterable[Diagnosis]) -> Verdict:
    """``verdict`` carrying ``diagnoses``, ranked."""
    return replace(verdict, diagnoses=rank(diagnoses))


def passing_warnings(ctx: DiagnosisContext) -> list[str]:
    """Things worth knowing about a passing test; they never fail it."""
    ev = ctx.evidence
    out: list[str] = []
    if ev is None:
        return out
    chance = _chance(ev)
    if chance is not None and ev.first_loss is not None and (
            ev.first_loss > WARN_INIT_FACTOR * chance):
        out.append(f"bad_init: the first loss {_g(ev.first_loss)} is "
                   f"{ev.first_loss / chance:.3g}x the chance level ln(C) = {_g(chance)}")
    half_dead = {k: v for k, v in ev.dead_fraction.items() if v >= 0.5}
    for name, frac in half_dead.items():
        out.append(f"dead_units: {100 * frac:.0f}% of the units after {name} never fire")
    stats = ev.input_stats
    if _unscaled(stats):
        out.append(f"unscaled_features: feature std ratio {_g(stats.get('std_ratio', 0.0))}, "
                   f"max |x| {_g(stats.get('max_abs', 0.0))}")
    if ev.not_in_optimizer:
        out.append(f"no_learning: not in the optimizer: {', '.join(ev.not_in_optimizer[:4])}")
    if ev.shape_mismatches:
        out.append(f"shape_mismatch: {ev.shape_mismatches[0]}")
    return out


def context_for(
    series: dict[str, list[float]], judged: str, verdict: Verdict,
    *, evidence: Evidence | None = None, warnings: list[str] | None = None,
) -> DiagnosisContext:
    """Build a context; the series other than ``judged`` are judged with the default criteria
    (the rules compare them, e.g. a falling train curve beside a climbing eval curve)."""
    if evidence is not None and evidence.first_loss is None:
        first = next(iter(series.get("train") or series.get(judged) or []), None)
        if first is not None and math.isfinite(first):
            evidence.first_loss = float(first)
    from pytest_losstrend.verdict.criteria import Criteria
    from pytest_losstrend.verdict.trend import judge

    verdicts = {judged: verdict}
    for name, values in series.items():
        if name != judged:
            verdicts[name] = judge(np.asarray(values, dtype=np.float64), Criteria(series=name))
    return DiagnosisContext(series=series, judged=judged, verdict=verdict, verdicts=verdicts,
                            evidence=evidence, warnings=list(warnings or []))


def diagnose_curve(losses: FloatArray, verdict: Verdict, series: str = "train") -> Verdict:
    """The verdict with the diagnoses the curve alone supports (used by ``check``)."""
    if verdict.ok:
        return verdict
    ctx = DiagnosisContext(series={series: [float(v) for v in losses]}, judged=series,
                           verdict=verdict, verdicts={series: verdict})
    return with_diagnoses(verdict, builtin_diagnoses(ctx))


__all__ = [
    "BUILTIN_RULES",
    "CAUSES",
    "DiagnosisContext",
    "builtin_diagnoses",
    "diagnose_curve",
    "passing_warnings",
    "rank",
]

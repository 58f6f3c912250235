"""Merging and ranking diagnoses, and the warnings of a passing test (plain data only)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from pytest_losstrend.diagnosis.context import DiagnosisContext
from pytest_losstrend.diagnosis.signals import (
    chance,
    dead_line,
    far_above_reference,
    first_level,
    fmt_g,
    fmt_level,
    reference_of,
    unscaled,
    unscaled_line,
)
from pytest_losstrend.verdict.result import Diagnosis, Verdict

#: A passing test whose first loss is above this multiple of the chance level ln(C) is
#: warned about its initialisation (a failing one is diagnosed from 2x, see ``rule_bad_init``).
WARN_INIT_FACTOR = 10.0
#: A passing test is warned about an activation layer with at least this fraction of zero
#: outputs (a failing one is diagnosed from 0.7, ``DEAD_FRACTION``).
WARN_DEAD_FRACTION = 0.5


def rank(diagnoses: Iterable[Diagnosis]) -> tuple[Diagnosis, ...]:
    """One diagnosis per cause (the most confident), most likely first.

    Ties keep the order the rules ran in: the first of two equally confident diagnoses of a
    cause is kept, and the sort by confidence is stable.
    """
    best: dict[str, Diagnosis] = {}
    for d in diagnoses:
        if d.cause not in best or d.confidence > best[d.cause].confidence:
            best[d.cause] = d
    return tuple(sorted(best.values(), key=lambda d: -d.confidence))


def with_diagnoses(verdict: Verdict, diagnoses: Iterable[Diagnosis]) -> Verdict:
    """``verdict`` carrying ``diagnoses``, ranked; dead units in a run whose loss ended above
    where it started rank below a learning rate too high, whose effect they are."""
    return replace(verdict, diagnoses=rank(_roots_first(verdict, list(diagnoses))))


def _roots_first(verdict: Verdict, diagnoses: list[Diagnosis]) -> list[Diagnosis]:
    """Dead ReLUs are what a step past the stability limit leaves behind: in a run that rose
    (its end above its start) with ``lr_too_high`` diagnosed, ``dead_units`` (and the
    ``zero_gradients`` invariant's ``no_learning``) is capped just below it. A stall with
    dead units and no rise keeps them first (their own root)."""
    start, end = verdict.stats.get("start"), verdict.stats.get("end")
    if not (isinstance(start, (int, float)) and isinstance(end, (int, float)) and end > start):
        return diagnoses
    lr = max((d.confidence for d in diagnoses if d.cause == "lr_too_high"), default=None)
    if lr is None:
        return diagnoses
    cap = max(0.0, lr - 0.01)
    return [replace(d, confidence=min(d.confidence, cap)) if _lr_symptom(d) else d
            for d in diagnoses]


def _lr_symptom(d: Diagnosis) -> bool:
    """Dead ReLUs, or a module whose gradients are all zero (the same ReLUs, seen from the
    gradients: the ``zero_gradients`` invariant)."""
    return d.cause == "dead_units" or (d.cause == "no_learning"
                                       and d.evidence.startswith("zero_gradients:"))


def leading(verdict: Verdict, first: Iterable[Diagnosis]) -> Verdict:
    """``verdict`` with the diagnoses of certain evidence (``first``: broken invariants) put
    ahead of the rules' diagnoses, which follow, ranked, minus the causes already named. A
    diagnosis in ``first`` below confidence 1.0 (a symptom-prone invariant) is ranked with the
    rules instead. A cause a rule already diagnosed keeps the rule's evidence and fix.

    A run whose gradients were never cleared, that also blew up, is ``stale_gradients``
    first and ``lr_too_high`` after it: the broken invariant is the root the curve shows.
    """
    certain = [d for d in first if d.confidence >= 1.0]
    # Where a rule already named the cause (a failing curve), its evidence and fix are kept:
    # they say more about the run than the invariant's line; only its rank is lifted.
    ruled = {d.cause: d for d in verdict.diagnoses}
    lead = tuple(replace(ruled[d.cause], confidence=d.confidence) if d.cause in ruled else d
                 for d in rank(certain))
    named = {d.cause for d in lead}
    others = [d for d in first if d.confidence < 1.0]
    rest = rank(_roots_first(verdict, [d for d in (*verdict.diagnoses, *others)
                                       if d.cause not in named]))
    return replace(verdict, diagnoses=lead + rest)


def passing_warnings(ctx: DiagnosisContext) -> list[str]:
    """Things worth knowing about a passing test; they never fail it.

    A first loss 10x the chance level ln(C) ``watch`` saw, or ``FAR_ABOVE_REFERENCE`` (10)
    times the reference level the verdict knows, is a bad initialisation the run recovered
    from; half-dead layers, unscaled inputs, parameters outside the optimizer and broadcast
    shapes are noted as they are.
    """
    ev = ctx.evidence
    out: list[str] = []
    level = chance(ev) if ev is not None else None
    first_loss = ev.first_loss if ev is not None else None
    ref = reference_of(ctx.verdict)
    first = first_level(ctx.verdict, ctx.losses)
    if level is not None and first_loss is not None and first_loss > WARN_INIT_FACTOR * level:
        out.append(f"bad_init: the first loss {fmt_g(first_loss)} is "
                   f"{first_loss / level:.3g}x the chance level ln(C) = {fmt_g(level)}")
    elif far_above_reference(first, ref) and first is not None and ref is not None:
        out.append(f"bad_init: the first loss {fmt_level(first)} is {first / ref:.3g}x the "
                   f"reference level {fmt_level(ref)} (the loss of the best constant predictor)")
    if ev is None:
        return out
    half_dead = {k: v for k, v in ev.dead_fraction.items() if v >= WARN_DEAD_FRACTION}
    for name, frac in half_dead.items():
        out.append(f"dead_units: {dead_line(ev, name, frac)}" if " via " in name else
                   f"dead_units: {100 * frac:.0f}% of the units after {name} never fire")
    stats = ev.input_stats
    if unscaled(stats):
        out.append(f"unscaled_features: {unscaled_line(stats)}")
    if ev.not_in_optimizer:
        out.append(f"no_learning: not in the optimizer: {', '.join(ev.not_in_optimizer[:4])}")
    if ev.shape_mismatches:
        out.append(f"shape_mismatch: {ev.shape_mismatches[0]}")
    return out


__all__ = ["WARN_DEAD_FRACTION", "WARN_INIT_FACTOR", "leading", "passing_warnings", "rank",
           "with_diagnoses"]

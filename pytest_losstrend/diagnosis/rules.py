"""Why a loss does not fall: the built-in diagnosis rules, in their stated order (numpy only).

Each rule reads a :class:`~pytest_losstrend.diagnosis.context.DiagnosisContext` (the recorded
series, the verdict, and what ``losstrend.watch`` saw, if anything) and returns
:class:`Diagnosis` objects. Confidence ranks them: a rule that names a root cause (missing
``zero_grad``, unscaled features, a learning rate past the stability limit) scores above the
symptom it explains (a non-finite loss, exploding gradients). The rules are plain functions so
that :func:`pytest_losstrend.check` can apply them without pytest; under pytest they are
registered through the ``pytest_losstrend_diagnose`` hook like anyone else's.

The order, ``BUILTIN_RULES``: first the root causes only ``watch`` can see
(:mod:`~pytest_losstrend.diagnosis.watch_rules`), then the causes the verdict's kind points at
(:mod:`~pytest_losstrend.diagnosis.curve_rules`):

 1. ``rule_shape_mismatch``: predictions broadcast against targets (``shape_mismatch``);
 2. ``rule_stale_gradients``: gradients never cleared (``stale_gradients``);
 3. ``rule_params_cannot_learn``: parameters not in the optimizer, frozen, never changed or
    with zero gradients (``no_learning``);
 4. ``rule_unscaled_features``: inputs on very different scales (``unscaled_features``);
 5. ``rule_dead_units``: ReLUs that never fire (``dead_units``);
 6. ``rule_tiny_updates``: weights that barely move, or an lr far below the measured
    stability limit (``lr_too_low``);
 7. ``rule_exploding_gradients``: a gradient norm huge at the start or growing
    (``exploding_gradients``);
 8. ``rule_bad_init``: a first loss far above chance, or 10x the reference level
    (``bad_init``);
 9. ``rule_stability``: a learning rate past the stability limit, a blow-up
    (``lr_too_high``);
10. ``rule_non_finite``: a NaN nothing explains better (``non_finite``);
11. ``rule_overfitting``: eval climbing while train falls (``overfitting``);
12. ``rule_unshuffled``: batches in the same order every epoch (``unshuffled_batches``);
13. ``rule_oscillation``: a periodic swing larger than the drop (``oscillation``);
14. ``rule_chance_level``: a run that ended at the reference level with no root found above
    it (``chance_level``; ``no_learning`` when the loss never moved at all);
15. ``rule_plateau``: a frozen, flat or creeping curve (``no_learning``, ``lr_too_low``,
    ``plateau``), the lowest-ranked guess.

The order decides nothing but ties: :func:`~pytest_losstrend.diagnosis.ranking.rank` keeps one
diagnosis per cause (the most confident, the first on a tie) and sorts by confidence, stably.
"""

from __future__ import annotations

from pytest_losstrend.diagnosis.context import DiagnosisContext, Rule
from pytest_losstrend.diagnosis.curve_rules import (
    rule_chance_level,
    rule_non_finite,
    rule_oscillation,
    rule_overfitting,
    rule_plateau,
    rule_stability,
    rule_unshuffled,
)
from pytest_losstrend.diagnosis.watch_rules import (
    rule_bad_init,
    rule_dead_units,
    rule_exploding_gradients,
    rule_params_cannot_learn,
    rule_shape_mismatch,
    rule_stale_gradients,
    rule_tiny_updates,
    rule_unscaled_features,
)
from pytest_losstrend.verdict.result import Diagnosis

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
    "chance_level",
)

#: Every built-in rule, in the order it runs (see the module docstring).
BUILTIN_RULES: tuple[Rule, ...] = (
    # What watch saw: root causes.
    rule_shape_mismatch,
    rule_stale_gradients,
    rule_params_cannot_learn,
    rule_unscaled_features,
    rule_dead_units,
    rule_tiny_updates,
    rule_exploding_gradients,
    rule_bad_init,
    # What the verdict's kind points at.
    rule_stability,
    rule_non_finite,
    rule_overfitting,
    rule_unshuffled,
    rule_oscillation,
    rule_chance_level,
    rule_plateau,
)


def builtin_diagnoses(ctx: DiagnosisContext) -> list[Diagnosis]:
    """Every built-in rule's diagnoses (unmerged), in ``BUILTIN_RULES`` order."""
    out: list[Diagnosis] = []
    for rule in BUILTIN_RULES:
        out.extend(rule(ctx))
    return out


__all__ = [
    "BUILTIN_RULES",
    "CAUSES",
    "builtin_diagnoses",
]

"""The training invariants (DESIGN.md "Training invariants"): facts about a watched training run
that are wrong whatever the loss curve does, judged from its :class:`Evidence` and its losses
(plain data only).

A broken invariant fails the test even when the loss falls, unless the test names it in
``allow``; :func:`check_invariants` says which held, which broke (with the figures it saw) and
which could not be checked, and why.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypedDict

from pytest_losstrend.diagnosis.evidence import Evidence
from pytest_losstrend.verdict.criteria import INVARIANT_NAMES
from pytest_losstrend.verdict.result import Diagnosis

__all__ = [
    "INVARIANT_CAUSES",
    "NONNEGATIVE_LOSSES",
    "InvariantCheck",
    "InvariantData",
    "InvariantResult",
    "check_invariants",
    "invariant_diagnoses",
]

#: Loss names (``Evidence.loss_name``, torch's and Keras') of losses that cannot be negative.
NONNEGATIVE_LOSSES = frozenset({
    # torch
    "mse", "l1", "cross_entropy", "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "huber", "smooth_l1", "kl_div",
    # Keras
    "mean_squared_error", "mean_absolute_error", "categorical_crossentropy",
    "sparse_categorical_crossentropy", "binary_crossentropy", "huber_loss",
    "kl_divergence", "kld", "kullback_leibler_divergence", "mse_loss",
})
#: A loss below ``-(NEGATIVE_TOL + NEGATIVE_TOL * max|loss|)`` is negative (rounding aside).
NEGATIVE_TOL = 1e-6
#: The diagnosis cause a broken invariant points to (DESIGN.md's cause codes).
INVARIANT_CAUSES = {
    "stale_gradients": "stale_gradients",
    "params_not_in_optimizer": "no_learning",
    "params_unchanged": "no_learning",
    "zero_gradients": "no_learning",
    "shape_mismatch": "shape_mismatch",
}
#: What to change for each broken invariant (the diagnosis' ``fix``).
INVARIANT_FIXES = {
    "stale_gradients": "clear the gradients once per optimizer step: optimizer.zero_grad() "
                       "before loss.backward() (or after optimizer.step()), on the optimizer "
                       "that steps these parameters; with accumulation, after every k-th step",
    "params_not_in_optimizer": "give the optimizer every trainable parameter "
                               "(torch.optim.X(model.parameters())), or set "
                               "requires_grad_(False) on those meant to stay frozen",
    "params_unchanged": "check the learning rate of their parameter group (not 0) and that "
                        "optimizer.step() is not skipped (a GradScaler skipping every step)",
    "shape_mismatch": "make the prediction and the target the same shape before the loss: "
                      "pred.squeeze(-1), or target.unsqueeze(-1) / target.view_as(pred)",
    "negative_loss": "the sign is flipped somewhere: minimise the loss (no -loss, no gradient "
                     "ascent), and feed it what it expects (probabilities, not log-values)",
    "zero_gradients": "the module's output never reaches the loss: look for a .detach(), a "
                      "torch.no_grad() or an unused branch between it and the loss",
}
#: The fix of ``stale_gradients`` in a loop with no optimizer (``p -= lr * p.grad``).
MANUAL_STALE_FIX = ("clear the gradients after each update, before the next backward: "
                    "p.grad = None (or p.grad.zero_(), model.zero_grad()) right after "
                    "p -= lr * p.grad; with accumulation, after every k-th backward's update")
#: A broken invariant is certain evidence: its diagnosis leads, above every rule's guess.
INVARIANT_CONFIDENCE = 1.0
#: ... except ``zero_gradients``: a layer of ReLUs a 100x learning rate killed has exactly zero
#: gradients too, so it is ranked with the rules (and below ``lr_too_high`` in a run that rose,
#: see ``ranking.with_diagnoses``), not ahead of them.
SYMPTOM_CONFIDENCE = {"zero_gradients": 0.85}
#: Names listed in an evidence line before "and N more".
SHOWN = 4


class _InvariantFields(TypedDict):
    name: str
    held: bool
    evidence: str


class InvariantData(_InvariantFields, total=False):
    """A training invariant checked on the watched run (a test's ``invariants`` entry in the
    JSON report): its ``name``, whether it ``held``, the ``evidence`` (with figures) and, for a
    broken one, whether the test ``allowed`` it."""

    allowed: bool


@dataclass(frozen=True)
class InvariantResult:
    """One invariant checked: whether it ``held``, what was seen (``evidence``, with figures),
    and for a broken one whether the test ``allowed`` it."""

    name: str
    held: bool
    evidence: str
    allowed: bool = False
    #: What to change, when it differs from the invariant's usual fix (``INVARIANT_FIXES``).
    fix: str = ""

    def as_dict(self) -> InvariantData:
        """Plain data for the report.

        Example:
            >>> InvariantResult("negative_loss", True, "lowest 0.01").as_dict()["held"]
            True
        """
        return {"name": self.name, "held": self.held, "evidence": self.evidence,
                "allowed": self.allowed}


@dataclass(frozen=True)
class InvariantCheck:
    """Every invariant of a run: those checked (``results``, in ``INVARIANT_NAMES`` order) and
    those that could not be (``unchecked``: name -> why)."""

    results: list[InvariantResult] = field(default_factory=list)
    unchecked: dict[str, str] = field(default_factory=dict)

    @property
    def broken(self) -> list[InvariantResult]:
        """The invariants that did not hold, allowed or not."""
        return [r for r in self.results if not r.held]

    @property
    def failing(self) -> list[InvariantResult]:
        """The broken invariants the test did not allow: each fails the test."""
        return [r for r in self.results if not r.held and not r.allowed]

    def as_list(self) -> list[InvariantData]:
        """The checked invariants as the report's ``invariants`` list."""
        return [r.as_dict() for r in self.results]


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def _stale_manual(ev: Evidence) -> InvariantResult | str:
    """A loop with no optimizer: carried over after an update on most sampled checks."""
    checks, stale = ev.manual_checks, ev.manual_stale
    loop = f"a loop with no optimizer, {ev.manual_backward} backward passes"
    if checks < 2:
        return (f"not checked: in {loop}, {checks} sampled backward pass(es) followed an "
                "update of the parameters, 2 are needed")
    if 2 * stale <= checks:
        return InvariantResult(
            "stale_gradients", True,
            f"gradients cleared after the update on {checks - stale} of {checks} sampled steps "
            f"({loop})")
    grads = sorted(ev.manual_stale_grads, key=lambda g: -ev.manual_stale_grads[g])
    return InvariantResult(
        "stale_gradients", False,
        f"{_names(grads)} carried over after the update on {stale} of {checks} sampled steps "
        f"({loop}): {'never' if stale == checks else 'not always'} cleared, so an update "
        "applies the sum of the gradients so far",
        fix=MANUAL_STALE_FIX,
    )


def _stale(ev: Evidence) -> InvariantResult | str:
    if ev.optimizer_steps == 0 and ev.manual_backward:
        return _stale_manual(ev)
    if ev.grad_checks is None:
        return ("not checked: the framework computes fresh gradients at every step"
                if ev.framework == "keras" else "not checked: no gradient was sampled")
    if ev.grad_checks < 2:
        return (f"not checked: {ev.grad_checks} optimizer step(s) followed by a backward pass "
                "were sampled, 2 are needed")
    n = len(ev.stale_steps)
    steps = f"{ev.optimizer_steps} optimizer steps"
    if n == 0:
        return InvariantResult("stale_gradients", True,
                               f"{steps}, gradients cleared after all {ev.grad_checks} checked")
    why = ("zero_grad() never cleared them" if n == ev.grad_checks
           else "they were not cleared after every step")
    calls = ev.zero_grad_calls
    if calls:
        why += f" (zero_grad was called {calls} times, but left them in place)"
    elif ev.stale_after_zero_grad:
        k = ev.stale_after_zero_grad
        why += (" (zero_grad was called after " + ("each of them" if k == n else f"{k} of them")
                + ", but left them in place)")
    return InvariantResult(
        "stale_gradients", False,
        f"{steps}, gradients carried over at {n} of the {ev.grad_checks} checked: {why}"
        + (f"; parameters {_names(ev.stale_params)}" if ev.stale_params else ""),
    )


def _not_in_optimizer(ev: Evidence) -> InvariantResult | str:
    if ev.framework == "keras":
        return "not checked: Keras' fit optimizes every trainable weight"
    if ev.optimizer is None:
        return "not checked: no optimizer was watched"
    missing = list(ev.not_in_optimizer)
    if not missing:
        return InvariantResult("params_not_in_optimizer", True,
                               f"every trainable parameter is in the {ev.optimizer} optimizer")
    return InvariantResult(
        "params_not_in_optimizer", False,
        f"{len(missing)} trainable parameter(s) not in the {ev.optimizer} optimizer: "
        f"{_names(missing)}",
    )


def _unchanged(ev: Evidence) -> InvariantResult | str:
    if ev.optimizer_steps < 1:
        return "not checked: no optimizer step was watched"
    # Parameters held out of the optimizer or without a gradient are the other invariants'.
    other = set(ev.not_in_optimizer) | set(ev.zero_grad_params) | set(ev.frozen)
    stuck = [n for n in ev.unchanged if n not in other]
    if not stuck:
        return InvariantResult(
            "params_unchanged", True,
            f"every parameter with a gradient changed over {ev.optimizer_steps} steps")
    return InvariantResult(
        "params_unchanged", False,
        f"{len(stuck)} parameter(s) received gradients but never changed over "
        f"{ev.optimizer_steps} optimizer steps: {_names(stuck)}",
    )


def _shape(ev: Evidence, warnings: Iterable[str]) -> InvariantResult | str:
    seen = list(ev.shape_mismatches)
    seen += [w for w in warnings if "target size" in w and "input size" in w]
    if seen:
        return InvariantResult("shape_mismatch", False, seen[0].splitlines()[0])
    if ev.framework == "keras" and ev.input_stats == {} and not ev.grad_norm:
        return "not checked: watch() was given no batch=(x, y) to compare shapes on"
    return InvariantResult("shape_mismatch", True,
                           "no prediction and target broadcast against each other")


def _negative(ev: Evidence, losses: Sequence[float]) -> InvariantResult | str:
    name = ev.loss_name
    if name is None:
        return "not checked: the loss function is not known"
    if name not in NONNEGATIVE_LOSSES:
        return f"not checked: {name} may be negative"
    finite = [v for v in losses if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite:
        return "not checked: no finite loss recorded"
    low = min(finite)
    scale = max(abs(v) for v in finite)
    if low >= -(NEGATIVE_TOL + NEGATIVE_TOL * scale):
        return InvariantResult("negative_loss", True, f"{name}: lowest loss {low:.4g}")
    k = next(i for i, v in enumerate(losses) if isinstance(v, (int, float)) and v == low)
    below = sum(1 for v in finite if v < 0)
    return InvariantResult(
        "negative_loss", False,
        f"{name} cannot be negative, but {below} of {len(finite)} recorded losses were, "
        f"down to {low:.4g} at step {k}",
    )


def _modules(names: Iterable[str]) -> dict[str, list[str]]:
    """Parameter names grouped by the module that holds them (the name up to its last dot;
    Keras' ``layer/kernel`` up to its last slash)."""
    out: dict[str, list[str]] = {}
    for n in names:
        cut = max(n.rfind("."), n.rfind("/"))
        out.setdefault(n[:cut] if cut > 0 else n, []).append(n)
    return out


def _zero(ev: Evidence) -> InvariantResult | str:
    watched = list(dict.fromkeys([*ev.update_ratio, *ev.zero_grad_params, *ev.unchanged]))
    if not ev.grad_norm or not watched:
        return ("not checked: no gradient was sampled (Keras: watch() needs batch=(x, y))"
                if ev.framework == "keras" else "not checked: no gradient was sampled")
    zero = set(ev.zero_grad_params) - set(ev.frozen)
    dead = [m for m, params in _modules(watched).items() if all(p in zero for p in params)]
    samples = len(ev.grad_norm)
    if not dead:
        return InvariantResult("zero_gradients", True,
                               f"every module had a nonzero gradient in {samples} samples")
    params = [p for m in dead for p in _modules(watched)[m]]
    return InvariantResult(
        "zero_gradients", False,
        f"{len(dead)} module(s) had exactly zero gradients at all {samples} sampled steps: "
        f"{_names(dead)} ({_names(params)})",
    )


def check_invariants(
    evidence: Evidence | None,
    losses: Sequence[float],
    *,
    allow: Iterable[str] = (),
    warnings: Iterable[str] = (),
) -> InvariantCheck:
    """Check every training invariant on a watched run.

    ``evidence`` is what ``watch`` saw (None: nothing was watched, so no invariant can be
    checked), ``losses`` the judged series (for ``negative_loss``), ``allow`` the invariants
    the test breaks on purpose and ``warnings`` the test's warning messages (torch's broadcast
    warning is a ``shape_mismatch``).

    Example:
        >>> ev = Evidence(framework="torch", optimizer="SGD", optimizer_steps=300,
        ...               grad_checks=37, stale_steps=list(range(37)), zero_grad_calls=0,
        ...               grad_norm=[1.0], update_ratio={"0.weight": [0.1]}, loss_name="mse")
        >>> check = check_invariants(ev, [1.0, 0.5])
        >>> [r.name for r in check.failing]
        ['stale_gradients']
        >>> print(check.failing[0].evidence)
        300 optimizer steps, gradients carried over at 37 of the 37 checked: zero_grad() ...
    """
    allowed = set(allow)
    if evidence is None:
        why = "not checked: the training was not watched (losstrend.watch(model, optimizer))"
        return InvariantCheck([], dict.fromkeys(INVARIANT_NAMES, why))
    warned = list(warnings)
    found: dict[str, InvariantResult | str] = {
        "stale_gradients": _stale(evidence),
        "params_not_in_optimizer": _not_in_optimizer(evidence),
        "params_unchanged": _unchanged(evidence),
        "shape_mismatch": _shape(evidence, warned),
        "negative_loss": _negative(evidence, losses),
        "zero_gradients": _zero(evidence),
    }
    results: list[InvariantResult] = []
    unchecked: dict[str, str] = {}
    for name in INVARIANT_NAMES:
        r = found[name]
        if isinstance(r, str):
            unchecked[name] = r
        elif not r.held and name in allowed:
            results.append(InvariantResult(r.name, r.held, r.evidence, allowed=True, fix=r.fix))
        else:
            results.append(r)
    return InvariantCheck(results, unchecked)


def invariant_diagnoses(failing: Iterable[InvariantResult]) -> list[Diagnosis]:
    """The diagnoses of the broken invariants a test did not allow: each names its root cause
    (``INVARIANT_CAUSES``; the invariant's name where there is no cause code) with confidence
    ``INVARIANT_CONFIDENCE`` (1.0), so it ranks first, above the curve's symptoms
    (``zero_gradients``: 0.85, ``SYMPTOM_CONFIDENCE``).

    Example:
        >>> r = InvariantResult("params_not_in_optimizer", False, "1 trainable parameter(s) ...")
        >>> [(d.cause, d.confidence) for d in invariant_diagnoses([r])]
        [('no_learning', 1.0)]
    """
    return [Diagnosis(INVARIANT_CAUSES.get(r.name, r.name),
                      SYMPTOM_CONFIDENCE.get(r.name, INVARIANT_CONFIDENCE),
                      f"{r.name}: {r.evidence}", r.fix or INVARIANT_FIXES.get(r.name, ""))
            for r in failing if not r.held and not r.allowed]


def invariant_message(failing: Sequence[InvariantResult], *, header: str = "loss_decreases",
                      verdict_ok: bool = False) -> str:
    """The lines a test shows for its broken invariants (those it did not allow): the first
    names them, one line each gives the evidence, the last says how to allow one.

    Example:
        >>> r = InvariantResult("negative_loss", False, "mse went below zero")
        >>> print(invariant_message([r]))
        loss_decreases FAILED: training invariant broken: negative_loss
          negative_loss: mse went below zero
          allow it, if on purpose: @pytest.mark.loss_decreases(allow=("negative_loss",))
    """
    names = [r.name for r in failing]
    tail = (" (the loss check passed, but a broken invariant fails the test even when the "
            "loss falls)" if verdict_ok else "")
    lines = [f"{header} FAILED: training invariant{'s' if len(names) > 1 else ''} broken: "
             f"{', '.join(names)}{tail}"]
    lines += [f"  {r.name}: {r.evidence}" for r in failing]
    allow = ", ".join(f'"{n}"' for n in names) + ("," if len(names) == 1 else "")
    lines.append(f"  allow it, if on purpose: "
                 f"@pytest.mark.{header}(allow=({allow}))")
    return "\n".join(lines)

"""The loss a torch backward scalar is, read from its autograd graph: which built-in loss, with
which settings, on which targets; and from the first few of them, the captured series'
reference level (the loss of a model that learned nothing).

Used by automatic capture (:mod:`~pytest_losstrend.capture.auto_torch`) on the first
:data:`REFERENCE_LOSSES` backward scalars of a marked test, before their backward frees the
graph. Certain or nothing: when each scalar is, unchanged, the output of one built-in loss
(cross-entropy on log-softmax, MSE, BCE, BCE with logits, Huber, smooth L1; mean reduction, no
class weight, no ``pos_weight``) of the same kind and settings, their targets give the level
(:func:`~pytest_losstrend.capture.references.reference_for`). A sum-reduced loss divided by the
count of its targets (the ones not equal to ``ignore_index`` for cross-entropy, every element
for the others) is that mean too: the Hugging Face causal-LM loss with the ``Trainer``'s
``num_items_in_batch``. Multiplications and divisions by exactly 1 (Lightning's accumulation
factor, the ``Trainer``'s process count and accelerate's accumulation factor, at their defaults)
are looked through. A sum of losses, a scaled loss (``loss / k``, k other than 1; a sum divided
by anything but its count), label smoothing, a target that requires a gradient (arguments
swapped) or anything else gives none: never a wrong level.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import torch

from pytest_losstrend.capture.recorder import BY_WATCH

if TYPE_CHECKING:
    from pytest_losstrend.capture.recorder import Recorder

#: Backward scalars whose loss is looked up for the reference level...
REFERENCE_LOSSES = 16
#: ...or fewer, once their targets hold this many rows.
REFERENCE_ROWS = 4096

# -- the reference level ------------------------------------------------------------------------

#: grad_fn of a built-in loss's output -> the functional that computes it, and the settings
#: (saved on the node) that reference_for reads as that functional's keyword arguments.
_LOSS_NODES: dict[str, tuple[str, tuple[str, ...]]] = {
    "NllLossBackward0": ("cross_entropy", ("ignore_index",)),
    "NllLoss2DBackward0": ("cross_entropy", ("ignore_index",)),
    "MseLossBackward0": ("mse_loss", ()),
    "BinaryCrossEntropyBackward0": ("binary_cross_entropy", ()),
    "BinaryCrossEntropyWithLogitsBackward0": ("binary_cross_entropy_with_logits", ()),
    "HuberLossBackward0": ("huber_loss", ("delta",)),
    "SmoothL1LossBackward0": ("smooth_l1_loss", ("beta",)),
}
#: torch's Reduction enum: the mean, in the units of the reference level; the sum, in them once
#: divided by the count of the targets it sums over.
_MEAN = 1
_SUM = 2


class ReferenceProbe:
    """What the first backward scalars say about the loss: one built-in loss, of one kind and
    settings, and the targets of those calls; or not certain (see the module's docstring).

    Example::

        probe = ReferenceProbe()
        probe.look(F.cross_entropy(model(x), y))   # before that scalar's backward
        probe.offer(recorder)                      # the "train" series gets ln(C)-ish"""

    def __init__(self) -> None:
        self.left = REFERENCE_LOSSES
        self.certain = True
        self.kind: tuple[str, tuple[tuple[str, Any], ...]] | None = None
        self.targets: list[Any] = []
        self.rows = 0

    def look(self, t: torch.Tensor) -> None:
        """Look up the loss that produced ``t`` (a backward scalar, before its backward)."""
        self.left -= 1
        found = loss_of(t)
        if found is None or (self.kind is not None and found[0] != self.kind):
            self.certain = False
            self.left = 0
            self.targets = []
            return
        self.kind, y = found
        self.targets.append(y)
        self.rows += int(y.shape[0]) if y.ndim else 1
        if self.rows >= REFERENCE_ROWS:
            self.left = 0

    def offer(self, recorder: Recorder) -> None:
        """Give ``recorder``'s ``"train"`` series the reference level, when certain."""
        self.left = 0
        if not self.certain or self.kind is None or not self.targets:
            return
        import numpy as np
        import torch.nn.functional as F

        name, options = self.kind
        try:
            y = np.concatenate(self.targets) if len(self.targets) > 1 else self.targets[0]
        except ValueError:  # batches of different widths
            return
        loss: Any = functools.partial(getattr(F, name), **dict(options))
        n = len(self.targets)
        recorder.offer_reference("train", loss, y, by=BY_WATCH,
                                 where=f"of the first {n} {name} {'loss' if n == 1 else 'losses'}"
                                       f" captured")


def _unit_factor(node: Any) -> Any:
    """The node under ``node`` when ``node`` multiplies or divides by exactly 1, else None."""
    if type(node).__name__ not in ("DivBackward0", "MulBackward0"):
        return None
    factor = _constant_operand(node)
    return node.next_functions[0][0] if factor == 1.0 else None


def _constant_operand(node: Any) -> float | None:
    """The constant a ``DivBackward0`` / ``MulBackward0`` node divides or multiplies its first
    input by: a one-element tensor that needs no gradient (a Python number arrives as one);
    None for anything else (a tensor-by-tensor operation with a gradient on both sides)."""
    try:
        other = node._saved_other
        if (not isinstance(other, torch.Tensor) or other.numel() != 1 or other.requires_grad
                or node.next_functions[1][0] is not None or node.next_functions[0][0] is None):
            return None
        return float(other)
    except (AttributeError, RuntimeError, IndexError, TypeError):  # freed, or another layout
        return None


def unit_factors_peeled(node: Any) -> Any:
    """``node``, or the node under its multiplications and divisions by exactly 1.

    Lightning's automatic optimization divides every loss by ``accumulate_grad_batches``, 1 by
    default, before its backward; the Hugging Face ``Trainer`` multiplies it by the number of
    processes and accelerate divides it by its own accumulation steps (1 and 1 on one device,
    the ``Trainer``'s accumulation going into ``num_items_in_batch`` instead): unchanged
    values, so their loss keeps its reference level. Any other factor scales the loss, and the
    node is kept (no reference)."""
    for _ in range(8):  # a bounded walk: a chain of unit factors is short
        under = _unit_factor(node)
        if under is None:
            return node
        node = under
    return node


def _sum_over_count(node: Any) -> Any:
    """The sum-reduced loss node under ``node`` when ``node`` divides it by exactly the count of
    the targets it sums (the mean, written out), else None."""
    if type(node).__name__ != "DivBackward0":
        return None
    divisor = _constant_operand(node)
    loss = node.next_functions[0][0] if divisor is not None else None
    spec = _LOSS_NODES.get(type(loss).__name__) if loss is not None else None
    if spec is None or getattr(loss, "_saved_reduction", None) != _SUM:
        return None
    count = _summed_count(loss, spec[0])
    return loss if count is not None and count > 0 and divisor == float(count) else None


def _summed_count(node: Any, name: str) -> int | None:
    """How many terms a sum-reduced loss node adds up: the targets not equal to ``ignore_index``
    (cross-entropy), or the elements of the broadcast prediction and target (the others)."""
    target = node._saved_target
    if not isinstance(target, torch.Tensor):
        return None
    if name == "cross_entropy":
        ignore = int(node._saved_ignore_index)
        if ignore >= 2 ** 63:  # saved as an unsigned int64
            ignore -= 2 ** 64
        return int((target != ignore).sum())
    prediction = node._saved_self
    if not isinstance(prediction, torch.Tensor):
        return None
    import numpy as np

    return int(np.prod(np.broadcast_shapes(tuple(prediction.shape), tuple(target.shape))))


def loss_of(t: torch.Tensor) -> tuple[tuple[str, tuple[tuple[str, Any], ...]], Any] | None:
    """``((functional, settings), targets as numpy)`` when ``t`` is, unchanged, the output of a
    built-in loss with the mean reduction (or its sum divided by the count of its targets) and
    no weights; None otherwise."""
    node: Any = unit_factors_peeled(t.grad_fn)
    reduction = _MEAN
    try:
        summed = _sum_over_count(node) if node is not None else None
    except (AttributeError, RuntimeError, TypeError, ValueError):  # freed, or another node
        summed = None
    if summed is not None:
        node, reduction = summed, _SUM
    spec = _LOSS_NODES.get(type(node).__name__) if node is not None else None
    if spec is None:
        return None
    name, settings = spec
    try:
        if getattr(node, "_saved_reduction", None) != reduction:
            return None
        if (getattr(node, "_saved_weight", None) is not None
                or getattr(node, "_saved_pos_weight", None) is not None):
            return None
        if name == "cross_entropy":
            # Negative log-likelihood is cross-entropy only on log-probabilities.
            inner = node.next_functions[0][0] if node.next_functions else None
            if type(inner).__name__ != "LogSoftmaxBackward0":
                return None
        target = node._saved_target
        options = []
        for key in settings:
            value = getattr(node, f"_saved_{key}")
            if key == "ignore_index" and value >= 2 ** 63:  # saved as an unsigned int64
                value -= 2 ** 64
            options.append((key, value))
    except (AttributeError, RuntimeError):  # freed by an earlier backward, or another node
        return None
    if not isinstance(target, torch.Tensor) or target.requires_grad:
        return None  # a target that learns is a prediction: the arguments are swapped
    from pytest_losstrend.capture.references import targets_to_numpy

    try:
        y = targets_to_numpy(target).copy()  # a copy: the batch's buffer may be reused
    except (TypeError, ValueError, RuntimeError):
        return None
    return (name, tuple(options)), y

"""The loss a torch backward scalar is, read from its autograd graph: which built-in loss, with
which settings, on which targets; and from the first few of them, the captured series'
reference level (the loss of a model that learned nothing).

Used by automatic capture (:mod:`~pytest_losstrend.capture.auto_torch`) on the first
:data:`REFERENCE_LOSSES` backward scalars of a marked test, before their backward frees the
graph. Certain or nothing: when each scalar is, unchanged, the output of one built-in loss
(cross-entropy on log-softmax, MSE, BCE, BCE with logits, Huber, smooth L1; mean reduction, no
class weight, no ``pos_weight``) of the same kind and settings, their targets give the level
(:func:`~pytest_losstrend.capture.references.reference_for`). A sum of losses, a scaled loss
(``loss / k``, k other than 1), label smoothing, a target that requires a gradient (arguments
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
#: torch's Reduction enum: the mean, the only reduction in the units of the reference level.
_MEAN = 1


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


def unit_division_peeled(node: Any) -> Any:
    """``node``, or the node under it when ``node`` divides by exactly 1.

    Lightning's automatic optimization divides every loss by ``accumulate_grad_batches``, 1 by
    default, before its backward: an unchanged value, so its loss keeps its reference level. Any
    other divisor scales the loss, and the node is kept (no reference)."""
    if type(node).__name__ != "DivBackward0":
        return node
    try:
        other = node._saved_other
        unit = isinstance(other, torch.Tensor) and other.numel() == 1 and float(other) == 1.0
        return node.next_functions[0][0] if unit else node
    except (AttributeError, RuntimeError, IndexError):  # freed, or a tensor-by-tensor division
        return node


def loss_of(t: torch.Tensor) -> tuple[tuple[str, tuple[tuple[str, Any], ...]], Any] | None:
    """``((functional, settings), targets as numpy)`` when ``t`` is, unchanged, the output of a
    built-in loss with the mean reduction and no weights; None otherwise."""
    node: Any = unit_division_peeled(t.grad_fn)
    spec = _LOSS_NODES.get(type(node).__name__) if node is not None else None
    if spec is None:
        return None
    name, settings = spec
    try:
        if getattr(node, "_saved_reduction", None) != _MEAN:
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

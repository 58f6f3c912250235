"""What ``losstrend.watch`` sees of a training run, as plain data (pure Python).

The framework backends fill an :class:`Evidence`; the diagnosis rules read it. Everything here
is JSON-able, so it travels with the report (and across pytest-xdist) as it is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Evidence:
    """Signals gathered while a watched model trains.

    Per-step signals are sampled (every step at first, then more sparsely), so ``steps`` gives
    the step index of each sample of ``grad_norm``, ``lr`` and ``update_ratio``.

    Attributes:
        framework: ``"torch"`` or ``"keras"``.
        optimizer: the optimizer's class name (``"SGD"``, ``"Adam"``...), if known.
        momentum: SGD momentum (or Adam's beta1), if known.
        steps: optimizer step index of each sample.
        lr: learning rate of the first parameter group at each sample.
        grad_norm: global gradient norm (all parameters) at each sample, before the step.
        update_ratio: per layer (parameter name), ``|Δw| / max(|w_before|, |w_after|)`` of the
            step at each sample (of the epoch, in Keras), so a zero-initialised bias reads 1.
        zero_grad_calls: how often gradients were cleared (torch: ``optimizer.zero_grad``,
            ``model.zero_grad``, or by hand, ``p.grad = None``, seen on the first steps);
            ``None`` where the framework clears them itself (Keras) or where the calls were
            not counted over the run (automatic capture: see ``stale_after_zero_grad``).
        optimizer_steps: how many optimizer steps were attempted (one that raised included).
        not_in_optimizer: trainable parameters that no optimizer parameter group holds.
        frozen: parameters that cannot learn (``requires_grad=False``, ``trainable=False``).
        unchanged: trainable parameters whose values never changed over the run.
        zero_grad_params: trainable parameters whose gradient was zero (or None) at every sample.
        dead_fraction: per activation layer, the fraction of its outputs that were zero on the
            sampled batches (ReLU units that never fire). Activations called as functions
            (torch: ``F.relu``, ``torch.relu``, ``F.gelu``...) are keyed ``"fc1 via F.relu"``:
            the layer they follow, and the function.
        saturated_fraction: per tanh or sigmoid activation (torch: called as a function, or an
            ``nn.Tanh``/``nn.Sigmoid`` module), the fraction of its outputs saturated
            (``|tanh|`` at least 0.99, a sigmoid within 0.01 of 0 or 1) on the observed steps.
        activation_steps: how many sampled training forwards those functional activations and
            saturations were observed over (0: none observed).
        input_stats: statistics of the first batch of inputs seen: ``n_features``,
            ``std_min``, ``std_max``, ``std_ratio``, ``max_abs``, ``mean_abs_over_std``
            (largest |mean|/std over features), ``cond`` (condition number of the
            standardised-free Gram matrix of the raw features) and ``cond_standardised``.
        output_features: the model's output width (the class count of a classifier).
        loss_name: the loss function's name when known (``"cross_entropy"``, ``"mse"``...).
        first_loss: the loss at the first step.
        sharpness: the top Hessian eigenvalue of the loss on a fixed batch (power iteration on
            Hessian-vector products), when measured.
        sharpness_lr: the learning rate it is compared with.
        shape_mismatches: messages about predictions and targets broadcast against each other.
        notes: anything else a backend wants to show in the evidence.
        loss_from_logits: whether the loss takes logits (Keras' ``from_logits``), if known.
        grad_checks: optimizer steps after which it was checked, from the gradients themselves,
            whether the next backward pass started from cleared gradients (torch: a sample of
            a few parameters' gradients at a sampled step, compared with what the first
            backward pass after it finds in ``.grad``); ``None`` where not checked (Keras
            computes fresh gradients at every step).
        stale_steps: of those, the steps whose gradients the next backward pass found still
            there, unchanged: carried over into the next step.
        stale_params: the sampled parameters whose gradients were carried over.
        stale_after_zero_grad: of ``stale_steps``, those after which ``zero_grad`` was called
            before the next backward pass, and cleared nothing (a ``zero_grad`` that does
            nothing).
        manual_backward: backward passes of a loop where no optimizer ever stepped (a manual
            SGD loop, ``p -= lr * p.grad``), as automatic capture saw them; 0 otherwise.
        manual_checks: of those, the sampled backward passes that followed an update of the
            parameters (their values changed since the backward pass before): each found
            ``.grad`` cleared (None or zeros) or carried over.
        manual_stale: of those checks, how many found a gradient carried over.
        manual_stale_grads: per gradient (``"w.grad"``, ``"model.0.weight.grad"``), on how many
            of those checks it was carried over.
    """

    framework: str | None = None
    optimizer: str | None = None
    momentum: float | None = None
    steps: list[int] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    update_ratio: dict[str, list[float]] = field(default_factory=dict)
    zero_grad_calls: int | None = None
    optimizer_steps: int = 0
    not_in_optimizer: list[str] = field(default_factory=list)
    frozen: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    zero_grad_params: list[str] = field(default_factory=list)
    dead_fraction: dict[str, float] = field(default_factory=dict)
    saturated_fraction: dict[str, float] = field(default_factory=dict)
    activation_steps: int = 0
    input_stats: dict[str, float] = field(default_factory=dict)
    output_features: int | None = None
    loss_name: str | None = None
    first_loss: float | None = None
    sharpness: float | None = None
    sharpness_lr: float | None = None
    shape_mismatches: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    loss_from_logits: bool | None = None
    grad_checks: int | None = None
    stale_steps: list[int] = field(default_factory=list)
    stale_params: list[str] = field(default_factory=list)
    stale_after_zero_grad: int = 0
    manual_backward: int = 0
    manual_checks: int = 0
    manual_stale: int = 0
    manual_stale_grads: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        return asdict(self)

    @property
    def last_lr(self) -> float | None:
        """The learning rate at the last sample, if known."""
        return self.lr[-1] if self.lr else None

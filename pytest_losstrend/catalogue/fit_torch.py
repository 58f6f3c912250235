"""The torch loop of ``losstrend.fit``: a DataLoader over ``(X, y)`` (or the caller's own),
``zero_grad``, forward, loss, ``backward``, ``step``, recording each step's loss.

Called by :func:`~pytest_losstrend.catalogue.fit.run_fit` once the arguments are checked and
the model is known to be torch. torch is imported inside the functions, so importing this module
imports no framework (a Keras-only environment never imports torch).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pytest_losstrend.catalogue.fit_checks import (
    check_lengths,
    data_kind,
    mutated_arrays,
    shape_error,
)

if TYPE_CHECKING:
    from pytest_losstrend.capture.recorder import Recorder
    from pytest_losstrend.catalogue.mutation import Mutation

#: Where the train and eval series' reference levels come from, for the report.
TRAIN_TARGETS = "given to fit() to train on"
EVAL_TARGETS = "given to fit() as eval_data"

#: Learning rates for optimizers given by name (Keras' defaults, so both paths agree).
DEFAULT_LR = {"sgd": 0.01, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3, "adagrad": 1e-2}
#: Optimizer names the torch path accepts, and their ``torch.optim`` class names.
TORCH_OPTIMIZERS = {
    "sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "adagrad": "Adagrad",
}
#: Loss names the torch path accepts, and their ``torch.nn.functional`` functions.
TORCH_LOSSES = {
    "mse": "mse_loss",
    "l1": "l1_loss",
    "cross_entropy": "cross_entropy",
    "bce_with_logits": "binary_cross_entropy_with_logits",
}
#: Losses whose target is a class index, so prediction and target differ in shape by design.
CLASS_INDEX_LOSSES = {"cross_entropy", "nll", "nll_loss", "CrossEntropyLoss", "NLLLoss"}
#: Losses compared element by element: prediction and target must have the same shape.
ELEMENTWISE_LOSSES = {
    "mse", "mse_loss", "l1", "l1_loss", "bce_with_logits", "binary_cross_entropy_with_logits",
    "binary_cross_entropy", "huber_loss", "smooth_l1_loss", "MSELoss", "L1Loss", "HuberLoss",
    "SmoothL1Loss", "BCELoss", "BCEWithLogitsLoss",
}


def _torch_loss(loss: Any) -> tuple[Callable[[Any, Any], Any], str]:
    """The loss callable and a name to classify it by."""
    import torch.nn.functional as F

    if loss is None:
        raise TypeError(
            "fit(): a torch model needs loss=: a callable loss(pred, target) such as "
            f"nn.MSELoss(), or one of {sorted(TORCH_LOSSES)}"
        )
    if isinstance(loss, str):
        if loss not in TORCH_LOSSES:
            raise ValueError(
                f"fit(): unknown loss {loss!r} for a torch model; use one of "
                f"{sorted(TORCH_LOSSES)} or a callable loss(pred, target)"
            )
        fn: Callable[[Any, Any], Any] = getattr(F, TORCH_LOSSES[loss])
        return fn, loss
    if not callable(loss):
        raise TypeError(f"fit(): loss must be a callable or a name, got {type(loss).__name__}")
    name = getattr(loss, "__name__", None) or type(loss).__name__
    return loss, str(name)


def _torch_optimizer(optimizer: Any, model: Any) -> Any:
    import torch

    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    what, lr = optimizer, None
    if isinstance(optimizer, tuple) and len(optimizer) == 2:
        what, lr = optimizer
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"fit(): the learning rate in optimizer={optimizer!r} must be > 0")
    if isinstance(what, str):
        cls_name = TORCH_OPTIMIZERS.get(what.lower())
        if cls_name is None:
            raise ValueError(
                f"fit(): unknown optimizer {what!r}; use one of {sorted(TORCH_OPTIMIZERS)}, "
                "(name, lr), a torch.optim class or an optimizer instance"
            )
        cls = getattr(torch.optim, cls_name)
        lr = DEFAULT_LR[what.lower()] if lr is None else lr
    elif isinstance(what, type) and issubclass(what, torch.optim.Optimizer):
        cls = what
    else:
        raise TypeError(
            "fit(): optimizer must be a torch.optim.Optimizer, an optimizer class, a name "
            f"({', '.join(sorted(TORCH_OPTIMIZERS))}) or (class or name, lr); "
            f"got {optimizer!r}"
        )
    params = [p for p in model.parameters() if p.requires_grad]
    return cls(params) if lr is None else cls(params, lr=lr)


def _as_torch(a: Any, *, target: bool, class_index: bool) -> Any:
    import numpy as np
    import torch

    t = a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))
    if t.is_floating_point():
        # Models are float32; numpy hands out float64.
        if t.dtype == torch.float64:
            t = t.float()
        if target and class_index and t.ndim == 1:
            t = t.long()
    elif not target:
        t = t.float()
    return t


def _torch_batches(
    data: Any, arg: str, *, batch_size: int, shuffle: bool, class_index: bool, seed: int
) -> Any:
    """An iterable of (x, y) batches: the DataLoader itself, or one built from arrays; and the
    targets as the loss sees them (None for a DataLoader, whose targets are seen batch by
    batch)."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    kind = data_kind(data, arg)
    if kind == "dataset":
        raise TypeError(
            f"fit(): {arg} is a tf.data.Dataset but the model is a torch nn.Module; pass "
            "(X, y) arrays or a torch DataLoader"
        )
    if kind == "loader":
        return data, None
    x = _as_torch(data[0], target=False, class_index=class_index)
    y = _as_torch(data[1], target=True, class_index=class_index)
    check_lengths(x, y, arg)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle,
                        generator=gen)
    return loader, y


def _unpack(batch: Any, arg: str, device: Any, class_index: bool) -> tuple[Any, Any]:
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise TypeError(f"fit(): each batch of {arg} must be (x, y), got {type(batch).__name__}")
    x = _as_torch(batch[0], target=False, class_index=class_index)
    y = _as_torch(batch[1], target=True, class_index=class_index)
    return x.to(device), y.to(device)


def _check_torch_shapes(pred: Any, y: Any, loss_name: str, arg: str) -> None:
    import numpy as np

    if loss_name in CLASS_INDEX_LOSSES or tuple(pred.shape) == tuple(y.shape):
        return
    p, t = tuple(pred.shape), tuple(y.shape)
    if loss_name in ELEMENTWISE_LOSSES:
        raise ValueError(shape_error(p, t, loss_name, arg))
    # Any other loss: only the silent blow-up, (N, 1) against (N,) becoming (N, N).
    try:
        both = tuple(np.broadcast_shapes(p, t))
    except ValueError:
        return
    if math.prod(both) > max(math.prod(p), math.prod(t)):
        raise ValueError(shape_error(p, t, loss_name, arg))


def fit_torch(
    lt: Recorder, mutation: Mutation | None, model: Any, data: Any, *, loss: Any,
    optimizer: Any, steps: int | None, epochs: int | None, batch_size: int, shuffle: bool,
    eval_data: Any,
) -> None:
    """Train the torch ``model`` on ``data``, recording into ``lt`` with ``mutation`` applied;
    the arguments as :meth:`~pytest_losstrend.catalogue.fit.FitRecorder.fit` takes them."""
    import torch

    from pytest_losstrend.capture.recorder import BY_FIT

    loss_fn, loss_name = _torch_loss(loss)
    if optimizer is None:
        raise TypeError(
            "fit(): a torch model needs optimizer=: an optimizer instance, a torch.optim "
            f"class, a name ({', '.join(sorted(TORCH_OPTIMIZERS))}) or (name, lr) like "
            "('sgd', 0.01)"
        )
    if mutation is not None and mutation.on_model is not None:
        mutation.on_model(model, "torch")
    opt = _torch_optimizer(optimizer, model)
    if mutation is not None and mutation.on_optimizer is not None:
        opt = mutation.on_optimizer(opt, model, "torch")
    skip_zero_grad = mutation is not None and mutation.skip_zero_grad
    if mutation is not None and mutation.on_data is not None:
        data, shuffle = mutated_arrays(mutation, data, shuffle)
    class_index = loss_name in CLASS_INDEX_LOSSES
    # The fixture seeded torch; the seed also fixes the shuffling order across runs.
    seed = lt.seed if lt.seed is not None else torch.initial_seed()
    train, train_y = _torch_batches(data, "data", batch_size=batch_size, shuffle=shuffle,
                                    class_index=class_index, seed=seed)
    held = held_y = None
    if eval_data is not None:
        held, held_y = _torch_batches(eval_data, "eval_data", batch_size=batch_size,
                                      shuffle=False, class_index=class_index, seed=seed)
        if held_y is not None:
            lt.offer_reference("eval", loss_fn, held_y, by=BY_FIT, where=EVAL_TARGETS)
    if train_y is not None:
        lt.offer_reference("train", loss_fn, train_y, by=BY_FIT, where=TRAIN_TARGETS)
    # A DataLoader's targets are gathered over the first epoch (and its eval targets at the
    # first evaluation): the reference is set from them once they are all seen.
    seen_y: list[Any] | None = [] if train_y is None else None
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    watched = any(getattr(w, "model", None) is model for w in lt.watchers)

    done = epoch = 0
    # With steps, epochs run until that many optimizer steps; neither given means one epoch.
    n_epochs = math.inf if steps is not None else (epochs or 1)
    while epoch < n_epochs and (steps is None or done < steps):
        model.train()
        seen = 0
        for batch in train:
            x, y = _unpack(batch, "data", device, class_index)
            if not watched:
                # At the first batch, before the forward pass, so the watcher sees its inputs.
                lt.watch(model, opt, loss_fn=loss_fn, batch=(x, y))
                watched = True
            if not skip_zero_grad:
                opt.zero_grad()
            pred = model(x)
            if done == 0:
                _check_torch_shapes(pred, y, loss_name, "data")
            value = loss_fn(pred, y)
            if not isinstance(value, torch.Tensor) or value.ndim != 0:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value)
                raise ValueError(
                    f"fit(): loss returned {shape}, not a scalar tensor; reduce it to one "
                    "number per batch (reduction='mean', or .mean() in a custom loss)"
                )
            value.backward()  # type: ignore[no-untyped-call]
            opt.step()
            if seen_y is not None:
                seen_y.append(y.detach().cpu())
            lt.record(value)
            done += 1
            seen += 1
            if steps is not None and done >= steps:
                break
        if seen == 0:
            raise ValueError("fit(): data is empty: it yielded no batches")
        if seen_y is not None:
            gathered = _concat(seen_y)
            if gathered is not None:
                lt.offer_reference("train", loss_fn, gathered, by=BY_FIT, where=TRAIN_TARGETS)
            seen_y = None
        if held is not None:
            held_loss, held_targets = _torch_eval(model, held, loss_fn, device, class_index)
            if epoch == 0 and held_y is None and held_targets is not None:
                lt.offer_reference("eval", loss_fn, held_targets, by=BY_FIT, where=EVAL_TARGETS)
            lt.record(held_loss, series="eval")
        epoch += 1


def _concat(batches: list[Any]) -> Any:
    """Target batches as one tensor (None when they do not concatenate: ragged shapes)."""
    import torch

    try:
        return torch.cat(batches)
    except (RuntimeError, TypeError, ValueError):
        return None


def _torch_eval(
    model: Any, held: Any, loss_fn: Any, device: Any, class_index: bool
) -> tuple[float, Any]:
    """The mean loss over the held-out batches, weighted by batch size, in eval mode; and
    their targets."""
    import torch

    model.eval()
    total, rows = 0.0, 0
    targets = []
    try:
        with torch.no_grad():
            for batch in held:
                x, y = _unpack(batch, "eval_data", device, class_index)
                k = len(x)
                total += float(loss_fn(model(x), y)) * k
                rows += k
                targets.append(y.cpu())
    finally:
        model.train()
    if rows == 0:
        raise ValueError("fit(): eval_data is empty: it yielded no batches")
    return total / rows, _concat(targets)

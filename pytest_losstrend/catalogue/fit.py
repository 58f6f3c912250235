"""``losstrend.fit``: the short training loop most tests would write, for torch and Keras.

Imported only when a test calls ``losstrend.fit``; torch and Keras are imported inside the
functions that need them, so a torch-only environment never imports tensorflow and vice versa.

The API, in one place (``LossTrend.fit`` documents it for users):

- ``data``/``eval_data``: ``(X, y)`` arrays (numpy, torch or tf tensors), a torch ``DataLoader``
  (torch models) or a batched ``tf.data.Dataset`` (Keras models). ``batch_size`` and ``shuffle``
  apply to ``(X, y)`` only: a loader or a dataset already decides both.
- torch ``loss``: a callable ``loss(pred, target)`` or one of :data:`TORCH_LOSSES`.
- torch ``optimizer``: an optimizer instance; an optimizer class or a name from
  :data:`TORCH_OPTIMIZERS` (built on the model's parameters, at the class's default learning
  rate, or :data:`DEFAULT_LR` for a name); or a pair ``(class or name, lr)``.
- Keras ``loss``/``optimizer``: what ``model.compile`` accepts (the pair ``(name, lr)`` too);
  the model is compiled when it is not yet, or when either is given.
- ``steps`` counts optimizer steps across epochs, ``epochs`` whole passes; neither means one
  epoch; both is an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pytest_losstrend.capture.recorder import Recorder
from pytest_losstrend.catalogue.mutation import MutationNotApplicable

if TYPE_CHECKING:
    from pytest_losstrend.catalogue.mutation import Mutation
    from pytest_losstrend.verdict.criteria import Criteria

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
#: Keras losses compared element by element (Keras aligns ranks, not trailing widths).
KERAS_ELEMENTWISE = {
    "mse", "mae", "mean_squared_error", "mean_absolute_error", "binary_crossentropy",
    "huber", "MeanSquaredError", "MeanAbsoluteError", "BinaryCrossentropy", "Huber",
}
#: Rows of the training data handed to ``watch`` for input statistics (Keras path).
WATCH_ROWS = 256


class FitRecorder(Recorder):
    """A :class:`~pytest_losstrend.capture.recorder.Recorder` that can also train: ``fit``, and
    the injected bug it applies under ``--losstrend-mutate``.

    The base of the fixture's ``LossTrend``; the mutants of ``--losstrend-mutate`` are made of
    the test's own class.
    """

    def __init__(
        self,
        criteria: Criteria | None = None,
        *,
        fail_fast: bool = False,
        seed: int | None = None,
        base_seed: int | None = None,
        nodeid: str = "",
        marker: str = "loss_decreases",
    ) -> None:
        super().__init__(criteria, fail_fast=fail_fast, seed=seed, base_seed=base_seed,
                         nodeid=nodeid, marker=marker)
        #: The injected bug ``fit`` applies (``--losstrend-mutate``); None in a normal run.
        self.mutation: Mutation | None = None
        #: "torch" or "keras" once ``fit`` ran, so the plugin knows the test can be mutated.
        self.fit_framework: str | None = None

    def fit(
        self,
        model: Any,
        data: Any,
        *,
        loss: Any = None,
        optimizer: Any = None,
        steps: int | None = None,
        epochs: int | None = None,
        batch_size: int = 32,
        shuffle: bool = True,
        eval_data: Any = None,
    ) -> tuple[Any, dict[str, list[float]]]:
        """Train ``model`` on ``data`` with the usual short loop, recording and watching it.

        Records each optimizer step's loss as ``"train"`` and, with ``eval_data``, the mean
        held-out loss after every epoch as ``"eval"``; watches the model for diagnosis.

        Args:
            model: a torch ``nn.Module`` or a Keras model.
            data: ``(X, y)`` (numpy arrays, torch or tf tensors), a torch ``DataLoader``
                (torch models) or a batched ``tf.data.Dataset`` (Keras models).
                ``batch_size`` and ``shuffle`` apply to ``(X, y)`` only; torch arrays are
                shuffled with a generator seeded by the test's seed.
            loss: torch: a callable ``loss(pred, target)`` returning a scalar (``nn.MSELoss()``,
                ``F.cross_entropy``) or ``"mse"``, ``"l1"``, ``"cross_entropy"``,
                ``"bce_with_logits"``. Keras: anything ``compile`` takes.
            optimizer: torch: an optimizer instance; an optimizer class (built on the model's
                parameters with its default learning rate); ``"sgd"``, ``"adam"``,
                ``"adamw"``, ``"rmsprop"``, ``"adagrad"`` (Keras' default learning rates); or
                ``(class or name, lr)``. Keras: anything ``compile`` takes, or ``(name, lr)``.
                A Keras model is compiled when it is not yet, or when ``loss`` or
                ``optimizer`` is given (keeping the other from the earlier compile).
            steps: stop after this many optimizer steps, across epochs.
            epochs: stop after this many passes over ``data``. Neither: one epoch. Not both.
            eval_data: held-out data of the same kinds as ``data``.

        Returns:
            ``(model, series)``: the trained model and :meth:`as_dict` (``{"train": [...],
            "eval": [...]}``).

        Raises:
            ValueError / TypeError naming the argument: X and y of different lengths, targets
            that would broadcast against the model's output, empty data, a loss that is not a
            scalar, a model and data from different frameworks, a non-positive count.

        Example:
            >>> model, series = losstrend.fit(net, (x, y), loss="mse", optimizer=("adam", 1e-2),
            ...                               epochs=5, eval_data=(x_val, y_val))
            >>> model, series = losstrend.fit(keras_model, dataset, loss="mse",
            ...                               optimizer="adam", steps=100)
        """
        return run_fit(self, model, data, loss=loss, optimizer=optimizer, steps=steps,
                       epochs=epochs, batch_size=batch_size, shuffle=shuffle,
                       eval_data=eval_data)


def run_fit(
    lt: FitRecorder,
    model: Any,
    data: Any,
    *,
    loss: Any,
    optimizer: Any,
    steps: int | None,
    epochs: int | None,
    batch_size: int,
    shuffle: bool,
    eval_data: Any,
) -> tuple[Any, dict[str, list[float]]]:
    """Train ``model`` on ``data``, recording into ``lt``; see ``LossTrend.fit``."""
    for name, value in (("steps", steps), ("epochs", epochs), ("batch_size", batch_size)):
        if value is None and name != "batch_size":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"fit(): {name} must be a positive int, got {value!r}")
    if steps is not None and epochs is not None:
        raise ValueError(
            f"fit(): pass steps ({steps}) or epochs ({epochs}), not both: steps counts "
            "optimizer steps across epochs, epochs counts whole passes over data"
        )
    kind = _framework(model)
    # Tells --losstrend-mutate that this test trains through fit, and with what.
    lt.fit_framework = kind
    mutation = lt.mutation
    if mutation is not None and not mutation.applies(kind):
        raise MutationNotApplicable(f"{mutation.name} does not apply to {kind}")
    if kind == "torch":
        _fit_torch(lt, model, data, loss=loss, optimizer=optimizer, steps=steps,
                   epochs=epochs, batch_size=batch_size, shuffle=shuffle, eval_data=eval_data)
    else:
        _fit_keras(lt, model, data, loss=loss, optimizer=optimizer, steps=steps,
                   epochs=epochs, batch_size=batch_size, shuffle=shuffle, eval_data=eval_data)
    return model, lt.as_dict()


def _mutated_arrays(mutation: Mutation, data: Any, shuffle: bool) -> tuple[Any, bool]:
    """``(X, y)`` and the shuffle flag after the mutation's ``on_data``."""
    if _data_kind(data, "data") != "arrays":
        # A loader or a dataset decides its own order and contents.
        raise MutationNotApplicable(f"{mutation.name} needs (X, y) arrays as data")
    x, y, shuffle = mutation.on_data(data[0], data[1], shuffle)  # type: ignore[misc]
    return (x, y), shuffle


# -- classifying inputs --------------------------------------------------------------------


def _roots(obj: Any) -> set[str]:
    return {(c.__module__ or "").split(".")[0] for c in type(obj).__mro__}


def _framework(model: Any) -> str:
    roots = _roots(model)
    if "torch" in roots and hasattr(model, "named_parameters"):
        return "torch"
    if "keras" in roots or ("tensorflow" in roots and hasattr(model, "compile")):
        return "keras"
    raise TypeError(
        f"fit(): model must be a torch nn.Module or a Keras model, got {type(model).__name__}"
    )


def _data_kind(data: Any, arg: str) -> str:
    """``"arrays"``, ``"loader"`` (torch DataLoader) or ``"dataset"`` (tf.data.Dataset)."""
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise TypeError(f"fit(): {arg} must be (X, y), got a sequence of {len(data)} items")
        return "arrays"
    roots = _roots(data)
    if "torch" in roots and hasattr(data, "batch_sampler"):
        return "loader"
    if "tensorflow" in roots and hasattr(data, "cardinality"):
        return "dataset"
    raise TypeError(
        f"fit(): {arg} must be (X, y) arrays, a torch DataLoader or a tf.data.Dataset, "
        f"got {type(data).__name__}"
    )


def _check_lengths(x: Any, y: Any, arg: str) -> int:
    n, m = len(x), len(y)
    if n != m:
        raise ValueError(
            f"fit(): {arg} has X and y of different lengths: X has {n} rows "
            f"(shape {tuple(x.shape)}), y has {m} (shape {tuple(y.shape)})"
        )
    if n == 0:
        raise ValueError(f"fit(): {arg} is empty (X and y have 0 rows)")
    return n


def _shape_error(pred: tuple[int, ...], target: tuple[int, ...], loss: str, arg: str) -> str:
    hint = ""
    if len(target) == len(pred) - 1 and pred[-1:] == (1,):
        hint = " (reshape y with y.reshape(-1, 1))"
    elif len(target) == len(pred) + 1 and target[-1:] == (1,):
        hint = " (flatten y with y.reshape(-1))"
    return (
        f"fit(): the model's output has shape {pred} but y in {arg} has shape {target}; "
        f"{loss} compares them element by element, so they would broadcast and every "
        f"prediction would be compared with every target: give y the output's shape{hint}"
    )


# -- torch ------------------------------------------------------------------------------------


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
    """An iterable of (x, y) batches: the DataLoader itself, or one built from arrays."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    kind = _data_kind(data, arg)
    if kind == "dataset":
        raise TypeError(
            f"fit(): {arg} is a tf.data.Dataset but the model is a torch nn.Module; pass "
            "(X, y) arrays or a torch DataLoader"
        )
    if kind == "loader":
        return data
    x = _as_torch(data[0], target=False, class_index=class_index)
    y = _as_torch(data[1], target=True, class_index=class_index)
    _check_lengths(x, y, arg)
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle, generator=gen)


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
        raise ValueError(_shape_error(p, t, loss_name, arg))
    # Any other loss: only the silent blow-up, (N, 1) against (N,) becoming (N, N).
    try:
        both = tuple(np.broadcast_shapes(p, t))
    except ValueError:
        return
    if math.prod(both) > max(math.prod(p), math.prod(t)):
        raise ValueError(_shape_error(p, t, loss_name, arg))


def _fit_torch(
    lt: FitRecorder, model: Any, data: Any, *, loss: Any, optimizer: Any, steps: int | None,
    epochs: int | None, batch_size: int, shuffle: bool, eval_data: Any,
) -> None:
    import torch

    loss_fn, loss_name = _torch_loss(loss)
    if optimizer is None:
        raise TypeError(
            "fit(): a torch model needs optimizer=: an optimizer instance, a torch.optim "
            f"class, a name ({', '.join(sorted(TORCH_OPTIMIZERS))}) or (name, lr) like "
            "('sgd', 0.01)"
        )
    mutation = lt.mutation
    if mutation is not None and mutation.on_model is not None:
        mutation.on_model(model, "torch")
    opt = _torch_optimizer(optimizer, model)
    if mutation is not None and mutation.on_optimizer is not None:
        opt = mutation.on_optimizer(opt, model, "torch")
    skip_zero_grad = mutation is not None and mutation.skip_zero_grad
    if mutation is not None and mutation.on_data is not None:
        data, shuffle = _mutated_arrays(mutation, data, shuffle)
    class_index = loss_name in CLASS_INDEX_LOSSES
    # The fixture seeded torch; the seed also fixes the shuffling order across runs.
    seed = lt.seed if lt.seed is not None else torch.initial_seed()
    train = _torch_batches(data, "data", batch_size=batch_size, shuffle=shuffle,
                           class_index=class_index, seed=seed)
    held = None
    if eval_data is not None:
        held = _torch_batches(eval_data, "eval_data", batch_size=batch_size, shuffle=False,
                              class_index=class_index, seed=seed)
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
            lt.record(value)
            done += 1
            seen += 1
            if steps is not None and done >= steps:
                break
        if seen == 0:
            raise ValueError("fit(): data is empty: it yielded no batches")
        if held is not None:
            lt.record(_torch_eval(model, held, loss_fn, device, class_index), series="eval")
        epoch += 1


def _torch_eval(model: Any, held: Any, loss_fn: Any, device: Any, class_index: bool) -> float:
    """The mean loss over the held-out batches, weighted by batch size, in eval mode."""
    import torch

    model.eval()
    total, rows = 0.0, 0
    try:
        with torch.no_grad():
            for batch in held:
                x, y = _unpack(batch, "eval_data", device, class_index)
                k = len(x)
                total += float(loss_fn(model(x), y)) * k
                rows += k
    finally:
        model.train()
    if rows == 0:
        raise ValueError("fit(): eval_data is empty: it yielded no batches")
    return total / rows


# -- Keras ------------------------------------------------------------------------------------


def _keras_optimizer(optimizer: Any) -> Any:
    if isinstance(optimizer, tuple) and len(optimizer) == 2 and isinstance(optimizer[0], str):
        import keras

        name, lr = optimizer
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"fit(): the learning rate in optimizer={optimizer!r} must be > 0")
        try:
            return keras.optimizers.get({"class_name": name, "config": {"learning_rate": lr}})
        except ValueError as exc:
            raise ValueError(f"fit(): unknown Keras optimizer {name!r}: {exc}") from None
    return optimizer


def _keras_arrays(data: Any, arg: str) -> tuple[Any, Any]:
    import numpy as np

    x, y = data
    # torch tensors go through numpy; tf tensors and numpy arrays Keras takes as they are.
    x, y = (a.detach().cpu().numpy() if "torch" in _roots(a) else a for a in (x, y))
    if not hasattr(x, "shape"):
        x = np.asarray(x)
    if not hasattr(y, "shape"):
        y = np.asarray(y)
    _check_lengths(x, y, arg)
    return x, y


def _keras_data(data: Any, arg: str) -> tuple[str, Any]:
    kind = _data_kind(data, arg)
    if kind == "loader":
        raise TypeError(
            f"fit(): {arg} is a torch DataLoader but the model is a Keras model; pass (X, y) "
            "arrays or a tf.data.Dataset"
        )
    if kind == "arrays":
        return kind, _keras_arrays(data, arg)
    card = int(data.cardinality())
    if card == 0:
        raise ValueError(f"fit(): {arg} is an empty tf.data.Dataset (0 batches)")
    return kind, data


def _loss_label(loss: Any) -> str:
    if isinstance(loss, str):
        return loss
    return str(getattr(loss, "__name__", None) or type(loss).__name__)


def _fit_keras(
    lt: FitRecorder, model: Any, data: Any, *, loss: Any, optimizer: Any, steps: int | None,
    epochs: int | None, batch_size: int, shuffle: bool, eval_data: Any,
) -> None:

    kind, train = _keras_data(data, "data")
    mutation = lt.mutation
    if mutation is not None and mutation.on_data is not None:
        train, shuffle = _mutated_arrays(mutation, train, shuffle)
    held = None
    if eval_data is not None:
        held_kind, held = _keras_data(eval_data, "eval_data")
        if held_kind == "arrays":
            held = tuple(held)
    compiled = bool(getattr(model, "compiled", False))
    if not compiled and loss is None:
        raise TypeError("fit(): the Keras model is not compiled: pass loss= (and optimizer=)")
    if not compiled and optimizer is None:
        raise TypeError("fit(): the Keras model is not compiled: pass optimizer= (and loss=)")
    if loss is not None or optimizer is not None:
        model.compile(
            optimizer=_keras_optimizer(optimizer) if optimizer is not None else model.optimizer,
            loss=loss if loss is not None else model.loss,
        )

    sample = train if kind == "arrays" else next(iter(train))
    if not isinstance(sample, (tuple, list)) or len(sample) < 2:
        raise TypeError("fit(): each element of the tf.data.Dataset in data must be (x, y)")
    xs, ys = sample[0][:WATCH_ROWS], sample[1][:WATCH_ROWS]
    label = _loss_label(model.loss)
    if label in KERAS_ELEMENTWISE:
        pred = tuple(model(xs[:2]).shape)[1:]
        target = tuple(ys.shape)[1:]
        # Keras aligns the ranks ((N,) against (N, 1) is fine); differing widths broadcast.
        if tuple(d for d in pred if d != 1) != tuple(d for d in target if d != 1):
            raise ValueError(_shape_error((-1, *pred), (-1, *target), label, "data"))
    if mutation is not None and mutation.on_model is not None:
        if not getattr(model, "built", True):
            model(xs[:1])  # builds the weights the mutation acts on
        mutation.on_model(model, "keras")
    if mutation is not None and mutation.on_optimizer is not None:
        # In place: the compiled model keeps its own optimizer object.
        mutation.on_optimizer(model.optimizer, model, "keras")
    if not any(getattr(w, "model", None) is model for w in lt.watchers):
        lt.watch(model, batch=(xs, ys))

    callbacks = [lt.keras_callback()]
    fit_kw: dict[str, Any] = {}
    if kind == "arrays":
        x, y = train
        fit_kw.update(x=x, y=y, batch_size=batch_size, shuffle=shuffle)
        per_epoch: int | None = math.ceil(len(x) / batch_size)
    else:
        # Keras warns that shuffle is ignored for a dataset, which already decides its order.
        fit_kw.update(x=train, shuffle=False)
        card = int(train.cardinality())
        per_epoch = card if card > 0 else None  # infinite (-1) or unknown (-2)
    n_epochs = epochs or 1
    if steps is not None:
        if per_epoch is None:
            # An endless or unsized dataset: one "epoch" of exactly ``steps`` batches.
            fit_kw["steps_per_epoch"] = steps
        else:
            n_epochs = math.ceil(steps / per_epoch)
            if steps % per_epoch:
                callbacks.append(_stop_after(steps))
    elif per_epoch is None and int(train.cardinality()) == -1:
        raise ValueError("fit(): data is an endless tf.data.Dataset: pass steps=, not epochs=")
    model.fit(epochs=n_epochs, validation_data=held, callbacks=callbacks, verbose=0, **fit_kw)


def _stop_after(steps: int) -> Any:
    """A callback stopping ``model.fit`` after exactly ``steps`` batches, mid-epoch.

    Not async-safe on purpose: Keras then runs the batch hooks synchronously, so the flag is
    seen before the next batch starts (Keras checks ``stop_training`` after every batch).
    """
    import keras

    class StopAfter(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.done = 0

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            self.done += 1
            if self.done >= steps:
                self.model.stop_training = True

    return StopAfter()

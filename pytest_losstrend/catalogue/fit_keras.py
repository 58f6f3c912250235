"""The Keras loop of ``losstrend.fit``: compile when needed, check the target's shape, then
``model.fit`` with the recorder's callback (and one that stops after exactly ``steps`` batches).

Called by :func:`~pytest_losstrend.catalogue.fit.run_fit` once the arguments are checked and
the model is known to be Keras. numpy and Keras are imported inside the functions, so importing
this module imports no framework (a torch-only environment never imports tensorflow).
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Any

from pytest_losstrend.catalogue.fit_checks import (
    check_lengths,
    data_kind,
    mutated_arrays,
    shape_error,
    type_roots,
)

if TYPE_CHECKING:
    from pytest_losstrend.capture.recorder import Recorder
    from pytest_losstrend.catalogue.mutation import Mutation

#: Keras losses compared element by element (Keras aligns ranks, not trailing widths).
KERAS_ELEMENTWISE = {
    "mse", "mae", "mean_squared_error", "mean_absolute_error", "binary_crossentropy",
    "huber", "MeanSquaredError", "MeanAbsoluteError", "BinaryCrossentropy", "Huber",
}
#: Rows of the training data handed to ``watch`` for input statistics (Keras path).
WATCH_ROWS = 256
#: At most this many batches of a tf.data.Dataset are read for the reference level's targets.
TARGET_BATCHES = 1000


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
    x, y = (a.detach().cpu().numpy() if "torch" in type_roots(a) else a for a in (x, y))
    if not hasattr(x, "shape"):
        x = np.asarray(x)
    if not hasattr(y, "shape"):
        y = np.asarray(y)
    check_lengths(x, y, arg)
    return x, y


def _keras_data(data: Any, arg: str) -> tuple[str, Any]:
    kind = data_kind(data, arg)
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


def fit_keras(
    lt: Recorder, mutation: Mutation | None, model: Any, data: Any, *, loss: Any,
    optimizer: Any, steps: int | None, epochs: int | None, batch_size: int, shuffle: bool,
    eval_data: Any,
) -> None:
    """Train the Keras ``model`` on ``data``, recording into ``lt`` with ``mutation`` applied;
    the arguments as :meth:`~pytest_losstrend.catalogue.fit.FitRecorder.fit` takes them."""
    kind, train = _keras_data(data, "data")
    if mutation is not None and mutation.on_data is not None:
        train, shuffle = mutated_arrays(mutation, train, shuffle)
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

    batches = None if kind == "arrays" else iter(train)
    sample = train if batches is None else next(batches)
    if not isinstance(sample, (tuple, list)) or len(sample) < 2:
        raise TypeError("fit(): each element of the tf.data.Dataset in data must be (x, y)")
    xs, ys = sample[0][:WATCH_ROWS], sample[1][:WATCH_ROWS]
    _set_references(lt, model.loss, train, batches=batches, sample=sample, held=held,
                    steps=steps)
    label = _loss_label(model.loss)
    if label in KERAS_ELEMENTWISE:
        pred = tuple(model(xs[:2]).shape)[1:]
        target = tuple(ys.shape)[1:]
        # Keras aligns the ranks ((N,) against (N, 1) is fine); differing widths broadcast.
        if tuple(d for d in pred if d != 1) != tuple(d for d in target if d != 1):
            raise ValueError(shape_error((-1, *pred), (-1, *target), label, "data"))
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


def _set_references(
    lt: Recorder, loss: Any, train: Any, *, batches: Any, sample: Any, held: Any,
    steps: int | None,
) -> None:
    """The train and eval series' reference levels, from the targets ``fit`` trains and
    evaluates on. A dataset's targets are read from the iterator its first batch came from
    (so the batch order ``model.fit`` sees is what it was), over the batches training will
    use; one that yields sample weights gets none (they change the loss's units)."""
    from pytest_losstrend.capture.recorder import BY_FIT
    from pytest_losstrend.catalogue.fit_torch import EVAL_TARGETS, TRAIN_TARGETS

    if batches is None:  # (X, y) arrays
        lt.offer_reference("train", loss, train[1], by=BY_FIT, where=TRAIN_TARGETS)
    else:
        card = int(train.cardinality())
        # The batches training uses: an epoch, or steps; at most TARGET_BATCHES of a dataset
        # of unknown size (an endless one without steps= is an error below).
        limits = [n for n in (card if card > 0 else None, steps) if n is not None]
        wanted = min(limits) if limits else TARGET_BATCHES
        if card != -1 or steps is not None:
            rest = itertools.islice(batches, min(wanted, TARGET_BATCHES) - 1)
            lt.offer_reference("train", loss, _dataset_targets(sample, rest), by=BY_FIT,
                               where=TRAIN_TARGETS)
    if held is None:
        return
    if isinstance(held, tuple):
        lt.offer_reference("eval", loss, held[1], by=BY_FIT, where=EVAL_TARGETS)
    elif int(held.cardinality()) > 0:
        it = iter(held)
        first = next(it, None)
        if first is not None:
            rest = itertools.islice(it, TARGET_BATCHES - 1)
            lt.offer_reference("eval", loss, _dataset_targets(first, rest), by=BY_FIT,
                               where=EVAL_TARGETS)


def _dataset_targets(first: Any, rest: Any) -> Any:
    """The targets of a dataset's batches as one numpy array; None when it yields sample
    weights or no pairs."""
    import numpy as np

    ys = []
    for batch in itertools.chain([first], rest):
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            return None
        ys.append(np.asarray(batch[1]))
    try:
        return np.concatenate(ys)
    except ValueError:
        return None


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

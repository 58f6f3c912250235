"""``losstrend.fit``: the short training loop most tests would write, for torch and Keras.

This module holds the entry point, :class:`FitRecorder` (the base of the fixture's
``LossTrend``, so it is imported whenever the plugin loads), and :func:`run_fit`, which checks
the arguments and dispatches to the framework's loop: :mod:`~pytest_losstrend.catalogue.fit_torch`
or :mod:`~pytest_losstrend.catalogue.fit_keras`, with the checks they share in
:mod:`~pytest_losstrend.catalogue.fit_checks`. Loading the plugin must stay cheap
(tests/test_import_cost.py), so this module imports no numpy and no framework: the loop's module
is imported when a test calls ``losstrend.fit``, and torch and Keras inside the functions that
need them, so a torch-only environment never imports tensorflow and vice versa.

The API, in one place (``LossTrend.fit`` documents it for users):

- ``data``/``eval_data``: ``(X, y)`` arrays (numpy, torch or tf tensors), a torch ``DataLoader``
  (torch models) or a batched ``tf.data.Dataset`` (Keras models). ``batch_size`` and ``shuffle``
  apply to ``(X, y)`` only: a loader or a dataset already decides both.
- torch ``loss``: a callable ``loss(pred, target)`` or one of ``fit_torch.TORCH_LOSSES``.
- torch ``optimizer``: an optimizer instance; an optimizer class or a name from
  ``fit_torch.TORCH_OPTIMIZERS`` (built on the model's parameters, at the class's default
  learning rate, or ``fit_torch.DEFAULT_LR`` for a name); or a pair ``(class or name, lr)``.
- Keras ``loss``/``optimizer``: what ``model.compile`` accepts (the pair ``(name, lr)`` too);
  the model is compiled when it is not yet, or when either is given.
- ``steps`` counts optimizer steps across epochs, ``epochs`` whole passes; neither means one
  epoch; both is an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_losstrend.capture.recorder import Recorder
from pytest_losstrend.catalogue.fit_checks import framework_of
from pytest_losstrend.catalogue.mutation import MutationNotApplicable

if TYPE_CHECKING:
    from pytest_losstrend.catalogue.mutation import Mutation


class FitRecorder(Recorder):
    """A :class:`~pytest_losstrend.capture.recorder.Recorder` that can also train: ``fit``, and
    the injected bug it applies under ``--losstrend-mutate``.

    The base of the fixture's ``LossTrend``; the mutants of ``--losstrend-mutate`` are made of
    the test's own class.
    """

    #: The injected bug ``fit`` applies (``--losstrend-mutate``); None in a normal run.
    mutation: Mutation | None = None
    #: "torch" or "keras" once ``fit`` ran, so the plugin knows the test can be mutated.
    fit_framework: str | None = None

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
    kind = framework_of(model)
    # Tells --losstrend-mutate that this test trains through fit, and with what.
    lt.fit_framework = kind
    mutation = lt.mutation
    if mutation is not None and not mutation.applies(kind):
        raise MutationNotApplicable(f"{mutation.name} does not apply to {kind}")
    # The loops' modules are imported here, not at the top: only a test that trains pays for them.
    if kind == "torch":
        from pytest_losstrend.catalogue.fit_torch import fit_torch

        fit_torch(lt, mutation, model, data, loss=loss, optimizer=optimizer, steps=steps,
                  epochs=epochs, batch_size=batch_size, shuffle=shuffle, eval_data=eval_data)
    else:
        from pytest_losstrend.catalogue.fit_keras import fit_keras

        fit_keras(lt, mutation, model, data, loss=loss, optimizer=optimizer, steps=steps,
                  epochs=epochs, batch_size=batch_size, shuffle=shuffle, eval_data=eval_data)
    return model, lt.as_dict()

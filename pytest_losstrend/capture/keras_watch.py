"""Keras 3 watcher: fills an :class:`~pytest_losstrend.diagnosis.evidence.Evidence` while a
model trains.

The watcher never runs per batch. ``losstrend.keras_callback()`` calls it at the start of
``fit``, once at the end of every epoch (weights are copied to the host and compared with the
previous epoch's copy) and at the end of ``fit``. Everything that needs a forward pass (dead
ReLU units, the shape check, the sharpness) runs on the fixed ``batch=(x, y)`` given to
``losstrend.watch``, and only when it is given; without one, the input statistics are read at
the start of ``fit`` from the first rows of the ``x`` it was given. Gradients and Hessian-vector
products use ``tf.GradientTape``, so those signals need the TensorFlow backend of Keras.

The watcher's state and callback hooks are here; the stateless reading of the model (weight
names, frozen weights, loss name, input statistics, dead units, sharpness) is in
:mod:`.keras_signals`.

Keras and TensorFlow are untyped, so their objects are ``Any`` here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pytest_losstrend.capture.keras_signals import (
    LossFn,
    _broadcast_message,
    _first_layer_takes_ids,
    _frozen_weights,
    _loss_name,
    _tensorflow_backend,
    _to_numpy,
    _weight_names,
    dead_fraction,
    fit_inputs,
    input_stats,
    top_hessian_eigenvalue_keras,
)
from pytest_losstrend.diagnosis.evidence import Evidence


class KerasWatcher:
    """Gathers :class:`Evidence` about a Keras model: optimizer, frozen and unchanged weights,
    per-epoch update ratios and learning rates, and with a fixed ``batch=(x, y)`` the input
    statistics, gradient norms, dead ReLU units, shape mismatches and the sharpness.

    ``losstrend.keras_callback()`` creates one for its model (or uses the one ``watch`` made)
    and calls :meth:`on_train_begin`, :meth:`on_epoch_end` and :meth:`on_train_end`; nothing
    runs per batch. ``loss_fn`` takes ``(y_true, y_pred)``; by default the compiled loss is used.

    Update ratios are ``|Δw| / max(|w_before|, |w_after|)`` between consecutive epoch ends, so
    they span a whole epoch of optimizer steps (``steps`` says how many), not one step; the
    denominator keeps a weight that starts at zero (a bias) at a ratio of 1 instead of infinity.
    """

    def __init__(
        self,
        model: Any,
        optimizer: Any = None,
        *,
        loss_fn: LossFn | None = None,
        batch: Any = None,
    ) -> None:
        self.model = model
        self.evidence = Evidence(framework="keras")
        self._optimizer = optimizer
        self._loss_fn = loss_fn
        self._x: Any = None
        self._y: Any = None
        if batch is not None:
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise TypeError("watch(batch=...) takes a pair (x, y)")
            self._x, self._y = batch
        self._prev: dict[str, Any] = {}
        self._changed: set[str] = set()
        # Weights seen in two snapshots at least: only those can be called unchanged.
        self._compared: set[str] = set()
        self._nonzero_grad: set[str] = set()
        self._grad_seen: set[str] = set()
        self._grad_ok = self._x is not None and self._y is not None
        self._finished = False
        self._noted_epochs = False
        self.evidence.zero_grad_calls = None  # Keras clears gradients itself.
        if self._x is not None:
            self.evidence.input_stats = input_stats(
                self._x, ids=_first_layer_takes_ids(model))
        self._describe()
        self._snapshot(compare=False)

    # -- what the model is ---------------------------------------------------------------------

    @property
    def optimizer(self) -> Any:
        """The optimizer given to ``watch``, else the model's compiled one (``None`` before)."""
        return self._optimizer if self._optimizer is not None else getattr(
            self.model, "optimizer", None
        )

    def _describe(self) -> None:
        """Optimizer, momentum, frozen weights, output width and loss: cheap, static facts."""
        ev = self.evidence
        opt = self.optimizer
        # A LossScaleOptimizer (mixed precision) says nothing; the one it wraps does.
        inner = getattr(opt, "inner_optimizer", None) or opt
        if inner is not None:
            ev.optimizer = type(inner).__name__
            for attr in ("momentum", "beta_1"):
                value = getattr(inner, attr, None)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    ev.momentum = float(value)
                    break
        ev.frozen = _frozen_weights(self.model)
        if ev.output_features is None:
            ev.output_features = self._output_features()
        if self._loss_fn is not None:
            name, logits = _loss_name(self._loss_fn)
        else:
            name, logits = _loss_name(getattr(self.model, "loss", None))
        if name is not None:
            ev.loss_name = name
            ev.loss_from_logits = logits

    def _output_features(self) -> int | None:
        try:
            outputs = self.model.outputs
        except Exception:  # a Sequential model without an Input, or a subclassed model
            return None
        if not outputs or len(outputs) != 1:
            return None
        shape = tuple(outputs[0].shape)
        if len(shape) < 2 or shape[-1] is None:
            return None
        return int(shape[-1])

    # -- weights -------------------------------------------------------------------------------

    def _snapshot(self, *, compare: bool) -> dict[str, float]:
        """Copy the trainable weights to the host; with ``compare``, return each weight's
        update ratio against the previous copy (weights new since then are skipped)."""
        variables = list(getattr(self.model, "trainable_weights", []) or [])
        names = _weight_names(variables)
        ratios: dict[str, float] = {}
        current: dict[str, Any] = {}
        for v, name in zip(variables, names, strict=True):
            now = _to_numpy(v)
            current[name] = now
            before = self._prev.get(name)
            if not compare or before is None or before.shape != now.shape:
                continue
            self._compared.add(name)
            delta = float(np.linalg.norm((now - before).ravel()))
            if delta > 0:
                self._changed.add(name)
            scale = max(float(np.linalg.norm(before.ravel())), float(np.linalg.norm(now.ravel())))
            ratios[name] = delta / scale if scale > 0 else 0.0
        self._prev = current
        return ratios

    # -- callback hooks ------------------------------------------------------------------------

    def on_train_begin(self) -> None:
        """Start of ``fit``: the model is compiled and built now, so describe it again."""
        self._finished = False
        # Before the snapshot: calling the model on the batch builds a model that was never
        # called (a Sequential without an Input), so the first epoch gets its update ratios.
        if self._x is not None and not self.evidence.shape_mismatches:
            self._check_shapes()
        self._describe()
        if not self.evidence.input_stats:
            # No batch given to watch: the first rows of what fit() is training on.
            try:
                x = fit_inputs(self.model)
                if x is not None:
                    self.evidence.input_stats = input_stats(
                        x, ids=_first_layer_takes_ids(self.model))
            except Exception as exc:  # the user's data: never fail the test over it
                self.evidence.notes.append(f"keras: input statistics failed: {exc!r:.200}")
        # Weights changed between fits (by hand, or by a loop the watcher did not see) count.
        self._snapshot(compare=True)

    def on_epoch_end(self, epoch: int) -> None:
        """End of an epoch: update ratios, learning rate and step count (and with a batch,
        the gradient norm on it). Cheap: one host copy of the weights, one gradient at most."""
        ev = self.evidence
        ratios = self._snapshot(compare=True)
        steps = self._iterations()
        ev.optimizer_steps = steps
        ev.steps.append(steps)
        ev.lr.append(self._current_lr())
        # Every list stays aligned with ``steps``: NaN where a weight had no previous copy (a
        # model built during the first epoch) or is no longer trainable.
        for name in [*self._prev, *(n for n in ev.update_ratio if n not in self._prev)]:
            values = ev.update_ratio.setdefault(name, [])
            values.extend([math.nan] * (len(ev.steps) - 1 - len(values)))
            values.append(ratios.get(name, math.nan))
        if self._grad_ok:
            self._sample_gradient()
        if not self._noted_epochs:
            self._noted_epochs = True
            ev.notes.append(
                "keras: update ratios, learning rates and gradient norms are sampled at the end "
                "of each epoch; an update ratio spans the whole epoch's optimizer steps"
            )

    def on_train_end(self) -> None:
        """End of ``fit``: the step count as it ended (training may have stopped early)."""
        self.evidence.optimizer_steps = self._iterations()

    # -- results -------------------------------------------------------------------------------

    def finish(self) -> None:
        """Complete the evidence: unchanged weights and, with a batch, dead ReLU units and the
        zero-gradient weights. Idempotent until the next ``fit`` starts."""
        if self._finished:
            return
        self._finished = True
        ev = self.evidence
        self._snapshot(compare=True)
        ev.optimizer_steps = max(ev.optimizer_steps, self._iterations())
        ev.frozen = _frozen_weights(self.model)
        # The weights trainable now, in the model's order.
        ev.unchanged = [n for n in self._prev if n in self._compared - self._changed]
        ev.zero_grad_params = [
            n for n in self._prev if n in self._grad_seen - self._nonzero_grad
        ]
        if self._x is not None:
            if not ev.shape_mismatches:
                self._check_shapes()
            ev.dead_fraction = dead_fraction(self.model, self._x)

    def sharpness(self) -> float | None:
        """The top Hessian eigenvalue of the loss on the watched batch, measured now (``None``
        without a batch, a loss, or the TensorFlow backend). Sets ``evidence.sharpness_lr``."""
        if self._x is None or self._y is None or not _tensorflow_backend():
            return None
        loss = self._loss()
        if loss is None:
            return None
        try:
            value = top_hessian_eigenvalue_keras(self.model, loss, self._x, self._y)
        except Exception as exc:  # a model the nested tapes cannot differentiate twice
            self.evidence.notes.append(f"keras: sharpness not measured: {exc!r:.200}")
            return None
        self.evidence.sharpness = value
        lr = self._current_lr()
        self.evidence.sharpness_lr = None if math.isnan(lr) else lr
        return value

    # -- internals -----------------------------------------------------------------------------

    def _iterations(self) -> int:
        opt = self.optimizer
        it = getattr(opt, "iterations", None)
        if it is None:
            return self.evidence.optimizer_steps
        try:
            return int(_to_numpy(it))
        except Exception:
            return self.evidence.optimizer_steps

    def _current_lr(self) -> float:
        """The learning rate now, with a schedule evaluated at the optimizer's iteration."""
        opt = self.optimizer
        if opt is None:
            return math.nan
        try:
            return float(_to_numpy(opt.learning_rate))
        except Exception:
            pass
        # Optimizers whose learning_rate property does not evaluate the schedule themselves.
        lr: Any = getattr(opt, "_learning_rate", None)
        try:
            return float(_to_numpy(lr(opt.iterations)))
        except Exception:
            return math.nan

    def _loss(self) -> LossFn | None:
        """``loss_fn`` if given, else the compiled loss (with regularisation) as a function of
        ``(y_true, y_pred)``; ``None`` when the model was not compiled with a loss."""
        if self._loss_fn is not None:
            return self._loss_fn
        if getattr(self.model, "_compile_loss", None) is None:
            return None
        model, x = self.model, self._x

        def compiled(y_true: Any, y_pred: Any) -> Any:
            return model.compute_loss(x=x, y=y_true, y_pred=y_pred)

        return compiled

    def _sample_gradient(self) -> None:
        """Global gradient norm on the batch (one tape), and which weights got a gradient."""
        loss = self._loss() if _tensorflow_backend() else None
        if loss is None:
            self._grad_ok = False
            return
        import tensorflow as tf

        variables = list(self.model.trainable_variables)
        names = _weight_names(variables)
        try:
            with tf.GradientTape() as tape:
                value = loss(self._y, self.model(self._x, training=False))
            grads = tape.gradient(value, variables)
        except Exception as exc:
            self._grad_ok = False
            self.evidence.grad_norm.clear()
            self.evidence.notes.append(f"keras: gradient norm not measured: {exc!r:.200}")
            return
        total = 0.0
        self._grad_seen.update(names)
        for g, name in zip(grads, names, strict=True):
            if g is None:
                continue
            sq = float(tf.reduce_sum(tf.square(tf.cast(g, tf.float64))))
            total += sq
            if sq > 0:
                self._nonzero_grad.add(name)
        self.evidence.grad_norm.append(math.sqrt(total))

    def _check_shapes(self) -> None:
        if self._y is None or isinstance(self._x, dict):
            return
        try:
            pred = self.model(self._x, training=False)
            pred_shape = tuple(int(d) for d in pred.shape)
            y_shape = tuple(int(d) for d in np.shape(self._y))
        except Exception:
            return
        if self.evidence.output_features is None and len(pred_shape) >= 2:
            self.evidence.output_features = pred_shape[-1]
        message = _broadcast_message(pred_shape, y_shape)
        if message is not None:
            self.evidence.shape_mismatches.append(message)

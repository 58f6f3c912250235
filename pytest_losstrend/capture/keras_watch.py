"""Keras 3 watcher: fills an :class:`~pytest_losstrend.diagnosis.evidence.Evidence` while a
model trains.

The watcher never runs per batch. ``losstrend.keras_callback()`` calls it at the start of
``fit``, once at the end of every epoch (weights are copied to the host and compared with the
previous epoch's copy) and at the end of ``fit``. Everything that needs a forward pass (dead
ReLU units, the shape check, the sharpness) runs on the fixed ``batch=(x, y)`` given to
``losstrend.watch``, and only when it is given. Gradients and Hessian-vector products use
``tf.GradientTape``, so those signals need the TensorFlow backend of Keras.

Keras and TensorFlow are untyped, so their objects are ``Any`` here.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from pytest_losstrend.diagnosis.evidence import Evidence

# input_stats looks at this many rows of the batch at most, and skips the condition numbers
# beyond this many features: a d x d eigendecomposition per test must stay well under a second.
_STATS_ROWS = 4096
_STATS_MAX_FEATURES = 1024
# The dead-ReLU probe runs on this many rows at most; a unit silent on all of them is dead.
_PROBE_ROWS = 2048
# Activations that output exact zeros below a threshold, so a unit can die.
_RELU_NAMES = frozenset({"relu", "relu6"})

LossFn = Callable[[Any, Any], Any]


# -- pure helpers ------------------------------------------------------------------------------


def _weight_names(variables: list[Any]) -> list[str]:
    """Unique, readable names (``"dense/kernel"``) for a list of Keras variables."""
    names: list[str] = []
    seen: set[str] = set()
    for v in variables:
        base = str(getattr(v, "path", None) or getattr(v, "name", None) or "weight")
        name, k = base, 1
        while name in seen:
            k += 1
            name = f"{base}#{k}"
        seen.add(name)
        names.append(name)
    return names


def _to_numpy(value: Any) -> Any:
    """A host copy of a Keras variable or tensor: later updates never show through it.

    Example:
        >>> _to_numpy(keras.Variable([1.0, 2.0]))
        array([1., 2.], dtype=float32)
    """
    try:
        import keras

        if isinstance(value, keras.Variable):
            # The backend's own tensor or variable behind it.
            value = value.value
        if (type(value).__module__ or "").startswith("tensorflow") and hasattr(value, "numpy"):
            # Not keras.ops.convert_to_numpy: its np.array(x) on a tf.Variable (the weights,
            # optimizer.iterations, a learning rate) makes numpy 2 warn, in the user's test,
            # that tf's __array__ takes no copy keyword. .numpy() reads the value directly.
            arr = value.numpy()
        else:
            arr = keras.ops.convert_to_numpy(value)
    except Exception:
        arr = np.asarray(value)
    return np.array(arr, copy=True)


def _by_design_owner(layer: Any) -> bool:
    """True for a layer whose non-trainable weights are statistics, not frozen parameters.

    BatchNormalization's moving mean and variance, a Normalization layer's adapted mean,
    variance and count, and any preprocessing layer's state are updated outside the optimizer
    on purpose; flagging them as frozen would be noise.
    """
    for cls in type(layer).__mro__:
        module = cls.__module__ or ""
        if cls.__name__.endswith("Normalization") or module.startswith(
            ("keras.src.layers.preprocessing", "keras.src.layers.normalization")
        ):
            return True
    return False


def _frozen_weights(model: Any) -> list[str]:
    """Names of the model's non-trainable weights that are parameters someone froze.

    A weight counts as frozen when it sits in ``model.non_trainable_weights`` and is not one a
    statistics-keeping layer (see :func:`_by_design_owner`) created non-trainable. Such a
    layer's trainable weights (BatchNormalization's gamma and beta) still count when the layer
    was frozen with ``layer.trainable = False``. Integer variables (counters, seeds) are never
    parameters.
    """
    non_trainable = list(getattr(model, "non_trainable_weights", []) or [])
    if not non_trainable:
        return []
    statistics: set[int] = set()
    flatten = getattr(model, "_flatten_layers", None)
    layers = list(flatten(include_self=False)) if callable(flatten) else model.layers
    for layer in layers:
        if not _by_design_owner(layer):
            continue
        own = getattr(layer, "_non_trainable_variables", None)
        # Without Keras' bookkeeping of how a variable was created, trust the layer type.
        created_frozen = own if own is not None else getattr(layer, "non_trainable_weights", [])
        statistics.update(id(v) for v in created_frozen)
    names = _weight_names(non_trainable)
    out = []
    for v, name in zip(non_trainable, names, strict=True):
        dtype = str(getattr(v, "dtype", "float32"))
        if id(v) in statistics or not ("float" in dtype or "bfloat" in dtype):
            continue
        out.append(name)
    return out


def _loss_name(loss: Any) -> tuple[str | None, bool | None]:
    """The loss's name and its ``from_logits`` flag, each ``None`` when not discoverable.

    Takes what ``compile(loss=...)`` takes: a string (``"mse"`` resolves to
    ``"mean_squared_error"``), a loss function, a ``keras.losses.Loss``, or a one-entry list or
    dict of those.
    """
    if isinstance(loss, dict) and len(loss) == 1:
        loss = next(iter(loss.values()))
    elif isinstance(loss, (list, tuple)) and len(loss) == 1:
        loss = loss[0]
    if loss is None or isinstance(loss, (dict, list, tuple)):
        return None, None
    if isinstance(loss, str):
        try:
            import keras

            fn = keras.losses.get(loss)
        except Exception:
            return loss, None
        if fn is None:
            return loss, None
        loss = fn
    fn_kwargs = getattr(loss, "_fn_kwargs", None)
    from_logits: bool | None = None
    if isinstance(fn_kwargs, dict) and "from_logits" in fn_kwargs:
        from_logits = bool(fn_kwargs["from_logits"])
    elif isinstance(getattr(loss, "from_logits", None), bool):
        from_logits = loss.from_logits
    name = getattr(loss, "name", None)
    if not isinstance(name, str):
        name = getattr(loss, "__name__", None)
    if name == "<lambda>" or not isinstance(name, str):
        name = None
    if from_logits is None and callable(loss):
        # A plain loss function takes from_logits as a keyword with its default.
        try:
            param = inspect.signature(loss).parameters.get("from_logits")
        except (TypeError, ValueError):
            param = None
        if param is not None and isinstance(param.default, bool):
            from_logits = param.default
    return name, from_logits


def input_stats(x: Any) -> dict[str, float]:
    """Statistics of a 2-d float input batch, to spot unscaled features.

    Empty for anything else (images, token ids, dicts of inputs). At most the first 4096 rows
    are used. Constant features (a pixel that is always 0) are left out of every statistic but
    ``n_constant``: their standard deviation is 0 and would make every ratio infinite.

    Keys:
        n_features: number of columns.
        n_constant: columns with standard deviation 0.
        std_min, std_max: smallest and largest per-feature standard deviation (ddof 0).
        std_ratio: ``std_max / std_min``; above ~100 the features want standardising.
        max_abs: largest absolute value in the batch.
        mean_abs_over_std: largest ``|mean| / std`` over the features (an offset the model
            must first learn away).
        cond: condition number ``λ_max / λ_min`` of the raw Gram matrix ``XᵀX / N`` (the
            Hessian of least squares), ``inf`` when singular.
        cond_standardised: the same for the standardised features (the correlation matrix).
            ``cond`` far above ``cond_standardised`` means scaling alone makes the problem
            ill-conditioned. Both are left out beyond 1024 features.
    """
    try:
        arr = np.asarray(x)
    except Exception:
        return {}
    if arr.ndim != 2 or arr.dtype.kind != "f" or arr.shape[0] < 2 or arr.shape[1] < 1:
        return {}
    a = arr[:_STATS_ROWS].astype(np.float64)
    if not np.all(np.isfinite(a)):
        return {}
    std = a.std(axis=0)
    mean = a.mean(axis=0)
    live = std > 0
    stats: dict[str, float] = {
        "n_features": float(a.shape[1]),
        "n_constant": float(np.count_nonzero(~live)),
        "max_abs": float(np.abs(a).max()),
    }
    if not live.any():
        return stats
    s = std[live]
    stats.update(
        std_min=float(s.min()),
        std_max=float(s.max()),
        std_ratio=float(s.max() / s.min()),
        mean_abs_over_std=float((np.abs(mean[live]) / s).max()),
    )
    if int(live.sum()) <= _STATS_MAX_FEATURES:
        raw = a[:, live]
        z = (raw - mean[live]) / s
        stats["cond"] = _cond(raw.T @ raw / len(raw))
        stats["cond_standardised"] = _cond(z.T @ z / len(z))
    return stats


def _cond(gram: Any) -> float:
    """Condition number of a symmetric positive semi-definite matrix (``inf`` if singular)."""
    eig = np.linalg.eigvalsh(gram)
    top, low = float(eig[-1]), float(eig[0])
    # Round-off leaves a singular Gram matrix with tiny eigenvalues of either sign.
    if top <= 0 or low <= top * 1e-13:
        return math.inf
    return top / low


def _broadcast_message(pred_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> str | None:
    """A message when predictions and targets of different shapes broadcast to a bigger one."""
    if pred_shape == y_shape:
        return None
    try:
        both = tuple(np.broadcast_shapes(pred_shape, y_shape))
    except ValueError:
        return None
    if math.prod(both) <= max(math.prod(pred_shape), math.prod(y_shape)):
        return None
    return (
        f"predictions of shape {pred_shape} and targets of shape {y_shape} broadcast to "
        f"{both} in an element-wise loss such as (y_pred - y_true) ** 2: every prediction is "
        "compared with every target and the model learns to predict the mean. Keras' built-in "
        "losses align the ranks first, so compile(loss='mse') is unaffected; a hand-written "
        "loss is not. Reshape the targets to the prediction's shape."
    )


def top_hessian_eigenvalue_keras(
    model: Any, loss_fn: LossFn, x: Any, y: Any, *, iters: int = 50, tol: float = 1e-4
) -> float:
    """Top eigenvalue of the Hessian of ``loss_fn(y, model(x))`` in the trainable weights (0.0
    for a model with none): :func:`pytest_losstrend.capture.sharpness.top_hessian_eigenvalue_tf`.

    Needs the TensorFlow backend of Keras. ``loss_fn`` takes ``(y_true, y_pred)``, Keras' order.
    """
    if not list(model.trainable_variables):
        return 0.0
    from pytest_losstrend.capture.sharpness import top_hessian_eigenvalue_tf

    return top_hessian_eigenvalue_tf(model, loss_fn, x, y, iters=iters, tol=tol)


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
            self.evidence.input_stats = input_stats(self._x)
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
            ev.dead_fraction = self._dead_fraction()

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

    def _dead_fraction(self) -> dict[str, float]:
        """Per ReLU layer, the fraction of its units that output 0 for every row of the batch.

        Needs a functional or Sequential model (a probe model reads the layers' outputs);
        layers of nested models and shared layers are skipped.
        """
        import keras

        try:
            inputs = self.model.inputs
        except Exception:
            return {}
        if not inputs:
            return {}
        candidates = []
        for layer in self.model.layers:
            act = getattr(layer, "activation", None)
            relu = getattr(act, "__name__", None) in _RELU_NAMES
            if type(layer).__name__ == "ReLU":
                relu = not getattr(layer, "negative_slope", 0.0)
            if relu:
                try:
                    candidates.append((layer.name, layer.output))
                except Exception:  # a shared layer has no single output
                    continue
        if not candidates:
            return {}
        # A single input as itself, not a one-element list: Keras warns about the structure.
        probe_inputs = inputs[0] if len(inputs) == 1 else inputs
        try:
            probe = keras.Model(probe_inputs, [out for _, out in candidates])
        except Exception:
            return {}
        x = self._x
        if not isinstance(x, (dict, list, tuple)):
            x = x[:_PROBE_ROWS]
        try:
            outs = probe(x, training=False)
        except Exception:
            return {}
        if not isinstance(outs, (list, tuple)):
            outs = [outs]
        result: dict[str, float] = {}
        for (name, _), out in zip(candidates, outs, strict=True):
            arr = _to_numpy(out)
            if arr.ndim < 2 or arr.shape[0] == 0:
                continue
            units = arr.reshape(arr.shape[0], -1)
            result[name] = float(np.mean(np.all(units == 0, axis=0)))
        return result


def _tensorflow_backend() -> bool:
    try:
        import keras

        return bool(keras.backend.backend() == "tensorflow")
    except Exception:
        return False

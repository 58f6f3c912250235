"""What :class:`~pytest_losstrend.capture.keras_watch.KerasWatcher` reads from a Keras model
without keeping state: readable weight names and host copies, which weights are frozen, the
loss's name and ``from_logits``, the statistics of an input batch, the shape check's message,
dead ReLU units and the sharpness (imported only by ``keras_watch`` and the Keras callback).

Keras and TensorFlow are untyped, so their objects are ``Any`` here, and both are imported
inside the functions that need them. Names with a leading underscore are internal to
``capture``, not API.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from types import FrameType
from typing import Any

import numpy as np

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


def input_stats(x: Any, *, ids: bool = False) -> dict[str, float]:
    """Statistics of an input batch, to spot unscaled features.

    A 2-d batch gets every key below; any other (images, sequences) ``max_abs``, ``rms``,
    ``mean`` and ``std`` over all its elements. Integer inputs count as numbers (Keras casts a
    uint8 image batch to float for a ``Dense`` or ``Conv2D``), unless ``ids`` says the first
    layer is an ``Embedding``, whose integer inputs are token ids, not magnitudes. Empty for
    anything else (strings, dicts of inputs). At most the first 4096 rows are used. Constant
    features (a pixel that is always 0) are left out of every statistic but
    ``n_constant``: their standard deviation is 0 and would make every ratio infinite.

    Keys:
        n_features: number of columns.
        n_constant: columns with standard deviation 0.
        std_min, std_max: smallest and largest per-feature standard deviation (ddof 0).
        std_ratio: ``std_max / std_min``; above ~100 the features want standardising.
        range_ratio: the largest per-feature ``max |x|`` over the smallest: features in
            different units (unlike the std ratio, blind to a rarely lit pixel).
        max_abs: largest absolute value in the batch; rms: root mean square of every value.
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
    numeric = arr.dtype.kind == "f" or (arr.dtype.kind in "iu" and not ids)
    if not numeric or arr.ndim < 1 or arr.shape[0] < 2 or arr.size == 0:
        return {}
    a = arr[:_STATS_ROWS].astype(np.float64)
    if not np.all(np.isfinite(a)):
        return {}
    max_abs = float(np.abs(a).max())
    rms = float(np.sqrt(np.mean(np.square(a))))
    if a.ndim != 2:
        return {"max_abs": max_abs, "rms": rms, "mean": float(a.mean()), "std": float(a.std())}
    std = a.std(axis=0)
    mean = a.mean(axis=0)
    live = std > 0
    stats: dict[str, float] = {
        "n_features": float(a.shape[1]),
        "n_constant": float(np.count_nonzero(~live)),
        "max_abs": max_abs,
        "rms": rms,
    }
    if not live.any():
        return stats
    s = std[live]
    stats.update(
        std_min=float(s.min()),
        std_max=float(s.max()),
        std_ratio=float(s.max() / s.min()),
        range_ratio=_range_ratio(np.abs(a[:, live]).max(axis=0)),
        mean_abs_over_std=float((np.abs(mean[live]) / s).max()),
    )
    if int(live.sum()) <= _STATS_MAX_FEATURES:
        raw = a[:, live]
        z = (raw - mean[live]) / s
        stats["cond"] = _cond(raw.T @ raw / len(raw))
        stats["cond_standardised"] = _cond(z.T @ z / len(z))
    return stats


def _first_layer_takes_ids(model: Any) -> bool:
    """Whether the model's first layer (past its ``Input``) is an ``Embedding``: its integer
    inputs are then token ids, not magnitudes to scale."""
    for layer in getattr(model, "layers", None) or []:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        return kind == "Embedding"
    return False


def fit_inputs(model: Any, *, depth: int = 12) -> Any:
    """The first rows of the ``x`` that the running ``model.fit`` was given, read from its
    frame (a callback's ``on_train_begin`` runs inside it; a callback is never handed the
    data). An array or tensor gives its first rows; a ``tf.data.Dataset`` its first batch
    (``take(1)``: a new iterator, the one ``fit`` reads is untouched). ``None`` for anything
    that cannot be read again without consuming it (a generator, a ``PyDataset``) and for a
    dict or list of inputs."""
    import sys

    frame: FrameType | None = sys._getframe(1)
    found: FrameType | None = None
    for _ in range(depth):
        if frame is None:
            break
        if frame.f_code.co_name == "fit" and frame.f_locals.get("self") is model:
            found = frame
            break
        frame = frame.f_back
    if found is None:
        return None
    x = found.f_locals.get("x")
    if x is None or isinstance(x, (dict, list, tuple)):
        return None
    if type(x).__name__.endswith("Dataset") and hasattr(x, "take"):
        try:
            batch = next(iter(x.take(1)))
        except Exception:
            return None
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if isinstance(x, (dict, list, tuple)):
            return None
    if not hasattr(x, "shape") or not hasattr(x, "__getitem__"):
        return None
    try:
        return _to_numpy(x[:_STATS_ROWS])
    except Exception:
        return None


def _range_ratio(peak: Any) -> float:
    """The largest per-feature ``max |x|`` over the smallest (``inf`` when one is 0)."""
    low = float(peak.min())
    return float(peak.max()) / low if low > 0 else math.inf


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



def dead_fraction(model: Any, x: Any) -> dict[str, float]:
    """Per ReLU layer of ``model``, the fraction of its units that output 0 for every row
    of the batch ``x``.

    Needs a functional or Sequential model (a probe model reads the layers' outputs);
    layers of nested models and shared layers are skipped.
    """
    import keras

    try:
        inputs = model.inputs
    except Exception:
        return {}
    if not inputs:
        return {}
    candidates = []
    for layer in model.layers:
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
    """Whether Keras runs on TensorFlow (the gradients and the sharpness use its tapes)."""
    try:
        import keras

        return bool(keras.backend.backend() == "tensorflow")
    except Exception:
        return False

"""Reference levels of real losses: which loss a torch module, a torch functional, a Keras loss
or a loss name is, and the loss of the best constant predictor on the targets it compares with.

:func:`reference_for` reads the loss (its class or function, and the arguments that change its
units), turns the targets into numpy (torch and TensorFlow tensors are copied to the host, no
graph is kept), lays them out as the loss reads them (class indices, rows of class
probabilities, values) and hands them to
:func:`pytest_losstrend.verdict.reference.reference_level`, the numpy-only arithmetic.

It never guesses: anything whose units differ from the frameworks' default mean reduction
(``reduction="sum"`` or ``"none"``, ``label_smoothing``, a class ``weight``, ``pos_weight``)
and any loss it does not know (a custom callable, a subclass, a Keras ``LossFunctionWrapper``
around a function of one's own) gives None, so no run is judged against a wrong level.
Frameworks are recognised by their classes' and functions' module names, and imported by
nothing here.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from pytest_losstrend.verdict.reference import Reference, reference_level

#: torch loss modules (``torch.nn``) and functionals (``torch.nn.functional``): the canonical
#: loss, and whether its targets are class indices (``"index"``), class indices or rows of
#: probabilities along dim 1 (``"torch_ce"``) or compared element by element (``"values"``).
_TORCH: dict[str, tuple[str, str]] = {
    "CrossEntropyLoss": ("cross_entropy", "torch_ce"),
    "cross_entropy": ("cross_entropy", "torch_ce"),
    "NLLLoss": ("cross_entropy", "index"),
    "nll_loss": ("cross_entropy", "index"),
    "BCELoss": ("binary_cross_entropy", "values"),
    "binary_cross_entropy": ("binary_cross_entropy", "values"),
    "BCEWithLogitsLoss": ("binary_cross_entropy", "values"),
    "binary_cross_entropy_with_logits": ("binary_cross_entropy", "values"),
    "MSELoss": ("mse", "values"),
    "mse_loss": ("mse", "values"),
    "L1Loss": ("l1", "values"),
    "l1_loss": ("l1", "values"),
    "HuberLoss": ("huber", "values"),
    "huber_loss": ("huber", "values"),
    "SmoothL1Loss": ("smooth_l1", "values"),
    "smooth_l1_loss": ("smooth_l1", "values"),
}
#: Keras loss functions (what its loss classes wrap, by ``__name__``), laid out as above;
#: ``"keras_ce"`` is rows of class probabilities along the last axis.
_KERAS: dict[str, tuple[str, str]] = {
    "sparse_categorical_crossentropy": ("cross_entropy", "index"),
    "categorical_crossentropy": ("cross_entropy", "keras_ce"),
    "binary_crossentropy": ("binary_cross_entropy", "values"),
    "mean_squared_error": ("mse", "values"),
    "mean_absolute_error": ("l1", "values"),
    "huber": ("huber", "values"),
}
#: Loss names as ``losstrend.fit`` (torch) and Keras' ``compile`` take them.
_NAMES: dict[str, tuple[str, str]] = {
    **{k: v for k, v in _TORCH.items() if k[0].islower()},
    **_KERAS,
    "mse": ("mse", "values"),
    "mae": ("l1", "values"),
    "l1": ("l1", "values"),
    "bce_with_logits": ("binary_cross_entropy", "values"),
    "huber_loss": ("huber", "values"),
    "MeanSquaredError": ("mse", "values"),
    "MeanAbsoluteError": ("l1", "values"),
    "BinaryCrossentropy": ("binary_cross_entropy", "values"),
    "CategoricalCrossentropy": ("cross_entropy", "keras_ce"),
    "SparseCategoricalCrossentropy": ("cross_entropy", "index"),
    "Huber": ("huber", "values"),
}
#: Keras reductions in the units of the mean over the batch (without sample weights).
_KERAS_MEAN = {"sum_over_batch_size", "mean", "mean_with_sample_weight"}
#: Keyword arguments of a torch loss that leave its units alone, with the value that does.
_TORCH_NEUTRAL = {"reduction": "mean", "weight": None, "pos_weight": None,
                  "label_smoothing": 0.0, "size_average": None, "reduce": None}


#: torch's default ``ignore_index`` of cross-entropy and NLL.
TORCH_IGNORE_INDEX = -100


class _Unknown(Exception):
    """The loss, its settings or its targets give no reference level we can vouch for."""


def reference_for(loss: Any, targets: Any) -> Reference | None:
    """The reference level of ``loss`` on ``targets``: the loss of the best constant predictor
    (the label frequencies, the mean or median of the targets), or None when it is not known.

    ``loss`` is a torch loss module (``nn.CrossEntropyLoss()``, ``nn.NLLLoss()``,
    ``nn.BCELoss()``, ``nn.BCEWithLogitsLoss()``, ``nn.MSELoss()``, ``nn.L1Loss()``,
    ``nn.HuberLoss(delta)``, ``nn.SmoothL1Loss(beta)``), a torch functional (``F.cross_entropy``,
    ``F.mse_loss``..., also under ``functools.partial``), a Keras loss object or function
    (``keras.losses.MeanSquaredError()``, ``SparseCategoricalCrossentropy``,
    ``CategoricalCrossentropy``, ``BinaryCrossentropy``, ``MeanAbsoluteError``, ``Huber(delta)``
    and their functions) or a name as ``losstrend.fit`` and ``compile`` take it (``"mse"``,
    ``"cross_entropy"``, ``"sparse_categorical_crossentropy"``...). ``targets`` are what the
    loss compares the predictions with: numpy, a list, a torch or TensorFlow tensor.

    None, never a wrong level, for a loss it does not know (a custom callable, a subclass of a
    built-in loss) and for settings that change the loss's units: a reduction other than the
    mean, ``label_smoothing``, a class ``weight``, ``pos_weight``. Cross-entropy targets equal
    to ``ignore_index`` (torch) or ``ignore_class`` (Keras) are left out, as the loss leaves
    them out.

    Example:
        >>> import torch
        >>> ref = reference_for(torch.nn.CrossEntropyLoss(), torch.arange(10).repeat(5))
        >>> round(ref.value, 3), ref.how
        (2.303, 'the entropy of the label frequencies (ln 10 = 2.303: 10 balanced classes)')
        >>> reference_for(torch.nn.MSELoss(reduction="sum"), [1.0, 2.0]) is None
        True
    """
    try:
        canonical, layout, options = _identify(loss)
        y = targets_to_numpy(targets)
        y = _laid_out(y, layout, options.get("ignore"))
        if canonical == "smooth_l1":
            return _smooth_l1(y, float(options.get("beta", 1.0)))
        return reference_level(canonical, y, delta=float(options.get("delta", 1.0)))
    except (_Unknown, ValueError, TypeError, AttributeError, RuntimeError, NotImplementedError):
        # A tensor that holds no values (symbolic, on the meta device) or an object that only
        # looks like a known loss: no level, and the run it belongs to goes on.
        return None


# -- which loss ------------------------------------------------------------------------------


def _identify(loss: Any) -> tuple[str, str, dict[str, Any]]:
    """``(canonical loss, target layout, options)`` of ``loss``; options are ``delta``,
    ``beta`` and ``ignore`` (a class index to leave out)."""
    if isinstance(loss, str):
        found = _NAMES.get(loss) or _NAMES.get(loss.lower())
        if found is None:
            raise _Unknown(loss)
        return (*found, _torch_default(found[1]) if loss in _TORCH else {})
    if isinstance(loss, functools.partial):
        if loss.args:
            raise _Unknown("a partial with positional arguments")
        canonical, layout, options = _identify(loss.func)
        return canonical, layout, {**options, **_torch_options(canonical, loss.keywords)}
    module = getattr(type(loss), "__module__", "") or ""
    if module.startswith("torch.nn.modules"):
        name = type(loss).__name__
        if name not in _TORCH or not name[0].isupper():
            raise _Unknown(name)
        canonical, layout = _TORCH[name]
        settings = {k: getattr(loss, k) for k in (*_TORCH_NEUTRAL, "ignore_index", "delta",
                                                  "beta") if hasattr(loss, k)}
        return canonical, layout, _torch_options(canonical, settings)
    fn_module = getattr(loss, "__module__", "") or ""
    name = getattr(loss, "__name__", "")
    if fn_module == "torch.nn.functional" and name in _TORCH and name[0].islower():
        return (*_TORCH[name], _torch_default(_TORCH[name][1]))
    if module.startswith("keras") and hasattr(loss, "fn"):
        return _keras_object(loss)
    if fn_module.startswith("keras") and name in _KERAS:
        return (*_KERAS[name], {})
    raise _Unknown(type(loss).__name__)


def _torch_default(layout: str) -> dict[str, Any]:
    """The options of a torch functional called with its defaults: cross-entropy and NLL leave
    out the targets equal to ``ignore_index=-100``."""
    return {"ignore": TORCH_IGNORE_INDEX} if layout in ("torch_ce", "index") else {}


def _torch_options(canonical: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The options of a torch loss's settings; ``_Unknown`` for one that changes its units."""
    options: dict[str, Any] = {}
    for key, value in settings.items():
        if key in _TORCH_NEUTRAL:
            neutral = _TORCH_NEUTRAL[key]
            if value is None and neutral is None:
                continue
            if neutral is None or value != neutral:
                raise _Unknown(f"{key}={value!r}")
        elif key == "ignore_index":
            options["ignore"] = int(value)
        elif key == "delta" and canonical == "huber":
            options["delta"] = float(value)
        elif key == "beta" and canonical == "smooth_l1":
            options["beta"] = float(value)
        else:
            raise _Unknown(key)
    return options


def _keras_object(loss: Any) -> tuple[str, str, dict[str, Any]]:
    """A Keras loss object: the function it wraps and its arguments."""
    fn = loss.fn
    name = getattr(fn, "__name__", "")
    if not (getattr(fn, "__module__", "") or "").startswith("keras") or name not in _KERAS:
        raise _Unknown(name)
    if getattr(loss, "reduction", None) not in _KERAS_MEAN:
        raise _Unknown(f"reduction={getattr(loss, 'reduction', None)!r}")
    canonical, layout = _KERAS[name]
    options: dict[str, Any] = {}
    for key, value in (getattr(loss, "_fn_kwargs", None) or {}).items():
        if key == "from_logits":
            continue
        if key == "label_smoothing" and not value:
            continue
        if key == "axis" and value == -1:
            continue
        if key == "ignore_class":
            if value is not None:
                options["ignore"] = int(value)
        elif key == "delta" and canonical == "huber":
            options["delta"] = float(value)
        else:
            raise _Unknown(f"{key}={value!r}")
    return canonical, layout, options


# -- the targets -----------------------------------------------------------------------------


def targets_to_numpy(targets: Any) -> Any:
    """``targets`` as a numpy array of their own dtype, copied off any device and graph
    (a ``ValueError`` for a symbolic tensor, which holds no values).

    Example:
        >>> targets_to_numpy([0, 1, 1]).tolist()
        [0, 1, 1]
    """
    roots = {(c.__module__ or "").split(".")[0] for c in type(targets).__mro__}
    if "torch" in roots and hasattr(targets, "detach"):
        t = targets.detach().cpu()
        if t.is_floating_point() and t.dtype.itemsize < 4:
            t = t.float()  # bfloat16 and float16 have no (or a lossy) numpy twin
        return t.numpy()
    if "tensorflow" in roots or "keras" in roots:
        to_numpy = getattr(targets, "numpy", None)
        if to_numpy is None:
            raise ValueError("a symbolic tensor holds no values")
        return np.asarray(to_numpy())
    return np.asarray(targets)


def _laid_out(y: Any, layout: str, ignore: int | None) -> Any:
    """The targets as :func:`reference_level` reads them for the layout the loss uses."""
    if y.dtype.kind not in "biuf":
        raise _Unknown(f"targets of dtype {y.dtype}")
    integer = y.dtype.kind in "biu"
    if layout == "index" or (layout == "torch_ce" and (integer or y.ndim == 1)):
        y = y.reshape(-1)
        if ignore is not None:
            y = y[y != ignore]
        return y
    if layout == "torch_ce":
        # Rows of class probabilities along dim 1: (N, C) or (N, C, d1, ...).
        return np.moveaxis(y, 1, -1).reshape(-1, y.shape[1])
    if layout == "keras_ce":
        if y.ndim < 2:
            raise _Unknown("categorical cross-entropy needs rows of class probabilities")
        return y.reshape(-1, y.shape[-1])
    return y


def _smooth_l1(y: Any, beta: float) -> Reference:
    """Smooth L1 is Huber with ``delta = beta``, divided by ``beta`` (L1 itself at 0)."""
    if beta <= 0:
        return reference_level("l1", y)
    huber = reference_level("huber", y, delta=beta)
    value = huber.value / beta
    return Reference(value, f"the smooth L1 loss (beta={beta:g}) of the best constant "
                            f"({value:.4g})")


__all__ = ["reference_for", "targets_to_numpy"]

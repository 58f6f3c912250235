"""Conversion of framework values to floats, and the registry of framework backends.

This module imports no framework: it recognises torch and tensorflow values by their type's
module, and imports the framework only to handle a value that already came from it.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

#: Returned by a converter for a scalar tensor on an accelerator: keep it, copy later in a chunk.
DEFER = object()
#: Returned by a converter for a Keras ``History``: record its series.
HISTORY = object()


def _vector(values: Any, what: str) -> list[float]:
    import numpy as np

    raw = np.asarray(values)
    if raw.dtype.kind == "b":
        raise TypeError(f"record() takes losses, not booleans; got {what} of booleans")
    arr = raw.astype(np.float64)
    if arr.ndim == 0:
        return [float(arr)]
    if arr.ndim != 1:
        raise ValueError(
            f"record() takes a scalar loss or a 1-d sequence of losses; got {what} of shape "
            f"{tuple(arr.shape)} (reduce it first, e.g. loss.mean())"
        )
    return [float(v) for v in arr]


def _torch_converter() -> Callable[[Any], Any]:
    import torch

    torch_bool = torch.bool

    def convert(value: Any) -> Any:
        # The per-step path: a CPU float scalar, read with .item() (no sync exists on the CPU).
        if value.ndim == 0 and value.is_cpu and value.is_floating_point():
            return value.item()
        if value.dtype is torch_bool:
            raise TypeError("record() takes losses, not booleans; got a torch bool tensor")
        if value.numel() == 1 and value.ndim <= 1:
            if value.is_cpu:
                return float(value.item())
            return DEFER
        if value.ndim == 1:
            return [float(v) for v in value.detach().float().cpu().tolist()]
        raise ValueError(
            "record() takes a scalar loss or a 1-d sequence of losses; got a torch tensor of "
            f"shape {tuple(value.shape)} (reduce it first, e.g. loss.mean())"
        )

    return convert


def _tensorflow(value: Any) -> Any:
    arr = value.numpy() if hasattr(value, "numpy") else value
    if getattr(arr, "ndim", 0) == 0:
        return float(arr)
    return _vector(arr, "a tensorflow tensor")


def _number(value: Any) -> float:
    return float(value)


def _sequence(value: Sequence[Any]) -> list[float]:
    out: list[float] = []
    for v in value:
        if isinstance(v, (bool, str, bytes)):
            raise TypeError(f"record() takes numbers; the sequence holds {type(v).__name__}")
        if isinstance(v, numbers.Real):
            out.append(float(v))
            continue
        conv = converter_for(v)
        got = conv(v)
        if got is DEFER:
            got = float(v.detach().cpu().item())
        if isinstance(got, list):
            raise ValueError("record() takes a flat sequence of losses, not nested sequences")
        out.append(float(got))
    return out


def _other(value: Any) -> Any:
    return _vector(value, type(value).__name__)


def converter_for(value: Any) -> Callable[[Any], Any]:
    """The function that turns values of ``type(value)`` into a float, a list of floats,
    :data:`DEFER` or :data:`HISTORY`. Raises ``TypeError`` for what cannot be a loss."""
    tp = type(value)
    module = tp.__module__ or ""
    if isinstance(value, bool) or value is None or isinstance(value, (str, bytes)):
        raise TypeError(
            f"record() takes a loss (a number or a tensor), got {tp.__name__}: {value!r}"
        )
    if module.startswith("torch") and hasattr(value, "detach"):
        return _torch_converter()
    if module.startswith(("tensorflow", "keras")) and hasattr(value, "numpy"):
        return _tensorflow
    if tp.__name__ == "History" and isinstance(getattr(value, "history", None), dict):
        return lambda v: HISTORY
    if isinstance(value, numbers.Real):
        return _number
    if isinstance(value, (list, tuple)):
        return _sequence
    if hasattr(value, "__array__") or hasattr(value, "__len__"):
        return _checked_other(value)
    raise TypeError(f"record() takes a loss (a number or a tensor), got {tp.__name__}")


def _checked_other(value: Any) -> Callable[[Any], Any]:
    try:
        _other(value)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ValueError) and "shape" in str(exc):
            raise
        raise TypeError(
            f"record() takes a loss (a number or a tensor), got {type(value).__name__}"
        ) from None
    return _other


def tensors_to_floats(tensors: list[Any]) -> list[float]:
    """Copy a chunk of scalar tensors to the host in one transfer."""
    import torch

    stacked = torch.stack([t.reshape(()) for t in tensors]).float().cpu()
    return [float(v) for v in stacked.tolist()]

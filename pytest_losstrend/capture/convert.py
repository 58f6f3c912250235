"""Conversion of framework values to floats, and the registry of framework backends.

This module imports no framework: it recognises torch and tensorflow values by their type's
module, and imports the framework only to handle a value that already came from it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

#: Returned by a converter for a scalar tensor on an accelerator: keep it, copy later in a chunk.
DEFER = object()
#: Returned by a converter for a Keras ``History``: record its series.
HISTORY = object()


def show(value: Any) -> str:
    """A short description of ``value`` for an error message (never raises)."""
    if isinstance(value, int) and value.bit_length() > 256:
        # Past 4300 digits repr() itself raises; the size is what matters anyway.
        return f"an int of about {int(value.bit_length() * 0.30103) + 1} digits"
    try:
        text = " ".join(repr(value).split())
    except Exception:
        text = f"a {type(value).__name__}"
    return text if len(text) <= 80 else text[:77] + "..."


def not_a_float(value: Any, exc: Exception) -> ValueError:
    """The error for a number that has no float64 value: too large (an int or a fraction past
    1.8e308) or a signalling NaN."""
    if isinstance(exc, OverflowError):
        return ValueError(
            f"record() got {show(value)}: too large for a float (a loss must fit a float64, "
            "at most 1.8e308); record a scaled loss or its log"
        )
    return ValueError(f"record() cannot read {show(value)} as a float: {exc}")


def _number(value: Any) -> float:
    try:
        f = float(value)
    except (OverflowError, ValueError) as exc:
        raise not_a_float(value, exc) from None
    if math.isinf(f) and not value == f:
        # A finite Decimal or long double past 1.8e308 rounds to inf silently: the same
        # value as an int raises, so it does here too.
        raise not_a_float(value, OverflowError())
    return f


#: numpy dtype kinds that cannot hold losses, rejected by name (object arrays are read element
#: by element): (what they hold, a hint).
_REJECTED_KINDS = {
    "b": ("booleans", ""),
    "c": ("complex numbers", " (record loss.real or abs(loss))"),
    "U": ("strings", ""),
    "S": ("byte strings", ""),
    "M": ("dates", ""),
    "m": ("time durations", ""),
    "V": ("raw bytes", ""),
}


def _check_kind(kind: str, what: str) -> None:
    if kind in _REJECTED_KINDS:
        name, hint = _REJECTED_KINDS[kind]
        raise TypeError(f"record() takes losses, not {name}; got {what} of {name}{hint}")


def _shape_error(what: str, shape: tuple[int, ...]) -> ValueError:
    return ValueError(
        f"record() takes a scalar loss or a 1-d sequence of losses; got {what} of shape "
        f"{shape} (reduce it first, e.g. loss.mean())"
    )


def _vector(values: Any, what: str) -> list[float]:
    import numpy as np

    raw = np.asarray(values)
    _check_kind(raw.dtype.kind, what)
    if raw.ndim > 1:
        raise _shape_error(what, tuple(raw.shape))
    if raw.dtype.kind == "O":
        if raw.ndim == 0 and raw.item() is values:
            # numpy wrapped something it cannot read (a dict, a set): reading its one element
            # would come straight back here.
            raise TypeError(f"record() takes a loss (a number or a tensor), got "
                            f"{type(values).__name__}: {show(values)}")
        # Each element by the scalar rules: astype(float) would read None as NaN, "0.5" as a
        # number and overflow on an int of 400 digits.
        return _sequence(raw.reshape(-1).tolist())
    if raw.dtype.kind == "f" and raw.dtype.itemsize > 8:
        # A long double past 1.8e308 would become inf with a warning: say which value.
        big = np.abs(raw[np.isfinite(raw)]) > np.finfo(np.float64).max
        if big.any():
            raise not_a_float(raw[np.isfinite(raw)][big].reshape(-1)[0], OverflowError())
    arr = raw.astype(np.float64)
    if arr.ndim == 0:
        return [float(arr)]
    return [float(v) for v in arr]


def _meta_error(value: Any) -> ValueError:
    return ValueError(
        f"record() got a tensor on the meta device ({show(value)}): a meta tensor has a shape "
        "but no values, so there is no loss to record; compute the loss with the model on a "
        "real device (build it outside torch.device('meta'), or model.to_empty(device='cpu') "
        "and initialise its weights)"
    )


def _torch_converter() -> Callable[[Any], Any]:
    import torch

    torch_bool = torch.bool
    strided = torch.strided

    def convert(value: Any) -> Any:
        # The per-step path: a CPU float scalar, read with .item() (no sync exists on the CPU).
        if value.ndim == 0 and value.is_cpu and value.is_floating_point():
            return value.item()
        if value.is_meta:
            raise _meta_error(value)
        if value.dtype is torch_bool:
            raise TypeError("record() takes losses, not booleans; got a torch bool tensor")
        if value.is_complex():
            raise TypeError(
                f"record() takes real losses, not complex numbers; got {show(value)} (record "
                "loss.real or loss.abs())"
            )
        if value.layout is not strided:
            # A sparse tensor has no strided storage to read: its dense form has the values.
            value = value.detach().to_dense()
        if value.numel() == 1 and value.ndim <= 1:
            if value.is_cpu:
                return float(value.item())
            return DEFER
        if value.ndim == 1:
            return [float(v) for v in value.detach().float().cpu().tolist()]
        raise _shape_error("a torch tensor", tuple(value.shape))

    return convert


def _tensorflow(value: Any) -> Any:
    arr = value.numpy() if hasattr(value, "numpy") else value
    if getattr(arr, "ndim", 0) == 0:
        import numpy as np

        # A string tensor's numpy() is bytes and a bool's is a numpy bool: float() of either
        # would read it as a loss.
        _check_kind(np.asarray(arr).dtype.kind, "a tensorflow tensor")
        return float(arr)
    return _vector(arr, "a tensorflow tensor")


_TEXT = (str, bytes, bytearray, memoryview)


def _sequence(value: Sequence[Any]) -> list[float]:
    out: list[float] = []
    for v in value:
        if isinstance(v, (bool, *_TEXT)):
            raise TypeError(
                f"record() takes numbers; the sequence holds {type(v).__name__}: {show(v)}"
            )
        if isinstance(v, numbers.Real):
            out.append(_number(v))
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
    :data:`DEFER` or :data:`HISTORY`. Raises ``TypeError`` for what cannot be a loss, naming
    it."""
    tp = type(value)
    module = tp.__module__ or ""
    if isinstance(value, bool) or value is None or isinstance(value, _TEXT):
        raise TypeError(
            f"record() takes a loss (a number or a tensor), got {tp.__name__}: {show(value)}"
        )
    if module.startswith("torch") and hasattr(value, "detach"):
        return _torch_converter()
    if module.startswith(("tensorflow", "keras")) and hasattr(value, "numpy"):
        return _tensorflow
    if tp.__name__ == "History" and isinstance(getattr(value, "history", None), dict):
        return lambda v: HISTORY
    if isinstance(value, numbers.Complex) and not isinstance(value, numbers.Real):
        raise TypeError(
            f"record() takes real losses, not complex numbers; got {show(value)} (record "
            "loss.real or abs(loss))"
        )
    # Decimal is a Number but not registered as Real; it converts to float exactly enough.
    if isinstance(value, numbers.Number) and hasattr(value, "__float__"):
        return _number
    if isinstance(value, (list, tuple)):
        return _sequence
    if hasattr(value, "__array__") or hasattr(value, "__len__"):
        return _checked_other(value)
    raise TypeError(f"record() takes a loss (a number or a tensor), got {tp.__name__}: "
                    f"{show(value)}")


def _checked_other(value: Any) -> Callable[[Any], Any]:
    try:
        _other(value)
    except (TypeError, ValueError) as exc:
        if str(exc).startswith("record()"):
            # Our own message (a shape, a dtype, an element): it says more than ours would.
            raise
        raise TypeError(
            f"record() takes a loss (a number or a tensor), got {type(value).__name__}: "
            f"{show(value)}"
        ) from None
    return _other


def tensors_to_floats(tensors: list[Any]) -> list[float]:
    """Copy a chunk of scalar tensors to the host in one transfer."""
    import torch

    stacked = torch.stack([t.reshape(()) for t in tensors]).float().cpu()
    return [float(v) for v in stacked.tolist()]

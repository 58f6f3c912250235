"""The norm samplers behind :class:`~pytest_losstrend.capture.torch_watch.TorchWatcher`: at a
sampled optimizer step, the norms of the gradients and parameters before the step and of the
update and parameters after it (imported only by ``torch_watch``, itself imported only by
``watch``).

Two implementations of one small interface, :class:`_Sampler`: :class:`_NumpySampler` for float
parameters on the CPU (numpy views of their memory, a fraction of a torch kernel launch per
call) and :class:`_TorchSampler` for anything else (foreach kernels whose results stay on the
device until drained). :func:`_numpy_ready` picks one; the watcher decides when to sample and
what the numbers mean (:func:`_update_ratio`). The names keep their leading underscore: they
are internal to ``capture``, not API.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import torch
from torch import nn

#: dtypes read through numpy views on the CPU (a numpy call costs a fraction of a torch op's).
_NUMPY_DTYPES = (torch.float32, torch.float64)

#: A few values of a tensor: a numpy copy on the CPU, a tensor elsewhere.
Elements = np.ndarray[Any, Any] | torch.Tensor


def numpy_view(t: torch.Tensor) -> np.ndarray[Any, Any] | None:
    """A flat numpy view of ``t``'s values for a dense float32/float64 CPU tensor, else None."""
    if t.device.type != "cpu" or t.dtype not in _NUMPY_DTYPES or t.is_sparse:
        return None
    return t.detach().numpy().reshape(-1)


def elements(t: torch.Tensor, n: int) -> Elements | None:
    """Up to ``n`` of ``t``'s values, spread evenly over it (a copy); None for a sparse or
    empty tensor. Used to tell later whether ``t`` changed (:func:`same_elements`)."""
    if t.is_sparse or t.numel() == 0:
        return None
    a = numpy_view(t)
    if a is not None:
        sample = a[::max(1, a.size // n)][:n]
        return cast("np.ndarray[Any, Any]", sample.copy())
    flat = t.detach().reshape(-1)
    stride = max(1, flat.numel() // n)
    return flat[::stride][:n].clone()


def same_elements(a: Elements | None, b: Elements | None) -> bool:
    """Whether two samples of :func:`elements` are equal (a NaN never is)."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return bool(np.array_equal(a, b))
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.device == b.device and torch.equal(a, b)
    return False


def nonzero(t: torch.Tensor | Elements) -> bool:
    """Whether any value of ``t`` (a tensor or a sample of :func:`elements`) is not zero."""
    if isinstance(t, np.ndarray):
        return bool(t.any())
    a = numpy_view(t)
    if a is not None:
        return bool(a.any())
    if t.is_sparse:
        t = t.coalesce().values()
    return bool(t.numel()) and bool(t.detach().any())


def _update_ratio(delta: float, before: float, after: float) -> float:
    """``|Δw| / |w|``, ``|w|`` the larger of the norms before and after the step: a parameter
    initialised at zero gets 1 at its first step (it was rewritten from scratch), not
    infinity; one that stays at zero gets 0. NaN stays NaN."""
    weight = math.nan if math.isnan(before) or math.isnan(after) else max(before, after)
    if weight > 0:
        return delta / weight
    if weight == 0:
        return 0.0 if delta == 0 else math.inf
    return math.nan


class _Sampler:
    """Norms of the gradients, the parameters and the updates at the sampled steps: four
    numbers per parameter per sample, in blocks of ``n``: gradient norms and parameter norms
    before the step, update norms and parameter norms after it."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        self.params = params
        #: How many numbers (or 0-d tensors) are held, for the flush threshold.
        self.size = 0

    def before(self) -> None:
        """Before a sampled step: the gradients' and parameters' norms, and a copy of the
        parameters."""
        raise NotImplementedError

    def after(self) -> None:
        """After it (at the next step's pre-hook, or at the end): the update's norms."""
        raise NotImplementedError

    def drain(self) -> list[float]:
        """Every number taken since the last drain, as floats."""
        raise NotImplementedError


class _NumpySampler(_Sampler):
    """For float32/float64 parameters on the CPU: numpy views of the parameters' storage.

    On a tiny model the fixed cost of a torch kernel launch (a few microseconds, several
    times that in a training loop's cold cache) dominates; a numpy call on a view of the
    same memory costs a fraction of it, and the norms are floats at once.
    """

    def __init__(self, params: list[nn.Parameter]) -> None:
        super().__init__(params)
        self.values: list[float] = []
        self.updates: list[float] = []
        self._bind()

    def _bind(self) -> None:
        # A parameter whose storage was replaced (p.data = ...) gets new views.
        self.ptrs = [p.data_ptr() for p in self.params]
        self.views = [p.detach().numpy() for p in self.params]
        self.saved = [v.copy() for v in self.views]

    def before(self) -> None:
        if [p.data_ptr() for p in self.params] != self.ptrs:
            self._bind()
        out = self.values
        sqrt, vdot = math.sqrt, np.vdot  # vdot flattens: no reshapes
        for p in self.params:
            g = p.grad
            if g is None:
                out.append(0.0)
            else:
                a = (g.detach() if g.requires_grad else g).numpy()
                out.append(sqrt(vdot(a, a)))
        for saved, view in zip(self.saved, self.views, strict=True):
            np.copyto(saved, view)
            out.append(sqrt(vdot(view, view)))

    def after(self) -> None:
        sqrt, vdot = math.sqrt, np.vdot
        out = self.values
        for saved, view in zip(self.saved, self.views, strict=True):
            np.subtract(saved, view, out=saved)  # now -Δw
            out.append(sqrt(vdot(saved, saved)))
        out.extend(sqrt(vdot(view, view)) for view in self.views)
        self.size += 4 * len(self.params)

    def drain(self) -> list[float]:
        values, self.values = self.values, []
        self.size = 0
        return values


class _TorchSampler(_Sampler):
    """For any parameters (accelerators, half precision): four foreach kernels per sample,
    two before the step (the norms, a copy) and two after it (a subtraction, the norms).
    The norms stay 0-d tensors until :meth:`drain`, so an accelerator is never synchronised
    per step."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        super().__init__(params)
        # Detached views share the parameters' storage and follow in-place updates.
        self.data = [p.detach() for p in params]
        # The norm of a missing gradient, in the parameter's dtype so that the norms stack.
        self.zeros = [torch.zeros((), dtype=p.dtype, device=p.device) for p in params]
        self.uniform = len({(p.device, p.dtype) for p in params}) <= 1
        self.saved: list[torch.Tensor] | None = None
        self.norms: list[torch.Tensor] = []

    def before(self) -> None:
        # No torch.no_grad() (it costs as much as a kernel): nothing here requires grad.
        grads = [g if (g := p.grad) is not None else z
                 for p, z in zip(self.params, self.zeros, strict=True)]
        self.norms.extend(torch._foreach_norm(grads + self.data))
        if self.saved is None:
            self.saved = [d.clone() for d in self.data]
        else:
            torch._foreach_copy_(self.saved, self.data)

    def after(self) -> None:
        saved = self.saved
        assert saved is not None
        torch._foreach_sub_(saved, self.data)  # now -Δw
        self.norms.extend(torch._foreach_norm(saved + self.data))
        self.size += 4 * len(self.params)

    def drain(self) -> list[float]:
        norms, self.norms = self.norms, []
        self.size = 0
        if not norms:
            return []
        if self.uniform and norms[0].device.type != "cpu":
            # One stack and one copy to the host instead of a sync per value.
            return [float(v) for v in torch.stack(norms).tolist()]
        return [float(t.item()) for t in norms]


def _numpy_ready(params: list[nn.Parameter]) -> bool:
    """Whether :class:`_NumpySampler` can take numpy views of every parameter."""
    return all(p.device.type == "cpu" and p.dtype in (torch.float32, torch.float64)
               and p.is_contiguous() and not p.is_sparse for p in params)


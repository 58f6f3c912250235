"""Activations a model calls as functions (``F.relu``, ``torch.relu``, ``x.relu()``,
``F.gelu``, ``F.silu``, ``F.leaky_relu``, ``torch.tanh``, ``torch.sigmoid``...), seen on the
sampled steps of :class:`~pytest_losstrend.capture.torch_watch.TorchWatcher` (imported only by
``torch_watch``, itself imported only by ``watch``).

Module activations (``nn.ReLU``) are seen by forward hooks; a function call has no module to
hook. :class:`ActivationProbe` observes one training forward of the watched model at a time:
the watcher arms it at a sampled optimizer step, and the next forward of the model (in training
mode, with gradients on) runs under a :class:`torch.overrides.TorchFunctionMode` and two global
module hooks, all removed when that forward returns or raises. Nothing is patched and no hook
stays between those forwards, so an unsampled step costs nothing.

Why a ``TorchFunctionMode`` and not wrapping ``torch.nn.functional.relu`` and its kin: the mode
also sees ``x.relu()``, ``from torch.nn.functional import relu`` and ``F.sigmoid`` (which calls
``x.sigmoid()``), is thread-local (another thread's model is never seen), and leaves no global
attribute to restore. It costs a Python call for every torch function of that one forward
(``benchmarks/bench_watch.py``, "functional activations"); after a first observed forward with
no functional activation at all, the probe stops arming, so a model without any pays for one
forward.

Each call is named after the layer it follows: the module whose output is the activation's
input (``fc1`` in ``F.relu(self.fc1(x))``), else the module that finished last, else the module
whose forward called it; then ``via`` and the function: ``"fc1 via F.relu"``. A unit (an output
element of a row, as for module activations) of a ReLU-like function is dead when it is never
positive; a ``tanh`` output is saturated when ``|y| >= SATURATED_TANH``, a sigmoid output
when it is within ``SATURATED_SIGMOID`` of 0 or 1, and a layer's saturation is the fraction of
its outputs that are (a saturated unit still crosses zero on the odd row, so "on every row"
would miss a layer pinned at +-1). Both are judged over the last :data:`WINDOW` observed
forwards, so a layer that dies during training is seen dead at the end.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

#: Observed forwards over which a unit must never be active to count as dead or saturated.
WINDOW = 8
#: A tanh unit with ``|y|`` at least this on every row passes at most 2% of the gradient
#: (``1 - y**2 <= 0.02``): saturated.
SATURATED_TANH = 0.99
#: A sigmoid unit within this of 0 or 1 on every row passes at most 4% of its largest
#: gradient (``y (1 - y) <= 0.0099`` against 0.25): saturated.
SATURATED_SIGMOID = 0.01

#: Module activations the watcher's dead-unit pass already measures (``RELU_LIKE``) are not
#: counted again when their ``forward`` calls ``F.relu``; other activation modules (``nn.Tanh``,
#: ``nn.Sigmoid``) are counted under the module's own name.
_MODULE_SEEN_ELSEWHERE: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Hardswish, nn.Threshold,
)
_ACTIVATION_MODULES: tuple[type[nn.Module], ...] = (nn.Tanh, nn.Sigmoid, nn.Hardtanh,
                                                    nn.Softsign, nn.Hardsigmoid)


def _functions() -> dict[Any, tuple[str, str]]:
    """Each activation function torch hands a function mode, with its display name and kind
    (``"dead"``: ReLU-like, ``"tanh"`` or ``"sigmoid"``: saturating)."""
    F = nn.functional
    t = torch.Tensor
    table: list[tuple[Any, str, str]] = [
        (F.relu, "F.relu", "dead"), (F.relu_, "F.relu_", "dead"),
        (torch.relu, "torch.relu", "dead"), (torch.relu_, "torch.relu_", "dead"),
        (t.relu, ".relu()", "dead"), (t.relu_, ".relu_()", "dead"),
        (F.relu6, "F.relu6", "dead"), (F.leaky_relu, "F.leaky_relu", "dead"),
        (F.leaky_relu_, "F.leaky_relu_", "dead"), (F.elu, "F.elu", "dead"),
        (F.selu, "F.selu", "dead"), (F.celu, "F.celu", "dead"), (F.gelu, "F.gelu", "dead"),
        (F.silu, "F.silu", "dead"), (F.mish, "F.mish", "dead"),
        (F.hardswish, "F.hardswish", "dead"),
        (torch.tanh, "torch.tanh", "tanh"), (t.tanh, ".tanh()", "tanh"),
        (F.tanh, "F.tanh", "tanh"), (F.hardtanh, "F.hardtanh", "tanh"),
        (torch.sigmoid, "torch.sigmoid", "sigmoid"), (t.sigmoid, ".sigmoid()", "sigmoid"),
        (F.hardsigmoid, "F.hardsigmoid", "sigmoid"),
    ]
    return {f: (name, kind) for f, name, kind in table}


def _units(out: Any) -> torch.Tensor | None:
    """The output as ``(rows, units)``, or None for anything that is not a float batch."""
    if not isinstance(out, torch.Tensor) or out.ndim < 1 or not out.is_floating_point():
        return None
    flat = out.detach().reshape(out.shape[0], -1)
    return flat if flat.shape[0] and flat.shape[1] else None


def _reading(flat: torch.Tensor, kind: str) -> torch.Tensor:
    """What one call says: per unit, whether it was positive on some row of the batch
    (ReLU-like); the fraction of its outputs that are saturated (tanh, sigmoid)."""
    if kind == "dead":
        return (flat > 0).any(0)
    if kind == "tanh":
        return (flat.abs() >= SATURATED_TANH).float().mean()
    return ((flat <= SATURATED_SIGMOID) | (flat >= 1 - SATURATED_SIGMOID)).float().mean()


class _Mode(TorchFunctionMode):
    """Passes every torch function through, handing the activations to the probe."""

    def __init__(self, probe: ActivationProbe) -> None:
        super().__init__()
        self.probe = probe

    def __torch_function__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        hit = self.probe.functions.get(func)
        if hit is not None:
            # The user's forward must never fail because of the watcher.
            try:
                self.probe.see(hit, args, out)
            except Exception:
                self.probe.broken = True
        return out


class ActivationProbe:
    """Observes the functional activations of one training forward of ``model`` each time it
    is armed (see the module's docstring).

    Example:
        >>> probe = ActivationProbe(model)
        >>> probe.arm()           # at a sampled step: the next training forward is observed
        >>> probe.close(); probe.dead(), probe.saturated()
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.functions = _functions()
        #: Forwards observed so far.
        self.forwards = 0
        #: Set when observing failed (an exotic output): the probe stops arming.
        self.broken = False
        self._off = False  # no functional activation in the first observed forward
        self._names: dict[int, str] | None = None
        self._root_handles: list[RemovableHandle] = []
        self._hooks: list[RemovableHandle] = []
        self._mode: _Mode | None = None
        self._thread = 0
        self._stack: list[nn.Module] = []
        self._last: str | None = None
        self._outputs: dict[int, tuple[torch.Tensor, str]] = {}
        self._calls: dict[str, int] = {}
        self._seen_now = 0
        # key -> (kind, per observed forward: each unit active or not; the fraction saturated)
        self._masks: dict[str, tuple[str, deque[torch.Tensor]]] = {}

    @property
    def armed(self) -> bool:
        """Whether the next training forward of the model will be observed."""
        return bool(self._root_handles)

    def arm(self) -> None:
        """Observe the model's next training forward (no-op when armed, off or broken)."""
        if self._root_handles or self._off or self.broken:
            return
        self._root_handles = [
            self.model.register_forward_pre_hook(self._enter),
            self.model.register_forward_hook(self._exit, always_call=True),
        ]

    def close(self) -> None:
        """Stop observing and remove every hook (idempotent; also mid-forward)."""
        self._leave()
        for h in self._root_handles:
            h.remove()
        self._root_handles = []

    # -- one observed forward ---------------------------------------------------------------

    def _enter(self, module: nn.Module, args: Any) -> None:
        if self._mode is not None or not (module.training and torch.is_grad_enabled()):
            return  # an evaluation pass, or a forward nested in the observed one
        if self._names is None:
            self._names = {id(m): n for n, m in self.model.named_modules()}
        self._thread = threading.get_ident()
        self._stack, self._last, self._outputs, self._calls = [], None, {}, {}
        self._seen_now = 0
        glob = nn.modules.module
        self._hooks = [glob.register_module_forward_pre_hook(self._push),
                       glob.register_module_forward_hook(self._pop, always_call=True)]
        mode = _Mode(self)
        mode.__enter__()  # type: ignore[no-untyped-call]
        self._mode = mode

    def _exit(self, module: nn.Module, args: Any, output: Any) -> None:
        if self._mode is None:
            return
        self._leave()
        self.forwards += 1
        if self.forwards == 1 and not self._seen_now:
            self._off = True  # no functional activations: never pay for the mode again
        for h in self._root_handles:
            h.remove()
        self._root_handles = []

    def _leave(self) -> None:
        mode, self._mode = self._mode, None
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self._stack, self._outputs = [], {}
        if mode is not None:
            mode.__exit__(None, None, None)  # type: ignore[no-untyped-call]

    def _push(self, module: nn.Module, args: Any) -> None:
        if threading.get_ident() == self._thread:
            self._stack.append(module)

    def _pop(self, module: nn.Module, args: Any, output: Any) -> None:
        if threading.get_ident() != self._thread or not self._stack:
            return
        self._stack.pop()
        names = self._names or {}
        name = names.get(id(module))
        if name:
            self._last = name
            if isinstance(output, torch.Tensor):
                self._outputs[id(output)] = (output, name)

    # -- one activation call ----------------------------------------------------------------

    def see(self, hit: tuple[str, str], args: Any, out: Any) -> None:
        """Record which units of one activation call were active."""
        fname, kind = hit
        owner = self._stack[-1] if self._stack else None
        names = self._names or {}
        if owner is not None and isinstance(owner, _MODULE_SEEN_ELSEWHERE):
            return
        if owner is not None and isinstance(owner, _ACTIVATION_MODULES):
            key = names.get(id(owner)) or type(owner).__name__
        else:
            x = args[0] if args else None
            produced = self._outputs.get(id(x)) if isinstance(x, torch.Tensor) else None
            layer = (produced[1] if produced is not None and produced[0] is x
                     else self._last or (names.get(id(owner)) if owner is not None else None)
                     or type(self.model).__name__)
            key = f"{layer} via {fname}"
        n = self._calls.get(key, 0) + 1
        self._calls[key] = n
        if n > 1:
            key = f"{key} [{n}]"  # the same layer and function twice in one forward
        flat = _units(out)
        if flat is None:
            return
        self._seen_now += 1
        reading = _reading(flat, kind)
        entry = self._masks.get(key)
        if entry is None or entry[1][0].shape != reading.shape:
            entry = self._masks[key] = (kind, deque(maxlen=WINDOW))
        entry[1].append(reading)

    # -- the results ----------------------------------------------------------------------

    def _fractions(self, dead: bool) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, (kind, masks) in self._masks.items():
            if (kind == "dead") != dead or not masks:
                continue
            stacked = torch.stack(list(masks))
            out[key] = (1.0 - float(stacked.any(0).float().mean())) if dead else float(
                stacked.mean())
        return out

    def dead(self) -> dict[str, float]:
        """Per ReLU-like activation call, the fraction of its units never positive over the
        last :data:`WINDOW` observed forwards."""
        return self._fractions(True)

    def saturated(self) -> dict[str, float]:
        """Per tanh or sigmoid activation, the fraction of its outputs (every unit of every row)
        saturated over the last :data:`WINDOW` observed forwards."""
        return self._fractions(False)

    @property
    def window(self) -> int:
        """How many observed forwards the fractions are over (at most :data:`WINDOW`; 0 when
        no functional activation was seen)."""
        return min(self.forwards, WINDOW) if self._masks else 0

"""Automatic capture for torch: the scalar each ``backward()`` runs on, grouped per optimizer
step, and every optimizer that steps watched (imported only when torch already is).

:func:`install` patches ``torch.Tensor.backward`` and ``torch.autograd.backward`` (the first
calls the second: a thread-local depth counts one backward once, and a backward run inside
another, from a hook, is not a loss), wraps ``torch.amp.GradScaler.scale`` to remember which
output it scaled from which loss, and adds a global optimizer post-step hook and, until the
first backward, a global forward pre-hook that notes which modules run. It returns the undo.

- **The loss.** Each backward's scalar is detached (a CPU value is read with ``item()``, which
  costs no device sync; an accelerator's stays a tensor, and the recorder copies such values in
  chunks). Values wait until an optimizer steps: ``k`` backward calls per step (gradient
  accumulation) are recorded as their mean. A loop where no optimizer has stepped after
  :data:`MANUAL_AFTER` backward calls (a manual SGD loop), or by the end, is recorded one point
  per backward. A loss a ``GradScaler`` scaled is recorded unscaled.
- **The watch.** At the first backward, the modules that ran so far and hold trainable
  parameters, and are not inside another such module (the models), are watched through
  :meth:`Recorder.watch <pytest_losstrend.capture.recorder.Recorder.watch>`: each watcher
  adopts the first optimizer that steps its parameters. An optimizer whose parameters no
  watched model holds is watched through a stand-in module holding them (gradients, updates
  and learning rate; no inputs or dead units).

Per step this costs, beyond the watcher's own sampling: the wrapper's call, one ``item()``
and one optimizer hook call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from pytest_losstrend.capture.recorder import LossTrendStop

if TYPE_CHECKING:
    from pytest_losstrend.capture.recorder import Recorder

#: Backward calls with no optimizer step after which the loop is taken to be a manual one and
#: each backward is recorded as a point at once (so a diverging manual loop stops early).
MANUAL_AFTER = 64

_local = threading.local()


class TorchCapture:
    """The state of one test's torch capture (see the module's docstring).

    Example:
        >>> capture = TorchCapture(staging)
        >>> undo = capture.install()
        >>> train(); undo()
    """

    def __init__(self, recorder: Recorder, *, owner: Recorder | None = None,
                 watch: bool = True) -> None:
        self.recorder = recorder
        self.owner = owner
        self.active = False
        self._lock = threading.Lock()
        self._pending: list[Any] = []
        self._steps = 0
        self._manual = False
        # id(scaled output) -> (the scaled output, the loss it was scaled from, detached)
        self._scaled: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._seen: dict[int, nn.Module] = {}
        self._seen_handle: Any = None
        # watch=False: the loss alone (no forward hook, no watcher).
        self._watched = not watch
        self._optimizers: set[int] = set()
        self._holders: list[nn.Module] = []
        self._watched_off = not watch

    # -- install / undo ---------------------------------------------------------------------

    def install(self) -> Callable[[], None]:
        """Patch and hook; returns the undo (idempotent), which also records what is pending.

        Example:
            >>> undo = TorchCapture(staging).install()
        """
        cap = self
        orig_tensor_backward: Callable[..., Any] = torch.Tensor.backward
        orig_autograd_backward = torch.autograd.backward
        scaler_cls: Any = getattr(getattr(torch, "amp", None), "GradScaler", None)
        orig_scale = scaler_cls.__dict__.get("scale") if scaler_cls is not None else None

        def tensor_backward(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            depth = getattr(_local, "depth", 0)
            if depth == 0 and cap.active:
                cap.see(self)
            _local.depth = depth + 1
            try:
                return orig_tensor_backward(self, *args, **kwargs)
            finally:
                _local.depth = depth

        def autograd_backward(tensors: Any, *args: Any, **kwargs: Any) -> Any:
            depth = getattr(_local, "depth", 0)
            if depth == 0 and cap.active:
                if isinstance(tensors, torch.Tensor):
                    cap.see(tensors)
                elif isinstance(tensors, (tuple, list)) and len(tensors) == 1:
                    cap.see(tensors[0])
            _local.depth = depth + 1
            try:
                return orig_autograd_backward(tensors, *args, **kwargs)
            finally:
                _local.depth = depth

        def scale(self: Any, outputs: Any) -> Any:
            out = orig_scale(self, outputs)  # type: ignore[misc]
            if (cap.active and isinstance(outputs, torch.Tensor) and isinstance(out, torch.Tensor)
                    and out is not outputs and outputs.numel() == 1):
                cap._scaled[id(out)] = (out, outputs.detach())
            return out

        tensor_backward.__wrapped__ = orig_tensor_backward  # type: ignore[attr-defined]
        autograd_backward.__wrapped__ = orig_autograd_backward  # type: ignore[attr-defined]
        torch.Tensor.backward = tensor_backward  # type: ignore[method-assign]
        torch.autograd.backward = autograd_backward
        if orig_scale is not None:
            scaler_cls.scale = scale
        post = register_optimizer_step_post_hook(self._post_step)
        if not self._watched:
            self._seen_handle = nn.modules.module.register_module_forward_pre_hook(
                self._see_module)
        self.active = True
        if self.recorder.framework is None:
            self.recorder.framework = "torch"

        def undo() -> None:
            if not self.active:
                return
            self.active = False
            try:
                # Restored only where ours is still in place: a patch someone put on top of
                # ours stays theirs (ours then passes through, inactive).
                if torch.Tensor.backward is tensor_backward:
                    torch.Tensor.backward = orig_tensor_backward  # type: ignore[method-assign]
                if torch.autograd.backward is autograd_backward:
                    torch.autograd.backward = orig_autograd_backward
                if orig_scale is not None and scaler_cls.__dict__.get("scale") is scale:
                    scaler_cls.scale = orig_scale
            finally:
                post.remove()
                self._unsee()
                self._scaled.clear()
                self._holders = []
                self._flush_at_end()

        return undo

    # -- the loss ---------------------------------------------------------------------------

    def see(self, t: Any) -> None:
        """One backward on ``t``: keep its value (unscaled) until the optimizer steps."""
        if not isinstance(t, torch.Tensor) or t.numel() != 1:
            return
        src = t
        if self._scaled:
            hit = self._scaled.pop(id(t), None)
            if hit is not None and hit[0] is t:
                src = hit[1]
        if not self._watched:
            self._watch_models()
        # item() reads a CPU value without a copy of the graph (no detach needed); an
        # accelerator's value stays on its device, detached, until the recorder's chunk.
        v: Any = src.item() if src.is_cpu else src.detach().reshape(())
        if self._manual:
            self._record(v)
            return
        with self._lock:
            self._pending.append(v)
            if self._steps or len(self._pending) < MANUAL_AFTER:
                return
            self._manual = True
            pending, self._pending = self._pending, []
        for x in pending:
            self._record(x)

    def _post_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        with self._lock:
            self._steps += 1
            self._manual = False
            pending, self._pending = self._pending, []
        if id(opt) not in self._optimizers and not self._watched_off:
            self._optimizers.add(id(opt))
            self._watch_optimizer(opt)
        if self._scaled:
            self._scaled.clear()
        if pending:
            self._record(_mean(pending))

    def _record(self, v: Any) -> None:
        try:
            self.recorder.record(v)
        except LossTrendStop:
            owner = self.owner
            if owner is not None and owner.series_names:
                # The test records itself: its own series decide, not the captured one.
                self.recorder.fail_fast = False
                return
            raise

    def _flush_at_end(self) -> None:
        # A stop now would only repeat what the verdict says; it must not escape the undo.
        self.recorder.fail_fast = False
        pending, self._pending = self._pending, []
        if self._steps == 0:
            for x in pending:
                self._record(x)
        # Backward calls after the last optimizer step are not a step's loss: dropped.

    # -- the watch ----------------------------------------------------------------------------

    def _see_module(self, module: nn.Module, args: Any) -> None:
        self._seen.setdefault(id(module), module)

    def _unsee(self) -> None:
        if self._seen_handle is not None:
            self._seen_handle.remove()
            self._seen_handle = None
        self._seen = {}

    def _watch_models(self) -> None:
        """Watch the models that ran before the first backward (never fails the test)."""
        self._watched = True
        seen = list(self._seen.values())
        self._unsee()
        inner: set[int] = set()
        for m in seen:
            for sub in m.modules():
                if sub is not m:
                    inner.add(id(sub))
        mine = {id(w.model) for w in self._all_watchers()}
        for m in seen:
            if id(m) in inner or id(m) in mine:
                continue
            if not any(p.requires_grad for p in m.parameters()):
                continue
            try:
                self.recorder.watch(m)
            except Exception:  # a model the watcher cannot take: the loss is still recorded
                continue

    def _watch_optimizer(self, opt: torch.optim.Optimizer) -> None:
        """Watch an optimizer whose parameters no watched model holds."""
        params = [p for g in opt.param_groups for p in g["params"]]
        held: set[int] = set()
        for w in self._all_watchers():
            held.update(id(p) for p in getattr(w, "_params", ()))
        if not params or any(id(p) in held for p in params):
            return
        if not all(isinstance(p, nn.Parameter) for p in params):
            return
        holder = nn.Module()
        for i, p in enumerate(params):
            holder.register_parameter(f"param{i}", p)
        self._holders.append(holder)
        try:
            self.recorder.watch(holder, opt)
        except Exception:
            return

    def _all_watchers(self) -> list[Any]:
        out = list(self.recorder.watchers)
        if self.owner is not None:
            out.extend(self.owner.watchers)
        return out


def _mean(values: list[Any]) -> Any:
    if len(values) == 1:
        return values[0]
    if all(type(v) is float for v in values):
        return sum(values) / len(values)
    return torch.stack([torch.as_tensor(v, dtype=torch.float32).reshape(())
                        for v in values]).mean()


def install(recorder: Recorder, *, owner: Recorder | None = None) -> Callable[[], None]:
    """Capture torch training into ``recorder`` until the returned undo is called.

    Example:
        >>> undo = install(staging)
        >>> try:
        ...     train()
        ... finally:
        ...     undo()
    """
    return TorchCapture(recorder, owner=owner).install()

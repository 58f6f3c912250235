"""Automatic capture for torch: the scalar each ``backward()`` runs on, grouped per optimizer
step, every optimizer that steps watched, and the reference level of a built-in loss
(imported only when torch already is).

:func:`install` patches ``torch.Tensor.backward`` and ``torch.autograd.backward`` (the first
no longer goes through the second, so one backward is seen once; a backward run inside another,
from a hook, is not a loss: torch's current graph task tells), wraps
``torch.amp.GradScaler.scale`` to remember which output it scaled from which loss, and adds a
global optimizer post-step hook and, until the first backward, a global forward pre-hook that
notes which modules run. It returns the undo.

- **The loss.** Each backward's scalar is read without autograd (a CPU value with one
  ``item()``, which costs no device sync; an accelerator's stays a tensor, and the recorder
  copies such values in chunks). Values wait until an optimizer steps: ``k`` backward calls per
  step (gradient accumulation) are recorded as their mean, and the steps' values reach the
  recorder :data:`RECORD_EVERY` at a time (a divergence stops the run that many steps late at
  most). The first optimizer to step after backward calls makes the ``"train"`` series; any
  other with backward calls of its own gets ``"train_2"``, ``"train_3"``... (never interleaved
  into one curve). A loop where no optimizer has stepped after :data:`MANUAL_AFTER` backward
  calls (a manual SGD loop), or by the end, is recorded one point per backward. A loss a
  ``GradScaler`` scaled is recorded unscaled. Once the loop is in its steady state (an
  optimizer has stepped, the models and the reference are found, no scaled loss or armed probe
  waits) a backward costs one check, one read and one append, inlined in the wrapper, and an
  optimizer step one hook call.
- **The watch.** At the first backward, the modules that ran so far and hold trainable
  parameters, and are not inside another such module (the models), are watched by a
  :class:`~pytest_losstrend.capture.torch_watch.TorchWatcher` this capture drives
  (``probe_at_backward``): each adopts the first optimizer that steps its parameters. An
  optimizer whose parameters no watched model holds is watched through a stand-in module
  holding them (gradients, updates and learning rate; no inputs or dead units). Driving means:
  the watcher's stale-gradient probes, armed at a sampled step, are checked here before the next
  backward pass runs (on the parameters it reaches, found in the autograd graph, when more than
  one optimizer steps), never by parameter hooks, which cost a Python call in every backward
  pass even once removed; a sampled step's update is taken at its end; and the only watcher of
  the only optimizer has its step hook removed ("parked") until its next sample.
- **Stale gradients in a manual loop.** While no optimizer has stepped, sampled backward calls
  (the 3rd and 4th, then every :data:`STALE_EVERY`-th, thinning out on long loops) check the
  gradients themselves (:class:`_ManualStaleProbe`): the backward call before a sampled one
  keeps a few elements of each leaf parameter the loss reaches (found once in the autograd
  graph); at the sampled one, before its backward runs, a parameter whose values changed since
  (an update happened in between) must find its ``.grad`` cleared (None or zeros: ``p.grad =
  None``, ``p.grad.zero_()``, ``model.zero_grad()``). A carried-over gradient is counted for
  ``stale_gradients``; a parameter that did not change (accumulation, frozen) is not checked.
  An optimizer loop never reaches it past its first backward call.
- **The reference level.** The first backward scalars are looked up in the autograd graph
  (:mod:`~pytest_losstrend.capture.torch_loss_graph`): when each is one built-in loss of one
  kind and settings (its mean, or its sum divided by the count of its targets; factors of
  exactly 1 looked through), their targets give the series its reference level; anything else
  gives none.

Per step this costs, beyond the watcher's sampled steps: the wrapper's call, one read, one
optimizer hook call. Reading the value is a third of it; keeping the tensors to read them
later in chunks costs more on the CPU (every step's graph then outlives its step).
benchmarks/README.md has the figures ("Automatic capture: cost").
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from pytest_losstrend.capture.recorder import LossTrendStop
from pytest_losstrend.capture.torch_loss_graph import ReferenceProbe
from pytest_losstrend.capture.torch_sampling import elements, nonzero, same_elements
from pytest_losstrend.capture.torch_watch import TorchWatcher
from pytest_losstrend.diagnosis.evidence import Evidence

if TYPE_CHECKING:
    from pytest_losstrend.capture.recorder import Recorder

#: Backward calls with no optimizer step after which the loop is taken to be a manual one and
#: each backward is recorded as a point (so a diverging manual loop stops early).
MANUAL_AFTER = 64
#: In a loop with no optimizer, backward calls 2 and 3 are checked for stale gradients, then
#: every this-many-th (each check also reads the parameters at the call before it)...
STALE_EVERY = 7
#: ...the interval growing to 15, 31... after every this many checks, so a long loop costs
#: no more.
STALE_THIN_AFTER = 16
#: Leaf parameters checked (spread evenly over those the loss reaches)...
STALE_PARAMS = 8
#: ...and elements of each parameter compared to tell that it was updated.
STALE_ELEMENTS = 64
#: Autograd nodes visited, at most, to find the leaf parameters.
GRAPH_NODES = 20000
#: Optimizer steps whose losses are handed to the recorder together: one call per step costs
#: about 2% of a tiny step; a run that diverges is stopped this many steps late at most.
RECORD_EVERY = 16

_has_torch_function_unary: Callable[[Any], bool] = torch._C._has_torch_function_unary
#: -1 outside a backward pass, on this thread; a backward run from a hook sees its outer one.
_graph_task_id: Callable[[], int] = getattr(torch._C, "_current_graph_task_id", lambda: -1)


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
        # the values of the backward calls since the last optimizer step (no lock: a
        # backward in another thread racing an optimizer step joins the step before or after)
        self._pending: list[Any] = []
        # the steps' losses not yet handed to the recorder (see RECORD_EVERY); all Python
        # floats until an accelerator's loss is seen
        self._done: list[Any] = []
        self._floats = True
        # False until the steady state: no optimizer step yet, a scaled loss waiting, the
        # reference or the models still to find, a watcher's gradient probe armed (see
        # _update_fast)
        self._fast = False
        self._stepped = False
        self._last_opt: Any = None
        # The optimizer whose steps make the "train" series (the first to step after backward
        # calls), and the series of any other such optimizer ("train_2", "train_3"...).
        self._train_opt: Any = None
        self._series_of: dict[int, str] = {}
        self._manual = False
        # id(scaled output) -> (the scaled output, the loss it was scaled from)
        self._scaled: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._seen: dict[int, nn.Module] = {}
        self._seen_handle: Any = None
        # watch=False: the loss alone (no forward hook, no watcher).
        self._watched = not watch
        self._optimizers: set[int] = set()
        self._holders: list[nn.Module] = []
        self._watched_off = not watch
        self._ref = ReferenceProbe()
        self._stale = _ManualStaleProbe()
        # The watchers this capture made: their stale-gradient probes are checked here, at the
        # backward call after a sampled step, not by tensor hooks (a parameter that ever had a
        # hook costs a Python call in every backward pass, even once the hook is removed).
        self._probed: list[TorchWatcher] = []
        self._probing = False
        # a watcher sampled the step now running: end_of_step() at its end
        self._sampled_now = False
        # A watcher parked (its step hook removed) until this many more optimizer steps have
        # ended; only with one watcher and one optimizer (see _end_samples).
        self._parked: TorchWatcher | None = None
        self._park_steps = 0
        self._wake_in = 0

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
        task_id = _graph_task_id
        has_torch_function = _has_torch_function_unary

        def tensor_backward(self: torch.Tensor, gradient: Any = None, retain_graph: Any = None,
                            create_graph: bool = False, inputs: Any = None) -> Any:
            if has_torch_function(self):
                # A tensor subclass: torch's own method, which comes back here or goes to
                # torch.autograd.backward; seen there, once.
                return orig_tensor_backward(self, gradient, retain_graph, create_graph, inputs)
            if cap.active and task_id() < 0:
                if cap._fast and self.is_cpu:
                    # The steady state, inlined: one read, no copy of the graph. ``.data``
                    # (no autograd, so torch does not warn about reading a tensor that
                    # requires grad) is one dispatcher call cheaper than ``detach()``.
                    try:  # noqa: SIM105 (a with-statement costs more on this path)
                        cap._pending.append(self.data.item())
                    except RuntimeError:  # not one element: a gradient given, not a loss
                        pass
                else:
                    cap.see(self)
            # What torch's Tensor.backward does, without going through our autograd wrapper.
            return orig_autograd_backward(self, gradient, retain_graph, create_graph,
                                          inputs=inputs)

        def autograd_backward(tensors: Any, *args: Any, **kwargs: Any) -> Any:
            if cap.active and task_id() < 0:
                if isinstance(tensors, (tuple, list)) and len(tensors) == 1:
                    tensors = tensors[0]
                if isinstance(tensors, torch.Tensor):
                    cap.see(tensors)
            return orig_autograd_backward(tensors, *args, **kwargs)

        def scale(self: Any, outputs: Any) -> Any:
            out = orig_scale(self, outputs)  # type: ignore[misc]
            if (cap.active and isinstance(outputs, torch.Tensor) and isinstance(out, torch.Tensor)
                    and out is not outputs and outputs.numel() == 1):
                cap._scaled[id(out)] = (out, outputs)
                cap._fast = False
            return out

        functools.update_wrapper(tensor_backward, orig_tensor_backward)
        functools.update_wrapper(autograd_backward, orig_autograd_backward)
        # Ours, not torch's: a test can tell a patched method from the original by its module.
        tensor_backward.__module__ = autograd_backward.__module__ = __name__
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
                self._unpark()
                self._unsee()
                self._scaled.clear()
                self._holders = []
                try:
                    self._flush_at_end()
                finally:
                    try:
                        self._ref.offer(self.recorder)
                    finally:
                        if not self._stepped:
                            self._stale.offer(self.recorder, self.owner)

        return undo

    # -- the loss ---------------------------------------------------------------------------

    def see(self, t: torch.Tensor) -> None:
        """One backward on ``t``: keep its value (unscaled) until the optimizer steps."""
        if self._fast and t.is_cpu:
            try:  # noqa: SIM105 (a with-statement costs more on this path)
                self._pending.append(t.data.item())
            except RuntimeError:  # not one element: a gradient given, not a loss
                pass
            return
        self._see_slow(t)

    def _see_slow(self, t: torch.Tensor) -> None:
        """:meth:`see` for the first steps, a scaled loss, a device tensor, no optimizer yet."""
        if t.numel() != 1:
            return
        src = t
        if self._scaled:
            hit = self._scaled.pop(id(t), None)
            if hit is not None and hit[0] is t:
                src = hit[1]
        if self._ref.left:
            self._ref.look(src)
        if not self._watched:
            self._watch_models()
        if self._probing:
            self._probe(src)
            self._probing = any(w.probes_armed for w in self._probed)
        if not self._stepped:
            self._stale.see(src, self._all_watchers)
        # A CPU value is read at once; an accelerator's stays on its device, detached, until
        # the recorder's chunk (no sync per step).
        v: Any = src.detach().reshape(())
        if v.is_cpu:
            v = v.item()
        else:
            self._floats = False
        self._update_fast()
        if self._manual:
            self._record(v)
            return
        self._pending.append(v)
        if self._stepped or len(self._pending) < MANUAL_AFTER:
            return
        self._manual = True
        pending, self._pending = self._pending, []
        for x in pending:
            self._record(x)

    def _update_fast(self) -> None:
        self._fast = bool(self._stepped and not self._scaled and not self._ref.left
                          and self._watched and not self._probing)

    def _post_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        pending = self._pending
        self._pending = []
        if not self._fast or opt is not self._train_opt:
            pending = self._post_step_slow(opt, pending)
        elif self._wake_in:
            self._wake_in -= 1
            if not self._wake_in:
                self._unpark()
        if pending:
            done = self._done
            done.append(pending[0] if len(pending) == 1 else _mean(pending))
            if len(done) >= RECORD_EVERY:
                self._record_done()

    def _post_step_slow(self, opt: torch.optim.Optimizer, pending: list[Any]) -> list[Any]:
        """The step's end off the fast path; returns the values still to record as the
        ``"train"`` step (none when they belong to another optimizer's series)."""
        self._stepped = True
        self._manual = False
        if self._wake_in:
            if opt is not self._last_opt:
                self._unpark()  # another optimizer steps: parking is for one alone
            else:
                self._wake_in -= 1
                if not self._wake_in:
                    self._unpark()
        self._last_opt = opt
        sampled = self._sampled_now
        if sampled:
            self._sampled_now = False
            self._end_samples()
        if not sampled and self._probing:
            # A probe no backward reached since its step (an unused parameter) would keep
            # every later backward on the slow path: dropped, as if unchecked.
            for w in self._probed:
                w.drop_probes()
        if self._scaled:
            self._scaled.clear()
        if id(opt) not in self._optimizers:
            self._optimizers.add(id(opt))
            if not self._watched_off:
                self._watch_optimizer(opt)
        self._probing = any(w.probes_armed for w in self._probed)
        self._update_fast()
        if not pending or opt is self._train_opt:
            return pending
        if self._train_opt is None:
            self._train_opt = opt
            return pending
        # Another optimizer with backward calls of its own (a GAN's generator, a second model
        # trained in the same test): its losses are not steps of the "train" curve.
        name = self._series_of.get(id(opt))
        if name is None:
            name = self._series_of[id(opt)] = f"train_{len(self._series_of) + 2}"
        self._record(pending[0] if len(pending) == 1 else _mean(pending), series=name)
        return []

    def _record_done(self) -> None:
        done, self._done = self._done, []
        if not self._floats:
            for v in done:
                self._record(v)
            return
        try:
            self.recorder.record_floats(done)
        except LossTrendStop:
            if not self._owner_decides():
                raise

    def _record(self, v: Any, series: str = "train") -> None:
        try:
            self.recorder.record(v, series=series)
        except LossTrendStop:
            if not self._owner_decides():
                raise

    def _owner_decides(self) -> bool:
        """After a recorded loss stopped the run (fail-fast): True, and no more stops, when
        the test records itself (its own series decide, not the captured one); False when
        the stop goes on to the test."""
        owner = self.owner
        if owner is not None and owner.series_names:
            self.recorder.fail_fast = False
            return True
        return False

    def _flush_at_end(self) -> None:
        # A stop now would only repeat what the verdict says; it must not escape the undo.
        self.recorder.fail_fast = False
        self._record_done()
        pending, self._pending = self._pending, []
        if not self._stepped:
            for x in pending:
                self._record(x)
        # Backward calls after the last optimizer step are not a step's loss: dropped.

    # -- the watch ----------------------------------------------------------------------------

    def _sampled(self) -> None:
        """A watcher sampled the step now running (its pre-hook): off the fast path, so that
        the step's end calls :meth:`_end_samples` and the next backward checks the probes."""
        self._fast = False
        self._sampled_now = True

    def _end_samples(self) -> None:
        """Each watcher takes its sampled step's update; the only watcher of the only
        optimizer is parked until its next sample."""
        idle = [w.end_of_step() for w in self._probed]
        if (len(idle) == 1 and idle[0] and len(self._optimizers) == 1 and not self._wake_in
                and self._probed[0].optimizer is self._last_opt):
            w = self._probed[0]
            w.park()
            self._parked = w
            self._park_steps = self._wake_in = idle[0]

    def _unpark(self) -> None:
        w, self._parked = self._parked, None
        left, self._wake_in = self._wake_in, 0
        if w is not None:
            # The steps it missed: all of them when due, fewer when woken early.
            w.unpark(self._park_steps - left)

    def _probe(self, t: torch.Tensor) -> None:
        wanted: set[int] = set()
        for w in self._probed:
            wanted |= w.armed_ids()
        if not wanted:
            return
        if len(self._optimizers) == 1:
            # One optimizer clears all the probed gradients at once (its zero_grad), so the
            # first backward after its step can check them all. With several, another model's
            # backward may come before this model's zero_grad: only what it reaches is checked.
            reached = wanted
        else:
            try:
                reached = _reached_leaves(t, wanted)
            except (RuntimeError, TypeError, ValueError):  # a graph we cannot read: unchecked
                return
        for w in self._probed:
            w.probe_backward(reached)

    def _watcher(self, model: nn.Module, opt: torch.optim.Optimizer | None = None) -> None:
        """Watch ``model`` (with ``opt``) through a watcher whose probes this capture checks;
        a model the watcher cannot take is left alone (the loss is still recorded)."""
        try:
            w = TorchWatcher(model, opt, probe_at_backward=True)
        except Exception:
            return
        w.on_sampled = self._sampled
        self._probed.append(w)
        self.recorder.add_watcher(w)

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
            self._watcher(m)

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
        self._watcher(holder, opt)

    def _all_watchers(self) -> list[Any]:
        out = list(self.recorder.watchers)
        if self.owner is not None:
            out.extend(self.owner.watchers)
        return out


class _ManualStaleProbe:
    """Whether a loop with no optimizer clears its gradients after each update (see the
    module's docstring): counts kept until the undo offers them as evidence."""

    def __init__(self) -> None:
        self.calls = 0
        self.checks = 0
        self.stale = 0
        self.stale_grads: dict[str, int] = {}
        self._next = 2
        self._sparse = 0
        self._leaves: list[tuple[str, torch.Tensor]] | None = None
        # the sampled values of each leaf at the backward call before a checked one
        self._saved: list[np.ndarray[Any, Any] | torch.Tensor | None] | None = None

    def see(self, t: torch.Tensor, watchers: Callable[[], list[Any]]) -> None:
        """One backward call on ``t``, before its backward pass runs (``watchers``: the
        watchers whose names the parameters take, asked for once)."""
        i = self.calls
        self.calls = i + 1
        try:
            if i == self._next:
                self._next = i + self._interval(i)
                self._check()
            if i + 1 == self._next:
                self._save(t, watchers)
        except (RuntimeError, TypeError, ValueError):  # a graph or tensor we cannot read
            self._saved = None

    def _interval(self, i: int) -> int:
        if i == 2:
            return 1
        self._sparse += 1
        # 7, then 15, 31...: odd, so the checks fall at every phase of an accumulation over a
        # power of two of backward calls per update (a multiple of 8 would always land
        # between two of its backward calls, or always on one side of the update).
        return int(((STALE_EVERY + 1) << (self._sparse // STALE_THIN_AFTER)) - 1)

    def _save(self, t: torch.Tensor, watchers: Callable[[], list[Any]]) -> None:
        if self._leaves is None:
            self._leaves = _leaf_parameters(t, watchers())
        # elements() reads detached values: no autograd context is needed.
        self._saved = [elements(p, STALE_ELEMENTS) for _, p in self._leaves]

    def _check(self) -> None:
        saved, self._saved = self._saved, None
        if saved is None or self._leaves is None:
            return
        updated = False
        carried: list[str] = []
        for (name, p), before in zip(self._leaves, saved, strict=True):
            now = elements(p, STALE_ELEMENTS)
            if before is None or now is None or same_elements(now, before):
                continue  # not updated since the last backward: accumulation, or frozen
            updated = True
            g = p.grad
            if g is not None and nonzero(g):
                carried.append(name)
        if not updated:
            return
        self.checks += 1
        if carried:
            self.stale += 1
            for name in carried:
                self.stale_grads[name] = self.stale_grads.get(name, 0) + 1

    def offer(self, recorder: Recorder, owner: Recorder | None) -> None:
        """Put the counts into the evidence of the run (a loop where no optimizer stepped)."""
        self._leaves, self._saved = None, None
        if self.calls < 3:
            return
        ev = recorder.evidence
        if ev is None and owner is not None:
            ev = owner.evidence
        if ev is None:
            ev = recorder.evidence = Evidence(framework="torch")
        ev.manual_backward = self.calls
        ev.manual_checks = self.checks
        ev.manual_stale = self.stale
        ev.manual_stale_grads = dict(self.stale_grads)


def _leaf_parameters(t: torch.Tensor, watchers: list[Any]) -> list[tuple[str, torch.Tensor]]:
    """The leaf tensors ``t``'s backward pass accumulates gradients into (at most
    :data:`STALE_PARAMS`, spread evenly), named after the caller's variables when it holds them
    (``w``, ``model.0.weight``), else the watched models' names, else their shapes."""
    leaves: dict[int, torch.Tensor] = {}
    for var in _graph_leaves(t):
        leaves.setdefault(id(var), var)
    found = list(leaves.values())
    if len(found) > STALE_PARAMS:
        n = len(found)
        found = [found[k * (n - 1) // (STALE_PARAMS - 1)] for k in range(STALE_PARAMS)]
    names = _caller_names(found)
    for w in watchers:
        for name, p in zip(getattr(w, "_names", ()), getattr(w, "_params", ()), strict=False):
            names.setdefault(id(p), name)
    return [(names.get(id(p), f"tensor{tuple(p.shape)}") + ".grad", p) for p in found]


def _reached_leaves(t: torch.Tensor, wanted: set[int]) -> set[int]:
    """The ids, among ``wanted``, of the leaf tensors ``t``'s backward pass accumulates
    gradients into (the graph walked until all are found, or :data:`GRAPH_NODES` nodes)."""
    found: set[int] = set()
    for var in _graph_leaves(t):
        if id(var) in wanted:
            found.add(id(var))
            if len(found) == len(wanted):
                break
    return found


def _graph_leaves(t: torch.Tensor) -> Iterator[torch.Tensor]:
    """The leaf tensors of ``t``'s autograd graph, walked depth first (at most
    :data:`GRAPH_NODES` nodes)."""
    seen: set[int] = set()
    stack: list[Any] = [t.grad_fn]
    while stack and len(seen) < GRAPH_NODES:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        var = getattr(node, "variable", None)
        if isinstance(var, torch.Tensor):
            yield var
            continue
        stack.extend(fn for fn, _ in node.next_functions)


def _caller_names(params: list[torch.Tensor]) -> dict[int, str]:
    """id -> the name the code calling ``backward()`` gives each of ``params``: a variable
    bound to it, or a module variable's parameter (``model.0.weight``)."""
    wanted = {id(p) for p in params}
    out: dict[int, str] = {}
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith(
            ("pytest_losstrend.capture", "torch")):
        frame = frame.f_back
    if frame is None:
        return out
    for scope in (frame.f_locals, frame.f_globals):
        for var, value in list(scope.items()):
            if isinstance(value, torch.Tensor):
                if id(value) in wanted:
                    out.setdefault(id(value), var)
            elif isinstance(value, nn.Module):
                try:
                    named = list(value.named_parameters())
                except Exception:  # a module mid-construction: its names are not needed
                    continue
                for pname, p in named:
                    if id(p) in wanted:
                        out.setdefault(id(p), f"{var}.{pname}")
    return out


def _mean(values: list[Any]) -> Any:
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

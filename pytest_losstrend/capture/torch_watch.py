"""``losstrend.watch`` for torch: hooks that fill an
:class:`~pytest_losstrend.diagnosis.evidence.Evidence` while a model trains, cheaply enough to
leave on in a test (imported only by ``watch``).

What it costs per optimizer step, on the steps it does not sample: one Python call (an
optimizer pre-step hook) and a counter in each ``zero_grad``. Sampled steps (every one of the
first :data:`DENSE_STEPS`, then every :data:`SAMPLE_EVERY`-th, thinning out on long loops, see
:data:`THIN_AFTER`) take the norms of the gradients and parameters and copy the parameters
before the step; the same hook at the next step (or :meth:`TorchWatcher.finish`) takes the
norm of the update, so no post-step hook runs on every step. Stale-gradient probes are armed on
the dense steps and every :data:`STALE_PROBE_EVERY`-th sample after them; under automatic
capture they are checked at the capture's patched ``backward()`` rather than by parameter
hooks (``probe_at_backward``). For float parameters on the CPU
this goes through numpy views of the parameters' memory (a numpy call costs a fraction of a
torch kernel launch, which dominates on the tiny models tests train); elsewhere through four
foreach kernels whose results stay on the device until :meth:`TorchWatcher.finish` (or every
:data:`PENDING_MAX` samples), so watching a model on an accelerator never syncs per step.

The other signals are gathered once: the first batch of inputs and the output width (forward
hooks that remove themselves after the first call), the loss's argument shapes (a global
forward pre-hook, removed after a few loss calls), and in :meth:`TorchWatcher.finish` the
input statistics and one extra forward pass, in eval mode, for dead units of activation
modules. Activations called as functions (``F.relu``, ``torch.tanh``...) are observed on the
training forward that follows a sampled step (:mod:`.torch_activations`): the model's first
forward, the forward after each dense step, then after every :data:`ACTIVATION_EVERY`-th
sample; never on the others.

The per-step machinery is here; the norm samplers are in :mod:`.torch_sampling`, and what is
read once (loss names, input statistics, loss-argument checks, dead units) in
:mod:`.torch_signals`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.modules.loss import _Loss
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils.hooks import RemovableHandle

from pytest_losstrend.capture.sharpness import top_hessian_eigenvalue_torch
from pytest_losstrend.capture.torch_activations import ActivationProbe
from pytest_losstrend.capture.torch_sampling import (
    Elements,
    _numpy_ready,
    _NumpySampler,
    _Sampler,
    _TorchSampler,
    _update_ratio,
    elements,
    nonzero,
    same_elements,
)
from pytest_losstrend.capture.torch_signals import (
    LOSS_FROM_LOGITS,
    _first_tensor,
    _truncate,
    check_loss_args,
    dead_fraction,
    input_stats,
    loss_name,
)
from pytest_losstrend.diagnosis.evidence import Evidence

#: Every optimizer step up to this one is sampled...
DENSE_STEPS = 10
#: ...then every this-many-th...
SAMPLE_EVERY = 10
#: ...and the interval doubles after this many of those (steps 10-160 every 10th: a loop of a
#: hundred or two steps is sampled every 10th step throughout)...
THIN_AFTER = 15
#: ...and again after every this many more: every 20th step to step 320, every 40th to 640,
#: every 80th to 1280, every 160th to 2560... eight samples per doubling of the run, 53 in
#: 2000 steps. On a tiny model, where a step costs tens of microseconds, a sample costs about
#: as much as a step (its own work, and the next steps running slower on the caches it
#: evicted), so sampling every 10th step of a long loop would cost about 10%.
THIN_LATER = 8
#: Rows of the first input batch kept for input statistics and the dead-unit pass.
INPUT_ROWS = 512
#: Loss-module calls whose argument shapes are checked before the global hook is removed
#: (a global module hook slows every module call, so it must not stay for the whole run).
LOSS_CHECKS = 5
#: Optimizer steps after which that hook is removed even if no loss module was called
#: (a functional loss, ``F.mse_loss``, is never seen by a module hook).
LOSS_CHECK_STEPS = 10
#: Samples held by the sampler before they are moved into the evidence...
PENDING_MAX = 256
#: ...or once it holds this many numbers or 0-d tensors (four per parameter per sample).
PENDING_TENSORS = 16384


#: After the dense steps, the forward after every this-many-th sample is observed for
#: functional activations (:mod:`.torch_activations`): each observed forward costs about three
#: plain ones on a tiny model (``benchmarks/bench_watch.py``, "functional activations").
ACTIVATION_EVERY = 4


#: Parameters whose gradients are probed for carry-over between optimizer steps (the first,
#: the middle and the last trainable one)...
STALE_PROBES = 3
#: ...and elements of each gradient compared (spread evenly over the tensor).
STALE_ELEMENTS = 8
#: After the dense steps, the probes are armed at every this-many-th sample: a probed step
#: costs about two more plain steps on a tiny model (its checks run at the next backward, off
#: the capture's fast path), and gradients that are never cleared show at every probed step.
STALE_PROBE_EVERY = 2
#: A watcher whose driver can park it (automatic capture) goes without its step hook when the
#: next sample is at least this many steps away: a Python hook call on every step costs about
#: 1% of a tiny step.
PARK_MIN = 2


#: Attribute marking, on a gradient tensor, that a watcher saw it at the last dense step.
_GRAD_TAG = "_losstrend_watcher"


class TorchWatcher:
    """Watches a torch model (and its optimizer) train, filling :attr:`evidence`.

    Hooks go in when it is made and come out in :meth:`finish`. Without an optimizer, it adopts
    the first optimizer that steps any of the model's parameters (a global step hook that
    stays until then).

    Args:
        model: the ``nn.Module`` being trained.
        optimizer: its optimizer; gives the learning rate, momentum, the step count and which
            parameters are optimised.
        loss_fn: ``loss_fn(prediction, target)``; with ``batch``, lets :meth:`sharpness`
            measure the top Hessian eigenvalue.
        batch: a fixed ``(x, y)`` to measure the sharpness on.
        probe_at_backward: driven by whoever sees each ``backward()`` call and each
            optimizer step's end (automatic capture): the stale-gradient probes get no tensor
            hooks (it calls :meth:`probe_backward` before each backward pass while
            :attr:`probes_armed`), ``zero_grad`` is wrapped only while a probe is armed, and
            after a sampled step (:attr:`on_sampled`) it calls :meth:`end_of_step`, which
            takes the update and says how long the step hook can be parked.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        loss_fn: Callable[[Any, Any], Any] | None = None,
        batch: tuple[Any, Any] | None = None,
        probe_at_backward: bool = False,
    ) -> None:
        self.model = model
        self._probe_at_backward = probe_at_backward
        #: With ``probe_at_backward``: called at a sampled step's pre-hook, so that the
        #: driver calls :meth:`end_of_step` once the step has ended.
        self.on_sampled: Callable[[], None] | None = None
        self._step_handle: RemovableHandle | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.loss_fn = loss_fn
        self.batch = batch
        self.evidence = Evidence(framework="torch", zero_grad_calls=0)
        self._set_loss(loss_fn)
        self._finished = False
        self._counting = True
        self._handles: list[RemovableHandle] = []
        # (object, had an instance attribute "zero_grad", that attribute, our wrapper)
        self._wrapped: list[tuple[Any, bool, Any, Any]] = []

        named = [(n, p) for n, p in model.named_parameters()
                 if not isinstance(p, nn.parameter.UninitializedParameter)]
        meta = [n for n, p in named if p.is_meta]
        if meta:
            # Caught here, not at the first sampled step inside an optimizer hook, where torch
            # would say only "Cannot copy out of meta tensor".
            raise ValueError(
                f"watch() got a model with parameters on the meta device ({', '.join(meta[:4])}"
                f"{', ...' if len(meta) > 4 else ''}): a meta tensor has a shape but no values, "
                "so there is nothing to watch or train; materialise the model first "
                "(model.to_empty(device='cpu') and initialise its weights, or build it outside "
                "torch.device('meta'))"
            )
        self._names = [n for n, p in named if p.requires_grad]
        self._params = [p for _, p in named if p.requires_grad]
        # One copy of the model, to tell at the end which parameters never moved.
        self._initial = [p.detach().clone() for p in self._params]
        self._sampler: _Sampler = (_NumpySampler(self._params) if _numpy_ready(self._params)
                                   else _TorchSampler(self._params))
        self._update_frozen()

        self._step = 0
        self._calls_seen = 0
        # A small object, not the watcher: a gradient outliving the watcher keeps only this.
        self._token = object()
        self._had_grad = [False] * len(self._params)
        self._next_sample = 0
        self._sparse = 0  # samples taken after the dense ones
        self._open = False  # a sampled step whose update is still to be read
        # (step, lr) of each sample whose norms the sampler holds.
        self._meta: list[tuple[int, float]] = []
        # Per parameter: was its gradient nonzero at any sample?
        self._grad_seen = [False] * len(self._params)
        self._loss_calls = 0
        self._loss_seen: set[str] = set()
        self._loss_handle: RemovableHandle | None = None
        self._adopt_handle: RemovableHandle | None = None
        self._foreign: set[int] = set()
        self._captured: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        self._input_handles: list[RemovableHandle] = []
        self._init_stale_probes()
        # Functional activations (F.relu...): the first training forward is observed, then
        # the forward after a sampled step (see ACTIVATION_EVERY).
        self._acts = ActivationProbe(model)
        self._acts.arm()

        if not probe_at_backward:
            # Under automatic capture zero_grad is wrapped only while a probe is armed: a
            # wrapper called on every step costs about 1% of a tiny step.
            self._wrap_zero_grad(model)
        if optimizer is not None:
            self._attach(optimizer)
        elif self._params:
            self._adopt_handle = register_optimizer_step_pre_hook(self._adopt)
        self._input_handles = [
            model.register_forward_pre_hook(self._capture_input, with_kwargs=True),
            model.register_forward_hook(self._capture_output),
        ]
        self._loss_handle = nn.modules.module.register_module_forward_pre_hook(self._loss_hook)

    def _set_loss(self, loss_fn: Any) -> None:
        name = loss_name(loss_fn)
        self.evidence.loss_name = name
        self.evidence.loss_from_logits = LOSS_FROM_LOGITS.get(name or "")

    # -- optimizer ----------------------------------------------------------------------------

    def _attach(self, opt: torch.optim.Optimizer) -> None:
        self.optimizer = opt
        ev = self.evidence
        ev.optimizer = type(opt).__name__
        group = opt.param_groups[0] if opt.param_groups else {}
        if "betas" in group:
            ev.momentum = float(group["betas"][0])
        elif "momentum" in group:
            ev.momentum = float(group["momentum"])
        self._update_not_in_optimizer()
        # One pre-step hook does everything: a sampled step's update is read at the next
        # step's pre-hook (or in finish), so no post-step hook costs a call on every step.
        self._step_handle = opt.register_step_pre_hook(self._pre_step)
        if not self._probe_at_backward:
            self._wrap_zero_grad(opt)

    def _adopt(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        # The global hook runs for every optimizer: adopt the first that holds our parameters.
        # It is removed by our own pre-step hook: removing it here would mutate the dict torch
        # is iterating over.
        if self.optimizer is not None or id(opt) in self._foreign:
            return
        ours = {id(p) for p in self._params}
        if any(id(p) in ours for g in opt.param_groups for p in g["params"]):
            self._attach(opt)
        else:
            self._foreign.add(id(opt))

    def _update_not_in_optimizer(self) -> None:
        if self.optimizer is None:
            return
        held = {id(p) for g in self.optimizer.param_groups for p in g["params"]}
        self.evidence.not_in_optimizer = [
            n for n, p in zip(self._names, self._params, strict=True) if id(p) not in held
        ]

    def _update_frozen(self) -> None:
        self.evidence.frozen = [n for n, p in self.model.named_parameters()
                                if not p.requires_grad]

    def _pre_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        i = self._step
        self._step = i + 1
        self.evidence.optimizer_steps = i + 1
        if self._open:  # the last step was sampled, and its update is in the parameters now
            self._close()
        if i == self._next_sample:
            self._next_sample = i + self._interval(i)
            if self._adopt_handle is not None:
                # Adopted this step: torch has finished iterating over the global hooks.
                self._adopt_handle.remove()
                self._adopt_handle = None
            if i >= LOSS_CHECK_STEPS and self._loss_handle is not None:
                self._loss_handle.remove()
                self._loss_handle = None
            if i < DENSE_STEPS and not self._probe_at_backward:
                self._see_manual_clearing(i)
            if i < DENSE_STEPS or self._sparse % STALE_PROBE_EVERY == 0:
                self._arm_stale_probes(i)
            if i < DENSE_STEPS or self._sparse % ACTIVATION_EVERY == 0:
                self._acts.arm()
            self._sample_before(opt, i)
            if self.on_sampled is not None:
                self.on_sampled()

    def end_of_step(self) -> int:
        """With ``probe_at_backward``, after a sampled step has ended: take its update now
        (not at the next step's pre-hook) and return how many optimizer steps the step hook
        could be parked for (:meth:`park`; 0: none, a sample is due sooner).

        Example:
            >>> idle = watcher.end_of_step()   # from an optimizer post-step hook
        """
        if self._open:
            self._close()
        idle = self._next_sample - self._step
        return idle if idle >= PARK_MIN else 0

    def park(self) -> None:
        """Remove the step hook until :meth:`unpark` (not from inside torch's own iteration
        over the step hooks: from an optimizer post-step hook, say)."""
        if self._step_handle is not None:
            self._step_handle.remove()
            self._step_handle = None

    def unpark(self, steps: int) -> None:
        """Put the step hook back, ``steps`` optimizer steps after :meth:`park`.

        Example:
            >>> watcher.park(); train_steps(9); watcher.unpark(9)
        """
        if self._step_handle is not None or self.optimizer is None or self._finished:
            return
        self._step += steps
        self.evidence.optimizer_steps = self._step
        self._step_handle = self.optimizer.register_step_pre_hook(self._pre_step)

    def _see_manual_clearing(self, step: int) -> None:
        """Count gradients cleared by hand (``p.grad = None``) as ``zero_grad`` calls.

        Without it a loop that clears its gradients that way would look like one that never
        clears them. Between two consecutive steps with no ``zero_grad`` call, a gradient
        tensor that is not the one tagged at the previous step was made afresh by backward:
        cleared. An accumulating gradient is the same tensor, added to in place. Checked on
        the dense first steps only (consecutive, a handful of attribute reads).
        """
        ev = self.evidence
        calls = ev.zero_grad_calls or 0
        grads = [p.grad for p in self._params]
        token = self._token
        # Only a gradient that existed at the last check counts: one appearing for the first
        # time (a parameter used from this step on) says nothing.
        fresh = any(g is not None and had and getattr(g, _GRAD_TAG, None) is not token
                    for g, had in zip(grads, self._had_grad, strict=True))
        if step > 0 and fresh and calls == self._calls_seen:
            ev.zero_grad_calls = calls = calls + 1
        self._calls_seen = calls
        self._had_grad = [g is not None for g in grads]
        for g in grads:
            if g is not None:
                try:
                    setattr(g, _GRAD_TAG, token)
                except AttributeError:  # a tensor subclass without a __dict__
                    return

    # -- stale gradients ------------------------------------------------------------------

    def _init_stale_probes(self) -> None:
        """Hook a few parameters' gradients (see :data:`STALE_PROBES`) to tell, from the
        gradients themselves, whether they carry over between optimizer steps.

        At a sampled step's pre-hook, :meth:`_arm_stale_probes` keeps a few elements of each
        probed gradient; the parameter's tensor hook, which runs in the next backward pass
        before the new gradient is added to ``.grad``, then finds ``.grad`` cleared (None, or
        zeros) or still holding exactly those values: carried over. Only the first backward
        pass after the step is looked at, so accumulating k backward passes per step (cleared
        at each step) reads as cleared; a ``zero_grad`` that does nothing reads as carried
        over, however often it is called.
        """
        n = len(self._params)
        picks = sorted({0, n // 2, n - 1}) if n else []
        self._probes = picks[:STALE_PROBES]
        self._probe_saved: dict[int, Elements] = {}
        self._probe_armed: dict[int, int] = {}  # probe -> step it was armed at
        self._stale_checked: dict[int, set[str]] = {}  # step -> probed parameters
        self._stale_found: dict[int, set[str]] = {}
        # steps whose gradients were carried over although zero_grad ran before the check
        self._stale_after_zero_grad: set[int] = set()
        self._zero_grad_at_arm = 0
        self.evidence.grad_checks = 0
        if self._probe_at_backward:
            return
        for j in self._probes:
            p = self._params[j]
            self._handles.append(p.register_hook(  # type: ignore[no-untyped-call]
                self._probe_hook(j)))

    def _arm_stale_probes(self, step: int) -> None:
        for j in self._probes:
            g = self._params[j].grad
            sample = None if g is None else elements(g, STALE_ELEMENTS)
            if sample is None or not nonzero(sample):
                # Zeros say nothing: a cleared gradient reads the same.
                self._probe_armed.pop(j, None)
                continue
            self._probe_saved[j] = sample
            self._probe_armed[j] = step
        if not self._probe_armed:
            return
        self._zero_grad_at_arm = self.evidence.zero_grad_calls or 0
        if self._probe_at_backward and not self._wrapped:
            self._wrap_zero_grad(self.model)
            if self.optimizer is not None:
                self._wrap_zero_grad(self.optimizer)

    def _probe_hook(self, j: int) -> Callable[[torch.Tensor], None]:
        def hook(_grad: torch.Tensor) -> None:
            self._check_probe(j)

        return hook

    def _check_probe(self, j: int) -> None:
        """The first backward pass reaching probed parameter ``j`` since it was armed, before
        the pass adds its gradient: is the armed gradient still in ``.grad``?"""
        step = self._probe_armed.pop(j, None)
        if step is None:
            return
        saved = self._probe_saved.pop(j)
        g = self._params[j].grad
        self._stale_checked.setdefault(step, set()).add(self._names[j])
        if g is not None and same_elements(elements(g, STALE_ELEMENTS), saved):
            self._stale_found.setdefault(step, set()).add(self._names[j])
            if (self.evidence.zero_grad_calls or 0) > self._zero_grad_at_arm:
                self._stale_after_zero_grad.add(step)
        if self._probe_at_backward and not self._probe_armed:
            self._unwrap_zero_grad()

    @property
    def probes_armed(self) -> bool:
        """Whether a stale-gradient probe waits for the next backward pass reaching it."""
        return bool(self._probe_armed)

    def armed_ids(self) -> set[int]:
        """The ids of the parameters whose probes are armed."""
        return {id(self._params[j]) for j in self._probe_armed}

    def probe_backward(self, reached: set[int]) -> None:
        """With ``probe_at_backward``: a ``backward()`` call is about to run, reaching the
        parameters whose ids are in ``reached``; their armed probes are checked now.

        Example:
            >>> watcher.probe_backward({id(p) for p in model.parameters()})
        """
        for j in list(self._probe_armed):
            if id(self._params[j]) in reached:
                self._check_probe(j)

    def drop_probes(self) -> None:
        """Disarm the probes no backward pass reached (they stay unchecked)."""
        self._probe_armed.clear()
        self._probe_saved.clear()
        if self._probe_at_backward:
            self._unwrap_zero_grad()

    def _interval(self, step: int) -> int:
        """Steps from this sample to the next: 1 up to :data:`DENSE_STEPS`, then
        :data:`SAMPLE_EVERY`, doubled after :data:`THIN_AFTER` samples and after every
        :data:`THIN_LATER` more."""
        if step < DENSE_STEPS:
            return 1
        self._sparse += 1
        k = self._sparse
        doublings = 0 if k < THIN_AFTER else 1 + (k - THIN_AFTER) // THIN_LATER
        return int(SAMPLE_EVERY << doublings)

    def _sample_before(self, opt: torch.optim.Optimizer, step: int) -> None:
        if not self._params:
            return
        self._sampler.before()
        self._meta.append((step, float(opt.param_groups[0]["lr"])))
        self._open = True

    def _close(self) -> None:
        self._open = False
        self._sampler.after()
        if len(self._meta) >= PENDING_MAX or self._sampler.size >= PENDING_TENSORS:
            self._flush()

    def _flush(self) -> None:
        """Move the sampled norms into the evidence as grad norms and update ratios."""
        if self._open:
            self._close()
        meta, self._meta = self._meta, []
        values = self._sampler.drain()
        if not meta:
            return
        n = len(self._params)
        # values holds, per sample, blocks of n: gradient norms, parameter norms before the
        # step, update norms, parameter norms after it. Strided slices pick one quantity of
        # one parameter over all samples.
        ev = self.evidence
        width = 4 * n
        ev.steps.extend(step for step, _ in meta)
        ev.lr.extend(lr for _, lr in meta)
        ev.grad_norm.extend(math.hypot(*values[k:k + n]) for k in range(0, len(values), width))
        for j, name in enumerate(self._names):
            # A NaN gradient is truthy: a gradient (and another diagnosis), not a zero one.
            if not self._grad_seen[j] and any(values[j::width]):
                self._grad_seen[j] = True
            ev.update_ratio.setdefault(name, []).extend(map(
                _update_ratio, values[2 * n + j::width], values[n + j::width],
                values[3 * n + j::width]))

    # -- zero_grad ------------------------------------------------------------------------

    def _wrap_zero_grad(self, obj: Any) -> None:
        had = "zero_grad" in vars(obj)
        previous = vars(obj).get("zero_grad")
        inner = obj.zero_grad
        ev = self.evidence

        def zero_grad(*args: Any, **kwargs: Any) -> Any:
            if self._counting:  # False once finished, if someone wrapped on top of us
                ev.zero_grad_calls += 1  # type: ignore[operator]
            return inner(*args, **kwargs)

        # An instance attribute shadows the method; nn.Module.__setattr__ stores a plain
        # function in the instance dict like object does.
        object.__setattr__(obj, "zero_grad", zero_grad)
        self._wrapped.append((obj, had, previous, zero_grad))

    def _unwrap_zero_grad(self) -> None:
        for obj, had, previous, wrapper in reversed(self._wrapped):
            if vars(obj).get("zero_grad") is not wrapper:
                # Someone wrapped it after us; theirs stays (ours keeps counting, harmlessly).
                continue
            if had:
                object.__setattr__(obj, "zero_grad", previous)
            else:
                object.__delattr__(obj, "zero_grad")
        self._wrapped = []

    # -- forward: inputs, outputs, loss shapes ----------------------------------------------

    def _capture_input(self, module: nn.Module, args: tuple[Any, ...],
                       kwargs: dict[str, Any]) -> None:
        if self._captured is not None:
            return
        first = _first_tensor(args, kwargs)
        if first is None or first.ndim == 0:
            return
        rows = first.shape[0]
        self._captured = (
            tuple(_truncate(a, rows, INPUT_ROWS) for a in args),
            {k: _truncate(v, rows, INPUT_ROWS) for k, v in kwargs.items()},
        )

    def _capture_output(self, module: nn.Module, args: Any, output: Any) -> None:
        out = output
        if isinstance(out, (tuple, list)) and out:
            out = out[0]
        if isinstance(out, torch.Tensor) and self.evidence.output_features is None:
            self.evidence.output_features = int(out.shape[-1]) if out.ndim >= 2 else 1
        # One forward pass is all these two hooks need; keeping them would keep every later
        # call of the model on nn.Module's slow (hooked) path.
        for h in self._input_handles:
            h.remove()
        self._input_handles = []

    def _loss_hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if not isinstance(module, _Loss):
            return
        ev = self.evidence
        if ev.loss_name is None:
            self._set_loss(module)
        self._loss_calls += 1
        if len(args) >= 2 and isinstance(args[0], torch.Tensor) and isinstance(
                args[1], torch.Tensor):
            check_loss_args(ev, self._loss_seen, module, args[0], args[1])
        if self._loss_calls >= LOSS_CHECKS and self._loss_handle is not None:
            # Safe inside the hook: torch iterates over a copy of the global hooks.
            self._loss_handle.remove()
            self._loss_handle = None

    # -- the end --------------------------------------------------------------------------

    def finish(self) -> None:
        """Remove every hook and wrapper and complete the evidence (idempotent): which
        parameters never changed or never had a gradient, the input statistics, dead units."""
        if self._finished:
            return
        self._finished = True
        self._counting = False
        for h in (*self._handles, *self._input_handles, self._loss_handle, self._adopt_handle,
                  self._step_handle):
            if h is not None:
                h.remove()
        self._handles, self._input_handles = [], []
        self._loss_handle = self._adopt_handle = self._step_handle = None
        self._acts.close()
        self._unwrap_zero_grad()
        self._flush()
        ev = self.evidence
        self._update_frozen()
        self._update_not_in_optimizer()
        # A parameter no optimizer holds is never cleared by its zero_grad, and never stepped
        # either: its gradient piling up is that other invariant's evidence, not this one's.
        held_out = set(ev.not_in_optimizer)
        found = {step: names - held_out for step, names in self._stale_found.items()}
        ev.grad_checks = sum(1 for names in self._stale_checked.values() if names - held_out)
        ev.stale_steps = sorted(step for step, names in found.items() if names)
        ev.stale_params = [n for n in self._names
                           if any(n in names for names in found.values())]
        ev.stale_after_zero_grad = len(self._stale_after_zero_grad & set(ev.stale_steps))
        if self._probe_at_backward:
            ev.zero_grad_calls = None  # counted only around the probes, not over the run
        self._probe_saved, self._probe_armed = {}, {}
        with torch.no_grad():
            ev.unchanged = [
                n for n, p, p0 in zip(self._names, self._params, self._initial, strict=True)
                if p.requires_grad and torch.equal(p.detach(), p0)
            ]
        self._initial = []
        if ev.steps:
            ev.zero_grad_params = [n for n, seen in zip(self._names, self._grad_seen,
                                                        strict=True) if not seen]
        if self._captured is not None:
            # The user's model and data: never let the watcher fail a test.
            first = _first_tensor(*self._captured)
            try:
                if first is not None:
                    ev.input_stats = input_stats(first)
            except Exception as exc:
                ev.notes.append(f"input statistics failed: {type(exc).__name__}: {exc}")
            try:
                ev.dead_fraction = dead_fraction(self.model, *self._captured)
            except Exception as exc:
                ev.notes.append(f"dead-unit pass failed: {type(exc).__name__}: {exc}")
            self._captured = None
        if self._acts.window:
            ev.activation_steps = self._acts.window
            ev.dead_fraction.update(self._acts.dead())
            ev.saturated_fraction = self._acts.saturated()

    def sharpness(self) -> float | None:
        """The top Hessian eigenvalue of ``loss_fn(model(x), y)`` on the fixed ``batch``, or
        None without both. Also records the learning rate it is compared with in
        ``evidence.sharpness_lr``."""
        if self.loss_fn is None or self.batch is None or not self._params:
            return None
        x, y = self.batch
        if self.optimizer is not None and self.optimizer.param_groups:
            self.evidence.sharpness_lr = float(self.optimizer.param_groups[0]["lr"])
        try:
            value = top_hessian_eigenvalue_torch(self.model, self.loss_fn, x, y)
        except Exception as exc:  # measured while reporting a failure: never mask it
            self.evidence.notes.append(
                f"sharpness not measured: {type(exc).__name__}: {exc}")
            return None
        self.evidence.sharpness = value
        return value

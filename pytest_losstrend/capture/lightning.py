"""Lightning 2.x support: a callback that records each optimizer step's own loss.

Lightning hands ``on_train_batch_end`` the loss of the batch *divided by*
``accumulate_grad_batches`` (what it ran ``backward`` on). The callback multiplies it back and
records one point per optimizer step: the mean loss of the batches accumulated into it, which is
the loss ``record(loss)`` records in a plain loop. The validation loss, where the module logs it
(``self.log("val_loss", ...)``), is recorded as ``"eval"`` once per validation run (not during the
sanity check).

The model is watched for diagnosis as ``losstrend.watch(pl_module, optimizer)`` would, with the
watcher's step hook moved to Lightning's ``on_before_optimizer_step``: there the gradients are
this step's (torch's own pre-step hook runs before Lightning's closure computes them) and, under
AMP, already unscaled.

Fail-fast: a non-finite or diverging loss sets ``trainer.should_stop``; Lightning ends the fit
cleanly (loggers flushed, teardown run) and the stop is raised from ``on_train_end``, so the test
fails with the verdict and the remaining steps are skipped.

Works with both import names, ``lightning.pytorch`` and ``pytorch_lightning``: the callback
derives from the ``Callback`` of each that is imported, so either ``Trainer`` takes it.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol

from pytest_losstrend.capture.keras import Recording as KerasRecording

__all__ = ["Recording", "callback_bases", "make_lightning_callback", "record_or_stop"]


class Recording(KerasRecording, Protocol):
    """What the framework callbacks need of the object they record into (the fixture's
    object, a :class:`~pytest_losstrend.capture.recorder.Recorder`): the Keras callback's
    needs, plus the fail-fast stop and the framework."""

    stopped: Any
    framework: str | None


def record_or_stop(lt: Recording, value: Any, series: str) -> BaseException | None:
    """Record ``value``; the fail-fast stop it raised when the run must end (the framework
    callbacks then ask their trainer to stop and raise it at the end of training), else None.
    Any other error propagates.

    Example:
        >>> stop = record_or_stop(losstrend, float("nan"), "train")  # marked: fail-fast
        >>> stop is losstrend.stopped
        True
    """
    try:
        lt.record(value, series=series)
    except Exception as exc:
        stop: BaseException = exc
        if lt.stopped is None or exc is not lt.stopped:
            raise
        return stop
    return None


_MODULES = ("lightning.pytorch", "pytorch_lightning")


def callback_bases() -> tuple[type, ...]:
    """The ``Callback`` classes to derive from: those of the Lightning import names already
    imported, else the first that imports; a clear error when neither is installed.

    Example:
        >>> [b.__module__ for b in callback_bases()]
        ['lightning.pytorch.callbacks.callback']
    """
    bases = [sys.modules[m].Callback for m in _MODULES
             if m in sys.modules and hasattr(sys.modules[m], "Callback")]
    if bases:
        return tuple(dict.fromkeys(bases))
    import importlib

    for m in _MODULES:
        try:
            return (importlib.import_module(m).Callback,)
        except ModuleNotFoundError:
            continue
    raise ModuleNotFoundError(
        "losstrend.lightning_callback() needs Lightning 2.x: pip install lightning "
        "(or pytorch-lightning)"
    )


def make_lightning_callback(
    lt: Recording, *, series: str = "train", eval_series: str = "eval",
    eval_key: str = "val_loss", watch: bool = True,
) -> Any:
    """Build the recording callback for ``lt`` (see ``LossTrend.lightning_callback``)."""
    bases = callback_bases()

    class LossTrendLightningCallback(*bases):  # type: ignore[misc]
        """Records each optimizer step's loss (the mean of its accumulated batches), the
        logged validation loss as the eval series, and watches the model."""

        def __init__(self) -> None:
            super().__init__()
            self._pending: list[Any] = []
            self._step_seen = 0
            self._stop: BaseException | None = None
            self._watcher: Any = None
            self._moved: list[tuple[Any, Any]] = []

        # -- recording -----------------------------------------------------------------

        def _record(self, trainer: Any, value: Any, name: str) -> None:
            if self._stop is None:
                self._stop = record_or_stop(lt, value, name)
                if self._stop is not None:
                    trainer.should_stop = True

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            self._pending, self._step_seen, self._stop = [], int(trainer.global_step), None
            if lt.framework is None:
                lt.framework = "torch"
            if watch:
                self._watch(trainer, pl_module)

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                               batch_idx: int) -> None:
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            if loss is None or not hasattr(loss, "detach"):
                return  # training_step returned None: Lightning skipped the batch
            k = 1
            if getattr(pl_module, "automatic_optimization", True):
                k = int(getattr(trainer, "accumulate_grad_batches", 1) or 1)
            loss = loss.detach()
            self._pending.append(loss * k if k != 1 else loss)
            if int(trainer.global_step) != self._step_seen:
                self._step_seen = int(trainer.global_step)
                self._flush(trainer)

        def _flush(self, trainer: Any) -> None:
            pending, self._pending = self._pending, []
            if not pending:
                return
            total = pending[0]
            for v in pending[1:]:
                total = total + v
            self._record(trainer, total / len(pending) if len(pending) > 1 else total, series)

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            # Lightning steps on an epoch's last batch even when the accumulation window is
            # short; a window left over here belongs to no step yet: keep it for the next.
            if int(trainer.global_step) != self._step_seen:
                self._step_seen = int(trainer.global_step)
                self._flush(trainer)

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            if getattr(trainer, "sanity_checking", False):
                return
            metrics = getattr(trainer, "callback_metrics", {}) or {}
            value = metrics.get(eval_key)
            if value is not None:
                self._record(trainer, value.detach() if hasattr(value, "detach") else value,
                             eval_series)

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            self._restore_hooks()
            if self._stop is not None:
                stop, self._stop = self._stop, None
                raise stop

        def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
            self._restore_hooks()

        # -- watching ------------------------------------------------------------------

        def _watch(self, trainer: Any, pl_module: Any) -> None:
            optimizers = list(getattr(trainer, "optimizers", []) or [])
            optimizer = optimizers[0] if optimizers else None
            try:
                self._watcher = _watcher_for(lt, pl_module, optimizer)
                if self._watcher is not None and optimizer is not None:
                    self._moved = _take_step_hooks(optimizer, self._watcher)
            except Exception as exc:  # diagnosis is a bonus: never break the user's fit
                if lt.evidence is not None:
                    lt.evidence.notes.append(f"lightning: model not watched: {exc!r:.200}")

        def on_before_optimizer_step(self, trainer: Any, pl_module: Any,
                                     optimizer: Any) -> None:
            for opt, hook in self._moved:
                if opt is optimizer:
                    hook(optimizer, (), {})

        def _restore_hooks(self) -> None:
            self._moved = []

    return LossTrendLightningCallback()


def _watcher_for(lt: Recording, model: Any, optimizer: Any) -> Any:
    """The recorder's watcher of ``model``, made (as ``lt.watch(model, optimizer)``) if none."""
    for w in lt.watchers:
        if getattr(w, "model", None) is model:
            return w
    lt.watch(model, optimizer)
    return lt.watchers[-1]


def _take_step_hooks(optimizer: Any, watcher: Any) -> list[tuple[Any, Any]]:
    """Detach ``watcher``'s pre-step hooks from ``optimizer`` and return them, to be called
    from ``on_before_optimizer_step`` instead: torch runs pre-step hooks before Lightning's
    closure computes the step's gradients. The handles the watcher keeps still remove
    nothing twice (torch's handle removal skips a missing key)."""
    hooks = getattr(optimizer, "_optimizer_step_pre_hooks", None)
    if not isinstance(hooks, dict):
        return []
    moved = []
    for key, hook in list(hooks.items()):
        if getattr(hook, "__self__", None) is watcher:
            del hooks[key]
            moved.append((optimizer, hook))
    return moved

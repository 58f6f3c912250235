"""Hugging Face ``transformers`` support: a ``TrainerCallback`` that records the per-step loss.

The ``Trainer`` never hands a callback the step's loss: it logs the *mean over the logging
window* in ``on_log`` (``logs["loss"]``), every ``logging_steps`` optimizer steps (500 by
default). Only with ``logging_steps=1`` (and ``logging_strategy="steps"``) is each logged value
one optimizer step's loss (the mean of its accumulated batches), so the callback refuses any
other setting at the start of training with an error naming it and the fix, rather than judge
a smoothed curve with one point every 500 steps.

``logging_nan_inf_filter=True`` (the default) replaces a NaN or infinite step loss by the mean
of the window so far: the log then never shows the NaN, and neither does the recorded series.
Set ``logging_nan_inf_filter=False`` to let the check see it; the callback leaves a note in the
watch evidence when the filter is on.

The validation loss (``eval_loss``) is recorded as ``"eval"``. The model is watched for
diagnosis with its optimizer (``accelerate``'s wrapper unwrapped): the ``Trainer`` calls
``optimizer.step()`` after the backward passes and gradient clipping, so torch's step hook sees
the step's gradients. Fail-fast: a non-finite or diverging loss sets
``control.should_training_stop``; the stop is raised from ``on_train_end``, so the test fails
with the verdict.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_losstrend.capture.lightning import record_or_stop

if TYPE_CHECKING:
    from pytest_losstrend.capture.lightning import Recording

__all__ = ["hidden_steps_message", "make_hf_callback"]


def _import_transformers() -> Any:
    try:
        import transformers
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "losstrend.hf_callback() needs Hugging Face transformers (and accelerate for the "
            "Trainer on torch): pip install transformers accelerate"
        ) from None
    return transformers


def hidden_steps_message(logging_steps: Any, strategy: str) -> str | None:
    """What to say when the Trainer's logging would hide steps from the callback; None when
    every optimizer step is logged.

    Example:
        >>> hidden_steps_message(1, "steps") is None
        True
        >>> hidden_steps_message(5, "steps")  # doctest: +ELLIPSIS
        'losstrend.hf_callback(): TrainingArguments(logging_steps=5) logs the mean loss of ...
    """
    if strategy != "steps":
        return (
            f"losstrend.hf_callback(): TrainingArguments(logging_strategy={strategy!r}) does "
            "not log the loss of every optimizer step, and the callback reads it from the "
            "Trainer's logs; set logging_strategy='steps' and logging_steps=1"
        )
    if logging_steps != 1:
        return (
            f"losstrend.hf_callback(): TrainingArguments(logging_steps={logging_steps!r}) logs "
            f"the mean loss of every {logging_steps!r} optimizer steps, which hides the steps "
            "in between from the loss check (a spike or a NaN is averaged away); set "
            "logging_steps=1 in the TrainingArguments of the test's run"
        )
    return None


def _strategy(args: Any) -> str:
    value = getattr(args, "logging_strategy", "steps")
    return str(getattr(value, "value", value))


def _unwrap(optimizer: Any) -> Any:
    """The torch optimizer inside ``accelerate``'s ``AcceleratedOptimizer`` (and the like)."""
    seen = 0
    while seen < 4 and hasattr(optimizer, "optimizer") and hasattr(optimizer, "param_groups"):
        inner = optimizer.optimizer
        if inner is optimizer or not hasattr(inner, "param_groups"):
            break
        optimizer, seen = inner, seen + 1
    return optimizer


def make_hf_callback(
    lt: Recording, *, series: str = "train", eval_series: str = "eval", watch: bool = True,
) -> Any:
    """Build the recording callback for ``lt`` (see ``LossTrend.hf_callback``)."""
    transformers = _import_transformers()

    class LossTrendHFCallback(transformers.TrainerCallback):  # type: ignore[misc,name-defined]
        """Records each optimizer step's logged loss, ``eval_loss`` as the eval series, and
        watches the model."""

        def __init__(self) -> None:
            super().__init__()
            self._stop: BaseException | None = None
            self._last_step = -1

        def _record(self, control: Any, value: float, name: str) -> None:
            if self._stop is None:
                self._stop = record_or_stop(lt, value, name)
                if self._stop is not None:
                    control.should_training_stop = True

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            message = hidden_steps_message(getattr(args, "logging_steps", 1), _strategy(args))
            if message is not None:
                raise ValueError(message)
            self._stop, self._last_step = None, int(getattr(state, "global_step", 0))
            if lt.framework is None:
                lt.framework = "torch"
            model, optimizer = kwargs.get("model"), kwargs.get("optimizer")
            if watch and model is not None:
                try:
                    watcher = next((w for w in lt.watchers
                                    if getattr(w, "model", None) is model), None)
                    if watcher is None:
                        lt.watch(model, _unwrap(optimizer) if optimizer is not None else None)
                except Exception as exc:  # diagnosis is a bonus: never break the training
                    if lt.evidence is not None:
                        lt.evidence.notes.append(f"hf: model not watched: {exc!r:.200}")
            if getattr(args, "logging_nan_inf_filter", False) and lt.evidence is not None:
                lt.evidence.notes.append(
                    "hf: TrainingArguments(logging_nan_inf_filter=True) replaces a NaN or "
                    "infinite step loss by the window's mean, so the recorded series cannot "
                    "show it; set logging_nan_inf_filter=False to check for it"
                )

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kwargs: Any) -> None:
            if not logs:
                return
            step = int(getattr(state, "global_step", 0))
            if "loss" in logs and step != self._last_step:
                self._last_step = step
                self._record(control, float(logs["loss"]), series)
            if "eval_loss" in logs:
                self._record(control, float(logs["eval_loss"]), eval_series)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self._stop is not None:
                stop, self._stop = self._stop, None
                raise stop

    return LossTrendHFCallback()

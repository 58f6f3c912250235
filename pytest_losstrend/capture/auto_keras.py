"""Automatic capture for Keras 3 and TensorFlow: the marker alone records the loss.

:func:`install` patches three methods at the class level for the duration of one test body,
and its undo puts back exactly what was there:

- ``keras.Model.fit`` (every model class, subclasses included): each ``fit`` call gets the
  recording callback (:func:`~pytest_losstrend.capture.keras.make_callback`, which records
  each batch's own loss, ``val_loss`` as ``"eval"``, and watches the model) unless its
  ``callbacks`` hold a losstrend callback already; and the series get their reference level
  from ``fit``'s targets and the compiled loss (``y``, and ``validation_data``'s for
  ``"eval"``; none with ``sample_weight``, ``class_weight`` or data without separate targets).
  A subclass whose own ``fit`` never calls ``super().fit`` is not captured: nothing of Keras'
  runs.
- ``tf.GradientTape.gradient``: the target of each call is recorded, one point per call (a
  non-scalar target as its sum, which is what TensorFlow differentiates). Inside a
  ``tf.function`` the value is read on the host by a ``tf.py_function`` each time the
  function runs, into the capture installed then (a function traced in an earlier test
  records in a later one; one first traced outside any capture is not seen); under XLA
  (``jit_compile=True``) it is skipped, with a note. Calls made by Keras' own ``fit`` (its
  ``train_step``) and by the watcher inside it are not recorded.
- ``keras.optimizers.Optimizer.apply_gradients``: counted, a step per outermost call outside
  ``fit`` (inside a ``tf.function``, each time it runs, as the tape's target is read), into
  :attr:`KerasCapture.optimizer_steps` and the recorder's evidence, when it has one.

Importing this module imports neither Keras nor TensorFlow: :func:`install` does.
"""

from __future__ import annotations

import functools
import inspect
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_losstrend.capture.recorder import Recorder

#: Per thread: how deep inside a patched ``fit`` (Keras' own tapes are not recorded there) and
#: inside ``apply_gradients`` (a wrapping optimizer's inner call is not a second step).
_local = threading.local()

#: The installed captures, newest last. A ``tf.function`` keeps the graph it traced, and with it
#: the host read of its tape's target: that read records into the newest capture installed when
#: the graph runs, so a function traced in one test records in the next one too.
_installed: list[KerasCapture] = []


def _depth(name: str) -> int:
    return int(getattr(_local, name, 0))


class _Patch:
    """One attribute set on a class, restored exactly: the class's own value put back, or
    deleted when the class only inherited it."""

    def __init__(self, owner: type, name: str, new: Any) -> None:
        self.owner, self.name, self.new = owner, name, new
        self.had = name in owner.__dict__
        self.old = owner.__dict__.get(name)
        setattr(owner, name, new)

    def undo(self) -> None:
        if self.owner.__dict__.get(self.name) is not self.new:
            return  # someone patched over us: leave theirs alone
        if self.had:
            setattr(self.owner, self.name, self.old)
        else:
            delattr(self.owner, self.name)


class KerasCapture:
    """What :func:`install` installed for one recorder, and what it counted.

    Example:
        >>> undo = install(recorder)
        >>> capture = undo.__self__          # the KerasCapture behind the undo
        >>> capture.gradient_calls, capture.optimizer_steps
        (0, 0)
    """

    def __init__(self, recorder: Recorder, owner: Recorder | None = None) -> None:
        self.recorder = recorder
        self.owner = owner
        self.active = False
        #: Targets of ``tape.gradient`` recorded (a traced call counts each run).
        self.gradient_calls = 0
        #: Fits that got the injected callback.
        self.injected_fits = 0
        #: Why something was not captured (also put into the evidence when there is one).
        self.notes: list[str] = []
        #: ``apply_gradients`` calls outside ``fit`` (a traced call counts each run).
        self.optimizer_steps = 0
        self._patches: list[_Patch] = []
        self._stopped = False

    # -- installing ---------------------------------------------------------------------------

    def install(self) -> None:
        import keras

        self.active = True
        _installed.append(self)
        self._patch_fit(keras)
        self._patch_apply_gradients(keras)
        try:
            import tensorflow as tf
        except ImportError:  # pragma: no cover - another Keras backend without TensorFlow
            return
        self._patch_gradient(tf)

    def undo(self) -> None:
        """Restore every patched method (idempotent, in the reverse order of patching).

        Example:
            >>> undo = install(recorder); undo(); undo()   # the second call does nothing
        """
        if not self.active:
            return
        self.active = False
        if self in _installed:
            _installed.remove(self)
        for patch in reversed(self._patches):
            patch.undo()
        self._patches.clear()

    # -- notes and steps ----------------------------------------------------------------------

    def note(self, message: str) -> None:
        """Say once why something was not captured: in :attr:`notes`, and in the recorder's
        evidence when it has one.

        Example:
            >>> capture.note("tf: a tape.gradient target was not recorded: ...")
        """
        if message in self.notes:
            return
        self.notes.append(message)
        ev = self.recorder.evidence
        if ev is not None and message not in ev.notes:
            ev.notes.append(message)

    # -- Model.fit ----------------------------------------------------------------------------

    def _patch_fit(self, keras: Any) -> None:
        model_cls = keras.Model
        original = model_cls.fit
        try:
            signature: inspect.Signature | None = inspect.signature(original)
        except (TypeError, ValueError):  # pragma: no cover - a fit without a signature
            signature = None
        capture = self

        def fit(model: Any, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True  # pytest shows the user's fit call, not this frame
            if not capture.active or signature is None:
                return original(model, *args, **kwargs)
            try:
                bound = signature.bind(model, *args, **kwargs)
            except TypeError:
                return original(model, *args, **kwargs)  # Keras says what is wrong
            arguments = bound.arguments
            if capture._prepare_fit(model, arguments):
                args, kwargs = bound.args[1:], bound.kwargs
            _local.fit = _depth("fit") + 1
            try:
                return original(model, *args, **kwargs)
            finally:
                _local.fit -= 1

        functools.update_wrapper(fit, original)
        self._patches.append(_Patch(model_cls, "fit", fit))

    def _prepare_fit(self, model: Any, arguments: dict[str, Any]) -> bool:
        """Add the recording callback to ``arguments`` (True) unless one is there already or
        the callbacks are a ``CallbackList`` (False); offer the reference levels."""
        from pytest_losstrend.capture.keras import make_callback

        callbacks = arguments.get("callbacks")
        if _has_losstrend(callbacks):
            return False
        if type(callbacks).__name__ == "CallbackList":
            self.note("keras: fit(callbacks=CallbackList(...)) is not captured automatically: "
                      "add losstrend.keras_callback() to the list")
            return False
        if callbacks is None:
            listed: list[Any] = []
        elif isinstance(callbacks, (list, tuple)):
            listed = list(callbacks)
        else:
            listed = [callbacks]
        self.recorder.framework = "keras"
        self._share_watcher(model)
        arguments["callbacks"] = [*listed, make_callback(self.recorder, strict=False)]
        self.injected_fits += 1
        try:
            self._offer_references(model, arguments)
        except Exception as exc:  # a reference level is a bonus: never break the fit for it
            self.note(f"keras: no reference level from fit's targets: {exc!r:.200}")
        return True

    def _share_watcher(self, model: Any) -> None:
        """A model the test watched itself (``losstrend.watch(model)`` on ``owner``) is not
        watched twice: the injected callback drives the test's own watcher."""
        if self.owner is None:
            return
        from pytest_losstrend.capture.keras_watch import KerasWatcher

        mine = self.recorder.watchers
        for w in self.owner.watchers:
            if isinstance(w, KerasWatcher) and w.model is model and w not in mine:
                mine.append(w)
                if self.recorder.evidence is None:
                    self.recorder.evidence = w.evidence

    def _offer_references(self, model: Any, arguments: dict[str, Any]) -> None:
        """The train (and eval) series' reference levels from the compiled loss and ``fit``'s
        targets, as ``losstrend.fit`` derives them (weaker than ``set_reference``)."""
        from pytest_losstrend.capture.recorder import BY_FIT

        if arguments.get("sample_weight") is not None or arguments.get("class_weight"):
            return  # weights change the loss's units
        y = arguments.get("y")
        if y is None or not hasattr(y, "shape") or not hasattr(y, "__len__"):
            return
        split = float(arguments.get("validation_split") or 0.0)
        train_y, val_y = y, None
        if split > 0:
            import math

            at = math.ceil(len(y) * (1.0 - split))
            train_y, val_y = y[:at], y[at:]
        self.recorder.offer_reference("train", None, train_y, by=BY_FIT,
                                      where="given to fit()", model=model)
        val = arguments.get("validation_data")
        if isinstance(val, (tuple, list)) and len(val) == 2 and hasattr(val[1], "__len__"):
            val_y = val[1]
        if val_y is not None and len(val_y):
            self.recorder.offer_reference("eval", None, val_y, by=BY_FIT,
                                          where="of fit()'s validation data", model=model)

    # -- GradientTape.gradient ----------------------------------------------------------------

    def _patch_gradient(self, tf: Any) -> None:
        tape_cls = tf.GradientTape
        original = tape_cls.gradient
        capture = self

        def gradient(tape: Any, target: Any, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            out = original(tape, target, *args, **kwargs)
            if capture.active and not _depth("fit"):
                capture._record_target(tf, target)
            return out

        functools.update_wrapper(gradient, original)
        self._patches.append(_Patch(tape_cls, "gradient", gradient))

    def _record_target(self, tf: Any, target: Any) -> None:
        """Record one gradient target (the sum of a non-scalar one); never raises but the
        recorder's stop."""
        from pytest_losstrend.capture.recorder import LossTrendStop

        if self._stopped:
            return
        try:
            flat = tf.nest.flatten(target)
            if not flat or not all(t.dtype.is_floating for t in flat):
                self.note("tf: a tape.gradient target that is not floating point was not "
                          "recorded")
                return
            if len(flat) == 1 and flat[0].shape.rank == 0:
                value = flat[0]
            else:
                self.note("tf: a tape.gradient target was not a scalar: its sum was recorded, "
                          "the loss TensorFlow differentiates")
                value = tf.add_n([tf.reduce_sum(tf.cast(t, tf.float32)) for t in flat])
            if tf.executing_eagerly():
                self.gradient_calls += 1
                self.recorder.record(value)
                return
            self._record_traced(tf, value)
        except LossTrendStop:
            self._stopped = True
            raise
        except Exception as exc:
            self.note(f"tf: a tape.gradient target was not recorded: {exc!r:.200}")

    def _record_traced(self, tf: Any, value: Any) -> None:
        """Inside a ``tf.function``: read the value on the host each time the function runs."""
        if _in_xla(tf):
            self.note("tf: tape.gradient inside a jit_compile=True function is not recorded: "
                      "return the loss and record it (losstrend.record(loss))")
            return
        def host(v: Any) -> None:
            # A stop cannot travel through the graph: the series just stops growing, and the
            # verdict at the end of the test fails it.
            from pytest_losstrend.capture.recorder import LossTrendStop

            capture = _installed[-1] if _installed else None
            if capture is None or capture._stopped:
                return
            capture.gradient_calls += 1
            try:
                capture.recorder.record(v)
            except LossTrendStop:
                capture._stopped = True

        tf.py_function(func=host, inp=[value], Tout=[])

    # -- Optimizer.apply_gradients ------------------------------------------------------------

    def _patch_apply_gradients(self, keras: Any) -> None:
        opt_cls = keras.optimizers.Optimizer
        original = opt_cls.apply_gradients
        capture = self

        def apply_gradients(optimizer: Any, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            if capture.active and not _depth("fit") and not _depth("apply"):
                capture._count_step()
            _local.apply = _depth("apply") + 1
            try:
                return original(optimizer, *args, **kwargs)
            finally:
                _local.apply -= 1

        functools.update_wrapper(apply_gradients, original)
        self._patches.append(_Patch(opt_cls, "apply_gradients", apply_gradients))

    def _count_step(self) -> None:
        tf = sys.modules.get("tensorflow")
        if tf is None or tf.executing_eagerly():  # another Keras backend: always eager
            self._step()
            return
        # Traced once, run many times: count on the host each time the graph runs.
        if _in_xla(tf):
            self.note("tf: optimizer steps inside a jit_compile=True function are not counted")
            return
        tf.py_function(func=_count_installed, inp=[], Tout=[])

    def _step(self) -> None:
        self.optimizer_steps += 1
        ev = self.recorder.evidence
        if ev is not None:
            ev.optimizer_steps += 1


def _count_installed() -> None:
    """One optimizer step inside a ``tf.function``, for the capture installed now."""
    if _installed:
        _installed[-1]._step()


def _in_xla(tf: Any) -> bool:
    from tensorflow.python.ops import control_flow_util

    return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


def _has_losstrend(callbacks: Any) -> bool:
    """Whether ``callbacks`` (a callback, a list or a ``CallbackList``) hold a losstrend
    recording callback."""
    if callbacks is None:
        return False
    items = getattr(callbacks, "callbacks", None)
    if items is None:
        items = callbacks if isinstance(callbacks, (list, tuple)) else [callbacks]
    return any(getattr(cb, "losstrend_recording", False) for cb in items)


def install(recorder: Recorder, *, owner: Recorder | None = None) -> Callable[[], None]:
    """Capture Keras ``fit`` and ``tf.GradientTape`` training into ``recorder`` until the
    returned undo is called.

    ``recorder`` is the staging :class:`~pytest_losstrend.capture.recorder.Recorder` of one
    test. The undo restores ``keras.Model.fit``, ``tf.GradientTape.gradient`` and
    ``keras.optimizers.Optimizer.apply_gradients`` exactly as they were; it is idempotent, so
    call it on every exit path. Installs nest: undo them in the reverse order. The undo is a
    bound method of the :class:`KerasCapture` that holds the counts and notes. ``owner`` is
    the test's own recorder, when there is one: a model it watches itself
    (``losstrend.watch(model)``) keeps that one watcher, driven by the injected callback.

    Example:
        >>> undo = install(recorder)
        >>> try:
        ...     model.fit(x, y, epochs=3, verbose=0)    # no callback passed
        ... finally:
        ...     undo()
        >>> len(recorder.losses()) == 3 * math.ceil(len(x) / 32)
        True
    """
    capture = KerasCapture(recorder, owner)
    try:
        capture.install()
    except BaseException:
        capture.undo()
        raise
    return capture.undo

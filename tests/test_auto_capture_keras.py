"""Automatic capture for Keras: ``auto_keras.install(recorder)`` around real training.

Real tiny models on sklearn's digits (an MLP, 64 -> 32 -> 10), no mocks. ``install`` is called
directly, as the plugin's glue calls it, so these tests do not depend on the glue.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

from pytest_losstrend.capture.auto_keras import KerasCapture, install
from pytest_losstrend.capture.recorder import Recorder
from pytest_losstrend.capture.seeding import release_seed, seed_everything

Arrays = tuple[np.ndarray, np.ndarray]
EPOCHS, BATCH = 3, 64


@pytest.fixture(scope="module")
def digits() -> Arrays:
    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype("float32"), y.astype("int64")


def _mlp(lr: float = 1e-3, seed: int = 0, cls: type[keras.Model] = keras.Model) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((64,))
    hidden = keras.layers.Dense(32, activation="relu")(inputs)
    model = cls(inputs, keras.layers.Dense(10)(hidden))
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _batches(n: int, batch: int = BATCH, epochs: int = EPOCHS) -> int:
    return epochs * math.ceil(n / batch)


@pytest.fixture
def captured() -> Iterator[tuple[Recorder, KerasCapture]]:
    """A recorder with the Keras capture installed for the test, undone after it."""
    recorder = Recorder()
    undo = install(recorder)
    try:
        yield recorder, undo.__self__  # type: ignore[attr-defined]
    finally:
        undo()


def _originals() -> tuple[Any, Any, Any]:
    return keras.Model.fit, tf.GradientTape.gradient, keras.optimizers.Optimizer.apply_gradients


# -- Model.fit -------------------------------------------------------------------------------------


def test_fit_is_captured_as_the_explicit_callback_records(digits: Arrays) -> None:
    x, y = digits
    auto = Recorder()
    undo = install(auto)
    try:
        _mlp().fit(x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0)
    finally:
        undo()
    twin = Recorder()
    _mlp().fit(x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0,
               callbacks=[twin.keras_callback()])
    assert len(auto.losses()) == _batches(len(x)) == 87
    assert auto.losses() == twin.losses()
    assert auto.framework == "keras"
    # Watched as the callback watches, and the reference level from fit's targets.
    assert auto.evidence is not None and auto.evidence.optimizer_steps == 87
    assert auto.references["train"].value == pytest.approx(math.log(10), abs=0.01)


def test_val_loss_goes_to_eval(captured: tuple[Recorder, KerasCapture], digits: Arrays) -> None:
    recorder, _ = captured
    x, y = digits
    _mlp().fit(x[:1400], y[:1400], epochs=EPOCHS, batch_size=BATCH, verbose=0,
               validation_data=(x[1400:], y[1400:]))
    assert len(recorder.losses()) == _batches(1400)
    assert len(recorder.losses("eval")) == EPOCHS
    assert "eval" in recorder.references


def test_validation_split_splits_the_reference_targets(
    captured: tuple[Recorder, KerasCapture], digits: Arrays
) -> None:
    recorder, _ = captured
    x, y = digits
    _mlp().fit(x, y, epochs=1, batch_size=BATCH, verbose=0, validation_split=0.25)
    at = math.ceil(len(x) * 0.75)
    assert len(recorder.losses()) == math.ceil(at / BATCH)
    assert recorder.reference_source("train", recorder.references["train"]) == (
        f"the {at} targets given to fit()")
    assert "eval" in recorder.references


@pytest.mark.parametrize("how", ["keyword-list", "keyword-tuple", "positional", "single"])
def test_a_losstrend_callback_passed_explicitly_is_not_duplicated(
    captured: tuple[Recorder, KerasCapture], digits: Arrays, how: str
) -> None:
    staging, capture = captured
    x, y = digits
    user = Recorder()
    cb = user.keras_callback()
    model = _mlp()
    if how == "keyword-list":
        model.fit(x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0, callbacks=[cb])
    elif how == "keyword-tuple":
        model.fit(x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0, callbacks=(cb,))
    elif how == "positional":
        model.fit(x, y, BATCH, EPOCHS, 0, [cb])
    else:
        model.fit(x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0, callbacks=cb)
    assert len(user.losses()) == 87
    assert staging.series_names == []
    assert capture.injected_fits == 0


def test_the_users_other_callbacks_still_run(
    captured: tuple[Recorder, KerasCapture], digits: Arrays
) -> None:
    recorder, _ = captured
    x, y = digits
    seen: list[int] = []
    counter = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(epoch))
    history = _mlp().fit(x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0, callbacks=[counter])
    assert seen == [0, 1, 2]
    assert len(history.history["loss"]) == EPOCHS
    assert len(recorder.losses()) == 87


class GuideModel(keras.Model):
    """The Keras guide's custom ``train_step``: its own tape, inside ``fit``."""

    def train_step(self, data: Any) -> dict[str, Any]:
        x, y = data
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(y=y, y_pred=y_pred)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=True))
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
            else:
                metric.update_state(y, y_pred)
        return {m.name: m.result() for m in self.metrics}


@pytest.mark.parametrize("eager", [False, True], ids=["graph", "run_eagerly"])
def test_tapes_inside_fit_are_not_recorded_twice(
    captured: tuple[Recorder, KerasCapture], digits: Arrays, eager: bool
) -> None:
    recorder, capture = captured
    x, y = digits
    model = _mlp(cls=GuideModel)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=eager,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=2, batch_size=BATCH, verbose=0)
    assert len(recorder.losses()) == _batches(len(x), epochs=2)
    assert capture.gradient_calls == 0 and capture.optimizer_steps == 0


class OwnFit(keras.Model):
    """A subclass whose ``fit`` adds a default and calls ``super().fit``: captured."""

    def fit(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("verbose", 0)
        return super().fit(*args, **kwargs)


class TapeFit(keras.Model):
    """A subclass whose ``fit`` is a loop of its own, never Keras': captured by its tapes."""

    def fit(self, x: Any, y: Any, epochs: int = 1, batch_size: int = 32, **_: Any) -> None:
        for _epoch in range(epochs):
            for i in range(0, len(x), batch_size):
                with tf.GradientTape() as tape:
                    loss = self.loss(y[i : i + batch_size], self(x[i : i + batch_size]))
                grads = tape.gradient(loss, self.trainable_variables)
                self.optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=True))


@pytest.mark.parametrize("cls", [OwnFit, TapeFit])
def test_a_subclass_with_its_own_fit_is_captured(
    captured: tuple[Recorder, KerasCapture], digits: Arrays, cls: type[keras.Model]
) -> None:
    recorder, capture = captured
    x, y = digits
    _mlp(cls=cls).fit(x, y, epochs=EPOCHS, batch_size=BATCH)
    assert len(recorder.losses()) == 87
    if cls is TapeFit:
        assert capture.gradient_calls == 87 and capture.optimizer_steps == 87


def test_logs_without_loss_record_nothing_and_do_not_stop_the_fit(
    captured: tuple[Recorder, KerasCapture], digits: Arrays
) -> None:
    class Renamed(GuideModel):
        def train_step(self, data: Any) -> dict[str, Any]:
            logs = super().train_step(data)
            return {"total": logs["loss"]}

    recorder, _ = captured
    x, y = digits
    history = _mlp(cls=Renamed).fit(x, y, epochs=2, batch_size=BATCH, verbose=0)
    assert len(history.history["total"]) == 2
    assert recorder.losses() == []
    assert recorder.evidence is not None
    assert any("loss_key='total'" in n for n in recorder.evidence.notes)


# -- tf.GradientTape -------------------------------------------------------------------------------


def _tape_model() -> tuple[keras.Model, Any, keras.optimizers.Optimizer]:
    model = _mlp()
    return model, keras.losses.SparseCategoricalCrossentropy(from_logits=True), \
        keras.optimizers.SGD(0.1)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "tf.function"])
def test_a_gradient_tape_loop_records_each_gradient_call(
    captured: tuple[Recorder, KerasCapture], digits: Arrays, compiled: bool
) -> None:
    recorder, capture = captured
    x, y = digits
    model, loss_fn, opt = _tape_model()

    def step(xb: Any, yb: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    run = tf.function(step) if compiled else step
    losses = [float(run(x[i : i + BATCH], y[i : i + BATCH])) for i in range(0, 640, BATCH)]
    assert recorder.losses() == pytest.approx(losses, rel=1e-6)
    assert capture.gradient_calls == 10
    assert capture.optimizer_steps == 10


def test_a_tf_function_traced_in_one_test_records_in_the_next(digits: Arrays) -> None:
    x, y = digits
    model, loss_fn, opt = _tape_model()

    @tf.function
    def step(xb: Any, yb: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    first, second = Recorder(), Recorder()
    undo = install(first)
    step(x[:BATCH], y[:BATCH])  # traced here, under the first capture
    undo()
    step(x[:BATCH], y[:BATCH])  # nothing installed: recorded nowhere
    undo = install(second)
    try:
        losses = [float(step(x[:BATCH], y[:BATCH])) for _ in range(3)]
    finally:
        undo()
    assert len(first.losses()) == 1
    assert second.losses() == pytest.approx(losses, rel=1e-6)
    assert undo.__self__.optimizer_steps == 3  # type: ignore[attr-defined]


def test_a_non_scalar_target_is_recorded_as_its_sum(
    captured: tuple[Recorder, KerasCapture]
) -> None:
    recorder, capture = captured
    w = tf.Variable([1.0, 2.0, 3.0])
    with tf.GradientTape() as tape:
        per_row = w * w
    tape.gradient(per_row, w)
    assert recorder.losses() == [14.0]
    assert any("not a scalar" in n for n in capture.notes)


# -- undo ------------------------------------------------------------------------------------------


def test_undo_restores_the_methods_exactly_and_is_idempotent(digits: Arrays) -> None:
    before = _originals()
    had = "fit" in keras.Model.__dict__
    undo = install(Recorder())
    assert _originals() != before
    undo()
    undo()
    assert all(a is b for a, b in zip(_originals(), before, strict=True))
    assert ("fit" in keras.Model.__dict__) == had


def test_undo_restores_after_an_exception_inside_fit(digits: Arrays) -> None:
    x, y = digits
    before = _originals()

    class Boom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            raise RuntimeError("boom")

    recorder = Recorder()
    undo = install(recorder)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            _mlp().fit(x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0, callbacks=[Boom()])
    finally:
        undo()
    assert all(a is b for a, b in zip(_originals(), before, strict=True))
    # The failed fit left no "inside fit" state behind: a tape loop is recorded again.
    again = Recorder()
    undo = install(again)
    try:
        w = tf.Variable(2.0)
        with tf.GradientTape() as tape:
            loss = w * w
        tape.gradient(loss, w)
    finally:
        undo()
    assert again.losses() == [4.0]


def test_nothing_is_recorded_after_undo(digits: Arrays) -> None:
    x, y = digits
    recorder = Recorder()
    install(recorder)()
    _mlp().fit(x[:256], y[:256], epochs=1, batch_size=BATCH, verbose=0)
    w = tf.Variable(2.0)
    with tf.GradientTape() as tape:
        loss = w * w
    tape.gradient(loss, w)
    assert recorder.series_names == []


def test_importing_auto_keras_imports_no_framework() -> None:
    code = ("import sys, pytest_losstrend.capture.auto_keras; "
            "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


# -- the whole flow judges right ------------------------------------------------------------------


def _judged(fit: Callable[[Recorder], None], seed: int) -> Any:
    """Fit under the capture, seeded as the plugin seeds a marked test (so Keras reshuffles
    its batches every epoch), and judge what was captured."""
    recorder = Recorder()
    seed_everything(seed)
    undo = install(recorder)
    try:
        fit(recorder)
    finally:
        undo()
        release_seed()
    return recorder.diagnosed(recorder.judgment())


SEEDS = [0, 1, 2]


@pytest.mark.parametrize("seed", SEEDS)
def test_a_healthy_fit_passes(digits: Arrays, seed: int) -> None:
    x, y = digits
    verdict = _judged(
        lambda r: _mlp(seed=seed).fit(x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0), seed)
    assert verdict.ok, verdict.reason


@pytest.mark.parametrize("seed", SEEDS)
def test_adam_at_lr_10_fails(digits: Arrays, seed: int) -> None:
    x, y = digits
    verdict = _judged(
        lambda r: _mlp(lr=10.0, seed=seed).fit(x, y, epochs=EPOCHS, batch_size=BATCH,
                                               verbose=0), seed)
    assert not verdict.ok, verdict.reason
    assert verdict.diagnoses[0].cause == "lr_too_high"


@pytest.mark.parametrize("seed", SEEDS)
def test_shuffled_labels_fail_at_chance_level(digits: Arrays, seed: int) -> None:
    x, y = digits
    shuffled = np.random.default_rng(seed).permutation(y)
    verdict = _judged(
        lambda r: _mlp(seed=seed).fit(x, shuffled, epochs=EPOCHS, batch_size=BATCH, verbose=0),
        seed)
    assert not verdict.ok, verdict.reason
    assert verdict.diagnoses[0].cause == "chance_level"


def test_a_model_the_test_watched_itself_is_not_watched_twice(digits: Arrays) -> None:
    x, y = digits
    owner, staging = Recorder(), Recorder()
    model = owner.watch(_mlp())
    undo = install(staging, owner=owner)
    try:
        model.fit(x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0)
    finally:
        undo()
    assert staging.watchers == owner.watchers
    assert staging.evidence is owner.evidence
    assert owner.evidence is not None and owner.evidence.optimizer_steps == 87
    assert len(staging.losses()) == 87

"""Keras 3 support: a callback that records each batch's own loss.

Keras 3 reports ``logs["loss"]`` in ``on_train_batch_end`` as the running mean over the epoch so
far, weighted by batch size. A test that records it sees a smoothed curve whose noise shrinks
along each epoch and jumps at every epoch boundary. The callback recovers each batch's own
loss instead from the running means and the tracker's ``count``, read twice an epoch: exact,
whatever the size of the last batch.

Which tracker, if any, is behind the logged value (``logs[loss_key]``, ``"loss"`` by default) is
found once per fit by value, not by name: the mean-keeping metrics (``count`` and ``result``:
the compiled loss tracker, a custom ``train_step``'s ``keras.metrics.Mean``) are read after the
first two batches, and the one whose running mean equals the logged value both times is undone
with its own weights (rows, or one per batch for a Mean of batch losses). Keras passes what a
custom ``train_step`` returns to the callbacks unchanged, so when no tracker matches, the step
returned each batch's own loss, and it is recorded as it is. Logs without the key stop the fit
with an error naming the keys they hold (the callback that automatic capture injects,
``strict=False``, lets the fit run and leaves a note in the evidence instead).

The series is recorded at the end of each epoch, so Keras can keep dispatching batch hooks
asynchronously; a non-finite or diverging loss stops training within a batch or two, and the
test at the end of that epoch.

The callback also watches its model for diagnosis (a :class:`~.keras_watch.KerasWatcher`, the
one ``losstrend.watch(model)`` made if there is one): at the start of ``fit``, at the end of
every epoch and at the end of ``fit``, never per batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pytest_losstrend.capture.keras_watch import KerasWatcher
    from pytest_losstrend.diagnosis.evidence import Evidence


class Recording(Protocol):
    """What the callback needs of the object it records into (the fixture's object, a
    :class:`~pytest_losstrend.capture.recorder.Recorder`): a Protocol, since the recorder
    imports this module to make the callback."""

    fail_fast: bool
    evidence: Evidence | None

    @property
    def watchers(self) -> list[Any]: ...

    def record(self, value: Any, *, series: str = "train") -> None: ...

    def watch(
        self, model: Any, optimizer: Any = None, *, loss_fn: Any = None, batch: Any = None
    ) -> Any: ...


# (count, result) of mean-keeping metrics, keyed by the metric's id.
Reading = dict[int, tuple[float, float]]


def _import_keras() -> Any:
    try:
        import keras
    except ModuleNotFoundError:  # pragma: no cover - depends on the environment
        raise ModuleNotFoundError(
            "losstrend.keras_callback() needs Keras 3: pip install 'pytest-losstrend[tensorflow]'"
        ) from None
    return keras


def check_loss_key(loss_key: object) -> str:
    """``loss_key`` if it can name the training loss in Keras' batch logs; else a clear error.

    Example:
        >>> check_loss_key("total_loss")
        'total_loss'
    """
    if not isinstance(loss_key, str):
        raise TypeError(
            f"keras_callback(loss_key=...) takes the name of a key in the training logs (a "
            f"str, such as 'total_loss'), got {type(loss_key).__name__}: {loss_key!r:.80}"
        )
    if not loss_key.strip():
        raise ValueError(
            "keras_callback(loss_key=...) must name a key in the training logs, such as "
            "'total_loss'; got an empty string"
        )
    if loss_key.startswith("val_"):
        raise ValueError(
            f"keras_callback(loss_key={loss_key!r}) names a validation key; pass the training "
            f"key ({loss_key[4:]!r}): the callback records its 'val_' twin as the eval series"
        )
    return loss_key


def missing_key_message(loss_key: str, keys: list[str]) -> str:
    """What to say when the batch logs hold no ``loss_key``: the keys seen and the fix.

    Example:
        >>> missing_key_message("loss", ["kl", "total_loss"])  # doctest: +ELLIPSIS
        "losstrend.keras_callback(): Keras' training logs have no 'loss' (they hold 'kl', ...
    """
    have = ", ".join(map(repr, keys)) or "nothing: train_step returned an empty dict"
    lossy = [k for k in keys if "loss" in k.lower()]
    suggest = (lossy or keys or ["<the key of your loss>"])[0]
    return (
        f"losstrend.keras_callback(): Keras' training logs have no {loss_key!r} (they hold "
        f"{have}). A custom train_step that returns its loss under another name needs the "
        f"callback pointed at it: losstrend.keras_callback(loss_key={suggest!r})"
    )


def make_callback(
    lt: Recording,
    series: str = "train",
    eval_series: str = "eval",
    *,
    loss_key: str = "loss",
    strict: bool = True,
) -> Any:
    """Build the recording callback for ``lt`` (see ``LossTrend.keras_callback``).

    With ``strict=False`` (automatic capture: the user never asked for it), logs without
    ``loss_key`` record nothing and leave a note in the evidence, instead of stopping the fit.

    Example:
        >>> model.fit(x, y, callbacks=[make_callback(recorder, strict=False)], verbose=0)
    """
    keras = _import_keras()
    loss_key = check_loss_key(loss_key)
    val_key = f"val_{loss_key}"

    class LossTrendCallback(keras.callbacks.Callback):  # type: ignore[misc,name-defined]
        """Records each batch's own training loss, and its validation twin per epoch."""

        # Keras runs the batch-end hooks of async-safe callbacks in a worker thread, so that
        # training does not wait for the logs to reach the host. The hook below only appends
        # to a list (atomic under the GIL); the losses are worked out at the end of the epoch.
        async_safe = True
        #: Tells automatic capture that a losstrend callback is in a fit's callbacks already.
        losstrend_recording = True

        def __init__(self) -> None:
            super().__init__()
            self.loss_key = loss_key
            self._trackers: list[Any] = []
            self._tracker: Any = None
            self._decided = False
            self._weight: float | None = None
            # (index of the batch whose log it matches, (count, result) of each tracker by id)
            self._snaps: list[tuple[int, Reading]] = []
            self._end: Reading | None = None
            self._means: list[tuple[int, float]] = []
            self._first: float | None = None
            self._missing: list[str] | None = None
            self._in_epoch = False
            self._watcher: KerasWatcher | None = None

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            # Every mean-keeping metric may be the one behind the logged loss: the compiled
            # loss tracker, or a custom train_step's own keras.metrics.Mean, whatever its name
            # (the Keras VAE guide logs "loss" from a Mean named "total_loss").
            found = [getattr(self.model, "_loss_tracker", None)]
            found += list(getattr(self.model, "metrics", []))
            self._trackers = []
            for t in found:
                usable = t is not None and hasattr(t, "count") and hasattr(t, "result")
                if usable and all(t is not k for k in self._trackers):
                    self._trackers.append(t)
            self._tracker, self._decided, self._weight, self._first = None, False, None, None
            self._missing = None
            self._watcher = _watcher_for(lt, self.model)
            _call(self._watcher, "on_train_begin")

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self._means = []
            self._end = None
            self._snaps = []
            self._in_epoch = True

        def _read(self) -> Reading:
            """(count, running mean) of each tracker still in the running, read now. A metric
            whose count or result is no scalar (a MeanTensor, a custom metric) drops out."""
            out: Reading = {}
            for t in self._trackers:
                try:
                    out[id(t)] = (_scalar(t.count), _scalar(t.result()))
                except Exception:
                    continue
            self._trackers = [t for t in self._trackers if id(t) in out]
            return out

        def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            if self._decided or batch == 0 or len(self._snaps) == 2:
                return
            # Twice in the first epoch, synchronously: the trackers as the previous batch left
            # them. At the epoch's end, the tracker whose running mean is the logged value
            # both times and at the end is the one to undo; none means train_step returns the
            # batch's loss itself.
            self._snaps.append((batch - 1, self._read()))

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            if not logs or loss_key not in logs:
                if self._missing is None:
                    self._missing = sorted(logs or {})
                    # Nothing to record: stop now; the epoch's end raises the error.
                    if strict:
                        self.model.stop_training = True
                return
            mean = float(logs[loss_key])
            self._means.append((batch, mean))
            if self._first is None:
                self._first = mean
            # A running mean that is non-finite or far past the first loss means some batch
            # went there: stop training; the epoch's end records the losses and stops the test.
            if lt.fail_fast and (mean - mean or (self._first > 0 and mean > self._first * 1e4)):
                self.model.stop_training = True

        def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
            # Validation inside fit resets the trackers: read them before it does.
            if self._in_epoch and self._end is None:
                self._end = self._read()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self._in_epoch = False
            try:
                self._record_epoch(logs)
            finally:
                # After recording: a custom compute_loss may update the loss tracker, whose
                # count the recording reads. Also when recording stops the test, since the last
                # epoch's updates are the telling ones.
                _call(self._watcher, "on_epoch_end", epoch)

        def _decide(self, means: list[tuple[int, float]], end: Reading) -> None:
            """Find the tracker behind the logged loss: the one whose running mean was the
            logged value after the first two batches and at the epoch's end. Undecided after
            an epoch of one batch (its value is that batch's loss either way)."""
            by_batch = dict(means)
            readings = [*self._snaps, (means[-1][0], end)]
            logged = [by_batch.get(b) for b, _ in readings]
            if len({b for b, _ in readings}) < 2 or not all(
                m is not None and _finite(m) for m in logged
            ):
                return  # nothing to tell by yet: try again next epoch
            self._decided = True
            first = readings[0][1]
            for t in self._trackers:
                got = [r.get(id(t)) for _, r in readings]
                if any(g is None for g in got):
                    continue
                counts = [g[0] for g in got if g is not None]
                match = all(
                    g is not None and m is not None and _close(g[1], m)
                    for g, m in zip(got, logged, strict=True)
                )
                # Its count must move every batch: a tracker the step does not update whose
                # value happens to equal the logged one is not it.
                if match and 0 < counts[0] < counts[1]:
                    self._tracker, self._weight, self._trackers = t, first[id(t)][0], [t]
                    return
            self._trackers = []

        def _record_epoch(self, logs: dict[str, Any] | None) -> None:
            if self._missing is not None:
                message = missing_key_message(loss_key, self._missing)
                if strict:
                    raise LookupError(message)
                self._means = []
                watched = self._watcher
                if watched is not None and message not in watched.evidence.notes:
                    watched.evidence.notes.append(message)
                return
            means, self._means = sorted(self._means), []
            if means:
                end = self._end if self._end is not None else self._read()
                if not self._decided:
                    self._decide(means, end)
                tracker = self._tracker
                end_count = end[id(tracker)][0] if id(tracker) in end else 0.0
                losses = _batch_losses([m for _, m in means], self._weight, end_count,
                                       raw=tracker is None)
                watched = self._watcher
                if watched is not None and watched.evidence.first_loss is None and losses:
                    watched.evidence.first_loss = losses[0]
                for loss in losses:
                    lt.record(loss, series=series)
            if logs and val_key in logs:
                lt.record(float(logs[val_key]), series=eval_series)

        def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
            _call(self._watcher, "on_train_end")

    return LossTrendCallback()


def _scalar(value: Any) -> float:
    """A float from a Keras variable or backend scalar, read without numpy's copy warning."""
    from pytest_losstrend.capture.keras_signals import _to_numpy

    return float(_to_numpy(value))


def _finite(*values: float) -> bool:
    return all(v - v == 0 for v in values)


def _close(a: float, b: float) -> bool:
    # The callback and the train step compute the same float32 division; allow for rounding.
    return abs(a - b) <= 1e-5 * max(abs(a), abs(b), 1e-12)


def _watcher_for(lt: Recording, model: Any) -> KerasWatcher | None:
    """The recorder's watcher of ``model``, created (as ``lt.watch(model)`` would) if none."""
    from pytest_losstrend.capture.keras_watch import KerasWatcher

    if model is None:
        return None
    for w in lt.watchers:
        if isinstance(w, KerasWatcher) and w.model is model:
            return w
    try:
        lt.watch(model)
    except Exception as exc:  # diagnosis is a bonus: never break the user's fit for it
        if lt.evidence is not None:
            lt.evidence.notes.append(f"keras: model not watched: {exc!r:.200}")
        return None
    w = lt.watchers[-1]
    return w if isinstance(w, KerasWatcher) else None


def _call(watcher: KerasWatcher | None, hook: str, *args: Any) -> None:
    """Run a watcher hook; a failure becomes a note in the evidence, never a failed fit."""
    if watcher is None:
        return
    try:
        getattr(watcher, hook)(*args)
    except Exception as exc:
        watcher.evidence.notes.append(f"keras: watcher {hook} failed: {exc!r:.200}")


def _batch_losses(
    means: list[float], weight: float | None, end_count: float, *, raw: bool
) -> list[float]:
    """Each batch's own loss from an epoch's running means.

    Every batch but the last weighs ``weight``; the last weighs what is left of ``end_count``.
    """
    if raw or len(means) == 1:
        return list(means)
    w = weight or 1.0
    weights = [w] * len(means)
    last = end_count - w * (len(means) - 1)
    if 0 < last <= w * (1 + 1e-9):
        weights[-1] = last
    out: list[float] = []
    prev_mean = prev_count = 0.0
    for mean, wk in zip(means, weights, strict=True):
        count = prev_count + wk
        out.append((mean * count - prev_mean * prev_count) / wk)
        prev_mean, prev_count = mean, count
    return out

"""Keras 3 support: a callback that records each batch's own loss.

Keras 3 reports ``logs["loss"]`` in ``on_train_batch_end`` as the running mean over the epoch so
far, weighted by batch size. A test that records it sees a smoothed curve whose noise shrinks
along each epoch and jumps at every epoch boundary. The callback recovers each batch's own
loss instead from the running means and the tracker's ``count`` (of the compiled loss tracker,
or of a metric named ``"loss"`` in a custom ``train_step``), read twice an epoch: exact,
whatever the size of the last batch. A custom ``train_step`` that returns the batch's loss
directly is recorded as it is. The series is recorded at the end of each epoch, so Keras can
keep dispatching batch hooks asynchronously; a non-finite or diverging loss stops training
within a batch or two, and the test at the end of that epoch.

The callback also watches its model for diagnosis (a :class:`~.keras_watch.KerasWatcher`, the
one ``losstrend.watch(model)`` made if there is one): at the start of ``fit``, at the end of
every epoch and at the end of ``fit``, never per batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..fixture import LossTrend
    from .keras_watch import KerasWatcher


def _import_keras() -> Any:
    try:
        import keras
    except ModuleNotFoundError:  # pragma: no cover - depends on the environment
        raise ModuleNotFoundError(
            "losstrend.keras_callback() needs Keras 3: pip install 'pytest-losstrend[tensorflow]'"
        ) from None
    return keras


def make_callback(lt: LossTrend, series: str = "train", eval_series: str = "eval") -> Any:
    """Build the recording callback for ``lt`` (see ``LossTrend.keras_callback``)."""
    keras = _import_keras()

    class LossTrendCallback(keras.callbacks.Callback):  # type: ignore[misc,name-defined]
        """Records each batch's own training loss, and ``val_loss`` per epoch."""

        # Keras runs the batch-end hooks of async-safe callbacks in a worker thread, so that
        # training does not wait for the logs to reach the host. The hook below only appends
        # to a list (atomic under the GIL); the losses are worked out at the end of the epoch.
        async_safe = True

        def __init__(self) -> None:
            super().__init__()
            self._trackers: list[Any] = []
            self._tracker: Any = None
            self._raw = False
            self._weight: float | None = None
            self._end_count: float | None = None
            self._means: list[tuple[int, float]] = []
            self._first: float | None = None
            self._watcher: KerasWatcher | None = None

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            # The compiled loss tracker first; then any metric named "loss", which is what a
            # custom train_step following the Keras guide keeps.
            found = [getattr(self.model, "_loss_tracker", None)]
            found += [m for m in getattr(self.model, "metrics", []) if m.name == "loss"]
            self._trackers = []
            for t in found:
                usable = t is not None and hasattr(t, "count")
                if usable and all(t is not k for k in self._trackers):
                    self._trackers.append(t)
            self._tracker, self._raw, self._weight, self._first = None, False, None, None
            self._watcher = _watcher_for(lt, self.model)
            _call(self._watcher, "on_train_begin")

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self._means = []
            self._end_count = None

        def _count(self) -> float:
            return float(self._tracker.count.numpy()) if self._tracker is not None else 0.0

        def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            if self._weight is not None or self._raw or batch == 0:
                return
            # Once per fit, synchronously: the tracker's count after the first batch is the
            # weight Keras gives every full batch (its size).
            for t in self._trackers:
                count = float(t.count.numpy())
                if count > 0:
                    self._tracker, self._weight = t, count
                    return
            # No running tracker moved: a custom train_step that returns the batch's loss.
            self._raw = True

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            if not logs or "loss" not in logs:
                return
            mean = float(logs["loss"])
            self._means.append((batch, mean))
            if self._first is None:
                self._first = mean
            # A running mean that is non-finite or far past the first loss means some batch
            # went there: stop training; the epoch's end records the losses and stops the test.
            if lt.fail_fast and (mean - mean or (self._first > 0 and mean > self._first * 1e4)):
                self.model.stop_training = True

        def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
            # Validation inside fit resets the loss tracker: take the epoch's count first.
            if self._end_count is None and self._means:
                self._end_count = self._count()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            try:
                self._record_epoch(logs)
            finally:
                # After recording: a custom compute_loss may update the loss tracker, whose
                # count the recording reads. Also when recording stops the test, since the last
                # epoch's updates are the telling ones.
                _call(self._watcher, "on_epoch_end", epoch)

        def _record_epoch(self, logs: dict[str, Any] | None) -> None:
            means, self._means = sorted(self._means), []
            if means:
                end_count = self._end_count if self._end_count is not None else self._count()
                losses = _batch_losses([m for _, m in means], self._weight, end_count,
                                       raw=self._raw or self._tracker is None)
                watched = self._watcher
                if watched is not None and watched.evidence.first_loss is None and losses:
                    watched.evidence.first_loss = losses[0]
                for loss in losses:
                    lt.record(loss, series=series)
            if logs and "val_loss" in logs:
                lt.record(float(logs["val_loss"]), series=eval_series)

        def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
            _call(self._watcher, "on_train_end")

    return LossTrendCallback()


def _watcher_for(lt: LossTrend, model: Any) -> KerasWatcher | None:
    """The LossTrend's watcher of ``model``, created (as ``lt.watch(model)`` would) if none."""
    from .keras_watch import KerasWatcher

    if model is None:
        return None
    for w in lt._watchers:
        if isinstance(w, KerasWatcher) and w.model is model:
            return w
    try:
        lt.watch(model)
    except Exception as exc:  # diagnosis is a bonus: never break the user's fit for it
        if lt.evidence is not None:
            lt.evidence.notes.append(f"keras: model not watched: {exc!r:.200}")
        return None
    w = lt._watchers[-1]
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

"""Keras 3 support: a callback that records each batch's own loss.

Keras 3 reports ``logs["loss"]`` in ``on_train_batch_end`` as the running mean over the epoch so
far, weighted by batch size. A test that records it sees a smoothed curve whose noise shrinks
along each epoch and jumps at every epoch boundary. The callback recovers each batch's own
loss instead from the running mean and the tracker's ``count`` (of the compiled loss tracker,
or of a metric named ``"loss"`` in a custom ``train_step``): exact, whatever the batch sizes.
A custom ``train_step`` that returns the batch's loss directly is recorded as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..fixture import LossTrend


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

        def __init__(self) -> None:
            super().__init__()
            self._trackers: list[Any] = []
            self._tracker: Any = None
            self._raw = False
            self._weight: float | None = None
            self._steps: int | None = None
            self._mean = 0.0
            self._count = 0.0

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
            self._tracker, self._raw, self._weight = None, False, None
            steps = (self.params or {}).get("steps")
            self._steps = int(steps) if steps else None

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self._mean = self._count = 0.0

        def _read_count(self) -> float | None:
            if self._tracker is None:
                for t in self._trackers:
                    if float(t.count.numpy()) > 0:
                        self._tracker = t
                        break
                else:
                    return None
            return float(self._tracker.count.numpy())

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            if not logs or "loss" not in logs:
                return
            mean = float(logs["loss"])
            if self._raw:
                lt.record(mean, series=series)
                return
            # The logged loss is the tracker's total / count. Every batch of an epoch but the
            # last has the same weight (its size), learnt from the first batch, so the count
            # is read from the tracker only at the first and the last batch of an epoch:
            # reading it costs about as much as a small model's whole step.
            last = self._steps is None or batch + 1 >= self._steps
            if self._weight is not None and not last:
                count = self._count + self._weight
            else:
                read = self._read_count()
                if read is None:
                    # No running tracker: a custom train_step that returns the batch's loss.
                    self._raw = True
                    lt.record(mean, series=series)
                    return
                count = read
                if count < self._count:
                    self._mean = self._count = 0.0
                if self._weight is None and count > self._count:
                    self._weight = count - self._count
            weight = count - self._count
            if weight <= 0:
                return
            lt.record((mean * count - self._mean * self._count) / weight, series=series)
            self._mean, self._count = mean, count

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if logs and "val_loss" in logs:
                lt.record(float(logs["val_loss"]), series=eval_series)

    return LossTrendCallback()

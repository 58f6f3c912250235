"""Keras 3 support: a callback that records each batch's own loss.

Keras 3 reports ``logs["loss"]`` in ``on_train_batch_end`` as the running mean over the epoch so
far, weighted by batch size. A test that records it sees a smoothed curve whose noise shrinks
along each epoch and jumps at every epoch boundary. The callback recovers each batch's own
loss instead from the running sums (``total`` and ``count``) of the loss tracker, or of a
metric named ``"loss"`` in a custom ``train_step``: exact, whatever the batch sizes. A custom
``train_step`` that returns the batch's loss directly is recorded as it is.
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
            self._last: dict[int, tuple[float, float]] = {}

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            # The compiled loss tracker first; then any metric named "loss", which is what a
            # custom train_step following the Keras guide keeps.
            found = [getattr(self.model, "_loss_tracker", None)]
            found += [m for m in getattr(self.model, "metrics", []) if m.name == "loss"]
            self._trackers = []
            for t in found:
                usable = t is not None and hasattr(t, "total") and hasattr(t, "count")
                if usable and all(t is not k for k in self._trackers):
                    self._trackers.append(t)
            self._last = {}

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            for tracker in self._trackers:
                total = float(tracker.total.numpy())
                count = float(tracker.count.numpy())
                prev_total, prev_count = self._last.get(id(tracker), (0.0, 0.0))
                if count < prev_count:
                    # Keras reset the tracker at an epoch boundary.
                    prev_total, prev_count = 0.0, 0.0
                self._last[id(tracker)] = (total, count)
                weight = count - prev_count
                if weight > 0:
                    lt.record((total - prev_total) / weight, series=series)
                    return
            # No running tracker moved: a custom train_step that returns the batch's loss.
            if logs and "loss" in logs:
                lt.record(float(logs["loss"]), series=series)

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if logs and "val_loss" in logs:
                lt.record(float(logs["val_loss"]), series=eval_series)

    return LossTrendCallback()

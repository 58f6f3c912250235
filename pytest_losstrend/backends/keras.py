"""Keras 3 support: a callback that records each batch's own loss.

Keras 3 reports ``logs["loss"]`` in ``on_train_batch_end`` as the running mean over the epoch so
far, weighted by batch size. A test that records it sees a smoothed curve whose noise shrinks
along each epoch and jumps at every epoch boundary. The callback recovers each batch's own
loss instead: from the loss tracker's running sums when the model has one (exact, whatever the
batch sizes), else by differencing the running mean under equal batch weights.
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
            self._total = 0.0
            self._count = 0.0
            self._mean = 0.0
            self._batches = 0
            self._tracker: Any = None

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            tracker = getattr(self.model, "_loss_tracker", None)
            ok = tracker is not None and hasattr(tracker, "total") and hasattr(tracker, "count")
            self._tracker = tracker if ok else None

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self._total = self._count = self._mean = 0.0
            self._batches = 0

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            if self._tracker is not None:
                total = float(self._tracker.total.numpy())
                count = float(self._tracker.count.numpy())
                weight = count - self._count
                if weight > 0:
                    lt.record((total - self._total) / weight, series=series)
                    self._total, self._count = total, count
                    return
            if not logs or "loss" not in logs:
                return
            # Equal-weight fallback: mean_k * k - mean_{k-1} * (k - 1) is batch k's loss.
            mean = float(logs["loss"])
            k = self._batches + 1
            lt.record(mean * k - self._mean * (k - 1), series=series)
            self._mean, self._batches = mean, k

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if logs and "val_loss" in logs:
                lt.record(float(logs["val_loss"]), series=eval_series)

    return LossTrendCallback()

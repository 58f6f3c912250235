"""The ``losstrend`` fixture object: records loss series, judges them, and trains with ``fit``.

Built in layers: the recording core is :class:`pytest_losstrend.capture.recorder.Recorder`, the
training loop :class:`pytest_losstrend.catalogue.fit.FitRecorder`; this module names the result
for users. Imported only when a test asks for the fixture, so a suite that never uses it pays
nothing.
"""

from __future__ import annotations

from pytest_losstrend.capture.recorder import LossTrendStop
from pytest_losstrend.catalogue.fit import FitRecorder

__all__ = ["LossTrend", "LossTrendStop"]


class LossTrend(FitRecorder):
    """Records loss series during a test and judges them.

    Use it through the ``losstrend`` fixture, usually with the ``loss_decreases`` marker:

    Example:
        >>> import pytest
        >>> @pytest.mark.loss_decreases(min_drop=0.2)
        ... def test_trains(losstrend):
        ...     for step in range(50):
        ...         loss = train_step()          # a torch / tf tensor or a float
        ...         losstrend.record(loss)

    Without the marker, judge explicitly with :meth:`check` or :meth:`assert_decreases`.
    """

"""Automatic capture: the marker alone records the loss and watches the training.

:class:`AutoCapture` installs, for the duration of one test body, a backend per framework the
test has imported: :mod:`.auto_torch` when torch is in ``sys.modules`` when capture starts, and
``auto_keras`` (when that module exists) when keras or tensorflow is. Each backend records into
a staging :class:`~pytest_losstrend.capture.recorder.Recorder` and returns an undo; :meth:`stop`
runs every undo, whatever happened in between, so nothing patched outlives the test. The glue
then lets the test's own recorder adopt the staging one when the test recorded nothing itself
(:meth:`Recorder.adopt <pytest_losstrend.capture.recorder.Recorder.adopt>`).

Nothing here imports a framework: a backend is imported only when its framework already is.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_losstrend.capture.recorder import Recorder

Undo = Callable[[], None]


class AutoCapture:
    """Automatic capture into ``recorder`` while started (a context manager too).

    ``owner`` is the test's own recorder, when there is one: once it holds a series (the test
    records itself), a diverging captured loss no longer stops the test, and the models it
    watches itself are not watched twice.

    Example:
        >>> staging = Recorder(criteria)
        >>> with AutoCapture(staging, owner=losstrend):
        ...     train()                       # every loss.backward() is recorded
        >>> losstrend.adopt(staging)
        True
    """

    def __init__(self, recorder: Recorder, *, owner: Recorder | None = None) -> None:
        self.recorder = recorder
        self.owner = owner
        self._undo: list[Undo] = []
        #: Why a backend could not be installed (never fails the test).
        self.notes: list[str] = []

    @property
    def active(self) -> bool:
        """Whether any backend is installed now."""
        return bool(self._undo)

    def start(self) -> AutoCapture:
        """Install the backends of the frameworks the test has imported; returns ``self``.

        Example:
            >>> capture = AutoCapture(staging).start()
        """
        modules = sys.modules
        if "torch" in modules:
            try:
                from pytest_losstrend.capture.auto_torch import install as install_torch

                self._undo.append(install_torch(self.recorder, owner=self.owner))
            except Exception as exc:  # never let capture break a test
                self.notes.append(f"torch capture not installed: {type(exc).__name__}: {exc}")
        if "keras" in modules or "tensorflow" in modules:
            try:
                from pytest_losstrend.capture import auto_keras
            except ImportError:  # a build without the Keras backend
                auto_keras = None  # type: ignore[assignment]
            if auto_keras is not None:
                try:
                    self._undo.append(auto_keras.install(self.recorder, owner=self.owner))
                except Exception as exc:
                    self.notes.append(
                        f"Keras capture not installed: {type(exc).__name__}: {exc}")
        return self

    def stop(self) -> None:
        """Run every backend's undo, newest first (idempotent; an undo that raises does not
        keep the others from running).

        Example:
            >>> capture.stop()
        """
        undo, self._undo = self._undo, []
        error: BaseException | None = None
        for u in reversed(undo):
            try:
                u()
            except BaseException as exc:  # restore the rest first, then report
                error = error or exc
        if error is not None:
            raise error

    def __enter__(self) -> AutoCapture:
        return self.start()

    def __exit__(self, tp: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

"""What the adoption benchmark's test files share: the mode they run in, the seeds, and the
one-line differences between the three modes.

``ADOPTION_MODE`` (set by ``benchmarks/bench_adoption.py``):

- ``marker``: the test carries ``@pytest.mark.loss_decreases`` and nothing else changes;
- ``explicit``: the marker, plus ``losstrend.record(loss)`` / ``losstrend.watch(model, opt)``
  (or the Keras / Lightning / Hugging Face callback) written into the loop;
- ``plain``: no marker; the test ends with the authors' usual ``assert losses[-1] < losses[0]``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pytest

MODE = os.environ.get("ADOPTION_MODE", "marker")
SEEDS = [0, 1, 2, 3, 4]
F = TypeVar("F", bound=Callable[..., Any])

# Quiet the frameworks' own chatter; the benchmark reads outcomes, not logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def marked(f: F) -> F:
    """``@pytest.mark.loss_decreases`` in the ``marker`` and ``explicit`` modes, nothing in
    ``plain``."""
    return f if MODE == "plain" else pytest.mark.loss_decreases(f)


def explicit(request: pytest.FixtureRequest) -> Any:
    """The ``losstrend`` fixture in the ``explicit`` mode (the test records and watches
    itself), else None."""
    return request.getfixturevalue("losstrend") if MODE == "explicit" else None


def plain_check(losses: Sequence[float]) -> None:
    """The authors' usual assertion, in the ``plain`` mode only."""
    if MODE == "plain":
        assert losses[-1] < losses[0], f"loss did not fall: {losses[0]:.4g} -> {losses[-1]:.4g}"

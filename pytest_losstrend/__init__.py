"""pytest-losstrend: turn a short, real training loop into a reliable pytest test.

The public names are imported lazily, so ``import pytest_losstrend`` (which pytest does to load
the plugin) costs nothing: numpy is only imported when :func:`check` is first used.

Example:
    >>> from pytest_losstrend import check
    >>> check([1.0, 0.8, 0.7, 0.55, 0.5, 0.42, 0.4, 0.35, 0.3, 0.28]).ok
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_losstrend._version import __version__

__all__ = [
    "Criteria",
    "CriteriaError",
    "Diagnosis",
    "LossTrend",
    "LossTrendWarning",
    "Verdict",
    "__version__",
    "check",
]

if TYPE_CHECKING:
    from pytest_losstrend.diagnosis.check import check
    from pytest_losstrend.fixture import LossTrend
    from pytest_losstrend.verdict.criteria import Criteria, CriteriaError
    from pytest_losstrend.verdict.result import Diagnosis, Verdict



class LossTrendWarning(UserWarning):
    """What the loss-trend plugin is sure of about a test that passed (or was skipped): a
    layer whose units never fire, inputs never scaled, a first loss far above chance,
    probabilities fed to a loss that expects logits. Shown in pytest's warnings summary, at the
    test; ``-W error::pytest_losstrend.LossTrendWarning`` (or a ``filterwarnings`` ini line)
    makes each one fail its test."""


_LAZY = {
    "check": "diagnosis.check",
    "Verdict": "verdict.result",
    "Diagnosis": "verdict.result",
    "Criteria": "verdict.criteria",
    "CriteriaError": "verdict.criteria",
    "LossTrend": "fixture",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_losstrend' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value

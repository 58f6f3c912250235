"""Verdict criteria: names, defaults and validation (pure Python, cheap to import).

The marker, the fixture and :func:`pytest_losstrend.check` all take the same criteria, and all
of them validate through :func:`validate_criteria`, so a typo fails the same way everywhere.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, TypedDict, cast

INCONCLUSIVE_OUTCOMES = ("fail", "skip", "pass")
#: The training invariants (DESIGN.md): a broken one fails the test even when the loss falls,
#: unless the test allows it by name (``allow=("params_not_in_optimizer",)``).
INVARIANT_NAMES = ("stale_gradients", "params_not_in_optimizer", "params_unchanged",
                   "shape_mismatch", "negative_loss", "zero_gradients")
# A loss this many times the first positive value among the first few has diverged: no healthy
# run gets there. The verdict fails on it, and ``record`` stops a marked test when it is passed.
DIVERGENCE_BOUND = 1e4
BOUND_POINTS = 5


class CriteriaError(ValueError):
    """A criterion that does not exist or has a value it cannot take."""


class CriteriaData(TypedDict):
    """:class:`Criteria` as plain data (a test's ``criteria`` in the JSON report): every field,
    in declaration order. The schema requires only ``series`` and ``min_drop``."""

    series: str
    min_drop: float
    below: float | None
    tolerance: float
    warmup: int
    min_points: int
    seeds: int
    inconclusive: str
    reference: float | str | None
    capture: bool
    allow: list[str]


@dataclass(frozen=True)
class Criteria:
    """What a loss curve must show to pass.

    Attributes:
        series: which recorded series is judged ("train" unless told).
        min_drop: required relative drop from the start level to the end level (0.1 = 10%).
        below: optional ceiling on the end level (absolute loss units).
        tolerance: how far the end level may sit above the best level reached earlier, as a
            fraction of the best level, before the run counts as having climbed back up.
        warmup: leading points ignored by the trend statistics (non-finite values still count).
        min_points: fewer points than this (after warmup) are too few for a trend test: 2 or
            more are judged as a short run (the first point against the rest), 1 is
            inconclusive.
        seeds: marker only: run the test under this many seeds; every seed must pass.
        inconclusive: what an inconclusive verdict does to the test: "skip" (default: the
            test is reported as skipped with the reason and the advice, neither green nor
            red), "fail" (strict: a test must prove the decrease) or "pass".
        reference: the loss of a model that learned nothing from its inputs, which the run
            must end clearly below: a number (in loss units), ``"auto"`` (default: the loss of
            the best constant predictor on the run's targets, where the loss and the targets
            are known, as ``fit``, ``watch(loss_fn=, batch=)`` and ``set_reference`` know
            them) or None (off).
        capture: record the loss and watch the training automatically when the test records
            nothing itself (default True; ``--losstrend-capture=off`` turns it off for a run).
        allow: training invariants the test breaks on purpose, by name (see
            ``INVARIANT_NAMES``): they are reported, but do not fail the test.
    """

    series: str = "train"
    min_drop: float = 0.1
    below: float | None = None
    tolerance: float = 0.1
    warmup: int = 0
    min_points: int = 8
    seeds: int = 1
    inconclusive: str = "skip"
    reference: float | str | None = "auto"
    capture: bool = True
    allow: tuple[str, ...] = ()

    def as_dict(self) -> CriteriaData:
        """The criteria as plain JSON-able data."""
        # asdict writes the fields as declared; CriteriaData names the same ones
        # (tests/test_schema_types.py holds the two together).
        data = asdict(self)
        data["allow"] = list(self.allow)
        return cast(CriteriaData, data)

    def merged(self, **overrides: Any) -> Criteria:
        """A copy with ``overrides`` validated and applied."""
        return replace(self, **validate_criteria(overrides))


CRITERIA_NAMES = tuple(f.name for f in fields(Criteria))


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CriteriaError(f"criterion {name}={value!r}: expected a number")
    if not math.isfinite(value):
        raise CriteriaError(f"criterion {name}={value!r}: expected a finite number")
    return float(value)


def _integer(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CriteriaError(f"criterion {name}={value!r}: expected an integer >= {minimum}")
    if value < minimum:
        raise CriteriaError(f"criterion {name}={value!r}: expected an integer >= {minimum}")
    return value


def validate_criteria(raw: dict[str, Any]) -> dict[str, Any]:
    """Check names and values of ``raw`` criteria and return them normalised.

    Raises:
        CriteriaError: naming the first unknown criterion or bad value.

    Example:
        >>> validate_criteria({"min_drop": 0.2})
        {'min_drop': 0.2}
    """
    unknown = sorted(set(raw) - set(CRITERIA_NAMES))
    if unknown:
        raise CriteriaError(
            f"unknown criterion {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(CRITERIA_NAMES)}"
        )
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if name == "series":
            if not isinstance(value, str) or not value:
                raise CriteriaError(f"criterion series={value!r}: expected a non-empty string")
            out[name] = value
        elif name == "min_drop":
            v = _number(name, value)
            if not 0.0 <= v < 1.0:
                raise CriteriaError(f"criterion min_drop={value!r}: expected 0 <= min_drop < 1")
            out[name] = v
        elif name == "below":
            if value is None:
                out[name] = None
                continue
            out[name] = _number(name, value)
        elif name == "tolerance":
            v = _number(name, value)
            if v < 0:
                raise CriteriaError(f"criterion tolerance={value!r}: expected tolerance >= 0")
            out[name] = v
        elif name == "warmup":
            out[name] = _integer(name, value, 0)
        elif name == "min_points":
            out[name] = _integer(name, value, 3)
        elif name == "seeds":
            out[name] = _integer(name, value, 1)
        elif name == "reference":
            if value is None or value == "auto":
                out[name] = value
                continue
            if isinstance(value, str):
                raise CriteriaError(f"criterion reference={value!r}: expected a number, 'auto' "
                                    "or None")
            v = _number(name, value)
            out[name] = v
        elif name == "capture":
            if not isinstance(value, bool):
                raise CriteriaError(f"criterion capture={value!r}: expected True or False")
            out[name] = value
        elif name == "allow":
            names = (value,) if isinstance(value, str) else value
            if not isinstance(names, (tuple, list)) or not all(isinstance(v, str) for v in names):
                raise CriteriaError(f"criterion allow={value!r}: expected a tuple of invariant "
                                    f"names ({', '.join(INVARIANT_NAMES)})")
            unknown_inv = [v for v in names if v not in INVARIANT_NAMES]
            if unknown_inv:
                raise CriteriaError(f"criterion allow: unknown invariant "
                                    f"{', '.join(map(repr, unknown_inv))}; known: "
                                    f"{', '.join(INVARIANT_NAMES)}")
            out[name] = tuple(names)
        elif name == "inconclusive":
            if value not in INCONCLUSIVE_OUTCOMES:
                raise CriteriaError(
                    f"criterion inconclusive={value!r}: expected one of "
                    f"{', '.join(map(repr, INCONCLUSIVE_OUTCOMES))}"
                )
            out[name] = value
    return out

"""Property-based sweep: no loss curve makes the verdict, the diagnosis or a report raise.

Curves of 0 to 300 points are drawn from extreme magnitudes (up to +-1.7e308), denormals,
zeros of both signs, negative and mixed-sign values, constants, and monotone or noisy curves at
any scale, with NaN and infinities sprinkled in. Each goes through the same path the plugin
takes (verdict, diagnosis context and rules, failure message, result document, terminal /
Markdown / HTML / JSON reports) with numpy's floating-point warnings turned into errors, since a
suite run with ``-W error`` would see them as the plugin's own failures.

The sweep is derandomized: CI sees the same examples every run, so a red build is never a
lottery ticket and a fix is proven against the very input that found the bug. Breadth comes from
running it with ``--hypothesis-seed`` / a larger ``max_examples`` locally, not from CI luck;
every bug found that way is pinned in the explicit regression tests below.
"""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

import jsonschema
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_losstrend import Criteria, check
from pytest_losstrend.diagnosis.context import context_for
from pytest_losstrend.diagnosis.evidence import Evidence
from pytest_losstrend.diagnosis.messages import failure_message, sparkline
from pytest_losstrend.diagnosis.ranking import passing_warnings, with_diagnoses
from pytest_losstrend.diagnosis.rules import builtin_diagnoses
from pytest_losstrend.reports.html import html_report
from pytest_losstrend.reports.report import (
    SCHEMA_PATH,
    final_document,
    markdown_report,
    term_lines,
)
from pytest_losstrend.reports.rows import series_rows
from pytest_losstrend.verdict.trend import judge

MAX = 1.7976931348623157e308
TINY = 5e-324
SPECIAL = [0.0, -0.0, TINY, -TINY, 2.2250738585072014e-308, 1e-300, 1.0, -1.0, 1e300,
           1.7e308, -1.7e308, MAX, -MAX, math.nan, math.inf, -math.inf]
PROFILE = settings(max_examples=250, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

_SCHEMA = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


# -- strategies ---------------------------------------------------------------------------------


def _shaped(kind: str, n: int, scale: float, noise: float, seed: int) -> list[float]:
    """A curve of ``n`` points of the given shape, multiplied by ``scale`` (any float)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    if kind == "falling":
        base = 0.2 + np.exp(-t / max(n / 4, 1.0))
    elif kind == "rising":
        base = 0.2 + t / max(n, 1)
    elif kind == "constant":
        base = np.ones(n)
    elif kind == "oscillating":
        base = 1.0 + 0.5 * np.sin(t)
    else:  # mixed sign around zero
        base = np.cos(t / 3.0) - 0.1
    shaped = base * np.exp(rng.normal(0.0, noise, n))
    # Multiplied in Python floats: scale * base may round to a denormal or overflow to inf on
    # purpose, that is part of what is swept.
    with np.errstate(all="ignore"):
        return [float(v) for v in shaped * scale]


@st.composite
def curves(draw: st.DrawFn) -> list[float]:
    """A loss curve of 0..300 points from every corner of float64."""
    n = draw(st.integers(0, 300))
    how = draw(st.sampled_from(["shaped", "shaped", "raw", "special"]))
    if how == "raw":
        values = draw(st.lists(st.floats(allow_nan=True, allow_infinity=True),
                               max_size=min(n, 80)))
    elif how == "special":
        values = draw(st.lists(st.sampled_from(SPECIAL), max_size=min(n, 80)))
    else:
        exponent = draw(st.integers(-323, 308))
        sign = draw(st.sampled_from([1.0, 1.0, -1.0]))
        mantissa = draw(st.floats(1.0, 1.79))
        scale = sign * mantissa * 10.0**exponent
        kind = draw(st.sampled_from(["falling", "rising", "constant", "oscillating", "mixed"]))
        noise = draw(st.sampled_from([0.0, 0.0, 1e-9, 0.05, 0.3, 2.0]))
        values = _shaped(kind, n, scale, noise, draw(st.integers(0, 2**16)))
    # Sprinkle extremes and non-finite values at random places.
    for _ in range(draw(st.integers(0, 3))):
        if not values:
            break
        i = draw(st.integers(0, len(values) - 1))
        values[i] = draw(st.sampled_from(SPECIAL))
    if values and draw(st.booleans()):
        values.append(draw(st.sampled_from(SPECIAL)))
    return values


@st.composite
def criteria(draw: st.DrawFn) -> dict[str, Any]:
    """Any valid set of criteria."""
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out["min_drop"] = draw(st.floats(0.0, 0.999))
    if draw(st.booleans()):
        out["tolerance"] = draw(st.floats(0.0, 10.0))
    if draw(st.booleans()):
        out["warmup"] = draw(st.integers(0, 30))
    if draw(st.booleans()):
        out["min_points"] = draw(st.integers(3, 50))
    if draw(st.booleans()):
        out["below"] = draw(st.one_of(st.none(), st.floats(-MAX, MAX),
                                      st.sampled_from([0.0, TINY, -TINY, MAX])))
    return out


evidences = st.one_of(
    st.none(),
    st.builds(
        lambda lr, sharp: Evidence(framework="torch", optimizer="SGD", lr=[lr, lr],
                                   steps=[0, 1], sharpness=sharp),
        st.sampled_from([TINY, 1e-3, 0.1, 1e300]),
        st.sampled_from([None, TINY, 1.0, 1e300]),
    ),
)


# -- the plugin's path, step by step ------------------------------------------------------------


def _judge_everything(
    curve: list[float], crit_kw: dict[str, Any], other: list[float], ev: Evidence | None,
    marker: str,
) -> None:
    verdict = check(curve, **crit_kw)
    assert verdict.status in ("pass", "fail", "inconclusive")
    assert isinstance(verdict.reason, str) and verdict.reason
    assert verdict.ok == (verdict.status == "pass")

    crit = Criteria().merged(**crit_kw)
    series = {"train": curve, "eval": other}
    judged = judge(np.asarray(curve, dtype=np.float64), crit)
    ctx = context_for(series, "train", judged, evidence=ev, warnings=[])
    notes: list[str] = []
    if judged.ok:
        notes = passing_warnings(ctx)
        final = judged
    else:
        final = with_diagnoses(judged, builtin_diagnoses(ctx))
    for d in final.diagnoses:
        assert 0.0 <= d.confidence <= 1.0
        assert isinstance(d.evidence, str) and isinstance(d.fix, str)
    message = failure_message(final, curve, crit, seed="0")
    assert message.startswith("loss_decreases ")

    result = {
        "nodeid": "tests/test_x.py::test_trains",
        "marker": marker,
        "framework": None,
        "seed": 0,
        "criteria": crit.as_dict(),
        "series": {
            "train": {"losses": curve, "verdict": final.as_dict()},
            "eval": {"losses": other, "verdict": ctx.verdicts["eval"].as_dict()},
        },
        "verdict": final.as_dict(),
        "diagnoses": [d.as_dict() for d in final.diagnoses],
        "evidence": ev.as_dict() if ev is not None else None,
        "warnings": notes,
        "outcome": "passed" if final.ok else "failed",
    }
    # The terminal table is drawn from the raw results (NaN still a float)...
    assert term_lines([result])
    assert series_rows(result)
    # ...the files from the finished document.
    doc = final_document(0, [result])
    jsonschema.validate(doc, _SCHEMA)
    json.dumps(doc, allow_nan=False)
    assert markdown_report(doc).startswith("## Loss trends")
    page = html_report(doc)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")


@PROFILE
@given(curve=curves(), crit_kw=criteria(), other=curves(), ev=evidences,
       marker=st.sampled_from(["loss_decreases", "loss_fails"]))
def test_no_curve_raises(
    curve: list[float], crit_kw: dict[str, Any], other: list[float], ev: Evidence | None,
    marker: str,
) -> None:
    """Every curve gets a verdict, a diagnosis, a message and every report, with numpy's
    floating-point warnings as errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise", under="ignore"):
            _judge_everything(curve, crit_kw, other, ev, marker)


@PROFILE
@given(curve=curves(), width=st.integers(1, 80))
def test_sparkline_never_raises(curve: list[float], width: int) -> None:
    line = sparkline(curve, width)
    assert len(line) == min(len(curve), width)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(n=st.integers(20, 300), noise=st.sampled_from([0.0, 0.02, 0.1]),
       seed=st.integers(0, 2**16), factor=st.sampled_from([1e-30, 1e30, 1e-300, 1e300]))
def test_scale_invariance(n: int, noise: float, seed: int, factor: float) -> None:
    """A healthy falling curve keeps its verdict when its units change by 1e+-30 (or 1e+-300)."""
    curve = np.asarray(_shaped("falling", n, 1.0, noise, seed))
    base = check(curve)
    scaled = check(curve * factor)
    assert scaled.status == base.status, (base.reason, scaled.reason)
    assert scaled.kind == base.kind


@pytest.mark.parametrize("factor", [1e-30, 1e30, 1e-300, 1e300])
def test_scale_invariance_of_a_mixed_sign_curve(factor: float) -> None:
    """On the linear (non-log) path too: an ELBO-like curve crossing zero, in any units."""
    t = np.arange(120, dtype=np.float64)
    curve = 1.0 - 2.0 * (1 - np.exp(-t / 30)) + 0.01 * np.sin(7 * t)
    base = check(curve)
    scaled = check(curve * factor)
    assert scaled.status == base.status and scaled.kind == base.kind


# -- pinned: each input that raised before its fix ----------------------------------------------


def _everything_quietly(curve: list[float], **crit_kw: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise", under="ignore"):
            _judge_everything(curve, crit_kw, [], None, "loss_decreases")


def test_float_max_after_a_falling_curve() -> None:
    """Was OverflowError in the diagnosis (exp of the log-loss growth)."""
    curve = [2.0, 1.8, 1.5, 1.3, 1.1, 1.0, 0.9, 0.8, 0.7, 0.65, 1.7e308]
    v = check(curve)
    assert v.kind == "divergence" and v.diagnoses[0].cause == "lr_too_high"
    assert "1.7e+308" in v.reason
    _everything_quietly(curve)


def test_denormal_losses_that_fall_40x_pass() -> None:
    """Was "frozen: all equal": the frozen test used an absolute epsilon of 1e-312."""
    curve = list(np.geomspace(4e-320, 1e-321, 30))
    v = check(curve)
    assert v.status == "pass", v.reason
    assert v.stats["drop"] > 0.9


@pytest.mark.parametrize("value", [TINY, 0.0, -0.0, 1.7e308, -1.7e308, 1e-310])
def test_constant_curves_at_any_scale_are_frozen(value: float) -> None:
    v = check([value] * 12)
    assert v.kind == "frozen"
    assert "-0 " not in v.reason  # -0.0 reads "0"


def test_float_extremes_of_both_signs_are_judged_not_nan() -> None:
    """Was "stalled ... from nan to nan": the median of two 1.7e308 overflowed to inf."""
    curve = [-1.7e308, 1.7e308] * 10
    v = check(curve)
    assert "nan" not in v.reason
    _everything_quietly(curve)


def test_one_huge_value_among_tiny_mixed_sign_values() -> None:
    """Was an overflow in the linear scale (divided by a median magnitude of 1e-300)."""
    curve = [1.7e308, -1e-300, 1e-300, 0.0, -0.0, 2e-300, -2e-300] * 4
    assert check(curve).status in ("pass", "fail", "inconclusive")
    _everything_quietly(curve)


def test_a_rise_past_the_float_range_is_described() -> None:
    """Was OverflowError: the end level is 1e600 times the start (a ratio past 1.8e308)."""
    curve = [0.0] * 5 + list(np.geomspace(1e-300, 1e300, 40))
    v = check(curve, warmup=5)
    assert v.kind == "divergence"
    assert "(x1.43e+546)" in v.reason  # from the first point, 1e-300
    assert v.stats["drop"] == -math.inf
    _everything_quietly(curve, warmup=5)


def test_sparkline_of_both_float_extremes() -> None:
    """Was ValueError (round of NaN): the span -1.7e308..1.7e308 overflowed to inf."""
    assert sparkline([-1.7e308, 0.0, 1.7e308]) == "▁▅█"


@pytest.mark.parametrize("curve", [[5e-324, 0.0], [-0.0, -5e-324] * 200, [TINY, 2 * TINY]])
def test_html_chart_of_denormals(curve: list[float]) -> None:
    """Was ValueError / ZeroDivisionError: the tick step underflowed to zero."""
    _everything_quietly(curve)


def test_oscillation_of_a_negative_loss_is_not_called_a_factor() -> None:
    """The swing of a curve below zero is in loss units, not a log-loss factor."""
    t = np.arange(120, dtype=np.float64)
    curve = -1.0 + 0.5 * np.sin(2 * np.pi * t / 12)
    v = check(curve)
    assert v.kind == "oscillation"
    # The 10-90% range of a sine of amplitude 0.5, in loss units at any scale.
    assert v.stats["swing"] == pytest.approx(0.933, abs=1e-3)
    assert check(curve * 1e-30).stats["swing"] == pytest.approx(0.933e-30, rel=1e-3)
    top = v.diagnoses[0]
    assert top.cause == "oscillation" and "swings by 0.933 (linear)" in top.evidence


def test_fmt_exp_past_the_float_range() -> None:
    from pytest_losstrend.verdict.stats import fmt_exp

    assert fmt_exp(0.0) == "1"
    assert fmt_exp(math.log(2.5)) == "2.5"
    assert fmt_exp(600 * math.log(10)) == "1e+600"
    assert fmt_exp(1500.0) == "2.77e+651"
    assert fmt_exp(math.inf) == "inf"


# -- record(): every value is recorded as floats or refused with a message naming it -------------

_scalars = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**400), 10**400),
    st.fractions(),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.complex_numbers(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=4),
    st.binary(max_size=4),
)
_values = st.one_of(
    _scalars,
    st.lists(_scalars, max_size=5),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=5).map(np.array),
    st.lists(_scalars, max_size=5).map(lambda v: np.array(v, dtype=object)),
    st.sampled_from([np.float32(3e38), np.float16(6e4), np.int64(-(2**63)),
                     np.uint64(2**64 - 1), np.longdouble("1e4000"), np.array([[1.0]])]),
)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(value=_values)
def test_record_reads_floats_or_names_what_it_refused(value: Any) -> None:
    from pytest_losstrend import LossTrend

    lt = LossTrend()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            lt.record(value)
        except (TypeError, ValueError) as exc:
            assert str(exc).startswith("record() "), exc
            assert lt.losses() == []
            return
    assert all(type(v) is float for v in lt.losses())

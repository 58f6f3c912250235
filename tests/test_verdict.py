"""The pure verdict function on synthetic curves: every failure mode, noise, and bad input."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest

from pytest_losstrend import CriteriaError, check
from pytest_losstrend.verdict.stats import mann_kendall


def decay(n: int, *, drop: float = 0.8, tau: float | None = None, floor: float = 0.2) -> np.ndarray:
    """A clean exponential decay from 1 towards ``floor`` that loses ``drop`` of its level."""
    t = np.arange(n, dtype=float)
    tau = tau or n / 4
    return floor + (1 - floor) * np.exp(-t / tau) * drop + (1 - floor) * (1 - drop)


def noisy(x: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Multiplicative log-normal noise, as mini-batch losses have."""
    rng = np.random.default_rng(seed)
    return x * np.exp(rng.normal(0.0, sigma, len(x)))


def test_clean_decrease_passes() -> None:
    v = check(decay(50))
    assert v.ok and v.status == "pass" and v.kind == "decrease"
    assert v.stats["drop"] > 0.5
    assert "decreased" in v.reason


@pytest.mark.parametrize("n", [30, 100, 300])
@pytest.mark.parametrize("sigma", [0.05, 0.2, 0.4])
def test_healthy_noise_never_fails(n: int, sigma: float) -> None:
    statuses = [check(noisy(decay(n), sigma, seed)).status for seed in range(40)]
    assert "fail" not in statuses
    # Power: at moderate noise most runs pass outright.
    if sigma <= 0.2:
        assert statuses.count("pass") >= 36


def test_fast_convergence_then_flat_is_not_a_plateau() -> None:
    x = np.r_[[5.0, 1.5, 0.6], np.full(97, 0.5)] * np.exp(
        np.random.default_rng(0).normal(0, 0.01, 100))
    v = check(x)
    assert v.ok, v.reason


def test_short_early_spike_that_recovers_passes() -> None:
    x = decay(100)
    x[10:14] *= [3.0, 4.0, 2.5, 1.5]
    v = check(noisy(x, 0.05, 1))
    assert v.ok, v.reason


def test_slow_start_passes() -> None:
    x = np.r_[np.full(20, 1.0), decay(80)]
    v = check(noisy(x, 0.05, 2))
    assert v.ok, v.reason


def test_non_finite_names_the_first_bad_step() -> None:
    v = check([1.0, 0.9, 0.8, float("nan"), float("inf")])
    assert v.status == "fail" and v.kind == "non_finite"
    assert v.failed_at == 3
    assert "step 3" in v.reason and "0.8" in v.reason


def test_infinity_is_non_finite() -> None:
    v = check([1.0, 0.9, float("inf")] + [0.5] * 10)
    assert v.kind == "non_finite" and v.failed_at == 2


def test_geometric_divergence() -> None:
    x = 1.0 * 1.2 ** np.arange(40)
    v = check(x)
    assert v.status == "fail" and v.kind == "divergence"
    assert v.stats["growth_per_step"] == pytest.approx(1.2, rel=0.01)


def test_explosion_past_the_bound_fails_even_when_short() -> None:
    v = check([30.0, 4e5, 3e9])
    assert v.kind == "divergence" and v.failed_at == 1
    assert "x1.33e+04 its first level 30" in v.reason


def test_falls_then_diverges() -> None:
    x = np.r_[decay(30), decay(30)[-1] * 1.3 ** np.arange(1, 31)]
    v = check(x)
    assert v.status == "fail" and v.kind == "divergence"
    assert 28 <= v.failed_at <= 40


def test_spike_that_does_not_recover() -> None:
    x = decay(100, floor=0.1)
    x[60:] = x[59] * 4
    v = check(noisy(x, 0.03, 3))
    assert v.status == "fail" and v.kind == "spike"
    assert 58 <= v.failed_at <= 63


def test_late_rise_after_early_fall() -> None:
    # The eval loss of an over-fitting model: it falls, then climbs steadily.
    t = np.arange(40, dtype=float)
    x = 0.3 + 0.7 * np.exp(-t / 5) + 0.01 * np.maximum(t - 12, 0)
    v = check(noisy(x, 0.01, 4))
    assert v.status == "fail" and v.kind == "late_rise"
    assert "climbed back" in v.reason


def test_rebound_within_tolerance_passes() -> None:
    t = np.arange(60, dtype=float)
    x = 0.3 + 0.7 * np.exp(-t / 5) + 0.0005 * np.maximum(t - 30, 0)
    assert check(x).ok
    assert check(x, tolerance=0.0).status != "pass" or check(x, tolerance=0.0).ok


def test_overall_rise() -> None:
    x = np.linspace(1.0, 1.6, 80)
    v = check(noisy(x, 0.05, 5))
    assert v.status == "fail" and v.kind in ("rise", "stall")


def test_frozen_to_the_last_digit() -> None:
    v = check([0.6931471805599453] * 50)
    assert v.status == "fail" and v.kind == "frozen"


@pytest.mark.parametrize("seed", range(10))
def test_stall_with_no_trend_fails(seed: int) -> None:
    x = noisy(np.ones(200), 0.1, seed)
    v = check(x)
    assert v.status == "fail" and v.kind == "stall", v.reason


def test_creeping_loss_decreases_too_little() -> None:
    x = np.linspace(1.0, 0.97, 200)
    v = check(noisy(x, 0.002, 6))
    assert v.status == "fail" and v.kind == "too_little_drop"


def test_thin_evidence_is_inconclusive_with_advice() -> None:
    x = noisy(decay(10, drop=0.3), 0.5, 7)
    v = check(x)
    assert v.status == "inconclusive"
    assert "record more steps" in v.reason


def test_one_point_is_inconclusive() -> None:
    v = check([1.0])
    assert v.status == "inconclusive" and v.kind == "too_few_points"
    assert "one point cannot show a trend" in v.reason


@pytest.mark.parametrize(("curve", "status", "says"), [
    ([1.0, 0.5, 0.25], "pass", "decreased 75.0% from 1 to 0.25 (3 points: too few for a trend"),
    ([3.83, 4.54, 2.30], "pass", "decreased 39.9%"),        # one noisy step up, then down
    ([-1.0, -2.0], "pass", "decreased 100.0% from -1 to -2"),
    ([1.0, 2.0, 3.0], "fail", "the later points average 2.5, not below the first 1"),
    ([2.3, 7112.0, 2.0], "fail", "not below the first 2.3"),  # blew up and came back
    ([2.3026, 2.3014], "fail", "fell 0.1% from 2.303 to 2.301, less than min_drop=10%"),
])
def test_short_runs_are_judged_first_point_against_the_rest(
    curve: list[float], status: str, says: str
) -> None:
    v = check(curve)
    assert v.status == status and says in v.reason
    assert "too few for a trend test (min_points=8)" in v.reason
    # A short failure names no cause from two or three points (no lr blame without evidence).
    assert v.kind in ("decrease", "short_run") and not v.diagnoses


def test_a_constant_short_run_is_frozen_and_a_short_run_obeys_below() -> None:
    assert check([1.0, 1.0, 1.0]).kind == "frozen"
    v = check([1.0, 0.5, 0.25], below=0.1)
    assert v.status == "fail" and "above below=0.1" in v.reason


def test_min_drop_is_an_effect_size() -> None:
    x = decay(100, drop=0.25)
    assert check(x, min_drop=0.1).ok
    v = check(x, min_drop=0.5)
    assert v.status == "fail" and v.kind == "too_little_drop"


def test_below_is_a_ceiling_on_the_end_level() -> None:
    x = decay(60)
    assert check(x, below=0.5).ok
    v = check(x, below=0.1)
    assert v.status == "fail" and v.kind == "above_ceiling"


def test_warmup_ignores_leading_points() -> None:
    x = np.r_[[0.1] * 6, decay(60)]
    assert check(x).status == "fail"
    assert check(x, warmup=6).ok
    # Two of the low points left: the run started at 0.1 and never came back below it.
    assert check(x, warmup=4).kind == "blowup"


def test_negative_losses_are_judged_on_a_linear_scale() -> None:
    x = -np.linspace(0.0, 5.0, 50) + 1.0
    v = check(x)
    assert v.ok and v.stats["log_scale"] is False


def test_empty_fails() -> None:
    v = check([])
    assert v.status == "fail" and v.kind == "empty"


@pytest.mark.parametrize(
    ("criteria", "needle"),
    [
        ({"min_dorp": 0.1}, "min_dorp"),
        ({"min_drop": 1.5}, "min_drop"),
        ({"min_drop": "a lot"}, "min_drop"),
        ({"tolerance": -1}, "tolerance"),
        ({"warmup": 2.5}, "warmup"),
        ({"min_points": 1}, "min_points"),
        ({"seeds": 0}, "seeds"),
        ({"below": float("nan")}, "below"),
        ({"inconclusive": "maybe"}, "inconclusive"),
        ({"series": ""}, "series"),
    ],
)
def test_bad_criteria_name_themselves(criteria: dict[str, object], needle: str) -> None:
    with pytest.raises(CriteriaError, match=needle):
        check([1.0, 0.5], **criteria)


def test_bad_losses_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="1-d"):
        check(np.ones((3, 3)))
    with pytest.raises(TypeError, match="sequence of numbers"):
        check(["a", "b"])


def test_same_input_same_verdict() -> None:
    x = noisy(decay(80), 0.3, 8)
    assert check(x) == check(list(x))


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7])
def test_exact_kendall_matches_enumeration(n: int) -> None:
    # The exact null distribution is checked against brute force over all permutations.
    y = np.array([3.0, 1.0, 4.0, 1.5, 5.0, 9.0, 2.0][:n])
    _, p_dec, p_inc = mann_kendall(y)

    def s_stat(v: tuple[float, ...]) -> int:
        return sum(int(np.sign(v[j] - v[i])) for i in range(n) for j in range(i + 1, n))

    s_obs = s_stat(tuple(y))
    perms = [s_stat(p) for p in itertools.permutations(y)]
    assert p_dec == pytest.approx(sum(s <= s_obs for s in perms) / len(perms))
    assert p_inc == pytest.approx(sum(s >= s_obs for s in perms) / len(perms))


def test_normal_approximation_is_close_to_exact_at_60() -> None:
    rng = np.random.default_rng(0)
    y = np.arange(61, dtype=float) * -0.01 + rng.normal(0, 0.5, 61)
    _, p_approx, _ = mann_kendall(y)
    _, p_exact, _ = mann_kendall(y[:60])
    assert math.isclose(p_approx, p_exact, rel_tol=0.5, abs_tol=0.02)


def test_check_needs_no_pytest() -> None:
    code = (
        "import sys; from pytest_losstrend import check; "
        "assert check([1.0, .8, .6, .5, .4, .35, .3, .28, .25]).ok; "
        "print('pytest' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_oscillation_fails() -> None:
    # Full-batch gradient descent with heavy momentum: the loss swings by orders of magnitude
    # with a period of about 9 steps while it barely makes progress.
    t = np.arange(100, dtype=float)
    x = np.exp(2.5 * np.sin(2 * np.pi * t / 9) * np.exp(-t / 400)) * np.exp(-t / 300)
    v = check(x)
    assert v.status == "fail" and v.kind == "oscillation", v.reason
    assert 8 <= v.stats["period"] <= 10


@pytest.mark.parametrize("seed", range(20))
def test_heavy_tailed_minibatch_noise_is_not_oscillation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = decay(30) * rng.chisquare(1, 30)
    assert check(x).kind != "oscillation"


def test_fast_first_step_counts_in_the_drop() -> None:
    x = np.r_[77.9, 9.7, 2.28, 1.47, np.full(96, 1.22)]
    v = check(x, min_drop=0.9)
    assert v.ok, v.reason
    assert v.stats["start"] == pytest.approx(77.9)


def test_overflow_after_the_divergence_bound_is_divergence() -> None:
    x = [300.0, 5e6, 3e12, float("inf"), float("nan")]
    v = check(x)
    assert v.kind == "divergence" and v.failed_at == 1

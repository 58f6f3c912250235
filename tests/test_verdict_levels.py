"""The levels a reviewer reads (issue 11): where training started, where it ended, and where a
model that learned nothing would be. Each case is a curve pattern seen in real training tests."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_losstrend import check

LN10 = math.log(10)


def noise(n: int, sigma: float, seed: int) -> np.ndarray:
    """Multiplicative mini-batch noise."""
    return np.exp(np.random.default_rng(seed).normal(0.0, sigma, n))


def blowup_then_dead(n: int = 23, seed: int = 0) -> np.ndarray:
    """2.31 -> 7112 -> back at ln 10 and stuck there (a learning rate past stability that
    leaves every ReLU dead)."""
    head = [2.31, 7112.0, 3050.0, 410.0, 38.0, 6.0]
    tail = LN10 * noise(n - len(head), 0.01, seed)
    return np.r_[head, tail]


@pytest.mark.parametrize("seed", range(5))
def test_a_blow_up_that_came_back_to_chance_fails_from_the_curve_alone(seed: int) -> None:
    v = check(blowup_then_dead(seed=seed))
    assert v.status == "fail" and v.kind == "blowup", v.reason
    assert "from 2.31" in v.reason and "decreased" not in v.reason
    assert v.stats["start"] == pytest.approx(2.31)


def test_a_blow_up_back_to_chance_fails_as_chance_level_with_the_reference() -> None:
    v = check(blowup_then_dead(), reference=LN10)
    assert v.kind == "chance_level"
    assert "no better than chance" in v.reason and "2.303" in v.reason
    assert "blew up to" in v.reason
    assert v.stats["reference"] == pytest.approx(LN10)


def test_a_run_that_falls_to_the_label_prior_fails_only_with_the_reference() -> None:
    """A bad initial loss falling to the label frequencies: a fine curve, a useless model."""
    x = (LN10 + 3.0 * np.exp(-np.arange(150) / 20.0)) * noise(150, 0.02, 1)
    assert check(x).ok
    v = check(x, reference=LN10)
    assert v.kind == "chance_level"
    assert v.stats["end_over_reference"] > 0.9


def test_ending_far_above_the_reference_after_a_modest_drop_fails() -> None:
    """Weights x100 at init: falls 22% and ends decades above chance."""
    x = np.linspace(1600.0, 1250.0, 150) * noise(150, 0.05, 2)
    v = check(x, reference=LN10)
    assert v.kind == "chance_level"
    assert "started at" in v.reason and "the reference" in v.reason


def test_a_healthy_run_well_below_its_reference_passes() -> None:
    x = (0.3 + 2.0 * np.exp(-np.arange(150) / 30.0)) * noise(150, 0.05, 3)
    v = check(x, reference=LN10)
    assert v.ok, v.reason
    assert check(x, reference=None).ok


def test_a_rise_after_an_early_spike_fails_instead_of_inconclusive() -> None:
    """The start level is not taken after a spike: x5 over 1000 steps read "106 -> 36.1,
    drop 66%, INCONCLUSIVE" when the first window held a spike to 106."""
    rng = np.random.default_rng(4)
    x = 7.0 * np.exp(np.linspace(0.0, math.log(5.0), 1000)) * np.exp(rng.normal(0, 0.3, 1000))
    x[1:8] = 106.0
    v = check(x)
    assert v.status == "fail", v.reason


def test_jitter_at_the_floor_after_four_decades_passes() -> None:
    """A regression at 1e-4 after a fall from 1 jitters heavy-tailed: x7 is no spike there."""
    rng = np.random.default_rng(5)
    t = np.arange(400)
    x = np.maximum(np.exp(-t / 20.0), 1e-4) * np.exp(rng.standard_t(2, 400) * 0.4)
    x[330:] *= 7.0 * np.exp(rng.normal(0, 0.3, 70)) / np.exp(rng.normal(0, 0.3, 70)).mean()
    v = check(x)
    assert v.ok, v.reason


def test_a_real_spike_after_a_modest_drop_still_fails() -> None:
    x = np.r_[np.linspace(1.0, 0.5, 60), np.full(40, 0.9)] * noise(100, 0.02, 6)
    assert check(x).kind == "spike"


def test_a_loss_that_crosses_zero_reads_in_loss_units() -> None:
    x = 1.0 - 3.0 * (1 - np.exp(-np.arange(100) / 20.0)) + np.random.default_rng(7).normal(
        0, 0.05, 100)
    v = check(x)
    assert v.ok and "in loss units" in v.reason and "%" not in v.reason.split("(")[0]


def test_flat_noise_is_inconclusive_with_advice_that_is_not_more_steps() -> None:
    v = check(1.0 * noise(30, 0.5, 8))
    assert v.status == "inconclusive"
    assert "flat within its noise" in v.reason and "record more steps" not in v.reason


def test_a_weak_downward_trend_gets_the_number_of_steps_that_would_decide_it() -> None:
    x = np.linspace(1.0, 0.8, 30) * noise(30, 0.2, 9)
    v = check(x)
    assert v.status == "inconclusive", v.reason
    assert "record more steps" in v.reason
    assert v.stats["steps_needed"] > 30


def test_an_end_above_the_start_beyond_the_noise_fails() -> None:
    rng = np.random.default_rng(10)
    x = np.r_[np.full(100, 1.0), np.full(100, 1.15)] * np.exp(rng.normal(0, 0.02, 200))
    x = x[np.r_[np.arange(0, 200, 2), np.arange(1, 200, 2)]]  # interleaved: no trend test
    x[:5] = 1.0
    x[-40:] = 1.15
    v = check(x)
    assert v.status == "fail" and v.kind in ("rise", "stall"), v.reason
    assert "rose" in v.reason and "-" not in v.reason.split("(")[0]


def test_a_small_real_drop_names_the_min_drop_that_would_pass_it() -> None:
    x = np.linspace(1.7, 1.62, 64) * noise(64, 0.02, 11)
    v = check(x, reference=2.30)
    assert v.kind == "too_little_drop", v.reason
    assert "the reference level 2.3" in v.reason and "set min_drop=" in v.reason
    suggested = float(v.reason.split("set min_drop=")[1].split()[0])
    assert check(x, reference=2.30, min_drop=suggested).ok


def test_short_run_ending_above_its_reference_fails() -> None:
    assert check([30.0, 20.0, 12.0], reference=2.3).kind == "chance_level"
    assert check([3.8, 4.5, 2.303], reference=2.30).ok  # one noisy point at the reference


@pytest.mark.parametrize("bad", ["fast", "", [1.0]])
def test_a_bad_reference_is_a_clear_error(bad: object) -> None:
    from pytest_losstrend import CriteriaError

    with pytest.raises(CriteriaError, match="reference"):
        check([1.0, 0.5], reference=bad)

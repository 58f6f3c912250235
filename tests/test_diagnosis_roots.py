"""Diagnosis names the root, not the symptom (issue 11): runs that end at the reference level,
blow-ups, small drops, flat runs and losses that cross zero.

The verdicts are built with :func:`pytest_losstrend.check` (with ``reference=`` where the rule
needs one), the contexts with what ``watch`` would have seen, as in ``test_diagnosis.py``; two
real tiny torch runs are watched for the ``no_learning`` and ``chance_level`` roots.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pytest

from pytest_losstrend import check
from pytest_losstrend.diagnosis.context import context_for
from pytest_losstrend.diagnosis.evidence import Evidence
from pytest_losstrend.diagnosis.ranking import passing_warnings, rank
from pytest_losstrend.diagnosis.rules import CAUSES, builtin_diagnoses
from pytest_losstrend.diagnosis.signals import level_change, nice_min_drop
from pytest_losstrend.verdict.result import Diagnosis, Verdict
from pytest_losstrend.verdict.stats import FloatArray

LN10 = math.log(10)


def _noise(n: int, scale: float, seed: int = 0) -> FloatArray:
    return np.asarray(scale * np.random.default_rng(seed).standard_normal(n), dtype=np.float64)


@dataclass(frozen=True)
class Judged:
    """A curve and the verdict ``check`` reached on it."""

    losses: list[float]
    verdict: Verdict

    def ranked(self, evidence: Evidence | None = None) -> list[Diagnosis]:
        """The ranked built-in diagnoses, with ``evidence`` as ``watch`` would have filled it."""
        assert not self.verdict.ok, self.verdict.reason
        ctx = context_for({"train": self.losses}, "train", self.verdict, evidence=evidence)
        return list(rank(builtin_diagnoses(ctx)))


def _judge(curve: FloatArray | list[float], **criteria: object) -> Judged:
    losses = [float(v) for v in curve]
    return Judged(losses, check(losses, **criteria))


def _causes(ranked: list[Diagnosis]) -> list[str]:
    return [d.cause for d in ranked]


def _by_cause(ranked: list[Diagnosis], cause: str) -> Diagnosis:
    return next(d for d in ranked if d.cause == cause)


# -- curves ------------------------------------------------------------------------------------


def _at_reference(n: int = 80, seed: int = 0) -> FloatArray:
    """A curve that falls from a random init's 2.45 to the reference ln 10 and stays there: the
    label frequencies learned, nothing else (a significant, small downward trend)."""
    t = np.arange(n)
    return np.asarray(LN10 + 0.15 * np.exp(-t / 10) + _noise(n, 0.01, seed), dtype=np.float64)


def _never_moves(n: int = 80, seed: int = 1) -> FloatArray:
    """Mini-batch noise around a constant just above the reference: no trend at all."""
    return np.asarray(LN10 + 0.02 + _noise(n, 0.02, seed), dtype=np.float64)


def _blew_up_to_reference(n: int = 80) -> FloatArray:
    """From ln 10 to 1250 in three steps (700 as a 3-point median), then back down to the
    reference (dead ReLUs)."""
    head = [2.33, 40.0, 700.0, 1250.0, 300.0, 20.0, 3.0]
    return np.asarray(np.r_[head, LN10 + 0.05 + _noise(n - len(head), 0.01)], dtype=np.float64)


# -- chance_level: the root first --------------------------------------------------------------


def test_chance_level_is_a_cause_code() -> None:
    assert "chance_level" in CAUSES


def test_a_run_at_the_reference_with_nothing_else_is_chance_level() -> None:
    run = _judge(_at_reference(), reference=LN10)
    assert run.verdict.kind == "chance_level"
    top = run.ranked()[0]
    assert top.cause == "chance_level"
    assert "learned nothing from its inputs" in top.evidence
    assert "x the reference level 2.303" in top.evidence
    for words in ("aligned", "shuffled together", "detached", "right column"):
        assert words in top.fix


def test_a_blow_up_before_the_reference_is_lr_too_high() -> None:
    run = _judge(_blew_up_to_reference(), reference=LN10)
    assert run.verdict.kind == "chance_level" and run.verdict.stats["blew_up"] is True
    ranked = run.ranked()
    top = ranked[0]
    assert top.cause == "lr_too_high"
    assert re.search(r"blew up to 700 at step \d+ \(x[\d.]+ its first level 2\.33\), then "
                     r"ended at 2\.3\d+, 1\.0\dx the reference level 2\.303", top.evidence), \
        top.evidence
    # The end at the reference is its symptom, ranked below it.
    assert _by_cause(ranked, "chance_level").confidence < top.confidence


def test_a_blow_up_with_a_known_lr_states_a_fix() -> None:
    run = _judge(_blew_up_to_reference(), reference=LN10)
    ev = Evidence(framework="torch", optimizer="SGD", lr=[3.0])
    top = run.ranked(ev)[0]
    assert top.cause == "lr_too_high"
    assert "lr = 0.3" in top.fix or "lr <= " in top.fix


def test_a_first_loss_far_above_the_reference_is_bad_init() -> None:
    t = np.arange(100)
    curve = 1137 + 500 * np.exp(-t / 20) + _noise(100, 5.0)
    curve[0] = 1637.0
    run = _judge(curve, reference=2.3)
    top = run.ranked()[0]
    assert top.cause == "bad_init"
    assert top.evidence.startswith("first loss 1637 is 712x the reference 2.3"), top.evidence
    assert "initialisation" in top.fix


def test_bad_init_from_the_reference_in_another_failing_verdict() -> None:
    # Starts 13x the reference, falls below it, then spikes: a spike first, the init noted.
    curve = np.r_[30.0, np.geomspace(20, 0.5, 30), np.full(30, 1.5)] + _noise(61, 0.01)
    run = _judge(curve, reference=2.3)
    assert run.verdict.kind not in ("chance_level", "decrease"), run.verdict.reason
    bad_init = _by_cause(run.ranked(), "bad_init")
    assert "13x the reference 2.3" in bad_init.evidence


def test_frozen_parameters_outrank_chance_level() -> None:
    run = _judge(_at_reference(), reference=LN10)
    ev = Evidence(framework="torch", optimizer="SGD", lr=[0.1], frozen=["0.weight", "2.weight"])
    ranked = run.ranked(ev)
    assert _causes(ranked)[:2] == ["no_learning", "chance_level"]
    assert ranked[0].confidence == pytest.approx(0.9)
    assert "frozen: 0.weight, 2.weight" in ranked[0].evidence
    assert "the reference level 2.303" in ranked[0].evidence  # the symptom, named


def test_a_blow_up_outranks_frozen_parameters() -> None:
    run = _judge(_blew_up_to_reference(), reference=LN10)
    ev = Evidence(framework="torch", optimizer="SGD", lr=[3.0], unchanged=["0.weight"],
                  zero_grad_params=["0.weight"], update_ratio={"0.weight": [0.0, 0.0]},
                  dead_fraction={"1": 1.0})
    ranked = run.ranked(ev)
    assert ranked[0].cause == "lr_too_high"
    dead = _by_cause(ranked, "dead_units")
    assert dead.confidence < ranked[0].confidence and "after the loss blew up" in dead.evidence


def test_partly_dead_units_rank_below_an_end_at_the_reference() -> None:
    """Labels shuffled against the inputs (the adoption benchmark's Lightning run): the loss
    ends at the reference and 75% of a ReLU layer is dead. The live quarter still passes
    signal, so the dead units are not why the model learned nothing: ``chance_level`` first,
    ``dead_units`` after it, saying so."""
    run = _judge(_at_reference(), reference=LN10)
    assert run.verdict.kind == "chance_level"
    ev = Evidence(framework="torch", optimizer="SGD", lr=[0.1], dead_fraction={"1": 0.75},
                  update_ratio={"0.weight": [1e-3] * 5})
    ranked = run.ranked(ev)
    assert _causes(ranked)[:2] == ["chance_level", "dead_units"]
    assert "still pass signal" in ranked[1].evidence


@pytest.mark.parametrize("fraction", [0.9, 1.0])
def test_a_layer_dead_enough_to_stop_the_signal_outranks_chance_level(fraction: float) -> None:
    run = _judge(_at_reference(), reference=LN10)
    ev = Evidence(framework="torch", optimizer="SGD", lr=[0.1],
                  dead_fraction={"1": fraction}, update_ratio={"0.weight": [1e-3] * 5})
    ranked = run.ranked(ev)
    assert _causes(ranked)[:2] == ["dead_units", "chance_level"]
    assert ranked[0].confidence == pytest.approx(0.92)


def test_partly_dead_units_lead_a_stall_above_the_reference() -> None:
    """Only an end *at* the reference says the model learned nothing: on a stall well below
    it (something was learned, then the run stopped improving) a 75% dead layer keeps its
    rank."""
    run = _judge(1.0 + _noise(60, 0.01), reference=LN10)
    assert run.verdict.kind == "stall", run.verdict.reason
    ev = Evidence(framework="torch", optimizer="SGD", lr=[0.1], dead_fraction={"1": 0.75})
    dead = _by_cause(run.ranked(ev), "dead_units")
    assert dead.confidence == pytest.approx(0.92)


def _ten_step_swing(n: int = 40) -> FloatArray:
    """Mini-batch losses around ln 10 that happen to swing with a period of 10 steps: not
    whole epochs, and no eval series to confirm a fixed batch order."""
    swing = 0.03 * np.sin(2 * np.pi * np.arange(n) / 10)
    return np.asarray(LN10 + swing + _noise(n, 0.01), dtype=np.float64)


def test_an_unconfirmed_period_ranks_below_an_end_at_the_reference() -> None:
    """A fixed batch order reorders the gradients, it does not empty them: a period nothing
    confirms does not explain a run that learned nothing (the adoption benchmark's Lightning
    run on shuffled labels, whose loader does shuffle)."""
    ev = Evidence(framework="torch", optimizer="SGD", lr=[0.1],
                  update_ratio={"0.weight": [1e-3] * 5})
    at_ref = _judge(_ten_step_swing(), reference=LN10)
    assert at_ref.verdict.kind == "chance_level"
    ranked = at_ref.ranked(ev)
    assert _causes(ranked)[:2] == ["chance_level", "unshuffled_batches"]
    assert ranked[1].confidence == pytest.approx(0.55)

    # With no reference level the same period still leads the stall.
    stalled = _judge(_ten_step_swing())
    assert stalled.verdict.kind == "stall", stalled.verdict.reason
    top = stalled.ranked(ev)[0]
    assert (top.cause, top.confidence) == ("unshuffled_batches", pytest.approx(0.65))


def test_a_loss_that_never_moves_at_the_reference_is_no_learning() -> None:
    run = _judge(_never_moves(), reference=LN10)
    assert run.verdict.kind == "chance_level"
    ranked = run.ranked()
    assert _causes(ranked)[:2] == ["no_learning", "chance_level"]
    assert "no decrease at all" in ranked[0].evidence
    assert "optimizer.step()" in ranked[0].fix


def test_weights_that_move_overrule_the_no_trend_guess() -> None:
    run = _judge(_never_moves(), reference=LN10)
    ev = Evidence(framework="torch", optimizer="SGD", lr=[0.1],
                  update_ratio={"0.weight": [1e-3] * 5})
    assert run.ranked(ev)[0].cause == "chance_level"


def test_an_adam_lr_too_small_to_move_any_weight_is_lr_too_low() -> None:
    run = _judge(_never_moves(), reference=LN10)
    ev = Evidence(optimizer="Adam", lr=[1e-6])
    top = run.ranked(ev)[0]
    assert top.cause == "lr_too_low"
    assert "8e-05 over 80 steps" in top.evidence
    assert "1e-3 is its default" in top.fix


def test_a_short_run_ending_at_the_reference_is_chance_level() -> None:
    run = _judge([2.31, 2.305, 2.30, 2.296, 2.29], reference=2.3)
    assert run.verdict.kind == "short_run"
    assert run.ranked()[0].cause == "chance_level"


def test_an_eval_series_climbing_past_the_reference_is_overfitting() -> None:
    n = 60
    t = np.arange(n)
    eval_curve = 2.3 - 1.2 * np.minimum(t, 20) / 20 + 0.04 * np.maximum(t - 20, 0)
    eval_curve = eval_curve + _noise(n, 0.01)
    train = list(2.3 * np.exp(-t / 10) + 0.01)
    verdict = check(list(eval_curve), reference=2.3, series="eval")
    # The shape rules run first: the climb is a late rise (it also ends past the reference).
    assert verdict.kind == "late_rise", verdict.reason
    ctx = context_for({"train": train, "eval": list(eval_curve)}, "eval", verdict)
    ranked = list(rank(builtin_diagnoses(ctx)))
    assert ranked[0].cause == "overfitting" and ranked[0].confidence == pytest.approx(0.9)
    assert "lr_too_high" not in _causes(ranked)


# -- blowup --------------------------------------------------------------------------------------


def _blowup_curve() -> FloatArray:
    """Up from 1.09 to 3.5 at once, then down only to about where it started."""
    head = np.array([1.09, 3.5, 3.4, 3.0])
    return np.asarray(np.r_[head, np.linspace(2.5, 1.2, 40) + _noise(40, 0.01)],
                      dtype=np.float64)


def test_a_blowup_is_lr_too_high_with_its_figures() -> None:
    run = _judge(_blowup_curve())
    assert run.verdict.kind == "blowup", run.verdict.reason
    top = run.ranked(Evidence(optimizer="Adam", lr=[0.3]))[0]
    assert top.cause == "lr_too_high"
    assert re.search(r"blew up to 3\.4 at step 1 \(x3\.12 its first level 1\.09\) and ended "
                     r"at 1\.3\d*, no lower than where it started", top.evidence), top.evidence
    assert "lr = 0.03" in top.fix  # 10x lower: the growth to the peak only bounds the limit


def test_a_blowup_the_measured_limit_clears_is_not_lr_too_high() -> None:
    run = _judge(_blowup_curve())
    ev = Evidence(framework="torch", optimizer="SGD", lr=[0.01], sharpness=20.0,
                  zero_grad_calls=0, optimizer_steps=44)
    ranked = run.ranked(ev)
    assert ranked[0].cause == "stale_gradients"
    high = _by_cause(ranked, "lr_too_high")
    assert high.confidence <= 0.3 and "lr is within that limit" in high.evidence


# -- small drops (item 6) -------------------------------------------------------------------------


def _small_drop(n: int = 64) -> FloatArray:
    """A real drop of about 6% (5.8% start level to end level): a significant trend, far
    below min_drop=0.1."""
    return np.asarray(1.7 * (1 - 0.065 * np.arange(n) / n) + _noise(n, 0.005), dtype=np.float64)


def test_a_small_drop_is_no_lr_too_low_without_evidence() -> None:
    run = _judge(_small_drop())
    assert run.verdict.kind == "too_little_drop", run.verdict.reason
    ranked = run.ranked()
    assert ranked[0].cause == "plateau"
    assert "lr_too_low" not in _causes(ranked)
    fix = ranked[0].fix
    assert re.search(r"it fell 5\.\d+%, from 1\.7\d* to 1\.6\d*, less than min_drop=0\.1", fix), fix
    assert "if a small drop is expected (fine-tuning, a short run), set min_drop=0.03" in fix


def test_a_small_drop_states_the_reference() -> None:
    run = _judge(_small_drop(), reference=2.3)
    fix = run.ranked()[0].fix
    assert "it ended at 0.696x the reference level 2.3, so it does learn from its inputs" in fix


def test_a_small_drop_with_tiny_updates_is_lr_too_low() -> None:
    run = _judge(_small_drop())
    ev = Evidence(framework="torch", optimizer="SGD", lr=[1e-6],
                  update_ratio={"0.weight": [1e-7] * 6})
    top = run.ranked(ev)[0]
    assert top.cause == "lr_too_low" and top.confidence == pytest.approx(0.8)
    assert "the loss plateaued (it fell 5.81%, from 1.7 to 1.601)" in top.evidence


def test_a_small_drop_with_an_lr_far_below_the_limit_is_lr_too_low() -> None:
    run = _judge(_small_drop())
    ev = Evidence(framework="torch", optimizer="SGD", lr=[1e-4], sharpness=2.0)
    top = run.ranked(ev)[0]
    assert top.cause == "lr_too_low"
    assert "lr = 0.0001 is 1e+04x below the stability limit 2/lambda_max = 1" in top.evidence
    assert "lr = 0.5 (1/lambda_max" in top.fix


def test_an_lr_far_below_the_limit_with_weights_that_move_is_no_lr_too_low() -> None:
    run = _judge(_small_drop())
    ev = Evidence(framework="torch", optimizer="SGD", lr=[1e-4], sharpness=2.0,
                  update_ratio={"0.weight": [2e-3] * 6})
    ranked = run.ranked(ev)
    assert ranked[0].cause == "plateau" and "the weights do move" in ranked[0].evidence


def test_nice_min_drop() -> None:
    assert nice_min_drop(0.0748) == 0.05
    assert nice_min_drop(0.0352) == 0.02
    assert nice_min_drop(0.0) is None


# -- flat runs (item 7) ---------------------------------------------------------------------------


def _flat(n: int = 60) -> FloatArray:
    return np.asarray(0.9 + _noise(n, 0.01, 3), dtype=np.float64)


def test_a_flat_run_from_the_curve_alone_is_plateau() -> None:
    run = _judge(_flat())
    assert run.verdict.kind == "stall", run.verdict.reason
    assert run.ranked()[0].cause == "plateau"


@pytest.mark.parametrize(("evidence", "cause"), [
    (Evidence(framework="torch", optimizer="SGD", lr=[0.1], not_in_optimizer=["head.weight"]),
     "no_learning"),
    (Evidence(framework="torch", optimizer="SGD", lr=[0.1], unchanged=["0.weight", "0.bias"],
              update_ratio={"0.weight": [0.0] * 4, "0.bias": [0.0] * 4}), "no_learning"),
    (Evidence(framework="torch", optimizer="SGD", lr=[1e-5], sharpness=1.0), "lr_too_low"),
    (Evidence(framework="torch", optimizer="SGD", lr=[1e-7],
              update_ratio={"0.weight": [1e-8] * 4}), "lr_too_low"),
], ids=["not_in_optimizer", "unchanged", "far_below_limit", "tiny_updates"])
def test_a_flat_run_names_its_root_with_plateau_as_the_symptom(
    evidence: Evidence, cause: str,
) -> None:
    run = _judge(_flat())
    ranked = run.ranked(evidence)
    assert ranked[0].cause == cause
    assert "the loss plateaued" in ranked[0].evidence
    assert _by_cause(ranked, "plateau").confidence < ranked[0].confidence


# -- losses below zero (item 4) ------------------------------------------------------------------


def _negative_rise(n: int = 40) -> FloatArray:
    return np.asarray(np.linspace(-3.0, -1.0, n) + _noise(n, 0.01), dtype=np.float64)


def test_a_rising_negative_loss_is_no_lr_too_high_without_evidence() -> None:
    run = _judge(_negative_rise())
    assert run.verdict.kind == "rise", run.verdict.reason
    assert "lr_too_high" not in _causes(list(run.verdict.diagnoses))
    ev = Evidence(framework="torch", optimizer="SGD", lr=[0.1], grad_norm=[1.0, 1.1, 0.9])
    assert "lr_too_high" not in _causes(run.ranked(ev))


@pytest.mark.parametrize("evidence", [
    Evidence(framework="torch", optimizer="SGD", lr=[0.1], sharpness=40.0),
    Evidence(framework="torch", optimizer="SGD", lr=[0.1], grad_norm=[1.0, 5.0, 30.0]),
], ids=["past_the_measured_limit", "growing_gradients"])
def test_a_rising_negative_loss_with_evidence_is_lr_too_high(evidence: Evidence) -> None:
    run = _judge(_negative_rise())
    top = run.ranked(evidence)[0]
    assert top.cause == "lr_too_high"
    assert re.search(r"^the loss rose by 1\.7\d*, from -2\.9\d* to -1\.1\d+", top.evidence), \
        top.evidence
    assert "%" not in top.evidence


def test_figures_across_zero_state_the_absolute_change() -> None:
    n = 40
    crossing = np.linspace(0.3, -0.1, n) + _noise(n, 0.05)
    run = _judge(crossing)  # a pass: the run.verdict's own reason reads "decreased 3xx%"
    assert level_change(run.verdict) == "fell by 0.346, from 0.3063 to -0.0396", \
        level_change(run.verdict)
    negative = -1.0 - 0.08 * np.arange(n) / n + _noise(n, 0.005)
    run = _judge(negative)
    assert run.verdict.kind == "too_little_drop", run.verdict.reason
    plateau = run.ranked()[0]
    assert plateau.cause == "plateau"
    assert plateau.evidence == "the loss plateaued: it fell by 0.0686, from -1.001 to -1.069"
    assert plateau.fix.startswith("it fell by 0.0686, from -1.001 to -1.069, less than "
                                  "min_drop=0.1; if a small drop is expected"), plateau.fix


# -- passing runs ---------------------------------------------------------------------------------


def test_a_passing_run_far_above_the_reference_at_first_carries_a_warning() -> None:
    t = np.arange(60)
    curve = 40.0 * np.exp(-t / 6) + 0.5 + _noise(60, 0.005)
    verdict = check(list(curve), reference=2.3)
    assert verdict.ok, verdict.reason
    ctx = context_for({"train": list(curve)}, "train", verdict)
    warnings = passing_warnings(ctx)
    assert any(w.startswith("bad_init: the first loss 40.5 is 17.6x the reference") for w in
               warnings), warnings


# -- real torch runs, watched ---------------------------------------------------------------------


def _digits_run(*, frozen_body: bool, shuffled_labels: bool) -> tuple[Verdict, Evidence | None]:
    torch = pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    from pytest_losstrend.capture.recorder import Recorder
    from pytest_losstrend.catalogue.scenario_data import digits
    from pytest_losstrend.verdict.criteria import Criteria
    from pytest_losstrend.verdict.reference import reference_level

    torch.manual_seed(0)
    xs, ys = digits()
    x = torch.as_tensor(xs, dtype=torch.float32)
    labels = np.random.default_rng(0).permutation(ys) if shuffled_labels else ys
    y = torch.as_tensor(labels, dtype=torch.long)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    if frozen_body:
        for name, p in model.named_parameters():
            p.requires_grad_(name == "2.bias")
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    ref = reference_level("cross_entropy", ys).value
    lt = Recorder(Criteria().merged(reference=ref))
    lt.watch(model, opt)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(4):
            for idx in torch.split(torch.randperm(len(x)), 32):
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
                loss.backward()
                opt.step()
                lt.record(loss)
    finally:
        torch.set_num_threads(before)
    lt.finish_watching()
    verdict = lt.diagnosed(lt.judgment())
    return verdict, lt.evidence


def test_a_real_frozen_body_is_no_learning_at_the_reference() -> None:
    verdict, evidence = _digits_run(frozen_body=True, shuffled_labels=False)
    assert verdict.kind == "chance_level", verdict.reason
    assert evidence is not None and evidence.frozen
    top = verdict.diagnoses[0]
    assert top.cause == "no_learning", [(d.cause, d.confidence) for d in verdict.diagnoses]
    assert "frozen: 0.weight" in top.evidence and "the reference level" in top.evidence
    assert "chance_level" in _causes(list(verdict.diagnoses))


def test_real_shuffled_labels_are_chance_level() -> None:
    verdict, evidence = _digits_run(frozen_body=False, shuffled_labels=True)
    assert verdict.kind == "chance_level", verdict.reason
    assert evidence is not None and not evidence.frozen and not evidence.not_in_optimizer
    assert verdict.diagnoses[0].cause == "chance_level", verdict.diagnoses


def test_the_real_healthy_twin_passes() -> None:
    verdict, _ = _digits_run(frozen_body=False, shuffled_labels=False)
    assert verdict.ok, verdict.reason

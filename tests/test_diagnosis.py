"""Diagnosis: real training scenarios get their cause, their healthy twins pass, and the rules
rank and word their diagnoses as documented.

The scenario tests train real (tiny) models from ``pytest_losstrend.catalogue.scenarios`` under
seed 0 and judge them as the ``loss_decreases`` marker would. The rule tests build contexts by hand.
The pytester tests check what a user sees: the failure message, a conftest's own rule, the
JSON report's warnings.
"""

from __future__ import annotations

import json
import math
import re
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from pytest_losstrend.catalogue.scenarios import SCENARIOS, Scenario, run_scenario
from pytest_losstrend.diagnosis.context import DiagnosisContext, context_for
from pytest_losstrend.diagnosis.evidence import Evidence
from pytest_losstrend.diagnosis.ranking import rank
from pytest_losstrend.diagnosis.rules import builtin_diagnoses
from pytest_losstrend.verdict.criteria import Criteria
from pytest_losstrend.verdict.result import Diagnosis
from pytest_losstrend.verdict.trend import judge

SEED = 0

#: Scenarios whose bad run the built-in rules currently misdiagnose (or crash on), with why.
#: Strict: once a rule is fixed, the test XPASSes and fails, so the entry must go.
KNOWN_RULE_GAPS: dict[str, str] = {}


def _bad_params() -> list[Any]:
    out = []
    for sc in SCENARIOS:
        marks = []
        if sc.name in KNOWN_RULE_GAPS:
            marks.append(pytest.mark.xfail(reason=KNOWN_RULE_GAPS[sc.name], strict=True))
        out.append(pytest.param(sc, id=sc.name, marks=marks))
    return out


def _framework(scenario: Scenario) -> ModuleType:
    """The scenario's framework, or a skip where it is not installed."""
    return pytest.importorskip("keras" if scenario.framework == "keras" else "torch")


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Any:
    """The scenarios are tiny: one thread is faster and leaves the machine to others."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- the scenarios -----------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", _bad_params())
def test_bad_run_fails_with_its_cause(scenario: Scenario) -> None:
    _framework(scenario)
    verdict = run_scenario(scenario, bad=True, seed=SEED)
    assert verdict.status == scenario.bad_status, verdict.reason
    assert verdict.diagnoses, f"no diagnosis for: {verdict.reason}"
    top = verdict.diagnoses[0]
    assert top.cause == scenario.cause, (
        f"top cause {top.cause} ({top.confidence}: {top.evidence}); "
        f"all: {[(d.cause, d.confidence) for d in verdict.diagnoses]}; verdict: {verdict.reason}"
    )
    assert 0.0 <= top.confidence <= 1.0 and top.evidence and top.fix


@pytest.mark.parametrize("scenario", [pytest.param(s, id=s.name) for s in SCENARIOS])
def test_healthy_twin_passes(scenario: Scenario) -> None:
    _framework(scenario)
    verdict = run_scenario(scenario, bad=False, seed=SEED)
    assert verdict.ok, verdict.reason
    assert not verdict.diagnoses


def test_scenarios_cover_every_cause() -> None:
    from pytest_losstrend.diagnosis.rules import CAUSES

    assert {s.cause for s in SCENARIOS} == set(CAUSES)
    assert len({s.name for s in SCENARIOS}) == len(SCENARIOS)
    for s in SCENARIOS:
        Criteria().merged(**s.criteria)  # valid marker criteria
        assert s.explanation and s.fix and s.framework in ("torch", "keras")


# -- the rules on hand-made contexts -----------------------------------------------------------


def _ctx(losses: list[float], evidence: Evidence | None = None) -> DiagnosisContext:
    x = np.asarray(losses, dtype=np.float64)
    verdict = judge(x, Criteria())
    assert not verdict.ok, verdict.reason
    return context_for({"train": list(losses)}, "train", verdict, evidence=evidence)


def _ranked(ctx: DiagnosisContext) -> list[Diagnosis]:
    return list(rank(builtin_diagnoses(ctx)))


def _causes(ctx: DiagnosisContext) -> list[str]:
    return [d.cause for d in _ranked(ctx)]


def _growing(n: int = 12, factor: float = 1.5) -> list[float]:
    return [1.0 * factor**t for t in range(n)]


def test_stale_gradients_outrank_lr_too_high() -> None:
    ev = Evidence(framework="torch", optimizer="SGD", zero_grad_calls=0, optimizer_steps=12,
                  lr=[0.1], sharpness=50.0)
    causes = _causes(_ctx(_growing(), ev))
    assert causes[0] == "stale_gradients"
    assert "lr_too_high" in causes[1:]


@pytest.mark.parametrize("sharpness", [None, 1e6], ids=["estimated", "measured"])
def test_unscaled_features_outrank_lr_too_high(sharpness: float | None) -> None:
    stats = {"n_features": 3.0, "std_min": 1.0, "std_max": 1e4, "std_ratio": 1e4,
             "max_abs": 4e4}
    ev = Evidence(framework="torch", optimizer="SGD", zero_grad_calls=12, optimizer_steps=12,
                  lr=[0.1], input_stats=stats, sharpness=sharpness)
    causes = _causes(_ctx(_growing(), ev))
    assert causes[:2] == ["unscaled_features", "lr_too_high"]


def test_scaled_inputs_leave_lr_too_high_on_top() -> None:
    stats = {"n_features": 3.0, "std_min": 0.9, "std_max": 1.1, "std_ratio": 1.2, "max_abs": 4.0}
    ev = Evidence(framework="torch", optimizer="SGD", zero_grad_calls=12, optimizer_steps=12,
                  lr=[0.1], input_stats=stats)
    assert _causes(_ctx(_growing(), ev))[0] == "lr_too_high"


def test_non_finite_leads_when_nothing_grew_before_the_nan() -> None:
    falling = [1.0, 0.8, 0.65, 0.55, 0.5, 0.46, 0.43, 0.41, 0.4, float("nan")]
    causes = _causes(_ctx(falling))
    assert causes[0] == "non_finite"
    assert "lr_too_high" not in causes


def test_non_finite_after_growth_is_lr_too_high_first() -> None:
    growing = [1.0, 3.0, 9.0, 27.0, 81.0, 243.0, float("inf")]
    ranked = _ranked(_ctx(growing))
    assert [d.cause for d in ranked][:2] == ["lr_too_high", "non_finite"]
    assert "growing before it" in ranked[1].evidence


def test_a_two_point_jump_before_the_overflow_counts_as_growth() -> None:
    causes = _causes(_ctx([1.09e3, 1.88e5, float("inf")]))
    assert causes[0] != "non_finite"


def _fix_limit(fix: str) -> float:
    found = re.search(r"lr <= ([0-9.]+(?:e[-+]?\d+)?)", fix)
    assert found, fix
    return float(found.group(1))


@pytest.mark.parametrize(("lam", "lr", "n"), [(25.0, 0.1, 10), (103.79, 0.0195, 60),
                                              (7.3, 0.4, 12)])
def test_lr_too_high_fix_states_the_limit_from_the_growth_rate(
    lam: float, lr: float, n: int
) -> None:
    # Gradient descent on a quadratic: the loss along lambda_max scales as (1 - lr*lambda)^(2t).
    losses = [(1.0 - lr * lam) ** (2 * t) for t in range(n)]
    ev = Evidence(framework="torch", optimizer="SGD", zero_grad_calls=n, optimizer_steps=n,
                  lr=[lr])
    top = _ranked(_ctx(losses, ev))[0]
    assert top.cause == "lr_too_high"
    assert _fix_limit(top.fix) == pytest.approx(2.0 / lam, rel=0.01)
    found = re.search(r"lambda_max = ([0-9.]+(?:e[-+]?\d+)?)", top.evidence)
    assert found and float(found.group(1)) == pytest.approx(lam, rel=0.01), top.evidence


def test_lr_too_high_fix_uses_the_measured_sharpness() -> None:
    ev = Evidence(framework="torch", optimizer="SGD", zero_grad_calls=12, optimizer_steps=12,
                  lr=[0.1], sharpness=40.0)
    top = _ranked(_ctx(_growing(), ev))[0]
    assert top.cause == "lr_too_high"
    assert _fix_limit(top.fix) == pytest.approx(2.0 / 40.0)
    assert "measured" in top.fix
    assert top.confidence >= 0.9  # lr 0.1 is past the measured limit 0.05


@pytest.mark.parametrize("sharpness", [None, 400.0], ids=["estimated", "measured"])
def test_lr_too_high_fix_warns_that_the_limit_is_for_sgd_under_adam(
    sharpness: float | None,
) -> None:
    ev = Evidence(framework="torch", optimizer="Adam", momentum=0.9, zero_grad_calls=12,
                  optimizer_steps=12, lr=[0.01], sharpness=sharpness)
    top = _ranked(_ctx(_growing(), ev))[0]
    assert top.cause == "lr_too_high"
    assert "Adam" in top.fix and "SGD" in top.fix
    if sharpness is not None:
        # The SGD bound is 2/400 = 0.005; Adam is told to go ten times lower.
        assert "0.0005" in top.fix


def test_curve_only_diagnosis_of_a_divergence() -> None:
    from pytest_losstrend import check

    verdict = check(_growing(20))
    assert verdict.status == "fail"
    assert verdict.diagnoses[0].cause == "lr_too_high"
    assert "watch()" in verdict.diagnoses[0].fix


# -- what a user sees --------------------------------------------------------------------------

CUSTOM_RULE = """
from pytest_losstrend import Diagnosis

def pytest_losstrend_diagnose(context):
    if context.verdict.status != "fail":
        return None
    return [Diagnosis("data_pipeline", 0.99, "custom evidence: 42 corrupt rows",
                      "custom fix: drop the corrupt rows")]
"""


def _report(path: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def test_conftest_rule_outranks_the_builtins_in_the_message(
    lt_pytester: pytest.Pytester,
) -> None:
    lt_pytester.makeconftest(CUSTOM_RULE)
    lt_pytester.makepyfile(
        """
        import pytest

        @pytest.mark.loss_decreases
        def test_rises(losstrend):
            # x1.5 per step: a rise that stays under the divergence bound (no early stop).
            for t in range(20):
                losstrend.record(1.5 ** t)
        """
    )
    result = lt_pytester.runpytest_inprocess("--losstrend-report=json:r.json")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    custom = "cause:    data_pipeline (confidence 0.99): custom evidence: 42 corrupt rows"
    assert custom in out
    assert "fix: custom fix: drop the corrupt rows" in out
    # The built-in diagnosis follows it, with its evidence and its fix.
    assert out.index(custom) < out.index("cause:    lr_too_high (confidence")
    assert re.search(r"cause:    lr_too_high \(confidence 0\.\d+\): log-loss grows", out)
    assert re.search(r"fix: lower the learning rate 10x", out)
    diagnoses = _report(lt_pytester.path / "r.json")["tests"][0]["diagnoses"]
    assert [d["cause"] for d in diagnoses][:2] == ["data_pipeline", "lr_too_high"]
    assert diagnoses[0] == {"cause": "data_pipeline", "confidence": 0.99,
                            "evidence": "custom evidence: 42 corrupt rows",
                            "fix": "custom fix: drop the corrupt rows"}


def test_conftest_rule_shows_in_the_message_of_a_stopped_test(
    lt_pytester: pytest.Pytester,
) -> None:
    lt_pytester.makeconftest(CUSTOM_RULE)
    lt_pytester.makepyfile(
        """
        import pytest

        @pytest.mark.loss_decreases
        def test_diverges(losstrend):
            for t in range(40):
                losstrend.record(4.0 ** t)
        """
    )
    result = lt_pytester.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    assert "cause:    data_pipeline (confidence 0.99)" in result.stdout.str()


def test_failure_message_lists_the_top_diagnoses(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(
        """
        import pytest
        import torch

        @pytest.mark.loss_decreases
        def test_no_zero_grad(losstrend):
            g = torch.Generator().manual_seed(0)
            x = torch.rand(100, 1, generator=g) * 10
            y = 2 * x + 1
            model = torch.nn.Linear(1, 1)
            opt = torch.optim.SGD(model.parameters(), lr=0.01)
            loss_fn = torch.nn.functional.mse_loss
            losstrend.watch(model, opt, loss_fn=loss_fn, batch=(x, y))
            for _ in range(60):
                loss = loss_fn(model(x), y)   # optimizer.zero_grad() forgotten
                loss.backward()
                opt.step()
                losstrend.record(loss)
        """
    )
    result = lt_pytester.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    causes = re.findall(r"cause:    (\w+) \(confidence (\d\.\d\d)\): (.+)", out)
    assert causes and causes[0][0] == "stale_gradients", out
    assert float(causes[0][1]) >= 0.9
    assert "gradients never cleared" in causes[0][2]
    fixes = re.findall(r"^\s+fix: (.+)$", out, flags=re.MULTILINE)
    assert len(fixes) == len(causes) and "zero_grad()" in fixes[0]


BAD_INIT_TEST = """
import pytest
import torch

@pytest.mark.loss_decreases
def test_bad_init_still_learns(losstrend):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 20, generator=g)
    y = (x @ torch.randn(20, 10, generator=g)).argmax(1)
    model = torch.nn.Linear(20, 10)
    with torch.no_grad():
        model.weight.mul_(60.0)   # logits ~30x too large: the first loss is ~15x ln(10)
    # A step size that recovers from it: the run ends at 0.98, below the reference ln(10).
    opt = torch.optim.SGD(model.parameters(), lr=5.0)
    loss_fn = torch.nn.CrossEntropyLoss()
    losstrend.watch(model, opt, loss_fn=loss_fn, batch=(x, y))
    for _ in range(60):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        losstrend.record(loss)
"""


def test_passing_test_with_a_bad_init_carries_a_warning(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(BAD_INIT_TEST)
    result = lt_pytester.runpytest_inprocess("--losstrend-report=json:r.json")
    result.assert_outcomes(passed=1)
    record = _report(lt_pytester.path / "r.json")["tests"][0]
    losses = record["series"]["train"]["losses"]
    assert losses[0] > 10 * math.log(10)
    assert record["outcome"] == "passed"
    notes = [w for w in record["warnings"] if w.startswith("bad_init")]
    assert notes, record["warnings"]
    assert "chance level" in notes[0]

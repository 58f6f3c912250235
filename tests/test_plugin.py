"""The plugin seen from pytest: markers, verdicts, seeds, criteria errors and reports.

Every test writes a small suite of real torch training loops (``lt_helpers``, see conftest) and
runs it in-process with pytester, so torch is imported once for the whole file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest


def _report(path: Path) -> dict[str, Any]:
    """The JSON loss-trend report written at ``path``, validated against the shipped schema."""
    import jsonschema

    from pytest_losstrend.reports.report import SCHEMA_PATH

    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    return data


def _steps(pytester: pytest.Pytester) -> int:
    """How many steps the last ``lt_helpers`` loop completed before it returned or stopped."""
    return int((pytester.path / "steps.txt").read_text())


def _outcomes(result: pytest.RunResult) -> dict[str, str]:
    """Outcome by test name (with its parameter id) from a ``-v`` run."""
    found = re.findall(r"::(\S+) (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)", result.stdout.str())
    return dict(found)


def _by_test(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The JSON report's test records keyed by test name (the part after ``::``)."""
    return {t["nodeid"].split("::", 1)[1]: t for t in doc["tests"]}


# -- loss_decreases: the verdict decides the test ----------------------------------------------


def test_healthy_loop_passes(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(
        """
        import pytest
        from lt_helpers import train

        @pytest.mark.loss_decreases(min_drop=0.5)
        def test_full_batch(losstrend):
            train(losstrend)

        @pytest.mark.loss_decreases
        def test_minibatches(losstrend):
            train(losstrend, batch=16)
        """
    )
    result = lt_pytester.runpytest_inprocess()
    result.assert_outcomes(passed=2)


def test_diverging_loop_fails_and_stops_early(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(
        """
        import pytest
        from lt_helpers import diverge

        @pytest.mark.loss_decreases
        def test_lr_too_high(losstrend):
            diverge(losstrend, steps=200)
        """
    )
    result = lt_pytester.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*loss_decreases FAILED on series 'train': diverged: *",
            "*stopped:  at step *, the remaining steps were skipped",
        ]
    )
    # The loss passes 1e4 x its first value within a few steps; the other ~195 never run.
    assert _steps(lt_pytester) < 10


def test_nan_loss_fails_naming_the_step(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(
        """
        import pytest
        from lt_helpers import nan_batch

        @pytest.mark.loss_decreases
        def test_nan_in_data(losstrend):
            nan_batch(losstrend, epochs=3, bad_row=75)
        """
    )
    result = lt_pytester.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    # Row 75 is in the 8th batch of 10: step 7.
    result.stdout.fnmatch_lines(["*non-finite loss nan at step 7 (last finite value * at step 6)*"])
    assert _steps(lt_pytester) == 7


def test_frozen_loss_fails(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(
        """
        import pytest
        from lt_helpers import train

        @pytest.mark.loss_decreases
        def test_params_not_in_optimizer(losstrend):
            train(losstrend, frozen=True)
        """
    )
    result = lt_pytester.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*FAILED on series 'train': frozen: all 60 losses equal *"])


def test_stalled_loop_fails(lt_pytester: pytest.Pytester) -> None:
    """lr=1e-7 on minibatches: a flat, noisy curve. Whether the verdict is a stall or
    inconclusive, a strict test (inconclusive='fail') fails."""
    lt_pytester.makepyfile(
        """
        import pytest
        from lt_helpers import train

        @pytest.mark.loss_decreases(inconclusive="fail")
        def test_lr_too_low(losstrend):
            train(losstrend, lr=1e-7, batch=16)
        """
    )
    result = lt_pytester.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert re.search(
        r"loss_decreases (FAILED on series 'train': (stalled|decreases too little)"
        r"|INCONCLUSIVE on series 'train')",
        out,
    ), out


@pytest.mark.parametrize(
    ("policy", "outcome"), [("fail", "failed"), ("skip", "skipped"), ("pass", "passed")]
)
def test_inconclusive_policy(lt_pytester: pytest.Pytester, policy: str, outcome: str) -> None:
    """One step cannot show a trend: inconclusive, whatever the loss."""
    lt_pytester.makepyfile(
        f"""
        import pytest
        from lt_helpers import train

        @pytest.mark.loss_decreases(inconclusive={policy!r})
        def test_short_run(losstrend):
            train(losstrend, steps=1)
        """
    )
    result = lt_pytester.runpytest_inprocess("-rs")
    result.assert_outcomes(**{outcome: 1})
    if policy == "fail":
        result.stdout.fnmatch_lines(
            ["*loss_decreases INCONCLUSIVE on series 'train': inconclusive: 1 point*"]
        )
    if policy == "skip":
        result.stdout.fnmatch_lines(
            ["SKIPPED *inconclusive: 1 point after warmup; one point cannot show a trend*"]
        )


def test_below_is_a_ceiling_on_the_end_level(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(
        """
        import pytest
        from lt_helpers import train

        # The noise floor of the data is 0.1 ** 2 = 0.01: the loss ends near it.
        @pytest.mark.loss_decreases(below=0.05)
        def test_reachable(losstrend):
            train(losstrend)

        @pytest.mark.loss_decreases(below=0.001)
        def test_unreachable(losstrend):
            train(losstrend)
        """
    )
    result = lt_pytester.runpytest_inprocess("-v")
    assert _outcomes(result) == {"test_reachable": "PASSED", "test_unreachable": "FAILED"}
    result.stdout.fnmatch_lines(["*end level * is above below=0.001 (it fell *"])


def test_series_eval_judges_the_eval_series(lt_pytester: pytest.Pytester) -> None:
    """The train loss falls in every case; only the eval series differs."""
    lt_pytester.makepyfile(
        """
        import pytest
        from lt_helpers import train

        @pytest.mark.loss_decreases(series="eval")
        def test_held_out(losstrend):
            train(losstrend, batch=16, eval_every=4)

        # Held-out targets of the opposite sign: the better the fit, the worse the eval loss.
        @pytest.mark.loss_decreases(series="eval")
        def test_shifted(losstrend):
            train(losstrend, batch=16, eval_every=4, shift=-1.0)

        @pytest.mark.loss_decreases(series="eval")
        def test_no_eval(losstrend):
            train(losstrend, batch=16)
        """
    )
    result = lt_pytester.runpytest_inprocess("-v")
    assert _outcomes(result) == {
        "test_held_out": "PASSED",
        "test_shifted": "FAILED",
        "test_no_eval": "FAILED",
    }
    out = result.stdout.str()
    assert "loss_decreases FAILED on series 'eval'" in out
    assert "no loss was recorded in series 'eval' (series recorded: 'train')" in out


def test_warmup_ignores_the_leading_steps(lt_pytester: pytest.Pytester) -> None:
    """An unstable first phase from near the optimum: judged whole, the loss ends where it
    started; with warmup=20 the judged part is the recovery, a clear decrease."""
    lt_pytester.makepyfile(
        """
        import pytest
        from lt_helpers import unstable_start

        @pytest.mark.loss_decreases
        def test_whole(losstrend):
            unstable_start(losstrend, unstable=20)

        @pytest.mark.loss_decreases(warmup=20)
        def test_after_warmup(losstrend):
            unstable_start(losstrend, unstable=20)
        """
    )
    result = lt_pytester.runpytest_inprocess("-v")
    assert _outcomes(result) == {"test_whole": "FAILED", "test_after_warmup": "PASSED"}


def test_marker_on_a_class_applies_to_its_methods(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(
        """
        import pytest
        from lt_helpers import train

        @pytest.mark.loss_decreases(min_drop=0.5)
        class TestTraining:
            def test_learns(self, losstrend):
                train(losstrend)

            def test_frozen(self, losstrend):
                train(losstrend, frozen=True)
        """
    )
    result = lt_pytester.runpytest_inprocess("-v")
    assert _outcomes(result) == {
        "TestTraining::test_learns": "PASSED",
        "TestTraining::test_frozen": "FAILED",
    }


def test_marked_test_body_keeps_its_own_outcome(lt_pytester: pytest.Pytester) -> None:
    """An error, a skip or an xfail in the body decides the test; the verdict does not."""
    lt_pytester.makepyfile(
        test_body="""
        import pytest
        from lt_helpers import train

        @pytest.mark.loss_decreases
        def test_crashes(losstrend):
            train(losstrend, steps=20)
            raise RuntimeError("data loader died")

        @pytest.mark.loss_decreases
        def test_skips(losstrend):
            pytest.skip("no GPU here")

        @pytest.mark.xfail(strict=True, reason="known frozen head")
        @pytest.mark.loss_decreases
        def test_known_bad(losstrend):
            train(losstrend, frozen=True)
        """
    )
    result = lt_pytester.runpytest_inprocess("-v", "--losstrend-report=json:body.json")
    assert _outcomes(result) == {
        "test_crashes": "FAILED",
        "test_skips": "SKIPPED",
        "test_known_bad": "XFAIL",
    }
    result.stdout.fnmatch_lines(["*RuntimeError: data loader died*"])
    tests = _by_test(_report(lt_pytester.path / "body.json"))
    assert tests["test_crashes"]["outcome"] == "failed"
    assert len(tests["test_crashes"]["series"]["train"]["losses"]) == 20
    assert tests["test_known_bad"]["outcome"] == "xfailed"  # as pytest counts an xfail
    assert tests["test_known_bad"]["verdict"]["kind"] == "frozen"
    # The crashed test was never judged, but it still is a loss_decreases test.
    assert tests["test_crashes"]["marker"] == "loss_decreases"


# -- the failure message ------------------------------------------------------------------------


def test_failure_message_content(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(
        """
        import pytest
        from lt_helpers import unstable_start

        @pytest.mark.loss_decreases(min_drop=0.2)
        def test_back_where_it_started(losstrend):
            unstable_start(losstrend, steps=80, unstable=20)
        """
    )
    result = lt_pytester.runpytest_inprocess("--losstrend-seed=3")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*loss_decreases FAILED on series 'train': *",
            "*  figures:  start * -> end *, drop *%, Mann-Kendall tau *, p *, noise *,"
            " 80 points",
            "*  curve:    * (* .. *)",
            "*  criteria: series=train min_drop=0.2 below=None tolerance=0.1 warmup=0"
            " min_points=8 seeds=1 inconclusive=skip reference=auto capture=True allow=[]",
            "*  seed:     3 (rerun: pytest '*::test_*' --losstrend-seed=3)",
        ]
    )
    curve = next(ln for ln in result.stdout.lines if "curve:" in ln)
    assert set(curve.split("curve:")[1].split()[0]) <= set("▁▂▃▄▅▆▇█")


def test_divergence_message_names_the_step_and_level(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(
        """
        import pytest
        from lt_helpers import diverge

        @pytest.mark.loss_decreases
        def test_lr_too_high(losstrend):
            diverge(losstrend)
        """
    )
    result = lt_pytester.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    steps = _steps(lt_pytester)
    result.stdout.fnmatch_lines(
        [
            f"*diverged: loss reached * at step {steps}, x* its first level *",
            f"*  figures:  start * -> end *, {steps + 1} points",
            f"*  went wrong at step {steps} (loss *)",
            "*  curve:    *",
            "*  criteria: series=train *",
            "*  seed:     0 (rerun: pytest 'test_*::test_lr_too_high' --losstrend-seed=0)",
            f"*  stopped:  at step {steps}, the remaining steps were skipped",
        ]
    )


# -- seeds=N ------------------------------------------------------------------------------------


def test_seeds_parametrizes_and_every_seed_must_pass(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(
        """
        import pytest
        from lt_helpers import train

        @pytest.mark.loss_decreases(seeds=3, min_drop=0.5)
        def test_robust(losstrend):
            train(losstrend, batch=16)

        # Only the second seed gets a learning rate that blows up.
        @pytest.mark.loss_decreases(seeds=3)
        def test_fragile(losstrend):
            train(losstrend, lr=3.0 if losstrend.seed == 1 else 0.05)
        """
    )
    result = lt_pytester.runpytest_inprocess("-v", "--losstrend-report=json:out.json")
    assert _outcomes(result) == {
        "test_robust[seed0]": "PASSED",
        "test_robust[seed1]": "PASSED",
        "test_robust[seed2]": "PASSED",
        "test_fragile[seed0]": "PASSED",
        "test_fragile[seed1]": "FAILED",
        "test_fragile[seed2]": "PASSED",
    }
    tests = _by_test(_report(lt_pytester.path / "out.json"))
    robust = [tests[f"test_robust[seed{i}]"] for i in range(3)]
    assert [t["seed"] for t in robust] == [0, 1, 2]
    assert all(t["criteria"]["seeds"] == 3 for t in robust)
    curves = [tuple(t["series"]["train"]["losses"]) for t in robust]
    assert all(len(c) == 60 for c in curves)
    assert len(set(curves)) == 3, "each seed must give its own curve"


def test_rerun_hint_of_a_failing_seed_reproduces_it(lt_pytester: pytest.Pytester) -> None:
    """Rerunning the failing test id with the seed option its message suggests must run
    it under the same seed again."""
    lt_pytester.makepyfile(
        test_fragile="""
        import pytest
        from lt_helpers import train

        @pytest.mark.loss_decreases(seeds=3)
        def test_fragile(losstrend):
            train(losstrend, lr=3.0 if losstrend.seed == 1 else 0.05)
        """
    )
    result = lt_pytester.runpytest_inprocess("-v")
    assert _outcomes(result)["test_fragile[seed1]"] == "FAILED"
    hint = re.search(r"seed: .*(--losstrend-seed=\d+)", result.stdout.str())
    assert hint, result.stdout.str()
    rerun = lt_pytester.runpytest_inprocess("test_fragile.py::test_fragile[seed1]", hint[1])
    rerun.assert_outcomes(failed=1)


def test_seeds_combine_with_parametrize(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(
        """
        import pytest
        from lt_helpers import train

        @pytest.mark.loss_decreases(seeds=2)
        @pytest.mark.parametrize("lr", [0.05, 0.1])
        def test_grid(losstrend, lr):
            train(losstrend, lr=lr)
        """
    )
    result = lt_pytester.runpytest_inprocess("-v")
    outcomes = _outcomes(result)
    assert set(outcomes.values()) == {"PASSED"}
    ids = {frozenset(re.fullmatch(r"test_grid\[(.*)\]", t)[1].split("-")) for t in outcomes}
    assert ids == {frozenset({s, lr}) for s in ("seed0", "seed1") for lr in ("0.05", "0.1")}


def test_seeds_follow_the_base_seed(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(
        """
        import pytest
        import torch

        @pytest.mark.loss_decreases(seeds=2, inconclusive="pass")
        def test_seeded(losstrend):
            assert torch.initial_seed() == losstrend.seed
            losstrend.record(1.0)
        """
    )
    result = lt_pytester.runpytest_inprocess(
        "--losstrend-seed=10", "--losstrend-report=json:o.json"
    )
    result.assert_outcomes(passed=2)
    tests = _by_test(_report(lt_pytester.path / "o.json"))
    assert {n: t["seed"] for n, t in tests.items()} == {
        "test_seeded[seed0]": 10,
        "test_seeded[seed1]": 11,
    }


# -- bad criteria: a collection error naming the criterion and the test ---------------------


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ("loss_decreases(min_dorp=0.2)", "unknown criterion 'min_dorp'"),
        ("loss_decreases(min_drop=1.5)", "criterion min_drop=1.5: expected 0 <= min_drop < 1"),
        ("loss_decreases(min_drop='x')", "criterion min_drop='x': expected a number"),
        ("loss_decreases(min_drop=True)", "criterion min_drop=True: expected a number"),
        ("loss_decreases(warmup=-1)", "criterion warmup=-1: expected an integer >= 0"),
        ("loss_decreases(warmup=2.5)", "criterion warmup=2.5: expected an integer >= 0"),
        ("loss_decreases(seeds=0)", "criterion seeds=0: expected an integer >= 1"),
        ("loss_decreases(min_points=2)", "criterion min_points=2: expected an integer >= 3"),
        ("loss_decreases(tolerance=-0.1)", "criterion tolerance=-0.1: expected tolerance >= 0"),
        ("loss_decreases(below=float('nan'))", "criterion below=nan: expected a finite number"),
        ("loss_decreases(series='')", "criterion series='': expected a non-empty string"),
        ("loss_decreases(inconclusive='maybe')", "criterion inconclusive='maybe': expected one of"),
        ("loss_decreases(0.2)", "loss_decreases takes keyword criteria only, got positional"),
        ("loss_fails(mim_drop=0.2)", "unknown criterion 'mim_drop'"),
        (
            "loss_fails(cause=3)",
            "loss_fails: cause must be a cause code such as 'lr_too_high', got 3",
        ),
        ("loss_fails('no_grad', cause='no_grad')", "loss_fails: cause given twice"),
    ],
)
def test_bad_criteria_are_a_collection_error(
    pytester: pytest.Pytester, marker: str, expected: str
) -> None:
    pytester.makepyfile(
        test_bad=f"""
        import pytest

        def test_fine():
            pass

        @pytest.mark.{marker}
        def test_wrong(losstrend):
            losstrend.record(1.0)
        """
    )
    result = pytester.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(errors=1)
    name = marker.split("(", maxsplit=1)[0]
    out = result.stdout.str()
    assert "ERROR collecting test_bad.py" in out
    assert f"test_bad.py::test_wrong: @pytest.mark.{name}: " in out
    assert expected in out


def test_known_criteria_are_listed_for_an_unknown_one(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.loss_decreases(min_dorp=0.2)
        def test_typo(losstrend):
            pass
        """
    )
    result = pytester.runpytest_inprocess()
    result.stdout.fnmatch_lines(
        [
            "*unknown criterion 'min_dorp'; known: series, min_drop, below, tolerance, warmup,"
            " min_points, seeds, inconclusive*"
        ]
    )


# -- nothing recorded ---------------------------------------------------------------------------


def test_marked_test_that_records_nothing_fails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.loss_decreases
        def test_forgot_to_record(losstrend):
            pass
        """
    )
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*loss_decreases FAILED on series 'train': no loss was recorded in series 'train'"
            " (series recorded: none); call losstrend.record(loss) once per optimizer step*"
        ]
    )


def test_marked_test_without_the_fixture_fails_saying_so(pytester: pytest.Pytester) -> None:
    """The test never asked for ``losstrend``, so it cannot have recorded anything: the
    message must point at the missing fixture argument, not only at a missing record()."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.loss_decreases
        def test_no_fixture():
            pass
        """
    )
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*did not use the losstrend fixture*"])


def test_fixture_used_through_another_fixture(lt_pytester: pytest.Pytester) -> None:
    """A helper fixture may take ``losstrend`` on the test's behalf."""
    lt_pytester.makepyfile(
        """
        import pytest
        from lt_helpers import train

        @pytest.fixture
        def fit(losstrend):
            return lambda **kw: train(losstrend, **kw)

        @pytest.mark.loss_decreases
        def test_learns(fit):
            fit()

        @pytest.mark.loss_decreases
        def test_frozen(fit):
            fit(frozen=True)
        """
    )
    result = lt_pytester.runpytest_inprocess("-v")
    assert _outcomes(result) == {"test_learns": "PASSED", "test_frozen": "FAILED"}
    result.stdout.fnmatch_lines(["*FAILED on series 'train': frozen: *"])


# -- loss_fails ---------------------------------------------------------------------------------


def test_loss_fails(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(
        """
        import pytest
        from lt_helpers import diverge, train

        @pytest.mark.loss_fails
        def test_diverges_as_expected(losstrend):
            diverge(losstrend)

        @pytest.mark.loss_fails(min_drop=0.5)
        def test_frozen_as_expected(losstrend):
            train(losstrend, frozen=True)

        @pytest.mark.loss_fails
        def test_learns_after_all(losstrend):
            train(losstrend)

        @pytest.mark.loss_fails
        def test_too_short_to_tell(losstrend):
            train(losstrend, steps=1)
        """
    )
    result = lt_pytester.runpytest_inprocess("-v")
    assert _outcomes(result) == {
        # Expected failures, counted as pytest counts an xfail.
        "test_diverges_as_expected": "XFAIL",
        "test_frozen_as_expected": "XFAIL",
        "test_learns_after_all": "FAILED",
        "test_too_short_to_tell": "FAILED",
    }
    result.stdout.fnmatch_lines(
        [
            "*loss_fails: expected the loss verdict to fail, but it passed",
            "*loss_fails passed on series 'train': decreased *",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*loss_fails: expected the loss verdict to fail, but it was inconclusive"]
    )


def test_loss_fails_cause_mismatch(lt_pytester: pytest.Pytester) -> None:
    """No diagnosis of a diverging run names ``no_grad`` as its top cause."""
    lt_pytester.makepyfile(
        """
        import pytest
        from lt_helpers import diverge

        @pytest.mark.loss_fails(cause="no_grad")
        def test_keyword(losstrend):
            diverge(losstrend)

        @pytest.mark.loss_fails("no_grad")
        def test_positional(losstrend):
            diverge(losstrend)
        """
    )
    result = lt_pytester.runpytest_inprocess("-v")
    assert _outcomes(result) == {"test_keyword": "FAILED", "test_positional": "FAILED"}
    # Counted at the start of a line: the short summary repeats the message, cut to the
    # terminal's width, which differs under pytest-xdist.
    lines = result.stdout.lines
    phrase = "loss_fails: the verdict failed, but its top cause is not 'no_grad'"
    assert sum(ln.startswith(phrase) for ln in lines) == 2


def test_loss_fails_cause_must_be_a_cause_code(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(
        """
        import pytest

        @pytest.mark.loss_fails(cause="LR too high")
        def test_bad_cause(losstrend):
            pass
        """
    )
    result = lt_pytester.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*test_bad_cause*loss_fails*cause must be a cause code*"])


# -- seeding ------------------------------------------------------------------------------------

SEEDED = """
import pytest
from lt_helpers import train

@pytest.mark.loss_decreases
def test_minibatches(losstrend):
    train(losstrend, batch=16)
"""


def test_seed_option_changes_the_curve(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(SEEDED)
    curves = []
    for seed in (1, 2):
        result = lt_pytester.runpytest_inprocess(
            f"--losstrend-seed={seed}", f"--losstrend-report=json:s{seed}.json"
        )
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines([f"losstrend: seed {seed} (--losstrend-seed=N to change)"])
        doc = _report(lt_pytester.path / f"s{seed}.json")
        assert doc["seed"] == seed
        assert doc["tests"][0]["seed"] == seed
        curves.append(doc["tests"][0]["series"]["train"]["losses"])
    assert curves[0] != curves[1]


def test_same_seed_same_curve_and_verdict(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(SEEDED)
    docs = []
    for run in (1, 2):
        result = lt_pytester.runpytest_inprocess(
            "--losstrend-seed=7", f"--losstrend-report=json:run{run}.json"
        )
        result.assert_outcomes(passed=1)
        docs.append(_report(lt_pytester.path / f"run{run}.json"))
    assert docs[0] == docs[1]
    assert len(docs[0]["tests"][0]["series"]["train"]["losses"]) == 60


def test_default_seed_in_header(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_inprocess()
    result.stdout.fnmatch_lines(["losstrend: seed 0 (--losstrend-seed=N to change)"])


def test_ini_seed_and_command_line_precedence(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makeini("[pytest]\nlosstrend_seed = 5\n")
    lt_pytester.makepyfile(SEEDED)
    result = lt_pytester.runpytest_inprocess("--losstrend-report=json:ini.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["losstrend: seed 5 *"])
    ini_doc = _report(lt_pytester.path / "ini.json")
    assert ini_doc["seed"] == 5
    assert ini_doc["tests"][0]["seed"] == 5

    result = lt_pytester.runpytest_inprocess(
        "--losstrend-seed=5", "--losstrend-report=json:cl.json"
    )
    assert _report(lt_pytester.path / "cl.json") == ini_doc

    result = lt_pytester.runpytest_inprocess("--losstrend-seed=6")
    result.stdout.fnmatch_lines(["losstrend: seed 6 *"])


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "4294967296", "99999999999999999999999"])
def test_bad_seed_option_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_inprocess(f"--losstrend-seed={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*--losstrend-seed: seed must be an integer from 0 to 4294967295 (2**32 - 1), "
         f"got '{value}'*"]
    )


def test_bad_ini_seed_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nlosstrend_seed = -3\n")
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*ini option losstrend_seed: seed must be an integer from 0 to 4294967295*, got '-3'*"]
    )


# -- reports ------------------------------------------------------------------------------------

REPORTED = """
import pytest
from lt_helpers import nan_batch, train

@pytest.mark.loss_decreases(min_drop=0.5)
def test_marked(losstrend):
    train(losstrend, batch=16, eval_every=5)

def test_unmarked(losstrend):
    train(losstrend, steps=20)

@pytest.mark.loss_decreases
def test_nan(losstrend):
    nan_batch(losstrend)

def test_plain():
    pass
"""


def test_term_report(lt_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "160")  # wide enough for every column
    lt_pytester.makepyfile(test_reported=REPORTED)
    result = lt_pytester.runpytest_inprocess("--losstrend-report")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*= loss trends: 3 tests (1 failed, 2 passed), seed 0 =*",
            "test * series * steps * start -> end * drop * verdict * outcome * why * curve",
            "*test_marked * train * 60 * PASS *",
            "*test_marked * eval * 12 *",
            "*test_nan * train * 8 * FAIL *",
            "*test_unmarked * train * 20 *",
        ]
    )
    assert "test_plain" not in result.stdout.str().split("loss trends:")[1]


def test_term_report_for_a_run_that_recorded_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_inprocess("--losstrend-report=term")
    result.stdout.fnmatch_lines(["*= loss trends: 0 tests, seed 0 =*", "no test recorded a loss"])


def test_json_report(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(test_reported=REPORTED)
    result = lt_pytester.runpytest_inprocess(
        "--losstrend-report=json:reports/lt.json", "--losstrend-seed=4"
    )
    result.assert_outcomes(passed=3, failed=1)
    path = lt_pytester.path / "reports" / "lt.json"
    result.stdout.fnmatch_lines(["losstrend: JSON report written to */reports/lt.json"])
    doc = _report(path)  # strict JSON: a NaN loss must not have produced a bare NaN
    assert doc["schema"] == "losstrend-report/1"
    assert doc["seed"] == 4
    tests = _by_test(doc)
    assert sorted(tests) == ["test_marked", "test_nan", "test_unmarked"]
    for name, t in tests.items():
        assert t["nodeid"] == f"test_reported.py::{name}"
        assert {"nodeid", "outcome", "framework", "criteria", "series", "verdict"} <= set(t)
        assert t["framework"] == "torch"
        assert t["seed"] == 4

    marked = tests["test_marked"]
    assert marked["outcome"] == "passed"
    assert marked["marker"] == "loss_decreases"
    assert marked["criteria"]["min_drop"] == 0.5
    assert marked["criteria"]["series"] == "train"
    assert marked["verdict"]["status"] == "pass"
    assert marked["verdict"]["ok"] is True
    assert marked["verdict"]["kind"] == "decrease"
    assert set(marked["series"]) == {"train", "eval"}
    assert len(marked["series"]["train"]["losses"]) == 60
    assert len(marked["series"]["eval"]["losses"]) == 12
    assert marked["series"]["train"]["verdict"] == marked["verdict"]
    assert marked["series"]["eval"]["verdict"]["status"] in ("pass", "fail", "inconclusive")

    unmarked = tests["test_unmarked"]
    assert unmarked["outcome"] == "passed"
    assert unmarked["marker"] is None
    assert unmarked["verdict"] is None
    assert len(unmarked["series"]["train"]["losses"]) == 20

    nan = tests["test_nan"]
    assert nan["outcome"] == "failed"
    assert nan["verdict"]["status"] == "fail"
    assert nan["verdict"]["kind"] == "non_finite"
    assert nan["verdict"]["failed_at"] == 7
    assert nan["series"]["train"]["losses"][7] == "nan"


def test_report_from_ini(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makeini("[pytest]\nlosstrend_report =\n    term\n    json:ini.json\n")
    lt_pytester.makepyfile(test_reported=REPORTED)
    result = lt_pytester.runpytest_inprocess("-k", "marked")
    result.stdout.fnmatch_lines(["*= loss trends: 2 tests (2 passed), seed 0 =*"])
    assert len(_report(lt_pytester.path / "ini.json")["tests"]) == 2


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--losstrend-report=xml:x.xml", "unknown report format 'xml'; expected one of term, json"),
        ("--losstrend-report=json", "the json report needs a path, e.g. json:out.json"),
        ("--losstrend-report=json:", "the json report needs a path"),
        ("--losstrend-report=term:t.txt", "the term report takes no path"),
    ],
)
def test_bad_report_option_is_a_usage_error(
    pytester: pytest.Pytester, option: str, message: str
) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_inprocess(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--losstrend-report: {message}*"])


def test_bad_ini_report_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nlosstrend_report = yaml:out.yaml\n")
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini option losstrend_report: unknown report format 'yaml'*"])


XDIST_SUITE = """
import pytest

def descend(losstrend, lr, steps=40):
    # Gradient descent on (w - 3) ** 2 + 1 in plain python: a one-parameter model.
    w = 0.0
    for _ in range(steps):
        losstrend.record((w - 3.0) ** 2 + 1.0)
        w -= lr * 2.0 * (w - 3.0)

@pytest.mark.loss_decreases
@pytest.mark.parametrize("lr", [0.01, 0.05, 0.1])
def test_descends(losstrend, lr):
    descend(losstrend, lr)

@pytest.mark.loss_decreases
def test_too_high(losstrend):
    descend(losstrend, lr=1.5)
"""


def test_json_report_gathers_xdist_workers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_xdist=XDIST_SUITE)
    result = pytester.runpytest_subprocess("-n", "2", "--losstrend-report=json:x.json")
    result.assert_outcomes(passed=3, failed=1)
    tests = _by_test(_report(pytester.path / "x.json"))
    assert sorted(tests) == [
        "test_descends[0.01]",
        "test_descends[0.05]",
        "test_descends[0.1]",
        "test_too_high",
    ]
    assert tests["test_too_high"]["outcome"] == "failed"
    assert tests["test_too_high"]["verdict"]["kind"] == "divergence"
    assert all(t["framework"] is None for t in tests.values())


def test_inconclusive_skips_by_default(lt_pytester: pytest.Pytester) -> None:
    """Ten noisy points cannot decide: by default the test is skipped with the advice."""
    lt_pytester.makepyfile(
        """
        import pytest

        @pytest.mark.loss_decreases
        def test_short(losstrend):
            for v in [1.0, 1.4, 0.7, 1.2, 0.9, 1.3, 0.8, 1.1, 0.85, 0.95]:
                losstrend.record(v)
        """
    )
    result = lt_pytester.runpytest_inprocess("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*inconclusive: *record more steps*"])


def test_catalogue_option_runs_the_catalogue_in_any_folder(pytester: pytest.Pytester) -> None:
    """--losstrend-catalogue adds the built-in catalogue to a run in an unrelated folder."""
    pytester.makepyfile(test_user="def test_own():\n    assert True\n")
    result = pytester.runpytest_subprocess(
        "--losstrend-catalogue", "-p", "no:cacheprovider",
        "-k", "own or non_finite-seed0",
    )
    result.assert_outcomes(passed=3)
    result.stdout.no_fnmatch_line("*losstrend_catalogue*not found*")


def test_catalogue_marker_selects_it_alone(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user="def test_own():\n    assert True\n")
    result = pytester.runpytest_subprocess(
        "--losstrend-catalogue", "-p", "no:cacheprovider", "-m", "losstrend_catalogue",
        "-k", "non_finite", "-q",
    )
    result.assert_outcomes(passed=4)

"""What a test's own error and its markers look like when the loss check also has a say."""

from __future__ import annotations

import json

import pytest

FALLING = "losstrend.record([1.0 / (i + 1) for i in range(10)])"


@pytest.mark.parametrize("last", ["float('nan')", "1e30"], ids=["nan", "diverged"])
def test_body_error_is_the_failure_and_the_verdict_is_shown(
    lt_pytester: pytest.Pytester, last: str
) -> None:
    """A record() in a finally stops the run (NaN, or past the divergence bound) while the
    body's error is on its way out: the body's error is the test's failure, with the loss
    verdict under it, and the report keeps both."""
    lt_pytester.makepyfile(test_inner=f"""
        import pytest

        @pytest.mark.loss_decreases
        def test_loader_breaks(losstrend):
            try:
                {FALLING}
                raise ValueError("data loader broke")
            finally:
                losstrend.record({last})
    """)
    result = lt_pytester.runpytest_inprocess("--losstrend-report=json:r.json", "-rf")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*raise ValueError(\"data loader broke\")",
        "E*ValueError: data loader broke",
        "E*losstrend: after this error, the loss check failed too:",
        "E*loss_decreases FAILED on series 'train': *",
        "FAILED test_inner.py::test_loader_breaks - ValueError: data loader broke",
    ])
    (test,) = json.loads((lt_pytester.path / "r.json").read_text())["tests"]
    assert test["outcome"] == "failed"
    assert test["verdict"]["status"] == "fail"
    assert len(test["series"]["train"]["losses"]) == 11


def test_an_error_raised_after_a_stop_shows_both(lt_pytester: pytest.Pytester) -> None:
    """The stop came first and the user's cleanup raised after it: the cleanup error is the
    failure, and the stop is in its chain."""
    lt_pytester.makepyfile(test_inner=f"""
        import pytest

        @pytest.mark.loss_decreases
        def test_cleanup_breaks(losstrend):
            try:
                {FALLING}
                losstrend.record(float("nan"))
            finally:
                raise OSError("could not save the checkpoint")
    """)
    result = lt_pytester.runpytest_inprocess("-rf")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "LossTrendStop" in out and "non-finite loss nan at step 10" in out
    result.stdout.fnmatch_lines(
        ["FAILED test_inner.py::test_cleanup_breaks - OSError: could not save the*"])


def test_keyboard_interrupt_in_the_body_is_not_a_loss_failure(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(test_inner=f"""
        import pytest

        @pytest.mark.loss_decreases
        def test_interrupted(losstrend):
            try:
                {FALLING}
                raise KeyboardInterrupt
            finally:
                losstrend.record(float("nan"))
    """)
    # In a subprocess: an in-process KeyboardInterrupt would stop this session too.
    result = lt_pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert "KeyboardInterrupt" in result.stdout.str()


def test_both_markers_on_one_test_is_a_collection_error(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(test_both="""
        import pytest
        from lt_helpers import train

        @pytest.mark.loss_fails
        @pytest.mark.loss_decreases
        def test_both(losstrend):
            train(losstrend)
    """, test_class="""
        import pytest
        from lt_helpers import train

        @pytest.mark.loss_decreases
        class TestClass:
            @pytest.mark.loss_fails(cause="lr_too_high")
            def test_inherits_the_other(self, losstrend):
                train(losstrend)
    """, test_fine="""
        import pytest
        from lt_helpers import train

        @pytest.mark.loss_decreases
        def test_fine(losstrend):
            train(losstrend)
    """)
    result = lt_pytester.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.INTERRUPTED  # collection errors stop the run
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([
        "*test_both.py::test_both: both @pytest.mark.loss_decreases and "
        "@pytest.mark.loss_fails*keep one of the two",
    ])
    result.stdout.fnmatch_lines(["*test_class.py::TestClass::test_inherits_the_other: both*"])

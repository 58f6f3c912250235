"""``LossTrend.record``: what it accepts, what it rejects, and when it stops a run."""

from __future__ import annotations

import gc
import math
import weakref
from decimal import Decimal
from fractions import Fraction
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from pytest_losstrend import LossTrend
from pytest_losstrend.fixture import LossTrendStop


@pytest.fixture(scope="module")
def tf() -> ModuleType:
    """tensorflow, imported only by the tests that need it."""
    import tensorflow

    return tensorflow


def _recorded(value: Any) -> list[float]:
    """What one ``record(value)`` call appends to a fresh train series."""
    lt = LossTrend()
    lt.record(value)
    return lt.losses()


# -- accepted values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.5, [0.5]),
        (3, [3.0]),
        (np.float64(0.25), [0.25]),
        (np.float32(0.5), [0.5]),
        (np.float16(1.5), [1.5]),
        (np.int64(7), [7.0]),
        (np.array(0.75), [0.75]),
        (np.array([1.0, 0.5, 0.25]), [1.0, 0.5, 0.25]),
        (np.array([2], dtype=np.int32), [2.0]),
        ([1.0, 2, np.float32(0.5)], [1.0, 2.0, 0.5]),
        ((1.0, 0.5), [1.0, 0.5]),
        ([], []),
    ],
    ids=lambda v: type(v).__name__,
)
def test_record_plain_values(value: Any, expected: list[float]) -> None:
    got = _recorded(value)
    assert got == expected
    assert all(type(v) is float for v in got)


def test_record_appends_in_order_across_calls() -> None:
    lt = LossTrend()
    lt.record(3.0)
    lt.record([2.5, 2.0])
    lt.record(np.array([1.5]))
    lt.record(1)
    assert lt.losses() == [3.0, 2.5, 2.0, 1.5, 1.0]
    assert lt.framework is None


def test_record_named_series() -> None:
    lt = LossTrend()
    lt.record(1.0)
    lt.record(2.0, series="eval")
    lt.record(0.5)
    assert lt.series_names == ["train", "eval"]
    assert lt.as_dict() == {"train": [1.0, 0.5], "eval": [2.0]}
    assert lt.losses("missing") == []
    assert lt.array("train").dtype == np.float64
    assert lt.array("train").tolist() == [1.0, 0.5]


def test_record_torch_scalar_with_grad_keeps_no_graph() -> None:
    x = torch.randn(16, 3)
    w = torch.randn(3, requires_grad=True)
    hidden = x @ w
    loss = (hidden**2).mean()
    expected = loss.item()
    loss_ref = weakref.ref(loss)
    hidden_ref = weakref.ref(hidden)  # saved by pow for the backward pass
    del hidden

    lt = LossTrend()
    lt.record(loss)
    assert lt.losses() == [expected]
    assert hidden_ref() is not None, "the graph is alive while the loss is"

    del loss
    gc.collect()
    assert loss_ref() is None, "record() kept the loss tensor alive"
    assert hidden_ref() is None, "record() kept the autograd graph alive"
    assert lt.framework == "torch"


def test_record_torch_one_element_and_low_precision() -> None:
    lt = LossTrend()
    lt.record(torch.tensor([0.5]))
    lt.record(torch.tensor(0.25, dtype=torch.float16))
    lt.record(torch.tensor(2.0, dtype=torch.bfloat16))
    lt.record(torch.tensor(3, dtype=torch.int64))
    assert lt.losses() == [0.5, 0.25, 2.0, 3.0]


def test_record_torch_vector() -> None:
    w = torch.ones(3, requires_grad=True)
    per_step = w * torch.tensor([1.0, 0.5, 0.25])
    lt = LossTrend()
    lt.record(per_step)
    assert lt.losses() == [1.0, 0.5, 0.25]


def test_record_list_of_torch_scalars() -> None:
    assert _recorded([torch.tensor(1.0), torch.tensor(0.5, requires_grad=True)]) == [1.0, 0.5]


def test_record_tf_tensors(tf: ModuleType) -> None:
    lt = LossTrend()
    lt.record(tf.constant(0.5))
    lt.record(tf.constant([0.25, 0.125], dtype=tf.float64))
    lt.record(tf.Variable(2.0))
    assert lt.losses() == [0.5, 0.25, 0.125, 2.0]
    assert lt.framework == "tensorflow"


def test_record_keras_history(tf: ModuleType) -> None:
    import keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]])).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", run_eagerly=True)
    history = model.fit(x, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0)

    lt = LossTrend()
    lt.record(history)
    assert lt.losses() == pytest.approx(history.history["loss"], rel=1e-12)
    assert lt.losses("eval") == pytest.approx(history.history["val_loss"], rel=1e-12)
    assert len(lt.losses()) == 3
    assert lt.framework == "keras"


def test_record_keras_history_without_loss(tf: ModuleType) -> None:
    import keras

    with pytest.raises(ValueError, match="History has no 'loss' entry"):
        LossTrend().record(keras.callbacks.History())


# -- rejected values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [True, False, None, "0.5", b"0.5", {"loss": 1.0}, {0.5}, 1 + 2j, object()],
    ids=lambda v: type(v).__name__,
)
def test_record_rejects_non_losses(value: Any) -> None:
    lt = LossTrend()
    with pytest.raises(TypeError, match=r"record\(\) takes"):
        lt.record(value)
    assert lt.losses() == []


@pytest.mark.parametrize(
    "value",
    [np.bool_(True), np.array([True, False]), torch.tensor(True), torch.tensor([True, False])],
    ids=["np.bool_", "np-bool-array", "torch-bool", "torch-bool-vector"],
)
def test_record_rejects_booleans_of_any_kind(value: Any) -> None:
    """A bool is rejected, so a numpy or torch boolean (a mask, a comparison) must be too."""
    with pytest.raises(TypeError):
        LossTrend().record(value)


@pytest.mark.parametrize(
    "value",
    [["0.5"], [True, 1.0], [None]],
    ids=["str", "bool", "None"],
)
def test_record_rejects_sequences_of_non_numbers(value: Any) -> None:
    with pytest.raises(TypeError):
        LossTrend().record(value)


def test_record_rejects_nested_sequences() -> None:
    with pytest.raises(ValueError, match="flat sequence"):
        LossTrend().record([[1.0, 2.0]])


@pytest.mark.parametrize(
    "value",
    [np.ones((2, 3)), torch.ones(2, 3, requires_grad=True)],
    ids=["numpy", "torch"],
)
def test_record_rejects_2d(value: Any) -> None:
    with pytest.raises(ValueError, match=r"shape \(2, 3\).*loss\.mean\(\)"):
        LossTrend().record(value)


def test_record_rejects_2d_tf(tf: ModuleType) -> None:
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        LossTrend().record(tf.ones((2, 3)))


def test_record_rejects_2d_after_1d_of_the_same_type() -> None:
    """The converter is cached per type; the shape check must still run."""
    lt = LossTrend()
    lt.record(np.array([1.0, 0.5]))
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        lt.record(np.ones((2, 2)))
    assert lt.losses() == [1.0, 0.5]


@pytest.mark.parametrize("series", ["", 3, None])
def test_record_rejects_bad_series_names(series: Any) -> None:
    with pytest.raises(TypeError, match="series must be a non-empty string"):
        LossTrend().record(1.0, series=series)


# -- fail fast ----------------------------------------------------------------------------------


def test_fail_fast_stops_on_nan() -> None:
    lt = LossTrend(fail_fast=True, seed=3)
    lt.record(1.0)
    lt.record(0.9)
    with pytest.raises(LossTrendStop) as info:
        lt.record(float("nan"))
    stop = info.value
    assert lt.stopped is stop
    assert stop.series == "train"
    assert stop.verdict.kind == "non_finite"
    assert stop.verdict.failed_at == 2
    message = str(stop)
    assert "non-finite loss nan at step 2 (last finite value 0.9 at step 1)" in message
    assert "stopped:  at step 2, the remaining steps were skipped" in message
    assert "seed:     3" in message


def test_fail_fast_stops_past_the_divergence_bound() -> None:
    lt = LossTrend(fail_fast=True)
    lt.record(2.0)
    lt.record(2.0 * 1e4)  # exactly at the bound: not past it
    with pytest.raises(LossTrendStop) as info:
        lt.record(2.0 * 1e4 * 1.01)
    assert info.value.verdict.kind == "divergence"
    assert info.value.verdict.failed_at == 2
    assert "diverged" in str(info.value)


@pytest.mark.parametrize(
    "bad",
    [
        float("inf"),
        float("-inf"),
        np.float32("nan"),
        np.array([0.8, np.nan]),
        [0.8, math.inf],
        torch.tensor(float("nan"), requires_grad=True),
        torch.tensor([0.8, float("nan")]),
    ],
    ids=["inf", "-inf", "np.float32-nan", "array-nan", "list-inf", "torch-nan", "torch-vector"],
)
def test_fail_fast_stops_on_any_non_finite_value(bad: Any) -> None:
    lt = LossTrend(fail_fast=True)
    lt.record(1.0)
    with pytest.raises(LossTrendStop):
        lt.record(bad)


@pytest.mark.parametrize("tail", [[0.7, 0.6], [0.7, math.nan, 0.5], [0.7, 3e4, 0.5],
                                  [0.7, -math.inf]], ids=["plain", "nan", "bound", "-inf"])
def test_record_floats_is_record_of_each(tail: list[float]) -> None:
    """The batch path automatic capture uses: the same series, and the same stop at the same
    step, as one ``record`` per value."""
    from pytest_losstrend.capture.recorder import Recorder

    outcomes = []
    for batch in (True, False):
        rec = Recorder(fail_fast=True)
        rec.record_floats([2.0, 1.5, 1.0])  # arms the divergence bound from the first value
        stop = None
        try:
            if batch:
                rec.record_floats(tail)
            else:
                for v in tail:
                    rec.record(v)
        except LossTrendStop as exc:
            stop = (exc.verdict.kind, exc.verdict.failed_at)
        outcomes.append((rec.losses(), stop))
    assert outcomes[0] == outcomes[1] or (
        str(outcomes[0]) == str(outcomes[1]))  # NaN != NaN: compared as text
    assert (outcomes[0][1] is None) == (tail == [0.7, 0.6])


def test_fail_fast_stops_on_a_diverging_vector() -> None:
    lt = LossTrend(fail_fast=True)
    with pytest.raises(LossTrendStop) as info:
        lt.record(np.array([1.0, 10.0, 1e3, 1e5, 1e7]))
    assert info.value.verdict.kind == "divergence"
    assert info.value.verdict.failed_at == 3


def test_fail_fast_stops_on_infinity_as_the_first_value() -> None:
    lt = LossTrend(fail_fast=True)
    with pytest.raises(LossTrendStop):
        lt.record(float("inf"))


def test_fail_fast_stops_on_infinity_after_negative_losses() -> None:
    """Negative losses (the NLL of a density) set no divergence bound; +inf is still
    non-finite."""
    lt = LossTrend(fail_fast=True)
    lt.record(-0.5)
    lt.record(-0.7)
    with pytest.raises(LossTrendStop):
        lt.record(float("inf"))


def test_fail_fast_stops_on_the_eval_series() -> None:
    lt = LossTrend(fail_fast=True)
    lt.record(1.0)
    lt.record(1.0, series="eval")
    with pytest.raises(LossTrendStop) as info:
        lt.record(float("nan"), series="eval")
    assert info.value.series == "eval"
    assert "on series 'eval'" in str(info.value)


def test_without_fail_fast_nothing_stops() -> None:
    lt = LossTrend(fail_fast=False)
    for v in [1.0, 2e4, float("inf"), float("nan"), -math.inf]:
        lt.record(v)
    lt.record(np.array([np.nan, 1e9]))
    lt.record(torch.tensor(float("nan")))
    assert lt.stopped is None
    assert len(lt.losses()) == 8
    verdict = lt.check()
    assert verdict.status == "fail"
    # 2e4 passed the divergence bound (1e4 x the first loss) before anything overflowed.
    assert verdict.kind == "divergence"
    assert verdict.failed_at == 1


# -- values with no float64 loss in them: each a clear error naming the value --------------------


@pytest.mark.parametrize(
    "value",
    [
        torch.tensor(1.0, device="meta"),
        torch.ones(3, device="meta"),
        [torch.tensor(0.5), torch.tensor(1.0, device="meta")],
    ],
    ids=["scalar", "vector", "in-a-list"],
)
def test_record_rejects_meta_tensors_naming_them(value: Any) -> None:
    """Was torch's NotImplementedError "Cannot copy out of meta tensor; no data!"."""
    lt = LossTrend()
    lt.record(2.0)
    with pytest.raises(ValueError, match=r"tensor on the meta device \(tensor\(\.\.\., "
                                         r"device='meta'.*no values.*to_empty"):
        lt.record(value)
    assert lt.losses() == [2.0]


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (torch.tensor(1 + 2j), r"not complex numbers; got tensor\(1\.\+2\.j\)"),
        (torch.tensor([1 + 2j, 2 + 0j]), r"not complex numbers; got tensor\(\[1\.\+2\.j"),
        ([torch.tensor(1 + 2j)], r"not complex numbers; got tensor\(1\.\+2\.j\)"),
        (np.complex128(1 + 2j), r"not complex numbers; got np\.complex128\(1\+2j\)"),
        (np.array([1 + 2j]), r"not complex numbers; got ndarray of complex numbers"),
        (1 + 2j, r"not complex numbers; got \(1\+2j\)"),
        ([1.0, 1 + 2j], r"not complex numbers; got \(1\+2j\)"),
    ],
    ids=["torch", "torch-vector", "torch-in-list", "np-scalar", "np-array", "python",
         "python-in-list"],
)
def test_record_rejects_complex_values_naming_them(value: Any, match: str) -> None:
    """Complex tensors and numpy complex values were recorded with the imaginary part
    dropped (a ComplexWarning at best), or failed inside float()."""
    with pytest.raises(TypeError, match=match):
        LossTrend().record(value)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.array(["0.5"]), r"not strings; got ndarray of strings"),
        (np.array([b"0.5"]), r"not byte strings"),
        (np.datetime64("2020-01-01"), r"not dates"),
        (np.array([1, 2], dtype="m8[s]"), r"not time durations"),
        (np.array([1.0, None], dtype=object), r"got NoneType: None"),
        (np.array([1.0, "x"], dtype=object), r"holds str: 'x'"),
        (bytearray(b"ab"), r"got bytearray: bytearray\(b'ab'\)"),
        (memoryview(b"ab"), r"got memoryview"),
        ({"loss": 1.0}, r"got dict: \{'loss': 1\.0\}"),
    ],
    ids=["str-array", "bytes-array", "datetime64", "timedelta", "object-None", "object-str",
         "bytearray", "memoryview", "dict"],
)
def test_record_rejects_non_numbers_that_numpy_would_read(value: Any, match: str) -> None:
    """Each was recorded as a number (a string parsed, None as NaN, a date as days since
    1970, bytes as their codes) or named only its type."""
    with pytest.raises(TypeError, match=match):
        LossTrend().record(value)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (10**400, r"an int of about 401 digits: too large for a float"),
        (10**5000, r"an int of about 5001 digits"),  # past repr()'s own 4300-digit limit
        ([1.0, 10**400], r"an int of about 401 digits"),
        (np.array([10**400], dtype=object), r"an int of about 401 digits"),
        (Fraction(10**400, 3), r"got Fraction\(1000.*too large for a float"),
        (Decimal("1e400"), r"got Decimal\('1E\+400'\): too large"),
        (Decimal("sNaN"), r"cannot read Decimal\('sNaN'\) as a float"),
    ],
    ids=["int", "int-5000-digits", "int-in-list", "int-in-object-array", "Fraction",
         "Decimal", "Decimal-sNaN"],
)
def test_record_rejects_numbers_past_the_float_range_naming_them(value: Any, match: str) -> None:
    """Was OverflowError "int too large to convert to float" (naming nothing), or a silent
    inf for a Decimal."""
    lt = LossTrend()
    lt.record(1.0)
    with pytest.raises(ValueError, match=match):
        lt.record(value)
    assert lt.losses() == [1.0]


@pytest.mark.skipif(np.finfo(np.longdouble).max <= np.finfo(np.float64).max,
                    reason="long double is float64 here")
def test_record_rejects_a_long_double_past_the_float_range() -> None:
    with pytest.raises(ValueError, match=r"np\.longdouble\('1e\+400'\): too large"):
        LossTrend().record(np.array([1.0, np.longdouble("1e400")]))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("0.5"), [0.5]),
        ([Decimal("0.25"), Fraction(1, 8)], [0.25, 0.125]),
        (Decimal("NaN"), [math.nan]),
        (Decimal("-Infinity"), [-math.inf]),
        (Fraction(1, 3), [1 / 3]),
        (10**300, [1e300]),
        (torch.tensor([1.0, 0.0, 2.0]).to_sparse(), [1.0, 0.0, 2.0]),
        (torch.ones(3, requires_grad=True) * 2, [2.0, 2.0, 2.0]),
        (np.array([1.0, 2.0], dtype=object), [1.0, 2.0]),
    ],
    ids=["Decimal", "Decimal-Fraction-list", "Decimal-NaN", "Decimal-inf", "Fraction",
         "int-1e300", "sparse-tensor", "grad-vector", "object-array-of-floats"],
)
def test_record_reads_other_exact_numbers(value: Any, expected: list[float]) -> None:
    """Decimal was rejected as "not a loss"; a sparse tensor raised torch's "Cannot access
    data pointer"."""
    got = _recorded(value)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert type(g) is float
        assert g == e or (math.isnan(g) and math.isnan(e))


@pytest.mark.parametrize("make", [lambda tf: tf.constant("0.5"), lambda tf: tf.constant(True)],
                         ids=["string", "bool"])
def test_record_rejects_tf_string_and_bool_scalars(tf: ModuleType, make: Any) -> None:
    """float() read a tf string scalar's bytes b"0.5" as 0.5 and a bool as 1.0."""
    with pytest.raises(TypeError, match=r"record\(\) takes losses, not (strings|byte strings|"
                                        r"booleans)"):
        LossTrend().record(make(tf))


@pytest.mark.parametrize("last", [1.7e308, 5e-324, -1.7e308, -0.0])
def test_fail_fast_on_extremes_gives_a_verdict(last: float) -> None:
    """The marker's path with a float extreme after a falling curve: a verdict (a stop with
    its message, or a judged curve), never an internal error."""
    lt = LossTrend(fail_fast=True)
    falling = [2.0, 1.8, 1.5, 1.3, 1.1, 1.0, 0.9, 0.8, 0.7, 0.65]
    try:
        for v in falling:
            lt.record(v)
        lt.record(last)
    except LossTrendStop as stop:
        assert stop.verdict.kind == "divergence"
        assert "loss_decreases FAILED" in str(stop) and "1.7e+308" in str(stop)
        return
    assert lt.check().status in ("pass", "fail", "inconclusive")

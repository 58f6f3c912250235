"""What the watcher is sure of about a passing (or skipped) test reaches the user: a
``LossTrendWarning`` in pytest's warnings summary at the test, which ``-W error`` turns into a
failure, and a line in the term, Markdown and HTML reports. Also the input-scale check on 0-255
pixels, and Keras' input statistics read from what ``fit`` trains on.

Inner suites run through pytester on real models (a digits MLP whose activations are called as
``F.relu``, a small CNN on 0-255 pixels), each a fraction of a second.
"""

from __future__ import annotations

import json
from types import ModuleType

import numpy as np
import pytest
import sklearn.datasets  # imported before pytester's snapshot: the inner files reuse it

from pytest_losstrend import LossTrendWarning
from pytest_losstrend.diagnosis.evidence import Evidence
from pytest_losstrend.diagnosis.watch_rules import SURE_WARNINGS, sure_warnings

MODELS = '''
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

X_RAW, Y_NP = load_digits(return_X_y=True)
X = torch.tensor(X_RAW / 16.0, dtype=torch.float32)
Y = torch.tensor(Y_NP)


class MLP(torch.nn.Module):
    def __init__(self, dead=0):
        super().__init__()
        self.fc1 = torch.nn.Linear(64, 64)
        self.out = torch.nn.Linear(64, 10)
        with torch.no_grad():
            self.fc1.bias[:dead] = -20.0   # these units never fire

    def forward(self, x):
        return self.out(F.relu(self.fc1(x)))


class CNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.out = torch.nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        return self.out(F.relu(self.conv(x)).flatten(1))


def run(model, x, steps=80, opt=None):
    opt = opt or torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        i = torch.randint(0, len(x), (32,))
        loss = F.cross_entropy(model(x[i]), Y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss
'''

SUITE = '''
import pytest
import torch
from lt_models import CNN, MLP, X, X_RAW, run


@pytest.mark.loss_decreases
def test_half_dead():
    run(MLP(dead=40), X)


@pytest.mark.loss_decreases
def test_healthy():
    run(MLP(), X)
'''

PIXELS = '''
import pytest
import torch
from lt_models import CNN, X, X_RAW, run

PIXELS = torch.tensor(X_RAW * 255 / 16, dtype=torch.float32).round().reshape(-1, 1, 8, 8)


@pytest.mark.loss_decreases
def test_raw_pixels():
    model = CNN()
    run(model, PIXELS, opt=torch.optim.Adam(model.parameters(), lr=1e-3))


@pytest.mark.loss_decreases
def test_scaled_pixels():
    model = CNN()
    run(model, PIXELS / 255, opt=torch.optim.Adam(model.parameters(), lr=1e-2))
'''

SKIPPED = '''
import pytest
import torch.nn.functional as F
import torch
from lt_models import MLP, X, Y


@pytest.mark.loss_decreases
def test_one_step(losstrend):
    model = MLP(dead=40)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losstrend.watch(model, opt)
    loss = F.cross_entropy(model(X[:64]), Y[:64])
    loss.backward()
    opt.step()
    losstrend.record(loss)   # one point: inconclusive, skipped
'''


@pytest.fixture
def suite(lt_pytester: pytest.Pytester) -> pytest.Pytester:
    lt_pytester.makepyfile(lt_models=MODELS)
    return lt_pytester


def _warned(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if "LossTrendWarning: losstrend:" in ln]


def test_a_half_dead_layer_of_a_passing_test_is_a_pytest_warning(
        suite: pytest.Pytester) -> None:
    suite.makepyfile(test_suite=SUITE)
    result = suite.runpytest_inprocess("--losstrend-report=json:r.json")
    result.assert_outcomes(passed=2, warnings=1)
    out = result.stdout.str()
    (line,) = _warned(out)
    # At the test's own file and line, named after the layer the F.relu follows.
    assert "test_suite.py:" in line
    assert "dead_units: fc1 via F.relu: " in line
    assert "% of units never active over 8 sampled steps" in line
    assert "test_suite.py::test_half_dead" in out
    assert "test_suite.py::test_healthy" not in out.split("warnings summary")[1]
    tests = {t["nodeid"].rsplit("::", 1)[1]: t
             for t in json.loads((suite.path / "r.json").read_text())["tests"]}
    assert [w for w in tests["test_half_dead"]["warnings"] if "fc1 via F.relu" in w]
    assert not tests["test_healthy"]["warnings"]
    pct = int(line.split("fc1 via F.relu: ")[1].split("%")[0])
    assert 62 <= pct < 80


def test_error_filter_turns_the_warning_into_a_failure(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_suite=SUITE)
    result = suite.runpytest_inprocess("-W", "error::pytest_losstrend.LossTrendWarning")
    result.assert_outcomes(passed=1, failed=1)
    assert "FAILED test_suite.py::test_half_dead" in result.stdout.str()
    assert "LossTrendWarning: losstrend: dead_units: fc1 via F.relu" in result.stdout.str()


def test_the_reports_carry_the_warning(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_suite=SUITE)
    result = suite.runpytest_inprocess("--losstrend-report=term", "--losstrend-report=md:r.md",
                                       "--losstrend-report=html:r.html")
    result.assert_outcomes(passed=2, warnings=1)
    term = [ln for ln in result.stdout.str().splitlines()
            if ln.startswith("warning: test_suite.py::test_half_dead: dead_units")]
    assert term
    md = (suite.path / "r.md").read_text()
    assert "### Warnings" in md
    (md_line,) = [ln for ln in md.splitlines() if "fc1 via F.relu" in ln]
    assert md_line.startswith("- `test_suite.py::test_half_dead`: dead_units: fc1 via F.relu")
    html = (suite.path / "r.html").read_text()
    assert "<h3>Warnings</h3>" in html and "fc1 via F.relu" in html


def test_a_skipped_test_warns_too(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_skipped=SKIPPED)
    result = suite.runpytest_inprocess("-rs")
    result.assert_outcomes(skipped=1, warnings=1)
    (line,) = _warned(result.stdout.str())
    assert "dead_units: fc1 via F.relu: " in line and "over 1 sampled step" in line


def test_raw_pixels_are_unscaled_and_scaled_ones_are_not(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_pixels=PIXELS)
    result = suite.runpytest_inprocess("--losstrend-report=json:r.json")
    # The raw pixels' first loss is also far above the captured cross-entropy's reference
    # level (the label frequencies): a second sure warning of the same test, bad_init.
    result.assert_outcomes(passed=2, warnings=2)
    lines = _warned(result.stdout.str())
    assert [ln for ln in lines
            if "unscaled_features: inputs of max |x| = 255, root mean square " in ln]
    assert all("test_pixels.py:" in ln for ln in lines)
    tests = {t["nodeid"].rsplit("::", 1)[1]: t
             for t in json.loads((suite.path / "r.json").read_text())["tests"]}
    assert tests["test_scaled_pixels"]["evidence"]["input_stats"]["max_abs"] <= 1.0
    assert not tests["test_scaled_pixels"]["warnings"]


def test_which_warnings_are_sure() -> None:
    ev = Evidence(saturated_fraction={"fc1 via torch.tanh": 0.9, "fc2 via torch.tanh": 0.1},
                  activation_steps=8,
                  notes=["CrossEntropyLoss got probabilities (rows in [0, 1] summing to 1), but "
                         "it expects logits: drop the softmax before it",
                         "keras: update ratios are sampled at the end of each epoch"])
    every, sure = sure_warnings(
        ["no_learning: not in the optimizer: head.weight", "bad_init: the first loss 40 is "
         "17x the chance level ln(C) = 2.3"], ev)
    assert sure == [
        "bad_init: the first loss 40 is 17x the chance level ln(C) = 2.3",
        "dead_units: fc1 via torch.tanh: 90% of outputs saturated over 8 sampled steps",
        "loss_input: CrossEntropyLoss got probabilities (rows in [0, 1] summing to 1), but it "
        "expects logits: drop the softmax before it",
    ]
    # An invariant's note (it fails the test unless allowed) is reported, never warned.
    assert every[0].startswith("no_learning") and len(every) == 4
    assert set(SURE_WARNINGS) == {"bad_init", "dead_units", "unscaled_features", "loss_input"}
    assert issubclass(LossTrendWarning, UserWarning)


# -- Keras: input statistics from what fit() trains on ------------------------------------------


@pytest.fixture(scope="module")
def keras() -> ModuleType:
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":  # pragma: no cover - depends on KERAS_BACKEND
        pytest.skip("Keras on TensorFlow only")
    return keras


def _keras_stats(keras: ModuleType, model: object, x: object, y: object | None = None,
                 **fit: object) -> dict[str, float]:
    from pytest_losstrend import LossTrend
    from pytest_losstrend.diagnosis.signals import unscaled

    lt = LossTrend()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")  # type: ignore[attr-defined]
    model.fit(x, y, epochs=1, verbose=0, callbacks=[lt.keras_callback()],  # type: ignore[attr-defined]
              **fit)
    lt.finish_watching()
    assert lt.evidence is not None
    stats = lt.evidence.input_stats
    stats["flagged"] = float(unscaled(stats))
    return stats


def test_keras_records_the_input_statistics_of_fit(keras: ModuleType) -> None:
    x, y = sklearn.datasets.load_digits(return_X_y=True)
    pixels = np.round(x * 255 / 16).astype("uint8").reshape(-1, 8, 8, 1)

    def cnn() -> object:
        return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3),
                                 keras.layers.Flatten(), keras.layers.Dense(10)])

    raw = _keras_stats(keras, cnn(), pixels, y, batch_size=64)
    assert raw["max_abs"] == 255.0 and raw["flagged"] == 1.0
    scaled = _keras_stats(keras, cnn(), pixels / 255.0, y, batch_size=64)
    assert scaled["max_abs"] <= 1.0 and scaled["flagged"] == 0.0
    # A tf.data pipeline: its first batch, read through a fresh iterator.
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((pixels.astype("float32"), y)).batch(32)
    piped = _keras_stats(keras, cnn(), ds, shuffle=False)
    assert piped["max_abs"] == 255.0 and piped["flagged"] == 1.0
    # Standardised 2-d features: the full statistics, not flagged.
    z = ((x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)).astype("float32")
    mlp = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    std = _keras_stats(keras, mlp, z, y, batch_size=64)
    assert std["n_features"] == 64 and std["flagged"] == 0.0


def test_keras_token_ids_are_not_inputs_to_scale(keras: ModuleType) -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 5000, size=(256, 12))
    y = rng.integers(0, 2, size=256)
    model = keras.Sequential([keras.Input((12,), dtype="int32"), keras.layers.Embedding(5000, 8),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2)])
    stats = _keras_stats(keras, model, ids, y, batch_size=32)
    assert stats == {"flagged": 0.0}

"""Training invariants (DESIGN.md "Training invariants"): certain evidence of a bug fails the
test even when the loss falls, unless the test allows the invariant by name.

Real runs: tiny torch models on sklearn's digits (a 64-32-10 MLP, cross-entropy, full batch)
and diabetes (a 10-16-1 MLP, MSE), each breaking one invariant while the loss still falls
(the verdict passes), their healthy twins, and a Keras model for what the Keras watcher sees.
The marker runs go through pytester, one inner session for all of them.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pytest_losstrend import LossTrend
from pytest_losstrend.diagnosis.evidence import Evidence
from pytest_losstrend.diagnosis.invariants import (
    INVARIANT_CAUSES,
    check_invariants,
    invariant_message,
)
from pytest_losstrend.verdict.criteria import INVARIANT_NAMES

# Imported before pytester snapshots sys.modules (see conftest.torch_module).
pytest.importorskip("sklearn.datasets")

HELPERS = '''
"""Tiny torch training loops on sklearn's digits and diabetes, each breaking (or keeping) one
training invariant while the loss still falls."""
import torch
from torch import nn
from sklearn.datasets import load_diabetes, load_digits


def digits(n=512):
    x, y = load_digits(return_X_y=True)
    return (torch.tensor(x[:n] / 16.0, dtype=torch.float32),
            torch.tensor(y[:n], dtype=torch.long))


class Net(nn.Module):
    def __init__(self, aux=False):
        super().__init__()
        self.hidden = nn.Linear(64, 32)
        self.out = nn.Linear(32, 10)
        self.aux = nn.Linear(64, 10) if aux else None

    def forward(self, x):
        y = self.out(torch.relu(self.hidden(x)))
        if self.aux is not None:
            y = y + 0.0 * self.aux(x)  # the bug: a head whose gradients are all zero
        return y


def train_digits(losstrend, mode="healthy", steps=60, lr=0.5):
    torch.manual_seed(0)
    x, y = digits()
    model = Net(aux=mode == "zero_gradients")
    loss_fn = nn.CrossEntropyLoss()
    params = list(model.parameters())
    if mode == "frozen":
        model.hidden.requires_grad_(False)
    if mode == "params_not_in_optimizer":
        params = list(model.out.parameters())
    if mode == "params_unchanged":
        opt = torch.optim.SGD([{"params": model.out.parameters()},
                               {"params": model.hidden.parameters(), "lr": 0.0}], lr=lr)
    else:
        opt = torch.optim.SGD(params, lr=lr / 50 if mode in ("stale_gradients", "noop") else lr)
    if mode == "noop":
        opt.zero_grad = lambda *a, **k: None
    if mode == "negative_loss":
        loss_fn = nn.KLDivLoss(reduction="batchmean")  # the bug: fed probabilities
    losstrend.watch(model, opt)
    for _ in range(steps):
        if mode != "stale_gradients":
            opt.zero_grad()
        if mode == "accumulate":
            for k in range(4):
                xb, yb = x[k::4], y[k::4]
                (loss_fn(model(xb), yb) / 4).backward()
            with torch.no_grad():
                loss = loss_fn(model(x), y)
        elif mode == "negative_loss":
            target = nn.functional.one_hot(y, 10).float()
            loss = loss_fn(torch.softmax(model(x), 1), target)
            loss.backward()
        else:
            loss = loss_fn(model(x), y)
            loss.backward()
        opt.step()
        losstrend.record(loss)


def train_diabetes(losstrend, mismatch=False, steps=80):
    torch.manual_seed(0)
    x, y = load_diabetes(return_X_y=True)
    x = torch.tensor(x * 10, dtype=torch.float32)
    y = torch.tensor((y - y.mean()) / y.std(), dtype=torch.float32)
    if not mismatch:
        y = y.reshape(-1, 1)  # the bug left in: prediction (N, 1) against target (N,)
    model = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loss_fn = nn.MSELoss()
    losstrend.watch(model, opt)
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        losstrend.record(loss)
'''

#: The digits loops that break one invariant (the mode names it), and the healthy ones.
BROKEN = ("stale_gradients", "params_not_in_optimizer", "params_unchanged", "zero_gradients",
          "negative_loss")
HEALTHY = ("healthy", "accumulate", "frozen")


def _helpers(tmp_path: Path) -> ModuleType:
    """The helper module, imported from a file (the pytester runs write the same one)."""
    import importlib.util

    path = tmp_path / "inv_helpers.py"
    path.write_text(HELPERS, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("inv_helpers_direct", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _watched(helpers: ModuleType, mode: str) -> tuple[LossTrend, list[str]]:
    lt = LossTrend()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        if mode in ("shape_mismatch", "diabetes"):
            helpers.train_diabetes(lt, mismatch=mode == "shape_mismatch")
        else:
            helpers.train_digits(lt, mode)
    lt.finish_watching()
    return lt, [str(w.message) for w in seen]


# -- evidence and judgment on real runs ----------------------------------------------------------


@pytest.mark.parametrize("mode", [*BROKEN, "noop", "shape_mismatch"])
def test_each_broken_invariant_is_seen_while_the_loss_falls(
        torch_module: ModuleType, tmp_path: Path, mode: str) -> None:
    lt, seen = _watched(_helpers(tmp_path), mode)
    losses = lt.losses("train")
    # The broadcast loss can only fall to the targets' variance: by 9%.
    min_drop = 0.05 if mode == "shape_mismatch" else 0.1
    assert lt.check(min_drop=min_drop).ok, "the loss falls: the invariant is what catches it"
    check = check_invariants(lt.evidence, losses, warnings=seen)
    want = {"noop": "stale_gradients"}.get(mode, mode)
    assert [r.name for r in check.failing] == [want], check
    assert not check.unchecked, check.unchecked
    assert {r.name for r in check.results} == set(INVARIANT_NAMES)


def test_broken_invariants_name_what_they_saw(torch_module: ModuleType, tmp_path: Path) -> None:
    helpers = _helpers(tmp_path)
    evidence = {}
    for mode in ("stale_gradients", "noop", "params_not_in_optimizer", "params_unchanged",
                 "zero_gradients", "negative_loss", "shape_mismatch"):
        lt, seen = _watched(helpers, mode)
        evidence[mode] = check_invariants(lt.evidence, lt.losses("train"),
                                          warnings=seen).failing[0].evidence
    assert evidence["stale_gradients"].startswith(
        "60 optimizer steps, gradients carried over at 12 of the 12 checked: zero_grad() "
        "never cleared them")
    # zero_grad() was called at every step, and did nothing: the gradients tell.
    assert "zero_grad was called 60 times, but left them in place" in evidence["noop"]
    assert evidence["params_not_in_optimizer"] == (
        "2 trainable parameter(s) not in the SGD optimizer: hidden.weight, hidden.bias")
    assert evidence["params_unchanged"] == (
        "2 parameter(s) received gradients but never changed over 60 optimizer steps: "
        "hidden.weight, hidden.bias")
    assert evidence["zero_gradients"].startswith("1 module(s) had exactly zero gradients")
    assert "aux (aux.weight, aux.bias)" in evidence["zero_gradients"]
    assert evidence["negative_loss"].startswith(
        "kl_div cannot be negative, but 60 of 60 recorded losses were")
    assert evidence["shape_mismatch"] == (
        "MSELoss: prediction of shape (442, 1) and target of shape (442,) broadcast to "
        "(442, 442)")


@pytest.mark.parametrize("mode", [*HEALTHY, "diabetes"])
def test_healthy_twins_hold_every_invariant(torch_module: ModuleType, tmp_path: Path,
                                            mode: str) -> None:
    """Including gradient accumulation over 4 backward passes per step (cleared at each step)
    and a layer frozen with requires_grad=False (never flagged)."""
    lt, seen = _watched(_helpers(tmp_path), mode)
    assert lt.check().ok
    check = check_invariants(lt.evidence, lt.losses("train"), warnings=seen)
    assert check.broken == [], check.broken
    assert [r.name for r in check.results] == list(INVARIANT_NAMES)


def test_stale_gradients_are_seen_in_the_gradients_not_counted_in_calls(
        torch_module: ModuleType, tmp_path: Path) -> None:
    lt, _ = _watched(_helpers(tmp_path), "noop")
    ev = lt.evidence
    assert ev is not None
    assert ev.zero_grad_calls == 60  # the no-op was called at every step...
    assert ev.grad_checks == 12 and len(ev.stale_steps) == 12  # ...and cleared nothing
    lt, _ = _watched(_helpers(tmp_path), "accumulate")
    assert lt.evidence is not None and lt.evidence.stale_steps == []


# -- judgment on plain evidence ----------------------------------------------------------------


def test_allowed_invariant_is_broken_but_not_failing() -> None:
    ev = Evidence(framework="torch", optimizer="SGD", optimizer_steps=10,
                  not_in_optimizer=["head.weight"], grad_norm=[1.0],
                  update_ratio={"head.weight": [0.0], "body.weight": [0.1]})
    check = check_invariants(ev, [1.0, 0.5], allow=("params_not_in_optimizer",))
    (broken,) = check.broken
    assert broken.name == "params_not_in_optimizer" and broken.allowed
    assert check.failing == []
    assert broken.as_dict()["allowed"] is True


def test_without_a_watch_nothing_is_checkable_and_it_says_why() -> None:
    check = check_invariants(None, [1.0, 0.5])
    assert check.results == []
    assert set(check.unchecked) == set(INVARIANT_NAMES)
    assert all("not watched" in why for why in check.unchecked.values())


def test_unknown_loss_and_keras_say_what_was_not_checked() -> None:
    ev = Evidence(framework="keras", optimizer="SGD", optimizer_steps=4, zero_grad_calls=None)
    check = check_invariants(ev, [1.0, -2.0])
    assert "fresh gradients" in check.unchecked["stale_gradients"]
    assert "not known" in check.unchecked["negative_loss"]
    assert "every trainable weight" in check.unchecked["params_not_in_optimizer"]


def test_rounding_is_no_negative_loss() -> None:
    ev = Evidence(framework="torch", loss_name="mse")
    check = check_invariants(ev, [1.0, 0.1, -1e-9])
    assert [r.held for r in check.results if r.name == "negative_loss"] == [True]


def test_every_cause_is_a_diagnosis_cause() -> None:
    from pytest_losstrend.diagnosis.rules import CAUSES

    assert set(INVARIANT_CAUSES) <= set(INVARIANT_NAMES)
    assert set(INVARIANT_CAUSES.values()) <= set(CAUSES)
    assert "allow=(\"negative_loss\",)" in invariant_message(
        [check_invariants(Evidence(loss_name="mse"), [-1.0, -2.0]).failing[0]])


# -- the markers: a broken invariant fails the test, allowed it passes -------------------------

INNER = """
import pytest
import inv_helpers as h

BROKEN = BROKEN_MODES


def _allowed(name):
    return pytest.param(name, marks=pytest.mark.loss_decreases(allow=(name,)))


@pytest.mark.loss_decreases
@pytest.mark.parametrize("mode", [*BROKEN, "noop", "healthy", "accumulate", "frozen"])
def test_digits(losstrend, mode):
    h.train_digits(losstrend, mode)


@pytest.mark.parametrize("mode", [_allowed(m) for m in BROKEN])
def test_allowed(losstrend, mode):
    h.train_digits(losstrend, mode)


@pytest.mark.loss_decreases(min_drop=0.05)
@pytest.mark.parametrize("mismatch", [True, False])
def test_diabetes(losstrend, mismatch):
    h.train_diabetes(losstrend, mismatch=mismatch)


@pytest.mark.loss_decreases(min_drop=0.05, allow=("shape_mismatch",))
def test_diabetes_allowed(losstrend):
    h.train_diabetes(losstrend, mismatch=True)


@pytest.mark.loss_fails(cause="stale_gradients")
def test_expects_stale(losstrend):
    h.train_digits(losstrend, "noop")


@pytest.mark.loss_fails
def test_expects_negative(losstrend):
    h.train_digits(losstrend, "negative_loss")


@pytest.mark.loss_fails(cause="shape_mismatch")
def test_expects_wrong_cause(losstrend):
    h.train_digits(losstrend, "stale_gradients")
""".replace("BROKEN_MODES", repr(BROKEN))


@pytest.fixture(scope="module")
def marker_run(torch_module: ModuleType, tmp_path_factory: pytest.TempPathFactory,
               ) -> dict[str, Any]:
    """One inner session of every marked case, with every report: outcomes, output, JSON."""
    import os
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("invariants")
    (root / "inv_helpers.py").write_text(HELPERS, encoding="utf-8")
    (root / "test_inner.py").write_text(INNER, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly",
         "-p", "no:xdist", "-q", "-rA", "test_inner.py",
         "--losstrend-report=term", "--losstrend-report=json:out.json",
         "--losstrend-report=md:out.md", "--losstrend-report=html:out.html",
         "--junitxml=junit.xml"],
        cwd=root, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "COLUMNS": "240"},
    )
    doc = json.loads((root / "out.json").read_text(encoding="utf-8"))
    return {"stdout": proc.stdout, "tests": {t["nodeid"].split("::", 1)[1]: t
                                              for t in doc["tests"]},
            "md": (root / "out.md").read_text(encoding="utf-8"),
            "html": (root / "out.html").read_text(encoding="utf-8"),
            "junit": (root / "junit.xml").read_text(encoding="utf-8")}


def _states(test: dict[str, Any]) -> dict[str, str]:
    from pytest_losstrend.reports.rows import invariant_state

    return {i["name"]: invariant_state(i) for i in test["invariants"]}


@pytest.mark.parametrize("mode", [*BROKEN, "noop"])
def test_marked_test_fails_on_a_broken_invariant_though_the_loss_falls(
        marker_run: dict[str, Any], mode: str) -> None:
    test = marker_run["tests"][f"test_digits[{mode}]"]
    name = {"noop": "stale_gradients"}.get(mode, mode)
    assert test["outcome"] == "failed"
    assert test["verdict"]["status"] == "pass"  # the loss fell
    assert _states(test)[name] == "broken"
    assert [n for n, s in _states(test).items() if s != "held"] == [name]
    out = marker_run["stdout"]
    assert f"loss_decreases FAILED: training invariant broken: {name} (the loss check passed" \
        in out
    evidence = next(i["evidence"] for i in test["invariants"] if i["name"] == name)
    assert f"  {name}: {evidence}" in out


@pytest.mark.parametrize("mode", BROKEN)
def test_allowed_invariant_passes_and_is_reported_broken_but_allowed(
        marker_run: dict[str, Any], mode: str) -> None:
    test = marker_run["tests"][f"test_allowed[{mode}]"]
    assert test["outcome"] == "passed"
    assert test["criteria"]["allow"] == [mode]
    assert _states(test)[mode] == "allowed"


@pytest.mark.parametrize("case", ["test_digits[healthy]", "test_digits[accumulate]",
                                  "test_digits[frozen]", "test_diabetes[False]"])
def test_healthy_twins_pass_with_every_invariant_held(marker_run: dict[str, Any],
                                                      case: str) -> None:
    test = marker_run["tests"][case]
    assert test["outcome"] == "passed"
    assert set(_states(test).values()) == {"held"}
    assert len(test["invariants"]) == len(INVARIANT_NAMES)


def test_shape_mismatch_fails_the_marker_and_allowed_passes(marker_run: dict[str, Any]) -> None:
    tests = marker_run["tests"]
    assert tests["test_diabetes[True]"]["outcome"] == "failed"
    assert _states(tests["test_diabetes[True]"])["shape_mismatch"] == "broken"
    assert "broadcast to (442, 442)" in marker_run["stdout"]
    assert tests["test_diabetes_allowed"]["outcome"] == "passed"
    assert _states(tests["test_diabetes_allowed"])["shape_mismatch"] == "allowed"


def test_loss_fails_counts_a_broken_invariant_as_its_failure(marker_run: dict[str, Any]) -> None:
    tests = marker_run["tests"]
    assert tests["test_expects_stale"]["outcome"] == "xfailed"
    assert tests["test_expects_negative"]["outcome"] == "xfailed"
    # The invariant is broken, but it is not the cause the test expects.
    assert tests["test_expects_wrong_cause"]["outcome"] == "failed"


def test_reports_list_the_invariants(marker_run: dict[str, Any]) -> None:
    out = marker_run["stdout"]
    assert "invariants: test_inner.py::test_digits[healthy]: 6/6 held" in out
    assert "invariants: test_inner.py::test_allowed[negative_loss]: 5/6 held; allowed: " \
        "negative_loss" in out
    md = marker_run["md"]
    assert "| invariants |" in md.replace("top cause | invariants", "| invariants")
    assert "training invariant broken: zero_gradients" in md
    assert "Training invariants" in marker_run["html"]
    assert 'name="losstrend_invariants"' in marker_run["junit"]
    assert "stale_gradients=broken" in marker_run["junit"]


# -- Keras: what its watcher sees --------------------------------------------------------------


def _keras_fit(zero_branch: bool, *, loss: str = "mse") -> tuple[LossTrend, Evidence]:
    keras = pytest.importorskip("keras")
    import numpy as np
    from sklearn.datasets import load_diabetes

    if keras.backend.backend() != "tensorflow":  # pragma: no cover - depends on KERAS_BACKEND
        pytest.skip("the Keras watcher's gradients use tf.GradientTape")
    keras.utils.set_random_seed(0)
    x, y = load_diabetes(return_X_y=True)
    x = (x * 10).astype("float32")
    y = ((y - y.mean()) / y.std()).astype("float32").reshape(-1, 1)
    inp = keras.Input((10,))
    out = keras.layers.Dense(1, name="out")(keras.layers.Dense(16, activation="tanh",
                                                               name="hidden")(inp))
    if zero_branch:
        aux = keras.layers.Dense(1, name="aux")(inp)
        out = keras.layers.Add()([out, keras.layers.Lambda(lambda t: 0.0 * t)(aux)])
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss=loss)
    lt = LossTrend()
    lt.watch(model, batch=(x[:128], y[:128]))
    model.fit(x, y, epochs=4, batch_size=64, shuffle=False, callbacks=[lt.keras_callback()],
              verbose=0)
    lt.finish_watching()
    assert lt.evidence is not None
    np.testing.assert_array_less(lt.losses("train")[-1], lt.losses("train")[0])
    return lt, lt.evidence


def test_keras_zero_gradient_branch_breaks_zero_gradients() -> None:
    lt, ev = _keras_fit(zero_branch=True)
    assert lt.check().ok
    check = check_invariants(ev, lt.losses("train"))
    assert [r.name for r in check.failing] == ["zero_gradients"]
    assert "aux (aux/kernel, aux/bias)" in check.failing[0].evidence
    # Keras clears gradients itself and fits every trainable weight: not checked, and why.
    assert set(check.unchecked) == {"stale_gradients", "params_not_in_optimizer"}


def test_keras_healthy_twin_holds_what_it_checks() -> None:
    lt, ev = _keras_fit(zero_branch=False)
    check = check_invariants(ev, lt.losses("train"))
    assert check.broken == []
    assert {r.name for r in check.results} == {"params_unchanged", "shape_mismatch",
                                               "negative_loss", "zero_gradients"}

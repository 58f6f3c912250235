"""The marker alone: torch training that records nothing itself is captured and judged.

Real tiny models on scikit-learn's diabetes data, run as inner test sessions; what was captured
is read back from the JSON report.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sklearn.datasets  # noqa: F401  (imported before pytester snapshots sys.modules)

INNER = '''
import pytest
import torch
from sklearn.datasets import load_diabetes

_x, _y = load_diabetes(return_X_y=True)
X = torch.tensor((_x - _x.mean(0)) / _x.std(0), dtype=torch.float32)
Y = torch.tensor((_y - _y.mean()) / _y.std(), dtype=torch.float32)[:, None]
ORIGINAL = torch.Tensor.backward


def loop(lr=0.05, steps=60, accum=1, scaler=None):
    model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        for _ in range(accum):
            idx = torch.randint(0, len(X), (32,))
            loss = torch.nn.functional.mse_loss(model(X[idx]), Y[idx])
            if scaler is None:
                loss.backward()
            else:
                scaler.scale(loss).backward()
        if scaler is None:
            opt.step()
        else:
            scaler.step(opt)
            scaler.update()


@pytest.mark.loss_decreases
def test_plain():
    loop()


@pytest.mark.loss_decreases
def test_lr_x100():
    loop(lr=5.0)


@pytest.mark.loss_decreases
def test_manual_sgd():
    w = torch.zeros(10, 1, requires_grad=True)
    for _ in range(50):
        loss = ((X @ w - Y) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            w -= 0.05 * w.grad
            w.grad = None


@pytest.mark.loss_decreases
def test_autograd_backward():
    model = torch.nn.Linear(10, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(30):
        opt.zero_grad()
        torch.autograd.backward(torch.nn.functional.mse_loss(model(X), Y))
        opt.step()


@pytest.mark.loss_decreases
def test_accumulation():
    loop(steps=40, accum=4)


@pytest.mark.loss_decreases
def test_grad_scaler():
    try:
        scaler = torch.amp.GradScaler("cpu", init_scale=4096.0, enabled=True)
    except Exception as exc:
        pytest.skip(f"no GradScaler on the CPU here: {exc}")
    loop(scaler=scaler)


@pytest.mark.loss_decreases
def test_records_itself(losstrend):
    loop(steps=20)
    losstrend.record([5.0, 4.0, 3.5, 3.0, 2.5, 2.0, 1.8, 1.6, 1.5, 1.4])


@pytest.mark.loss_decreases
def test_raises():
    loop(steps=5)
    raise RuntimeError("boom")


def test_unmarked_after_raise():
    assert torch.Tensor.backward is ORIGINAL
    assert torch.autograd.backward.__module__ == "torch.autograd"
    assert not hasattr(torch.autograd.backward, "__wrapped__")
'''


def _run(pytester: pytest.Pytester, *args: str) -> tuple[Any, dict[str, Any]]:
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider",
                                          "--losstrend-report=json:r.json", *args)
    doc = json.loads((pytester.path / "r.json").read_text())
    return result, {t["nodeid"].split("::")[-1]: t for t in doc["tests"]}


def test_marker_alone_captures_torch(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(test_inner=INNER)
    result, tests = _run(lt_pytester)
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 5, result.stdout.str()

    plain = tests["test_plain"]
    assert plain["outcome"] == "passed"
    assert plain["framework"] == "torch"
    assert len(plain["series"]["train"]["losses"]) == 60
    # The model that ran was watched: its optimizer's steps were seen.
    assert plain["evidence"]["optimizer_steps"] == 60

    high = tests["test_lr_x100"]
    assert high["outcome"] == "failed"
    assert high["diagnoses"][0]["cause"] == "lr_too_high"

    manual = tests["test_manual_sgd"]
    assert manual["outcome"] == "passed"
    assert len(manual["series"]["train"]["losses"]) == 50  # one point per backward

    # torch.autograd.backward called directly: recorded once per call, as Tensor.backward is.
    direct = tests["test_autograd_backward"]
    assert direct["outcome"] == "passed"
    assert len(direct["series"]["train"]["losses"]) == 30

    accum = tests["test_accumulation"]
    assert accum["outcome"] == "passed"
    assert len(accum["series"]["train"]["losses"]) == 40  # one point per step of 4 backward

    scaled = tests["test_grad_scaler"]
    if scaled["outcome"] != "skipped":
        losses = scaled["series"]["train"]["losses"]
        assert len(losses) == 60
        # Unscaled: the standardized target's MSE starts near 1, not near 4096.
        assert max(losses) < 10, losses[:5]
        assert scaled["outcome"] == "passed"

    own = tests["test_records_itself"]
    assert own["series"]["train"]["losses"][0] == 5.0
    assert len(own["series"]["train"]["losses"]) == 10

    raised = tests["test_raises"]
    assert raised["outcome"] == "failed"
    assert "boom" in result.stdout.str()
    assert len(raised["series"]["train"]["losses"]) == 5
    assert "test_unmarked_after_raise" not in tests  # unmarked and unrecorded: not reported
    assert outcomes.get("failed") == 2, result.stdout.str()


OFF = '''
import pytest
import torch

X = torch.linspace(-1, 1, 64)[:, None]


def train():
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(X), 3 * X).backward()
        opt.step()


@pytest.mark.loss_decreases{marker}
def test_train():
    assert (torch.Tensor.backward.__module__ == "torch._tensor") is {unpatched}
    train()
'''


@pytest.mark.parametrize(
    ("marker", "args", "ini", "captured"),
    [
        ("(capture=False)", (), "", False),
        ("", ("--losstrend-capture=off",), "", False),
        ("", (), "losstrend_capture = off", False),
        ("(capture=True)", ("--losstrend-capture=off",), "", True),
        ("", ("--losstrend-capture=on",), "losstrend_capture = off", True),
    ],
    ids=["marker-off", "cli-off", "ini-off", "marker-beats-cli", "cli-beats-ini"],
)
def test_capture_switches(lt_pytester: pytest.Pytester, marker: str, args: tuple[str, ...],
                          ini: str, captured: bool) -> None:
    lt_pytester.makepyfile(test_inner=OFF.format(marker=marker, unpatched=not captured))
    if ini:
        lt_pytester.makeini(f"[pytest]\n{ini}\n")
    result = lt_pytester.runpytest_inprocess("-p", "no:cacheprovider", *args)
    if captured:
        result.assert_outcomes(passed=1)
    else:
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(["*nothing was recorded (automatic capture is off*"])


def test_bad_capture_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner="def test_x():\n    pass\n")
    result = pytester.runpytest_inprocess("--losstrend-capture=maybe")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "expected on or off" in result.stderr.str()


def test_capture_under_xdist(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(test_inner=INNER)
    result = lt_pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider",
                                              "--losstrend-report=json:r.json")
    doc = json.loads((lt_pytester.path / "r.json").read_text())
    tests = {t["nodeid"].split("::")[-1]: t for t in doc["tests"]}
    assert tests["test_plain"]["outcome"] == "passed", result.stdout.str()
    assert len(tests["test_plain"]["series"]["train"]["losses"]) == 60
    assert tests["test_lr_x100"]["diagnoses"][0]["cause"] == "lr_too_high"
    assert len(tests["test_accumulation"]["series"]["train"]["losses"]) == 40
    assert "failed" in result.stdout.str() and "2 failed" in result.stdout.str()


def test_capture_restores_on_interrupt_and_counts_threads() -> None:
    """Backward calls from several threads are each recorded once (Tensor.backward calls
    torch.autograd.backward: not twice), and everything patched is restored on Ctrl-C."""
    import threading

    import torch

    from pytest_losstrend.capture.auto import AutoCapture
    from pytest_losstrend.capture.recorder import Recorder

    originals = (torch.Tensor.backward, torch.autograd.backward, torch.amp.GradScaler.scale)
    rec = Recorder()

    def work() -> None:
        w = torch.zeros(3, requires_grad=True)
        for _ in range(10):
            ((w - 1.0) ** 2).sum().backward()

    with pytest.raises(KeyboardInterrupt), AutoCapture(rec):
        assert torch.Tensor.backward is not originals[0]
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        raise KeyboardInterrupt
    assert (torch.Tensor.backward, torch.autograd.backward,
            torch.amp.GradScaler.scale) == originals
    assert len(rec.losses()) == 40
    assert rec.framework == "torch"


def test_nested_backward_is_not_a_loss_and_no_warning() -> None:
    """A backward run from a hook inside another backward is not recorded (torch's graph task
    tells), and reading the captured loss makes torch print no requires_grad warning."""
    import warnings

    import torch

    from pytest_losstrend.capture.auto import AutoCapture
    from pytest_losstrend.capture.recorder import Recorder

    w = torch.zeros(3, requires_grad=True)
    v = torch.ones(3, requires_grad=True)

    def hook(grad: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            (v * 2.0).sum().backward()
        return grad

    w.register_hook(hook)
    rec = Recorder()
    with warnings.catch_warnings(record=True) as caught, AutoCapture(rec):
        warnings.simplefilter("always")
        for _ in range(5):
            ((w - 1.0) ** 2).sum().backward()
    assert rec.losses() == [3.0] * 5  # w never steps: the same loss, once per outer backward
    assert not [c for c in caught if "requires_grad" in str(c.message)], caught


def _diabetes_tensors() -> tuple[Any, Any]:
    import torch
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    return (torch.tensor((x - x.mean(0)) / x.std(0), dtype=torch.float32),
            torch.tensor((y - y.mean()) / y.std(), dtype=torch.float32)[:, None])


class _Net:
    """A model with a parameter its forward never uses (a head kept for later)."""

    @staticmethod
    def build() -> Any:
        import torch

        class Net(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.body = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(),
                                                torch.nn.Linear(16, 1))
                self.unused = torch.nn.Linear(4, 4)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                out: torch.Tensor = self.body(x)
                return out

        return Net()


@pytest.mark.parametrize("clear", ["zero_grad", "noop"])
def test_captured_watch_probes_without_tensor_hooks(clear: str) -> None:
    """The watcher automatic capture makes puts no hook on any parameter (a hook, even
    removed, costs a Python call in every backward pass): its stale-gradient probes are
    checked at the patched backward call instead. A no-op zero_grad is still caught; a healthy
    loop is not flagged, even with a probed parameter no backward reaches, and the capture is
    back on its fast path at the end."""
    import torch

    from pytest_losstrend.capture.auto_torch import TorchCapture
    from pytest_losstrend.capture.recorder import Recorder
    from pytest_losstrend.diagnosis.invariants import check_invariants

    x, y = _diabetes_tensors()
    torch.manual_seed(0)
    model = _Net.build()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    if clear == "noop":
        opt.zero_grad = lambda set_to_none=True: None  # type: ignore[method-assign]
    rec = Recorder()
    cap = TorchCapture(rec)
    undo = cap.install()
    try:
        for step in range(120):
            opt.zero_grad()
            idx = torch.arange(step * 7 % 400, step * 7 % 400 + 32)
            torch.nn.functional.mse_loss(model(x[idx]), y[idx]).backward()
            opt.step()
        fast_at_end = cap._fast
    finally:
        undo()
        rec.finish_watching()
    assert all(not p._backward_hooks for p in model.parameters())
    assert len(rec.losses()) == 120
    ev = rec.evidence
    assert ev is not None and ev.grad_checks is not None and ev.grad_checks >= 10
    # zero_grad is wrapped only while a probe is armed, and given back as it was.
    assert ev.zero_grad_calls is None
    assert "zero_grad" not in vars(model)
    assert (vars(opt).get("zero_grad") is not None) == (clear == "noop")
    if clear == "noop":
        assert len(ev.stale_steps) == ev.grad_checks == ev.stale_after_zero_grad
        assert ev.stale_params and not any(n.startswith("unused") for n in ev.stale_params)
        broken = check_invariants(ev, rec.losses()).failing[0]
        assert broken.name == "stale_gradients"
        assert broken.evidence.endswith(
            "zero_grad() never cleared them (zero_grad was called after each of them, but "
            f"left them in place); parameters {', '.join(ev.stale_params)}"), broken.evidence
    else:
        assert ev.stale_steps == [] and ev.stale_after_zero_grad == 0 and fast_at_end


def test_captured_divergence_stops_within_a_record_batch() -> None:
    """Losses reach the recorder every RECORD_EVERY steps: a diverging run under fail-fast
    stops at most that many steps after the first non-finite loss, with every step's loss up to
    the stop recorded in order."""
    import torch

    from pytest_losstrend.capture.auto_torch import RECORD_EVERY, TorchCapture
    from pytest_losstrend.capture.recorder import LossTrendStop, Recorder

    x, y = _diabetes_tensors()
    torch.manual_seed(0)
    model = torch.nn.Linear(10, 1)
    opt = torch.optim.SGD(model.parameters(), lr=3.0)
    rec = Recorder(fail_fast=True)
    seen: list[float] = []
    undo = TorchCapture(rec, watch=False).install()
    steps = 0
    try:
        with pytest.raises(LossTrendStop):
            for _ in range(500):
                opt.zero_grad()
                loss = torch.nn.functional.mse_loss(model(x), y)
                seen.append(float(loss.detach()))
                loss.backward()
                opt.step()
                steps += 1
    finally:
        undo()
    recorded = rec.losses()
    assert recorded == pytest.approx(seen[:len(recorded)], nan_ok=True)
    first_bad = next(i for i, v in enumerate(seen) if not v < 1e6)
    assert steps - first_bad <= RECORD_EVERY
    assert steps < 500


def test_captured_watcher_parks_between_samples_and_keeps_its_schedule() -> None:
    """Under automatic capture the watcher's step hook runs on sampled steps only (parked in
    between), yet its samples and step count are those of a watcher hooked on every step; a
    second optimizer that starts stepping mid-run unparks it with the count intact."""
    import torch

    from pytest_losstrend.capture import torch_watch
    from pytest_losstrend.capture.auto_torch import TorchCapture
    from pytest_losstrend.capture.recorder import Recorder

    x, y = _diabetes_tensors()
    schedule = [*range(10), *range(10, 151, 10), *range(170, 300, 20)]
    calls = 0
    original = torch_watch.TorchWatcher._pre_step

    def counted(self: Any, *args: Any) -> None:
        nonlocal calls
        calls += 1
        original(self, *args)

    for second_from in (None, 155):
        torch.manual_seed(0)
        model = torch.nn.Linear(10, 1)
        other = torch.nn.Linear(10, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        opt_other = torch.optim.SGD(other.parameters(), lr=0.01)
        rec = Recorder()
        calls = 0
        torch_watch.TorchWatcher._pre_step = counted  # type: ignore[method-assign]
        undo = TorchCapture(rec).install()
        try:
            for step in range(300):
                opt.zero_grad()
                torch.nn.functional.mse_loss(model(x[:64]), y[:64]).backward()
                opt.step()
                if second_from is not None and step >= second_from:
                    opt_other.zero_grad()
                    torch.nn.functional.mse_loss(other(x[:64]), y[:64]).backward()
                    opt_other.step()
        finally:
            undo()
            torch_watch.TorchWatcher._pre_step = original  # type: ignore[method-assign]
            rec.finish_watching()
        ev = rec.watchers[0].evidence
        assert ev.optimizer_steps == 300
        assert ev.steps == schedule
        assert len(rec.losses()) == 300
        if second_from is not None:
            assert len(rec.losses("train_2")) == 300 - second_from
        if second_from is None:
            assert calls == len(schedule)  # parked on every step it does not sample
        else:
            assert calls > len(schedule)


@pytest.mark.parametrize("order", ["one_after_the_other", "alternating"])
def test_a_second_optimizer_with_its_own_losses_gets_its_own_series(order: str) -> None:
    """Two models trained in one test, each with its own loss and optimizer (one after the
    other, or alternating like a GAN's two players): the first optimizer's steps are the
    "train" curve, the second's go to "train_2", never interleaved into one curve. One loss
    stepped by two optimizers (an encoder's and a decoder's) stays one series."""
    import torch

    from pytest_losstrend.capture.auto_torch import TorchCapture
    from pytest_losstrend.capture.recorder import Recorder

    x, y = _diabetes_tensors()
    torch.manual_seed(0)
    a, b = torch.nn.Linear(10, 1), torch.nn.Sequential(torch.nn.Linear(10, 8),
                                                        torch.nn.Linear(8, 1))
    opt_a = torch.optim.SGD(a.parameters(), lr=0.05)
    opt_b0 = torch.optim.SGD(b[0].parameters(), lr=0.05)
    opt_b1 = torch.optim.SGD(b[1].parameters(), lr=0.05)
    seen_a: list[float] = []
    seen_b: list[float] = []

    def step_a() -> None:
        opt_a.zero_grad()
        loss = torch.nn.functional.mse_loss(a(x), y)
        seen_a.append(float(loss.detach()))
        loss.backward()
        opt_a.step()

    def step_b() -> None:  # one loss, two optimizers
        opt_b0.zero_grad()
        opt_b1.zero_grad()
        loss = torch.nn.functional.mse_loss(b(x), y) + 5.0
        seen_b.append(float(loss.detach()))
        loss.backward()
        opt_b0.step()
        opt_b1.step()

    rec = Recorder()
    undo = TorchCapture(rec).install()
    try:
        if order == "alternating":
            for _ in range(50):
                step_a()
                step_b()
        else:
            for _ in range(50):
                step_a()
            for _ in range(50):
                step_b()
    finally:
        undo()
        rec.finish_watching()
    assert rec.losses("train") == pytest.approx(seen_a)
    assert rec.losses("train_2") == pytest.approx(seen_b)
    assert set(rec.series_names) == {"train", "train_2"}

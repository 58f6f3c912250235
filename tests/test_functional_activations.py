"""Activations called as functions (``F.relu``, ``torch.relu``, ``x.relu()``, ``torch.tanh``...)
seen by the torch watcher on sampled steps, named after their layer, and diagnosed.

Real models on scikit-learn's digits (scaled to [0, 1]); each test trains for well under a
second.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.nn.functional import relu as imported_relu

from pytest_losstrend.capture.torch_activations import WINDOW, ActivationProbe
from pytest_losstrend.capture.torch_watch import TorchWatcher
from pytest_losstrend.diagnosis.context import DiagnosisContext
from pytest_losstrend.diagnosis.evidence import Evidence
from pytest_losstrend.diagnosis.watch_rules import rule_dead_units
from pytest_losstrend.verdict.result import Verdict

X_NP, Y_NP = load_digits(return_X_y=True)
X = torch.tensor(X_NP / 16.0, dtype=torch.float32)
Y = torch.tensor(Y_NP)


class MLP(nn.Module):
    """64 -> 64 -> 32 -> 10 with its activations called as functions."""

    def __init__(self, act: Callable[[torch.Tensor], torch.Tensor] = F.relu,
                 dead: int = 0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 64)
        self.fc2 = nn.Linear(64, 32)
        self.out = nn.Linear(32, 10)
        self.act = act
        if dead:
            with torch.no_grad():
                # A large negative bias: these units never fire, and get no gradient to recover.
                self.fc1.bias[:dead] = -20.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc1(x))
        h = torch.relu(self.fc2(h))
        return self.out(h)


def train(model: nn.Module, steps: int = 100, lr: float = 0.1,
          on_forward: Callable[[int], None] | None = None) -> TorchWatcher:
    torch.manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    watcher = TorchWatcher(model, opt)
    try:
        for step in range(steps):
            i = torch.randint(0, len(X), (32,))
            if on_forward is not None:
                on_forward(step)
            loss = F.cross_entropy(model(X[i]), Y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        watcher.finish()
    return watcher


def _ctx(verdict: Verdict, ev: Evidence) -> DiagnosisContext:
    return DiagnosisContext(series={"train": [2.3] * 10}, judged="train", verdict=verdict,
                            evidence=ev)


def _clean() -> None:
    """Nothing of the probe is left: no function mode, no global module hook of its own
    (another test's unfinished watcher may have left one of its own)."""
    assert torch._C._len_torch_function_stack() == 0
    glob = nn.modules.module
    hooks = [*glob._global_forward_hooks.values(), *glob._global_forward_pre_hooks.values()]
    assert not [h for h in hooks if isinstance(getattr(h, "__self__", None), ActivationProbe)]


def test_a_half_dead_layer_behind_f_relu_is_caught() -> None:
    torch.manual_seed(0)
    w = train(MLP(dead=40))
    ev = w.evidence
    frac = ev.dead_fraction["fc1 via F.relu"]
    assert 40 / 64 <= frac < 0.8
    assert ev.dead_fraction["fc2 via torch.relu"] < 0.3
    assert ev.activation_steps == WINDOW
    _clean()


def test_a_healthy_f_relu_mlp_is_not_flagged() -> None:
    torch.manual_seed(0)
    ev = train(MLP()).evidence
    assert set(ev.dead_fraction) == {"fc1 via F.relu", "fc2 via torch.relu"}
    assert max(ev.dead_fraction.values()) < 0.3
    stall = Verdict("fail", "stalled", "stall")
    assert rule_dead_units(_ctx(stall, ev)) == []


def test_a_dead_layer_is_the_diagnosis_of_a_stall() -> None:
    torch.manual_seed(0)
    ev = train(MLP(dead=64)).evidence
    assert ev.dead_fraction["fc1 via F.relu"] == 1.0
    stall = Verdict("fail", "stalled", "stall")
    (d,) = rule_dead_units(_ctx(stall, ev))
    assert d.cause == "dead_units" and d.confidence >= 0.9
    assert d.evidence == f"fc1 via F.relu: 100% of units never active over {WINDOW} sampled steps"


@pytest.mark.parametrize(("act", "name"), [
    (lambda t: t.relu(), ".relu()"),
    (imported_relu, "F.relu"),
    (lambda t: F.leaky_relu(t, 0.01), "F.leaky_relu"),
    (F.gelu, "F.gelu"),
    (F.silu, "F.silu"),
])
def test_every_spelling_is_seen_and_named(act: Callable[[torch.Tensor], torch.Tensor],
                                          name: str) -> None:
    torch.manual_seed(0)
    ev = train(MLP(act, dead=40), steps=30).evidence
    assert ev.dead_fraction[f"fc1 via {name}"] >= 40 / 64


def test_saturated_tanh_units() -> None:
    torch.manual_seed(0)
    model = MLP(torch.tanh)
    with torch.no_grad():
        model.fc1.weight.mul_(200.0)  # |pre-activation| in the tens: tanh pinned at +-1
    ev = train(model, steps=30, lr=0.01).evidence
    assert ev.saturated_fraction["fc1 via torch.tanh"] > 0.7
    healthy = train(MLP(torch.tanh), steps=30).evidence
    assert healthy.saturated_fraction["fc1 via torch.tanh"] < 0.01
    stall = Verdict("fail", "stalled", "stall")
    (d,) = rule_dead_units(_ctx(stall, ev))
    assert d.evidence.startswith("fc1 via torch.tanh: ") and d.confidence < 0.5
    assert d.evidence.endswith(f"of outputs saturated over {WINDOW} sampled steps")


def test_module_activations_are_not_counted_twice() -> None:
    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(64, 32)
            self.act = nn.ReLU()
            self.fc2 = nn.Linear(32, 16)
            self.squash = nn.Tanh()
            self.out = nn.Linear(16, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.squash(self.fc2(self.act(self.fc1(x)))))

    ev = train(Mixed(), steps=20).evidence
    # nn.ReLU through the module pass only; nn.Tanh (no module pass) under its own name.
    assert set(ev.dead_fraction) == {"act"}
    assert set(ev.saturated_fraction) == {"squash"}


def test_only_the_forward_after_a_sampled_step_is_observed() -> None:
    modes: list[int] = []

    class Spy(MLP):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            modes.append(torch._C._len_torch_function_stack())
            assert F.relu is imported_relu  # never patched
            return super().forward(x)

    w = train(Spy(), steps=60)
    observed = {i for i, n in enumerate(modes) if n}
    # The first forward, then the one after each dense step (steps 0-9), then after every
    # 4th sparse sample (steps 10, 20, 30, 40: the 4th is step 40).
    assert observed == {*range(11), 41}
    assert w._acts.forwards == len(observed)
    _clean()


def test_a_model_without_functional_activations_is_observed_once() -> None:
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    w = train(model, steps=40)
    assert w._acts.forwards == 1
    assert w.evidence.activation_steps == 0 and w.evidence.saturated_fraction == {}
    assert set(w.evidence.dead_fraction) == {"1"}


def test_everything_is_restored_when_the_forward_raises() -> None:
    class Broken(MLP):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = F.relu(self.fc1(x))
            raise RuntimeError(f"boom {h.shape[1]}")

    model = Broken()
    probe = ActivationProbe(model)
    probe.arm()
    with pytest.raises(RuntimeError, match="boom 64"):
        model(X[:8])
    _clean()
    assert not model._forward_pre_hooks and not model._forward_hooks
    # Armed again and never run: finish (close) removes the model's hooks.
    probe.arm()
    assert model._forward_pre_hooks
    probe.close()
    assert not model._forward_pre_hooks and not model._forward_hooks
    _clean()


def test_a_watcher_finished_while_armed_leaves_nothing() -> None:
    model = MLP()
    w = TorchWatcher(model, torch.optim.SGD(model.parameters(), lr=0.1))
    assert w._acts.armed
    w.finish()
    assert not model._forward_pre_hooks and not model._forward_hooks
    _clean()


def test_eval_and_no_grad_forwards_are_not_observed() -> None:
    model = MLP(dead=40)
    probe = ActivationProbe(model)
    probe.arm()
    with torch.no_grad():
        model(X[:8])
    model.eval()
    model(X[:8])
    assert probe.forwards == 0 and probe.armed
    model.train()
    model(X[:64])
    assert probe.forwards == 1 and not probe.armed
    assert probe.dead()["fc1 via F.relu"] >= 40 / 64


def test_another_threads_forward_is_not_seen() -> None:
    other = MLP(dead=64)
    seen: list[int] = []

    class Threaded(MLP):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # Another thread runs a model while this forward is observed: the function mode
            # is thread-local and the module hooks check the thread, so none of it is seen.
            t = threading.Thread(target=lambda: seen.append(int(other(x).shape[1])))
            t.start()
            t.join()
            return super().forward(x)

    model = Threaded()
    probe = ActivationProbe(model)
    probe.arm()
    model(X[:16])
    assert seen == [10] and probe.forwards == 1
    assert set(probe.dead()) == {"fc1 via F.relu", "fc2 via torch.relu"}
    assert probe.dead()["fc1 via F.relu"] < 0.5


def test_dead_fraction_keys_feed_the_evidence_json() -> None:
    ev = Evidence(dead_fraction={"fc1 via F.relu": 0.62}, activation_steps=8)
    assert ev.as_dict()["dead_fraction"] == {"fc1 via F.relu": 0.62}
    assert ev.as_dict()["activation_steps"] == 8

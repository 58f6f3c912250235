"""``TorchWatcher``: what it records while a real (tiny) torch model trains, and that it leaves
nothing behind.

Each scenario plants one bug the diagnosis should find (parameters the optimizer never sees,
frozen weights, gradients never cleared, dead ReLUs, unscaled inputs, predictions broadcast
against their targets) and checks that the evidence names it, and only it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.modules import module as nn_module

from pytest_losstrend import LossTrend
from pytest_losstrend.capture import torch_watch
from pytest_losstrend.capture.torch_watch import TorchWatcher, input_stats, loss_name

Data = tuple[torch.Tensor, torch.Tensor]


@pytest.fixture(autouse=True)
def _seeded() -> Iterator[None]:
    torch.manual_seed(0)
    yield


def _data(n: int = 64, d: int = 4, scale: torch.Tensor | None = None) -> Data:
    """A fixed noisy linear regression; ``scale`` multiplies the feature columns."""
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(n, d, generator=g)
    y = x @ torch.randn(d, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)
    if scale is not None:
        x = x * scale
    return x, y


def _mlp(d: int = 4, hidden: int = 8) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, 1))


def _train(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    data: Data,
    steps: int = 30,
    *,
    loss_fn: Callable[[Any, Any], Any] | None = None,
    zero_grad: bool = True,
    sched: Any = None,
    batch: int = 16,
    target: Callable[[torch.Tensor], torch.Tensor] = lambda y: y,
) -> None:
    """Minibatch training in a fixed order."""
    loss_fn = loss_fn or nn.MSELoss()
    x, y = data
    for step in range(steps):
        i = (step * batch) % len(x)
        if zero_grad:
            opt.zero_grad()
        loss = loss_fn(model(x[i:i + batch]), target(y[i:i + batch]))
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()


def _watched(model: nn.Module, opt: torch.optim.Optimizer, data: Data, steps: int = 30,
             **kw: Any) -> TorchWatcher:
    w = TorchWatcher(model, opt)
    _train(model, opt, data, steps, **kw)
    w.finish()
    return w


def test_healthy_run_fills_every_field() -> None:
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    ev = _watched(model, opt, _data(), steps=35).evidence
    assert ev.framework == "torch"
    assert ev.optimizer == "SGD"
    assert ev.momentum == 0.9
    assert ev.steps == [*range(10), 10, 20, 30]
    assert ev.lr == [0.05] * 13
    assert len(ev.grad_norm) == 13 and all(g > 0 for g in ev.grad_norm)
    names = ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert list(ev.update_ratio) == names
    # Positive and finite (a bias crossing zero can exceed 1: |Δb| / |b| with |b| ~ 0).
    assert all(len(v) == 13 and all(0 < r < math.inf for r in v)
               for v in ev.update_ratio.values())
    assert all(r < 0.5 for r in ev.update_ratio["0.weight"] + ev.update_ratio["2.weight"])
    assert ev.zero_grad_calls == 35
    assert ev.optimizer_steps == 35
    assert ev.not_in_optimizer == ev.frozen == ev.unchanged == ev.zero_grad_params == []
    assert ev.output_features == 1
    assert ev.loss_name == "mse"
    assert set(ev.dead_fraction) == {"1"}
    assert 0 <= ev.dead_fraction["1"] < 0.5
    assert ev.input_stats["n_features"] == 4
    assert ev.shape_mismatches == []
    assert ev.notes == []


def test_grad_norm_and_update_ratio_are_exact() -> None:
    # Plain SGD: the update is lr * grad, so the ratio is lr * |g| / |w|, |w| the larger of
    # the norms before and after the step.
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _data(16)
    w = TorchWatcher(model, opt)
    before = [p.detach().clone() for p in model.parameters()]
    opt.zero_grad()
    nn.functional.mse_loss(model(x), y).backward()
    grads = [p.grad.clone() for p in model.parameters()]  # type: ignore[union-attr]
    opt.step()
    w.finish()
    ev = w.evidence
    assert ev.grad_norm[0] == pytest.approx(float(torch.cat([g.view(-1) for g in grads]).norm()),
                                            rel=1e-5)
    for (name, p), g, p0 in zip(model.named_parameters(), grads, before, strict=True):
        scale = max(float(p0.norm()), float(p.detach().norm()))
        assert ev.update_ratio[name][0] == pytest.approx(0.1 * float(g.norm()) / scale, rel=1e-4)


def test_a_zero_initialised_parameter_gets_ratio_one() -> None:
    model = nn.Linear(4, 1)
    with torch.no_grad():
        model.bias.zero_()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ev = _watched(model, opt, _data(), steps=1).evidence
    assert ev.update_ratio["bias"] == [pytest.approx(1.0)]


def test_numpy_and_torch_samplers_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    def run() -> Any:
        torch.manual_seed(0)
        model = _mlp()
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        return _watched(model, opt, _data(), steps=25).evidence

    fast = run()
    monkeypatch.setattr(torch_watch, "_numpy_ready", lambda params: False)
    slow = run()
    assert fast.steps == slow.steps
    assert fast.grad_norm == pytest.approx(slow.grad_norm, rel=1e-5)
    for name, ratios in fast.update_ratio.items():
        assert ratios == pytest.approx(slow.update_ratio[name], rel=1e-4)


def test_watching_does_not_change_training() -> None:
    def final(watch: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.ReLU(), nn.Linear(8, 1))
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        w = TorchWatcher(model, opt) if watch else None
        _train(model, opt, _data(), steps=20)
        if w is not None:
            w.finish()
        # The global random state moved exactly as much (the dead-unit pass draws nothing).
        return [*[p.detach().clone() for p in model.parameters()], torch.rand(3)]

    for a, b in zip(final(False), final(True), strict=True):
        assert torch.equal(a, b)


def test_parameters_not_in_the_optimizer_are_named() -> None:
    model = _mlp()
    opt = torch.optim.SGD(model[2].parameters(), lr=0.05)
    ev = _watched(model, opt, _data()).evidence
    assert ev.not_in_optimizer == ["0.weight", "0.bias"]
    assert ev.unchanged == ["0.weight", "0.bias"]
    assert ev.update_ratio["0.weight"] == [0.0] * len(ev.steps)
    assert ev.frozen == []


def test_a_parameter_group_added_later_counts() -> None:
    model = _mlp()
    opt = torch.optim.SGD(model[2].parameters(), lr=0.05)
    w = TorchWatcher(model, opt)
    assert w.evidence.not_in_optimizer == ["0.weight", "0.bias"]
    opt.add_param_group({"params": model[0].parameters()})
    _train(model, opt, _data(), steps=5)
    w.finish()
    assert w.evidence.not_in_optimizer == []


def test_requires_grad_false_is_frozen() -> None:
    model = _mlp()
    model[0].weight.requires_grad_(False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    ev = _watched(model, opt, _data()).evidence
    assert ev.frozen == ["0.weight"]
    assert "0.weight" not in ev.update_ratio
    assert ev.not_in_optimizer == ev.unchanged == []


def test_zero_grad_never_called() -> None:
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    ev = _watched(model, opt, _data(), steps=12, zero_grad=False).evidence
    assert ev.zero_grad_calls == 0
    assert ev.optimizer_steps == 12


def test_model_zero_grad_counts_too() -> None:
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    w = TorchWatcher(model, opt)
    x, y = _data()
    for _ in range(4):
        model.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    w.finish()
    assert w.evidence.zero_grad_calls == 4


def test_dead_relu() -> None:
    # Every unit of the hidden layer starts at -10: the ReLU outputs zero on every sample, no
    # gradient reaches the first layer, and only the last bias learns.
    model = _mlp(hidden=16)
    with torch.no_grad():
        model[0].bias.fill_(-10.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    ev = _watched(model, opt, _data()).evidence
    assert ev.dead_fraction["1"] == pytest.approx(1.0)
    assert ev.zero_grad_params == ["0.weight", "0.bias", "2.weight"]
    assert ev.unchanged == ["0.weight", "0.bias", "2.weight"]
    assert ev.update_ratio["2.bias"][0] > 0


def test_dead_fraction_of_a_reused_activation_and_leaky_relu() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.out = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 1)
            self.act = nn.ReLU()
            self.leaky = nn.LeakyReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.leaky(self.act(self.b(self.act(self.a(x))))))

    model = Net()
    with torch.no_grad():
        model.b.bias[:3] = -100.0  # half the units of the second use never fire
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    ev = _watched(model, opt, _data(), steps=3).evidence
    assert set(ev.dead_fraction) == {"act", "act[2]", "leaky"}
    assert ev.dead_fraction["act[2]"] >= 0.5
    assert ev.dead_fraction["leaky"] == ev.dead_fraction["act[2]"]


def test_unscaled_inputs() -> None:
    scale = torch.tensor([1000.0, 1.0, 1.0, 1.0])
    model = nn.Linear(4, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    stats = _watched(model, opt, _data(scale=scale), steps=5).evidence.input_stats
    assert stats["std_ratio"] > 500
    assert stats["max_abs"] > 1000
    assert stats["cond"] > 1e5
    assert stats["cond_standardised"] < 10

    model = nn.Linear(4, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    stats = _watched(model, opt, _data(), steps=5).evidence.input_stats
    assert stats["std_ratio"] < 3
    assert stats["max_abs"] < 10


def test_input_stats_definitions() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 3)) * [1.0, 10.0, 100.0] + [0.0, 0.0, 500.0]
    x = np.c_[x, np.full(50, 7.0)]  # a constant column
    stats = input_stats(torch.as_tensor(x))
    std = x[:, :3].std(0)
    assert stats["n_features"] == 4 and stats["n_constant"] == 1
    assert stats["std_min"] == pytest.approx(std.min())
    assert stats["std_ratio"] == pytest.approx(std.max() / std.min())
    assert stats["max_abs"] == pytest.approx(np.abs(x).max())
    assert stats["mean_abs_over_std"] == pytest.approx(np.abs(x[:, 2].mean()) / std[2])
    assert stats["cond"] == pytest.approx(np.linalg.cond(x.T @ x), rel=1e-6)
    z = (x[:, :3] - x[:, :3].mean(0)) / std
    assert stats["cond_standardised"] == pytest.approx(np.linalg.cond(z.T @ z), rel=1e-6)
    # Fewer rows than features: XᵀX is singular.
    assert input_stats(torch.randn(3, 5))["cond"] == math.inf
    # Images: whole-tensor figures only; token ids: nothing.
    assert set(input_stats(torch.rand(4, 3, 8, 8))) == {"max_abs", "rms", "mean", "std"}
    assert input_stats(torch.arange(10)) == {}


def test_shape_mismatch_is_named() -> None:
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.warns(UserWarning, match="target size"):
        ev = _watched(model, opt, _data(), steps=3, target=lambda y: y.squeeze(1)).evidence
    assert ev.shape_mismatches == [
        "MSELoss: prediction of shape (16, 1) and target of shape (16,) broadcast to (16, 16)"
    ]


def test_class_index_targets_are_no_mismatch() -> None:
    # (N, C) logits against (N,) class indices, with C == N: broadcastable, but by design.
    model = nn.Linear(4, 16)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, _ = _data()
    labels = torch.arange(64) % 16
    ev = _watched(model, opt, (x, labels), steps=3, loss_fn=nn.CrossEntropyLoss()).evidence
    assert ev.shape_mismatches == []
    assert ev.loss_name == "cross_entropy"
    assert ev.loss_from_logits is True
    assert ev.output_features == 16
    assert ev.notes == []


def test_softmax_fed_to_cross_entropy_is_noted() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, _ = _data()
    ev = _watched(model, opt, (x, torch.arange(64) % 3), steps=3,
                  loss_fn=nn.CrossEntropyLoss()).evidence
    assert len(ev.notes) == 1 and "expects logits" in ev.notes[0]


def test_lr_from_a_scheduler() -> None:
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.1)
    ev = _watched(model, opt, _data(), steps=21, sched=sched).evidence
    assert ev.steps == [*range(10), 10, 20]
    assert ev.lr == pytest.approx([0.1] * 5 + [0.01] * 5 + [0.001, 1e-5])
    assert ev.last_lr == pytest.approx(1e-5)


def test_adam_momentum_and_loss_names() -> None:
    model = nn.Linear(4, 1)
    w = TorchWatcher(model, torch.optim.Adam(model.parameters(), betas=(0.8, 0.99)),
                     loss_fn=nn.functional.binary_cross_entropy_with_logits)
    w.finish()
    assert w.evidence.momentum == 0.8
    assert w.evidence.optimizer == "Adam"
    assert w.evidence.loss_name == "binary_cross_entropy_with_logits"
    assert loss_name(nn.BCEWithLogitsLoss()) == "binary_cross_entropy_with_logits"
    assert loss_name(nn.functional.mse_loss) == "mse"
    assert loss_name(nn.MultiLabelSoftMarginLoss()) == "multi_label_soft_margin"
    assert loss_name(lambda p, y: p) is None


def _hook_counts(model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, int]:
    from torch.optim import optimizer as optim_module

    return {
        "global_forward_pre": len(nn_module._global_forward_pre_hooks),
        "global_forward": len(nn_module._global_forward_hooks),
        "global_step_pre": len(optim_module._global_optimizer_pre_hooks),
        "model_forward_pre": len(model._forward_pre_hooks),
        "model_forward": len(model._forward_hooks),
        "relu_forward": sum(len(m._forward_hooks) for m in model.modules()),
        "step_pre": len(opt._optimizer_step_pre_hooks),
        "step_post": len(opt._optimizer_step_post_hooks),
    }


@pytest.mark.parametrize("steps", [0, 3, 40])
def test_hooks_and_wrappers_are_removed(steps: int) -> None:
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    before = _hook_counts(model, opt)
    w = TorchWatcher(model, opt)
    assert _hook_counts(model, opt) != before
    assert "zero_grad" in vars(model) and "zero_grad" in vars(opt)
    _train(model, opt, _data(), steps=steps)
    w.finish()
    w.finish()  # idempotent
    assert _hook_counts(model, opt) == before
    assert "zero_grad" not in vars(model) and "zero_grad" not in vars(opt)
    assert model.zero_grad.__func__ is nn.Module.zero_grad  # type: ignore[attr-defined]
    calls = w.evidence.zero_grad_calls
    _train(model, opt, _data(), steps=2)
    assert w.evidence.zero_grad_calls == calls  # no longer counting


def test_a_wrapper_on_top_of_ours_stays_but_we_stop_counting() -> None:
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    w = TorchWatcher(model, opt)
    ours = opt.zero_grad

    def theirs(set_to_none: bool = True) -> None:  # e.g. another tool's counter
        ours(set_to_none)

    opt.zero_grad = theirs  # type: ignore[method-assign]
    _train(model, opt, _data(), steps=2)
    w.finish()
    assert w.evidence.zero_grad_calls == 2
    _train(model, opt, _data(), steps=2)
    assert w.evidence.zero_grad_calls == 2


def test_global_loss_hook_goes_after_a_few_calls() -> None:
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    before = len(nn_module._global_forward_pre_hooks)
    w = TorchWatcher(model, opt)
    _train(model, opt, _data(), steps=torch_watch.LOSS_CHECKS)
    # Gone while training goes on: it would slow every module call of the run.
    assert len(nn_module._global_forward_pre_hooks) == before
    assert not model._forward_pre_hooks and not model._forward_hooks
    w.finish()


def test_optimizer_adopted_when_not_given() -> None:
    from torch.optim import optimizer as optim_module

    model = _mlp()
    other = nn.Linear(2, 2)
    other_opt = torch.optim.SGD(other.parameters(), lr=0.1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    hooks = len(optim_module._global_optimizer_pre_hooks)
    w = TorchWatcher(model)
    other(torch.randn(3, 2)).sum().backward()
    other_opt.step()  # not ours: ignored
    _train(model, opt, _data(), steps=12)
    assert len(optim_module._global_optimizer_pre_hooks) == hooks
    w.finish()
    ev = w.evidence
    assert ev.optimizer == "Adam"
    assert ev.optimizer_steps == 12
    assert ev.steps == [*range(10), 10]
    # The first zero_grad ran before the optimizer was known.
    assert ev.zero_grad_calls == 11


def test_a_step_that_raises_made_no_update() -> None:
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    w = TorchWatcher(model, opt)
    x, y = _data()

    def boom(*args: Any) -> None:
        raise RuntimeError("boom")

    handle = opt.register_step_pre_hook(boom)
    nn.functional.mse_loss(model(x), y).backward()
    with pytest.raises(RuntimeError, match="boom"):
        opt.step()
    handle.remove()
    opt.step()
    w.finish()
    ev = w.evidence
    assert ev.steps == [0, 1]
    assert ev.update_ratio["weight"][0] == 0.0
    assert ev.update_ratio["weight"][1] > 0


def test_sharpness_on_the_watched_batch() -> None:
    x, y = _data(128)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    w = TorchWatcher(model, opt, loss_fn=nn.MSELoss(), batch=(x, y))
    _train(model, opt, (x, y), steps=5)
    w.finish()
    a = np.c_[x.double().numpy(), np.ones(len(x))]
    exact = np.linalg.eigvalsh(2 * a.T @ a / len(a))[-1]
    assert w.sharpness() == pytest.approx(exact, rel=0.01)
    assert w.evidence.sharpness == pytest.approx(exact, rel=0.01)
    assert w.evidence.sharpness_lr == 0.05
    assert TorchWatcher(nn.Linear(4, 1), loss_fn=nn.MSELoss()).sharpness() is None


def test_sharpness_that_cannot_be_measured_is_a_note() -> None:
    def loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("shapes do not match")

    model = nn.Linear(4, 1)
    w = TorchWatcher(model, loss_fn=loss, batch=_data())
    w.finish()
    assert w.sharpness() is None
    assert w.evidence.notes == ["sharpness not measured: RuntimeError: shapes do not match"]


def test_through_the_fixture_object() -> None:
    x, y = _data(128)
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    lt = LossTrend()
    assert lt.watch(model, opt, loss_fn=nn.MSELoss(), batch=(x, y)) is model
    for _ in range(15):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        lt.record(loss)
    lt.finish_watching()
    assert lt.framework == "torch"
    ev = lt.evidence
    assert ev is not None and ev.optimizer_steps == 15 and ev.zero_grad_calls == 15
    sharp = lt.measure_sharpness()
    assert sharp is not None and sharp > 0 and ev.sharpness == sharp
    assert ev.sharpness_lr == 0.05
    json_ready = ev.as_dict()
    assert json_ready["input_stats"]["n_features"] == 4


def test_gradients_cleared_by_hand_count_as_cleared() -> None:
    # for p in model.parameters(): p.grad = None -- a common way to clear them, which no
    # zero_grad wrapper sees; it must not read as "gradients never cleared".
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    w = TorchWatcher(model, opt)
    x, y = _data()
    for _ in range(12):
        for p in model.parameters():
            p.grad = None
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    w.finish()
    assert w.evidence.zero_grad_calls == 9  # each of the dense steps after the first


def test_a_parameter_getting_its_first_gradient_late_is_no_clearing() -> None:
    class Late(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 1), nn.Linear(4, 1)
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return self.a(x) + (self.b(x) if self.calls > 3 else 0)

    model = Late()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    ev = _watched(model, opt, _data(), steps=12, zero_grad=False).evidence
    assert ev.zero_grad_calls == 0


def test_sampling_schedule_thins_out_on_long_loops() -> None:
    # Every step to 10, every 10th to 150, then every 20th (to 310), every 40th (to 630),
    # every 80th...: eight samples per doubling of the run.
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    w = TorchWatcher(model, opt)
    x = torch.randn(4, 2)
    for _ in range(800):
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()
    w.finish()
    assert w.evidence.steps == [*range(10), *range(10, 151, 10), *range(170, 311, 20),
                                *range(350, 631, 40), 710, 790]
    assert w.evidence.optimizer_steps == 800


def test_a_meta_model_is_refused_at_watch_with_what_to_do() -> None:
    """Was torch's "Cannot copy out of meta tensor" from the sampler at the first flush (from
    an optimizer hook on a long loop): a meta model has no values to watch."""
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    lt = LossTrend()
    with pytest.raises(ValueError, match=r"meta device \(0\.weight, 0\.bias, 2\.weight, "
                                         r"2\.bias\).*to_empty"):
        lt.watch(model, opt)
    assert lt.evidence is None
    # Nothing was left hooked: the model still trains (on meta) without the watcher.
    loss = model(torch.ones(2, 3, device="meta")).sum()
    loss.backward()
    opt.step()

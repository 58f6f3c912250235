"""The torch scenarios of the catalogue: each a training run, ``run(lt, bad)``, with one known
fault when ``bad`` and fixed otherwise.

:data:`~pytest_losstrend.catalogue.scenarios.SCENARIOS` pairs each with its name, cause,
criteria and explanation. They share one training loop, :func:`_loop`, the loop most tests
write. torch is imported inside the functions, so importing this module costs numpy only.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_losstrend.catalogue.scenario_data import blobs, breast_cancer, diabetes, digits

if TYPE_CHECKING:
    import torch

    from pytest_losstrend.capture.recorder import Recorder


def _t(a: Any, dtype: Any = None) -> torch.Tensor:
    import torch

    return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype or torch.float32)


# -- a training loop -----------------------------------------------------------------------------


def _loop(
    lt: Recorder,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    data: tuple[torch.Tensor, torch.Tensor],
    *,
    steps: int,
    batch_size: int | None = None,
    shuffle: bool = True,
    zero_grad: bool = True,
    eval_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    eval_every: int = 0,
    watch_rows: int = 256,
    after_step: Callable[[], object] | None = None,
) -> None:
    """The loop most tests write: watch, then ``steps`` optimizer steps on the full batch or on
    mini-batches (reshuffled each epoch unless ``shuffle=False``), recording each step's loss,
    and every ``eval_every`` steps the loss on ``eval_data`` as series ``"eval"``;
    ``after_step`` runs after each optimizer step (a scheduler's ``step``)."""
    import torch

    x, y = data
    lt.watch(model, opt, loss_fn=loss_fn, batch=(x[:watch_rows], y[:watch_rows]))
    n = len(x)
    batches: list[torch.Tensor] = []
    for step in range(steps):
        if batch_size is None:
            xb, yb = x, y
        else:
            if not batches:
                order = torch.randperm(n) if shuffle else torch.arange(n)
                batches = list(torch.split(order, batch_size))
            idx = batches.pop(0)
            xb, yb = x[idx], y[idx]
        if zero_grad:
            opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        torch.autograd.backward(loss)
        opt.step()
        if after_step is not None:
            after_step()
        lt.record(loss)
        if eval_data is not None and eval_every and (step + 1) % eval_every == 0:
            with torch.no_grad():
                lt.record(loss_fn(model(eval_data[0]), eval_data[1]), series="eval")


def _mlp(sizes: list[int], act: Callable[[], torch.nn.Module]) -> torch.nn.Sequential:
    import torch

    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act())
    return torch.nn.Sequential(*layers)


# -- the scenarios -------------------------------------------------------------------------------


def lr_too_high(lt: Recorder, bad: bool) -> None:
    import torch
    from torch.nn.functional import mse_loss

    x = torch.rand(100, 1) * 10
    y = 2 * x + 1 + 0.5 * torch.randn(100, 1)
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0 if bad else 0.01)
    _loop(lt, model, opt, mse_loss, (x, y), steps=60)


def unscaled_features(lt: Recorder, bad: bool) -> None:
    import torch
    from torch.nn.functional import mse_loss

    xs, ys = diabetes()
    if bad:
        # Three columns in other units (grams instead of kilograms, say).
        xs = xs * np.array([1000.0, 1000.0, 1000.0] + [1.0] * 7)
    x, y = _t(xs), _t(ys[:, None])
    model = torch.nn.Linear(10, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    _loop(lt, model, opt, mse_loss, (x, y), steps=60)


def non_finite(lt: Recorder, bad: bool) -> None:
    import torch

    xs, ys = breast_cancer()
    x, y = _t(xs), _t(ys[:, None])
    model = torch.nn.Linear(30, 1)

    def hand_bce(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # The textbook formula on probabilities: once a sigmoid saturates to exactly 1.0 in
        # float32, log(1 - p) is -inf and 0 * -inf is NaN, even for a correct prediction.
        p = torch.sigmoid(z)
        return -(t * torch.log(p) + (1 - t) * torch.log(1 - p)).mean()

    loss_fn = hand_bce if bad else torch.nn.functional.binary_cross_entropy_with_logits
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    _loop(lt, model, opt, loss_fn, (x, y), steps=80)


def no_learning(lt: Recorder, bad: bool) -> None:
    import torch

    xs, ys = digits()
    x, y = _t(xs), _t(ys, torch.long)
    model = _mlp([64, 32, 10], torch.nn.ReLU)
    # The classic: the optimizer was built for another instance (a model re-created after the
    # optimizer, or a copy), so the model being trained never moves.
    params = _mlp([64, 32, 10], torch.nn.ReLU).parameters() if bad else model.parameters()
    opt = torch.optim.SGD(params, lr=0.1)
    _loop(lt, model, opt, torch.nn.functional.cross_entropy, (x, y), steps=120, batch_size=32)


def stale_gradients(lt: Recorder, bad: bool) -> None:
    import torch
    from torch.nn.functional import mse_loss

    xs, ys = diabetes()
    x, y = _t(xs), _t(ys[:, None])
    model = torch.nn.Linear(10, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.02)
    _loop(lt, model, opt, mse_loss, (x, y), steps=100, batch_size=64, zero_grad=not bad)


def dead_units(lt: Recorder, bad: bool) -> None:
    import torch
    from torch.nn.functional import mse_loss

    xs, ys = diabetes()
    x, y = _t(xs), _t(ys[:, None])
    model = _mlp([10, 64, 64, 1], torch.nn.ReLU)
    if bad:
        with torch.no_grad():
            for layer in model:
                if isinstance(layer, torch.nn.Linear) and layer.out_features > 1:
                    layer.bias.fill_(-10.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    _loop(lt, model, opt, mse_loss, (x, y), steps=150, batch_size=128)


def shape_mismatch(lt: Recorder, bad: bool) -> None:
    import torch
    from torch.nn.functional import mse_loss

    x = torch.randn(256, 5)
    y = x @ torch.randn(5) + 0.1 * torch.randn(256)  # shape (256,)
    model = torch.nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    if bad:
        # model(x) is (256, 1) against y (256,): mse_loss broadcasts to (256, 256) and
        # compares every prediction with every target; the best it can do is predict mean(y).
        _loop(lt, model, opt, mse_loss, (x, y), steps=80, batch_size=32)
    else:
        _loop(lt, model, opt, mse_loss, (x, y[:, None]), steps=80, batch_size=32)


def overfitting(lt: Recorder, bad: bool) -> None:
    import torch
    from torch.nn.functional import mse_loss

    w = torch.randn(8, 1)

    def data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Mostly linear, so that 30 rows teach something before their noise is memorised.
        x = torch.randn(n, 8)
        return x, x @ w + 0.3 * torch.sin(3 * x[:, :1]) + 1.5 * torch.randn(n, 1)

    x, y = data(30 if bad else 1000)
    model = _mlp([8, 128, 128, 1], torch.nn.ReLU)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    _loop(lt, model, opt, mse_loss, (x, y), steps=200, batch_size=None if bad else 64,
          eval_data=data(500), eval_every=4)


def unshuffled_batches(lt: Recorder, bad: bool) -> None:
    import torch

    xs, ys = blobs(3200, 5, 8, 0.6)
    n_train = 2400
    order = np.argsort(ys[:n_train], kind="stable")  # the file came sorted by label
    x, y = _t(xs[:n_train][order]), _t(ys[:n_train][order], torch.long)
    xe, ye = _t(xs[n_train:]), _t(ys[n_train:], torch.long)
    model = torch.nn.Linear(8, 5)
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    steps_per_epoch = -(-n_train // 32)
    _loop(lt, model, opt, torch.nn.functional.cross_entropy, (x, y),
          steps=8 * steps_per_epoch, batch_size=32, shuffle=not bad,
          eval_data=(xe, ye), eval_every=steps_per_epoch)


def bad_init(lt: Recorder, bad: bool) -> None:
    import torch

    xs, ys = digits()
    x, y = _t(xs), _t(ys, torch.long)
    model = _mlp([64, 64, 10], torch.nn.Tanh)
    if bad:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(50.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    _loop(lt, model, opt, torch.nn.functional.cross_entropy, (x, y), steps=100, batch_size=64)


def lr_too_low(lt: Recorder, bad: bool) -> None:
    import torch
    from torch.nn.functional import mse_loss

    xs, ys = diabetes()
    x, y = _t(xs), _t(ys[:, None])
    model = _mlp([10, 32, 1], torch.nn.Tanh)
    opt = torch.optim.SGD(model.parameters(), lr=1e-6 if bad else 0.05)
    _loop(lt, model, opt, mse_loss, (x, y), steps=80)


def oscillation(lt: Recorder, bad: bool) -> None:
    import torch
    from torch.nn.functional import mse_loss

    xs, ys = diabetes()
    x, y = _t(xs), _t(ys[:, None])
    model = torch.nn.Linear(10, 1)
    # lr = 0.2 is 0.8 of plain gradient descent's limit 2/lambda_max (lambda_max = 8.05 here);
    # heavy-ball momentum stays stable up to 2(1 + momentum)/lambda_max, but at 0.99 it damps
    # each swing by only 0.5% a step.
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.99 if bad else 0.9)
    _loop(lt, model, opt, mse_loss, (x, y), steps=60)


def plateau(lt: Recorder, bad: bool) -> None:
    import torch

    xs, ys = digits()
    x, y = _t(xs), _t(ys, torch.long)
    net = _mlp([64, 64, 10], torch.nn.ReLU)
    # The bug: a softmax layer at the end of the model, and CrossEntropyLoss, which applies
    # log-softmax itself, on top. Probabilities in [0, 1] taken as logits confine the loss to
    # [1.46, 2.46] and the gradient through two softmaxes all but vanishes.
    model = torch.nn.Sequential(net, torch.nn.Softmax(dim=-1)) if bad else net
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    _loop(lt, model, opt, torch.nn.CrossEntropyLoss(), (x, y), steps=120, batch_size=64)


def exploding_gradients(lt: Recorder, bad: bool) -> None:
    import torch
    from torch.nn.functional import mse_loss

    xs, ys = diabetes()
    x, y = _t(xs), _t(ys[:, None])
    model = _mlp([10] + [32] * 9 + [1], torch.nn.Identity)
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                # Orthogonal weights keep a deep linear net's signal (and gradient) at scale;
                # a gain of 1.5 multiplies both by 1.5 per layer: 1.5^10 = 58x end to end.
                torch.nn.init.orthogonal_(layer.weight, gain=1.5 if bad else 1.0)
                layer.bias.zero_()
    opt = torch.optim.SGD(model.parameters(), lr=3e-4)
    _loop(lt, model, opt, mse_loss, (x, y), steps=80)


def adam_lr_too_high(lt: Recorder, bad: bool) -> None:
    import torch
    from torch.nn.functional import mse_loss

    xs, ys = diabetes()
    x, y = _t(xs), _t(ys[:, None])
    model = _mlp([10, 32, 1], torch.nn.ReLU)
    # Adam moves every weight by about lr per step whatever the gradient's size: at lr=3 the
    # first step throws each weight 3 units away, the usual default being 1e-3.
    opt = torch.optim.Adam(model.parameters(), lr=3.0 if bad else 3e-3)
    _loop(lt, model, opt, mse_loss, (x, y), steps=80, batch_size=64)


def growing_lr_schedule(lt: Recorder, bad: bool) -> None:
    import torch
    from torch.nn.functional import mse_loss

    xs, ys = diabetes()
    x, y = _t(xs), _t(ys[:, None])
    model = torch.nn.Linear(10, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    # A decay factor mistyped as a growth factor: gamma=1.1 instead of 0.9 (or 1/1.1).
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=1.1 if bad else 0.97)
    _loop(lt, model, opt, mse_loss, (x, y), steps=60, after_step=sched.step)


def unscaled_target(lt: Recorder, bad: bool) -> None:
    import torch
    from torch.nn.functional import mse_loss

    xs, ys = diabetes()
    # The bug: the target in its raw units (here 1000x the standardised one), features fine.
    x, y = _t(xs), _t(ys[:, None] * (1000.0 if bad else 1.0))
    model = _mlp([10, 32, 1], torch.nn.ReLU)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    _loop(lt, model, opt, mse_loss, (x, y), steps=80, batch_size=64)


def frozen_weights(lt: Recorder, bad: bool) -> None:
    import torch

    xs, ys = digits()
    x, y = _t(xs), _t(ys, torch.long)
    model = _mlp([64, 32, 10], torch.nn.ReLU)
    if bad:
        for name, p in model.named_parameters():
            if name.endswith("weight"):
                p.requires_grad_(False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    _loop(lt, model, opt, torch.nn.functional.cross_entropy, (x, y), steps=120, batch_size=32)


def shuffled_labels(lt: Recorder, bad: bool) -> None:
    import torch

    xs, ys = digits()
    if bad:
        # The bug: the labels permuted on their own, so no input says anything about its label.
        ys = np.random.permutation(ys)
    x, y = _t(xs), _t(ys, torch.long)
    model = _mlp([64, 32, 10], torch.nn.ReLU)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    _loop(lt, model, opt, torch.nn.functional.cross_entropy, (x, y), steps=120, batch_size=32)

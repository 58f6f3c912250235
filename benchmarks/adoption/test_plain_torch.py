"""A plain torch loop: a 64-32-10 MLP on scikit-learn's digits (scaled to [0, 1]), SGD with
momentum, random mini-batches of 64, 80 steps, ``opt.zero_grad(); loss.backward(); opt.step()``.

Faults (labelled in ``bench_adoption.EXPECTED`` before any run):
- ``lr_x100``: lr 0.05 -> 5.0;
- ``no_zero_grad``: ``opt.zero_grad()`` left out;
- ``param_left_out``: the optimizer is given the first layer only (the head never learns);
- ``shuffled_labels``: the labels permuted against the images;
- ``frozen_first``: the first layer frozen (``requires_grad_(False)``) and left out of the
  optimizer on purpose; random features still separate the digits.
"""

from __future__ import annotations

import pytest
import torch
from _common import SEEDS, explicit, marked, plain_check
from sklearn.datasets import load_digits

FAULTS = ["healthy", "lr_x100", "no_zero_grad", "param_left_out", "shuffled_labels",
          "frozen_first"]
X, Y = load_digits(return_X_y=True)


@marked
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fault", FAULTS)
def test_plain_torch(fault: str, seed: int, request: pytest.FixtureRequest) -> None:
    lt = explicit(request)
    x = torch.tensor(X / 16.0, dtype=torch.float32)
    y = torch.tensor(Y)
    g = torch.Generator().manual_seed(seed)
    if fault == "shuffled_labels":
        y = y[torch.randperm(len(y), generator=g)]
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    params = list(model.parameters())
    if fault == "param_left_out":
        params = list(model[0].parameters())
    if fault == "frozen_first":
        model[0].requires_grad_(False)
        params = list(model[2].parameters())
    opt = torch.optim.SGD(params, lr=5.0 if fault == "lr_x100" else 0.05, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    if lt is not None:
        lt.watch(model, opt)
    losses = []
    for _ in range(80):
        idx = torch.randint(len(x), (64,), generator=g)
        loss = loss_fn(model(x[idx]), y[idx])
        if fault != "no_zero_grad":
            opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if lt is not None:
            lt.record(loss)
    plain_check(losses)

"""Manual SGD with no optimizer object: ``p -= lr * p.grad`` under ``no_grad``, linear regression
on synthetic data (10 features, an intercept of 3, noise 0.1), full batch of 256, 60 updates.

Faults (labelled in ``bench_adoption.EXPECTED`` before any run):
- ``lr_x100``: lr 0.05 -> 5.0, past the stability limit 2/lambda_max; diverges;
- ``no_zero_grad``: ``p.grad.zero_()`` left out, gradients pile up;
- ``shuffled_labels``: the targets permuted against their inputs;
- ``broadcast``: the prediction (N, 1) against the target (N,) in the MSE.
"""

from __future__ import annotations

import pytest
import torch
from _common import SEEDS, explicit, marked, plain_check

FAULTS = ["healthy", "lr_x100", "no_zero_grad", "shuffled_labels", "broadcast"]


@marked
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fault", FAULTS)
def test_manual_sgd(fault: str, seed: int, request: pytest.FixtureRequest) -> None:
    lt = explicit(request)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 10, generator=g)
    w_true = torch.randn(10, 1, generator=g)
    y = (x @ w_true).squeeze(1) + 3.0 + 0.1 * torch.randn(256, generator=g)
    if fault == "shuffled_labels":
        y = y[torch.randperm(256, generator=g)]
    torch.manual_seed(seed)
    model = torch.nn.Linear(10, 1)
    if lt is not None:
        lt.watch(model)
    lr = 5.0 if fault == "lr_x100" else 0.05
    losses = []
    for _ in range(60):
        pred = model(x)
        target = y if fault == "broadcast" else y.unsqueeze(1)
        loss = torch.nn.functional.mse_loss(pred, target)
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad  # noqa: PLW2901 - the shape people write
                if fault != "no_zero_grad":
                    p.grad.zero_()
        losses.append(loss.item())
        if lt is not None:
            lt.record(loss)
    plain_check(losses)

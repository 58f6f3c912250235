"""A loop that keeps only per-epoch mean losses: a 13-feature linear model on a synthetic
regression (512 rows, features of unit scale), mini-batches of 32 from a shuffling DataLoader,
SGD lr 0.01, 8 epochs; the author appends each epoch's mean loss.

Faults (labelled in ``bench_adoption.EXPECTED`` before any run):
- ``lr_x100``: lr 0.01 -> 1.0;
- ``no_zero_grad``: ``opt.zero_grad()`` left out;
- ``shuffled_labels``: the targets permuted against their inputs;
- ``broadcast``: the prediction (B, 1) against the target (B,) in the MSE.
"""

from __future__ import annotations

import pytest
import torch
from _common import SEEDS, explicit, marked, plain_check

FAULTS = ["healthy", "lr_x100", "no_zero_grad", "shuffled_labels", "broadcast"]


@marked
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fault", FAULTS)
def test_epoch_means(fault: str, seed: int, request: pytest.FixtureRequest) -> None:
    lt = explicit(request)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(512, 13, generator=g)
    y = (x @ torch.randn(13, generator=g)) + 1.0 + 0.2 * torch.randn(512, generator=g)
    if fault == "shuffled_labels":
        y = y[torch.randperm(512, generator=g)]
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32,
                                         shuffle=True, generator=g)
    torch.manual_seed(seed)
    model = torch.nn.Linear(13, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0 if fault == "lr_x100" else 0.01)
    if lt is not None:
        lt.watch(model, opt)
    epoch_losses = []
    for _epoch in range(8):
        total, n = 0.0, 0
        for xb, yb in loader:
            pred = model(xb)
            loss = torch.nn.functional.mse_loss(pred, yb if fault == "broadcast" else yb[:, None])
            if fault != "no_zero_grad":
                opt.zero_grad()
            loss.backward()
            opt.step()
            total, n = total + loss.item(), n + 1
        epoch_losses.append(total / n)
        if lt is not None:
            lt.record(epoch_losses[-1])
    plain_check(epoch_losses)

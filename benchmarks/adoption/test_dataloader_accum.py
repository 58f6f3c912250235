"""A DataLoader loop with gradient accumulation 4: a 10-32-1 MLP regressing a smooth synthetic
target (1024 rows), batches of 16 shuffled by the loader, Adam, 4 epochs (64 optimizer steps),
the loss divided by the accumulation steps as the tutorials write it.

Faults (labelled in ``bench_adoption.EXPECTED`` before any run):
- ``lr_x100``: lr 0.01 -> 1.0;
- ``zero_grad_noop``: the loop calls a ``zero_grad`` that does nothing (a helper that zeroes
  another model's gradients);
- ``param_left_out``: the optimizer is given the hidden layer only;
- ``broadcast``: the prediction (B, 1) against the target (B,) in the MSE.
"""

from __future__ import annotations

import pytest
import torch
from _common import SEEDS, explicit, marked, plain_check

FAULTS = ["healthy", "lr_x100", "zero_grad_noop", "param_left_out", "broadcast"]
ACCUM = 4


@marked
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fault", FAULTS)
def test_dataloader_accum(fault: str, seed: int, request: pytest.FixtureRequest) -> None:
    lt = explicit(request)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1024, 10, generator=g)
    y = torch.sin(x[:, 0]) + 0.5 * x[:, 1] * x[:, 2] + 2.0 + 0.05 * torch.randn(1024, generator=g)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16,
                                         shuffle=True, generator=g)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    params = list(model[0].parameters()) if fault == "param_left_out" else model.parameters()
    opt = torch.optim.Adam(params, lr=1.0 if fault == "lr_x100" else 0.01)
    other = torch.nn.Linear(10, 1)
    zero_grad = other.zero_grad if fault == "zero_grad_noop" else opt.zero_grad
    if lt is not None:
        lt.watch(model, opt)
    losses: list[float] = []
    for _epoch in range(4):
        window: list[float] = []
        for i, (xb, yb) in enumerate(loader):
            pred = model(xb)
            target = yb if fault == "broadcast" else yb.unsqueeze(1)
            loss = torch.nn.functional.mse_loss(pred, target) / ACCUM
            loss.backward()
            window.append(loss.item() * ACCUM)
            if (i + 1) % ACCUM == 0:
                opt.step()
                zero_grad()
                losses.append(sum(window) / len(window))
                if lt is not None:
                    lt.record(losses[-1])
                window = []
    plain_check(losses)

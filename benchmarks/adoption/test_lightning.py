"""A tiny LightningModule: a 64-32-10 MLP on scikit-learn's digits, SGD with momentum, batches of
32 shuffled by the loader, ``Trainer(max_steps=40, enable_checkpointing=False, logger=False,
enable_progress_bar=False)``.

Faults (labelled in ``bench_adoption.EXPECTED`` before any run):
- ``lr_x100``: lr 0.1 -> 10.0;
- ``zero_grad_noop``: ``optimizer_zero_grad`` overridden to do nothing;
- ``param_left_out``: ``configure_optimizers`` gives the optimizer the first layer only;
- ``shuffled_labels``: the labels permuted against the images.
"""

from __future__ import annotations

import warnings
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from _common import SEEDS, explicit, marked, plain_check
from sklearn.datasets import load_digits

FAULTS = ["healthy", "lr_x100", "zero_grad_noop", "param_left_out", "shuffled_labels"]
X, Y = load_digits(return_X_y=True)


class Digits(pl.LightningModule):  # type: ignore[misc]
    def __init__(self, fault: str) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                       torch.nn.Linear(32, 10))
        self.fault = fault
        self.losses: list[float] = []

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.losses.append(loss.item())
        return loss

    def configure_optimizers(self) -> Any:
        params = self.net[0].parameters() if self.fault == "param_left_out" else self.parameters()
        return torch.optim.SGD(params, lr=10.0 if self.fault == "lr_x100" else 0.1, momentum=0.9)

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: Any) -> None:
        if self.fault != "zero_grad_noop":
            super().optimizer_zero_grad(epoch, batch_idx, optimizer)


@marked
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fault", FAULTS)
def test_lightning(fault: str, seed: int, request: pytest.FixtureRequest) -> None:
    lt = explicit(request)
    x = torch.tensor(X / 16.0, dtype=torch.float32)
    y = torch.tensor(Y)
    g = torch.Generator().manual_seed(seed)
    if fault == "shuffled_labels":
        y = y[torch.randperm(len(y), generator=g)]
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32,
                                         shuffle=True, generator=g)
    torch.manual_seed(seed)
    module = Digits(fault)
    trainer = pl.Trainer(max_steps=40, enable_checkpointing=False, logger=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", devices=1,
                         callbacks=[lt.lightning_callback()] if lt is not None else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, loader)
    plain_check(module.losses)

"""``losstrend.lightning_callback()`` on a real Lightning 2.x fit: a tiny MLP on scikit-learn's
bundled digits, on the CPU, a few dozen optimizer steps each.

The module keeps the loss of every batch it computed in ``training_step``, so the recorded
series can be compared with the truth: one point per optimizer step, the mean of the batches
accumulated into it (Lightning hands the callback the loss divided by
``accumulate_grad_batches``).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pl = pytest.importorskip("lightning.pytorch")
datasets = pytest.importorskip("sklearn.datasets")

from pytest_losstrend import LossTrend  # noqa: E402
from pytest_losstrend.fixture import LossTrendStop  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def _loaders(shuffled_labels: bool = False, batch: int = 32) -> tuple[Any, Any]:
    """Digits scaled to [0, 1]: 1500 rows to train on, the rest to validate on."""
    x, y = datasets.load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.long)
    if shuffled_labels:
        y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))]
    train = torch.utils.data.TensorDataset(x[:1500], y[:1500])
    val = torch.utils.data.TensorDataset(x[1500:], y[1500:])
    g = torch.Generator().manual_seed(0)
    return (torch.utils.data.DataLoader(train, batch_size=batch, shuffle=True, generator=g),
            torch.utils.data.DataLoader(val, batch_size=256))


class Digits(pl.LightningModule):  # type: ignore[misc]
    """A 64-32-10 MLP; remembers each batch's training loss as it computed it."""

    def __init__(self, lr: float = 0.1) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                       torch.nn.Linear(32, 10))
        self.lr = lr
        self.batch_losses: list[float] = []

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.batch_losses.append(float(loss.detach()))
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def _fit(lt: LossTrend, module: Digits, *, steps: int = 40, shuffled: bool = False,
         **trainer_kwargs: Any) -> Any:
    torch.manual_seed(0)
    train, val = _loaders(shuffled)
    trainer = pl.Trainer(
        max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", devices=1,
        callbacks=[lt.lightning_callback()], num_sanity_val_steps=0, **trainer_kwargs,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, train, val)
    return trainer


def test_healthy_fit_passes_with_one_point_per_step() -> None:
    lt = LossTrend()
    module = Digits()
    _fit(lt, module, steps=40, val_check_interval=20)
    assert len(lt.losses()) == 40
    # Exact: each point is the loss the module computed for that step's batch.
    np.testing.assert_allclose(lt.losses(), module.batch_losses, rtol=1e-6)
    verdict = lt.check()
    assert verdict.ok, verdict.reason
    # The logged validation loss, once per validation run (the sanity check is not recorded).
    assert len(lt.losses("eval")) == 2
    assert lt.losses("eval")[-1] < math.log(10)


def test_gradients_are_watched_at_on_before_optimizer_step() -> None:
    lt = LossTrend()
    _fit(lt, Digits(), steps=30)
    lt.finish_watching()
    ev = lt.evidence
    assert ev is not None and ev.framework == "torch"
    assert ev.optimizer == "SGD"
    assert ev.optimizer_steps == 30
    assert ev.grad_norm and all(g > 0 and math.isfinite(g) for g in ev.grad_norm)
    assert ev.not_in_optimizer == []


def test_lr_times_100_fails() -> None:
    lt = LossTrend()
    _fit(lt, Digits(lr=10.0), steps=40)
    verdict = lt.check()
    assert not verdict.ok
    assert verdict.diagnoses, verdict.reason


def test_shuffled_labels_fail() -> None:
    lt = LossTrend()
    _fit(lt, Digits(), steps=40, shuffled=True)
    assert not lt.check().ok


def test_accumulate_grad_batches_records_the_true_step_loss() -> None:
    lt = LossTrend()
    module = Digits()
    trainer = _fit(lt, module, steps=20, accumulate_grad_batches=2)
    assert trainer.global_step == 20
    assert len(module.batch_losses) == 40
    pairs = np.asarray(module.batch_losses).reshape(20, 2).mean(axis=1)
    # Not halved (what Lightning hands the callback), and one point per optimizer step.
    np.testing.assert_allclose(lt.losses(), pairs, rtol=1e-6)


def test_fail_fast_stops_the_trainer() -> None:
    lt = LossTrend(fail_fast=True)
    module = Digits(lr=1e4)
    with pytest.raises(LossTrendStop) as info:
        _fit(lt, module, steps=200)
    # Stopped within a step of the loss leaving the bound, far short of max_steps.
    assert len(module.batch_losses) < 50
    assert len(lt.losses()) == len(module.batch_losses)
    assert "stopped" in str(info.value)
    assert not info.value.verdict.ok


def test_pytorch_lightning_import_name() -> None:
    pl_old = pytest.importorskip("pytorch_lightning")
    cb = LossTrend().lightning_callback()
    assert isinstance(cb, pl.Callback)
    assert isinstance(cb, pl_old.Callback)


INNER = '''
import pytest, torch, warnings
import lightning.pytorch as pl
from sklearn.datasets import load_digits


class Digits(pl.LightningModule):
    def __init__(self, lr):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                       torch.nn.Linear(32, 10))
        self.lr = lr
        self.batches = 0

    def training_step(self, batch, batch_idx):
        self.batches += 1
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def fit(losstrend, lr):
    x, y = load_digits(return_X_y=True)
    ds = torch.utils.data.TensorDataset(torch.tensor(x / 16.0, dtype=torch.float32),
                                        torch.tensor(y))
    loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True)
    module = Digits(lr)
    trainer = pl.Trainer(max_steps=40, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", callbacks=[losstrend.lightning_callback()])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            trainer.fit(module, loader)
        finally:
            open(f"batches_{lr}.txt", "w").write(str(module.batches))


@pytest.mark.loss_decreases
def test_healthy(losstrend):
    fit(losstrend, 0.1)


@pytest.mark.loss_decreases
def test_blows_up(losstrend):
    fit(losstrend, 1e4)
'''


def test_under_the_marker(pytester: pytest.Pytester) -> None:
    """End to end: the marker passes the healthy fit and fails the diverging one, stopped by
    ``trainer.should_stop`` well before ``max_steps``."""
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-W", "ignore")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "test_blows_up" in out and "the remaining steps were skipped" in out
    assert int((pytester.path / "batches_10000.0.txt").read_text()) < 40

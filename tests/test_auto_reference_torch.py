"""The marker alone gives an automatically captured torch loss its reference level when the
loss is certainly one built-in loss: real tiny models on scikit-learn data, run as an inner
test session and read back from the JSON report; the graph lookup itself on real losses."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import sklearn.datasets  # noqa: F401  (imported before pytester snapshots sys.modules)
import torch
import torch.nn.functional as F

from pytest_losstrend.capture.recorder import Recorder
from pytest_losstrend.capture.torch_loss_graph import ReferenceProbe, loss_of

INNER = '''
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_diabetes, load_digits

_x, _y = load_digits(return_X_y=True)
DX = torch.tensor(_x / 16.0, dtype=torch.float32)
DY = torch.tensor(_y)
_x, _y = load_diabetes(return_X_y=True)
RX = torch.tensor((_x - _x.mean(0)) / _x.std(0), dtype=torch.float32)
RY = torch.tensor((_y - _y.mean()) / _y.std(), dtype=torch.float32)[:, None]


def classify(noise=False, module=False, steps=80):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = torch.nn.CrossEntropyLoss() if module else F.cross_entropy
    for _ in range(steps):
        idx = torch.randint(0, len(DX), (64,))
        x = torch.randn(64, 64) if noise else DX[idx]  # noise: inputs that say nothing
        opt.zero_grad()
        loss_fn(model(x), DY[idx]).backward()
        opt.step()


def regress(extra=False):
    torch.manual_seed(0)
    model = torch.nn.Linear(10, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(60):
        idx = torch.randint(0, len(RX), (64,))
        out = model(RX[idx])
        loss = F.mse_loss(out, RY[idx])
        if extra:
            loss = loss + 0.1 * F.l1_loss(out, RY[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.loss_decreases
def test_classify():
    classify()


@pytest.mark.loss_decreases
def test_classify_module():
    classify(module=True)


@pytest.mark.loss_decreases
def test_learns_nothing():
    classify(noise=True)


@pytest.mark.loss_decreases
def test_regress():
    regress()


@pytest.mark.loss_decreases
def test_two_losses():
    regress(extra=True)
'''


LIGHTNING = '''
import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits


class Digits(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                       torch.nn.Linear(32, 10))

    def training_step(self, batch, i):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.loss_decreases
def test_shuffled():
    torch.manual_seed(0)
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)[torch.randperm(len(y))]
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64,
                                       shuffle=True)
    trainer = pl.Trainer(max_steps=40, enable_checkpointing=False, logger=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu")
    trainer.fit(Digits(), data)
'''


def _run(pytester: pytest.Pytester) -> tuple[Any, dict[str, Any]]:
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:xdist",
                                          "--losstrend-report=json:r.json")
    doc = json.loads((pytester.path / "r.json").read_text())
    return result, {t["nodeid"].split("::")[-1]: t for t in doc["tests"]}


def _reference(test: dict[str, Any]) -> dict[str, Any] | None:
    ref = test["series"]["train"].get("reference")
    return ref if isinstance(ref, dict) else None


def test_marker_alone_gives_the_reference_level(lt_pytester: pytest.Pytester) -> None:
    lt_pytester.makepyfile(test_inner=INNER)
    result, tests = _run(lt_pytester)
    out = result.stdout.str()

    # Digits: 10 nearly balanced classes, the entropy of the label frequencies is near ln 10.
    for name in ("test_classify", "test_classify_module"):
        ref = _reference(tests[name])
        assert ref is not None, (name, tests[name]["series"]["train"])
        assert abs(ref["value"] - math.log(10)) < 0.05, ref
        assert "entropy" in ref["how"], ref
        assert tests[name]["outcome"] == "passed", out

    # Inputs that carry nothing: the loss falls to the label entropy and stays there.
    nothing = tests["test_learns_nothing"]
    assert nothing["outcome"] == "failed", out
    assert nothing["verdict"]["kind"] == "chance_level", nothing["verdict"]

    # Standardized regression targets: the reference is their variance, near 1.
    ref = _reference(tests["test_regress"])
    assert ref is not None and 0.7 < ref["value"] < 1.3, ref
    assert "variance" in ref["how"], ref
    assert tests["test_regress"]["outcome"] == "passed", out

    # MSE plus L1: no loss alone produced the scalar, so no level at all.
    assert _reference(tests["test_two_losses"]) is None
    assert tests["test_two_losses"]["outcome"] == "passed", out


def _logits() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.randn(32, 5, requires_grad=True), torch.randint(0, 5, (32,))


@pytest.mark.parametrize("make", [
    lambda x, y: F.cross_entropy(x, y, label_smoothing=0.1),
    lambda x, y: F.cross_entropy(x, y, weight=torch.ones(5)),
    lambda x, y: F.cross_entropy(x, y, reduction="sum"),
    lambda x, y: F.cross_entropy(x, y) / 4,                    # accumulation's scaling
    lambda x, y: F.cross_entropy(x, y) / torch.tensor(2.0),
    F.nll_loss,                                                # not on log-probabilities
    lambda x, y: F.mse_loss(x, x.detach() * 0 + 1) + F.cross_entropy(x, y),
    lambda x, y: F.mse_loss(torch.ones(32, 5), x),             # the arguments swapped
    lambda x, y: F.binary_cross_entropy_with_logits(x, torch.ones(32, 5),
                                                    pos_weight=torch.ones(5)),
], ids=["label_smoothing", "weight", "sum", "scaled", "scaled_by_tensor", "nll_on_logits",
        "two_losses", "swapped", "pos_weight"])
def test_no_level_unless_certain(make: Any) -> None:
    x, y = _logits()
    assert loss_of(make(x, y)) is None


def test_the_loss_and_its_settings_are_read_from_the_graph() -> None:
    x, y = _logits()
    kind, targets = loss_of(F.cross_entropy(x, y, ignore_index=3))  # type: ignore[misc]
    assert kind == ("cross_entropy", (("ignore_index", 3),))
    assert targets.tolist() == y.tolist()
    kind, _ = loss_of(torch.nn.HuberLoss(delta=2.0)(x, torch.zeros(32, 5)))  # type: ignore[misc]
    assert kind == ("huber_loss", (("delta", 2.0),))


def test_a_division_by_one_keeps_the_loss() -> None:
    """Lightning divides each loss by ``accumulate_grad_batches`` (1 by default) before its
    backward: the value is unchanged, so the loss under it is still read."""
    x, y = _logits()
    kind, targets = loss_of(F.cross_entropy(x, y) / 1)  # type: ignore[misc]
    assert kind == ("cross_entropy", (("ignore_index", -100),))
    assert targets.tolist() == y.tolist()


def test_lightning_marker_alone_gets_the_reference(lt_pytester: pytest.Pytester) -> None:
    """A Lightning run on shuffled digits labels, with the marker alone, fails as no better
    than chance against the captured cross-entropy's reference level."""
    pytest.importorskip("lightning")
    lt_pytester.makepyfile(test_light=LIGHTNING)
    result = lt_pytester.runpytest_subprocess("--losstrend-report=json:r.json", "-p",
                                              "no:randomly")
    doc = json.loads((lt_pytester.path / "r.json").read_text(encoding="utf-8"))
    (test,) = doc["tests"]
    assert test["outcome"] == "failed", result.stdout.str()[-2000:]
    assert test["series"]["train"]["reference"]["value"] > 2.2
    assert test["verdict"]["kind"] == "chance_level", test["verdict"]


def test_different_losses_in_the_first_steps_give_no_level() -> None:
    x, y = _logits()
    probe = ReferenceProbe()
    probe.look(F.cross_entropy(x, y))
    probe.look(F.mse_loss(x, torch.zeros(32, 5)))
    rec = Recorder()
    probe.offer(rec)
    assert rec.references == {}

    probe = ReferenceProbe()
    for _ in range(3):
        probe.look(F.cross_entropy(x, y))
    probe.offer(rec)
    assert rec.references["train"].value == pytest.approx(
        -sum(p * math.log(p) for p in (torch.bincount(y) / 32).tolist() if p), abs=1e-6)
    assert rec.reference_source("train", rec.references["train"]) == (
        "the 96 targets of the first 3 cross_entropy losses captured")

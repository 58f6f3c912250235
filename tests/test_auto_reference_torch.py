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


# -- a sum divided by its count: the mean, written out (the Hugging Face causal-LM loss) -------

HF_TRAINER = '''
import os
import warnings

import pytest
import torch
import transformers

os.environ.setdefault("HF_HUB_OFFLINE", "1")
VOCAB, LENGTH = 32, 12


class Unrelated(torch.utils.data.Dataset):
    """Token sequences whose labels are other, random sequences: nothing to learn."""

    def __init__(self, n=64):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, VOCAB, (n, LENGTH), generator=g)
        self.labels = torch.randint(0, VOCAB, (n, LENGTH), generator=g)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def train(accumulation):
    torch.manual_seed(0)
    # A *ForCausalLM class: the Trainer counts the shifted labels, so num_items_in_batch is
    # exactly the number of targets the summed cross-entropy adds up.
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=LENGTH))
    args = transformers.TrainingArguments(
        output_dir="out", max_steps=10, learning_rate=5e-3, per_device_train_batch_size=8,
        gradient_accumulation_steps=accumulation, logging_steps=1, report_to=[],
        use_cpu=True, save_strategy="no", disable_tqdm=True, seed=0,
        lr_scheduler_type="constant", warmup_steps=0)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Unrelated())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train()


@pytest.mark.loss_decreases
def test_trainer():
    train(1)


@pytest.mark.loss_decreases
def test_trainer_accumulating():
    train(2)
'''


def _hf_logits() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    logits = torch.randn(4, 6, 7, requires_grad=True)
    labels = torch.randint(0, 7, (4, 6))
    labels[0, :2] = -100  # padding, left out of the loss and of its count
    return logits, labels


def test_hf_causal_lm_loss_over_its_count_is_the_mean() -> None:
    """Transformers' causal-LM loss sums the cross-entropy and divides by the Trainer's
    ``num_items_in_batch``; when that is the count of the (shifted) targets not ignored, the
    scalar is the mean cross-entropy and is read as such."""
    loss_utils = pytest.importorskip("transformers.loss.loss_utils")
    logits, labels = _hf_logits()
    counted = labels[..., 1:].ne(-100).sum()
    loss = loss_utils.ForCausalLMLoss(logits, labels, vocab_size=7, num_items_in_batch=counted)
    assert loss.item() == pytest.approx(loss_utils.ForCausalLMLoss(logits, labels, 7).item(),
                                        rel=1e-5)
    found = loss_of(loss)
    assert found is not None
    kind, targets = found
    assert kind == ("cross_entropy", (("ignore_index", -100),))
    assert (targets != -100).sum() == int(counted)

    # Any other divisor is a scaled loss: the unshifted labels' count (one more per row), a
    # count over two accumulated batches, a count off by one.
    for divisor in (labels.ne(-100).sum(), 2 * counted, counted + 1):
        scaled = loss_utils.ForCausalLMLoss(logits, labels, vocab_size=7,
                                            num_items_in_batch=divisor)
        assert loss_of(scaled) is None, int(divisor)


@pytest.mark.parametrize(("make", "mean"), [
    (lambda x, y, t: F.cross_entropy(x, y, reduction="sum") / 32,
     lambda x, y, t: F.cross_entropy(x, y)),
    (lambda x, y, t: F.cross_entropy(x, y, reduction="sum") / torch.tensor(32.0) * 1 / 1,
     lambda x, y, t: F.cross_entropy(x, y)),
    (lambda x, y, t: F.mse_loss(x, t, reduction="sum") / 160,
     lambda x, y, t: F.mse_loss(x, t)),
    (lambda x, y, t: F.huber_loss(x, t, reduction="sum", delta=2.0) / 160,
     lambda x, y, t: F.huber_loss(x, t, delta=2.0)),
    (lambda x, y, t: F.binary_cross_entropy_with_logits(x, t.sigmoid(), reduction="sum") / 160,
     lambda x, y, t: F.binary_cross_entropy_with_logits(x, t.sigmoid())),
], ids=["ce", "ce_tensor_unit_factors", "mse", "huber", "bce_with_logits"])
def test_a_sum_over_its_count_is_the_mean(make: Any, mean: Any) -> None:
    """Divided by the number of terms it adds up, a summed loss is read as its mean: the same
    loss, settings and targets."""
    x, y = _logits()
    t = torch.randn(32, 5)
    summed, averaged = make(x, y, t), mean(x, y, t)
    assert summed.item() == pytest.approx(averaged.item(), rel=1e-5)
    found, expected = loss_of(summed), loss_of(averaged)
    assert found is not None and expected is not None
    assert found[0] == expected[0]
    assert found[1].tolist() == expected[1].tolist()


@pytest.mark.parametrize("make", [
    lambda x, y, t: F.cross_entropy(x, y, reduction="sum"),           # a sum, not divided
    lambda x, y, t: F.cross_entropy(x, y, reduction="sum") / 64,       # accumulation over two
    lambda x, y, t: F.cross_entropy(x, y, reduction="sum") / 32 / 2,   # ...or divided after
    lambda x, y, t: F.cross_entropy(x, y, reduction="sum") / 31,
    lambda x, y, t: F.cross_entropy(x, y) / 32,                        # a mean divided again
    lambda x, y, t: F.mse_loss(x, t, reduction="sum") / 32,            # rows, not elements
    lambda x, y, t: (F.mse_loss(x, t, reduction="sum") + F.l1_loss(x, t, reduction="sum")) / 160,
    lambda x, y, t: F.cross_entropy(x, y, reduction="sum") / torch.tensor(32.0,
                                                                        requires_grad=True),
], ids=["sum", "accumulated_count", "divided_after", "off_by_one", "mean_over_count",
        "mse_over_rows", "two_losses", "learned_divisor"])
def test_a_sum_over_anything_else_gives_no_level(make: Any) -> None:
    x, y = _logits()
    assert loss_of(make(x, y, torch.randn(32, 5))) is None


def test_ignored_targets_are_not_counted() -> None:
    x, y = _logits()
    y[:4] = -100
    summed = F.cross_entropy(x, y, reduction="sum")
    assert loss_of(summed / 28) is not None
    assert loss_of(summed / 32) is None


def test_hf_trainer_marker_alone_gets_the_reference(lt_pytester: pytest.Pytester) -> None:
    """The marker alone on a Hugging Face ``Trainer`` whose labels are unrelated to the inputs:
    the captured causal-LM loss (a sum over ``num_items_in_batch``) gets the reference level,
    the entropy of the label frequencies (near ln 32); with gradient accumulation each scalar
    is a share of the step's loss, and no level is given."""
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    lt_pytester.makepyfile(test_hf_inner=HF_TRAINER)
    result = lt_pytester.runpytest_subprocess("--losstrend-report=json:r.json", "-p",
                                              "no:randomly", "-p", "no:cacheprovider")
    doc = json.loads((lt_pytester.path / "r.json").read_text(encoding="utf-8"))
    tests = {t["nodeid"].split("::")[-1]: t for t in doc["tests"]}
    out = result.stdout.str()[-3000:]

    ref = _reference(tests["test_trainer"])
    assert ref is not None, (tests["test_trainer"]["series"]["train"], out)
    assert 3.2 < ref["value"] < math.log(32) + 1e-9, ref
    assert "entropy" in ref["how"], ref
    assert tests["test_trainer"]["verdict"]["kind"] == "chance_level", tests["test_trainer"]

    assert _reference(tests["test_trainer_accumulating"]) is None, out

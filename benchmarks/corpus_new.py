"""Grow the corpus (issue 11): real PyTorch training runs in architectures and features the
first corpus (``benchmarks/corpus.py``) lacks, healthy and broken, labelled from their
configuration before any verdict is run.

Every curve comes from a real training loop on CPU (one thread): small MLPs, GRU/LSTM and a
TransformerEncoder on scikit-learn's bundled data (digits, diabetes, breast cancer) or small
synthetic sequence / regression problems.  The broken runs are broken by construction (labels
shuffled, ``backward()`` without ``step()``, weights x100 at init, ...), whatever their curve
looks like; the labels (``family``, ``broken``) are data in :data:`CONFIGS`, each with a
one-line reason, and are never changed after a verdict.

Usage::

    python benchmarks/corpus_new.py [--seeds 10] [--only SUBSTRING] [--out benchmarks/corpus_new]

Output: ``benchmarks/corpus_new/torch.json`` in the corpus format of ``benchmarks/corpus.py``
(``{"schema": "losstrend-corpus/1", "runs": [...]}``; see that module's docstring), each run
with two more fields:

- ``"broken"``: what was broken, one phrase from the configuration (``null`` when healthy);
- ``"reference"``: the loss of the best constant predictor on the training targets, computed
  from the data before training: the entropy of the label frequencies (cross-entropy), H(p)
  (binary cross-entropy), the variance of the targets (MSE), the mean absolute deviation from
  the median (L1), and for the Gaussian NLL (``torch.nn.GaussianNLLLoss``, ``full=False``)
  ``0.5 * (log var + 1)``, the loss of predicting the mean and the variance of the targets.

``mode`` holds the configuration's short name for a broken run (``null`` when healthy), not a
curve shape: the runs are labelled by what was done to them, not by what their curve did.
``series.train`` is the
mini-batch loss of every optimizer step, computed before the update (``record == "step"``),
or the mean of the epoch's mini-batch losses (``record == "epoch"``, with ``series.eval``,
the held-out loss after each epoch).  ``full_train_loss`` is the loss on the whole training
set (model in eval mode) before the first and after the last step.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# The file format, its rounding and its atomic writer are the calibration corpus's.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import round6, write_corpus

DEFAULT_OUT = Path(__file__).resolve().parent / "corpus_new"

# ---------------------------------------------------------------------------------------------
# Data: (x_train, y_train, x_eval, y_eval); classes as int64, the rest float32
# ---------------------------------------------------------------------------------------------

#: task -> loss it is trained with (the reference depends on it)
TASK_LOSS = {
    "digits": "ce", "digits30": "ce", "cancer": "bce", "diabetes": "mse", "diabetes_l1": "l1",
    "seq_reg": "mse", "seq_cls": "ce", "tok_major": "ce", "hetero": "gnll", "tiny_floor": "mse",
    "diabetes_rowid": "mse",
}


@functools.cache
def _sklearn(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    bunch = {"digits": datasets.load_digits, "diabetes": datasets.load_diabetes,
             "cancer": datasets.load_breast_cancer}[name]()
    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target)


def _std(train: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, sd = train.mean(axis=0), train.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    return (train - mean) / sd, (other - mean) / sd


def load(task: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The train/eval split of ``task`` for ``seed`` (75/25 for the real data sets)."""
    rng = np.random.default_rng(20_000 + seed)
    base = task.split("_", maxsplit=1)[0].removesuffix("30")
    if base in ("digits", "diabetes", "cancer"):
        x, y = _sklearn(base)
        perm = rng.permutation(len(x))
        if task == "digits30":
            tr, ev = perm[:30], perm[30:530]
        else:
            cut = int(0.75 * len(x))
            tr, ev = perm[:cut], perm[cut:]
        xt, xe, yt, ye = x[tr], x[ev], y[tr].astype(np.float64), y[ev].astype(np.float64)
        if base == "digits":
            xt, xe = xt / 16.0, xe / 16.0
        else:
            xt, xe = _std(xt, xe)
        if task == "diabetes_rowid":
            # The bug: the target column is the row id of the (shuffled) file, not the outcome.
            yt, ye = tr.astype(np.float64), ev.astype(np.float64)
        if TASK_LOSS[task] in ("mse", "l1"):
            yt, ye = _std(yt, ye)
        if TASK_LOSS[task] == "ce":
            return xt.astype(np.float32), yt.astype(np.int64), xe.astype(np.float32), \
                ye.astype(np.int64)
        return (xt.astype(np.float32), yt.astype(np.float32)[:, None], xe.astype(np.float32),
                ye.astype(np.float32)[:, None])
    n = 640
    if task == "seq_reg":  # y = 3 * mean over 12 steps of channel 0 (+ small noise)
        x = rng.standard_normal((n, 12, 2))
        y = (3.0 * x[:, :, 0].mean(axis=1) + 0.1 * rng.standard_normal(n))[:, None]
    elif task == "seq_cls":  # 4 channels; the class is the channel with the largest sum
        x = rng.standard_normal((n, 12, 4)) + 0.3 * rng.standard_normal((n, 1, 4))
        y = x.sum(axis=1).argmax(axis=1)
    elif task == "tok_major":  # 12 tokens of 6; class = most frequent of tokens {0, 1, 2}
        w = rng.dirichlet(np.ones(6) * 0.7, size=n)
        x = np.stack([rng.choice(6, size=12, p=p) for p in w])
        counts = np.stack([(x == k).sum(axis=1) for k in range(3)], axis=1)
        y = (counts + 0.1 * np.arange(3)[::-1]).argmax(axis=1)
        return x[:512].astype(np.int64), y[:512].astype(np.int64), x[512:].astype(np.int64), \
            y[512:].astype(np.int64)
    elif task == "hetero":  # y = sin(x0) + 0.5 x1 + N(0, (0.02 (1 + |x2|))^2)
        x = rng.standard_normal((n, 4))
        sd = 0.02 * (1.0 + np.abs(x[:, 2]))
        y = (np.sin(x[:, 0]) + 0.5 * x[:, 1] + sd * rng.standard_normal(n))[:, None]
    elif task == "tiny_floor":  # noiseless-ish linear target: the MSE floor is 1e-6
        x = rng.standard_normal((n, 8))
        y = (x @ rng.standard_normal(8) / math.sqrt(8) + 1e-3 * rng.standard_normal(n))[:, None]
    else:
        raise ValueError(task)
    if TASK_LOSS[task] == "ce":
        return x[:512].astype(np.float32), y[:512].astype(np.int64), x[512:].astype(np.float32), \
            y[512:].astype(np.int64)
    return (x[:512].astype(np.float32), y[:512].astype(np.float32), x[512:].astype(np.float32),
            y[512:].astype(np.float32))


def reference(loss: str, y: np.ndarray) -> float:
    """The loss of the best constant predictor on the training targets ``y``."""
    if loss == "ce":
        p = np.bincount(y) / len(y)
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())
    y = y.astype(np.float64).ravel()
    if loss == "bce":
        p = y.mean()
        return float(-(p * math.log(p) + (1 - p) * math.log(1 - p))) if 0 < p < 1 else 0.0
    if loss == "mse":
        return float(y.var())
    if loss == "l1":
        return float(np.abs(y - np.median(y)).mean())
    if loss == "gnll":
        return float(0.5 * (math.log(y.var()) + 1.0))
    raise ValueError(loss)


# ---------------------------------------------------------------------------------------------
# Configurations: labels are data, fixed here before any verdict is run
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cfg:
    """One configuration, run once per seed.

    ``family``/``broken``/``why`` are the label and its reason (from the configuration only);
    ``fault`` is the key the training loop acts on.  ``steps`` counts optimizer steps
    (``record == "step"``) or epochs (``record == "epoch"``).
    """

    name: str
    family: str
    broken: str | None
    why: str
    task: str
    model: str
    opt: str
    lr: float
    batch: int | None
    steps: int
    record: str = "step"
    judge: str = "train"
    fault: str | None = None
    sched: str | None = None
    accum: int = 1
    hidden: int = 64
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> str:
        """The run's configuration name in the corpus."""
        batch = "full" if self.batch is None else f"b{self.batch}"
        length = f"s{self.steps}" if self.record == "step" else f"e{self.steps}"
        return f"torch/{self.model}_{self.task}/{self.opt}/{batch}/{length}/per_{self.record}/" \
            f"{self.name}"


H = functools.partial(Cfg, family="healthy", broken=None)
B = functools.partial(Cfg, family="bad")

# fmt: off
CONFIGS: list[Cfg] = [
    # ------------------------------------------------------------------ healthy
    H("gru_seq", why="a GRU fits a mean-of-sequence regression with Adam at a standard lr",
      task="seq_reg", model="gru", opt="adam", lr=1e-2, batch=32, steps=150),
    H("lstm_seq", why="an LSTM learns which channel has the largest sum (4 classes)",
      task="seq_cls", model="lstm", opt="adam", lr=1e-2, batch=32, steps=150),
    H("attn_tokens", why="a 1-layer TransformerEncoder counts tokens; Adam 3e-3, no fault",
      task="tok_major", model="attn", opt="adam", lr=3e-3, batch=32, steps=200),
    H("attn_warmup", why="TransformerEncoder with a 20-step linear warm-up to Adam 1e-2",
      task="tok_major", model="attn", opt="adam", lr=1e-2, batch=32, steps=200, sched="warmup20"),
    H("bn_b4", why="BatchNorm1d MLP at batch 4 (noisy batch statistics), SGD+momentum 0.02",
      task="digits", model="mlp_bn", opt="sgdm", lr=0.02, batch=4, steps=200),
    H("bn_b8_cancer", why="BatchNorm1d MLP at batch 8 on breast cancer, Adam 1e-3",
      task="cancer", model="mlp_bn", opt="adam", lr=1e-3, batch=8, steps=150),
    H("layernorm", why="LayerNorm MLP on digits, Adam 1e-3",
      task="digits", model="mlp_ln", opt="adam", lr=1e-3, batch=32, steps=150),
    H("dropout05", why="dropout 0.5 MLP (train-mode loss is noisy), Adam 1e-3",
      task="digits", model="mlp_drop", opt="adam", lr=1e-3, batch=32, steps=200),
    H("grad_accum4", why="4 micro-batches of 8 per step, loss/4, zero_grad after step",
      task="digits", model="mlp", opt="sgdm", lr=0.05, batch=32, steps=100, accum=4),
    H("warmup_linear", why="linear warm-up over 50 of 150 steps (flat start), Adam 2e-3",
      task="digits", model="mlp", opt="adam", lr=2e-3, batch=32, steps=150, sched="warmup50"),
    H("onecycle", why="OneCycleLR (max 0.05) stepped per batch as documented",
      task="diabetes", model="mlp", opt="sgdm", lr=0.05, batch=32, steps=150, sched="onecycle"),
    H("cosine", why="cosine decay to 0 over the run, stepped per batch",
      task="cancer", model="mlp", opt="sgd", lr=0.1, batch=16, steps=150, sched="cosine"),
    H("gauss_nll", why="a mean/log-variance head under GaussianNLLLoss: the loss goes negative",
      task="hetero", model="mlp_gauss", opt="adam", lr=3e-3, batch=32, steps=300),
    H("floor_1e-6", why="linear regression whose noise floor is 1e-6; SGD converges to it",
      task="tiny_floor", model="linear", opt="sgd", lr=0.1, batch=32, steps=150),
    H("l1_diabetes", why="L1 regression on diabetes with Adam",
      task="diabetes_l1", model="mlp", opt="adam", lr=3e-3, batch=32, steps=150),
    H("finetune20", why="a pretrained model fine-tuned 20 steps at a small lr: a 7% real drop",
      task="digits", model="mlp", opt="sgd", lr=0.03, batch=32, steps=20, fault="pretrained"),
    H("epochs8", why="one point per epoch, 8 epochs of a correct MLP on digits",
      task="digits", model="mlp", opt="adam", lr=1e-3, batch=32, steps=8, record="epoch"),
    H("epochs5_lstm", why="one point per epoch, 5 epochs of a correct LSTM",
      task="seq_cls", model="lstm", opt="adam", lr=1e-2, batch=32, steps=5, record="epoch"),
    H("epochs6_gru_b8", why="one point per epoch, 6 epochs of a GRU, batch 8",
      task="seq_reg", model="gru", opt="adam", lr=3e-3, batch=8, steps=6, record="epoch"),
    H("short3", why="3 full-batch steps of a correct linear model at a good lr",
      task="diabetes", model="linear", opt="sgd", lr=0.1, batch=None, steps=3),
    H("short5_digits", why="5 full-batch Adam steps of a correct MLP",
      task="digits", model="mlp", opt="adam", lr=1e-2, batch=None, steps=5),
    H("short2_cancer", why="2 full-batch steps of a correct logistic regression",
      task="cancer", model="linear", opt="sgd", lr=1.0, batch=None, steps=2),
    # ------------------------------------------------------------------ broken
    B("lr_blowup_dead", broken="lr far above the stability limit (Adam lr 3)",
      why="the first steps blow up (loss ~1e3) and kill the ReLUs; the run ends at chance",
      task="digits", model="mlp", opt="adam", lr=3.0, batch=32, steps=150),
    B("lr_blowup_sgd", broken="lr far above the stability limit (SGD lr 3)",
      why="SGD at lr 3 on digits: early spikes, then dead ReLUs near chance",
      task="digits", model="mlp", opt="sgd", lr=3.0, batch=32, steps=150),
    B("attn_lr_high", broken="Adam lr 0.3 on a TransformerEncoder, no warm-up",
      why="a transformer at lr 0.3 is far above any stable lr",
      task="tok_major", model="attn", opt="adam", lr=0.3, batch=32, steps=150),
    B("gru_lr_high", broken="SGD lr 20 on a GRU, no gradient clipping",
      why="recurrent gradients at lr 20 explode",
      task="seq_reg", model="gru", opt="sgd", lr=20.0, batch=32, steps=150),
    B("labels_shuffled", broken="labels shuffled (no signal)",
      why="the labels are a permutation independent of the inputs: nothing to learn",
      task="digits", model="mlp", opt="adam", lr=1e-3, batch=32, steps=150, fault="shuffle"),
    B("labels_shuffled_cancer", broken="labels shuffled (no signal)",
      why="the labels are a permutation independent of the inputs: nothing to learn",
      task="cancer", model="mlp", opt="adam", lr=1e-3, batch=32, steps=150, fault="shuffle"),
    B("labels_shuffled_lstm", broken="labels shuffled (no signal)",
      why="the sequence labels are permuted: nothing to learn",
      task="seq_cls", model="lstm", opt="adam", lr=1e-2, batch=32, steps=150, fault="shuffle"),
    B("wrong_target_rowid", broken="wrong target column (row id)",
      why="the target is the row id of the file, unrelated to the features",
      task="diabetes_rowid", model="mlp", opt="adam", lr=3e-3, batch=32, steps=150),
    B("init_x100", broken="weights x100 at init",
      why="every weight is scaled x100 after the default init",
      task="digits", model="mlp", opt="adam", lr=1e-3, batch=32, steps=150, fault="init_x100"),
    B("init_x100_lstm", broken="weights x100 at init",
      why="every LSTM/head weight is scaled x100 after the default init",
      task="seq_cls", model="lstm", opt="adam", lr=1e-2, batch=32, steps=150,
      fault="init_x100"),
    B("zero_init", broken="zero init of a ReLU MLP (no symmetry breaking)",
      why="all weights and biases zero: the hidden layer gets no gradient, only the output bias",
      task="digits", model="mlp", opt="sgdm", lr=0.05, batch=32, steps=150, fault="zero_init"),
    B("zero_init_cancer", broken="zero init of a ReLU MLP (no symmetry breaking)",
      why="all weights and biases zero: only the output bias can move",
      task="cancer", model="mlp", opt="adam", lr=1e-2, batch=32, steps=150, fault="zero_init"),
    B("no_step", broken="loss.backward() but no optimizer.step()",
      why="the parameters never change",
      task="digits", model="mlp", opt="adam", lr=1e-3, batch=32, steps=150, fault="no_step"),
    B("no_step_gru", broken="loss.backward() but no optimizer.step()",
      why="the parameters never change",
      task="seq_reg", model="gru", opt="adam", lr=1e-2, batch=32, steps=150, fault="no_step"),
    B("no_zero_grad", broken="gradients never zeroed",
      why="every step applies the sum of all past gradients (SGD+momentum 0.01)",
      task="digits", model="mlp", opt="sgdm", lr=0.01, batch=32, steps=150, fault="no_zero_grad"),
    B("no_zero_grad_cancer", broken="gradients never zeroed",
      why="every step applies the sum of all past gradients (SGD 0.05)",
      task="cancer", model="mlp", opt="sgd", lr=0.05, batch=32, steps=150,
      fault="no_zero_grad"),
    B("steplr_per_batch", broken="per-epoch StepLR(step_size=2, gamma=0.1) stepped per batch",
      why="the lr falls 10x every 2 batches: it collapses to ~0 within 20 steps",
      task="digits", model="mlp", opt="sgdm", lr=0.05, batch=32, steps=150, sched="steplr_batch"),
    B("warmup_never_ends", broken="warm-up over 100000 steps in a 150-step run",
      why="the lr stays below 1.5e-3 of its base for the whole run",
      task="digits", model="mlp", opt="sgd", lr=0.05, batch=32, steps=150, sched="warmup100000"),
    B("frozen_body_bias", broken="frozen body, only the output bias trainable",
      why="the only trainable parameter is the last bias: at best the label prior",
      task="digits", model="mlp", opt="adam", lr=1e-2, batch=32, steps=150, fault="bias_only"),
    B("shape_broadcast", broken="prediction (N,1) against target (N,) in MSE (broadcast)",
      why="the loss compares every prediction with every target: the best is the mean",
      task="diabetes", model="mlp", opt="adam", lr=3e-3, batch=32, steps=150,
      fault="broadcast"),
    B("overfit_eval", broken="30 training samples, 256 hidden units, judged on eval",
      why="a big model memorises 30 digits: the held-out loss climbs",
      task="digits30", model="mlp", opt="adam", lr=3e-3, batch=None, steps=150, record="epoch",
      judge="eval", hidden=256),
    B("double_softmax", broken="softmax applied before CrossEntropyLoss (double softmax)",
      why="log-softmax of probabilities in [0, 1]: the loss cannot fall below ~1.46",
      task="digits", model="mlp", opt="adam", lr=1e-3, batch=32, steps=150,
      fault="double_softmax"),
    B("detached_rnn", broken="LSTM output .detach()-ed before the head",
      why="only the linear head trains, on random recurrent features",
      task="seq_cls", model="lstm", opt="adam", lr=1e-2, batch=32, steps=150, fault="detach"),
    B("epochs6_no_step", broken="loss.backward() but no optimizer.step()",
      why="the parameters never change; one point per epoch",
      task="digits", model="mlp", opt="adam", lr=1e-3, batch=32, steps=6, record="epoch",
      fault="no_step"),
    B("epochs5_shuffled", broken="labels shuffled (no signal)",
      why="labels permuted; one point per epoch", task="digits", model="mlp", opt="adam",
      lr=1e-3, batch=32, steps=5, record="epoch", fault="shuffle"),
    B("short3_no_step", broken="loss.backward() but no optimizer.step()",
      why="3 full-batch steps whose parameters never change",
      task="diabetes", model="linear", opt="sgd", lr=0.3, batch=None, steps=3, fault="no_step"),
    B("short5_zero_init", broken="zero init of a ReLU MLP (no symmetry breaking)",
      why="5 full-batch steps of an all-zero MLP",
      task="digits", model="mlp", opt="adam", lr=1e-2, batch=None, steps=5, fault="zero_init"),
    B("finetune_frozen", broken="fine-tuning with every parameter requires_grad=False",
      why="a pretrained model whose weights are all frozen; 20 steps move nothing",
      task="digits", model="mlp", opt="sgd", lr=0.03, batch=32, steps=20,
      fault="pretrained_frozen"),
]
# fmt: on


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


def build_model(cfg: Cfg, n_in: int, n_out: int) -> Any:
    """The torch module of ``cfg`` (``n_in`` features or channels, ``n_out`` outputs)."""
    import torch
    from torch import nn

    h = cfg.hidden
    if cfg.model == "linear":
        return nn.Linear(n_in, n_out)
    if cfg.model == "mlp":
        return nn.Sequential(nn.Linear(n_in, h), nn.ReLU(), nn.Linear(h, n_out))
    if cfg.model == "mlp_bn":
        return nn.Sequential(nn.Linear(n_in, h), nn.BatchNorm1d(h), nn.ReLU(), nn.Linear(h, n_out))
    if cfg.model == "mlp_ln":
        return nn.Sequential(nn.Linear(n_in, h), nn.LayerNorm(h), nn.ReLU(), nn.Linear(h, n_out))
    if cfg.model == "mlp_drop":
        return nn.Sequential(nn.Linear(n_in, 128), nn.ReLU(), nn.Dropout(0.5),
                             nn.Linear(128, n_out))
    if cfg.model == "mlp_gauss":
        return nn.Sequential(nn.Linear(n_in, h), nn.Tanh(), nn.Linear(h, 2))

    class Rnn(nn.Module):
        def __init__(self, cell: type[nn.Module]) -> None:
            super().__init__()
            self.rnn = cell(n_in, 32, batch_first=True)
            self.head = nn.Linear(32, n_out)
            self.detach = cfg.fault == "detach"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.rnn(x)
            last = out[:, -1]
            return self.head(last.detach() if self.detach else last)

    if cfg.model in ("gru", "lstm"):
        return Rnn(nn.GRU if cfg.model == "gru" else nn.LSTM)

    class Attn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(6, 16)
            self.pos = nn.Parameter(0.1 * torch.randn(12, 16))
            self.enc = nn.TransformerEncoder(
                nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0,
                                           batch_first=True), 1, enable_nested_tensor=False)
            self.head = nn.Linear(16, n_out)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.enc(self.emb(x) + self.pos).mean(dim=1))

    if cfg.model == "attn":
        return Attn()
    raise ValueError(cfg.model)


def _loss_fn(kind: str, fault: str | None) -> Callable[[Any, Any], Any]:
    import torch
    from torch import nn

    if kind == "ce":
        ce = nn.CrossEntropyLoss()
        if fault == "double_softmax":
            return lambda out, y: ce(torch.softmax(out, dim=1), y)
        return ce
    if kind == "bce":
        return nn.BCEWithLogitsLoss()
    if kind == "mse":
        mse = nn.MSELoss()
        if fault == "broadcast":
            return lambda out, y: mse(out, y.view(-1))  # (N,1) against (N,): N x N pairs
        return mse
    if kind == "l1":
        return nn.L1Loss()
    if kind == "gnll":
        g = nn.GaussianNLLLoss()
        return lambda out, y: g(out[:, :1], y, torch.exp(out[:, 1:]))
    raise ValueError(kind)


def _optimizer(cfg: Cfg, params: Any) -> Any:
    import torch

    if cfg.opt == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr)
    if cfg.opt == "sgdm":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9)
    if cfg.opt == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    raise ValueError(cfg.opt)


def _scheduler(cfg: Cfg, opt: Any, total: int) -> Any:
    import torch

    s = cfg.sched
    if s is None:
        return None
    if s.startswith("warmup"):
        n = int(s.removeprefix("warmup"))
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / n))
    if s == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total)
    if s == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    if s == "steplr_batch":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
    raise ValueError(s)


OPT_LABEL = {"sgd": "sgd", "sgdm": "sgd_momentum0.9", "adam": "adam"}


def run(cfg: Cfg, seed: int) -> dict[str, Any]:
    """Train ``cfg`` at ``seed`` and return its corpus record."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(30_000 + seed)
    xt, yt, xe, ye = load(cfg.task, seed)
    kind = TASK_LOSS[cfg.task]
    if cfg.fault == "shuffle":
        yt = yt[rng.permutation(len(yt))]
        ye = ye[rng.permutation(len(ye))]
    ref = reference(kind, yt)
    n_out = int(yt.max()) + 1 if kind == "ce" else 1
    n_in = xt.shape[-1] if cfg.model != "attn" else 6
    model = build_model(cfg, n_in, n_out)
    loss_fn = _loss_fn(kind, cfg.fault)
    xt_t, yt_t, xe_t, ye_t = (torch.from_numpy(a) for a in (xt, yt, xe, ye))

    def full(x: Any, y: Any) -> float:
        model.eval()
        with torch.no_grad():
            value = float(loss_fn(model(x), y))
        model.train()
        return value

    if cfg.fault in ("pretrained", "pretrained_frozen"):
        # "Pretrained-ish": 150 Adam steps on the same task, then a fresh optimizer.
        pre = torch.optim.Adam(model.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(seed)
        for _ in range(150):
            idx = torch.randint(0, len(xt_t), (32,), generator=g)
            pre.zero_grad()
            loss_fn(model(xt_t[idx]), yt_t[idx]).backward()
            pre.step()
        if cfg.fault == "pretrained_frozen":
            for p in model.parameters():
                p.requires_grad_(False)
    with torch.no_grad():
        if cfg.fault == "init_x100":
            for name, p in model.named_parameters():
                if "weight" in name:
                    p.mul_(100.0)
        elif cfg.fault == "zero_init":
            for p in model.parameters():
                p.zero_()
    if cfg.fault == "bias_only":
        params = list(model.parameters())
        for p in params[:-1]:
            p.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = _optimizer(cfg, trainable or [torch.zeros(1, requires_grad=True)])
    n = len(xt_t)
    batch = n if cfg.batch is None else cfg.batch
    steps_per_epoch = math.ceil(n / (batch * cfg.accum))
    total = cfg.steps * steps_per_epoch if cfg.record == "epoch" else cfg.steps
    sched = _scheduler(cfg, opt, total)
    before = full(xt_t, yt_t)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g)
    cursor = 0

    def next_batch() -> tuple[Any, Any]:
        nonlocal order, cursor
        if cursor + batch > n:
            order, cursor = torch.randperm(n, generator=g), 0
        idx = order[cursor:cursor + batch]
        cursor += batch
        return xt_t[idx], yt_t[idx]

    losses: list[float] = []
    evals: list[float | str] = []
    for k in range(total):
        if cfg.fault != "no_zero_grad":
            opt.zero_grad()
        step_loss = 0.0
        for _ in range(cfg.accum):
            xb, yb = next_batch()
            loss = loss_fn(model(xb), yb)
            if loss.requires_grad:
                (loss / cfg.accum).backward()
            step_loss += float(loss.detach()) / cfg.accum
        losses.append(step_loss)
        if cfg.fault != "no_step":
            opt.step()
        if sched is not None:
            sched.step()
        if cfg.record == "epoch" and (k + 1) % steps_per_epoch == 0:
            evals.append(round6(full(xe_t, ye_t)))
    series: dict[str, list[float | str]]
    if cfg.record == "epoch":
        per = [losses[i:i + steps_per_epoch] for i in range(0, total, steps_per_epoch)]
        series = {"train": [round6(sum(p) / len(p)) for p in per], "eval": evals}
    else:
        series = {"train": [round6(v) for v in losses]}
    return {
        "config": cfg.config, "family": cfg.family,
        "mode": cfg.name if cfg.family == "bad" else None, "judge": cfg.judge,
        "framework": "torch", "optimizer": OPT_LABEL[cfg.opt],
        "lr": cfg.lr, "batch_size": batch, "record": cfg.record, "seed": seed,
        "steps_per_epoch": steps_per_epoch,
        "series": series, "full_train_loss": [round6(before), round6(full(xt_t, yt_t))],
        "broken": cfg.broken, "reference": round6(ref),
    }


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def summarise(runs: list[dict[str, Any]]) -> str:
    """Medians over seeds of the judged series' first/last value, the reference, and how
    many seeds' full-training-set loss fell below 0.9x its start."""
    def med(xs: list[float]) -> str:
        xs = [x for x in xs if not math.isnan(x)]
        return f"{float(np.median(xs)):.4g}" if xs else "nan"

    first = [float(r["series"][r["judge"]][0]) for r in runs]
    last = [float(r["series"][r["judge"]][-1]) for r in runs]
    full = [(float(r["full_train_loss"][0]), float(r["full_train_loss"][1])) for r in runs]
    learned = sum(a < 0.9 * b if b > 0 else a < b - 0.1 * abs(b) for b, a in full)
    return (f"first={med(first)} last={med(last)} full={med([b for b, _ in full])}->"
            f"{med([a for _, a in full])} ref={med([float(r['reference']) for r in runs])} "
            f"learned={learned}/{len(runs)}")


def main(argv: list[str] | None = None) -> int:
    """Run every selected configuration for every seed; write ``torch.json``."""
    import warnings

    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="Using a target size")  # the broadcast fault
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--only", default="", help="only configurations whose name contains this")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    names = [c.name for c in CONFIGS]
    if len(set(names)) != len(names):
        raise SystemExit("configuration names must be unique")
    selected = [c for c in CONFIGS if args.only in c.name]
    path = args.out / "torch.json"
    kept: list[dict[str, Any]] = []
    if args.only and path.exists():
        redo = {c.config for c in selected}
        known = {c.config for c in CONFIGS}
        kept = [r for r in json.loads(path.read_text())["runs"]
                if r["config"] in known and r["config"] not in redo]
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    for cfg in selected:
        t0 = time.perf_counter()
        cfg_runs = [run(cfg, seed) for seed in range(args.seeds)]
        runs.extend(cfg_runs)
        print(f"{cfg.name:<24} {cfg.family:<7} n={len(cfg_runs[0]['series'][cfg.judge]):<4}"
              f" {time.perf_counter() - t0:5.1f}s  {summarise(cfg_runs)}", flush=True)
    order = {c.config: i for i, c in enumerate(CONFIGS)}
    allruns = sorted(kept + runs, key=lambda r: (order.get(r["config"], len(order)), r["seed"]))
    write_corpus(path, allruns)
    print(f"== {len(selected)} configs x {args.seeds} seeds in "
          f"{time.perf_counter() - started:.1f}s -> {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

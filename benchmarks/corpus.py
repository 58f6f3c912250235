"""Generate a corpus of real training-loss curves to calibrate the losstrend verdict.

Every curve in the corpus comes from a real training loop: small PyTorch and Keras models
trained on scikit-learn toy data sets (diabetes, digits, breast cancer) and on small
synthetic problems.  Nothing is simulated or mocked; the "bad" curves come from real
mistakes (a learning rate above the stability limit, a gradient-ascent sign bug, an
optimizer that was given the wrong parameters, an over-fitting model, ...).

Usage::

    python benchmarks/corpus.py [--seeds N] [--only SUBSTRING]
                                [--framework torch|keras|all] [--out benchmarks/corpus]

File format
-----------
One JSON file per configuration group: ``torch_healthy.json``, ``torch_bad.json``,
``keras_healthy.json`` and ``keras_bad.json``.  A file is::

    {"schema": "losstrend-corpus/1", "runs": [RUN, RUN, ...]}

and each RUN is one training run (one configuration at one seed)::

    {"config": "torch/mlp_digits/adam/b32/s100/per_step",  # unique configuration name
     "family": "healthy" | "bad",
     "mode": null | "non_finite" | "divergence" | "spike_no_recover" | "late_rise"
             | "rise" | "frozen" | "stall" | "oscillation",
     "judge": "train" | "eval",     # the series a verdict should judge
     "framework": "torch" | "keras",
     "optimizer": "sgd" | "sgd_momentum0.9" | "sgd_momentum0.99" | "adam" | "adamw",
     "lr": 0.003,                   # base learning rate (before any schedule)
     "batch_size": 32,              # the training-set size for full-batch runs
     "record": "step" | "epoch",    # one value per optimizer step, or a mean per epoch
     "seed": 3,
     "steps_per_epoch": 42,         # null when there are no epochs (a fixed batch)
     "series": {"train": [...], "eval": [...]},
     "full_train_loss": [before, after]}  # loss on the whole training set (a check)

``series.train`` holds the mini-batch loss of every optimizer step (computed on the batch
before the update) for ``record == "step"``, or the mean training loss of every epoch for
``record == "epoch"``; ``series.eval`` (only for ``record == "epoch"``) holds the loss on
held-out data after every epoch.  ``full_train_loss`` is the (true, un-negated) loss of
the model on the whole training set before the first and after the last step: a
noise-free check of whether a run learned, not meant to be judged.

Numbers are rounded to 6 significant digits.  JSON has no NaN or infinity, so non-finite
values are stored as the strings ``"nan"``, ``"inf"`` and ``"-inf"``; read them back with
``float(v)``.  Runs that produce a non-finite loss keep training and recording, so their
series carry the non-finite values.

Everything is deterministic per seed: the seed drives the data split (or the synthetic
data), the initialisation and the batch order.  ``--only`` regenerates the matching
configurations and merges them into the existing files, leaving the other runs in place.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = "losstrend-corpus/1"
DEFAULT_OUT = Path(__file__).resolve().parent / "corpus"

# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

#: task -> kind of target: "reg" (MSE), "bin" (binary cross-entropy), "multi" (10-class CE).
TASK_KIND: dict[str, str] = {
    "synth": "reg",
    "diabetes": "reg",
    "digits": "multi",
    "cancer": "bin",
    "blobs": "bin",
    "x10": "reg",
    "x1000": "reg",
    "diabetes30": "reg",
    "digits30": "multi",
}


@dataclass(frozen=True)
class Split:
    """A train/eval split as float32 numpy arrays (class targets as int64)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    kind: str

    @property
    def n_out(self) -> int:
        """Number of model outputs."""
        return 10 if self.kind == "multi" else 1


@functools.cache
def _sklearn_raw(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Load a bundled scikit-learn data set (no network needed)."""
    from sklearn import datasets

    loader = {
        "diabetes": datasets.load_diabetes,
        "digits": datasets.load_digits,
        "cancer": datasets.load_breast_cancer,
    }[name]
    bunch = loader()
    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target)


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Scale columns to zero mean and unit variance with the training statistics."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return [(a - mean) / std for a in (train, *others)]


def _finish(xt: np.ndarray, yt: np.ndarray, xe: np.ndarray, ye: np.ndarray, kind: str) -> Split:
    """Cast to the dtypes the models expect (regression/binary targets as column vectors)."""
    yt_: np.ndarray
    ye_: np.ndarray
    if kind == "multi":
        yt_, ye_ = yt.astype(np.int64), ye.astype(np.int64)
    else:
        yt_ = yt.astype(np.float32).reshape(-1, 1)
        ye_ = ye.astype(np.float32).reshape(-1, 1)
    return Split(xt.astype(np.float32), yt_, xe.astype(np.float32), ye_, kind)


def load_task(task: str, seed: int) -> Split:
    """Build the train/eval split of ``task`` for ``seed``.

    Real data sets are split 75/25 by a seeded permutation (the ``*30`` variants keep only
    30 training samples, to over-fit); synthetic sets are drawn from ``seed``.
    """
    kind = TASK_KIND[task]
    rng = np.random.default_rng(10_000 + seed)
    if task in ("diabetes", "digits", "cancer", "diabetes30", "digits30"):
        x, y = _sklearn_raw(task.removesuffix("30"))
        perm = rng.permutation(len(x))
        if task.endswith("30"):
            tr, ev = perm[:30], perm[30:530]
        else:
            cut = int(0.75 * len(x))
            tr, ev = perm[:cut], perm[cut:]
        xt, xe, yt, ye = x[tr], x[ev], y[tr].astype(np.float64), y[ev].astype(np.float64)
        if task.startswith("digits"):
            xt, xe = xt / 16.0, xe / 16.0
        else:
            xt, xe = _standardise(xt, xe)
        if kind == "reg":
            yt, ye = _standardise(yt, ye)
        return _finish(xt, yt, xe, ye, kind)
    if task == "synth":  # y = Xw + noise, X ~ N(0, 1)
        n, d = 320, 8
        x = rng.standard_normal((n, d))
        y = x @ rng.standard_normal(d) + 0.5 * rng.standard_normal(n)
    elif task == "blobs":  # two overlapping Gaussian blobs
        n = 320
        labels = rng.integers(0, 2, n)
        x = rng.standard_normal((n, 2)) + np.where(labels[:, None] == 1, 1.0, -1.0)
        y = labels.astype(np.float64)
    elif task == "x10":  # 1-D, unscaled: X ~ U(0, 10), y = 2X + 1 + noise
        n = 320
        x = rng.random((n, 1)) * 10.0
        y = 2.0 * x[:, 0] + 1.0 + 0.5 * rng.standard_normal(n)
    elif task == "x1000":  # unscaled features: X ~ N(0, 1) * 1000
        n, d = 320, 4
        x = rng.standard_normal((n, d)) * 1000.0
        y = (x / 1000.0) @ rng.standard_normal(d) + 0.1 * rng.standard_normal(n)
    else:
        raise ValueError(f"unknown task {task!r}")
    return _finish(x[:256], y[:256], x[256:], y[256:], kind)


# ---------------------------------------------------------------------------------------------
# Configurations
# ---------------------------------------------------------------------------------------------

OPTIMIZER_LABEL = {
    "sgd": "sgd",
    "sgdm": "sgd_momentum0.9",
    "sgdm99": "sgd_momentum0.99",
    "adam": "adam",
    "adamw": "adamw",
}
WEIGHT_DECAY = 0.01  # AdamW, both frameworks


def step_change(at: int, factor: float) -> Callable[[int], float]:
    """Learning-rate multiplier: 1 before optimizer step ``at``, ``factor`` from then on."""

    def mult(step: int) -> float:
        return factor if step >= at else 1.0

    return mult


def growth(factor: float) -> Callable[[int], float]:
    """Learning-rate multiplier ``factor ** step`` (an exploding schedule)."""

    def mult(step: int) -> float:
        return factor**step

    return mult


@dataclass(frozen=True)
class Config:
    """One training configuration; it is run once per seed.

    Attributes:
        framework: ``"torch"`` or ``"keras"``.
        task: a key of :data:`TASK_KIND`.
        arch: ``"linear"`` (linear/logistic regression), ``"mlp"`` (one hidden layer of
            ``hidden`` units) or ``"mlp256"`` (one hidden layer of 256 units).
        opt: a key of :data:`OPTIMIZER_LABEL`.
        lr: base learning rate.
        batch: batch size, ``None`` for full batch.
        length: optimizer steps (``record == "step"``) or epochs (``record == "epoch"``).
        record: ``"step"`` or ``"epoch"``.
        family: ``"healthy"`` or ``"bad"``.
        mode: the failure mode of a bad configuration.
        variant: a suffix that makes the name unique and says what is special.
        judge: the series a verdict should judge.
        hidden: hidden units of ``"mlp"``.
        act: ``"relu"`` or ``"tanh"``.
        init: ``"default"``, ``"small"`` (weights x0.02, zero biases), ``"dead_relu"``
            (hidden bias -10, output bias 0) or ``"lstsq"`` (linear model started at the
            least-squares solution).
        loss: ``"default"`` or ``"log_sigmoid_unclamped"`` (hand-written binary
            cross-entropy ``-log(sigmoid(z))`` without clamping; torch only).
        lr_mult: learning-rate multiplier as a function of the optimizer step.
        ascent: gradient-ascent sign bug; the recorded loss is still the true loss.
        bug: ``""``, ``"stale_optimizer"`` (the optimizer holds the parameters of a copy of
            the model; torch) or ``"frozen"`` (all layers non-trainable; keras).
        fixed_batch: every step sees the same batch (torch).
    """

    framework: str
    task: str
    arch: str
    opt: str
    lr: float
    batch: int | None
    length: int
    record: str = "step"
    family: str = "healthy"
    mode: str | None = None
    variant: str = ""
    judge: str = "train"
    hidden: int = 32
    act: str = "relu"
    init: str = "default"
    loss: str = "default"
    lr_mult: Callable[[int], float] | None = None
    ascent: bool = False
    bug: str = ""
    fixed_batch: bool = False

    @property
    def name(self) -> str:
        """Unique, readable configuration name."""
        kind = TASK_KIND[self.task]
        model = self.arch
        if model == "linear":
            model = "linreg" if kind == "reg" else "logreg"
        batch = "full" if self.batch is None else f"b{self.batch}"
        length = f"s{self.length}" if self.record == "step" else f"e{self.length}"
        name = f"{self.framework}/{model}_{self.task}/{self.opt}/{batch}/{length}/per_{self.record}"
        return f"{name}/{self.variant}" if self.variant else name

    @property
    def group(self) -> str:
        """Output file stem."""
        return f"{self.framework}_{self.family}"


def _torch_configs() -> list[Config]:
    """All PyTorch configurations, healthy and bad."""
    h = functools.partial(Config, "torch")
    # fmt: off
    healthy = [
        # --- linear regression, per step ---
        h("synth", "linear", "sgd", 0.3, None, 30, variant="fast_converge"),
        h("synth", "linear", "sgd", 0.3, 64, 30, variant="fast_converge"),
        h("synth", "linear", "sgd", 0.05, None, 100),
        h("synth", "linear", "sgd", 0.05, 32, 100),
        h("synth", "linear", "sgdm", 0.01, 4, 300),
        h("synth", "linear", "adam", 0.05, 2, 30),
        h("synth", "linear", "sgd", 0.05, 2, 10),
        h("diabetes", "linear", "sgd", 0.01, 8, 300),
        h("diabetes", "linear", "adam", 0.01, None, 100),
        h("diabetes", "linear", "sgdm", 0.01, 32, 100),
        # --- logistic regression, per step ---
        h("cancer", "linear", "sgd", 0.05, 32, 100),
        h("cancer", "linear", "sgdm", 0.01, 32, 30),
        h("cancer", "linear", "adamw", 0.01, None, 30),
        h("cancer", "linear", "sgd", 0.01, 4, 300),
        h("blobs", "linear", "sgd", 0.1, 2, 10),
        h("blobs", "linear", "sgd", 0.1, 2, 30),
        h("blobs", "linear", "adam", 0.05, None, 30),
        h("digits", "linear", "sgd", 0.1, 32, 300),
        h("digits", "linear", "adam", 0.01, 8, 100),
        # --- MLPs, per step ---
        h("digits", "mlp", "adam", 3e-3, 32, 100, hidden=64),
        h("digits", "mlp", "adam", 1e-3, 32, 300, hidden=64),
        h("digits", "mlp", "sgdm", 0.05, 32, 100, hidden=64),
        h("digits", "mlp", "adamw", 3e-3, 8, 300, hidden=64),
        h("digits", "mlp", "adam", 0.05, 32, 100, hidden=64, variant="bold_lr"),
        h("cancer", "mlp", "adam", 0.05, 32, 100, variant="bold_lr"),
        h("digits", "mlp", "sgdm", 0.03, 32, 300, hidden=64, init="small", variant="slow_start"),
        h("diabetes", "mlp", "adam", 3e-3, 32, 100, act="tanh"),
        h("diabetes", "mlp", "sgd", 0.05, None, 300),
        h("cancer", "mlp", "adamw", 3e-3, 32, 100),
        h("cancer", "mlp", "sgd", 0.01, 4, 100),
        h("blobs", "mlp", "adam", 0.01, 4, 30, hidden=16),
        h("blobs", "mlp", "sgd", 0.1, 2, 30, hidden=16),
        h("blobs", "mlp", "adam", 0.02, 2, 10, hidden=16),
        h("blobs", "mlp", "sgdm", 0.05, None, 100, hidden=16, act="tanh"),
        h("synth", "mlp", "adamw", 0.01, None, 100),
        # --- per epoch, with an eval series ---
        h("digits", "mlp", "adam", 1e-3, 32, 20, "epoch", hidden=64),
        h("cancer", "linear", "sgd", 0.01, 32, 30, "epoch"),
        h("diabetes", "linear", "sgd", 0.002, 16, 30, "epoch"),
        h("diabetes", "mlp", "adamw", 1e-3, 32, 40, "epoch"),
        h("synth", "linear", "sgd", 0.01, 8, 10, "epoch"),
        h("blobs", "mlp", "sgdm", 0.01, 32, 15, "epoch", hidden=16),
        h("cancer", "mlp", "adam", 0.01, None, 40, "epoch"),
        h("blobs", "linear", "sgd", 0.01, 4, 10, "epoch"),
    ]
    b = functools.partial(Config, "torch", family="bad")
    bad = [
        # --- non_finite: the loss overflows or takes log(0); recording goes on ---
        b("x10", "linear", "sgd", 1.0, None, 30, mode="non_finite", variant="lr1_overflow"),
        b("x10", "linear", "sgd", 0.05, 32, 100, mode="non_finite", variant="overflow"),
        b("x1000", "linear", "sgd", 1e-3, 32, 30, mode="non_finite", variant="unscaled_x"),
        b("cancer", "linear", "sgd", 50.0, 32, 30, mode="non_finite",
          loss="log_sigmoid_unclamped", variant="log0"),
        # --- divergence: lr above 2/lambda_max, geometric growth, still finite ---
        b("x10", "linear", "sgd", 0.05, None, 30, mode="divergence"),
        b("x10", "linear", "sgd", 0.035, 32, 40, mode="divergence"),
        b("x10", "linear", "sgdm", 0.1, 32, 20, mode="divergence"),
        b("x1000", "linear", "sgd", 1.5e-6, None, 30, mode="divergence", variant="unscaled_x"),
        # --- spike_no_recover: lr x100 at 60% of the run ---
        b("digits", "mlp", "sgdm", 0.05, 32, 100, hidden=64, mode="spike_no_recover",
          lr_mult=step_change(60, 100.0), variant="lr_x100_at60"),
        b("digits", "mlp", "adam", 3e-3, 32, 100, hidden=64, mode="spike_no_recover",
          lr_mult=step_change(60, 300.0), variant="lr_x300_at60"),
        b("diabetes", "mlp", "adam", 3e-3, None, 100, mode="spike_no_recover",
          lr_mult=step_change(60, 300.0), variant="lr_x300_at60"),
        # --- late_rise: over-fitting (judge eval), or an exploding lr schedule (judge train) ---
        b("diabetes30", "mlp256", "adam", 1e-3, None, 150, "epoch", mode="late_rise",
          judge="eval", variant="overfit"),
        b("digits30", "mlp256", "adam", 3e-3, None, 150, "epoch", mode="late_rise",
          judge="eval", variant="overfit"),
        b("diabetes30", "mlp256", "adam", 1e-3, 8, 80, "epoch", mode="late_rise",
          judge="eval", variant="overfit"),
        b("synth", "linear", "sgd", 0.01, 32, 55, mode="late_rise", lr_mult=growth(1.1),
          variant="lr_x1.1_per_step"),
        b("digits", "mlp", "adam", 1e-4, 32, 100, hidden=64, mode="late_rise",
          lr_mult=growth(1.1), variant="lr_x1.1_per_step"),
        # --- rise: gradient-ascent sign bug, or a growing lr from the optimum ---
        b("cancer", "linear", "sgd", 0.01, 32, 100, mode="rise", ascent=True, variant="ascent"),
        b("digits", "mlp", "adam", 1e-3, 32, 100, hidden=64, mode="rise", ascent=True,
          variant="ascent"),
        b("synth", "linear", "sgd", 0.01, None, 30, mode="rise", ascent=True, variant="ascent"),
        b("synth", "linear", "sgd", 0.02, 4, 60, mode="rise", init="lstsq",
          lr_mult=growth(1.05), variant="at_optimum_lr_x1.05_per_step"),
        # --- frozen: bit-identical values ---
        b("digits", "mlp", "adam", 1e-3, None, 100, hidden=64, mode="frozen",
          bug="stale_optimizer", variant="stale_optimizer"),
        b("cancer", "linear", "sgd", 0.05, 32, 30, mode="frozen", bug="stale_optimizer",
          fixed_batch=True, variant="fixed_batch"),
        b("diabetes", "linear", "sgd", 0.0, None, 100, mode="frozen", variant="lr0"),
        b("blobs", "mlp", "sgdm", 0.05, None, 30, hidden=16, mode="frozen",
          bug="stale_optimizer", variant="stale_optimizer"),
        # --- stall: no trend, only batch noise ---
        b("digits", "mlp", "sgd", 1e-7, 32, 100, hidden=64, mode="stall", variant="lr1e-7"),
        b("cancer", "linear", "sgd", 1e-7, 4, 300, mode="stall", variant="lr1e-7"),
        b("synth", "linear", "sgd", 0.05, 8, 100, mode="stall", bug="stale_optimizer",
          variant="stale_optimizer"),
        b("diabetes", "mlp", "adam", 1e-3, 32, 100, mode="stall", init="dead_relu",
          variant="dead_relu"),
        b("digits", "mlp", "sgd", 0.05, 32, 300, hidden=64, mode="stall", init="dead_relu",
          variant="dead_relu"),
        b("diabetes", "linear", "sgd", 1e-7, None, 100, mode="stall",
          variant="lr1e-7_full_batch"),
        # --- oscillation: momentum 0.99 with a large lr (the envelope decays only as
        # 0.995**step, slower with the larger lr; the last one does trend down on average) ---
        b("x10", "linear", "sgdm99", 0.05, None, 60, mode="oscillation"),
        b("synth", "linear", "sgdm99", 1.0, None, 40, mode="oscillation"),
        b("x10", "linear", "sgdm99", 0.02, None, 100, mode="oscillation"),
    ]
    # fmt: on
    return healthy + bad


def _keras_configs() -> list[Config]:
    """All Keras configurations (fewer and shorter: a Keras run costs more)."""
    h = functools.partial(Config, "keras")
    # fmt: off
    healthy = [
        # --- per epoch: history["loss"] and history["val_loss"] ---
        h("digits", "mlp", "adam", 2e-3, 64, 10, "epoch", hidden=64),
        h("cancer", "linear", "sgd", 0.01, 32, 20, "epoch"),
        h("diabetes", "linear", "sgdm", 0.002, 32, 20, "epoch"),
        h("diabetes", "mlp", "adamw", 2e-3, 32, 25, "epoch"),
        h("synth", "linear", "sgd", 0.1, None, 10, "epoch"),
        h("blobs", "mlp", "adam", 3e-3, 16, 12, "epoch", hidden=16),
        # --- per step: each batch's own loss, read from the loss tracker ---
        h("digits", "mlp", "adam", 3e-3, 32, 100, hidden=64),
        h("cancer", "linear", "sgd", 0.05, 4, 30),
        h("synth", "linear", "sgd", 0.05, 2, 10),
        h("cancer", "mlp", "adamw", 0.01, None, 30),
        h("digits", "mlp", "sgd", 0.05, 8, 300, hidden=64),
        h("digits", "mlp", "adam", 0.05, 32, 100, hidden=64, variant="bold_lr"),
    ]
    b = functools.partial(Config, "keras", family="bad")
    bad = [
        b("x10", "linear", "sgd", 1.0, None, 30, mode="non_finite", variant="lr1_overflow"),
        b("x10", "linear", "sgd", 0.05, None, 30, mode="divergence"),
        b("digits", "mlp", "sgdm", 0.05, 32, 100, hidden=64, mode="spike_no_recover",
          lr_mult=step_change(60, 100.0), variant="lr_x100_at60"),
        b("diabetes30", "mlp256", "adam", 1.5e-3, None, 60, "epoch", mode="late_rise",
          judge="eval", variant="overfit"),
        b("cancer", "linear", "sgd", 0.01, 32, 100, mode="rise", ascent=True, variant="ascent"),
        b("digits", "mlp", "adam", 1e-3, None, 30, hidden=64, mode="frozen", bug="frozen",
          variant="trainable_false"),
        b("digits", "mlp", "sgd", 1e-7, 32, 100, hidden=64, mode="stall", variant="lr1e-7"),
    ]
    # fmt: on
    return healthy + bad


def all_configs() -> list[Config]:
    """Every configuration, torch first."""
    configs = _torch_configs() + _keras_configs()
    names = [c.name for c in configs]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise RuntimeError(f"duplicate configuration names: {sorted(duplicates)}")
    return configs


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


def round6(value: float) -> float | str:
    """Round to 6 significant digits; non-finite values become ``"nan"``/``"inf"``/``"-inf"``."""
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(f"{value:.6g}")


def make_record(
    cfg: Config,
    seed: int,
    batch_size: int,
    steps_per_epoch: int | None,
    *,
    series: Mapping[str, Sequence[float]],
    full_train_loss: tuple[float, float],
) -> dict[str, Any]:
    """Build one run record (see the module docstring)."""
    return {
        "config": cfg.name,
        "family": cfg.family,
        "mode": cfg.mode,
        "judge": cfg.judge,
        "framework": cfg.framework,
        "optimizer": OPTIMIZER_LABEL[cfg.opt],
        "lr": cfg.lr,
        "batch_size": batch_size,
        "record": cfg.record,
        "seed": seed,
        "steps_per_epoch": steps_per_epoch,
        "series": {key: [round6(v) for v in values] for key, values in series.items()},
        "full_train_loss": [round6(v) for v in full_train_loss],
    }


# ---------------------------------------------------------------------------------------------
# PyTorch
# ---------------------------------------------------------------------------------------------


def _torch_model(cfg: Config, data: Split) -> Any:
    """Build and initialise the torch model of ``cfg``."""
    import torch
    from torch import nn

    d_in = data.x_train.shape[1]
    model: nn.Module
    if cfg.arch == "linear":
        first = last = nn.Linear(d_in, data.n_out)
        model = first
    else:
        hidden = 256 if cfg.arch == "mlp256" else cfg.hidden
        act = nn.ReLU() if cfg.act == "relu" else nn.Tanh()
        first, last = nn.Linear(d_in, hidden), nn.Linear(hidden, data.n_out)
        model = nn.Sequential(first, act, last)
    with torch.no_grad():
        if cfg.init == "small":
            for name, p in model.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                else:
                    p.mul_(0.02)
        elif cfg.init == "dead_relu":
            first.bias.fill_(-10.0)
            last.bias.zero_()
        elif cfg.init == "lstsq":
            x1 = np.hstack([data.x_train, np.ones((len(data.x_train), 1), np.float32)])
            sol = np.linalg.lstsq(x1.astype(np.float64), data.y_train, rcond=None)[0]
            last.weight.copy_(torch.from_numpy(sol[:-1].T.astype(np.float32)))
            last.bias.copy_(torch.from_numpy(sol[-1].astype(np.float32)))
    return model


def _torch_loss_fn(cfg: Config, kind: str) -> Callable[[Any, Any], Any]:
    """The training loss of ``cfg`` as ``fn(output, target) -> scalar tensor``."""
    import torch
    from torch.nn import functional as F

    if cfg.loss == "log_sigmoid_unclamped":

        def naive_bce(out: Any, y: Any) -> Any:
            p = torch.sigmoid(out)
            return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()

        return naive_bce
    if kind == "reg":
        return F.mse_loss
    if kind == "bin":
        return F.binary_cross_entropy_with_logits
    return F.cross_entropy


def _torch_optimizer(opt: str, params: Any, lr: float) -> Any:
    """Instantiate the torch optimizer ``opt``."""
    import torch

    if opt == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if opt == "sgdm":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if opt == "sgdm99":
        return torch.optim.SGD(params, lr=lr, momentum=0.99)
    if opt == "adam":
        return torch.optim.Adam(params, lr=lr)
    if opt == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=WEIGHT_DECAY)
    raise ValueError(f"unknown optimizer {opt!r}")


def run_torch(cfg: Config, seed: int) -> dict[str, Any]:
    """Train ``cfg`` with PyTorch at ``seed`` and return its run record."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    data = load_task(cfg.task, seed)
    x_train, y_train = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    x_eval, y_eval = torch.from_numpy(data.x_eval), torch.from_numpy(data.y_eval)
    model = _torch_model(cfg, data)
    # The "stale optimizer" bug: the optimizer was built for another instance of the model.
    target = copy.deepcopy(model) if cfg.bug == "stale_optimizer" else model
    optimizer = _torch_optimizer(cfg.opt, target.parameters(), cfg.lr)
    loss_fn = _torch_loss_fn(cfg, data.kind)

    n = len(x_train)
    batch_size = cfg.batch or n
    steps_per_epoch: int | None = math.ceil(n / batch_size)
    generator = torch.Generator().manual_seed(seed)
    fixed = cfg.fixed_batch
    if fixed:
        steps_per_epoch = None

    def epoch_batches() -> list[Any]:
        """Index tensors of one epoch (reshuffled every epoch; one fixed batch if buggy)."""
        if batch_size >= n:
            return [torch.arange(n)]
        perm = torch.randperm(n, generator=generator)
        if fixed:
            return [perm[:batch_size]]
        return [perm[i : i + batch_size] for i in range(0, n, batch_size)]

    fixed_batch = epoch_batches() if fixed else None
    step = 0

    def full_loss() -> float:
        with torch.no_grad():
            return float(loss_fn(model(x_train), y_train).item())

    before = full_loss()

    def train_step(idx: Any) -> float:
        """One optimizer step on the batch ``idx``; returns the batch loss before the update."""
        nonlocal step
        mult = cfg.lr_mult(step) if cfg.lr_mult else 1.0
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * mult
        loss = loss_fn(model(x_train[idx]), y_train[idx])
        optimizer.zero_grad()
        (-loss if cfg.ascent else loss).backward()
        optimizer.step()
        step += 1
        return float(loss.item())

    series: dict[str, list[float]] = {"train": []}
    if cfg.record == "step":
        while step < cfg.length:
            for idx in fixed_batch or epoch_batches():
                if step >= cfg.length:
                    break
                series["train"].append(train_step(idx))
    else:
        series["eval"] = []
        for _ in range(cfg.length):
            total, count = 0.0, 0
            for idx in fixed_batch or epoch_batches():
                total += train_step(idx) * len(idx)
                count += len(idx)
            series["train"].append(total / count)
            with torch.no_grad():
                series["eval"].append(float(loss_fn(model(x_eval), y_eval).item()))
    return make_record(
        cfg,
        seed,
        batch_size,
        steps_per_epoch,
        series=series,
        full_train_loss=(before, full_loss()),
    )


# ---------------------------------------------------------------------------------------------
# Keras
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _keras() -> Any:
    """Import Keras (TensorFlow backend) once, single-threaded and deterministic."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()
    import keras

    return keras


def _keras_step_recorder(keras: Any, max_steps: int, cfg: Config) -> Any:
    """A callback recording each batch's own loss and applying the lr schedule of ``cfg``.

    Keras 3 logs the running mean of the epoch as ``logs["loss"]``, so the batch loss is
    recovered from the deltas of the loss tracker (a sum weighted by batch size and a count).
    """

    class StepRecorder(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.losses: list[float] = []
            self.prev_total = 0.0
            self.prev_count = 0.0

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.prev_total = self.prev_count = 0.0  # the tracker was reset for the epoch

        def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            if cfg.lr_mult is not None:
                self.model.optimizer.learning_rate = cfg.lr * cfg.lr_mult(len(self.losses))

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            tracker = self.model._loss_tracker
            total = float(tracker.total.numpy())
            count = float(tracker.count.numpy())
            loss = (total - self.prev_total) / (count - self.prev_count)
            self.prev_total, self.prev_count = total, count
            self.losses.append(-loss if cfg.ascent else loss)
            if len(self.losses) >= max_steps:
                self.model.stop_training = True

    return StepRecorder()


_KERAS_RUNS = [0]


def run_keras(cfg: Config, seed: int) -> dict[str, Any]:
    """Train ``cfg`` with Keras ``model.fit`` at ``seed`` and return its run record."""
    keras = _keras()
    import tensorflow as tf

    # clear_session() costs ~0.2 s, so free the graph state only now and then; results do
    # not depend on it (set_random_seed resets every generator).
    _KERAS_RUNS[0] += 1
    if _KERAS_RUNS[0] % 25 == 0:
        keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    data = load_task(cfg.task, seed)
    layers = [keras.Input((data.x_train.shape[1],))]
    if cfg.arch != "linear":
        hidden = 256 if cfg.arch == "mlp256" else cfg.hidden
        layers.append(keras.layers.Dense(hidden, activation=cfg.act))
    layers.append(keras.layers.Dense(data.n_out))
    model = keras.Sequential(layers)
    if cfg.bug == "frozen":
        model.trainable = False
    unsupported = cfg.init != "default" or cfg.loss != "default" or cfg.fixed_batch
    if unsupported or cfg.bug not in ("", "frozen"):
        raise ValueError(f"{cfg.name}: option not implemented for keras")

    optimizer = {
        "sgd": lambda: keras.optimizers.SGD(cfg.lr),
        "sgdm": lambda: keras.optimizers.SGD(cfg.lr, momentum=0.9),
        "sgdm99": lambda: keras.optimizers.SGD(cfg.lr, momentum=0.99),
        "adam": lambda: keras.optimizers.Adam(cfg.lr),
        "adamw": lambda: keras.optimizers.AdamW(cfg.lr, weight_decay=WEIGHT_DECAY),
    }[cfg.opt]()
    base_loss = {
        "reg": keras.losses.MeanSquaredError(),
        "bin": keras.losses.BinaryCrossentropy(from_logits=True),
        "multi": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    }[data.kind]
    loss: Any = base_loss
    if cfg.ascent:  # the sign bug; StepRecorder flips the recorded value back

        def loss(y_true: Any, y_pred: Any) -> Any:
            return -base_loss(y_true, y_pred)

    model.compile(optimizer=optimizer, loss=loss)

    def full_loss() -> float:
        return float(base_loss(data.y_train, model(data.x_train, training=False)))

    before = full_loss()

    n = len(data.x_train)
    batch_size = cfg.batch or n
    steps_per_epoch = math.ceil(n / batch_size)
    train_ds = tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train))
    if batch_size < n:
        train_ds = train_ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    train_ds = train_ds.batch(batch_size)

    series: dict[str, list[float]]
    if cfg.record == "step":
        recorder = _keras_step_recorder(keras, cfg.length, cfg)
        epochs = math.ceil(cfg.length / steps_per_epoch)
        model.fit(train_ds, epochs=epochs, verbose=0, shuffle=False, callbacks=[recorder])
        series = {"train": recorder.losses}
    else:
        if cfg.lr_mult is not None or cfg.ascent:
            raise ValueError(f"{cfg.name}: schedules/ascent need record='step' in keras")
        eval_ds = tf.data.Dataset.from_tensor_slices((data.x_eval, data.y_eval)).batch(1024)
        history = model.fit(
            train_ds, epochs=cfg.length, validation_data=eval_ds, verbose=0, shuffle=False
        )
        series = {"train": history.history["loss"], "eval": history.history["val_loss"]}
    return make_record(
        cfg,
        seed,
        batch_size,
        steps_per_epoch,
        series=series,
        full_train_loss=(before, full_loss()),
    )


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def _as_float(value: float | str) -> float:
    return float(value)


def summarise(runs: list[dict[str, Any]]) -> str:
    """A one-line summary of the judged series of one configuration across seeds.

    ``first``/``last``/``min``/``max`` are medians over seeds; ``end/start`` is the median
    ratio of the mean of the last fifth to the mean of the first fifth; ``down`` is the
    share of seeds whose last fifth is below 0.9x their first fifth; ``learned`` is the share
    whose full-training-set loss fell below 0.9x its start; ``nonfinite`` counts non-finite
    values over all seeds.
    """
    firsts, lasts, mins, maxs, ratios = [], [], [], [], []
    nonfinite, down, learned = 0, 0, 0
    for run in runs:
        before, after = (_as_float(v) for v in run["full_train_loss"])
        learned += int(after < 0.9 * before)
        values = [_as_float(v) for v in run["series"][run["judge"]]]
        finite = [v for v in values if math.isfinite(v)]
        nonfinite += len(values) - len(finite)
        firsts.append(values[0])
        lasts.append(values[-1])
        mins.append(min(finite) if finite else math.nan)
        maxs.append(max(finite) if finite else math.nan)
        k = max(1, len(values) // 5)
        head, tail = sum(values[:k]) / k, sum(values[-k:]) / k
        ratio = tail / head if head else math.nan
        ratios.append(ratio)
        down += int(ratio < 0.9)

    def med(xs: list[float]) -> str:
        xs = [x for x in xs if not math.isnan(x)]
        return f"{statistics.median(xs):.4g}" if xs else "nan"

    return (
        f"first={med(firsts)} last={med(lasts)} min={med(mins)} max={med(maxs)} "
        f"end/start={med(ratios)} down={down}/{len(runs)} learned={learned}/{len(runs)} "
        f"nonfinite={nonfinite}"
    )


def write_corpus(path: Path, runs: list[dict[str, Any]]) -> None:
    """Write ``runs`` to ``path`` atomically (temporary file in the same folder + replace)."""
    body = ",\n".join(json.dumps(r, separators=(",", ":"), allow_nan=False) for r in runs)
    text = f'{{"schema": "{SCHEMA}", "runs": [\n{body}\n]}}\n'
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _merge(path: Path, fresh: list[dict[str, Any]], order: list[str]) -> list[dict[str, Any]]:
    """Replace the runs of the regenerated configurations in an existing corpus file."""
    if not path.exists():
        return fresh
    old = json.loads(path.read_text(encoding="utf-8"))["runs"]
    redone = {r["config"] for r in fresh}
    runs = [r for r in old if r["config"] not in redone] + fresh
    rank = {name: i for i, name in enumerate(order)}
    return sorted(runs, key=lambda r: (rank.get(r["config"], len(rank)), r["seed"]))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="seeds per configuration")
    parser.add_argument("--only", default="", help="only configurations whose name contains this")
    parser.add_argument("--framework", choices=("torch", "keras", "all"), default="all")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected configurations for every seed and write the corpus files."""
    args = parse_args(argv)
    configs = all_configs()
    order = [c.name for c in configs]
    selected = [
        c for c in configs if args.framework in ("all", c.framework) and args.only in c.name
    ]
    if not selected:
        print("no configuration matches", file=sys.stderr)
        return 1
    runners = {"torch": run_torch, "keras": run_keras}
    groups: dict[str, list[Config]] = {}
    for cfg in selected:
        groups.setdefault(cfg.group, []).append(cfg)

    started, cpu_started = time.perf_counter(), time.process_time()
    for group, group_configs in groups.items():
        group_started, group_cpu = time.perf_counter(), time.process_time()
        runs: list[dict[str, Any]] = []
        for cfg in group_configs:
            t0, c0 = time.perf_counter(), time.process_time()
            cfg_runs = [runners[cfg.framework](cfg, seed) for seed in range(args.seeds)]
            runs.extend(cfg_runs)
            n_points = len(cfg_runs[0]["series"][cfg.judge])
            print(
                f"{cfg.name:<62} {cfg.family:<7} {cfg.mode or '-':<16} n={n_points:<4} "
                f"{time.perf_counter() - t0:6.1f}s (cpu {time.process_time() - c0:5.1f}s)  "
                f"{summarise(cfg_runs)}",
                flush=True,
            )
            if cfg.record == "epoch" and cfg.judge != "eval":
                other = [{**r, "judge": "eval"} for r in cfg_runs]
                print(f"{'':>100} eval: {summarise(other)}", flush=True)
        path = args.out / f"{group}.json"
        if args.only:
            runs = _merge(path, runs, order)
        write_corpus(path, runs)
        print(
            f"== {group}: {len(group_configs)} configs, {time.perf_counter() - group_started:.1f}s"
            f" wall, {time.process_time() - group_cpu:.1f}s cpu"
            f" -> {path} ({path.stat().st_size / 1024:.0f} KiB)",
            flush=True,
        )
    print(
        f"== total {time.perf_counter() - started:.1f}s wall, "
        f"{time.process_time() - cpu_started:.1f}s cpu",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Grow the corpus with Keras 3 runs of architectures and training features it lacks (issue 11).

The Keras half of the new, held-out corpus: recurrent (GRU, LSTM) and attention
(``MultiHeadAttention``) models, BatchNormalization at batch 4-8, dropout, gradient
accumulation, ``fit(x, y, shuffle=True)`` on arrays (under ``keras.utils.set_random_seed`` Keras
replays one batch order every epoch: kept, it is what a user of the fixture gets), ``tf.data``
pipelines reshuffled per epoch, learning-rate callbacks (``LearningRateScheduler``,
``ReduceLROnPlateau``), warm-up and one-cycle schedules, a Gaussian-NLL loss that goes negative,
a regression converging to ~1e-6, per-epoch recording (``History``) and short runs; and broken
runs: a learning rate that blows the run up and leaves it dead at chance, labels without signal,
kernels x100 at init, zeros init on a ReLU MLP, everything frozen but a bias, gradients computed
but never applied, a learning-rate schedule that grows each step, a softmax output fed to a
``from_logits=True`` loss, an over-fitting model judged on eval, a per-epoch schedule stepped per
batch, batches sorted by label, a learning rate too low, unscaled features.

Every label (family, what was broken, the expected cause, a one-line reason) is fixed in
:data:`CONFIGS` from the configuration, before any verdict is run on the curves. A run is never
relabelled because a verdict disagrees with it.

Each batch's own loss is recorded with the project's own recorder,
``pytest_losstrend.fixture.LossTrend().keras_callback()`` (it undoes Keras' running mean), so the
curves are what a user of the plugin records; per-epoch runs record ``History`` with
``LossTrend.record(history)``. Each run is seeded with ``keras.utils.set_random_seed(seed)``, as
the fixture does.

Usage::

    python benchmarks/corpus_new_keras.py [--seeds 10] [--only SUBSTRING]
                                          [--out benchmarks/corpus_new/keras.json]

Format: the corpus format of ``benchmarks/corpus.py`` (``{"schema": "losstrend-corpus/1",
"runs": [...]}``), each run with, besides the fields documented there:

- ``"broken"``: what was broken, one phrase from the configuration (``null`` for healthy runs);
- ``"expected_cause"``: the cause code a diagnosis should name first (``null`` for healthy);
- ``"also_acceptable"``: other cause codes that name the same root from another side;
- ``"reason"``: the one-line reason for the label;
- ``"reference"``: the loss of the best constant predictor on the training targets, computed
  from the data before training (label-frequency entropy for cross-entropy, H(p) for binary
  cross-entropy, the target variance for MSE, the mean absolute deviation from the median for
  MAE, ``0.5 * (log var(y) + 1)`` for the Gaussian NLL without its constant);
- ``"loss"``: the loss function (``"ce"``, ``"bce"``, ``"mse"``, ``"mae"``, ``"gauss_nll"``).

``--only`` regenerates the matching configurations and merges them into the existing file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import SCHEMA, _keras, round6, write_corpus

DEFAULT_OUT = Path(__file__).resolve().parent / "corpus_new" / "keras.json"

# ---------------------------------------------------------------------------------------------
# Data: small synthetic tasks (seeded) and scikit-learn's bundled digits
# ---------------------------------------------------------------------------------------------


@dataclass
class Data:
    """Train/eval arrays and the loss kind (``ce``, ``bce``, ``mse``, ``mae``, ``gauss_nll``)."""

    x: np.ndarray
    y: np.ndarray
    xe: np.ndarray
    ye: np.ndarray
    n_out: int


def _digits(rng: np.random.Generator, n: int) -> Data:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype("float32")
    y = d.target.astype("int64")
    idx = rng.permutation(len(x))
    tr, ev = idx[:n], idx[n : n + 300]
    return Data(x[tr], y[tr], x[ev], y[ev], 10)


def _seq(rng: np.random.Generator, n: int, classes: int) -> Data:
    """Sequences (T=10, 3 features); class = which feature has the largest sum over time
    (2 classes: whether feature 0 sums above 0)."""
    m = n + 256
    x = rng.normal(size=(m, 10, 3)).astype("float32")
    s = x.sum(axis=1)
    y = (s[:, 0] > 0).astype("int64") if classes == 2 else s.argmax(axis=1).astype("int64")
    return Data(x[:n], y[:n], x[n:], y[n:], classes)


def _tokens(rng: np.random.Generator, n: int) -> Data:
    """Token sequences (T=12, vocabulary 6); target 1 when token 1 occurs more often than 2."""
    m = n + 256
    x = rng.integers(0, 6, size=(m, 12)).astype("int32")
    c1, c2 = (x == 1).sum(axis=1), (x == 2).sum(axis=1)
    keep = c1 != c2
    x, y = x[keep], (c1 > c2)[keep].astype("float32")[:, None]
    return Data(x[:n], y[:n], x[n:], y[n:], 1)


def _reg(rng: np.random.Generator, n: int, scale: float = 1.0) -> Data:
    """y = sin(x0) + 0.5 x1 x2 + 0.3 x3 + N(0, 0.1^2), 8 standard-normal features."""
    m = n + 256
    x = rng.normal(size=(m, 8)).astype("float32")
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1] * x[:, 2] + 0.3 * x[:, 3] + 0.1 * rng.normal(size=m)
    y = y.astype("float32")[:, None]
    x = x * scale
    return Data(x[:n], y[:n], x[n:], y[n:], 1)


def _linear_exact(rng: np.random.Generator, n: int) -> Data:
    """Noise-free linear targets: the MSE can go to the float32 floor."""
    m = n + 256
    x = rng.normal(size=(m, 8)).astype("float32")
    w = rng.normal(size=(8, 1)).astype("float32")
    y = (x @ w + 0.5).astype("float32")
    return Data(x[:n], y[:n], x[n:], y[n:], 1)


def _hetero(rng: np.random.Generator, n: int) -> Data:
    """y = sin(2 x0) + 0.5 x1 + N(0, 0.05^2): a Gaussian NLL fit goes well below zero."""
    m = n + 256
    x = rng.normal(size=(m, 4)).astype("float32")
    y = np.sin(2 * x[:, 0]) + 0.5 * x[:, 1] + 0.05 * rng.normal(size=m)
    y = y.astype("float32")[:, None]
    return Data(x[:n], y[:n], x[n:], y[n:], 2)


def load(task: str, seed: int, n: int) -> Data:
    """The data of ``task`` for ``seed`` (``n`` training rows)."""
    rng = np.random.default_rng(1000 + seed)
    if task == "digits":
        return _digits(rng, n)
    if task == "seq2":
        return _seq(rng, n, 2)
    if task == "seq3":
        return _seq(rng, n, 3)
    if task == "tokens":
        return _tokens(rng, n)
    if task == "reg":
        return _reg(rng, n)
    if task == "reg_x1000":
        return _reg(rng, n, scale=1000.0)
    if task == "linear_exact":
        return _linear_exact(rng, n)
    if task == "hetero":
        return _hetero(rng, n)
    raise ValueError(task)


def reference(loss: str, y: np.ndarray) -> float:
    """The loss of the best constant predictor on the training targets ``y``."""
    if loss == "ce":
        p = np.bincount(y.ravel()) / y.size
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())
    if loss == "bce":
        p = float(y.mean())
        return float(-(p * math.log(p) + (1 - p) * math.log(1 - p))) if 0 < p < 1 else 0.0
    if loss == "mse":
        return float(np.var(y.astype("float64")))
    if loss == "mae":
        y64 = y.astype("float64")
        return float(np.mean(np.abs(y64 - np.median(y64))))
    if loss == "gauss_nll":  # mu = mean, var = Var(y): 0.5 * (log var + 1)
        return float(0.5 * (math.log(np.var(y.astype("float64"))) + 1.0))
    raise ValueError(loss)


# ---------------------------------------------------------------------------------------------
# Configurations: labels fixed here, from the configuration, before any verdict
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KC:
    """One Keras configuration.

    ``epochs`` x ceil(``n`` / ``batch``) optimizer steps, each batch's loss recorded
    (``record="step"``), or ``epochs`` History values (``record="epoch"``).
    """

    name: str
    family: str
    reason: str
    task: str
    arch: str
    opt: str
    lr: float
    batch: int
    n: int
    epochs: int
    loss: str = "ce"
    record: str = "step"
    judge: str = "train"
    mode: str | None = None
    broken: str | None = None
    cause: str | None = None
    also: tuple[str, ...] = ()
    pipeline: str = "tfdata"  # "tfdata" (reshuffled per epoch), "arrays" (fit shuffle=True),
    #                            "tfdata_sorted" (sorted by label, never shuffled)
    schedule: str = ""  # "", "warmup_cosine", "one_cycle", "grow"
    callback: str = ""  # "", "lr_scheduler", "plateau", "epoch_sched_per_batch"
    bug: str = ""  # "", "shuffle_labels", "noise_targets", "init_x100", "zeros_init",
    #               "frozen_but_bias", "no_apply", "softmax_from_logits"
    accum: int = 0
    pretrain_epochs: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _h(name: str, reason: str, **kw: Any) -> KC:
    return KC(f"keras_new/{name}", "healthy", reason, **kw)


def _b(name: str, broken: str, cause: str, reason: str, **kw: Any) -> KC:
    return KC(f"keras_new/{name}", "bad", reason, broken=broken, cause=cause, **kw)


# fmt: off
CONFIGS: list[KC] = [
    # ------------------------------ healthy ----------------------------------------------------
    _h("gru_seq3_adam_tfdata", "GRU(16), Adam 3e-3, tf.data reshuffled each epoch: standard",
       task="seq3", arch="gru", opt="adam", lr=3e-3, batch=32, n=384, epochs=6),
    _h("lstm_seq2_arrays_shuffle", "LSTM(16), Adam 3e-3, fit(x, y, shuffle=True): standard; the"
       " seeded replay of one batch order per epoch is Keras' behaviour, not a bug",
       task="seq2", arch="lstm", opt="adam", lr=3e-3, batch=32, n=320, epochs=6, pipeline="arrays"),
    _h("mha_tokens_bce", "Embedding + MultiHeadAttention(2 heads) + LayerNorm, Adam 2e-3, BCE:"
       " standard", task="tokens", arch="mha", opt="adam", lr=2e-3, batch=32, n=384, epochs=6,
       loss="bce"),
    _h("bn_mlp_digits_b8", "Dense-BatchNorm-ReLU at batch 8, Adam 1e-3: BN at small batch is noisy"
       " but trains", task="digits", arch="mlp_bn", opt="adam", lr=1e-3, batch=8, n=480, epochs=2),
    _h("bn_mlp_reg_b4_sgdm", "Dense-BatchNorm-ReLU at batch 4, SGD momentum 0.9 lr 0.01 on a"
       " regression: noisy but trains", task="reg", arch="mlp_bn", opt="sgdm", lr=0.01, batch=4,
       n=200, epochs=2, loss="mse"),
    _h("dropout_mlp_digits_arrays", "MLP with Dropout(0.3), Adam 2e-3, fit on arrays shuffle=True",
       task="digits", arch="mlp_dropout", opt="adam", lr=2e-3, batch=32, n=640, epochs=4,
       pipeline="arrays"),
    _h("mlp_digits_arrays_shuffle_8ep", "plain MLP, Adam 1e-3, fit(x, y, shuffle=True) for 8"
       " epochs: the replayed-order case, a healthy run", task="digits", arch="mlp", opt="adam",
       lr=1e-3, batch=64, n=512, epochs=8, pipeline="arrays"),
    _h("lr_scheduler_cb_digits", "SGD momentum lr 0.05 with LearningRateScheduler x0.6 per epoch:"
       " a standard decay", task="digits", arch="mlp", opt="sgdm", lr=0.05, batch=32, n=512,
       epochs=5, callback="lr_scheduler", pipeline="arrays"),
    _h("reduce_lr_plateau_reg", "Adam 1e-2 with ReduceLROnPlateau(loss, x0.5, patience 1):"
       " standard", task="reg", arch="mlp", opt="adam", lr=1e-2, batch=32, n=384, epochs=8,
       loss="mse", callback="plateau", pipeline="arrays"),
    _h("warmup_cosine_digits", "Adam with CosineDecay warm-up 1e-4 -> 3e-3 over 15 steps, then"
       " cosine decay: standard", task="digits", arch="mlp", opt="adam", lr=3e-3, batch=32, n=512,
       epochs=5, schedule="warmup_cosine"),
    _h("one_cycle_reg", "SGD momentum 0.9, one-cycle lr (0.004 -> 0.1 at 30% -> 0.001):"
       " standard", task="reg", arch="mlp", opt="sgdm", lr=0.1, batch=32, n=384, epochs=8,
       loss="mse", schedule="one_cycle"),
    _h("gauss_nll_negative", "MLP predicting mean and log-variance, Gaussian NLL, Adam 3e-3: the"
       " loss goes below zero by design", task="hetero", arch="mlp_nll", opt="adam", lr=5e-3,
       batch=32, n=384, epochs=16, loss="gauss_nll"),
    _h("linreg_to_1e-6", "linear model on noise-free linear targets, SGD lr 0.05: converges"
       " geometrically to ~1e-6", task="linear_exact", arch="linear", opt="sgd", lr=0.05, batch=32,
       n=320, epochs=10, loss="mse"),
    _h("history_digits_8ep", "per-epoch History loss, MLP Adam 1e-3, 8 epochs: standard",
       task="digits", arch="mlp", opt="adam", lr=1e-3, batch=32, n=512, epochs=8, record="epoch",
       pipeline="arrays"),
    _h("history_reg_3ep", "per-epoch History loss, MLP Adam 3e-3, 3 epochs: a short healthy test",
       task="reg", arch="mlp", opt="adam", lr=3e-3, batch=32, n=384, epochs=3, loss="mse",
       record="epoch", pipeline="arrays"),
    _h("history_gru_5ep", "per-epoch History loss, GRU Adam 3e-3, 5 epochs: standard",
       task="seq3", arch="gru", opt="adam", lr=3e-3, batch=32, n=384, epochs=5, record="epoch",
       pipeline="arrays"),
    _h("short_3steps_linreg", "3 steps of SGD lr 0.1 on a linear regression: a short test",
       task="linear_exact", arch="linear", opt="sgd", lr=0.1, batch=64, n=192, epochs=1,
       loss="mse"),
    _h("short_5steps_digits", "5 steps of Adam 1e-2 on the digits MLP: a short test",
       task="digits", arch="mlp", opt="adam", lr=1e-2, batch=64, n=320, epochs=1),
    _h("grad_accum4_digits", "Adam 2e-3 with gradient_accumulation_steps=4 at batch 16: standard",
       task="digits", arch="mlp", opt="adam", lr=2e-3, batch=16, n=480, epochs=3, accum=4),
    _h("finetune_small_lr", "3 unrecorded epochs of pre-training, then a recorded fine-tune at"
       " lr 1e-4 on the same task: a healthy test whose drop is small", task="digits", arch="mlp",
       opt="adam", lr=1e-4, batch=32, n=512, epochs=4, pretrain_epochs=3),
    _h("mae_reg_adam", "MLP, MAE loss, Adam 3e-3: standard", task="reg", arch="mlp", opt="adam",
       lr=3e-3, batch=32, n=384, epochs=6, loss="mae"),
    # ------------------------------ broken -----------------------------------------------------
    _b("blowup_dead_adam_lr1", "Adam lr 1.0 on a ReLU MLP (300x the usual 3e-3)", "lr_too_high",
       "a learning rate far past stability: blows up, then dead ReLUs leave it at chance",
       also=("chance_level", "dead_units", "non_finite"), mode="stall",
       task="digits", arch="mlp", opt="adam", lr=1.0, batch=32, n=512, epochs=4),
    _b("blowup_dead_sgd_lr3", "SGD lr 3.0 on a ReLU MLP (60x the usual 0.05)", "lr_too_high",
       "a learning rate far past stability", also=("chance_level", "dead_units", "non_finite"),
       mode="stall", task="digits", arch="mlp", opt="sgd", lr=3.0, batch=32, n=512, epochs=4),
    _b("shuffled_labels_digits", "training labels permuted (no signal)", "chance_level",
       "labels without signal: nothing to learn beyond the label frequencies",
       also=("plateau",), mode="stall", task="digits", arch="mlp", opt="adam", lr=1e-3, batch=32,
       n=512, epochs=4, bug="shuffle_labels"),
    _b("shuffled_labels_gru", "training labels permuted (no signal), GRU", "chance_level",
       "labels without signal", also=("plateau",), mode="stall", task="seq3", arch="gru",
       opt="adam", lr=3e-3, batch=32, n=384, epochs=6, bug="shuffle_labels"),
    _b("noise_targets_reg", "regression targets replaced by independent noise (no signal)",
       "chance_level", "targets without signal: the best is the target variance",
       also=("plateau",), mode="stall", task="reg", arch="mlp", opt="adam", lr=3e-3, batch=32,
       n=384, epochs=6, loss="mse", bug="noise_targets"),
    _b("init_x100_mlp", "Dense kernels initialised x100 (VarianceScaling scale 1e4)", "bad_init",
       "huge init: enormous logits, a loss far above chance that falls but stays off",
       also=("exploding_gradients", "lr_too_high"), mode="stall", task="digits", arch="mlp",
       opt="adam", lr=1e-3, batch=32, n=512, epochs=4, bug="init_x100"),
    _b("init_x100_gru", "GRU kernels initialised x100 (saturated gates)", "bad_init",
       "huge init saturates tanh/sigmoid: vanishing gradients", also=("plateau", "no_learning"),
       mode="stall", task="seq3", arch="gru", opt="adam", lr=3e-3, batch=32, n=384, epochs=6,
       bug="init_x100"),
    _b("zeros_init_relu_mlp", "all-zeros kernels on a ReLU MLP", "bad_init",
       "zero init: ReLU(0)=0 with zero gradient, only the output bias learns (chance level)",
       also=("dead_units", "chance_level", "no_learning"), mode="stall", task="digits", arch="mlp",
       opt="adam", lr=1e-3, batch=32, n=512, epochs=4, bug="zeros_init"),
    _b("frozen_but_bias", "every weight trainable=False except the output bias", "no_learning",
       "only a bias learns: it can reach the label frequencies, nothing more",
       also=("chance_level",), mode="frozen", task="digits", arch="mlp", opt="adam", lr=1e-2,
       batch=32, n=512, epochs=4, bug="frozen_but_bias"),
    _b("grads_not_applied", "custom train_step computes gradients but never applies them",
       "no_learning", "parameters never change", mode="frozen", task="digits", arch="mlp",
       opt="adam", lr=1e-3, batch=32, n=512, epochs=4, bug="no_apply"),
    _b("growing_lr_schedule", "ExponentialDecay with decay_rate 1.1 per step (lr grows 10%/step"
       " from 0.01)", "lr_too_high", "the lr passes the stability limit within the run",
       also=("non_finite", "exploding_gradients"), mode="divergence", task="reg", arch="mlp",
       opt="sgd", lr=0.01, batch=32, n=384, epochs=8, loss="mse", schedule="grow"),
    _b("softmax_from_logits",
       "softmax output fed to SparseCategoricalCrossentropy(from_logits=True)", "plateau",
       "double softmax: the loss cannot go below ~1.46 and gradients shrink",
       also=("lr_too_low", "chance_level"), mode="stall", task="digits", arch="mlp", opt="adam",
       lr=1e-3, batch=32, n=512, epochs=4, bug="softmax_from_logits"),
    _b("overfit_eval_digits60", "MLP 256x2 on 60 training digits for 40 epochs, judged on eval",
       "overfitting", "the eval loss falls then climbs while the train loss falls",
       mode="late_rise", judge="eval", task="digits", arch="mlp256", opt="adam", lr=3e-3,
       batch=16, n=60, epochs=40, record="epoch", pipeline="arrays"),
    _b("epoch_sched_per_batch", "per-epoch schedule lr=0.05*0.5**epoch stepped every batch",
       "lr_too_low", "the lr halves each step: ~0 after 20 steps, learning stops",
       also=("plateau",), mode="stall", task="digits", arch="mlp", opt="sgdm", lr=0.05, batch=32,
       n=512, epochs=5, callback="epoch_sched_per_batch"),
    _b("sorted_unshuffled_tfdata", "tf.data of rows sorted by label, never shuffled",
       "unshuffled_batches", "each batch holds one class: the model chases the current class",
       also=("oscillation",), mode="oscillation", task="digits", arch="mlp", opt="adam", lr=3e-3,
       batch=32, n=512, epochs=4, pipeline="tfdata_sorted"),
    _b("lr_too_low_gru", "Adam lr 1e-6 on a GRU (3000x too low)", "lr_too_low",
       "updates too small to move the loss", also=("plateau", "no_learning"), mode="stall",
       task="seq3", arch="gru", opt="adam", lr=1e-6, batch=32, n=384, epochs=6),
    _b("unscaled_features_sgd", "features x1000 (not standardised), SGD lr 0.01",
       "unscaled_features",
       "the curvature is 1e6 times larger: SGD diverges", also=("lr_too_high", "non_finite"),
       mode="non_finite", task="reg_x1000", arch="mlp", opt="sgd", lr=0.01, batch=32, n=384,
       epochs=4, loss="mse"),
]
# fmt: on

OPT_LABEL = {"sgd": "sgd", "sgdm": "sgd_momentum0.9", "adam": "adam"}


# ---------------------------------------------------------------------------------------------
# Models and losses
# ---------------------------------------------------------------------------------------------


def _kernel_init(keras: Any, cfg: KC) -> Any:
    if cfg.bug == "init_x100":  # default glorot_uniform has scale 1: x100 in std is 1e4 in var
        return keras.initializers.VarianceScaling(1e4, "fan_avg", "uniform")
    if cfg.bug == "zeros_init":
        return "zeros"
    return "glorot_uniform"


def build_model(keras: Any, cfg: KC, data: Data) -> Any:
    """The model of ``cfg`` (a functional model, a subclass for the no-apply bug)."""
    L = keras.layers
    ki = _kernel_init(keras, cfg)
    out_act = "softmax" if cfg.bug == "softmax_from_logits" else None
    if cfg.arch in ("gru", "lstm"):
        inp = keras.Input(data.x.shape[1:])
        rnn = L.GRU if cfg.arch == "gru" else L.LSTM
        h = rnn(16, kernel_initializer=ki)(inp)
    elif cfg.arch == "mha":
        inp = keras.Input(data.x.shape[1:], dtype="int32")
        e = L.Embedding(6, 16)(inp)
        a = L.MultiHeadAttention(num_heads=2, key_dim=8)(e, e)
        h = L.LayerNormalization()(e + a)
        h = L.GlobalAveragePooling1D()(h)
        h = L.Dense(16, activation="relu", kernel_initializer=ki)(h)
    elif cfg.arch == "linear":
        inp = keras.Input(data.x.shape[1:])
        h = inp
    else:
        inp = keras.Input(data.x.shape[1:])
        width, depth = (256, 2) if cfg.arch == "mlp256" else (64 if cfg.task == "digits" else 32, 1)
        h = inp
        for _ in range(depth):
            if cfg.arch == "mlp_bn":
                h = L.Dense(width, kernel_initializer=ki)(h)
                h = L.BatchNormalization()(h)
                h = L.Activation("relu")(h)
            else:
                h = L.Dense(width, activation="relu", kernel_initializer=ki)(h)
            if cfg.arch == "mlp_dropout":
                h = L.Dropout(0.3)(h)
    out = L.Dense(data.n_out, activation=out_act, kernel_initializer=ki)(h)
    if cfg.bug == "no_apply":
        return _no_apply_model(keras)(inp, out)
    return keras.Model(inp, out)


def _no_apply_model(keras: Any) -> Any:
    import tensorflow as tf

    class NoApply(keras.Model):  # type: ignore[misc,name-defined]
        """Keras' TF train_step without the optimizer step (the bug)."""

        def train_step(self, data: Any) -> Any:
            x, y = data
            with tf.GradientTape() as tape:
                y_pred = self(x, training=True)
                loss = self.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
                self._loss_tracker.update_state(loss, sample_weight=tf.shape(x)[0])
            tape.gradient(loss, self.trainable_weights)  # computed, never applied
            return self.compute_metrics(x, y, y_pred)

    return NoApply


def loss_fn(keras: Any, cfg: KC) -> Any:
    """The loss of ``cfg`` (a callable on (y_true, y_pred))."""
    if cfg.loss == "ce":
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if cfg.loss == "bce":
        return keras.losses.BinaryCrossentropy(from_logits=True)
    if cfg.loss == "mse":
        return keras.losses.MeanSquaredError()
    if cfg.loss == "mae":
        return keras.losses.MeanAbsoluteError()
    if cfg.loss == "gauss_nll":
        ops = keras.ops

        def gauss_nll(y_true: Any, y_pred: Any) -> Any:
            mu, log_var = y_pred[:, :1], y_pred[:, 1:]
            return ops.mean(0.5 * (log_var + ops.square(y_true - mu) * ops.exp(-log_var)))

        return gauss_nll
    raise ValueError(cfg.loss)


def _lr(keras: Any, cfg: KC, steps: int) -> Any:
    sched = keras.optimizers.schedules
    if cfg.schedule == "warmup_cosine":
        return sched.CosineDecay(
            1e-4, decay_steps=steps - 15, warmup_target=cfg.lr, warmup_steps=15
        )
    if cfg.schedule == "grow":
        return sched.ExponentialDecay(cfg.lr, decay_steps=1, decay_rate=1.1)
    if cfg.schedule == "one_cycle":
        return _one_cycle(keras, cfg.lr, steps)
    return cfg.lr


def _one_cycle(keras: Any, peak: float, steps: int) -> Any:
    ops = keras.ops

    class OneCycle(keras.optimizers.schedules.LearningRateSchedule):  # type: ignore[misc,name-defined]
        """Linear from peak/25 to peak over the first 30% of steps, cosine to peak/1000."""

        def __call__(self, step: Any) -> Any:
            s = ops.cast(step, "float32")
            up = 0.3 * steps
            lo, end = peak / 25.0, peak / 1000.0
            rise = lo + (peak - lo) * s / up
            t = ops.clip((s - up) / (steps - up), 0.0, 1.0)
            fall = end + (peak - end) * 0.5 * (1.0 + ops.cos(math.pi * t))
            return ops.where(s < up, rise, fall)

        def get_config(self) -> dict[str, Any]:
            return {}

    return OneCycle()


def make_optimizer(keras: Any, cfg: KC, steps: int) -> Any:
    lr = _lr(keras, cfg, steps)
    kw: dict[str, Any] = {}
    if cfg.accum:
        kw["gradient_accumulation_steps"] = cfg.accum
    if cfg.opt == "sgd":
        return keras.optimizers.SGD(lr, **kw)
    if cfg.opt == "sgdm":
        return keras.optimizers.SGD(lr, momentum=0.9, **kw)
    return keras.optimizers.Adam(lr, **kw)


def _callbacks(keras: Any, cfg: KC) -> list[Any]:
    if cfg.callback == "lr_scheduler":
        base = cfg.lr
        return [keras.callbacks.LearningRateScheduler(lambda epoch: base * 0.6**epoch)]
    if cfg.callback == "plateau":
        return [keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1,
                                                  min_delta=0.01, verbose=0)]
    if cfg.callback == "epoch_sched_per_batch":
        base = cfg.lr

        class PerBatch(keras.callbacks.Callback):  # type: ignore[misc,name-defined]
            """The bug: a per-epoch schedule called with the global batch index."""

            def __init__(self) -> None:
                super().__init__()
                self.step = 0

            def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
                self.model.optimizer.learning_rate.assign(base * 0.5**self.step)
                self.step += 1

        return [PerBatch()]
    return []


# ---------------------------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------------------------


def _apply_data_bug(cfg: KC, data: Data, seed: int) -> None:
    rng = np.random.default_rng(5000 + seed)
    if cfg.bug == "shuffle_labels":
        data.y = data.y[rng.permutation(len(data.y))]
    elif cfg.bug == "noise_targets":
        data.y = (rng.normal(size=data.y.shape) * data.y.std()).astype("float32")
    if cfg.pipeline == "tfdata_sorted":
        order = np.argsort(data.y.ravel(), kind="stable")
        data.x, data.y = data.x[order], data.y[order]


def run(cfg: KC, seed: int) -> dict[str, Any]:
    """Train ``cfg`` at ``seed`` and return its run record."""
    keras = _keras()
    import tensorflow as tf

    from pytest_losstrend.fixture import LossTrend

    keras.utils.set_random_seed(seed)
    data = load(cfg.task, seed, cfg.n)
    _apply_data_bug(cfg, data, seed)
    ref = reference(cfg.loss, data.y)  # from the training targets, before training
    n = len(data.x)
    steps_per_epoch = math.ceil(n / cfg.batch)
    model = build_model(keras, cfg, data)
    if cfg.bug == "frozen_but_bias":
        for layer in model.layers:
            for v in layer.weights:
                v.trainable = False
        model.layers[-1].bias.trainable = True
    loss = loss_fn(keras, cfg)
    model.compile(optimizer=make_optimizer(keras, cfg, steps_per_epoch * cfg.epochs), loss=loss)

    def full_loss() -> float:
        return float(loss(data.y, model(data.x, training=False)))

    if cfg.pretrain_epochs:
        pre = keras.optimizers.Adam(1e-3)
        model.compile(optimizer=pre, loss=loss)
        model.fit(data.x, data.y, batch_size=cfg.batch, epochs=cfg.pretrain_epochs, verbose=0)
        model.compile(optimizer=make_optimizer(keras, cfg, steps_per_epoch * cfg.epochs),
                      loss=loss)
    before = full_loss()

    lt = LossTrend()
    callbacks = _callbacks(keras, cfg)
    fit_kw: dict[str, Any] = {"epochs": cfg.epochs, "verbose": 0}
    if cfg.record == "epoch":
        fit_kw["validation_data"] = (data.xe, data.ye)
    else:
        callbacks.append(lt.keras_callback())
    if cfg.pipeline == "arrays":
        history = model.fit(data.x, data.y, batch_size=cfg.batch, shuffle=True,
                            callbacks=callbacks, **fit_kw)
    else:
        ds = tf.data.Dataset.from_tensor_slices((data.x, data.y))
        if cfg.pipeline == "tfdata":
            ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
        history = model.fit(ds.batch(cfg.batch), callbacks=callbacks, **fit_kw)
    if cfg.record == "epoch":
        lt.record(history)
    series = {"train": lt.losses("train")}
    if lt.losses("eval"):
        series["eval"] = lt.losses("eval")
    return {
        "config": cfg.name,
        "family": cfg.family,
        "mode": cfg.mode,
        "judge": cfg.judge,
        "framework": "keras",
        "optimizer": OPT_LABEL[cfg.opt],
        "lr": cfg.lr,
        "batch_size": cfg.batch,
        "record": cfg.record,
        "seed": seed,
        "steps_per_epoch": steps_per_epoch,
        "series": {k: [round6(v) for v in vs] for k, vs in series.items()},
        "full_train_loss": [round6(before), round6(full_loss())],
        "broken": cfg.broken,
        "expected_cause": cfg.cause,
        "also_acceptable": list(cfg.also),
        "reason": cfg.reason,
        "reference": round6(ref),
        "loss": cfg.loss,
    }


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--only", default="")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    names = [c.name for c in CONFIGS]
    if len(set(names)) != len(names):
        raise RuntimeError("duplicate configuration names")
    chosen = [c for c in CONFIGS if args.only in c.name]
    keras = _keras()
    t0 = time.perf_counter()
    fresh: list[dict[str, Any]] = []
    for i, cfg in enumerate(chosen):
        t1 = time.perf_counter()
        for seed in range(args.seeds):
            if (len(fresh) + 1) % 20 == 0:
                keras.backend.clear_session()
            fresh.append(run(cfg, seed))
        runs = fresh[-args.seeds :]
        tr = [[float(v) for v in r["series"][r["judge"]]] for r in runs]
        med = lambda xs: float(np.median(xs))  # noqa: E731
        print(f"[{i + 1}/{len(chosen)}] {cfg.name} ({cfg.family}) {time.perf_counter() - t1:.1f}s"
              f" n={len(tr[0])} first={med([t[0] for t in tr]):.4g}"
              f" last={med([t[-1] for t in tr]):.4g} ref={runs[0]['reference']:.4g}"
              f" total={time.perf_counter() - t0:.0f}s", flush=True)
    out: Path = args.out
    runs_all = fresh
    if args.only and out.exists():
        old = json.loads(out.read_text(encoding="utf-8"))["runs"]
        redone = {r["config"] for r in fresh}
        rank = {name: i for i, name in enumerate(names)}
        runs_all = sorted([r for r in old if r["config"] not in redone] + fresh,
                          key=lambda r: (rank.get(r["config"], len(rank)), r["seed"]))
    write_corpus(out, runs_all)
    print(f"wrote {len(runs_all)} runs to {out} in {time.perf_counter() - t0:.0f}s "
          f"(schema {SCHEMA})")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())

"""Real, small training runs that go wrong for one known reason each, with their healthy twins.

Every :class:`Scenario` trains a real model (torch, or Keras for a few) on a bundled scikit-learn
data set or synthetic data, in well under a second on one thread, recording its loss through
a :class:`~pytest_losstrend.capture.recorder.Recorder` and watching the model with
``lt.watch``. The bad side carries one known fault (a learning rate past the stability limit,
a missing ``zero_grad``, unscaled inputs...); the twin is the same run with the fault fixed. The
test suite, the diagnosis benchmark and the catalogue of known-bad configurations all run them:
the bad side must fail with :attr:`Scenario.cause` first among its diagnoses, the twin must
pass.

:func:`run_scenario` runs one side under a seed and returns the verdict with its diagnoses,
exactly as the ``loss_decreases`` marker would judge it (fail-fast, warnings captured, the
sharpness measured on failure, the other series judged with the default criteria).

torch, TensorFlow and scikit-learn are imported inside the functions that use them, so
importing this module costs numpy only.
"""

from __future__ import annotations

import functools
import itertools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_losstrend.capture.recorder import LossTrendStop, Recorder
from pytest_losstrend.capture.seeding import seed_everything
from pytest_losstrend.verdict.criteria import Criteria
from pytest_losstrend.verdict.result import Verdict
from pytest_losstrend.verdict.trend import judge

if TYPE_CHECKING:
    import torch

    from pytest_losstrend.diagnosis.evidence import Evidence

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
Runner = Callable[[Recorder, bool], None]


@dataclass(frozen=True)
class Scenario:
    """One known way a training run goes wrong, and its healthy twin.

    Attributes:
        name: a short identifier (``"lr_too_high"``, ``"keras_no_learning"``...).
        cause: the cause code the bad run's top diagnosis must carry.
        framework: ``"torch"`` or ``"keras"``.
        criteria: the marker criteria the scenario's test judges with.
        explanation: what goes wrong and why the curve looks the way it does.
        fix: what the twin does differently.
        bad_status: the verdict status the bad run honestly gets (``"fail"``, or
            ``"inconclusive"`` where the curve alone cannot say more; it still carries a
            diagnosis).
        train: the training loop, ``train(lt, bad)``.
    """

    name: str
    cause: str
    framework: str
    criteria: dict[str, Any]
    explanation: str
    fix: str
    train: Runner = field(repr=False, compare=False)
    bad_status: str = "fail"

    def run(self, lt: Recorder, *, bad: bool) -> None:
        """Train the bad run (``bad=True``) or its twin, recording into ``lt``.

        The caller seeds the random generators. Under ``lt.fail_fast`` a non-finite or
        diverging loss raises :class:`~pytest_losstrend.fixture.LossTrendStop` out of here,
        as it would out of a marked test's body: the caller decides what to do with it.
        """
        self.train(lt, bad)


# -- data ----------------------------------------------------------------------------------------
# The data sets are fixed (they do not depend on the seed); the seed moves the initialisation,
# the mini-batch order and the synthetic noise drawn inside the runs.


def _standardise(a: FloatArray) -> FloatArray:
    std = a.std(0)
    return np.asarray((a - a.mean(0)) / np.where(std > 0, std, 1.0), dtype=np.float64)


@functools.cache
def _diabetes() -> tuple[FloatArray, FloatArray]:
    """442 x 10 standardised features and a standardised target (sklearn's diabetes)."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    return _standardise(np.asarray(x, np.float64)), _standardise(np.asarray(y, np.float64))


@functools.cache
def _digits() -> tuple[FloatArray, np.ndarray[Any, np.dtype[np.int64]]]:
    """1797 8x8 digit images as 64 standardised features, and labels 0..9."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return _standardise(np.asarray(x, np.float64)), np.asarray(y, np.int64)


@functools.cache
def _breast_cancer() -> tuple[FloatArray, FloatArray]:
    """569 x 30 standardised features and 0/1 labels."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    return _standardise(np.asarray(x, np.float64)), np.asarray(y, np.float64)


def _t(a: Any, dtype: Any = None) -> torch.Tensor:
    import torch

    return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype or torch.float32)


# -- a training loop -----------------------------------------------------------------------------


def _loop(
    lt: Recorder,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    data: tuple[torch.Tensor, torch.Tensor],
    *,
    steps: int,
    batch_size: int | None = None,
    shuffle: bool = True,
    zero_grad: bool = True,
    eval_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    eval_every: int = 0,
    watch_rows: int = 256,
    after_step: Callable[[], object] | None = None,
) -> None:
    """The loop most tests write: watch, then ``steps`` optimizer steps on the full batch or on
    mini-batches (reshuffled each epoch unless ``shuffle=False``), recording each step's loss,
    and every ``eval_every`` steps the loss on ``eval_data`` as series ``"eval"``;
    ``after_step`` runs after each optimizer step (a scheduler's ``step``)."""
    import torch

    x, y = data
    lt.watch(model, opt, loss_fn=loss_fn, batch=(x[:watch_rows], y[:watch_rows]))
    n = len(x)
    batches: list[torch.Tensor] = []
    for step in range(steps):
        if batch_size is None:
            xb, yb = x, y
        else:
            if not batches:
                order = torch.randperm(n) if shuffle else torch.arange(n)
                batches = list(torch.split(order, batch_size))
            idx = batches.pop(0)
            xb, yb = x[idx], y[idx]
        if zero_grad:
            opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        torch.autograd.backward(loss)
        opt.step()
        if after_step is not None:
            after_step()
        lt.record(loss)
        if eval_data is not None and eval_every and (step + 1) % eval_every == 0:
            with torch.no_grad():
                lt.record(loss_fn(model(eval_data[0]), eval_data[1]), series="eval")


def _mlp(sizes: list[int], act: Callable[[], torch.nn.Module]) -> torch.nn.Sequential:
    import torch

    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act())
    return torch.nn.Sequential(*layers)


# -- the torch scenarios -------------------------------------------------------------------------


def _lr_too_high(lt: Recorder, bad: bool) -> None:
    import torch
    from torch.nn.functional import mse_loss

    x = torch.rand(100, 1) * 10
    y = 2 * x + 1 + 0.5 * torch.randn(100, 1)
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0 if bad else 0.01)
    _loop(lt, model, opt, mse_loss, (x, y), steps=60)


def _unscaled_features(lt: Recorder, bad: bool) -> None:
    import torch
    from torch.nn.functional import mse_loss

    xs, ys = _diabetes()
    if bad:
        # Three columns in other units (grams instead of kilograms, say).
        xs = xs * np.array([1000.0, 1000.0, 1000.0] + [1.0] * 7)
    x, y = _t(xs), _t(ys[:, None])
    model = torch.nn.Linear(10, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    _loop(lt, model, opt, mse_loss, (x, y), steps=60)


def _non_finite(lt: Recorder, bad: bool) -> None:
    import torch

    xs, ys = _breast_cancer()
    x, y = _t(xs), _t(ys[:, None])
    model = torch.nn.Linear(30, 1)

    def hand_bce(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # The textbook formula on probabilities: once a sigmoid saturates to exactly 1.0 in
        # float32, log(1 - p) is -inf and 0 * -inf is NaN, even for a correct prediction.
        p = torch.sigmoid(z)
        return -(t * torch.log(p) + (1 - t) * torch.log(1 - p)).mean()

    loss_fn = hand_bce if bad else torch.nn.functional.binary_cross_entropy_with_logits
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    _loop(lt, model, opt, loss_fn, (x, y), steps=80)


def _no_learning(lt: Recorder, bad: bool) -> None:
    import torch

    xs, ys = _digits()
    x, y = _t(xs), _t(ys, torch.long)
    model = _mlp([64, 32, 10], torch.nn.ReLU)
    # The classic: the optimizer was built for another instance (a model re-created after the
    # optimizer, or a copy), so the model being trained never moves.
    params = _mlp([64, 32, 10], torch.nn.ReLU).parameters() if bad else model.parameters()
    opt = torch.optim.SGD(params, lr=0.1)
    _loop(lt, model, opt, torch.nn.functional.cross_entropy, (x, y), steps=120, batch_size=32)


def _stale_gradients(lt: Recorder, bad: bool) -> None:
    import torch
    from torch.nn.functional import mse_loss

    xs, ys = _diabetes()
    x, y = _t(xs), _t(ys[:, None])
    model = torch.nn.Linear(10, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.02)
    _loop(lt, model, opt, mse_loss, (x, y), steps=100, batch_size=64, zero_grad=not bad)


def _dead_units(lt: Recorder, bad: bool) -> None:
    import torch
    from torch.nn.functional import mse_loss

    xs, ys = _diabetes()
    x, y = _t(xs), _t(ys[:, None])
    model = _mlp([10, 64, 64, 1], torch.nn.ReLU)
    if bad:
        with torch.no_grad():
            for layer in model:
                if isinstance(layer, torch.nn.Linear) and layer.out_features > 1:
                    layer.bias.fill_(-10.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    _loop(lt, model, opt, mse_loss, (x, y), steps=150, batch_size=128)


def _shape_mismatch(lt: Recorder, bad: bool) -> None:
    import torch
    from torch.nn.functional import mse_loss

    x = torch.randn(256, 5)
    y = x @ torch.randn(5) + 0.1 * torch.randn(256)  # shape (256,)
    model = torch.nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    if bad:
        # model(x) is (256, 1) against y (256,): mse_loss broadcasts to (256, 256) and
        # compares every prediction with every target; the best it can do is predict mean(y).
        _loop(lt, model, opt, mse_loss, (x, y), steps=80, batch_size=32)
    else:
        _loop(lt, model, opt, mse_loss, (x, y[:, None]), steps=80, batch_size=32)


def _overfitting(lt: Recorder, bad: bool) -> None:
    import torch
    from torch.nn.functional import mse_loss

    w = torch.randn(8, 1)

    def data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Mostly linear, so that 30 rows teach something before their noise is memorised.
        x = torch.randn(n, 8)
        return x, x @ w + 0.3 * torch.sin(3 * x[:, :1]) + 1.5 * torch.randn(n, 1)

    x, y = data(30 if bad else 1000)
    model = _mlp([8, 128, 128, 1], torch.nn.ReLU)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    _loop(lt, model, opt, mse_loss, (x, y), steps=200, batch_size=None if bad else 64,
          eval_data=data(500), eval_every=4)


def _blobs(n: int, classes: int, dim: int, spread: float) -> tuple[FloatArray, FloatArray]:
    """``n`` points around ``classes`` random centres (spread ``spread``) with unit noise,
    in random order, and their labels; drawn from numpy's global (seeded) generator."""
    centres = np.random.randn(classes, dim) * spread
    y = np.random.randint(0, classes, n)
    return centres[y] + np.random.randn(n, dim), y.astype(np.float64)


def _unshuffled_batches(lt: Recorder, bad: bool) -> None:
    import torch

    xs, ys = _blobs(3200, 5, 8, 0.6)
    n_train = 2400
    order = np.argsort(ys[:n_train], kind="stable")  # the file came sorted by label
    x, y = _t(xs[:n_train][order]), _t(ys[:n_train][order], torch.long)
    xe, ye = _t(xs[n_train:]), _t(ys[n_train:], torch.long)
    model = torch.nn.Linear(8, 5)
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    steps_per_epoch = -(-n_train // 32)
    _loop(lt, model, opt, torch.nn.functional.cross_entropy, (x, y),
          steps=8 * steps_per_epoch, batch_size=32, shuffle=not bad,
          eval_data=(xe, ye), eval_every=steps_per_epoch)


def _bad_init(lt: Recorder, bad: bool) -> None:
    import torch

    xs, ys = _digits()
    x, y = _t(xs), _t(ys, torch.long)
    model = _mlp([64, 64, 10], torch.nn.Tanh)
    if bad:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(50.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    _loop(lt, model, opt, torch.nn.functional.cross_entropy, (x, y), steps=100, batch_size=64)


def _lr_too_low(lt: Recorder, bad: bool) -> None:
    import torch
    from torch.nn.functional import mse_loss

    xs, ys = _diabetes()
    x, y = _t(xs), _t(ys[:, None])
    model = _mlp([10, 32, 1], torch.nn.Tanh)
    opt = torch.optim.SGD(model.parameters(), lr=1e-6 if bad else 0.05)
    _loop(lt, model, opt, mse_loss, (x, y), steps=80)


def _oscillation(lt: Recorder, bad: bool) -> None:
    import torch
    from torch.nn.functional import mse_loss

    xs, ys = _diabetes()
    x, y = _t(xs), _t(ys[:, None])
    model = torch.nn.Linear(10, 1)
    # lr = 0.2 is 0.8 of plain gradient descent's limit 2/lambda_max (lambda_max = 8.05 here);
    # heavy-ball momentum stays stable up to 2(1 + momentum)/lambda_max, but at 0.99 it damps
    # each swing by only 0.5% a step.
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.99 if bad else 0.9)
    _loop(lt, model, opt, mse_loss, (x, y), steps=60)


def _plateau(lt: Recorder, bad: bool) -> None:
    import torch

    xs, ys = _digits()
    x, y = _t(xs), _t(ys, torch.long)
    net = _mlp([64, 64, 10], torch.nn.ReLU)
    # The bug: a softmax layer at the end of the model, and CrossEntropyLoss, which applies
    # log-softmax itself, on top. Probabilities in [0, 1] taken as logits confine the loss to
    # [1.46, 2.46] and the gradient through two softmaxes all but vanishes.
    model = torch.nn.Sequential(net, torch.nn.Softmax(dim=-1)) if bad else net
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    _loop(lt, model, opt, torch.nn.CrossEntropyLoss(), (x, y), steps=120, batch_size=64)


def _exploding_gradients(lt: Recorder, bad: bool) -> None:
    import torch
    from torch.nn.functional import mse_loss

    xs, ys = _diabetes()
    x, y = _t(xs), _t(ys[:, None])
    model = _mlp([10] + [32] * 9 + [1], torch.nn.Identity)
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                # Orthogonal weights keep a deep linear net's signal (and gradient) at scale;
                # a gain of 1.5 multiplies both by 1.5 per layer: 1.5^10 = 58x end to end.
                torch.nn.init.orthogonal_(layer.weight, gain=1.5 if bad else 1.0)
                layer.bias.zero_()
    opt = torch.optim.SGD(model.parameters(), lr=3e-4)
    _loop(lt, model, opt, mse_loss, (x, y), steps=80)


def _adam_lr_too_high(lt: Recorder, bad: bool) -> None:
    import torch
    from torch.nn.functional import mse_loss

    xs, ys = _diabetes()
    x, y = _t(xs), _t(ys[:, None])
    model = _mlp([10, 32, 1], torch.nn.ReLU)
    # Adam moves every weight by about lr per step whatever the gradient's size: at lr=3 the
    # first step throws each weight 3 units away, the usual default being 1e-3.
    opt = torch.optim.Adam(model.parameters(), lr=3.0 if bad else 3e-3)
    _loop(lt, model, opt, mse_loss, (x, y), steps=80, batch_size=64)


def _growing_lr_schedule(lt: Recorder, bad: bool) -> None:
    import torch
    from torch.nn.functional import mse_loss

    xs, ys = _diabetes()
    x, y = _t(xs), _t(ys[:, None])
    model = torch.nn.Linear(10, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    # A decay factor mistyped as a growth factor: gamma=1.1 instead of 0.9 (or 1/1.1).
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=1.1 if bad else 0.97)
    _loop(lt, model, opt, mse_loss, (x, y), steps=60, after_step=sched.step)


def _unscaled_target(lt: Recorder, bad: bool) -> None:
    import torch
    from torch.nn.functional import mse_loss

    xs, ys = _diabetes()
    # The bug: the target in its raw units (here 1000x the standardised one), features fine.
    x, y = _t(xs), _t(ys[:, None] * (1000.0 if bad else 1.0))
    model = _mlp([10, 32, 1], torch.nn.ReLU)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    _loop(lt, model, opt, mse_loss, (x, y), steps=80, batch_size=64)


def _frozen_weights(lt: Recorder, bad: bool) -> None:
    import torch

    xs, ys = _digits()
    x, y = _t(xs), _t(ys, torch.long)
    model = _mlp([64, 32, 10], torch.nn.ReLU)
    if bad:
        for name, p in model.named_parameters():
            if name.endswith("weight"):
                p.requires_grad_(False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    _loop(lt, model, opt, torch.nn.functional.cross_entropy, (x, y), steps=120, batch_size=32)


# -- the Keras scenarios -------------------------------------------------------------------------


def _keras_lr_too_high(lt: Recorder, bad: bool) -> None:
    import keras

    x = (np.random.rand(100, 1) * 10).astype("float32")
    y = (2 * x + 1 + 0.5 * np.random.randn(100, 1)).astype("float32")
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0 if bad else 0.01),
                  loss="mse")
    lt.watch(model, batch=(x, y))
    model.fit(x, y, epochs=6, batch_size=10, callbacks=[lt.keras_callback()], verbose=0)


def _keras_no_learning(lt: Recorder, bad: bool) -> None:
    import keras

    xs, ys = _diabetes()
    x, y = xs.astype("float32"), ys[:, None].astype("float32")
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(1)])
    if bad:
        # Meant to freeze a pretrained base, this freezes the whole model: fit runs, the
        # weights never move and the loss is mini-batch noise around its first level.
        model.trainable = False
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse")
    lt.watch(model, batch=(x[:256], y[:256]))
    model.fit(x, y, epochs=5, batch_size=32, callbacks=[lt.keras_callback()], verbose=0)


def _keras_frozen_weight(lt: Recorder, bad: bool) -> None:
    import keras

    class Linear(keras.layers.Layer):  # type: ignore[misc]
        """A hand-written bias-free dense layer; ``train_kernel=False`` is the bug."""

        def __init__(self, units: int, train_kernel: bool) -> None:
            super().__init__()
            self.units = units
            self.train_kernel = train_kernel

        def build(self, input_shape: tuple[int, ...]) -> None:
            self.kernel = self.add_weight(shape=(input_shape[-1], self.units),
                                          initializer="glorot_uniform",
                                          trainable=self.train_kernel)

        def call(self, inputs: Any) -> Any:
            return inputs @ self.kernel

    xs, ys = _diabetes()
    x, y = xs.astype("float32"), ys[:, None].astype("float32")
    # Every instance of the layer has the bug, so no weight of the model can learn.
    model = keras.Sequential([keras.Input((10,)), Linear(32, train_kernel=not bad),
                              keras.layers.ReLU(), Linear(1, train_kernel=not bad)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse")
    lt.watch(model, batch=(x[:256], y[:256]))
    model.fit(x, y, epochs=8, batch_size=64, callbacks=[lt.keras_callback()], verbose=0)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "lr_too_high", "lr_too_high", "torch", {},
        "Linear regression on x in [0, 10] (y = 2x + 1) with SGD lr=1.0: the curvature "
        "lambda_max of the MSE is about 70, so any lr above 2/70 = 0.029 multiplies the error "
        "along that direction by |1 - lr*lambda| > 1 every step and the loss explodes.",
        "lr=0.01, below the stability limit 2/lambda_max.",
        _lr_too_high,
    ),
    Scenario(
        "unscaled_features", "unscaled_features", "torch", {},
        "Diabetes regression with three features in units 1000x larger: the Hessian of the "
        "MSE grows with the feature variance (10^6 x), so lr=0.1, fine for standardised "
        "inputs, is far past the stability limit and the loss explodes.",
        "Standardise every feature (StandardScaler).",
        _unscaled_features,
    ),
    Scenario(
        "non_finite", "non_finite", "torch", {},
        "Logistic regression with a hand-written binary cross-entropy on sigmoid outputs: "
        "as the classifier grows confident, sigmoid saturates to exactly 1.0 in float32 and "
        "(1 - y) * log(1 - p) is 0 * -inf = NaN, while the loss was falling.",
        "BCEWithLogitsLoss (log-sum-exp on the logits).",
        _non_finite,
    ),
    Scenario(
        "no_learning", "no_learning", "torch", {},
        "The optimizer holds the parameters of another instance of the model, so the trained "
        "one never moves: the mini-batch loss is noise around a constant.",
        "optimizer = SGD(model.parameters(), ...).",
        _no_learning,
    ),
    Scenario(
        "stale_gradients", "stale_gradients", "torch", {},
        "optimizer.zero_grad() is never called: every step applies the sum of all gradients "
        "so far, a momentum of 1 with no damping, and the loss swings and grows.",
        "Call optimizer.zero_grad() before each backward().",
        _stale_gradients,
    ),
    Scenario(
        "dead_units", "dead_units", "torch", {},
        "An MLP whose hidden ReLU biases start at -10: every unit outputs zero on every "
        "sample, no gradient reaches the hidden layers and only the output bias learns.",
        "The default initialisation (zero-centred biases).",
        _dead_units,
    ),
    Scenario(
        "shape_mismatch", "shape_mismatch", "torch", {"min_drop": 0.5},
        "Predictions of shape (N, 1) against targets of shape (N,): mse_loss broadcasts them "
        "to (N, N), so the best the model can do is predict the mean target everywhere and "
        "the loss cannot fall below the target's variance. The data is a linear function of "
        "the inputs plus a little noise, so a correct fit removes over 99% of the loss; "
        "min_drop=0.5 says what any correct fit achieves, and the broadcast run, which drops "
        "a few % at most, fails it. With the default min_drop=0.1 the verdict is only "
        "inconclusive: the mini-batch noise cannot confirm a drop below 10%.",
        "pred.squeeze(-1), or targets of shape (N, 1).",
        _shape_mismatch,
    ),
    Scenario(
        "overfitting", "overfitting", "torch", {"series": "eval"},
        "An 8-128-128-1 MLP trained with Adam on 30 rows of a noisy, mostly linear "
        "regression, the held-out loss (500 rows) recorded every 4 steps as series 'eval': "
        "the training loss keeps falling to zero while the held-out loss falls, then climbs "
        "as the model memorises the 30 rows' noise.",
        "1000 training rows (more data), in mini-batches of 64.",
        _overfitting,
    ),
    Scenario(
        "unshuffled_batches", "unshuffled_batches", "torch", {},
        "A 5-class classifier fed its training rows sorted by label, in batches of 32, never "
        "shuffled: each batch holds one class, so every step pulls the model towards the "
        "class of the moment and away from the others. The training loss repeats with the "
        "period of an epoch (low inside each class's block, high where the next one starts) "
        "and the held-out loss, measured at the end of each epoch, does not fall: the model "
        "always ends the epoch biased towards the last class.",
        "Shuffle each epoch (DataLoader(shuffle=True)).",
        _unshuffled_batches,
    ),
    Scenario(
        "bad_init", "bad_init", "torch", {"below": 1.0},
        "A tanh digits classifier with every weight 50x its default: the hidden units "
        "saturate at +-1 and the logits are huge, so the first loss is about 18x the chance "
        "level ln(10) and, although it falls, it is still ten times chance after 100 steps. "
        "A healthy run gets under 1.0 (below=1.0); this one cannot.",
        "The default (Kaiming-uniform) initialisation.",
        _bad_init,
    ),
    Scenario(
        "lr_too_low", "lr_too_low", "torch", {},
        "SGD with lr=1e-6 on a small regression MLP: each step moves the weights by about a "
        "millionth of themselves and the loss does not visibly fall.",
        "lr=0.05.",
        _lr_too_low,
    ),
    Scenario(
        "oscillation", "oscillation", "torch", {},
        "Full-batch SGD with momentum 0.99 on linear regression: the heavy ball overshoots "
        "and swings back and forth, damped by only 0.5% a step, so the loss oscillates far "
        "more than it falls.",
        "momentum=0.9.",
        _oscillation,
    ),
    Scenario(
        "plateau", "plateau", "torch", {},
        "A softmax layer fed to CrossEntropyLoss, which applies log-softmax itself: the "
        "probabilities are taken as logits, the loss is confined to [1.46, 2.46] and learning "
        "stalls on a plateau far above a healthy classifier's.",
        "Feed the logits to CrossEntropyLoss (no softmax layer).",
        _plateau,
    ),
    Scenario(
        "exploding_gradients", "exploding_gradients", "torch", {},
        "A 10-layer linear network initialised with orthogonal weights of gain 1.5: the "
        "forward pass multiplies the signal, and the backward pass the gradient, by 1.5 per "
        "layer (58x end to end), so the first gradient norm is about 2e4 and the first SGD "
        "steps throw the weights into a region where it grows 10-100x a step.",
        "Orthogonal weights of gain 1 (norm-preserving), or clip the gradient norm.",
        _exploding_gradients,
    ),
    Scenario(
        "adam_lr_too_high", "lr_too_high", "torch", {},
        "Adam at lr=3 on a small ReLU regression MLP (diabetes, batches of 64): Adam moves "
        "every weight by about lr per step whatever its gradient, so the first step throws "
        "each weight 3 units away and the loss jumps 10^5x within two steps.",
        "lr=3e-3 (Adam's usual range is 1e-4..1e-2).",
        _adam_lr_too_high,
    ),
    Scenario(
        "growing_lr_schedule", "lr_too_high", "torch", {},
        "Linear regression with SGD lr=0.05 and ExponentialLR(gamma=1.1), a decay factor "
        "written as a growth factor: the learning rate passes the stability limit "
        "2/lambda_max = 0.25 after about 17 steps and the loss explodes; the watched "
        "optimizer shows the learning rate growing.",
        "A decaying schedule (gamma=0.97).",
        _growing_lr_schedule,
    ),
    Scenario(
        "unscaled_target", "lr_too_high", "torch", {},
        "A ReLU regression MLP (SGD lr=0.05) on a target 1000x its standardised scale, the "
        "features fine: the first gradients are 1000x larger, the output weights jump to "
        "hundreds and the curvature seen by the hidden layer grows with their square, so "
        "lr=0.05 is far past the stability limit and the loss explodes. The diagnosis is "
        "lr_too_high, which is what happens (a lr about 10^6x smaller would be stable), but "
        "the root is the target's scale: the rules look at the inputs, not the targets. "
        "(On a linear model the same target only scales the loss by 10^6 and trains fine.)",
        "Standardise the target (y - mean) / std, and undo it on the predictions.",
        _unscaled_target,
    ),
    Scenario(
        "frozen_weights", "no_learning", "torch", {},
        "A digits MLP whose weight matrices have requires_grad=False (only the biases train): "
        "the optimizer skips the frozen weights, the biases alone can only learn the class "
        "frequencies and the loss stays near chance level ln(10).",
        "requires_grad=True on the weights meant to learn (the default).",
        _frozen_weights,
    ),
    Scenario(
        "keras_lr_too_high", "lr_too_high", "keras", {},
        "The TensorFlow write-up: Keras linear regression on x in [0, 10] with SGD "
        "learning_rate=1.0, trained with model.fit in batches of 10: past the stability "
        "limit, the loss explodes within the first epoch.",
        "learning_rate=0.01.",
        _keras_lr_too_high,
    ),
    Scenario(
        "keras_no_learning", "no_learning", "keras", {},
        "model.trainable = False on the whole model (meant for a pretrained base only): "
        "fit runs without complaint, no weight moves, and the loss is noise around its "
        "first level.",
        "Freeze only the base (base.trainable = False) and keep the head trainable.",
        _keras_no_learning,
    ),
    Scenario(
        "keras_frozen_weight", "no_learning", "keras", {},
        "A hand-written Keras layer whose kernel is created with add_weight(trainable=False): "
        "every instance of it is frozen, fit runs without complaint, no weight moves and the "
        "loss is mini-batch noise around its first level.",
        "add_weight(..., trainable=True) (the default) for the kernel.",
        _keras_frozen_weight,
    ),
)


# -- running one ---------------------------------------------------------------------------------


@dataclass
class ScenarioRun:
    """One executed side of a scenario, ready to be judged with or without its evidence.

    Attributes:
        scenario: what ran.
        bad: whether it was the bad side.
        seed: the seed it ran under.
        lt: the :class:`Recorder` it recorded into (watching finished).
        verdict: the verdict of the judged series, without diagnoses (the stop's verdict when
            fail-fast ended the run).
        criteria: the criteria it was judged with.
        warnings: the messages of the warnings the run emitted.
    """

    scenario: Scenario
    bad: bool
    seed: int
    lt: Recorder
    verdict: Verdict
    criteria: Criteria
    warnings: list[str]

    def diagnosed(self, *, use_evidence: bool = True) -> Verdict:
        """The verdict with its ranked built-in diagnoses, as the marker would give it;
        ``use_evidence=False`` diagnoses from the recorded curves (and warnings) alone."""
        from pytest_losstrend.diagnosis.context import context_for
        from pytest_losstrend.diagnosis.ranking import with_diagnoses
        from pytest_losstrend.diagnosis.rules import builtin_diagnoses

        series = self.lt.as_dict()
        if self.verdict.ok or self.criteria.series not in series:
            return self.verdict
        evidence: Evidence | None = self.lt.evidence if use_evidence else None
        ctx = context_for(series, self.criteria.series, self.verdict, evidence=evidence,
                          warnings=self.warnings)
        return with_diagnoses(self.verdict, builtin_diagnoses(ctx))


def execute(scenario: Scenario, *, bad: bool, seed: int, fail_fast: bool = True) -> ScenarioRun:
    """Run one side of ``scenario`` under ``seed`` the way the marker runs a test.

    The generators are seeded (the framework imported first, so that it is seeded too), the
    run records into a fresh :class:`Recorder` with the scenario's criteria (fail-fast like
    the marker: a :class:`LossTrendStop` ends the run with its verdict), warnings are captured
    as the marker captures them, watching is finished and, when the verdict fails, the
    sharpness is measured.
    """
    if scenario.framework == "torch":
        import torch  # noqa: F401  (imported first, so that seed_everything seeds it)
    else:
        import keras  # noqa: F401
    seed_everything(seed)
    crit = Criteria().merged(**scenario.criteria)
    lt = Recorder(crit, fail_fast=fail_fast, seed=seed)
    stop: LossTrendStop | None = None
    with warnings.catch_warnings(record=True) as caught:
        # "always": a warning already shown once in this process (torch's broadcast warning)
        # must still reach this run's diagnosis.
        warnings.simplefilter("always")
        try:
            scenario.run(lt, bad=bad)
        except LossTrendStop as exc:
            stop = exc
    lt.finish_watching()
    if stop is not None:
        verdict = replace(stop.verdict, diagnoses=())
        crit = crit.merged(series=stop.series)
    else:
        verdict = judge(lt.array(crit.series), crit) if crit.series in lt.series_names else (
            lt.check())
    if verdict.status == "fail" and lt.evidence is not None and lt.evidence.sharpness is None:
        with warnings.catch_warnings():
            # The loss on the watched batch repeats the run's own warnings (a broadcast):
            # they were captured above already.
            warnings.simplefilter("ignore")
            lt.measure_sharpness()
    return ScenarioRun(scenario, bad, seed, lt, verdict, crit, [str(w.message) for w in caught])


def run_scenario(
    scenario: Scenario, *, bad: bool, seed: int, use_evidence: bool = True,
) -> Verdict:
    """Run one side of ``scenario`` under ``seed`` and judge it as the marker would: the
    verdict of the scenario's criteria with the built-in rules' ranked diagnoses.

    Example:
        >>> verdict = run_scenario(SCENARIOS[0], bad=True, seed=0)
        >>> verdict.status, verdict.diagnoses[0].cause
        ('fail', 'lr_too_high')
    """
    return execute(scenario, bad=bad, seed=seed).diagnosed(use_evidence=use_evidence)


__all__ = ["SCENARIOS", "Scenario", "ScenarioRun", "execute", "run_scenario"]

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

This module is the registry: the :class:`Scenario` type, :data:`SCENARIOS` (the catalogue, in
the order of ``docs/catalogue.md``, each entry's explanation next to its name and cause) and the
runner. The training runs live with their framework, in
:mod:`~pytest_losstrend.catalogue.scenarios_torch` and
:mod:`~pytest_losstrend.catalogue.scenarios_keras`, on the data sets of
:mod:`~pytest_losstrend.catalogue.scenario_data`. torch, TensorFlow and scikit-learn are imported
inside the functions that use them, so importing this module costs numpy only.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pytest_losstrend.capture.recorder import LossTrendStop, Recorder
from pytest_losstrend.capture.seeding import seed_everything
from pytest_losstrend.catalogue import scenarios_keras, scenarios_torch
from pytest_losstrend.verdict.criteria import Criteria
from pytest_losstrend.verdict.result import Verdict
from pytest_losstrend.verdict.trend import judge

if TYPE_CHECKING:
    from pytest_losstrend.diagnosis.evidence import Evidence

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



#: The entropy of the digits data set's label frequencies (``reference_level("cross_entropy",
#: y)`` = 2.30248: 10 classes of 174 to 183 images), the reference level of the scenarios that
#: train on it.
DIGITS_REFERENCE = 2.302

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "lr_too_high", "lr_too_high", "torch", {},
        "Linear regression on x in [0, 10] (y = 2x + 1) with SGD lr=1.0: the curvature "
        "lambda_max of the MSE is about 70, so any lr above 2/70 = 0.029 multiplies the error "
        "along that direction by |1 - lr*lambda| > 1 every step and the loss explodes.",
        "lr=0.01, below the stability limit 2/lambda_max.",
        scenarios_torch.lr_too_high,
    ),
    Scenario(
        "unscaled_features", "unscaled_features", "torch", {},
        "Diabetes regression with three features in units 1000x larger: the Hessian of the "
        "MSE grows with the feature variance (10^6 x), so lr=0.1, fine for standardised "
        "inputs, is far past the stability limit and the loss explodes.",
        "Standardise every feature (StandardScaler).",
        scenarios_torch.unscaled_features,
    ),
    Scenario(
        "non_finite", "non_finite", "torch", {},
        "Logistic regression with a hand-written binary cross-entropy on sigmoid outputs: "
        "as the classifier grows confident, sigmoid saturates to exactly 1.0 in float32 and "
        "(1 - y) * log(1 - p) is 0 * -inf = NaN, while the loss was falling.",
        "BCEWithLogitsLoss (log-sum-exp on the logits).",
        scenarios_torch.non_finite,
    ),
    Scenario(
        "no_learning", "no_learning", "torch", {},
        "The optimizer holds the parameters of another instance of the model, so the trained "
        "one never moves: the mini-batch loss is noise around a constant.",
        "optimizer = SGD(model.parameters(), ...).",
        scenarios_torch.no_learning,
    ),
    Scenario(
        "stale_gradients", "stale_gradients", "torch", {},
        "optimizer.zero_grad() is never called: every step applies the sum of all gradients "
        "so far, a momentum of 1 with no damping, and the loss swings and grows.",
        "Call optimizer.zero_grad() before each backward().",
        scenarios_torch.stale_gradients,
    ),
    Scenario(
        "dead_units", "dead_units", "torch", {},
        "An MLP whose hidden ReLU biases start at -10: every unit outputs zero on every "
        "sample, no gradient reaches the hidden layers and only the output bias learns.",
        "The default initialisation (zero-centred biases).",
        scenarios_torch.dead_units,
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
        scenarios_torch.shape_mismatch,
    ),
    Scenario(
        "overfitting", "overfitting", "torch", {"series": "eval"},
        "An 8-128-128-1 MLP trained with Adam on 30 rows of a noisy, mostly linear "
        "regression, the held-out loss (500 rows) recorded every 4 steps as series 'eval': "
        "the training loss keeps falling to zero while the held-out loss falls, then climbs "
        "as the model memorises the 30 rows' noise.",
        "1000 training rows (more data), in mini-batches of 64.",
        scenarios_torch.overfitting,
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
        scenarios_torch.unshuffled_batches,
    ),
    Scenario(
        "bad_init", "bad_init", "torch", {"below": 1.0},
        "A tanh digits classifier with every weight 50x its default: the hidden units "
        "saturate at +-1 and the logits are huge, so the first loss is about 18x the chance "
        "level ln(10) and, although it falls, it is still ten times chance after 100 steps. "
        "A healthy run gets under 1.0 (below=1.0); this one cannot.",
        "The default (Kaiming-uniform) initialisation.",
        scenarios_torch.bad_init,
    ),
    Scenario(
        "lr_too_low", "lr_too_low", "torch", {},
        "SGD with lr=1e-6 on a small regression MLP: each step moves the weights by about a "
        "millionth of themselves and the loss does not visibly fall.",
        "lr=0.05.",
        scenarios_torch.lr_too_low,
    ),
    Scenario(
        "oscillation", "oscillation", "torch", {},
        "Full-batch SGD with momentum 0.99 on linear regression: the heavy ball overshoots "
        "and swings back and forth, damped by only 0.5% a step, so the loss oscillates far "
        "more than it falls.",
        "momentum=0.9.",
        scenarios_torch.oscillation,
    ),
    Scenario(
        "plateau", "plateau", "torch", {},
        "A softmax layer fed to CrossEntropyLoss, which applies log-softmax itself: the "
        "probabilities are taken as logits, the loss is confined to [1.46, 2.46] and learning "
        "stalls on a plateau far above a healthy classifier's.",
        "Feed the logits to CrossEntropyLoss (no softmax layer).",
        scenarios_torch.plateau,
    ),
    Scenario(
        "exploding_gradients", "exploding_gradients", "torch", {},
        "A 10-layer linear network initialised with orthogonal weights of gain 1.5: the "
        "forward pass multiplies the signal, and the backward pass the gradient, by 1.5 per "
        "layer (58x end to end), so the first gradient norm is about 2e4 and the first SGD "
        "steps throw the weights into a region where it grows 10-100x a step.",
        "Orthogonal weights of gain 1 (norm-preserving), or clip the gradient norm.",
        scenarios_torch.exploding_gradients,
    ),
    Scenario(
        "adam_lr_too_high", "lr_too_high", "torch", {},
        "Adam at lr=3 on a small ReLU regression MLP (diabetes, batches of 64): Adam moves "
        "every weight by about lr per step whatever its gradient, so the first step throws "
        "each weight 3 units away and the loss jumps 10^5x within two steps.",
        "lr=3e-3 (Adam's usual range is 1e-4..1e-2).",
        scenarios_torch.adam_lr_too_high,
    ),
    Scenario(
        "growing_lr_schedule", "lr_too_high", "torch", {},
        "Linear regression with SGD lr=0.05 and ExponentialLR(gamma=1.1), a decay factor "
        "written as a growth factor: the learning rate passes the stability limit "
        "2/lambda_max = 0.25 after about 17 steps and the loss explodes; the watched "
        "optimizer shows the learning rate growing.",
        "A decaying schedule (gamma=0.97).",
        scenarios_torch.growing_lr_schedule,
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
        scenarios_torch.unscaled_target,
    ),
    Scenario(
        "frozen_weights", "no_learning", "torch", {},
        "A digits MLP whose weight matrices have requires_grad=False (only the biases train): "
        "the optimizer skips the frozen weights, the biases alone can only learn the class "
        "frequencies and the loss stays near chance level ln(10).",
        "requires_grad=True on the weights meant to learn (the default).",
        scenarios_torch.frozen_weights,
    ),
    Scenario(
        "shuffled_labels", "chance_level", "torch", {"reference": DIGITS_REFERENCE},
        "A digits MLP whose labels were permuted on their own, apart from the images: no input "
        "says anything about its label, so the best the model can do is predict the label "
        "frequencies, whose loss is their entropy, 2.302 (reference=2.302, the level the "
        "test sets). The loss falls from a random initialisation's to that reference and stays "
        "there; the parameters train normally, so nothing but the level says what is wrong.",
        "Shuffle the inputs and the labels together (one permutation for both).",
        scenarios_torch.shuffled_labels,
    ),
    Scenario(
        "keras_lr_too_high", "lr_too_high", "keras", {},
        "The TensorFlow write-up: Keras linear regression on x in [0, 10] with SGD "
        "learning_rate=1.0, trained with model.fit in batches of 10: past the stability "
        "limit, the loss explodes within the first epoch.",
        "learning_rate=0.01.",
        scenarios_keras.keras_lr_too_high,
    ),
    Scenario(
        "keras_no_learning", "no_learning", "keras", {},
        "model.trainable = False on the whole model (meant for a pretrained base only): "
        "fit runs without complaint, no weight moves, and the loss is noise around its "
        "first level.",
        "Freeze only the base (base.trainable = False) and keep the head trainable.",
        scenarios_keras.keras_no_learning,
    ),
    Scenario(
        "keras_frozen_weight", "no_learning", "keras", {},
        "A hand-written Keras layer whose kernel is created with add_weight(trainable=False): "
        "every instance of it is frozen, fit runs without complaint, no weight moves and the "
        "loss is mini-batch noise around its first level.",
        "add_weight(..., trainable=True) (the default) for the kernel.",
        scenarios_keras.keras_frozen_weight,
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
                          warnings=self.warnings,
                          judgment=self.lt.judgment(self.criteria, verdict=self.verdict))
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
        verdict = (judge(lt.array(crit.series), crit, lt.resolved_reference(crit))
                   if crit.series in lt.series_names else lt.check())
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


__all__ = ["DIGITS_REFERENCE", "SCENARIOS", "Scenario", "ScenarioRun", "execute", "run_scenario"]

"""Mutation testing of loss-trend tests (``--losstrend-mutate``).

A test that trains through ``losstrend.fit`` is re-run with one known training bug injected at a
time (a :class:`Mutation`); the test *catches* the mutant when it fails under it. The share of
mutants caught is the test's mutation score: a test that passes with the learning rate divided
by 10^4 does not guard that the model learns.

A mutation acts inside ``run_fit`` through a few explicit hooks, each optional:

- ``on_data(x, y, shuffle) -> (x, y, shuffle)``: the training arrays (numpy) and the shuffle
  flag; a mutation with it does not apply to a DataLoader or a tf.data.Dataset.
- ``on_model(model, framework)``: the model, before training (in place).
- ``on_optimizer(optimizer, model, framework) -> optimizer``: the torch optimizer, or the
  compiled Keras model's optimizer, before training.
- ``skip_zero_grad``: the torch loop leaves out ``optimizer.zero_grad()``.

Mutations come through the ``pytest_losstrend_mutations`` hook; the built-in ones too.
Imported only when a test is mutated.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pytest_losstrend.capture.recorder import LossTrendStop
from pytest_losstrend.catalogue.mutation import FRAMEWORKS, Mutation, MutationNotApplicable

if TYPE_CHECKING:
    import pytest

    from pytest_losstrend.catalogue.fit import FitRecorder
    from pytest_losstrend.reports.schema import MutantResult, TestRecord, TestResult
    from pytest_losstrend.verdict.criteria import Criteria

# Defined in catalogue.mutation (which fit imports without this module); named here too, where
# users of the pytest_losstrend_mutations hook import them from.
__all__ = [
    "FRAMEWORKS",
    "Mutation",
    "MutationNotApplicable",
    "below",
    "builtin_mutations",
    "collect_mutations",
    "run_mutants",
    "to_numpy",
]

def to_numpy(a: Any) -> Any:
    """``a`` as a numpy array (numpy, torch on any device, or a tf tensor)."""
    import numpy as np

    if hasattr(a, "detach"):
        a = a.detach().cpu()
    return np.asarray(a)


# -- the built-in catalogue ----------------------------------------------------------------


def _scale_lr(factor: float) -> Callable[[Any, Any, str], Any]:
    def scale(opt: Any, model: Any, framework: str) -> Any:
        if framework == "torch":
            for group in opt.param_groups:
                group["lr"] = group["lr"] * factor
        else:
            opt.learning_rate = float(opt.learning_rate) * factor
        return opt

    return scale


def _features_x1000(x: Any, y: Any, shuffle: bool) -> tuple[Any, Any, bool]:
    return to_numpy(x) * 1000, y, shuffle


def _sorted_no_shuffle(x: Any, y: Any, shuffle: bool) -> tuple[Any, Any, bool]:
    import numpy as np

    xs, ys = to_numpy(x), to_numpy(y)
    # Sorted by the target (its first column): every batch sees one narrow slice of it, the
    # order a file sorted by label or date gives when nobody shuffles.
    key = ys.reshape(len(ys), -1)[:, 0] if ys.ndim else ys
    order = np.argsort(key, kind="stable")
    return xs[order], ys[order], False


def _init_x50(model: Any, framework: str) -> None:
    if framework == "torch":
        import torch

        with torch.no_grad():
            for p in model.parameters():
                p.mul_(50)
    else:
        for w in model.trainable_weights:
            w.assign(w * 50)


def _drop_params(opt: Any, model: Any, framework: str) -> Any:
    # The optimizer keeps only the last parameter tensor (typically the output bias): the
    # classic "optimizer built before the layers were added" or a wrong parameter list.
    kept = [p for g in opt.param_groups for p in g["params"]][-1:]
    for group in opt.param_groups:
        group["params"] = []
    opt.param_groups[-1]["params"] = kept
    return opt


def _freeze(opt: Any, model: Any, framework: str) -> Any:
    # Frozen through the optimizer (a zero step) rather than requires_grad: a model with no
    # trainable tensor crashes in backward(), which any test catches, while frozen layers
    # behind a live loss are the silent bug.
    return _scale_lr(0.0)(opt, model, framework)


def builtin_mutations() -> list[Mutation]:
    """The built-in catalogue of mutations."""
    return [
        Mutation("lr_x100", "learning rate x100", on_optimizer=_scale_lr(100.0)),
        Mutation("lr_div1e4", "learning rate / 10^4", on_optimizer=_scale_lr(1e-4)),
        Mutation("features_x1000", "input features x1000 (unscaled inputs)",
                 on_data=_features_x1000),
        Mutation("sorted_no_shuffle", "rows sorted by target, shuffle off",
                 on_data=_sorted_no_shuffle),
        Mutation("init_x50", "initial weights x50", on_model=_init_x50),
        Mutation("skip_zero_grad", "optimizer.zero_grad() skipped (gradients accumulate)",
                 frameworks=("torch",), skip_zero_grad=True),
        Mutation("drop_params", "optimizer given only the last parameter tensor",
                 frameworks=("torch",), on_optimizer=_drop_params),
        Mutation("freeze_weights", "weights frozen (the optimizer never changes them)",
                 on_optimizer=_freeze),
    ]


def collect_mutations(hook: Any) -> list[Mutation]:
    """Every registered mutation, through the ``pytest_losstrend_mutations`` hook.

    The first registration of a name wins; a ``conftest.py`` is called before the built-ins,
    so it can replace one by reusing its name.
    """
    out: dict[str, Mutation] = {}
    for batch in hook.pytest_losstrend_mutations():
        for m in batch or []:
            if not isinstance(m, Mutation):
                raise TypeError(
                    f"pytest_losstrend_mutations must return Mutation objects, got {m!r}"
                )
            out.setdefault(m.name, m)
    return list(out.values())


# -- running mutants ------------------------------------------------------------------------


def run_mutants(
    item: pytest.Item, lt: FitRecorder, crit: Criteria, data: TestRecord
) -> None:
    """Re-run ``item`` under every applicable mutation; add ``mutants`` and
    ``mutation_score`` to its result ``data``.

    The test's own outcome is untouched: each mutant gets a fresh fixture object in the test's
    arguments, and the original one is put back afterwards.
    """
    funcargs: dict[str, Any] | None = getattr(item, "funcargs", None)
    if funcargs is None or funcargs.get("losstrend") is not lt:
        return  # the fixture object is not what the body receives: nothing to swap
    mutants: list[MutantResult] = []
    try:
        for mutation in collect_mutations(item.config.hook):
            if not mutation.applies(lt.fit_framework):
                continue
            outcome = _run_one(item, lt, crit, mutation, funcargs)
            if outcome is not None:
                mutants.append(outcome)
    finally:
        funcargs["losstrend"] = lt
        # Later tests must not depend on how many mutants ran before them.
        from pytest_losstrend.capture.seeding import seed_everything

        if lt.seed is not None:
            seed_everything(lt.seed)
    data["mutants"] = mutants
    data["mutation_score"] = {
        "caught": sum(1 for m in mutants if m["caught"]), "applied": len(mutants),
    }


def _run_one(
    item: pytest.Item, lt: FitRecorder, crit: Criteria, mutation: Mutation,
    funcargs: dict[str, Any],
) -> MutantResult | None:
    """One mutant run: its record, or None when the mutation turned out not to apply."""
    import pytest

    from pytest_losstrend.capture.seeding import seed_everything

    # The test's own class (the fixture's LossTrend): the body gets what it would normally get.
    mlt = type(lt)(crit, fail_fast=lt.fail_fast, seed=lt.seed, base_seed=lt.base_seed,
                   nodeid=lt.nodeid, marker=lt.marker)
    mlt.mutation = mutation
    funcargs["losstrend"] = mlt
    if lt.seed is not None:
        seed_everything(lt.seed)
    raised: BaseException | None = None
    stop: LossTrendStop | None = None
    try:
        # A mutant's warnings (overflow, NaN) are its own, not the test's.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            item.runtest()
    except MutationNotApplicable:
        return None
    except LossTrendStop as exc:
        stop = exc
    except (KeyboardInterrupt, SystemExit, pytest.exit.Exception):
        raise
    except BaseException as exc:  # the body failing in any way catches the mutant
        raised = exc
    finally:
        mlt.finish_watching()
    if mlt.fit_framework is None and raised is None and stop is None:
        return None  # this run did not reach fit, so the mutation never acted
    caught, reason = _judge(mlt, crit, stop or mlt.stopped, raised)
    return {
        "mutant": True,
        "mutation": mutation.name,
        "description": mutation.description,
        "caught": caught,
        "reason": reason,
        "series": {name: mlt.losses(name) for name in mlt.series_names},
    }


def _judge(
    mlt: FitRecorder, crit: Criteria, stop: Any, raised: BaseException | None
) -> tuple[bool, str]:
    """Whether the test caught the mutant, as the marker would judge it, and why."""
    if raised is not None:
        text = str(raised).strip().splitlines()
        first = text[0] if text else ""
        return True, f"the test raised {type(raised).__name__}: {first}".rstrip(": ")
    verdict = stop.verdict if stop is not None else mlt.check()
    if verdict.ok:
        return False, f"the verdict passed: {verdict.reason}"
    if verdict.inconclusive and crit.inconclusive != "fail":
        # A skipped (or passed) test does not turn CI red: the bug would go through.
        return False, f"inconclusive, the test would {crit.inconclusive}: {verdict.reason}"
    return True, f"the verdict failed: {verdict.reason}"


def below(data: TestResult, pct: float) -> bool:
    """Whether a mutated test's score is below ``pct`` percent."""
    score = data.get("mutation_score")
    if not score or not score["applied"]:
        return False
    return bool(100 * score["caught"] / score["applied"] < pct)

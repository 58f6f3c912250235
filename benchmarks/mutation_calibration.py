"""How large must a learning-rate or feature-scale fault be before the default verdict fails?

DeepCrime calibrates its mutation operators by searching for the smallest change that a test
detects. This does the same for the default ``loss_decreases`` verdict on two real ``fit`` runs
(a small MLP on the standardised diabetes data with Adam, and the PyTorch write-up's linear
regression with SGD): a bisection on a log scale finds the smallest multiplier of the learning
rate, the smallest divisor of it, and the smallest multiplier of the features at which the
verdict fails (status "fail"; inconclusive counts as not caught, as it skips a test).

Usage::

    python benchmarks/mutation_calibration.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from pytest_losstrend.capture.seeding import seed_everything
from pytest_losstrend.catalogue.mutate import Mutation
from pytest_losstrend.fixture import LossTrend, LossTrendStop
from pytest_losstrend.verdict.criteria import Criteria

Setup = Callable[[], tuple[Any, tuple[Any, Any], dict[str, Any]]]


def _diabetes_mlp() -> tuple[Any, tuple[Any, Any], dict[str, Any]]:
    from sklearn.datasets import load_diabetes
    from sklearn.preprocessing import StandardScaler
    from torch import nn

    x, y = load_diabetes(return_X_y=True)
    xs = StandardScaler().fit_transform(x).astype("float32")
    ys = ((y - y.mean()) / y.std()).astype("float32").reshape(-1, 1)
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 1))
    return model, (xs, ys), {"loss": "mse", "optimizer": ("adam", 1e-2), "epochs": 5}


def _writeup_linreg() -> tuple[Any, tuple[Any, Any], dict[str, Any]]:
    from torch import nn

    rng = np.random.default_rng(0)
    x = (rng.random((100, 1)) * 10).astype("float32")
    y = (2 * x + 1 + rng.normal(size=(100, 1))).astype("float32")
    return nn.Linear(1, 1), (x, y), {"loss": "mse", "optimizer": ("sgd", 0.01), "epochs": 10,
                                     "batch_size": 10}


def _lr_times(m: float) -> Mutation:
    def act(opt: Any, model: Any, framework: str) -> Any:
        for g in opt.param_groups:
            g["lr"] *= m
        return opt

    return Mutation(f"lr_x{m:g}", "", frameworks=("torch",), on_optimizer=act)


def _features_times(m: float) -> Mutation:
    def act(x: Any, y: Any, shuffle: bool) -> tuple[Any, Any, bool]:
        return np.asarray(x) * m, y, shuffle

    return Mutation(f"features_x{m:g}", "", frameworks=("torch",), on_data=act)


def caught(setup: Setup, mutation: Mutation | None, seed: int) -> bool:
    """Whether the default verdict fails this run."""
    import torch

    torch.set_num_threads(1)
    seed_everything(seed)
    model, data, kwargs = setup()
    lt = LossTrend(Criteria(), fail_fast=True, seed=seed)
    lt.mutation = mutation
    try:
        lt.fit(model, data, **kwargs)
    except LossTrendStop:
        return True
    return lt.check().status == "fail"


def smallest(setup: Setup, make: Callable[[float], Mutation], seed: int,
             lo: float = 1.0, hi: float = 1e4) -> float | None:
    """The smallest multiplier in [lo, hi] the verdict catches (bisection on log scale)."""
    if not caught(setup, make(hi), seed):
        return None
    while hi / lo > 1.25:
        mid = math.sqrt(lo * hi)
        if caught(setup, make(mid), seed):
            hi = mid
        else:
            lo = mid
    return hi


def main(argv: list[str] | None = None) -> int:
    """Print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args(argv)
    setups: dict[str, Setup] = {"MLP on diabetes, Adam 1e-2, 5 epochs": _diabetes_mlp,
                                "write-up linear regression, SGD 0.01": _writeup_linreg}
    ops: dict[str, Callable[[float], Mutation]] = {
        "lr multiplied by": _lr_times,
        "lr divided by": lambda m: _lr_times(1.0 / m),
        "features multiplied by": _features_times,
    }
    print("| run | fault | smallest caught (median over seeds) | per seed | unmutated caught |")
    print("|---|---|---|---|---|")
    for name, setup in setups.items():
        base = sum(caught(setup, None, s) for s in range(args.seeds))
        for op_name, make in ops.items():
            found = [smallest(setup, make, s) for s in range(args.seeds)]
            # Not caught within x1e4 sorts above every multiplier found.
            ranked = sorted(found, key=lambda v: math.inf if v is None else v)
            mid = ranked[len(ranked) // 2]
            med = f"x{mid:.3g}" if mid is not None else "not within x1e4"
            if mid is not None and None in found:
                med += f" ({sum(v is None for v in found)} seeds: not within x1e4)"
            per = ", ".join(f"{v:.3g}" if v else "-" for v in found)
            print(f"| {name} | {op_name} | {med} | {per} | {base}/{args.seeds} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

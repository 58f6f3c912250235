"""Do the suggested fixes work? Follow them on the PyTorch write-up's failing runs and rerun.

For the write-up's lr=1.0 run (x uniform in [0, 10)) and its x*1000 variant, the failing
verdict's diagnoses are read, the learning rate its fix recommends (1/lambda_max, half the
stability limit "lr <= 2/lambda_max") is taken, and the same
training is run again with it (and, for the unscaled features, with the features standardised,
as the top fix says). Each rerun must pass the default verdict.

Usage::

    python benchmarks/fixes_work.py [--seeds 10]
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from pytest_losstrend.capture.seeding import seed_everything
from pytest_losstrend.diagnosis.context import context_for
from pytest_losstrend.diagnosis.ranking import with_diagnoses
from pytest_losstrend.diagnosis.rules import builtin_diagnoses
from pytest_losstrend.fixture import LossTrend, LossTrendStop
from pytest_losstrend.verdict.criteria import Criteria
from pytest_losstrend.verdict.result import Verdict
from pytest_losstrend.verdict.trend import judge

STEPS = 200


def train(lr: float, *, scale: float, standardise: bool, seed: int) -> LossTrend:
    """The write-up's loop: nn.Linear(1, 1), MSE, full-batch SGD, watched, fail-fast."""
    import torch

    torch.set_num_threads(1)
    seed_everything(seed)
    x = torch.rand(100, 1) * 10
    y = 2 * x + 1 + torch.randn(100, 1)
    x = x * scale
    if standardise:
        x = (x - x.mean()) / x.std()
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = torch.nn.functional.mse_loss
    lt = LossTrend(Criteria(), fail_fast=True)
    lt.watch(model, opt, loss_fn=loss_fn, batch=(x, y))
    try:
        for _ in range(STEPS):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            lt.record(loss)
    except LossTrendStop:
        pass
    return lt


def verdict_of(lt: LossTrend) -> Verdict:
    """The verdict with its diagnoses, as the marker would give it."""
    lt.finish_watching()
    verdict = judge(lt.array("train"), lt.criteria)
    if verdict.ok:
        return verdict
    lt.measure_sharpness()
    ctx = context_for(lt.as_dict(), "train", verdict, evidence=lt.evidence)
    return with_diagnoses(verdict, builtin_diagnoses(ctx))


def suggested_lr(verdict: Verdict) -> float | None:
    """The learning rate the lr_too_high fix recommends ("lr = X ... safe margin")."""
    for d in verdict.diagnoses:
        if d.cause == "lr_too_high":
            m = re.search(r"lr = ([0-9.eE+-]+) \(1/lambda_max\)", d.fix)
            if m:
                return float(m.group(1).rstrip("."))
    return None


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: print the table, exit 1 if a followed fix fails."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    args = ap.parse_args(argv)
    rows: list[dict[str, Any]] = []
    for name, lr, scale in (("lr=1.0 on x in [0, 10)", 1.0, 1.0),
                            ("lr=0.1 on x in [0, 10)", 0.1, 1.0),
                            ("lr=1e-3 on x*1000", 1e-3, 1000.0)):
        for seed in range(args.seeds):
            bad = verdict_of(train(lr, scale=scale, standardise=False, seed=seed))
            top = bad.diagnoses[0] if bad.diagnoses else None
            fix_lr = suggested_lr(bad)
            rerun = (verdict_of(train(fix_lr, scale=scale, standardise=False, seed=seed))
                     if fix_lr else None)
            std = (verdict_of(train(lr, scale=scale, standardise=True, seed=seed))
                   if top is not None and top.cause == "unscaled_features" else None)
            rows.append({"case": name, "seed": seed, "bad": bad.status,
                         "top": top.cause if top else "-", "fix_lr": fix_lr,
                         "rerun": rerun.status if rerun else "-",
                         "standardised": std.status if std else "-"})
    print("| case | seeds | bad verdict fails | top cause | suggested lr (median) | "
          "rerun at it passes | rerun standardised passes |")
    print("|---|---|---|---|---|---|---|")
    ok = True
    for case in dict.fromkeys(r["case"] for r in rows):
        rs = [r for r in rows if r["case"] == case]
        lrs = sorted(r["fix_lr"] for r in rs if r["fix_lr"])
        tops = {r["top"] for r in rs}
        fails = sum(r["bad"] == "fail" for r in rs)
        rerun_ok = sum(r["rerun"] == "pass" for r in rs)
        std_ok = sum(r["standardised"] == "pass" for r in rs)
        std_n = sum(r["standardised"] != "-" for r in rs)
        ok &= rerun_ok == len(rs) and std_ok == std_n
        print(f"| {case} | {len(rs)} | {fails}/{len(rs)} | {', '.join(sorted(tops))} | "
              f"{lrs[len(lrs) // 2]:.3g} | {rerun_ok}/{len(rs)} | "
              f"{f'{std_ok}/{std_n}' if std_n else '-'} |" if lrs else
              f"| {case} | {len(rs)} | {fails}/{len(rs)} | {', '.join(sorted(tops))} | - | - | - |")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

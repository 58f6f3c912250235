"""Calibration of the default verdict against the benchmark corpus of real loss curves.

Reads ``benchmarks/corpus/*.json`` (written by ``benchmarks/corpus.py``), judges every run with
the default criteria, and prints the table in ``benchmarks/README.md``: for healthy runs the
false alarms (FAIL), inconclusive and pass counts; for bad runs how many are caught, side by
side with the checks people write by hand.

Usage::

    python benchmarks/calibrate.py                 # the summary table
    python benchmarks/calibrate.py --by-config     # one row per configuration
    python benchmarks/calibrate.py --criteria min_drop=0.2 tolerance=0.2
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pytest_losstrend import check

HERE = Path(__file__).resolve().parent


def _floats(values: Sequence[Any]) -> list[float]:
    # The corpus stores non-finite values as strings, since JSON has no NaN.
    return [float(v) for v in values]


def naive_last_below_first(x: list[float]) -> bool:
    """``assert losses[-1] < losses[0]``."""
    return x[-1] < x[0]


def naive_ten_percent(x: list[float]) -> bool:
    """``assert losses[-1] <= 0.9 * losses[0]``."""
    return x[-1] <= 0.9 * x[0]


def naive_strict(x: list[float]) -> bool:
    """Strictly decreasing at every step."""
    return all(b < a for a, b in itertools.pairwise(x))


NAIVE: dict[str, Callable[[list[float]], bool]] = {
    "last < first": naive_last_below_first,
    "last <= 0.9 first": naive_ten_percent,
    "strictly decreasing": naive_strict,
}


def load_runs(folder: Path) -> list[dict[str, Any]]:
    """Every run of every corpus file in ``folder``."""
    runs: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.json")):
        doc = json.loads(path.read_text())
        runs.extend(doc["runs"])
    return runs


def _judged_series(run: dict[str, Any]) -> list[str]:
    # A bad run is judged on the series that shows its fault; a healthy run on every series
    # it has, since a healthy eval curve must not fail either.
    if run["family"] == "bad":
        return [run.get("judge") or "train"]
    return list(run["series"])


def judge_runs(runs: list[dict[str, Any]], criteria: dict[str, Any]) -> list[dict[str, Any]]:
    """Verdict and naive outcomes for each judged series of each run."""
    out = []
    for whole in runs:
        for series in _judged_series(whole):
            run = dict(whole)
            if series != "train":
                run["config"] = f"{whole['config']}:{series}"
            if whole["family"] == "healthy" and series != "train":
                # Reported apart: a healthy run's train curve is healthy by construction, but
                # its eval curve may honestly over-fit (rise while train falls).
                run["family"] = "healthy-eval"
            out.append(_judge_one(run, series, criteria))
    return out


def _judge_one(run: dict[str, Any], series: str, criteria: dict[str, Any]) -> dict[str, Any]:
    x = _floats(run["series"][series])
    v = check(x, **criteria)
    return {
        "run": run,
        "status": v.status,
        "kind": v.kind,
        "reason": v.reason,
        "naive": {name: fn(x) for name, fn in NAIVE.items()},
    }


def _pct(k: int, n: int) -> str:
    return f"{k}/{n} ({100.0 * k / n:.0f}%)" if n else "-"


def summary(results: list[dict[str, Any]], by_config: bool) -> str:
    """The calibration table as Markdown."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        run = r["run"]
        key = run["config"] if by_config else (run["mode"] or "healthy")
        groups[(run["family"], key)].append(r)
    names = list(NAIVE)
    head = ["family", "group", "runs", "verdict FAIL", "INCONCLUSIVE", "PASS",
            *(f"`{n}` fails" for n in names)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (family, key), rs in sorted(groups.items()):
        n = len(rs)
        counts = {s: sum(r["status"] == s for r in rs) for s in ("fail", "inconclusive", "pass")}
        naive = [sum(not r["naive"][nm] for r in rs) for nm in names]
        lines.append(
            "| " + " | ".join([family, key, str(n), _pct(counts["fail"], n),
                              _pct(counts["inconclusive"], n), _pct(counts["pass"], n),
                              *(_pct(k, n) for k in naive)]) + " |"
        )
    for family in ("healthy", "healthy-eval", "bad"):
        rs = [r for r in results if r["run"]["family"] == family]
        if not rs:
            continue
        n = len(rs)
        counts = {s: sum(r["status"] == s for r in rs) for s in ("fail", "inconclusive", "pass")}
        naive = [sum(not r["naive"][nm] for r in rs) for nm in names]
        lines.append(
            "| " + " | ".join([f"**{family}**", "**all**", str(n), _pct(counts["fail"], n),
                              _pct(counts["inconclusive"], n), _pct(counts["pass"], n),
                              *(_pct(k, n) for k in naive)]) + " |"
        )
    return "\n".join(lines)


# The root cause each bad configuration of the corpus has, by a part of its name; None where
# no cause code fits (gradient ascent: a sign bug). "watch" marks what only the evidence of
# losstrend.watch() can tell apart from the curve.
EXPECTED_CAUSE: tuple[tuple[str, str | None, bool], ...] = (
    ("unscaled_x", "unscaled_features", True),
    ("log0", "non_finite", False),
    ("ascent", None, False),
    ("overfit", "overfitting", False),
    ("b8/s100/per_step/stale_optimizer", "no_learning", True),
    ("stale_optimizer", "no_learning", False),
    ("fixed_batch", "no_learning", False),
    ("/lr0", "no_learning", False),
    ("trainable_false", "no_learning", False),
    ("lr1e-7", "lr_too_low", True),
    ("dead_relu", "dead_units", True),
    ("sgdm99", "oscillation", False),
    ("lr_x", "lr_too_high", False),
    ("at_optimum", "lr_too_high", True),
    ("", "lr_too_high", False),
)


def expected_cause(config: str) -> tuple[str | None, bool]:
    """The expected top cause of a bad configuration, and whether it needs ``watch``."""
    for part, cause, needs_watch in EXPECTED_CAUSE:
        if part in config:
            return cause, needs_watch
    return None, False


def diagnosis_table(runs: list[dict[str, Any]]) -> str:
    """Top-1 cause of each bad run from its curves (every series) and the optimizer's lr."""
    import numpy as np

    from pytest_losstrend.diagnosis.context import context_for
    from pytest_losstrend.diagnosis.evidence import Evidence
    from pytest_losstrend.diagnosis.ranking import rank
    from pytest_losstrend.diagnosis.rules import builtin_diagnoses
    from pytest_losstrend.verdict.criteria import Criteria
    from pytest_losstrend.verdict.trend import judge

    rows: dict[tuple[str, str], list[str]] = defaultdict(list)
    for run in runs:
        if run["family"] != "bad":
            continue
        cause, needs_watch = expected_cause(run["config"])
        if cause is None:
            continue
        judged = run.get("judge") or "train"
        series = {k: _floats(v) for k, v in run["series"].items()}
        verdict = judge(np.asarray(series[judged]), Criteria(series=judged))
        if verdict.ok:
            rows[(run["config"], cause + (" (watch)" if needs_watch else ""))].append("PASS")
            continue
        ev = Evidence(optimizer=run.get("optimizer"), lr=[float(run["lr"])] if run.get("lr")
                      else [])
        ctx = context_for(series, judged, verdict, evidence=ev)
        ranked = rank(builtin_diagnoses(ctx))
        rows[(run["config"], cause + (" (watch)" if needs_watch else ""))].append(
            ranked[0].cause if ranked else "-")
    lines = ["| configuration | expected | top-1 right | top causes |", "|---|---|---|---|"]
    right = total = right_curve = total_curve = 0
    for (config, cause), tops in sorted(rows.items()):
        want = cause.split(" ")[0]
        k = sum(t == want for t in tops)
        right += k
        total += len(tops)
        if "(watch)" not in cause:
            right_curve += k
            total_curve += len(tops)
        counts = ", ".join(f"{c} {tops.count(c)}" for c in sorted(set(tops), key=tops.count,
                                                                   reverse=True))
        lines.append(f"| {config} | {cause} | {k}/{len(tops)} | {counts} |")
    lines.append(f"| **all** | | **{right}/{total} ({100 * right / max(total, 1):.0f}%)** | |")
    lines.append(f"| **all not needing watch** | | **{right_curve}/{total_curve} "
                 f"({100 * right_curve / max(total_curve, 1):.0f}%)** | |")
    return "\n".join(lines)


def _parse_criteria(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        name, _, raw = item.partition("=")
        try:
            out[name] = json.loads(raw)
        except json.JSONDecodeError:
            out[name] = raw
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=HERE / "corpus")
    ap.add_argument("--by-config", action="store_true", help="one row per configuration")
    ap.add_argument("--criteria", nargs="*", default=[], help="name=value overrides")
    ap.add_argument("--show", default="", help="print reasons for runs of configs containing it")
    ap.add_argument("--false-alarms", action="store_true", help="list healthy runs that FAIL")
    ap.add_argument("--diagnosis", action="store_true",
                    help="top-1 cause of the bad runs from their curves and the optimizer's lr")
    ap.add_argument("--set", nargs="*", default=[],
                    help="NAME=VALUE: override a constant of pytest_losstrend.verdict.constants "
                    "(a sweep)")
    args = ap.parse_args(argv)
    # The rules read their constants from this module at call time, so an override here takes
    # effect in every rule (the names are also importable from verdict.trend, but setting them
    # there would change nothing).
    from pytest_losstrend.verdict import constants

    for item in args.set:
        name, _, raw = item.partition("=")
        if not name.isupper() or not hasattr(constants, name):
            ap.error(f"pytest_losstrend.verdict.constants has no constant {name}")
        setattr(constants, name, float(raw))
    runs = load_runs(args.corpus)
    if not runs:
        print(f"no runs in {args.corpus}; run benchmarks/corpus.py first", file=sys.stderr)
        return 2
    if args.diagnosis:
        print(diagnosis_table(runs))
        return 0
    results = judge_runs(runs, _parse_criteria(args.criteria))
    print(summary(results, args.by_config))
    for r in results:
        run = r["run"]
        fa = args.false_alarms and run["family"] == "healthy" and r["status"] == "fail"
        missed = args.false_alarms and run["family"] == "bad" and r["status"] == "pass"
        if fa or missed or (args.show and args.show in run["config"]):
            print(f"{run['config']} seed={run['seed']}: {r['status']}: {r['reason']}")
    fails = sum(r["status"] == "fail" for r in results if r["run"]["family"] == "healthy")
    return 1 if fails and not math.isnan(fails) else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The adoption benchmark (issue 12): the marker alone on test files in the shapes people write.

Usage::

    python benchmarks/bench_adoption.py [--modes marker,explicit,plain] [--files a,b]
                                        [-n 2] [--json out.json] [--md]

Each file under ``benchmarks/adoption/`` is one training-test shape (manual SGD, a plain torch
loop, a DataLoader with accumulation, Lightning, the Hugging Face Trainer, Keras ``fit``, a
``tf.GradientTape`` loop, a loop that keeps epoch means), parametrized over 5 seeds and a fault
switch. The whole directory runs once per mode, in one pytest session each (``ADOPTION_MODE``):

- ``marker``: ``@pytest.mark.loss_decreases`` alone (automatic capture);
- ``explicit``: the marker with ``losstrend.record`` / ``watch`` or the framework's callback;
- ``plain``: no marker, the authors' ``assert losses[-1] < losses[0]``.

Beside them, the two plain checks users already have, applied to the curve the marker-alone run
captured (the same training): ``last <= 0.9 * first`` and ``mean(last quarter) <= 0.9 *
mean(first quarter)``, each "failing" a run when it does not hold (a run the marker stopped
early is judged on the curve up to the stop).

Outcomes come from pytest's JUnit XML, the top cause and the broken invariants from
``--losstrend-report=json``. ``EXPECTED`` labels every fault from its configuration, decided
before any run: the cause it should be failed with, or None when it does not change the
training (it must pass). A cell reads ``failed/5 (top-1 right/5)``; for a healthy or None row,
``passed/5``. The exit status is 0 always: this measures, it does not gate.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "benchmarks" / "adoption"
MODES = ("marker", "explicit", "plain")
#: The plain checks applied to the marker run's captured curves: row key -> column title.
PLAIN_CHECKS = {"naive_ok": "`last <= 0.9*first`",
                "quarters_ok": "last quarter <= 0.9 x first"}

#: shape -> fault -> the root cause a failure should lead with; None: the fault does not change
#: the training (or is no fault: "healthy") and the test must pass. Decided from each fault's
#: configuration before the first run, never after a verdict (see each file's docstring).
EXPECTED: dict[str, dict[str, str | None]] = {
    "manual_sgd": {
        "healthy": None,
        "lr_x100": "lr_too_high",          # SGD past 2/lambda_max, full batch: diverges
        "no_zero_grad": "stale_gradients",  # gradients summed over steps: a growing step
        "shuffled_labels": "chance_level",  # ends at the variance of y, the reference level
        "broadcast": "shape_mismatch",      # (N,1) vs (N,): learns the mean only
    },
    "plain_torch": {
        "healthy": None,
        "lr_x100": "lr_too_high",
        "no_zero_grad": "stale_gradients",
        "param_left_out": "no_learning",    # params_not_in_optimizer: the head never trains
        "shuffled_labels": "chance_level",
        "frozen_first": None,               # frozen on purpose, random features still work
    },
    "dataloader_accum": {
        "healthy": None,
        "lr_x100": "lr_too_high",
        "zero_grad_noop": "stale_gradients",
        "param_left_out": "no_learning",
        "broadcast": "shape_mismatch",
    },
    "epoch_means": {
        "healthy": None,
        "lr_x100": "lr_too_high",
        "no_zero_grad": "stale_gradients",
        "shuffled_labels": "chance_level",
        "broadcast": "shape_mismatch",
    },
    "lightning": {
        "healthy": None,
        "lr_x100": "lr_too_high",
        "zero_grad_noop": "stale_gradients",
        "param_left_out": "no_learning",
        "shuffled_labels": "chance_level",
    },
    "hf_trainer": {
        "healthy": None,
        "lr_x100": "lr_too_high",
        "param_left_out": "no_learning",
        "shuffled_labels": "chance_level",
    },
    "keras_fit": {
        "healthy": None,
        "lr_x100": "lr_too_high",
        "shuffled_labels": "chance_level",
        "frozen_head": "no_learning",        # every layer frozen: the loss cannot move
        "frozen_first": None,
    },
    "tf_gradienttape": {
        "healthy": None,
        "lr_x100": "lr_too_high",
        "broadcast": "shape_mismatch",
        "shuffled_labels": "chance_level",
    },
}
SHAPES = tuple(EXPECTED)


def _key(name: str) -> tuple[str, str, int] | None:
    """(shape, fault, seed) of a test name such as ``test_plain_torch[lr_x100-3]``."""
    m = re.match(r"test_(\w+)\[(.+)\]$", name)
    if not m or m.group(1) not in EXPECTED:
        return None
    parts = m.group(2).split("-")
    seeds = [p for p in parts if p.isdigit()]
    faults = [p for p in parts if not p.isdigit()]
    if len(seeds) != 1 or len(faults) != 1:
        return None
    return m.group(1), faults[0], int(seeds[0])


def run_mode(mode: str, files: list[str], workers: int, tmp: Path) -> dict[str, Any]:
    """One pytest session over ``files`` in ``mode``; per (shape, fault, seed): outcome, top
    cause, broken invariants, and the failure's first line."""
    junit, report = tmp / f"{mode}.xml", tmp / f"{mode}.json"
    env = dict(os.environ, ADOPTION_MODE=mode, PYTHONPATH=str(ROOT),
               TF_CPP_MIN_LOG_LEVEL="3", HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error",
)
    cmd = [sys.executable, "-m", "pytest", *files, "-q", "-p", "no:cacheprovider",
           "-p", "no:randomly", f"--junitxml={junit}", f"--losstrend-report=json:{report}",
           "-o", "addopts="]
    cmd += ["-n", str(workers)] if workers > 1 else ["-p", "no:xdist"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    rows: dict[tuple[str, str, int], dict[str, Any]] = {}
    if not junit.exists():
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{mode}: pytest wrote no JUnit XML")
    for case in ET.parse(junit).getroot().iter("testcase"):
        key = _key(case.get("name", ""))
        if key is None:
            continue
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        skipped = case.find("skipped") is not None
        message = "" if bad is None else (bad.get("message") or "").splitlines()[0:1]
        rows[key] = {"outcome": "failed" if bad is not None else
                     ("skipped" if skipped else "passed"),
                     "message": (message[0] if message else "")[:200],
                     "cause": None, "invariants": []}
    if report.exists():
        doc = json.loads(report.read_text())
        for t in doc.get("tests", []):
            key = _key(t["nodeid"].rsplit("::", 1)[-1])
            if key is None or key not in rows:
                continue
            diagnoses = t.get("diagnoses") or []
            rows[key]["cause"] = diagnoses[0]["cause"] if diagnoses else None
            rows[key]["causes"] = [d["cause"] for d in diagnoses[:3]]
            rows[key]["invariants"] = [i["name"] for i in t.get("invariants", [])
                                       if not i.get("held") and not i.get("allowed")]
            rows[key]["verdict_ok"] = t.get("verdict_ok")
            losses = t.get("series", {}).get("train", {}).get("losses", [])
            rows[key]["points"] = len(losses)
            rows[key]["naive_ok"], rows[key]["quarters_ok"] = plain_checks(losses)
    return {"mode": mode, "seconds": seconds, "rows": rows, "returncode": proc.returncode}


def plain_checks(losses: list[Any]) -> tuple[bool | None, bool | None]:
    """Whether ``last <= 0.9 * first`` and ``mean(last quarter) <= 0.9 * mean(first
    quarter)`` hold on ``losses`` (None without enough points; a non-finite value fails)."""
    vals = [float(v) if isinstance(v, (int, float)) else math.nan for v in losses]
    if len(vals) < 2:
        return None, None
    naive = vals[-1] <= 0.9 * vals[0]
    q = max(1, len(vals) // 4)
    first, last = sum(vals[:q]) / q, sum(vals[-q:]) / q
    return naive, last <= 0.9 * first


def plain_cell(rows: dict[tuple[str, str, int], dict[str, Any]], shape: str, fault: str,
               check: str) -> str:
    """What a plain check on the captured curve does with the runs of one row."""
    got = [r for (s, f, _), r in rows.items() if s == shape and f == fault
           and r.get(check) is not None]
    if not got:
        return "-"
    n = len(got)
    if EXPECTED[shape][fault] is None:
        return f"pass {sum(bool(r[check]) for r in got)}/{n}"
    return f"fail {sum(not r[check] for r in got)}/{n}"


def cell(rows: dict[tuple[str, str, int], dict[str, Any]], shape: str, fault: str,
         mode: str) -> str:
    """``failed/n (top-1 right/n)`` for an expected failure, ``passed/n`` otherwise."""
    got = [r for (s, f, _), r in rows.items() if s == shape and f == fault]
    if not got:
        return "-"
    n = len(got)
    want = EXPECTED[shape][fault]
    if want is None:
        return f"pass {sum(r['outcome'] == 'passed' for r in got)}/{n}"
    failed = sum(r["outcome"] == "failed" for r in got)
    if mode == "plain":
        return f"fail {failed}/{n}"
    right = sum(r["outcome"] == "failed" and r["cause"] == want for r in got)
    return f"fail {failed}/{n}, {right}/{n} right"


def table(results: dict[str, dict[str, Any]]) -> str:
    """The Markdown table: one row per shape x fault, one column per mode."""
    modes = [m for m in MODES if m in results]
    checks = [c for c in PLAIN_CHECKS if "marker" in results]
    heads = modes + [PLAIN_CHECKS[c] for c in checks]
    lines = ["| shape | fault | expected | " + " | ".join(heads) + " |",
             "|---|---|---|" + "---|" * len(heads)]
    for shape in SHAPES:
        for fault, want in EXPECTED[shape].items():
            cells = [cell(results[m]["rows"], shape, fault, m) for m in modes]
            cells += [plain_cell(results["marker"]["rows"], shape, fault, c) for c in checks]
            if all(c == "-" for c in cells):
                continue
            lines.append(f"| {shape} | {fault} | {want or 'pass'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def totals(results: dict[str, dict[str, Any]]) -> str:
    """Per mode: healthy/no-change runs passed, faulty runs failed, top-1 right."""
    out = []
    for m in MODES:
        if m not in results:
            continue
        rows = results[m]["rows"]
        ok = [r for (s, f, _), r in rows.items() if EXPECTED[s][f] is None]
        bad = [(EXPECTED[s][f], r) for (s, f, _), r in rows.items() if EXPECTED[s][f]]
        passed = sum(r["outcome"] == "passed" for r in ok)
        failed = sum(r["outcome"] == "failed" for _, r in bad)
        right = sum(r["outcome"] == "failed" and r["cause"] == w for w, r in bad)
        line = (f"- **{m}** ({results[m]['seconds']:.0f} s): should pass {passed}/{len(ok)} "
                f"passed; faults {failed}/{len(bad)} failed")
        if m != "plain":
            line += f", {right}/{len(bad)} with the expected cause first"
        out.append(line)
    if "marker" in results:
        rows = results["marker"]["rows"]
        for check, name in PLAIN_CHECKS.items():
            ok = [r for (s, f, _), r in rows.items()
                  if EXPECTED[s][f] is None and r.get(check) is not None]
            bad = [r for (s, f, _), r in rows.items()
                   if EXPECTED[s][f] and r.get(check) is not None]
            out.append(f"- **{name}** (on the marker run's captured curves): should pass "
                       f"{sum(bool(r[check]) for r in ok)}/{len(ok)} passed; faults "
                       f"{sum(not r[check] for r in bad)}/{len(bad)} failed")
    return "\n".join(out)


def misses(results: dict[str, dict[str, Any]]) -> str:
    """Every run that missed: the outcome, the top causes and invariants, the message."""
    out = []
    for m in MODES:
        if m not in results or m == "plain":
            continue
        for (s, f, seed), r in sorted(results[m]["rows"].items()):
            want = EXPECTED[s][f]
            ok = (r["outcome"] == "passed") if want is None else (
                r["outcome"] == "failed" and r["cause"] == want)
            if not ok:
                out.append(f"{m:8} {s}/{f}/{seed}: {r['outcome']} causes={r.get('causes')} "
                           f"inv={r['invariants']} pts={r.get('points')} | {r['message'][:110]}")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--files", default="", help="shapes to run (default: all)")
    ap.add_argument("-n", type=int, default=2, help="pytest-xdist workers per session")
    ap.add_argument("--json", default="", help="write the raw rows here")
    args = ap.parse_args()
    shapes = [s for s in args.files.split(",") if s] or list(SHAPES)
    files = [str(HERE / f"test_{s}.py") for s in shapes]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as d:
        for mode in args.modes.split(","):
            results[mode] = run_mode(mode, files, args.n, Path(d))
            print(f"{mode}: {len(results[mode]['rows'])} runs in "
                  f"{results[mode]['seconds']:.0f} s", file=sys.stderr, flush=True)
    print(table(results))
    print()
    print(totals(results))
    print()
    print(misses(results))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {m: {"seconds": r["seconds"],
                 "rows": [{"shape": s, "fault": f, "seed": seed, **row}
                          for (s, f, seed), row in sorted(r["rows"].items())]}
             for m, r in results.items()}, indent=1))


if __name__ == "__main__":
    main()

"""Diagnosis accuracy on the real training scenarios of ``pytest_losstrend.catalogue.scenarios``.

Every scenario's bad run goes wrong for one known reason; its healthy twin does not. This runs
each bad side and each twin under ``--seeds`` seeds, judges them as the ``loss_decreases``
marker would (fail-fast, warnings captured, sharpness measured on failure, built-in rules), and
prints in markdown:

- per scenario: how often the bad run fails, how often its top diagnosis is the expected cause
  with ``watch`` evidence and from the curves alone (``evidence=None``), and how often the twin
  passes;
- the confusion table (expected cause x top cause), with watch and curve only;
- top-1 accuracy per cause and overall;
- every misdiagnosed bad run and every twin that did not pass, with the verdict's reason, the
  ranked diagnoses and the evidence figures the rules read, for whoever tunes the rules.

A curve-only diagnosis still sees the run's warnings (torch's broadcast warning), as the
marker does without ``watch``.

Usage::

    python benchmarks/diagnosis_accuracy.py                # 10 seeds, every scenario
    python benchmarks/diagnosis_accuracy.py --seeds 3 --only lr_too_high,plateau
    python benchmarks/diagnosis_accuracy.py --no-keras     # skip the TensorFlow import
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

# One thread each: the scenarios are tiny, and the benchmark shares the machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pytest_losstrend.catalogue.scenarios import SCENARIOS, Scenario, ScenarioRun, execute
from pytest_losstrend.verdict.result import Verdict

#: Evidence fields shown for a misdiagnosed run (the ones the rules read).
EVIDENCE_FIELDS = (
    "optimizer", "momentum", "zero_grad_calls", "optimizer_steps", "not_in_optimizer", "frozen",
    "unchanged", "zero_grad_params", "dead_fraction", "output_features", "loss_name",
    "first_loss", "sharpness", "sharpness_lr", "shape_mismatches", "notes",
)


@dataclass
class Outcome:
    """One run's result: status, top cause with and without evidence, and details."""

    scenario: str
    expected: str
    bad: bool
    seed: int
    status: str = "error"
    kind: str = ""
    top: str = "error"
    top_curve: str = "error"
    seconds: float = 0.0
    details: list[str] = field(default_factory=list)


def _top(verdict: Verdict) -> str:
    if verdict.ok:
        return "(passed)"
    return verdict.diagnoses[0].cause if verdict.diagnoses else "(none)"


def _summary(run: ScenarioRun, verdict: Verdict) -> list[str]:
    ev = run.lt.evidence
    lines = [f"verdict: {verdict.status} / {verdict.kind}: {verdict.reason}"]
    for d in verdict.diagnoses[:4]:
        lines.append(f"  {d.cause} {d.confidence:.2f}: {d.evidence}")
    if ev is not None:
        figures: dict[str, Any] = {k: getattr(ev, k) for k in EVIDENCE_FIELDS}
        figures = {k: v for k, v in figures.items() if v not in (None, [], {}, "")}
        if ev.update_ratio:
            figures["max_update_ratio"] = {
                k: float(f"{max(v):.3g}") for k, v in ev.update_ratio.items() if v}
        if ev.grad_norm:
            figures["grad_norm"] = [float(f"{g:.3g}") for g in ev.grad_norm[:6]]
        if ev.lr:
            figures["lr"] = ev.lr[-1]
        stats = ev.input_stats
        if stats:
            figures["input_stats"] = {k: float(f"{stats[k]:.3g}") for k in
                                      ("std_ratio", "max_abs") if k in stats}
        lines.append(f"  evidence: {figures}")
    losses = run.lt.losses(run.criteria.series)
    shown = ", ".join(f"{v:.3g}" for v in losses[:8])
    lines.append(f"  {run.criteria.series} ({len(losses)} points): {shown}"
                 + (" ..." if len(losses) > 8 else ""))
    return lines


def run_one(scenario: Scenario, *, bad: bool, seed: int) -> Outcome:
    """Run and diagnose one side of ``scenario``; exceptions become an ``error`` outcome."""
    out = Outcome(scenario.name, scenario.cause, bad, seed)
    start = time.perf_counter()
    try:
        run = execute(scenario, bad=bad, seed=seed)
        out.seconds = time.perf_counter() - start
        verdict = run.diagnosed()
        out.status, out.kind, out.top = verdict.status, verdict.kind, _top(verdict)
        out.top_curve = _top(run.diagnosed(use_evidence=False))
        wrong = out.top != scenario.cause if bad else (not verdict.ok or verdict.diagnoses)
        if wrong:
            out.details = _summary(run, verdict)
    except Exception as exc:  # a rule or a backend that crashes is a finding, not an abort
        out.seconds = time.perf_counter() - start
        out.top = out.top_curve = f"error: {type(exc).__name__}"
        last = traceback.extract_tb(exc.__traceback__)[-1]
        out.details = [f"{type(exc).__name__}: {exc} (at {last.filename.split('/')[-1]}:"
                       f"{last.lineno}, {last.line})"]
    return out


def _pct(k: int, n: int) -> str:
    return f"{k}/{n} ({100.0 * k / n:.0f}%)" if n else "-"


def confusion(outcomes: list[Outcome], attr: str) -> list[str]:
    """A markdown confusion table: expected cause (rows) x top cause (columns)."""
    rows: dict[str, Counter[str]] = defaultdict(Counter)
    for o in outcomes:
        rows[o.expected][getattr(o, attr)] += 1
    cols = sorted({c for r in rows.values() for c in r})
    lines = ["| expected \\ top | " + " | ".join(cols) + " |",
             "|---|" + "---|" * len(cols)]
    for exp in sorted(rows):
        cells = []
        for c in cols:
            k = rows[exp][c]
            cells.append(f"**{k}**" if c == exp and k else (str(k) if k else "."))
        lines.append(f"| {exp} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds per side (default 10)")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--no-keras", action="store_true", help="skip the Keras scenarios")
    parser.add_argument("--quiet", action="store_true", help="no per-run details")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    chosen = [s for s in SCENARIOS
              if (not args.only or s.name in args.only.split(","))
              and not (args.no_keras and s.framework == "keras")]
    bad: list[Outcome] = []
    twins: list[Outcome] = []
    t0 = time.perf_counter()
    for sc in chosen:
        for seed in range(args.seeds):
            bad.append(run_one(sc, bad=True, seed=seed))
            twins.append(run_one(sc, bad=False, seed=seed))
        print(f"... {sc.name} done ({time.perf_counter() - t0:.0f}s)", file=sys.stderr)

    out: list[str] = [f"## Diagnosis accuracy: {len(chosen)} scenarios x {args.seeds} seeds", ""]
    out += ["| scenario | expected cause | bad fails | top-1 with watch | top-1 curve only "
            "| other top causes (watch) | twin passes | s/run |",
            "|---|---|---|---|---|---|---|---|"]
    for sc in chosen:
        b = [o for o in bad if o.scenario == sc.name]
        t = [o for o in twins if o.scenario == sc.name]
        fails = sum(o.status == sc.bad_status for o in b)
        hit = sum(o.top == sc.cause for o in b)
        hit_c = sum(o.top_curve == sc.cause for o in b)
        others = Counter(o.top for o in b if o.top != sc.cause)
        other_s = ", ".join(f"{c} x{k}" for c, k in others.most_common()) or "-"
        passes = sum(o.status == "pass" for o in t)
        secs = max((o.seconds for o in b + t), default=0.0)
        out.append(f"| {sc.name} | {sc.cause} | {_pct(fails, len(b))} | {_pct(hit, len(b))} "
                   f"| {_pct(hit_c, len(b))} | {other_s} | {_pct(passes, len(t))} "
                   f"| {secs:.2f} |")
    n = len(bad)
    hit = sum(o.top == o.expected for o in bad)
    hit_c = sum(o.top_curve == o.expected for o in bad)
    passes = sum(o.status == "pass" for o in twins)
    out += ["", f"**Overall top-1: {_pct(hit, n)} with watch, {_pct(hit_c, n)} curve only; "
            f"twins passing: {_pct(passes, len(twins))}.**", ""]

    out += ["### Top-1 accuracy per cause", "", "| cause | with watch | curve only |",
            "|---|---|---|"]
    for cause in sorted({o.expected for o in bad}):
        rows = [o for o in bad if o.expected == cause]
        out.append(f"| {cause} | {_pct(sum(o.top == cause for o in rows), len(rows))} | "
                   f"{_pct(sum(o.top_curve == cause for o in rows), len(rows))} |")
    out += ["", "### Confusion, with watch (rows: expected cause; columns: top cause)", ""]
    out += confusion(bad, "top")
    out += ["", "### Confusion, curve only", ""]
    out += confusion(bad, "top_curve")

    if not args.quiet:
        out += ["", "### Misdiagnosed bad runs and twins that did not pass", ""]
        for o in bad + twins:
            if not o.details:
                continue
            side = "bad" if o.bad else "twin"
            out.append(f"- **{o.scenario}** ({side}, seed {o.seed}): top `{o.top}`, "
                       f"expected `{o.expected if o.bad else '(passed)'}`")
            out += [f"    - {line}" for line in o.details]
    out.append("")
    out.append(f"_{n + len(twins)} runs in {time.perf_counter() - t0:.0f}s._")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Judge the new corpus (issue 11) with the default verdict and the two naive checks.

Reads every ``benchmarks/corpus_new/*.json`` (``torch.json`` from ``corpus_new.py``, the Keras
half from ``corpus_new_keras.py`` when present), judges each run's ``judge`` series with the
current default verdict (``pytest_losstrend.check(losses)``; inconclusive counted apart) and with
the checks people already write:

- ``last <= 0.9 first``: ``losses[-1] <= 0.9 * losses[0]`` passes;
- ``quarters``: ``mean(last quarter) <= 0.9 * mean(first quarter)`` passes (the check
  pytest-torch ships; a quarter is at least one point).

A healthy run that fails is a false alarm (for the verdict an inconclusive one is a skipped test,
shown apart); a broken run that fails is caught (an inconclusive one is not).  Then the top-1
cause of each broken run that fails (from its curves and the configured optimizer and lr, no
``watch`` evidence) against the cause expected from its configuration.  The expected causes are
fixed here (torch) or carried by the run (``expected_cause``, Keras), never derived from a
verdict.

Usage::

    python benchmarks/judge_new.py [--corpus benchmarks/corpus_new] [--show SUBSTRING]
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pytest_losstrend import check

HERE = Path(__file__).resolve().parent

#: torch configuration (by its last name part) -> (expected top cause, needs watch evidence).
#: ``chance_level`` is the cause DESIGN.md names for a run that ends no better than the best
#: constant predictor (issue 11 adds the rule); ``None`` where no
#: cause code fits.
EXPECTED_TORCH: dict[str, tuple[str | None, bool]] = {
    "lr_blowup_dead": ("lr_too_high", False),
    "lr_blowup_sgd": ("lr_too_high", False),
    "attn_lr_high": ("lr_too_high", False),
    "gru_lr_high": ("lr_too_high", False),
    "labels_shuffled": ("chance_level", False),
    "labels_shuffled_cancer": ("chance_level", False),
    "labels_shuffled_lstm": ("chance_level", False),
    "wrong_target_rowid": ("chance_level", False),
    "epochs5_shuffled": ("chance_level", False),
    "init_x100": ("bad_init", False),
    "init_x100_lstm": ("bad_init", False),
    "zero_init": ("no_learning", False),
    "zero_init_cancer": ("no_learning", False),
    "short5_zero_init": ("no_learning", False),
    "no_step": ("no_learning", False),
    "no_step_gru": ("no_learning", False),
    "epochs6_no_step": ("no_learning", False),
    "short3_no_step": ("no_learning", False),
    "finetune_frozen": ("no_learning", False),
    "frozen_body_bias": ("no_learning", False),
    "no_zero_grad": ("stale_gradients", True),
    "no_zero_grad_cancer": ("stale_gradients", True),
    "steplr_per_batch": ("lr_too_low", True),
    "warmup_never_ends": ("lr_too_low", True),
    "shape_broadcast": ("shape_mismatch", True),
    "detached_rnn": ("no_learning", True),
    "overfit_eval": ("overfitting", False),
    "double_softmax": (None, False),
}


def expected_cause(run: dict[str, Any]) -> tuple[str | None, bool]:
    """The cause a broken run's configuration says should come first, and whether only
    ``watch`` evidence could show it."""
    if "expected_cause" in run:
        return run["expected_cause"], False
    return EXPECTED_TORCH.get(run["config"].rsplit("/", 1)[-1], (None, False))


def _floats(values: list[Any]) -> list[float]:
    return [float(v) for v in values]  # non-finite values are stored as strings


def last_vs_first(x: list[float]) -> bool:
    """``losses[-1] <= 0.9 * losses[0]`` passes."""
    return x[-1] <= 0.9 * x[0]


def quarters(x: list[float]) -> bool:
    """``mean(last quarter) <= 0.9 * mean(first quarter)`` passes."""
    k = max(1, len(x) // 4)
    return float(np.mean(x[-k:])) <= 0.9 * float(np.mean(x[:k]))


NAIVE: dict[str, Callable[[list[float]], bool]] = {
    "last <= 0.9 first": last_vs_first,
    "quarters": quarters,
}


def load_runs(folder: Path) -> list[dict[str, Any]]:
    """Every run of every ``*.json`` in ``folder``."""
    runs: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.json")):
        runs.extend(json.loads(path.read_text(encoding="utf-8"))["runs"])
    return runs


def top_cause(run: dict[str, Any], verdict: Any) -> str:
    """Top-1 cause from the run's curves and its optimizer and lr (no watch evidence)."""
    from pytest_losstrend.diagnosis.context import context_for
    from pytest_losstrend.diagnosis.evidence import Evidence
    from pytest_losstrend.diagnosis.ranking import rank
    from pytest_losstrend.diagnosis.rules import builtin_diagnoses

    judged = run.get("judge") or "train"
    series = {k: _floats(v) for k, v in run["series"].items()}
    ev = Evidence(optimizer=run.get("optimizer"), lr=[float(run["lr"])] if run.get("lr") else [])
    ranked = rank(builtin_diagnoses(context_for(series, judged, verdict, evidence=ev)))
    return ranked[0].cause if ranked else "-"


def known_reference(run: dict[str, Any]) -> float | None:
    """The run's reference level where the plugin would know it: its loss is one
    ``reference_level`` computes (cross-entropy, BCE, MSE, L1, Huber), not a Gaussian NLL."""
    if run.get("reference") is None:
        return None
    if run.get("loss") == "gauss_nll" or "gauss" in run["config"]:
        return None
    return float(run["reference"])


def judge(run: dict[str, Any]) -> dict[str, Any]:
    """The verdict from the curve alone, the verdict with the run's reference level (as
    ``fit`` and ``watch(loss_fn=, batch=)`` judge), the naive checks and (for a broken run that
    fails) the top-1 cause."""
    x = _floats(run["series"][run.get("judge") or "train"])
    v0 = check(x, reference=None)
    ref = known_reference(run)
    v = check(x, reference=ref) if ref is not None else v0
    out: dict[str, Any] = {"run": run, "status": v.status, "reason": v.reason,
                           "status0": v0.status,
                           "naive": {name: fn(x) for name, fn in NAIVE.items()}}
    if run["family"] == "bad" and v.status == "fail":
        out["top"] = top_cause(run, v)
    return out


def _pct(k: int, n: int) -> str:
    return f"{k}/{n} ({100.0 * k / n:.0f}%)" if n else "-"


def _row(label: list[str], rs: list[dict[str, Any]]) -> str:
    n = len(rs)
    fail0 = sum(r["status0"] == "fail" for r in rs)
    inc0 = sum(r["status0"] == "inconclusive" for r in rs)
    fail = sum(r["status"] == "fail" for r in rs)
    inc = sum(r["status"] == "inconclusive" for r in rs)
    naive = [sum(not r["naive"][name] for r in rs) for name in NAIVE]
    cells = [*label, str(n), _pct(fail0, n), _pct(inc0, n), _pct(fail, n), _pct(inc, n),
             *(_pct(k, n) for k in naive)]
    return "| " + " | ".join(cells) + " |"


def tables(results: list[dict[str, Any]]) -> str:
    """One Markdown table per family: overall (per framework), then per configuration."""
    out: list[str] = []
    for family, title in (
        ("healthy", "Healthy runs: false alarms (a FAIL is a false alarm; INCONCLUSIVE is a "
         "skipped test)"),
        ("bad", "Broken runs: caught (a FAIL is caught; INCONCLUSIVE is skipped, not caught)"),
    ):
        rs = [r for r in results if r["run"]["family"] == family]
        if not rs:
            continue
        head = ["framework", "configuration", "runs", "curve only: FAIL", "INC",
                "with reference: FAIL", "INC", *(f"`{n}` FAIL" for n in NAIVE)]
        out += [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        by_fw: dict[str, list[dict[str, Any]]] = defaultdict(list)
        by_cfg: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for r in rs:
            by_fw[r["run"]["framework"]].append(r)
            by_cfg[(r["run"]["framework"], r["run"]["config"])].append(r)
        for (fw, cfg), group in by_cfg.items():
            out.append(_row([fw, cfg.split("/")[-1] + (f" ({group[0]['run']['broken']})"
                                                         if family == "bad" else "")], group))
        for fw, group in sorted(by_fw.items()):
            out.append(_row([f"**{fw}**", "**all**"], group))
        if len(by_fw) > 1:
            out.append(_row(["**all**", "**all**"], rs))
        out.append("")
    return "\n".join(out)


def cause_table(results: list[dict[str, Any]]) -> str:
    """Top-1 cause of the broken runs the verdict fails, against the expected cause."""
    rows: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for r in results:
        run = r["run"]
        if run["family"] != "bad":
            continue
        cause, watch = expected_cause(run)
        want = (cause or "(none fits)") + (" (watch)" if watch else "")
        rows[(run["framework"], run["config"].split("/")[-1], want)].append(
            r.get("top", r["status"].upper()))
    lines = ["| framework | configuration | expected | top-1 right | top-1 causes (PASS / "
             "INCONCLUSIVE: not failed) |", "|---|---|---|---|---|"]
    right = total = right_c = total_c = 0
    for (fw, cfg, want), tops in rows.items():
        cause = want.split(" ")[0]
        k = sum(t == cause for t in tops)
        if not want.startswith("("):
            right += k
            total += len(tops)
            if "(watch)" not in want:
                right_c += k
                total_c += len(tops)
        counts = ", ".join(f"{c} {tops.count(c)}"
                           for c in sorted(set(tops), key=lambda c: -tops.count(c)))
        lines.append(f"| {fw} | {cfg} | {want} | {k}/{len(tops)} | {counts} |")
    lines.append(f"| **all** | | | **{_pct(right, total)}** | |")
    lines.append(f"| **all not needing watch** | | | **{_pct(right_c, total_c)}** | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=HERE / "corpus_new")
    ap.add_argument("--show", default="", help="print each run's verdict for configurations "
                    "containing this")
    args = ap.parse_args(argv)
    runs = load_runs(args.corpus)
    if not runs:
        print(f"no runs in {args.corpus}; run benchmarks/corpus_new.py first")
        return 2
    results = [judge(run) for run in runs]
    print(tables(results))
    print("### Top-1 cause of the broken runs (curves + configured optimizer/lr, no watch)\n")
    print(cause_table(results))
    if args.show:
        for r in results:
            run = r["run"]
            if args.show in run["config"]:
                x = _floats(run["series"][run.get("judge") or "train"])
                fin = [v for v in x if math.isfinite(v)]
                print(f"{run['config']} s{run['seed']} n={len(x)} first={x[0]:.4g} "
                      f"last={x[-1]:.4g} max={max(fin) if fin else math.nan:.4g} "
                      f"ref={run.get('reference')}: {r['status']} {r.get('top', '')}: "
                      f"{r['reason']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

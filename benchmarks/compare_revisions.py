"""Loading and recording cost of two revisions of the package, measured side by side.

Usage::

    python benchmarks/compare_revisions.py --old REV [--new REV] [--pairs 7]

Each revision is checked out (``git worktree``) into a temporary folder and run from there with
``PYTHONPATH`` pointing at it, so both use this interpreter and its packages. The measurements
alternate old, new, new, old, ... so that a machine that is busy in one stretch slows both:

- **plugin load**: ``pytest --collect-only -q`` on 300 plain tests (no marker, no fixture), the
  whole subprocess: what every pytest run of a project with the plugin installed pays;
- **import**: ``import pytest_losstrend.plugin`` in a fresh interpreter, in-process timer,
  and which of numpy, torch, tensorflow it pulled in (must be none);
- **record()**: the per-step cost of ``LossTrend.record`` of a CPU torch scalar, 200,000 calls,
  best of 5 in one subprocess.

The table gives each revision's median and the median of the per-pair ratios new/old.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

IMPORT = """
import json, sys, time
t = time.perf_counter()
import pytest_losstrend.plugin
dt = time.perf_counter() - t
heavy = [m for m in ("numpy", "torch", "tensorflow", "keras") if m in sys.modules]
print(json.dumps({"s": dt, "heavy": heavy}))
"""

RECORD = """
import json, time
import torch
from pytest_losstrend.fixture import LossTrend
x = torch.tensor(0.5)
best = float("inf")
for _ in range(5):
    lt = LossTrend()
    t = time.perf_counter()
    for _ in range(200_000):
        lt.record(x)
    best = min(best, (time.perf_counter() - t) / 200_000)
print(json.dumps({"s": best}))
"""


def _checkout(rev: str, where: Path) -> Path:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(where), rev],
                   check=True)
    return where


def _env(tree: Path) -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(tree)}


def _collect(tree: Path, suite: Path) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p",
                    "no:cacheprovider", "-p", "no:randomly", str(suite)], cwd=suite,
                   env=_env(tree), check=True, capture_output=True)
    return time.perf_counter() - t


def _script(tree: Path, code: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", code], env=_env(tree), check=True,
                         capture_output=True, text=True, cwd=tree).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", required=True)
    ap.add_argument("--new", default="HEAD")
    ap.add_argument("--pairs", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        trees = {"old": _checkout(args.old, base / "old"), "new": _checkout(args.new, base / "new")}
        suite = base / "suite"
        suite.mkdir()
        (suite / "test_plain.py").write_text(
            "import pytest\n\n@pytest.mark.parametrize('i', range(300))\n"
            "def test_plain(i):\n    assert i >= 0\n")
        got: dict[str, dict[str, list[float]]] = {k: {"collect": [], "import": [], "record": []}
                                                  for k in trees}
        heavy: dict[str, object] = {}
        try:
            for i in range(args.pairs):
                order = ["old", "new"] if i % 2 == 0 else ["new", "old"]
                for name in order:
                    got[name]["collect"].append(_collect(trees[name], suite))
                    imp = _script(trees[name], IMPORT)
                    got[name]["import"].append(float(imp["s"]))  # type: ignore[arg-type]
                    heavy[name] = imp["heavy"]
                    got[name]["record"].append(float(_script(trees[name], RECORD)["s"]))  # type: ignore[arg-type]
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(tree)], check=False)
    print(f"old = {args.old}, new = {args.new}, {args.pairs} pairs, alternating\n")
    print("| measure | old (median) | new (median) | new/old (median of pairs) |")
    print("|---|---|---|---|")
    units = {"collect": (1.0, "s"), "import": (1e3, "ms"), "record": (1e6, "us")}
    for key, label in (("collect", "pytest --collect-only, 300 plain tests"),
                       ("import", "import pytest_losstrend.plugin"),
                       ("record", "record() of a CPU torch scalar, per call")):
        scale, unit = units[key]
        old, new = got["old"][key], got["new"][key]
        ratio = statistics.median(n / o for o, n in zip(old, new, strict=True))
        print(f"| {label} | {statistics.median(old) * scale:.3g} {unit} | "
              f"{statistics.median(new) * scale:.3g} {unit} | {ratio:.3f} |")
    print(f"\nheavy modules imported by loading the plugin: old {heavy['old'] or 'none'}, "
          f"new {heavy['new'] or 'none'}")


if __name__ == "__main__":
    main()

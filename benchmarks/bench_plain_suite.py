"""Measure what the installed plugin costs a suite that never uses it (issue 12).

Usage::

    python benchmarks/bench_plain_suite.py [--rounds N] [--tests 300] [--json out.json]

Generates ``--tests`` plain tests in a temporary directory: pure-Python tests (arithmetic,
strings, small dicts, a parametrized one) in most files, and a few files that import torch and
run tiny tensor ops, none with the ``loss_decreases`` marker. Each round runs ``pytest`` on them
twice in fresh interpreters, once with ``-p no:losstrend`` (the plugin not loaded) and once with
it, the order alternating between rounds; both with ``-p no:cacheprovider -p no:xdist -q``.
Timed: the wall time of the whole run (interpreter start, imports, collection, the tests, the
summary) and the CPU time the child process used.

Reported: the median of the per-round ratios (with plugin / without), its interquartile range,
and the ratio of the fastest runs. Target <= 1.03. The exit status is 1 when it is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET = 1.03
PER_FILE = 20

PLAIN = '''
import pytest


def test_add_{i}():
    assert sum(range({i} + 10)) == ({i} + 10) * ({i} + 9) // 2


def test_text_{i}():
    words = "the quick brown fox {i}".split()
    assert " ".join(reversed(words)).startswith(str({i}))


def test_dict_{i}():
    d = {{k: k * k for k in range({i} % 7 + 3)}}
    assert max(d) ** 2 == d[max(d)]


@pytest.mark.parametrize("n", [1, 2])
def test_param_{i}(n):
    assert n * {i} >= {i}
'''

TORCH = '''
import torch


def test_ones_{i}():
    assert float(torch.ones(3).sum()) == 3.0


def test_matmul_{i}():
    a = torch.arange(4.0).reshape(2, 2)
    assert torch.equal(a @ torch.eye(2), a)


def test_grad_{i}():
    # No marker, so nothing patched: the plugin's capture is for marked tests only.
    assert torch.Tensor.backward.__module__ == "torch._tensor"
    w = torch.tensor([2.0], requires_grad=True)
    (w * w).sum().backward()
    assert float(w.grad) == 4.0


def test_relu_{i}():
    assert float(torch.relu(torch.tensor(-1.0))) == 0.0


def test_mean_{i}():
    assert abs(float(torch.linspace(0, 1, 5).mean()) - 0.5) < 1e-6
'''


def generate(root: Path, n_tests: int) -> int:
    """Write the suite; returns the number of tests generated (5 per block)."""
    made, i = 0, 0
    while made < n_tests:
        torch_file = i % 6 == 5  # one file in six imports torch
        body = "".join((TORCH if torch_file else PLAIN).format(i=i * 10 + k)
                       for k in range(PER_FILE // 5))
        (root / f"test_gen_{i:03d}.py").write_text(body)
        made += PER_FILE
        i += 1
    return made


def run_once(root: Path, with_plugin: bool) -> tuple[float, float]:
    """(wall seconds, child CPU seconds) of one pytest run."""
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
    if not with_plugin:
        args += ["-p", "no:losstrend"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=root, capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"pytest failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--tests", type=int, default=300)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        n = generate(root, args.tests)
        (root / "pytest.ini").write_text("[pytest]\n")
        for plugin in (False, True):  # warm the file cache and the bytecode of the libraries
            run_once(root, plugin)
        times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for r in range(args.rounds):
            for plugin in ((False, True) if r % 2 == 0 else (True, False)):
                times[plugin].append(run_once(root, plugin))
    data: dict[str, Any] = {"tests": n, "rounds": args.rounds}
    lines = ["| measure | without plugin, median (s) | with plugin, median (s) | ratio, median "
             "| IQR | fastest runs, ratio |", "|---|---|---|---|---|---|"]
    ok = True
    for k, label in ((0, "wall time"), (1, "CPU time")):
        off = [t[k] for t in times[False]]
        on = [t[k] for t in times[True]]
        ratios = [b / a for a, b in zip(off, on, strict=True)]
        q1, q2, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
        fastest = min(on) / min(off)
        if k == 1 and q2 > TARGET:
            ok = False
        lines.append(f"| {label} | {statistics.median(off):.3f} | {statistics.median(on):.3f} | "
                     f"{q2:.3f} | {q1:.3f}-{q3:.3f} | {fastest:.3f} |")
        data[label] = {"off": off, "on": on, "ratio": q2, "iqr": [q1, q3], "fastest": fastest}
    print(f"### Plugin installed, no marker: {n} plain tests, {args.rounds} interleaved rounds "
          f"(target <= {TARGET:.2f})\n")
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

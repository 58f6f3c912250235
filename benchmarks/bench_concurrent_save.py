"""Concurrent baseline saves: how many runs survive when sessions save the same baseline at once.

Each round starts ``--sessions`` real ``python -m pytest --losstrend-save`` processes together in
one folder, each under its own ``--losstrend-seed``, each with ``--tests`` marked tests. With
``--barrier`` (the default) a conftest holds every session at the start of its session finish
until all of the round have arrived, so that their saves overlap: the worst case, which a CI
matrix saving several seeds hits by chance. A run is *written* when its session reports it
added; it is *kept* when it is in the file after the round. Without a lock around the read,
merge and write, the last writer drops the other sessions' runs.

    python benchmarks/bench_concurrent_save.py [--rounds 5] [--sessions 2] [--tests 40]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITE = """
import random

import pytest

@pytest.mark.parametrize("i", range({tests}))
@pytest.mark.loss_decreases
def test_curve(losstrend, i):
    losstrend.record([2.0 * 0.99 ** k + 0.05 * random.random() for k in range({points})])
"""

BARRIER = """
import os
import time
from pathlib import Path

import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    folder = os.environ.get("BARRIER_DIR")
    if not folder:
        return
    Path(folder).mkdir(exist_ok=True)
    (Path(folder) / os.environ["BARRIER_ME"]).touch()
    deadline = time.monotonic() + 120
    while len(os.listdir(folder)) < int(os.environ["BARRIER_N"]) and time.monotonic() < deadline:
        time.sleep(0.0005)
"""


def run(rounds: int, sessions: int, tests: int, points: int, barrier: bool) -> list[dict[str, int]]:
    """Run the rounds in a fresh folder; one row of figures per round."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="lt-concurrent-") as tmp:
        where = Path(tmp)
        (where / "test_many.py").write_text(SUITE.format(tests=tests, points=points))
        (where / "conftest.py").write_text(BARRIER)
        written_total = 0
        for r in range(rounds):
            seeds = [r * sessions + k for k in range(sessions)]
            env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
            if barrier:
                env |= {"BARRIER_DIR": str(where / f"barrier{r}"), "BARRIER_N": str(sessions)}
            start = time.monotonic()
            procs = [subprocess.Popen(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
                 "no:randomly", "-p", "no:xdist", "--losstrend-save", f"--losstrend-seed={seed}"],
                cwd=where, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                env={**env, "BARRIER_ME": str(seed)}) for seed in seeds]
            outs = [p.communicate(timeout=600)[0] for p in procs]
            took = time.monotonic() - start
            written = 0
            for p, out in zip(procs, outs, strict=True):
                m = re.search(r"baseline \S+: (\d+) tests? added", out)
                written += int(m.group(1)) if m and p.returncode == 0 else 0
            written_total += written
            doc = json.loads((where / ".losstrend" / "default.json").read_text())
            kept = sum(len(e["runs"]) for e in doc["tests"].values())
            rows.append({"round": r + 1, "written": written, "written_total": written_total,
                         "kept_total": kept, "exit_ok": sum(p.returncode == 0 for p in procs),
                         "seconds": round(took, 1)})
    return rows


def main() -> None:
    """Run the rounds and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sessions", type=int, default=2)
    ap.add_argument("--tests", type=int, default=40)
    ap.add_argument("--points", type=int, default=400)
    ap.add_argument("--no-barrier", action="store_true",
                    help="start the sessions together but let their saves fall where they may")
    args = ap.parse_args()
    rows = run(args.rounds, args.sessions, args.tests, args.points, not args.no_barrier)
    print(f"{args.sessions} concurrent sessions x {args.tests} tests, {args.rounds} rounds, "
          f"barrier {'off' if args.no_barrier else 'on'}")
    print("round  runs written  written so far  kept in file  sessions exit 0  seconds")
    for row in rows:
        print(f"{row['round']:>5}  {row['written']:>12}  {row['written_total']:>14}  "
              f"{row['kept_total']:>12}  {row['exit_ok']:>15}  {row['seconds']:>7}")
    last = rows[-1]
    before = [0] + [row["kept_total"] for row in rows[:-1]]
    lost_rounds = sum(row["kept_total"] - prev < row["written"]
                      for row, prev in zip(rows, before, strict=True))
    print(f"runs kept / runs written: {last['kept_total']} / {last['written_total']} "
          f"({lost_rounds} of {len(rows)} rounds lost runs)")


if __name__ == "__main__":
    main()

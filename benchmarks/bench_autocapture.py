"""Measure what automatic capture (the marker alone, issue 12) costs a tiny torch loop.

Usage::

    python benchmarks/bench_autocapture.py [--rounds N] [--json out.json] [--manual]

The loop: ``nn.Linear(10, 1)``, batch 32, MSE, SGD, 2000 steps, one thread, as in
``bench_watch.py``. Variants, run interleaved in one process with the order rotating every
round, each timed from before capture starts to after it stopped (the undo, the pending values
recorded, the watcher finished):

- ``bare``: no capture;
- ``bare (A/A)``: the same loop again, the noise floor;
- ``capture``: the loss of each backward recorded, grouped per optimizer step, no watcher
  (``TorchCapture(watch=False)``);
- ``capture + watch``: what a marked test gets: the loss, and the model watched (sampled steps).

With ``--manual`` the loop has no optimizer (``p -= lr * p.grad``, then ``p.grad = None``): the
loss is recorded per backward and sampled backward calls check for stale gradients; one more
variant, ``capture + watch, no stale check``, turns that check off to show what it costs.

Reported, for wall time and for the CPU time of the thread that runs the loop (less disturbed
by other jobs on a shared machine): the median and interquartile range of the per-round ratios
to ``bare``, and the ratio of the fastest rounds. Targets: capture <= 1.05x, capture + watch
<= 1.10x, on the CPU-time median. The exit status is 1 when one is missed.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

STEPS = 2000
BATCH = 32
TARGETS = {"capture": 1.05, "capture + watch": 1.10}


def make_loop(manual: bool = False) -> Callable[[], None]:
    """The tiny loop over fixed data (the same every call); ``manual``: no optimizer."""
    import torch

    torch.manual_seed(0)
    x = torch.randn(4096, 10)
    y = x @ torch.randn(10, 1) + 0.1 * torch.randn(4096, 1)
    batches = [(x[i:i + BATCH], y[i:i + BATCH])
               for i in range(0, STEPS * BATCH % 4096 or 4096, BATCH)]

    def loop() -> None:
        model = torch.nn.Linear(10, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for step in range(STEPS):
            xb, yb = batches[step % len(batches)]
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(xb), yb)
            loss.backward()
            opt.step()

    def manual_loop() -> None:
        model = torch.nn.Linear(10, 1)
        params = list(model.parameters())
        for step in range(STEPS):
            xb, yb = batches[step % len(batches)]
            loss = torch.nn.functional.mse_loss(model(xb), yb)
            loss.backward()
            with torch.no_grad():
                for p in params:
                    grad = p.grad
                    assert grad is not None
                    p.sub_(grad, alpha=0.01)
                    p.grad = None

    return manual_loop if manual else loop


def variant(name: str, loop: Callable[[], None]) -> Callable[[], None]:
    """The loop under one variant, capture started and stopped inside the timed call."""
    from pytest_losstrend.capture.auto_torch import TorchCapture
    from pytest_losstrend.capture.recorder import Recorder

    if name.startswith("bare"):
        return loop

    def run() -> None:
        rec = Recorder()
        cap = TorchCapture(rec, watch=name != "capture")
        if name.endswith("no stale check"):
            cap._stale.see = lambda *args: None  # type: ignore[method-assign]
        undo = cap.install()
        try:
            loop()
        finally:
            undo()
            rec.finish_watching()
        assert len(rec.losses()) == STEPS

    return run


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall time, this thread's CPU time) of one call, with the garbage collector off."""
    gc.collect()
    gc.disable()
    try:
        t0, c0 = time.perf_counter(), time.thread_time()
        fn()
        return time.perf_counter() - t0, time.thread_time() - c0
    finally:
        gc.enable()


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", default=None)
    parser.add_argument("--manual", action="store_true",
                        help="a loop with no optimizer (p -= lr * p.grad)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    loop = make_loop(args.manual)
    names = ["bare", "bare (A/A)", "capture", "capture + watch"]
    if args.manual:
        names.append("capture + watch, no stale check")
    fns = {n: variant(n, loop) for n in names}
    for n in names:  # warm-up
        fns[n]()
    walls: dict[str, list[float]] = {n: [] for n in names}
    cpus: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            wall, cpu = timed(fns[n])
            walls[n].append(wall)
            cpus[n].append(cpu)
    ok = True
    lines = ["| variant | clock | median time (ms) | ratio to bare, median | IQR "
             "| fastest round, ratio |", "|---|---|---|---|---|---|"]
    data: dict[str, Any] = {}
    for n in names:
        data[n] = {}
        for clock, times in (("wall", walls), ("CPU", cpus)):
            ratios = [t / b for t, b in zip(times[n], times["bare"], strict=True)]
            q1, q2, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
            med_ms = 1000 * statistics.median(times[n])
            target = TARGETS.get(n)
            if target is not None and q2 > target and clock == "CPU":
                ok = False
            mark = "" if target is None else f" (target <= {target:.2f})"
            fastest = min(times[n]) / min(times["bare"])
            lines.append(f"| {n} | {clock} | {med_ms:.1f} | {q2:.3f}{mark} | {q1:.3f}-{q3:.3f} "
                         f"| {fastest:.3f} |")
            data[n][clock] = {"median_ms": med_ms, "ratio": q2, "iqr": [q1, q3],
                              "fastest_ratio": fastest}
    print(f"### Automatic capture{' (manual loop)' if args.manual else ''}: {STEPS} steps "
          f"of Linear(10, 1), batch {BATCH}, "
          f"{args.rounds} interleaved rounds\n")
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

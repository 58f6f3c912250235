"""Measure what automatic capture costs a Keras ``fit`` (issue 12).

Usage::

    python benchmarks/bench_autocapture_keras.py [--rounds N] [--json out.json]

A digits MLP (64 -> 32 -> 10, ReLU, Adam 1e-3, sparse cross-entropy from logits), batch 32,
5 epochs (285 optimizer steps), one TensorFlow thread, fit three ways in each round:

- ``bare``: ``model.fit(x, y)``, nothing installed;
- ``bare (A/A)``: the same again, the noise floor;
- ``auto``: ``model.fit(x, y)`` with ``auto_keras.install(recorder)`` in force: the injected
  recording callback, the watcher it makes (weights copied at each epoch's end), and the
  reference level from ``fit``'s targets. ``install`` and its undo are inside the timing.
- ``explicit``: ``model.fit(x, y, callbacks=[recorder.keras_callback()])`` for comparison.

Each fit gets a fresh model, built and compiled (same seed) before the clock starts; the clock
covers ``fit`` only, so every variant pays Keras' tracing of its train function alike. The
variants run interleaved, the order rotating every round; the median and interquartile range
of the per-round ratios against ``bare`` are reported, for wall-clock time and for the
process's CPU time (steadier on a loaded machine). Target: ``auto``'s median CPU ratio <= 1.05.
The exit status is 1 when the target was missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET = 1.05
EPOCHS, BATCH = 5, 32


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(t: tuple[float, float]) -> tuple[float, float]:
    return time.perf_counter() - t[0], time.process_time() - t[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    import keras
    import numpy as np
    import tensorflow as tf
    from sklearn.datasets import load_digits

    from pytest_losstrend.capture.auto_keras import install
    from pytest_losstrend.capture.recorder import Recorder

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")

    def model() -> keras.Model:
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(10)])
        m.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return m

    def bare() -> tuple[float, float]:
        m = model()
        t = _now()
        m.fit(x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0)
        return _since(t)

    def auto() -> tuple[float, float]:
        m, r = model(), Recorder()
        t = _now()
        undo = install(r)
        try:
            m.fit(x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0)
        finally:
            undo()
        took = _since(t)
        assert len(r.losses()) == EPOCHS * -(-len(x) // BATCH)
        return took

    def explicit() -> tuple[float, float]:
        m, r = model(), Recorder()
        t = _now()
        m.fit(x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0, callbacks=[r.keras_callback()])
        return _since(t)

    variants: dict[str, Callable[[], tuple[float, float]]] = {
        "bare": bare, "bare (A/A)": bare, "auto": auto, "explicit": explicit}
    names = list(variants)
    for name in names:  # warm up: imports, first traces
        variants[name]()
    times: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    for k in range(args.rounds):
        order = names[k % len(names):] + names[: k % len(names)]
        for name in order:
            times[name].append(variants[name]())

    rows = []
    result: dict[str, dict[str, float]] = {}
    for name in names:
        row = [name]
        for i, clock in enumerate(("wall", "cpu")):
            mine = [t[i] for t in times[name]]
            ratios = [a / b[i] for a, b in zip(mine, times["bare"], strict=True)]
            q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
            result.setdefault(name, {}).update({
                f"{clock}_median_s": statistics.median(mine),
                f"{clock}_ratio": statistics.median(ratios),
                f"{clock}_q1": q[0], f"{clock}_q3": q[2]})
            row += [f"{statistics.median(mine):.3f}", f"{statistics.median(ratios):.3f}",
                    f"{q[0]:.3f}-{q[2]:.3f}"]
        rows.append("| " + " | ".join(row) + " |")
    # The parts auto adds to the explicit callback, each timed alone (median of 21).
    from pytest_losstrend.capture.recorder import BY_FIT

    def part(fn: Callable[[], object]) -> float:
        laps = []
        for _ in range(21):
            t = time.perf_counter()
            fn()
            laps.append(time.perf_counter() - t)
        return statistics.median(laps) * 1e3

    def install_undo() -> None:
        install(Recorder())()

    probe = model()
    parts = {
        "install() + undo": part(install_undo),
        "reference from fit's targets": part(lambda: Recorder().offer_reference(
            "train", None, y, by=BY_FIT, where="given to fit()", model=probe)),
    }
    result["parts_ms"] = parts
    ok = result["auto"]["cpu_ratio"] <= TARGET
    print(f"Keras fit, digits MLP, batch {BATCH}, {EPOCHS} epochs "
          f"({EPOCHS * -(-len(x) // BATCH)} steps), {args.rounds} interleaved rounds, "
          f"TF {tf.__version__}, Keras {keras.__version__}, numpy {np.__version__}\n")
    print("| variant | wall (s) | wall ratio | wall IQR | CPU (s) | CPU ratio | CPU IQR |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\n" + ", ".join(f"{k}: {v:.3f} ms" for k, v in parts.items()))
    print(f"\ntarget auto <= {TARGET}x: {'met' if ok else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps({"rounds": args.rounds, "variants": result,
                                         "target": TARGET, "ok": ok}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

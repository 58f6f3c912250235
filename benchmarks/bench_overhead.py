"""Measure what pytest-losstrend costs a test suite, and how fast it stops a diverging test.

Usage::

    python benchmarks/bench_overhead.py [--quick] [--json out.json] [--profile]
                                        [--only torch,keras,collect,import,failfast]

Four measurements, printed as one markdown table:

1. ``torch``: ``LossTrend.record(loss)`` once per step of a tiny PyTorch loop (``nn.Linear(10, 1)``,
   batch 32, MSE, SGD, 2000 steps, one thread) against the same loop without it. The two loops
   run in interleaved pairs (AB, BA, AB, ...) and the median of the per-pair time ratios is
   reported, with the per-call cost of ``record`` in microseconds.
2. ``keras``: ``model.fit`` with ``LossTrend().keras_callback()`` against ``model.fit`` without
   callbacks, on one compiled model (weights reset before every fit, only the fit timed), and
   per batch, from the time between batch ends.
3. ``collect`` / ``import``: ``pytest --collect-only -q`` on 300 generated tests with the plugin
   loaded against ``-p no:losstrend`` (subprocesses, interleaved); the ``-X importtime`` cost of
   ``pytest_losstrend.plugin``; and a check that importing the plugin imports no numpy, torch,
   tensorflow or keras.
4. ``failfast``: a diverging PyTorch linear regression (lr=1.0) run as a real
   ``@pytest.mark.loss_decreases`` test in a subprocess: the step at which the plugin stopped it
   against the steps at which, without the plugin, the same loop passes the divergence bound
   and first produces a non-finite loss.

The machine this runs on is small and shared, so every comparison interleaves its variants in
one process and reports medians of per-pair ratios of wall-clock times. Under contention those
swing by +-10%, more than the targets, so the torch and Keras overheads are also measured per
step: the two torch loops advance in lockstep, one step each in turn, every step timed; the
Keras callback's hook runs after every other batch of a fit, and the periods between batch ends
with and without it are compared. Trimmed means drop the steps another process interrupted,
and an A/A control (the same comparison with nothing added) shows the noise floor.

``--quick`` needs about 40 s of CPU (a minute of wall time on a shared 2-core machine at load
average 4), the full run about 80 s of CPU (100 s there). The exit status is 1 when a target
was missed.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import importlib.util
import io
import json
import math
import os
import platform
import pstats
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SECTIONS = ("torch", "keras", "collect", "import", "failfast")
HEAVY_MODULES = ("numpy", "torch", "tensorflow", "keras")


# -- results ---------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the results table."""

    measurement: str
    result: str
    target: str = "-"
    ok: bool | None = None
    notes: str = ""


@dataclass
class Section:
    """The rows a measurement adds to the table, and its raw numbers for ``--json``."""

    name: str
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    profile: str = ""


@dataclass(frozen=True)
class Settings:
    """How many repetitions each measurement makes (``--quick`` or full)."""

    torch_pairs: int
    lockstep_rounds: int
    control_rounds: int
    keras_rounds: int
    keras_batch_rounds: int
    collect_pairs: int
    import_reps: int
    keras_epochs: int = 3
    profile: bool = False

    @classmethod
    def make(cls, quick: bool, profile: bool) -> Settings:
        """The quick (under a minute) or full (under five minutes) settings."""
        if quick:
            return cls(torch_pairs=15, lockstep_rounds=4, control_rounds=2, keras_rounds=7,
                       keras_batch_rounds=4, collect_pairs=10, import_reps=5, profile=profile)
        return cls(torch_pairs=41, lockstep_rounds=21, control_rounds=7, keras_rounds=15,
                   keras_batch_rounds=11, collect_pairs=25, import_reps=11, profile=profile)


def median(values: Sequence[float]) -> float:
    """The median of ``values``."""
    return float(statistics.median(values))


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """The first and third quartiles of ``values`` (equal to the value for a single one)."""
    if len(values) < 2:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


def trimmed_mean(values: Sequence[float], cut: float = 0.1) -> float:
    """The mean of ``values`` without its largest ``cut`` fraction.

    Contention only ever adds time (a preempted step, a cache flushed by another process), so
    the slowest steps are dropped and the fastest kept.
    """
    ordered = sorted(values)
    keep = ordered[: max(1, len(ordered) - int(len(ordered) * cut))]
    return sum(keep) / len(keep)


def ratio_text(values: Sequence[float], digits: int = 3) -> str:
    """A median ratio with its interquartile range and the number of pairs."""
    q1, q3 = quartiles(values)
    return f"{median(values):.{digits}f} (IQR {q1:.{digits}f}-{q3:.{digits}f}, n={len(values)})"


def settle_gc() -> None:
    """Collect, then freeze what survives, so that later collections stay cheap.

    With torch or tensorflow imported a full collection walks hundreds of thousands of objects
    (a few hundred ms); frozen, they are skipped.
    """
    gc.collect()
    gc.freeze()


def timed(fn: Callable[[], Any], cpu: Callable[[], float] = time.thread_time
          ) -> tuple[float, float]:
    """Run ``fn`` once with the garbage collector paused; return (wall, cpu) seconds."""
    gc.collect()
    gc.disable()
    try:
        w0, c0 = time.perf_counter(), cpu()
        fn()
        return time.perf_counter() - w0, cpu() - c0
    finally:
        gc.enable()


def interleaved(variants: Sequence[Callable[[], tuple[float, float]]], rounds: int
                ) -> list[list[tuple[float, float]]]:
    """Run each variant once per round, rotating the order every round (AB, BA, ...).

    Returns ``out[round][variant] = (wall, cpu)``.
    """
    out: list[list[tuple[float, float]]] = []
    k = len(variants)
    for r in range(rounds):
        got: list[tuple[float, float]] = [(0.0, 0.0)] * k
        for j in range(k):
            i = (r + j) % k
            got[i] = variants[i]()
        out.append(got)
    return out


def profile_text(fn: Callable[[], Any], pattern: str, limit: int = 12) -> str:
    """cProfile one call of ``fn``: the top functions by own time, then what the functions
    matching ``pattern`` spend their time in."""
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf).strip_dirs()
    stats.sort_stats("tottime").print_stats(limit)
    stats.sort_stats("cumulative").print_callees(pattern)
    lines = [ln.rstrip() for ln in buf.getvalue().splitlines()]
    keep = [ln for ln in lines if ln and not ln.startswith(("Ordered by", "List reduced"))]
    return "\n".join(keep)


# -- 1. record() on a tiny torch loop --------------------------------------------------------

TORCH_STEPS = 2000
TORCH_BATCH = 32


def _loop_bare(model: Any, opt: Any, loss_fn: Any, data: tuple[Any, Any]) -> None:
    xs, ys = data
    for i in range(len(xs)):
        opt.zero_grad()
        loss = loss_fn(model(xs[i]), ys[i])
        loss.backward()
        opt.step()


def _loop_record(model: Any, opt: Any, loss_fn: Any, data: tuple[Any, Any], losstrend: Any
                 ) -> None:
    xs, ys = data
    for i in range(len(xs)):
        opt.zero_grad()
        loss = loss_fn(model(xs[i]), ys[i])
        loss.backward()
        opt.step()
        losstrend.record(loss)


def _lockstep(a: tuple[Any, Any, Any], b: tuple[Any, Any, Any], data: tuple[Any, Any],
              losstrend: Any, flip: int) -> tuple[list[float], list[float]]:
    """Train two identical models step by step, alternately, timing every step of each.

    Model ``a`` runs the bare step; model ``b`` the same step plus ``losstrend.record(loss)``
    (or the bare step too, when ``losstrend`` is None: the A/A control). Which of the two goes
    first alternates every step, and both run the same code. Both steps see the same machine
    state within microseconds, so contention cancels out in the per-step comparison, and a
    preempted step is an outlier that a trimmed mean drops.
    """
    xs, ys = data
    pc = time.perf_counter
    ta: list[float] = []
    tb: list[float] = []

    def step(side: tuple[Any, Any, Any], x: Any, y: Any, lt: Any) -> float:
        model, opt, loss_fn = side
        t0 = pc()
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if lt is not None:
            lt.record(loss)
        return pc() - t0

    gc.collect()
    gc.disable()
    try:
        for i in range(len(xs)):
            x, y = xs[i], ys[i]
            if (i + flip) % 2:
                tb.append(step(b, x, y, losstrend))
                ta.append(step(a, x, y, None))
            else:
                ta.append(step(a, x, y, None))
                tb.append(step(b, x, y, losstrend))
    finally:
        gc.enable()
    return ta, tb


def bench_torch(cfg: Settings) -> Section:
    """``record()`` once per step of a tiny torch loop, against the bare loop."""
    import torch
    from torch import nn

    from pytest_losstrend.fixture import LossTrend
    from pytest_losstrend.verdict.criteria import Criteria

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    xs = torch.randn(TORCH_STEPS, TORCH_BATCH, 10, generator=gen)
    ys = xs.sum(-1, keepdim=True) + 0.1 * torch.randn(TORCH_STEPS, TORCH_BATCH, 1, generator=gen)
    data = (xs, ys)

    def setup() -> tuple[Any, Any, Any]:
        torch.manual_seed(0)
        model = nn.Linear(10, 1)
        return model, torch.optim.SGD(model.parameters(), lr=0.01), nn.MSELoss()

    recorded: list[int] = []

    def bare() -> tuple[float, float]:
        model, opt, loss_fn = setup()
        return timed(lambda: _loop_bare(model, opt, loss_fn, data))

    def with_record() -> tuple[float, float]:
        model, opt, loss_fn = setup()
        lt = LossTrend(Criteria(), fail_fast=True)
        out = timed(lambda: _loop_record(model, opt, loss_fn, data, lt))
        recorded.append(len(lt.losses()))
        return out

    for _ in range(2):  # warm-up: allocator, autograd and converter caches
        bare()
        with_record()
    settle_gc()  # after the warm-up, which imports more of torch (dynamo, via the optimizer)
    runs = interleaved([bare, with_record], cfg.torch_pairs)
    wall = [b[0] / a[0] for a, b in runs]
    cpu = [b[1] / a[1] for a, b in runs]
    step_us = median([a[0] for a, _ in runs]) / TORCH_STEPS * 1e6
    step_cpu_us = median([a[1] for a, _ in runs]) / TORCH_STEPS * 1e6
    assert all(n == TORCH_STEPS for n in recorded), f"record() kept {set(recorded)} values"

    # Lockstep: the two loops advance one step at a time, each step timed.
    def lockstep(record: bool, flip: int) -> tuple[float, float]:
        lt = LossTrend(Criteria(), fail_fast=True) if record else None
        ta, tb = _lockstep(setup(), setup(), data, lt, flip)
        if lt is not None:
            recorded.append(len(lt.losses()))
        a, b = trimmed_mean(ta), trimmed_mean(tb)
        return b / a, (b - a) * 1e6

    lockstep(True, 0)
    lock: list[tuple[float, float]] = []
    control: list[tuple[float, float]] = []
    for r in range(cfg.lockstep_rounds):
        lock.append(lockstep(True, r))
        if r < cfg.control_rounds:
            control.append(lockstep(False, r))
    assert all(n == TORCH_STEPS for n in recorded), f"record() kept {set(recorded)} values"

    # Isolated per-call cost: replay the real loss tensors of one run into a fresh LossTrend.
    losses: list[Any] = []
    model, opt, loss_fn = setup()
    for i in range(TORCH_STEPS):
        opt.zero_grad()
        loss = loss_fn(model(xs[i]), ys[i])
        loss.backward()
        opt.step()
        losses.append(loss)
    floats = [float(v.item()) for v in losses]

    def replay(values: list[Any]) -> float:
        lt = LossTrend(Criteria(), fail_fast=True)
        record = lt.record
        return timed(lambda: [record(v) for v in values])[1]

    reps = 21
    per_call = median([replay(losses) for _ in range(reps)]) / TORCH_STEPS * 1e6
    per_call_float = median([replay(floats) for _ in range(reps)]) / TORCH_STEPS * 1e6

    sec = Section("torch")
    med = median(wall)
    lock_ratio = median([r for r, _ in lock])
    sec.rows = [
        Row("1. torch loop, record() every step / bare: wall ratio", ratio_text(wall), "<= 1.03",
            med <= 1.03, f"Linear(10,1), batch {TORCH_BATCH}, SGD, {TORCH_STEPS} steps, "
            f"1 thread; whole loops, interleaved; bare step {step_us:.1f} us wall, "
            f"{step_cpu_us:.1f} us CPU"),
        Row("1. same, thread-CPU-time ratio", ratio_text(cpu), notes="cross-check"),
        Row("1. same, lockstep per-step ratio", ratio_text([r for r, _ in lock], 4),
            "<= 1.03", lock_ratio <= 1.03, "the two loops alternate step by step, each step "
            "timed; 10%-trimmed mean step time per run; robust to contention"),
        Row("1. lockstep A/A control (bare / bare)", ratio_text([r for r, _ in control], 4),
            notes="the noise floor of the lockstep ratio"),
        Row("1. record(loss) per call, in the loop", f"{median([d for _, d in lock]):.2f} us",
            notes="lockstep: trimmed step time with record - without; A/A control: "
            f"{median([d for _, d in control]):+.2f} us"),
        Row("1. record() per call, isolated (hot loop)", f"{per_call:.2f} us",
            notes=f"replaying {TORCH_STEPS} real CPU loss tensors back to back; "
            f"record(float): {per_call_float:.2f} us"),
    ]
    sec.data = {
        "steps": TORCH_STEPS, "pairs": cfg.torch_pairs, "wall_ratios": wall, "cpu_ratios": cpu,
        "median_wall_ratio": med, "median_cpu_ratio": median(cpu),
        "bare_step_us_wall": step_us, "bare_step_us_cpu": step_cpu_us,
        "lockstep": lock, "lockstep_control": control, "lockstep_median_ratio": lock_ratio,
        "record_us_in_loop": median([d for _, d in lock]),
        "record_us_isolated": per_call, "record_float_us_isolated": per_call_float,
        "runs": runs,
    }
    if cfg.profile:
        def prof_run() -> None:
            model, opt, loss_fn = setup()
            lt = LossTrend(Criteria(), fail_fast=True)
            _loop_record(model, opt, loss_fn, data, lt)
            lt2 = LossTrend(Criteria(), fail_fast=True)
            for _ in range(10):  # the record() calls alone, enough of them to show up
                for v in losses:
                    lt2.record(v)

        sec.profile = profile_text(prof_run, r"recorder.py.*\(record\)")
    return sec


# -- 2. the Keras callback -------------------------------------------------------------------

KERAS_SAMPLES = 2000
KERAS_BATCH = 32


def bench_keras(cfg: Settings) -> Section:
    """``model.fit`` with the losstrend Keras callback, against no callback."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import numpy as np

    from pytest_losstrend.fixture import LossTrend
    from pytest_losstrend.verdict.criteria import Criteria

    rng = np.random.default_rng(0)
    x = rng.normal(size=(KERAS_SAMPLES, 8)).astype("float32")
    y = (x @ rng.normal(size=(8, 1)) + 0.1 * rng.normal(size=(KERAS_SAMPLES, 1)))
    y = y.astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01), loss="mse")
    weights = model.get_weights()
    epochs = cfg.keras_epochs
    batches = math.ceil(KERAS_SAMPLES / KERAS_BATCH) * epochs

    class AlternateBatches(keras.callbacks.Callback):  # type: ignore[misc]
        """Runs ``inner``'s batch hook after every other batch and times each batch period.

        A period runs from one batch end to the next: the hook (or not), then the next train
        step. Periods after a batch whose hook ran go to ``periods[1]``, the others to
        ``periods[0]``: the two variants alternate every batch within one fit. ``parity``
        picks odd or even batches (alternated between fits, to cancel any parity effect).
        ``inner`` sees every other batch; its work per call is the same (it differences
        running sums).
        """

        def __init__(self, inner: Any, parity: int) -> None:
            super().__init__()
            self.inner = inner
            self.parity = parity
            self.periods: tuple[list[float], list[float]] = ([], [])
            self._last: float | None = None
            self._hooked = 0

        def set_model(self, model: Any) -> None:
            super().set_model(model)
            if self.inner is not None:
                self.inner.set_model(model)

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            if self.inner is not None:
                self.inner.on_train_begin(logs)

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self._last = None
            if self.inner is not None:
                self.inner.on_epoch_begin(epoch, logs)

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            now = time.perf_counter()
            if self._last is not None:
                self.periods[self._hooked].append(now - self._last)
            self._last = now
            self._hooked = (batch + self.parity) % 2
            if self._hooked and self.inner is not None:
                self.inner.on_train_batch_end(batch, logs)

    recorded: list[int] = []

    def fit(callbacks: list[Any]) -> tuple[float, float]:
        model.set_weights(weights)
        return timed(lambda: model.fit(x, y, batch_size=KERAS_BATCH, epochs=epochs, verbose=0,
                                       callbacks=callbacks), cpu=time.process_time)

    def none() -> tuple[float, float]:
        return fit([])

    def losstrend() -> tuple[float, float]:
        lt = LossTrend(Criteria(), fail_fast=True)
        out = fit([lt.keras_callback()])
        recorded.append(len(lt.losses()))
        return out

    # Warm-up: trace the train function once, build the callback class path, fill caches.
    none()
    losstrend()
    settle_gc()
    runs = interleaved([none, losstrend], cfg.keras_rounds)
    assert all(n == batches for n in recorded), f"callback kept {set(recorded)}, not {batches}"
    wall = [b[0] / a[0] for a, b in runs]
    cpu = [b[1] / a[1] for a, b in runs]
    fit_s = median([a[0] for a, _ in runs])

    # Per batch: the callback's hook after every other batch of one fit, against none.
    def alternate(with_lt: bool, parity: int) -> tuple[float, float, float]:
        inner = LossTrend(Criteria(), fail_fast=True).keras_callback() if with_lt else None
        probe = AlternateBatches(inner, parity)
        fit([probe])
        a, b = trimmed_mean(probe.periods[0]), trimmed_mean(probe.periods[1])
        return b / a, (b - a) * 1e6, a * 1e6

    per_batch: list[tuple[float, float, float]] = []
    control: list[tuple[float, float, float]] = []
    for r in range(cfg.keras_batch_rounds):
        per_batch.append(alternate(True, r % 2))
        if r < cfg.control_rounds:
            control.append(alternate(False, r % 2))
    batch_ratio = [r for r, _, _ in per_batch]
    batch_delta = [d for _, d, _ in per_batch]
    period_us = median([p for _, _, p in per_batch])

    # The callback's batch hook alone, timed around each call inside a real fit.
    lt = LossTrend(Criteria(), fail_fast=True)
    cb = lt.keras_callback()
    hook = cb.on_train_batch_end
    spent: list[float] = []

    def timed_hook(batch: int, logs: dict[str, Any] | None = None) -> None:
        t0 = time.perf_counter()
        hook(batch, logs)
        spent.append(time.perf_counter() - t0)

    cb.on_train_batch_end = timed_hook
    fit([cb])
    hook_us = median(spent) * 1e6

    sec = Section("keras")
    med = median(wall)
    sec.rows = [
        Row("2. Keras fit, losstrend callback / no callback: wall ratio", ratio_text(wall),
            "<= 1.05", med <= 1.05, f"Dense(16)+Dense(1), {KERAS_SAMPLES} samples, batch "
            f"{KERAS_BATCH}, {epochs} epochs ({batches} batches), one compiled model, weights "
            f"reset, only fit() timed; fit {fit_s * 1e3:.0f} ms"),
        Row("2. same, process-CPU-time ratio", ratio_text(cpu), notes="cross-check"),
        Row("2. same, per batch (alternating batches)", ratio_text(batch_ratio, 4), "<= 1.05",
            median(batch_ratio) <= 1.05, "the callback's hook runs after every other batch of "
            "a fit; 10%-trimmed mean of the periods between batch ends, with / without; robust "
            f"to contention; bare batch period {period_us:.0f} us"),
        Row("2. alternating-batch A/A control", ratio_text([r for r, _, _ in control], 4),
            notes="no hook on either batch parity: the noise floor"),
        Row("2. callback cost per batch", f"{median(batch_delta):.1f} us",
            notes=f"alternating-batch difference; the hook alone, timed inside fit: median "
            f"{hook_us:.1f} us (the batch hook only appends the running mean; Keras runs it "
            f"asynchronously, the losses are worked out at epoch end); x{batches} batches = "
            f"{median(batch_delta) * batches / 1e3:.0f} ms of a {fit_s * 1e3:.0f} ms fit"),
    ]
    sec.data = {
        "samples": KERAS_SAMPLES, "batch_size": KERAS_BATCH, "epochs": epochs,
        "batches": batches, "rounds": cfg.keras_rounds, "wall_ratios": wall,
        "cpu_ratios": cpu, "median_wall_ratio": med, "fit_seconds": fit_s,
        "per_batch": per_batch, "per_batch_control": control,
        "per_batch_ratio": median(batch_ratio), "per_batch_delta_us": median(batch_delta),
        "bare_batch_period_us": period_us, "hook_us_median": hook_us,
        "runs": runs, "keras": keras.__version__,
    }
    if cfg.profile:
        def prof_fit() -> None:
            lt = LossTrend(Criteria(), fail_fast=True)
            model.set_weights(weights)
            model.fit(x, y, batch_size=KERAS_BATCH, epochs=epochs, verbose=0,
                      callbacks=[lt.keras_callback()])

        sec.profile = profile_text(prof_fit, r"keras.py.*\(on_train_batch_end\)")
    return sec


# -- 3. collection and import ----------------------------------------------------------------

COLLECT_FILES = 30
COLLECT_TESTS = 10


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        env.pop(name, None)
    return env


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_child(cmd: list[str], cwd: Path, env: dict[str, str] | None = None
              ) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Run a subprocess to completion; return (wall, cpu) seconds and the finished process."""
    c0 = _children_cpu()
    w0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env or _clean_env(), capture_output=True,
                          text=True, timeout=300, check=False)
    return time.perf_counter() - w0, _children_cpu() - c0, proc


def write_collect_suite(root: Path) -> None:
    """30 files of 10 trivial tests each, with an empty ini file to pin the rootdir."""
    (root / "pytest.ini").write_text("[pytest]\n")
    for f in range(COLLECT_FILES):
        body = "\n\n".join(
            f"def test_{f:02d}_{t:02d}():\n    assert {t} + 1 == {t + 1}"
            for t in range(COLLECT_TESTS)
        )
        (root / f"test_plain_{f:02d}.py").write_text(body + "\n")


def bench_collect(cfg: Settings) -> Section:
    """``pytest --collect-only -q`` on 300 tests, with the plugin against ``-p no:losstrend``."""
    total = COLLECT_FILES * COLLECT_TESTS
    with tempfile.TemporaryDirectory(prefix="losstrend-collect-") as tmp:
        root = Path(tmp)
        write_collect_suite(root)
        base = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
        outputs: dict[str, str] = {}

        def variant(extra: list[str], key: str) -> Callable[[], tuple[float, float]]:
            def run() -> tuple[float, float]:
                wall, cpu, proc = run_child([*base, *extra], root)
                if proc.returncode != 0 or f"{total} tests collected" not in proc.stdout:
                    raise RuntimeError(f"collection failed ({key}):\n{proc.stdout}{proc.stderr}")
                outputs[key] = proc.stdout
                return wall, cpu

            return run

        with_plugin = variant([], "plugin")
        without = variant(["-p", "no:losstrend"], "no_plugin")
        without()  # warm-up: bytecode caches, page cache
        with_plugin()
        runs = interleaved([without, with_plugin], cfg.collect_pairs)
        # The plugin really is loaded in one and not the other.
        trace = run_child([*base, "--trace-config"], root)[2].stdout
        trace_off = run_child([*base, "--trace-config", "-p", "no:losstrend"], root)[2].stdout
        hooks_ms, hook_calls = plugin_function_time(base, root)
    loaded = "pytest_losstrend" in trace and "pytest_losstrend" not in trace_off
    wall = [b[0] / a[0] for a, b in runs]
    cpu = [b[1] / a[1] for a, b in runs]
    t_off = median([a[0] for a, _ in runs])
    t_on = median([b[0] for _, b in runs])
    delta_ms = [(b[0] - a[0]) * 1e3 for a, b in runs]
    fastest = min(b[0] for _, b in runs) / min(a[0] for a, _ in runs)
    sec = Section("collect")
    med = median(wall)
    sec.rows = [
        Row(f"3. pytest --collect-only -q, {total} tests: plugin / -p no:losstrend",
            ratio_text(wall), "<= 1.03", med <= 1.03 and loaded,
            f"{t_on * 1e3:.0f} ms with, {t_off * 1e3:.0f} ms without (medians); median "
            f"difference {median(delta_ms):+.1f} ms" + ("" if loaded else
                                                          "; PLUGIN NOT LOADED as expected")),
        Row("3. same, child-CPU-time ratio", ratio_text(cpu), notes="cross-check"),
        Row("3. same, fastest run with / fastest without", f"{fastest:.3f}",
            notes="cross-check: contention only adds time"),
        Row("3. the plugin's own functions during that collection", f"{hooks_ms:.1f} ms",
            notes=f"cProfile (inflates), {hook_calls} calls into pytest_losstrend code, "
            "module bodies included; the import itself is below"),
    ]
    sec.data = {"tests": total, "pairs": cfg.collect_pairs, "wall_ratios": wall,
                "cpu_ratios": cpu, "median_wall_ratio": med, "median_s_with": t_on,
                "median_s_without": t_off, "median_delta_ms": median(delta_ms),
                "fastest_ratio": fastest, "plugin_functions_ms_profiled": hooks_ms,
                "plugin_function_calls": hook_calls, "plugin_loaded_check": loaded,
                "runs": runs}
    return sec


def plugin_function_time(base: list[str], root: Path) -> tuple[float, int]:
    """Total time spent in pytest_losstrend functions during one profiled collection, in ms,
    and the number of calls into them."""
    out = root / "collect.prof"
    cmd = [sys.executable, "-m", "cProfile", "-o", str(out), *base[1:]]
    proc = run_child(cmd, root)[2]
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"profiled collection failed:\n{proc.stdout}{proc.stderr}")
    stats = pstats.Stats(str(out))
    total = 0.0
    calls = 0
    package = os.sep + "pytest_losstrend" + os.sep
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, _, _), (_, ncalls, tottime, _, _) in raw.items():
        if package in filename:
            total += tottime
            calls += ncalls
    out.unlink()
    return total * 1e3, calls


_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)\s*$")


def parse_importtime(stderr: str, prefix: str = "pytest_losstrend") -> tuple[int, int, list[str]]:
    """From ``-X importtime`` output: (sum of self us of ``prefix`` modules, cumulative us of
    the outermost ``prefix`` imports, the ``prefix`` module names)."""
    own = cumulative = 0
    names: list[str] = []
    levels: list[tuple[int, int, str]] = []
    for line in stderr.splitlines():
        m = _IMPORTTIME.match(line)
        if not m:
            continue
        self_us, cum_us, indent, name = int(m[1]), int(m[2]), len(m[3]), m[4]
        levels.append((indent, cum_us, name))
        if name == prefix or name.startswith(prefix + "."):
            own += self_us
            names.append(name)
    # Outermost: a prefix import not nested in another prefix import. importtime prints a
    # module after its children, so walk backwards keeping the shallowest enclosing level.
    enclosing: int | None = None
    for indent, cum_us, name in reversed(levels):
        is_ours = name == prefix or name.startswith(prefix + ".")
        if enclosing is not None and indent <= enclosing:
            enclosing = None
        if is_ours and enclosing is None:
            cumulative += cum_us
            enclosing = indent
    return own, cumulative, names


def bench_import(cfg: Settings) -> Section:
    """``-X importtime`` of the plugin, and which heavy modules importing it pulls in."""
    cwd = Path(tempfile.gettempdir())
    variants = {
        "after_pytest": "import pytest; import pytest_losstrend.plugin",
        "cold": "import pytest_losstrend.plugin",
    }
    own: dict[str, list[int]] = {k: [] for k in variants}
    cum: dict[str, list[int]] = {k: [] for k in variants}
    names: list[str] = []
    for _ in range(cfg.import_reps):
        for key, code in variants.items():
            proc = run_child([sys.executable, "-X", "importtime", "-c", code], cwd)[2]
            if proc.returncode != 0:
                raise RuntimeError(f"import failed:\n{proc.stderr}")
            o, c, names = parse_importtime(proc.stderr)
            own[key].append(o)
            cum[key].append(c)
    check = (
        "import sys, pytest_losstrend.plugin, pytest_losstrend.verdict.criteria; "
        f"print(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    proc = run_child([sys.executable, "-c", check], cwd)[2]
    if proc.returncode != 0:
        raise RuntimeError(f"import check failed:\n{proc.stderr}")
    heavy = [m for m in proc.stdout.strip().split(",") if m]
    sec = Section("import")
    own_ms = median(own["after_pytest"]) / 1e3
    cum_ms = median(cum["after_pytest"]) / 1e3
    cold_ms = median(cum["cold"]) / 1e3
    sec.rows = [
        Row("3. import pytest_losstrend.plugin (pytest already imported)",
            f"{cum_ms:.1f} ms cumulative", notes=f"own modules' self time {own_ms:.1f} ms: "
            f"{', '.join(names)}; median of {cfg.import_reps}"),
        Row("3. import pytest_losstrend.plugin (cold, includes pytest)",
            f"{cold_ms:.1f} ms cumulative"),
        Row("3. heavy modules imported by the plugin", ", ".join(heavy) or "none",
            "none of " + "/".join(HEAVY_MODULES), not heavy),
    ]
    sec.data = {"reps": cfg.import_reps, "own_us": own, "cumulative_us": cum,
                "modules": names, "heavy_modules_loaded": heavy}
    return sec


# -- 4. fail fast ----------------------------------------------------------------------------

DIVERGE_STEPS = 1000

DIVERGE_LOOP = '''\
"""The diverging linear regression of the PyTorch write-up: lr=1.0 is far above 2/lambda_max."""

import torch
from torch import nn


def run(on_step, steps={steps}):
    torch.manual_seed(0)
    X = torch.rand(100, 1) * 10
    y = 2 * X + 1 + torch.randn(100, 1)
    model = nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    loss_fn = nn.MSELoss()
    for step in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(X), y)
        loss.backward()
        opt.step()
        on_step(step, loss)
'''

DIVERGE_TEST = '''\
import json
import os

import pytest

from _diverge_loop import run

LAST = {{"step": -1, "loss": None}}


@pytest.mark.loss_decreases
def test_diverging_loop(losstrend):
    def on_step(step, loss):
        LAST["step"] = step
        LAST["loss"] = float(loss.item())
        losstrend.record(loss)

    try:
        run(on_step)
    finally:
        with open(os.environ["LOSSTREND_BENCH_OUT"], "w") as f:
            json.dump(LAST, f)
'''


def bench_failfast(cfg: Settings) -> Section:
    """Where the plugin stops a diverging marked test, against where the loss blows up."""
    from pytest_losstrend.verdict.criteria import BOUND_POINTS, DIVERGENCE_BOUND

    with tempfile.TemporaryDirectory(prefix="losstrend-failfast-") as tmp:
        root = Path(tmp)
        (root / "pytest.ini").write_text("[pytest]\n")
        (root / "_diverge_loop.py").write_text(DIVERGE_LOOP.format(steps=DIVERGE_STEPS))
        (root / "test_diverge.py").write_text(DIVERGE_TEST.format())

        # Reference: the same loop, from the same file, without the plugin, run to the end.
        spec = importlib.util.spec_from_file_location("_diverge_loop", root / "_diverge_loop.py")
        assert spec is not None and spec.loader is not None
        loop = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loop)
        losses: list[float] = []
        loop.run(lambda step, loss: losses.append(float(loss.item())))

        out = root / "last_step.json"
        env = _clean_env()
        env["LOSSTREND_BENCH_OUT"] = str(out)
        wall, _, proc = run_child(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_diverge.py"],
            root, env)
        last = json.loads(out.read_text()) if out.exists() else {"step": None}
    stop = last["step"]
    m = re.search(r"stopped:\s+at step (\d+)", proc.stdout)
    reported = int(m[1]) if m else None
    failed = proc.returncode == 1 and "1 failed" in proc.stdout

    first_nonfinite = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
    positive = [v for v in losses[:BOUND_POINTS] if v > 0 and math.isfinite(v)]
    bound = positive[0] * DIVERGENCE_BOUND if positive else math.inf
    first_over = next((i for i, v in enumerate(losses)
                       if not math.isfinite(v) or v > bound), None)
    reason = ""
    for line in proc.stdout.splitlines():
        if "diverged:" in line or "non-finite" in line:
            reason = line.strip()
            break
    ok = (failed and stop is not None and first_nonfinite is not None
          and stop <= first_nonfinite + 3 and stop == first_over and reported == stop)

    sec = Section("failfast")
    sec.rows = [
        Row("4. diverging loop (lr=1.0): step the plugin stopped the test",
            f"step {stop} (of {DIVERGE_STEPS})", "<= first non-finite step + 3", ok,
            f"test failed: {failed}; message says step {reported}; pytest run "
            f"{wall:.1f} s; {reason[:120]}"),
        Row("4. same loop without the plugin: first non-finite loss",
            f"step {first_nonfinite}", notes=f"value {losses[first_nonfinite]!r}"
            if first_nonfinite is not None else "never"),
        Row("4. same loop without the plugin: first loss past the divergence bound",
            f"step {first_over}", notes=f"bound = {DIVERGENCE_BOUND:g} x first loss "
            f"{positive[0] if positive else float('nan'):.4g} = {bound:.4g}"),
    ]
    sec.data = {"stop_step": stop, "stop_step_in_message": reported, "test_failed": failed,
                "first_nonfinite_step": first_nonfinite, "first_over_bound_step": first_over,
                "bound": bound, "reference_losses_head": losses[:20], "pytest_seconds": wall,
                "pytest_stdout_tail": proc.stdout[-3000:]}
    return sec


# -- driver ----------------------------------------------------------------------------------


def add_collect_estimate(sections: list[Section]) -> None:
    """Add to the import section the collection ratio predicted from the plugin's import time
    and its profiled functions: a contention-free cross-check of the measured ratio."""
    by_name = {s.name: s for s in sections}
    collect, imp = by_name.get("collect"), by_name.get("import")
    if collect is None or imp is None:
        return
    import_ms = median(imp.data["cumulative_us"]["after_pytest"]) / 1e3
    hooks_ms = collect.data["plugin_functions_ms_profiled"]
    base_ms = collect.data["median_s_without"] * 1e3
    predicted = 1 + (import_ms + hooks_ms) / base_ms
    imp.data["predicted_collect_ratio"] = predicted
    imp.rows.append(Row("3. collection ratio predicted from the parts", f"{predicted:.3f}",
                        notes=f"1 + (import {import_ms:.1f} ms + plugin functions "
                        f"{hooks_ms:.1f} ms) / {base_ms:.0f} ms without the plugin"))


def markdown(rows: list[Row]) -> str:
    """The rows as a markdown table."""
    mark = {True: "yes", False: "**NO**", None: ""}
    lines = ["| measurement | result | target | ok | notes |", "|---|---|---|---|---|"]
    for r in rows:
        cells = [r.measurement, r.result, r.target, mark[r.ok], r.notes]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    """Versions and machine load, to read the numbers against."""
    import pytest

    env: dict[str, Any] = {
        "python": platform.python_version(), "pytest": pytest.__version__,
        "platform": platform.platform(), "cpus": os.cpu_count(),
    }
    with contextlib.suppress(OSError):
        env["loadavg"] = os.getloadavg()
    return env


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; exit 1 when a target was missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (< 1 minute)")
    parser.add_argument("--json", metavar="PATH", help="write every raw number to PATH")
    parser.add_argument("--profile", action="store_true",
                        help="also print cProfile listings of record() and the Keras callback")
    parser.add_argument("--only", metavar="LIST", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (default: {','.join(SECTIONS)})")
    args = parser.parse_args(argv)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {unknown}; known: {', '.join(SECTIONS)}")
    cfg = Settings.make(args.quick, args.profile)
    runners: dict[str, Callable[[Settings], Section]] = {
        "torch": bench_torch, "keras": bench_keras, "collect": bench_collect,
        "import": bench_import, "failfast": bench_failfast,
    }
    env = environment()
    started = time.perf_counter()
    sections: list[Section] = []
    timings: dict[str, float] = {}
    for name in SECTIONS:
        if name not in wanted:
            continue
        t0 = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        sections.append(runners[name](cfg))
        timings[name] = time.perf_counter() - t0
    elapsed = time.perf_counter() - started
    with contextlib.suppress(OSError):
        env["loadavg_end"] = os.getloadavg()
    for name in ("torch", "tensorflow", "keras", "numpy"):
        mod = sys.modules.get(name)
        if mod is not None:
            env[name] = getattr(mod, "__version__", "?")

    add_collect_estimate(sections)
    rows = [row for sec in sections for row in sec.rows]
    print(f"\n## pytest-losstrend overhead ({'quick' if args.quick else 'full'} run, "
          f"{elapsed:.0f} s)\n")
    print(markdown(rows))
    print(f"\nPython {env['python']}, pytest {env['pytest']}, "
          + ", ".join(f"{k} {env[k]}" for k in ("torch", "tensorflow", "keras") if k in env)
          + f"; {env['cpus']} CPUs, load average {env.get('loadavg', ('?',))[0]} at start, "
          f"{env.get('loadavg_end', ('?',))[0]} at end. Ratios are medians of per-pair "
          "ratios of interleaved runs (order rotated every pair).")
    for sec in sections:
        if sec.profile:
            print(f"\n### profile: {sec.name}\n\n```\n{sec.profile}\n```")
    if args.json:
        doc = {"quick": args.quick, "elapsed_s": elapsed, "section_s": timings,
               "environment": env, "rows": [vars(r) for r in rows],
               "sections": {s.name: s.data for s in sections}}
        Path(args.json).write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

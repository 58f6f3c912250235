"""Keras per-batch curves under the plugin's seed, with and without the reshuffling (issue 11,
item 4): how many healthy runs the default verdict calls oscillation, and how strongly each
curve repeats from one epoch to the next.

Under a TensorFlow global seed, Keras 3's ``fit(x, y, shuffle=True)`` on arrays used to replay
one batch order every epoch, so a per-batch curve repeated with the period of an epoch. The
plugin's seeding now makes such fits reshuffle every epoch
(``pytest_losstrend.capture.keras_shuffle``). Each run is seeded as the fixture seeds a test
(``seed_everything``) and trained twice from that seed:

- **before**: with the reshuffling switched off again right after the seeding
  (``keras_shuffle.disarm()``): the previous seeding exactly, Keras' own replayed order;
- **after**: as the fixture seeds now. Every "after" run is trained a second time from its seed
  and must give the same losses bit for bit.

Healthy runs, ``fit`` on numpy arrays with ``shuffle=True``, each batch's own loss recorded
with the plugin's ``keras_callback()``; each run's loss on its whole training set must fall:

- ``digits``: an MLP (Dense 64 ReLU, Dense 10) on scikit-learn's digits (pixels / 16), Adam
  3e-3, batch 64, sparse cross-entropy from logits, 4-6 epochs of 5 to 29 batches;
- ``diabetes``: the healthy twin of the catalogue's ``keras_no_learning`` scenario (Dense 32
  ReLU, Dense 1 on the standardised diabetes data, SGD 0.05, batch 32, MSE, 5 epochs of 14
  batches), the run the README's limitation was measured on.

Per configuration: the default verdict on the per-batch series (``pytest_losstrend.check``), and
the lag-one-epoch autocorrelation of the curve's wiggle (log loss minus its centred moving
average over one epoch): about 1 when every epoch replays the previous one's batches.

Usage::

    python benchmarks/keras_reshuffle.py [--seeds 10]
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from dataclasses import dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

from pytest_losstrend import LossTrend, check
from pytest_losstrend.capture import keras_shuffle
from pytest_losstrend.capture.seeding import seed_everything


@dataclass(frozen=True)
class Config:
    data: str  # "digits" or "diabetes"
    rows: int
    epochs: int
    batch: int

    @property
    def per_epoch(self) -> int:
        return -(-self.rows // self.batch)


CONFIGS = [
    Config("digits", 320, 6, 64),
    Config("digits", 512, 5, 64),
    Config("digits", 1024, 5, 64),
    Config("digits", 1797, 4, 64),
    Config("diabetes", 442, 5, 32),
]


def arrays(cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    if cfg.data == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        idx = np.random.default_rng(0).permutation(len(d.data))[: cfg.rows]
        return (d.data[idx] / 16.0).astype("float32"), d.target[idx].astype("int64")
    from pytest_losstrend.catalogue.scenario_data import diabetes

    x, y = diabetes()
    return x.astype("float32"), y[:, None].astype("float32")


def model(cfg: Config) -> keras.Model:
    if cfg.data == "digits":
        m = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(10)])
        m.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return m
    m = keras.Sequential([keras.Input((10,)), keras.layers.Dense(32, activation="relu"),
                          keras.layers.Dense(1)])
    m.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse")
    return m


def run(cfg: Config, seed: int, *, reshuffle: bool) -> list[float]:
    """One run seeded as the fixture seeds a test: its per-batch losses."""
    seed_everything(seed)
    if not reshuffle:
        keras_shuffle.disarm()
    x, y = arrays(cfg)
    m = model(cfg)
    start = float(m.evaluate(x, y, verbose=0, batch_size=512))
    lt = LossTrend()
    m.fit(x, y, epochs=cfg.epochs, batch_size=cfg.batch, shuffle=True, verbose=0,
          callbacks=[lt.keras_callback()])
    end = float(m.evaluate(x, y, verbose=0, batch_size=512))
    keras_shuffle.disarm()
    assert end < start, f"{cfg}, seed {seed}: the run did not learn"
    return lt.losses()


def epoch_autocorrelation(losses: list[float], period: int) -> float:
    """The correlation of the curve's wiggle with itself one epoch later."""
    y = np.log(np.asarray(losses))
    trend = np.convolve(y, np.ones(period) / period, mode="valid")
    lo = period // 2
    wiggle = y[lo : lo + len(trend)] - trend
    return float(np.corrcoef(wiggle[:-period], wiggle[period:])[0, 1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    print("| data | batches x epochs | before: oscillation | before: verdicts | "
          "before: epoch autocorr. | after: oscillation | after: verdicts | "
          "after: epoch autocorr. |")
    print("|---|---|---|---|---|---|---|---|")
    for cfg in CONFIGS:
        row = [cfg.data, f"{cfg.per_epoch} x {cfg.epochs}"]
        for reshuffle in (False, True):
            kinds: Counter[str] = Counter()
            rho = []
            for seed in range(args.seeds):
                losses = run(cfg, seed, reshuffle=reshuffle)
                if reshuffle:
                    again = run(cfg, seed, reshuffle=True)
                    assert again == losses, f"{cfg}, seed {seed}: not reproduced"
                v = check(losses)
                kinds["pass" if v.ok else f"{v.status} {v.kind}"] += 1
                rho.append(epoch_autocorrelation(losses, cfg.per_epoch))
            tally = ", ".join(f"{k} {n}" for k, n in kinds.most_common())
            row += [f"{kinds['fail oscillation']}/{args.seeds}", tally,
                    f"{np.mean(rho):.2f} ({min(rho):.2f} to {max(rho):.2f})"]
        print("| " + " | ".join(row) + " |", flush=True)
    print(f"\n{time.perf_counter() - t0:.0f} s; every run learned; every 'after' run reproduced "
          "bit for bit from its seed")


if __name__ == "__main__":
    main()

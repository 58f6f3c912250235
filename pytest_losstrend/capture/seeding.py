"""Seed every random number generator a training test may use (imports nothing heavy)."""

from __future__ import annotations

import random
import sys

DEFAULT_SEED = 0
#: The largest seed ``--losstrend-seed`` takes: numpy's legacy seeding (and Keras, through it)
#: takes 32 bits.
MAX_SEED = 2**32 - 1


def seed_everything(seed: int) -> list[str]:
    """Seed python, numpy, torch and tensorflow/keras, each only if it is already imported.

    A library the test has not imported is left alone, so seeding never pays for an import.
    With Keras, ``fit`` on arrays also reshuffles its batches every epoch from then on (see
    :mod:`~pytest_losstrend.capture.keras_shuffle`) until :func:`release_seed`.
    Returns the names of the generators seeded.

    Example:
        >>> seed_everything(0)[:1]
        ['random']
    """
    seeded = ["random"]
    random.seed(seed)
    if "numpy" in sys.modules:
        import numpy as np

        np.random.seed(seed % 2**32)
        seeded.append("numpy")
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)
        seeded.append("torch")
    if "keras" in sys.modules:
        # keras.utils.set_random_seed seeds python, numpy and the backend (tensorflow) at once.
        import keras

        # seed + the seeds=N index may pass 32 bits, which numpy under Keras refuses.
        keras.utils.set_random_seed(seed % 2**32)
        seeded.append("keras")
        # Under that TensorFlow seed, fit on arrays would replay one batch order every epoch.
        from pytest_losstrend.capture.keras_shuffle import arm

        arm()
    elif "tensorflow" in sys.modules:
        import tensorflow as tf

        tf.random.set_seed(seed)
        seeded.append("tensorflow")
    return seeded


def release_seed() -> None:
    """Undo what :func:`seed_everything` changed beyond the generators' states, once the test
    is over: Keras array fits go back to Keras' own shuffling, so that a later test that does
    not use the fixture runs as it would alone."""
    if "keras" in sys.modules:
        from pytest_losstrend.capture.keras_shuffle import disarm

        disarm()


def rng_states() -> dict[str, object]:
    """The state of every global generator a reseeding plugin may touch: python's, numpy's
    legacy global one and torch's CPU one (each only if already imported).

    Taken when a test's fixtures are set up and put back by :func:`restore_rng_states` just
    before its body runs, so that a plugin reseeding between the two (pytest-randomly reseeds
    python and numpy in ``pytest_runtest_call``) cannot change the run that
    ``--losstrend-seed`` reproduces.
    """
    states: dict[str, object] = {"random": random.getstate()}
    if "numpy" in sys.modules:
        import numpy as np

        states["numpy"] = np.random.get_state()
    if "torch" in sys.modules:
        import torch

        states["torch"] = torch.random.get_rng_state()
    return states


def restore_rng_states(states: dict[str, object]) -> None:
    """Put back the generator states :func:`rng_states` took."""
    random.setstate(states["random"])  # type: ignore[arg-type]
    if "numpy" in states:
        import numpy as np

        np.random.set_state(states["numpy"])  # type: ignore[arg-type]
    if "torch" in states:
        import torch

        torch.random.set_rng_state(states["torch"])  # type: ignore[arg-type]

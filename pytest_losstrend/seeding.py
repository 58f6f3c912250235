"""Seed every random number generator a training test may use (imports nothing heavy)."""

from __future__ import annotations

import random
import sys

DEFAULT_SEED = 0


def seed_everything(seed: int) -> list[str]:
    """Seed python, numpy, torch and tensorflow/keras, each only if it is already imported.

    A library the test has not imported is left alone, so seeding never pays for an import.
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

        keras.utils.set_random_seed(seed)
        seeded.append("keras")
    elif "tensorflow" in sys.modules:
        import tensorflow as tf

        tf.random.set_seed(seed)
        seeded.append("tensorflow")
    return seeded

"""Shared set-up for the examples: quiet, single-threaded frameworks.

The examples are meant to run in a few seconds on a laptop or a small CI runner, next to other
work. Each framework is therefore held to one CPU thread, and TensorFlow's C++ start-up chatter
is silenced. Nothing here seeds anything: the losstrend fixture seeds python, numpy, torch and
Keras before every test (``--losstrend-seed=N`` to change the seed).
"""

from __future__ import annotations

import os

# Must be set before TensorFlow is first imported (the example modules import it after this).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

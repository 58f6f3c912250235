"""The package's version, in a module of its own that imports nothing, so that any layer (the
baselines record it) can read it without importing the package's glue."""

from __future__ import annotations

__version__ = "0.1.0.dev0"

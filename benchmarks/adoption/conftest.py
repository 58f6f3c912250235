"""The adoption benchmark's test files are run by ``benchmarks/bench_adoption.py`` only.

They are ``test_*.py`` files (the shapes people write), so a ``pytest benchmarks`` or an explicit
path would collect them; without ``ADOPTION_MODE`` (set by the driver) they are ignored here.
"""

from __future__ import annotations

import os

collect_ignore_glob = [] if os.environ.get("ADOPTION_MODE") else ["test_*.py", "_common.py"]

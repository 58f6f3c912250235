"""Loading the plugin costs nothing: numpy, torch, tensorflow and keras stay unimported until a
test records a loss. Checked in fresh interpreters, since this process has imported them all."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("numpy", "torch", "tensorflow", "keras")

PROBE = f"""
import json, sys
{{imports}}
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""


@pytest.mark.parametrize(
    "imports",
    [
        "import pytest_losstrend",
        "import pytest_losstrend.plugin",
        "import pytest_losstrend, pytest_losstrend.plugin, pytest_losstrend.reports.report",
        "from pytest_losstrend import Verdict, Criteria, CriteriaError, Diagnosis",
    ],
)
def test_import_leaves_heavy_modules_out(imports: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(imports=imports)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    assert json.loads(out) == []


def test_check_imports_numpy_only() -> None:
    probe = PROBE.format(imports="from pytest_losstrend import check; check([3, 2, 1])")
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert json.loads(out) == ["numpy"]


SESSION_PROBE = f"""
import json, sys

def pytest_sessionfinish(session):
    loaded = sorted(m for m in {HEAVY!r} if m in sys.modules)
    with open("loaded.json", "w") as fh:
        json.dump(loaded, fh)
"""


def test_plain_suite_with_the_plugin_loaded_imports_nothing_heavy(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A suite with no marked test and no fixture use, run with the report requested: the
    plugin is loaded (explicitly, with autoloading off, so no other plugin interferes)."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makeconftest(SESSION_PROBE)
    pytester.makepyfile(
        """
        import pytest

        def test_arithmetic():
            assert 1 + 1 == 2

        @pytest.mark.parametrize("n", [1, 2])
        def test_param(n):
            assert n > 0
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "losstrend", "--strict-markers", "--losstrend-report", "--losstrend-seed=2"
    )
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "losstrend: seed 2 (--losstrend-seed=N to change)",
            "*= loss trends: 0 tests, seed 2 =*",
        ]
    )
    loaded = json.loads((pytester.path / "loaded.json").read_text())
    assert loaded == []


def test_plugin_is_registered_by_its_entry_point(pytester: pytest.Pytester) -> None:
    """Installed, the plugin loads without ``-p``: its markers pass --strict-markers."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.loss_decreases(inconclusive="pass")
        def test_marked(losstrend):
            losstrend.record([1.0, 0.5])
        """
    )
    result = pytester.runpytest_subprocess("--strict-markers", "-p", "no:xdist")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["losstrend: seed 0 *", "plugins: *losstrend*"])

"""The command line as a new user first meets it: ``pytest --help`` and bad option values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import pytest_losstrend.plugin

PLUGIN_SOURCE = Path(pytest_losstrend.plugin.__file__).read_text(encoding="utf-8")
OPTIONS = sorted(set(re.findall(r'"(--losstrend-[a-z-]+)"', PLUGIN_SOURCE)))
INI_NAMES = sorted(set(re.findall(r'parser\.addini\(\s*"(losstrend_[a-z_]+)"', PLUGIN_SOURCE)))


def test_every_option_is_found_in_the_source() -> None:
    # Guards the two tests below against a regex that finds nothing.
    assert len(OPTIONS) >= 10 and "--losstrend-compare-fail" in OPTIONS
    assert len(INI_NAMES) >= 10 and "losstrend_compare_fail" in INI_NAMES


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_option(pytester: pytest.Pytester, flag: str) -> None:
    """argparse %-formats help texts: one bare '%' (as in 'final:10%') crashed --help in
    every project with the plugin installed. Run it as a user would, in a fresh process."""
    result = pytester.runpytest_subprocess(flag)
    assert result.ret == 0, result.stderr.str()
    out = result.stdout.str()
    for option in OPTIONS:
        assert option in out, option
    for name in INI_NAMES:
        assert name in out, name
    # The gate example reads as written, with one percent sign.
    assert "final:10%,auc:15%" in out.replace("\n", "").replace(" ", "")

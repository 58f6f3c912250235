"""What users install stays loose, what CI installs stays exact, and the two agree.

Read from the files themselves: ``pyproject.toml`` (the extras, the floors, the classifiers),
``constraints/ci.txt`` (CI's pins), the README's two commands, ``.ci/run`` and ``.ci/matrix``.
Building and installing the wheel is ``.ci/wheel_check``'s job (it takes a minute); the checks on
what the built files hold are in ``.ci/check_dists.py``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CI_RUN = ROOT / ".ci" / "run"
MATRIX = ROOT / ".ci" / "matrix"
CONSTRAINTS = ROOT / "constraints" / "ci.txt"
#: Distributions that are a framework build: a user's environment has its own.
FRAMEWORKS = re.compile(r"^(torch|tensorflow(-cpu|-gpu|-intel|-macos)?|tf-nightly|keras|jax)\b")


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    """pyproject.toml, parsed (tomllib is Python 3.11+; 3.10's core run skips these)."""
    tomllib = pytest.importorskip("tomllib")
    with (ROOT / "pyproject.toml").open("rb") as f:
        return dict(tomllib.load(f))


def _name(req: str) -> str:
    return re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].lower().replace("_", "-")


def _pins() -> dict[str, str]:
    pins = {}
    for raw in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"constraints/ci.txt: {line!r} is not an exact pin"
            pins[_name(name)] = version
    return pins


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## The two commands", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    return block.strip().splitlines()


def test_user_extras_never_pin_a_framework(pyproject: dict[str, Any]) -> None:
    """No extra pins a framework exactly or caps it, and the one user-facing framework extra,
    ``torch``, is a floor: pip keeps the torch build a project already has."""
    extras = pyproject["project"]["optional-dependencies"]
    for extra, reqs in extras.items():
        for req in reqs:
            if FRAMEWORKS.match(_name(req)):
                assert not re.search(r"==|<|~=|!=", req), f"[{extra}] {req}"
    assert extras["torch"] == ["torch>=2.5"]
    # TensorFlow ships under several names that overwrite each other; an extra can name one.
    assert not {"tensorflow", "tensorflow-cpu", "keras", "all"} & set(extras)
    for extra in ("torch",):
        assert not any(_name(r).startswith("tensorflow") for r in extras[extra])


def test_version_comes_from_one_place(pyproject: dict[str, Any]) -> None:
    """The version is dynamic, read from pytest_losstrend/_version.py."""
    assert "version" not in pyproject["project"]
    assert pyproject["project"]["dynamic"] == ["version"]
    attr = pyproject["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "pytest_losstrend._version.__version__"


def test_constraints_pin_what_ci_installs(pyproject: dict[str, Any]) -> None:
    """Every package the checkout's extras name has an exact pin in constraints/ci.txt, torch
    is the CPU build, and the pins meet the declared floors."""
    pins = _pins()
    assert pins["torch"].endswith("+cpu")
    extras = pyproject["project"]["optional-dependencies"]
    named = {_name(r) for reqs in extras.values() for r in reqs}
    named |= {_name(r) for r in pyproject["project"]["dependencies"]}
    assert named - set(pins) == set()


def test_readme_commands_use_the_constraints_and_ci_runs_the_test_command_verbatim() -> None:
    """The README's two commands set everything up from the constraints file, and .ci/run runs
    the second one as written, then the wheel check and the matrix."""
    commands = _readme_commands()
    assert len(commands) == 2
    setup = "python3 -m venv .venv && .venv/bin/pip install -q -c constraints/ci.txt -e '.["
    for command in commands:
        assert command.startswith(setup)
    run = CI_RUN.read_text(encoding="utf-8")
    lines = run.splitlines()
    assert commands[1] in lines
    at = lines.index(commands[1])
    assert "bash .ci/wheel_check" in lines[at + 1:]
    assert "bash .ci/matrix" in lines[at + 1:]


def test_matrix_covers_the_declared_floors_and_python_versions(pyproject: dict[str, Any]) -> None:
    """.ci/matrix runs the core on every Python the classifiers list (3.11 is the main run) and
    its first row pins exactly the floors pyproject.toml declares."""
    rows = re.findall(r'^\s+"(3\.\d+)\|([^"]*)"$', MATRIX.read_text(encoding="utf-8"), re.MULTILINE)
    classifiers = {
        c.rsplit(" ", 1)[1] for c in pyproject["project"]["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    assert {v for v, _ in rows} | {"3.11"} == classifiers
    oldest = min(classifiers, key=lambda v: int(v.split(".")[1]))
    assert pyproject["project"]["requires-python"] == f">={oldest}"
    floors = dict(
        re.fullmatch(r"([\w-]+)>=([\d.]+)", r).groups()  # type: ignore[union-attr]
        for r in pyproject["project"]["dependencies"]
    )
    version, pins = rows[0]
    assert version == oldest
    pinned = dict(p.split("==") for p in pins.split())
    for name, floor in floors.items():
        assert pinned[name].startswith(floor), f"{name}: floor {floor}, row pins {pinned[name]}"


def test_license_file_is_the_declared_one(pyproject: dict[str, Any]) -> None:
    """LICENSE is the MIT text the metadata declares, and the sdist takes it."""
    assert pyproject["project"]["license"] == "MIT"
    assert pyproject["project"]["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")


def test_changelog_is_ready_for_a_release() -> None:
    """CHANGELOG.md opens with "Unreleased" and says how a release section is headed."""
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert headings[0] == "Unreleased"
    assert re.search(r"`## \[?X\.Y\.Z\]? - YYYY-MM-DD`", text)
    for heading in headings[1:]:
        assert re.fullmatch(r"\d+\.\d+\.\d+ - \d{4}-\d{2}-\d{2}", heading), heading


def test_core_runs_alone_with_the_framework_tests_deselected(pytester: pytest.Pytester) -> None:
    """tests/conftest.py marks each test with the frameworks it imports (at module level, in
    its body, in its fixtures), so ``-m "not torch and not tensorflow"`` leaves the core."""
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text(encoding="utf-8"))
    pytester.makeini("[pytest]\nmarkers =\n    torch: t\n    tensorflow: tf\n")
    pytester.makepyfile(
        test_mixed="""
        import pytest

        @pytest.fixture
        def keras_model():
            import keras
            return keras

        def test_core():
            assert 1 + 1 == 2

        def test_body_needs_torch():
            import torch

        def test_fixture_needs_keras(keras_model):
            pass
        """,
        test_module="""
        torch = __import__("pytest").importorskip("torch")

        def test_in_a_torch_module():
            pass
        """,
    )
    result = pytester.runpytest_subprocess(
        "-m", "not torch and not tensorflow", "-p", "no:cacheprovider", "-p", "no:randomly",
        "-p", "no:xdist",
    )
    result.assert_outcomes(passed=1, deselected=3)


@pytest.mark.skipif(sys.platform == "win32", reason="bash scripts")
def test_ci_scripts_are_valid_bash() -> None:
    """The scripts .ci/run calls parse (a syntax error would show only in CI)."""
    import subprocess

    for script in ("run", "wheel_check", "matrix", "user_torch_check"):
        subprocess.run(["bash", "-n", str(ROOT / ".ci" / script)], check=True)

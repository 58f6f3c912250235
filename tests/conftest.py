"""Shared fixtures: a pytester primed with tiny, real torch training loops.

The inner test files written through ``lt_pytester`` import ``lt_helpers``, a module of small
training loops (linear regression on synthetic data, a fraction of a second each). torch is
imported once per process, before pytester snapshots ``sys.modules``: pytester drops every
module imported during a test when the test ends, and torch cannot be imported twice.

It also marks each test ``torch`` and/or ``tensorflow`` by what it needs, read from the source
(the module's imports, the test function's and its fixtures' bodies, inner test files included),
so that the pure core runs alone: ``pytest tests -m "not torch and not tensorflow"`` with only
numpy installed (``.ci/matrix`` does this on every Python and on the oldest and newest pytest and
numpy). A file whose module-level imports need a framework that is not installed is not
collected, and a marked test whose framework is missing is skipped saying so; with
``LOSSTREND_REQUIRE_FRAMEWORKS=1`` (CI's main run) both are errors instead, so a broken install
cannot pass as skips.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

#: Import roots -> the marker of the framework they need (Lightning, Hugging Face and their
#: helpers all run on torch; scikit-learn rides with the framework tests that use its data).
NEEDS = {
    "torch": "torch",
    "lightning": "torch",
    "pytorch_lightning": "torch",
    "transformers": "torch",
    "accelerate": "torch",
    "sklearn": "torch",
    "tensorflow": "tensorflow",
    "keras": "tensorflow",
}
#: Fixtures of this file that bring torch in.
TORCH_FIXTURES = {"torch_module", "lt_pytester"}
_IMPORT = re.compile(
    r"^\s*(?:import|from)\s+(" + "|".join(NEEDS) + r")\b"
    r"|importorskip\(\s*[\"'](" + "|".join(NEEDS) + r")\b",
    re.MULTILINE,
)


#: Inner runs that need both frameworks without an import in sight: the catalogue's scenarios
#: train torch and Keras models, and the examples import both.
_BOTH = re.compile(r"losstrend[-_]catalogue|[\"']examples[\"']")


def _frameworks(source: str) -> set[str]:
    """The framework markers that the imports written in ``source`` need (inner test files
    written as strings count: a pytester run of them needs the framework too)."""
    found = {NEEDS[a or b] for a, b in _IMPORT.findall(source)}
    return found | {"torch", "tensorflow"} if _BOTH.search(source) else found


@functools.cache
def _module_frameworks(path: Path) -> frozenset[str]:
    """The frameworks a test module needs at import time (its module-level imports)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return frozenset()
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            # ``torch = pytest.importorskip("torch")``; an inner test file held in a
            # module-level string does not make the whole module need torch.
            found |= {NEEDS[b] for _, b in _IMPORT.findall(ast.unparse(node)) if b}
            continue
        else:
            continue
        found |= {NEEDS[n.split(".")[0]] for n in names if n.split(".")[0] in NEEDS}
    return frozenset(found)


@functools.cache
def _installed(framework: str) -> bool:
    return importlib.util.find_spec(framework) is not None


def _required() -> bool:
    return os.environ.get("LOSSTREND_REQUIRE_FRAMEWORKS") == "1"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave out a test module whose imports need a framework that is not installed (the
    core-only runs), unless CI's main run requires every framework."""
    if collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    missing = [f for f in _module_frameworks(collection_path) if not _installed(f)]
    return True if missing and not _required() else None


def pytest_report_header(config: pytest.Config) -> str:
    """Which copy of the package the tests import (.ci/matrix checks it is the wheel's)."""
    import pytest_losstrend

    return f"losstrend tests: package from {Path(pytest_losstrend.__file__).parent}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with the frameworks it needs; skip it when one is not installed."""
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        needs = set(_module_frameworks(Path(str(item.path))))
        if TORCH_FIXTURES & set(item.fixturenames):
            needs.add("torch")
        funcs = [item.function] + [
            d.func for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs
        ]
        for func in funcs:
            with contextlib.suppress(OSError, TypeError):
                needs |= _frameworks(inspect.getsource(func))
        for name in sorted(needs):
            item.add_marker(name)
        missing = [f for f in sorted(needs) if not _installed(f)]
        if missing and not _required():
            item.add_marker(pytest.mark.skip(reason=f"needs {', '.join(missing)}, not installed"))

HELPERS = '''
"""Tiny real training loops for the inner tests (each well under a second)."""

from pathlib import Path

import torch
from torch.nn.functional import mse_loss


def regression(n=160, d=4, noise=0.1):
    """A fixed synthetic linear-regression data set (independent of the test seed)."""
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(n, d, generator=g)
    w = torch.randn(d, 1, generator=g)
    return x, x @ w + noise * torch.randn(n, 1, generator=g)


def train(losstrend, steps=60, lr=0.05, batch=None, frozen=False, eval_every=0, shift=1.0):
    """Fit a linear model with SGD, recording each step's loss (and every ``eval_every``
    steps the held-out loss, whose targets are multiplied by ``shift``, as "eval").

    The number of completed steps is written to steps.txt, even when recording stops the run.
    """
    x, y = regression()
    xt, yt, xe, ye = x[:128], y[:128], x[128:], shift * y[128:]
    model = torch.nn.Linear(4, 1)
    params = [torch.nn.Parameter(torch.zeros(1))] if frozen else model.parameters()
    opt = torch.optim.SGD(params, lr=lr)
    done = 0
    try:
        for step in range(steps):
            if batch:
                idx = torch.randint(0, len(xt), (batch,))
                xb, yb = xt[idx], yt[idx]
            else:
                xb, yb = xt, yt
            opt.zero_grad()
            loss = mse_loss(model(xb), yb)
            loss.backward()
            opt.step()
            losstrend.record(loss)
            if eval_every and step % eval_every == eval_every - 1:
                with torch.no_grad():
                    losstrend.record(mse_loss(model(xe), ye), series="eval")
            done += 1
    finally:
        Path("steps.txt").write_text(str(done))
    return model


def diverge(losstrend, steps=200):
    """Linear regression on inputs up to 10 with SGD lr=1.0: the loss explodes."""
    x = torch.rand(100, 1) * 10
    y = 3 * x + 1
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    done = 0
    try:
        for _ in range(steps):
            opt.zero_grad()
            loss = mse_loss(model(x), y)
            loss.backward()
            opt.step()
            losstrend.record(loss)
            done += 1
    finally:
        Path("steps.txt").write_text(str(done))


def nan_batch(losstrend, epochs=3, bad_row=75):
    """Minibatches of 10 in order over 100 rows, one of which holds a NaN: the loss of the
    batch holding row ``bad_row`` is NaN."""
    x, y = regression(100)
    x[bad_row, 0] = float("nan")
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    done = 0
    try:
        for _ in range(epochs):
            for i in range(0, 100, 10):
                opt.zero_grad()
                loss = mse_loss(model(x[i:i + 10]), y[i:i + 10])
                loss.backward()
                opt.step()
                losstrend.record(loss)
                done += 1
    finally:
        Path("steps.txt").write_text(str(done))


def unstable_start(losstrend, steps=80, unstable=20):
    """Start next to the least-squares optimum with a learning rate just past the stability
    limit for ``unstable`` steps (the loss climbs x15), then a stable one: the loss comes back
    down to where it started."""
    x = torch.rand(200, 1) * 10
    y = 3 * x + 1 + 0.5 * torch.randn(200, 1)
    model = torch.nn.Linear(1, 1)
    with torch.no_grad():
        design = torch.cat([x, torch.ones_like(x)], 1)
        sol = torch.linalg.lstsq(design, y).solution
        model.weight.fill_(float(sol[0, 0]) + 3e-3)
        model.bias.fill_(float(sol[1, 0]))
    opt = torch.optim.SGD(model.parameters(), lr=0.036)
    for step in range(steps):
        if step == unstable:
            for group in opt.param_groups:
                group["lr"] = 0.004
        opt.zero_grad()
        loss = mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losstrend.record(loss)
'''


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytester whose inner runs, in process or not, keep their order and seeds: pytest-randomly
    is installed for the tests that check seeding survives it, and they enable it with
    ``-p randomly`` (which lifts this block)."""
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:randomly")
    return pytester


@pytest.fixture(scope="session")
def torch_module() -> ModuleType:
    """torch, imported before any pytester snapshot of ``sys.modules`` is taken.

    torch imports parts of itself lazily (the first optimizer step imports ``torch._dynamo``),
    and those cannot be imported a second time either, so one tiny training step runs here.
    """
    import torch

    import pytest_losstrend.fixture
    import pytest_losstrend.runner

    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.rand(4, 1)
    loss = torch.nn.functional.mse_loss(model(x), 2 * x)
    loss.backward()
    opt.step()
    torch.linalg.lstsq(torch.cat([x, torch.ones_like(x)], 1), 2 * x)
    pytest_losstrend.fixture.LossTrend().record(loss)
    return torch


@pytest.fixture(scope="session")
def inner_session(
        tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], dict[str, Any]]:
    """Run a whole inner test file in a fresh pytest process with the JSON report on.

    Returns ``run(name, source)`` -> each test's JSON record, keyed by its node id without the
    file. A fresh process, not pytester, because automatic capture patches torch for the inner
    session's marked tests and those must see a torch that no other test touched. Example::

        @pytest.fixture(scope="module")
        def inner(torch_module, inner_session):
            return inner_session("manual_stale", INNER)
    """
    def run(name: str, source: str) -> dict[str, Any]:
        root = tmp_path_factory.mktemp(name)
        (root / "test_inner.py").write_text(source, encoding="utf-8")
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly",
             "-p", "no:xdist", "-q", "test_inner.py", "--losstrend-report=json:out.json"],
            cwd=root, capture_output=True, text=True, timeout=600, check=False,
            env={**os.environ, "COLUMNS": "200"},
        )
        out = root / "out.json"
        assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
        doc = json.loads(out.read_text(encoding="utf-8"))
        return {t["nodeid"].split("::", 1)[1]: t for t in doc["tests"]}

    return run


@pytest.fixture
def lt_pytester(torch_module: ModuleType, pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester whose directory holds ``lt_helpers.py`` (the inner training loops)."""
    pytester.makepyfile(lt_helpers=HELPERS)
    return pytester


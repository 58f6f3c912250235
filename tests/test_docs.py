"""Every ```python block of the docs runs as written.

The blocks come from README.md, docs/*.md and examples/README.md. Each is one test case, named
by file and line, run according to what it is:

* a block that defines tests (``def test_`` or ``@pytest.mark.``) is written to a test file and
  run with pytest; every test in it must pass, unless the line before the block says otherwise
  with ``<!-- docs-test: expect passed=1 xfailed=1 -->`` (the outcomes the text claims);
* a block that defines ``pytest_*`` hooks is a ``conftest.py``: it is put in one, beside a test
  from ``EXERCISERS`` that only passes when the hook did its job;
* any other block is plain code, executed in a fresh namespace (its own ``assert`` lines are the
  claims it makes).

A block that has to stay a fragment for readability says so on the line before it, with a
reason: ``<!-- docs-test: skip (why) -->``. Such skips are counted: a few at most.

The inner pytest runs are in-process (a subprocess would pay torch's and TensorFlow's start-up
for every block), so every framework module the blocks touch is imported, and exercised once,
before pytester snapshots ``sys.modules``: modules first imported inside an inner run are
dropped when it ends, and torch and TensorFlow cannot be imported twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "examples/README.md")
# At most this many blocks may opt out of running: a skip is a fragment a user cannot copy.
MAX_SKIPPED = 2

FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")
DIRECTIVE = re.compile(r"^<!--\s*docs-test:\s*(?P<kind>skip|expect)\b\s*(?P<arg>.*?)\s*-->$")
# The inner runs leave out the other installed plugins: they change nothing a block claims, and
# the ones whose modules load lazily (hypothesis' terminal summary) would be imported again in
# every run, since pytester drops the modules an inner run imported.
OTHER_PLUGINS = (
    "cacheprovider", "randomly", "hypothesispytest", "xdist", "rerunfailures", "timeout",
)
INNER_ARGS = ("-rA", *(arg for name in OTHER_PLUGINS for arg in ("-p", f"no:{name}")))
# Fence languages that are Python but would escape extraction: write them as ```python.
PYTHON_ALIASES = {"py", "python3", "py3", "pycon", "ipython", "pytb"}


@dataclass
class Block:
    """One fenced code block: where it is, its language, its text and its directive."""

    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    source: str
    directive: tuple[str, str] | None = None
    where: str = field(init=False)

    def __post_init__(self) -> None:
        name = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        self.where = f"{name.as_posix()}:{self.line}"


def blocks(path: Path) -> Iterator[Block]:
    """The fenced code blocks of a Markdown file, each with the directive just above it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.groups()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            # Blocks inside list items are indented by the item's indent: drop it.
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"{path.name}:{start + 1}: code fence never closed")
        i += 1
        prev = start - 1
        while prev >= 0 and not lines[prev].strip():
            prev -= 1
        d = DIRECTIVE.match(lines[prev].strip()) if prev >= 0 else None
        yield Block(path, start + 1, lang.lower(), "\n".join(body) + "\n",
                    (d["kind"], d["arg"]) if d else None)


ALL_BLOCKS = [b for p in DOC_FILES for b in blocks(p)]
PYTHON_BLOCKS = [b for b in ALL_BLOCKS if b.lang == "python"]


def kind(block: Block) -> str:
    """``"tests"``, ``"conftest"`` or ``"code"``: how the block is run."""
    if re.search(r"^\s*(def test_|@pytest\.mark\.)", block.source, re.M):
        return "tests"
    if re.search(r"^def pytest_\w+\(", block.source, re.M):
        return "conftest"
    return "code"


def expected_outcomes(block: Block) -> dict[str, int]:
    """The outcomes the text claims: its ``expect`` directive, or every test function passes."""
    if block.directive and block.directive[0] == "expect":
        pairs = re.findall(r"(\w+)=(\d+)", block.directive[1])
        assert pairs, f"{block.where}: 'docs-test: expect' needs outcome=count pairs"
        return {name: int(n) for name, n in pairs}
    return {"passed": len(re.findall(r"^\s*def test_", block.source, re.M))}


# A test for each hook a conftest block may define: it passes only when the hook took effect.
EXERCISERS: dict[str, str] = {
    # An LBFGS optimizer stepped without the closure it needs never moves the weights; with the
    # README's rule the failure's first cause is the rule's own code.
    "pytest_losstrend_diagnose": '''
import pytest
import torch


@pytest.mark.loss_fails(cause="lbfgs_misuse")
def test_lbfgs_without_closure(losstrend):
    x = torch.linspace(0, 1, 64).unsqueeze(1)
    y = 2 * x + 1
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.LBFGS(model.parameters())
    losstrend.watch(model, opt)
    for _ in range(20):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        losstrend.record(loss)  # opt.step() is skipped: it needs closure=
''',
}


@pytest.fixture(scope="module")
def frameworks(torch_module: ModuleType) -> None:
    """Import and run once what the blocks use (see the module docstring for why).

    One tiny ``losstrend.fit`` per framework, outside any pytester run, loads the lazily
    imported parts of torch, Keras, TensorFlow and the fit runner.
    """
    import keras
    import numpy as np
    import sklearn.datasets
    import sklearn.model_selection
    import sklearn.preprocessing
    import tensorflow  # noqa: F401  (imported here, before the snapshot)

    from pytest_losstrend.fixture import LossTrend

    x = np.random.default_rng(0).normal(size=(16, 2)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    sklearn.model_selection.train_test_split(x, y, random_state=0)
    sklearn.preprocessing.StandardScaler().fit_transform(x)
    sklearn.datasets.load_diabetes(return_X_y=True)
    net = torch_module.nn.Sequential(torch_module.nn.Linear(2, 1))
    LossTrend().fit(net, (x, y), loss="mse", optimizer=("adam", 1e-2), steps=2, eval_data=(x, y))
    kmodel = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    LossTrend().fit(kmodel, (x, y), loss="mse", optimizer="adam", steps=2, eval_data=(x, y))


def _run(pytester: pytest.Pytester, block: Block) -> None:
    k = kind(block)
    if k == "code":
        namespace: dict[str, Any] = {"__name__": "__docs__"}
        exec(compile(block.source, block.where, "exec"), namespace)  # the block's own asserts
        return
    if k == "conftest":
        hooks = re.findall(r"^def (pytest_\w+)\(", block.source, re.M)
        missing = [h for h in hooks if h not in EXERCISERS]
        assert not missing, f"{block.where}: add a test for {missing} to EXERCISERS"
        pytester.makeconftest(block.source)
        for n, hook in enumerate(hooks):
            pytester.makepyfile(**{f"test_exercise_{n}": EXERCISERS[hook]})
        # Each exerciser is a loss_fails case: an expected failure when the hook took effect,
        # a failure (the wrong cause first) when it did not.
        expected = {"xfailed": len(hooks)}
    else:
        pytester.makepyfile(test_docs_block=block.source)
        expected = expected_outcomes(block)
    result = pytester.runpytest_inprocess(*INNER_ARGS)
    outcomes = result.parseoutcomes()
    got = {name: outcomes.get(name, 0) for name in ("passed", "failed", "errors", "skipped",
                                                     "xfailed", "xpassed")}
    want = {name: expected.get(name, 0) for name in got}
    assert got == want, f"{block.where}: the text claims {want}\n" + result.stdout.str()


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[b.where for b in PYTHON_BLOCKS])
def test_block_runs(block: Block, frameworks: None, pytester: pytest.Pytester) -> None:
    if block.directive and block.directive[0] == "skip":
        pytest.skip(f"{block.where}: {block.directive[1]}")
    _run(pytester, block)


def test_skipped_blocks_are_few_and_explained() -> None:
    skipped = [b for b in PYTHON_BLOCKS if b.directive and b.directive[0] == "skip"]
    assert len(skipped) <= MAX_SKIPPED, [b.where for b in skipped]
    for b in skipped:
        assert re.fullmatch(r"\(.{10,}\)", b.directive[1] if b.directive else ""), (
            f"{b.where}: a skipped block needs '<!-- docs-test: skip (reason) -->'"
        )


def test_every_python_block_is_found() -> None:
    """The extraction sees the blocks: none hides behind another spelling of the language, and
    a directive never sits on a block that is not Python (it would be silently ignored)."""
    assert len(PYTHON_BLOCKS) >= 3, [b.where for b in ALL_BLOCKS]
    aliased = [b.where for b in ALL_BLOCKS if b.lang in PYTHON_ALIASES]
    assert not aliased, f"write these fences as ```python: {aliased}"
    stray = [b.where for b in ALL_BLOCKS if b.directive and b.lang != "python"]
    assert not stray, f"docs-test directive on a non-Python block: {stray}"


def test_extraction_reads_fences_and_directives(tmp_path: Path) -> None:
    """Line numbers, languages, a list item's indent and both directives, on a made-up page."""
    page = tmp_path / "page.md"
    page.write_text(
        "# t\n\n```sh\nls\n```\n\n<!-- docs-test: skip (needs a GPU to run at all) -->\n"
        "```python\nimport cuda_only\n```\n\n- item:\n\n  ```python\n  x = 1\n  ```\n\n"
        "<!-- docs-test: expect passed=1 xfailed=1 -->\n\n```python\ndef test_a(): pass\n```\n",
        encoding="utf-8",
    )
    found = list(blocks(page))
    assert [(b.line, b.lang) for b in found] == [(3, "sh"), (8, "python"), (14, "python"),
                                                (20, "python")]
    assert found[1].directive == ("skip", "(needs a GPU to run at all)")
    assert found[2].source == "x = 1\n" and found[2].directive is None
    assert [kind(b) for b in found[1:]] == ["code", "code", "tests"]
    assert expected_outcomes(found[3]) == {"passed": 1, "xfailed": 1}

"""Check the built sdist and wheel: what a package index and a user get.

Run by ``.ci/wheel_check`` as ``python .ci/check_dists.py DIST_DIR``. Standard library only, so
any interpreter runs it. Each check prints one line; the first that fails exits non-zero.
"""

from __future__ import annotations

import re
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def version() -> str:
    """The version, read from its one place (``pytest_losstrend/_version.py``)."""
    text = (ROOT / "pytest_losstrend" / "_version.py").read_text(encoding="utf-8")
    found = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    assert found, "no __version__ in pytest_losstrend/_version.py"
    return found.group(1)


def check(ok: bool, what: str) -> None:
    """Print the check's line; exit 1 when it failed."""
    print(f"  {'ok  ' if ok else 'FAIL'} {what}")
    if not ok:
        sys.exit(1)


def main(dist: Path) -> None:
    """Check the one wheel and the one sdist in ``dist``."""
    ver = version()
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    check(len(wheels) == 1 and len(sdists) == 1, f"one wheel and one sdist in {dist}")
    wheel, sdist = wheels[0], sdists[0]
    check(wheel.name == f"pytest_losstrend-{ver}-py3-none-any.whl", f"wheel {wheel.name}")
    check(sdist.name == f"pytest_losstrend-{ver}.tar.gz", f"sdist {sdist.name}")

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = f"pytest_losstrend-{ver}.dist-info"
        meta = Parser().parsestr(zf.read(f"{info}/METADATA").decode())
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
    for name in ("py.typed", "schemas/losstrend-report-1.schema.json", "plugin.py",
                 "verdict/__init__.py", "diagnosis/__init__.py", "capture/__init__.py",
                 "reports/__init__.py", "catalogue/__init__.py"):
        check(f"pytest_losstrend/{name}" in names, f"wheel holds pytest_losstrend/{name}")
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "pytest_losstrend").rglob("*.py")}
    check(sources <= names, f"wheel holds all {len(sources)} modules of the package")
    check(not any(n.startswith(("tests/", "examples/", "benchmarks/")) for n in names),
          "wheel holds no tests, examples or benchmarks")
    check(f"{info}/licenses/LICENSE" in names, "wheel holds the LICENSE")
    check("losstrend = pytest_losstrend.plugin" in entry_points and "[pytest11]" in entry_points,
          "wheel registers the pytest11 entry point")
    check(meta["Version"] == ver, f"METADATA Version {meta['Version']} is _version.py's")
    check(meta["License-Expression"] == "MIT", "METADATA License-Expression: MIT")
    check(len(meta.get_all("Project-URL") or []) >= 3, "METADATA has the project URLs")
    classifiers = meta.get_all("Classifier") or []
    for cls in ("Framework :: Pytest", "Programming Language :: Python :: 3.10",
                "Programming Language :: Python :: 3.13"):
        check(cls in classifiers, f"classifier {cls!r}")
    requires = meta.get_all("Requires-Dist") or []
    framework = [r for r in requires if re.match(r"(torch|tensorflow|keras)\b", r)]
    check(not any("==" in r.split(";")[0] for r in framework), "no exact framework pin")
    user = [r for r in framework if "extra ==" in r and "extra == \"torch\"" in r]
    check(user == ['torch>=2.5; extra == "torch"'], f"the torch extra is a floor: {user}")

    with tarfile.open(sdist) as tf:
        members = {m.name.split("/", 1)[1] for m in tf.getmembers() if "/" in m.name}
    for name in ("LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "MANIFEST.in",
                 "tests/conftest.py", "tests/test_verdict.py", "docs/adopting.md",
                 "examples/conftest.py", "examples/README.md", "constraints/ci.txt",
                 "pytest_losstrend/py.typed",
                 "pytest_losstrend/schemas/losstrend-report-1.schema.json"):
        check(name in members, f"sdist holds {name}")
    tests = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").glob("*.py")}
    docs = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md")}
    check(tests <= members, f"sdist holds all {len(tests)} test files")
    check(docs <= members, f"sdist holds all {len(docs)} docs")
    check(not any("__pycache__" in m for m in members), "sdist holds no __pycache__")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

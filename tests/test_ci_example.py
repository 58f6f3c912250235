"""The CI example (examples/ci/): the workflow is valid and wired to the gate script, and the
script saves a multi-seed baseline, passes a clean change and fails a regressed one with the
Markdown summary on the job page."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# Imported before pytester snapshots the modules: numpy cannot be loaded twice in one process.
import pytest_losstrend.reports.report  # noqa: F401

CI = Path(__file__).resolve().parents[1] / "examples" / "ci"

SUITE = """
from pathlib import Path

import pytest
from lt_helpers import train

@pytest.mark.loss_decreases
def test_fit(losstrend):
    train(losstrend, steps=80, lr=float(Path("lr.txt").read_text()), batch=16)

def test_unrelated():
    pass
"""


def test_workflow_saves_on_main_and_compares_on_a_pull_request() -> None:
    flow = yaml.safe_load((CI / "loss-curves.yml").read_text())
    # YAML 1.1 reads the key "on" as True.
    triggers = flow.get("on", flow.get(True))
    assert triggers["push"]["branches"] == ["main"] and "pull_request" in triggers
    (job,) = flow["jobs"].values()
    steps = job["steps"]
    runs = {s.get("name"): s for s in steps if "run" in s}
    save = runs["Save the baseline (main)"]
    compare = runs["Compare with main's baseline"]
    assert save["run"].startswith("ci/losstrend-gate.sh save") and "push" in save["if"]
    assert compare["run"].startswith("ci/losstrend-gate.sh compare")
    assert "pull_request" in compare["if"]
    caches = {s["uses"].split("@")[0]: s["with"] for s in steps if "uses" in s
              and "cache" in s["uses"]}
    saved_key = caches["actions/cache/save"]["key"]
    restore_prefix = caches["actions/cache/restore"]["restore-keys"]
    # The pull request finds main's baseline: its restore prefix matches the saved key.
    assert saved_key.startswith(restore_prefix)
    assert caches["actions/cache/save"]["path"] == caches["actions/cache/restore"]["path"]
    assert caches["actions/cache/save"]["path"] == ".losstrend"
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["with"]["path"].rstrip("/") == "losstrend-out" and "always()" in upload["if"]


def _gate(path: Path, mode: str, summary: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LOSSTREND_SEEDS="0 1 2",
               PYTEST=f"{sys.executable} -m pytest -p no:cacheprovider -p no:xdist",
               GITHUB_STEP_SUMMARY=str(summary))
    return subprocess.run(["bash", "ci/losstrend-gate.sh", mode, "-m", "loss_decreases"],
                          cwd=path, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


def test_gate_script_saves_then_gates(lt_pytester: pytest.Pytester) -> None:
    p = lt_pytester.path
    lt_pytester.makepyfile(test_models=SUITE)
    (p / "lr.txt").write_text("0.05")
    (p / "ci").mkdir()
    shutil.copy(CI / "losstrend-gate.sh", p / "ci" / "losstrend-gate.sh")
    summary = p / "summary.md"

    done = _gate(p, "save", summary)
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads((p / ".losstrend" / "main.json").read_text())
    assert [r["seed"] for r in doc["tests"]["test_models.py::test_fit"]["runs"]] == [0, 1, 2]
    assert sorted(x.name for x in (p / ".losstrend").iterdir()) == ["main.json"]

    done = _gate(p, "compare", summary)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Compared with `main` (gated): 1 ok." in summary.read_text()
    assert {x.name for x in (p / "losstrend-out").iterdir()} == {
        "summary.md", "report.json", "report.html"}

    (p / "lr.txt").write_text("0.005")  # the change: a learning rate ten times lower
    summary.unlink()
    done = _gate(p, "compare", summary)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "regressed against baseline" in done.stdout and "final:10%" in done.stdout
    text = summary.read_text()
    assert "1 regressed" in text and "| `test_models.py::test_fit` | train | final:10% |" in text

    # Saving again rebuilds the baseline from this commit's curves alone.
    before = (p / ".losstrend" / "main.json").read_text()
    assert _gate(p, "save", summary).returncode == 0
    assert (p / ".losstrend" / "main.json").read_text() != before
    assert _gate(p, "compare", summary).returncode == 0


def test_gate_script_keeps_the_old_baseline_when_a_save_run_fails(
    lt_pytester: pytest.Pytester,
) -> None:
    p = lt_pytester.path
    lt_pytester.makepyfile(test_models=SUITE)
    (p / "lr.txt").write_text("0.05")
    (p / "ci").mkdir()
    shutil.copy(CI / "losstrend-gate.sh", p / "ci" / "losstrend-gate.sh")
    assert _gate(p, "save", p / "s.md").returncode == 0
    before = (p / ".losstrend" / "main.json").read_text()
    (p / "lr.txt").write_text("5.0")  # diverges: the marked test fails on main
    done = _gate(p, "save", p / "s.md")
    assert done.returncode == 1
    assert (p / ".losstrend" / "main.json").read_text() == before

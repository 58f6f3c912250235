"""Faults and bad input, as a user meets them: what each costs and whether anything is lost.

Usage::

    python benchmarks/bench_faults.py [--kills 10] [--json out.json]

Every case is a real pytest session in a fresh temporary folder (a subprocess of this
interpreter, so the installed plugin is what runs), and each prints one table row: the case,
what the user sees (exit code and the line that says why), and whether anything was lost.

- **kill -9 during a report write**: a session of 150 marked tests x 2,000 steps writing the
  JSON, HTML and Markdown reports over the valid reports of an earlier run; the session is
  killed with SIGKILL the moment a report's temporary file appears (the write is under way).
  Each report must then be either the earlier file, whole, or the new one, whole.
- **SIGTERM mid-run** (a CI runner's cancel): the reports must hold every test that finished.
- **a pytest-xdist worker crash** (``os._exit`` in a test under ``-n 2``): the other tests must
  be in the reports.
- **bad report paths**: a usage error (exit 4) naming the option, before any test runs.
- **extreme values**: curves near the float maximum, denormals, negative, mixed-sign and
  constant, recorded by marked tests and written to every report: verdicts, no internal error.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

PY = sys.executable

BIG_SUITE = """
import math, random
import pytest

@pytest.mark.parametrize("i", range(150))
@pytest.mark.loss_decreases
def test_curve(losstrend, i):
    rng = random.Random(i)
    losstrend.record([math.exp(-t / 500) * (1 + 0.1 * rng.random()) for t in range(2000)])
"""

SMALL_SUITE = """
import pytest

@pytest.mark.loss_decreases
def test_curve(losstrend):
    losstrend.record([1.0 / (1 + t) for t in range(30)])
"""

SLOW_SUITE = """
import time
import pytest

@pytest.mark.loss_decreases
@pytest.mark.parametrize("i", range(3))
def test_finished(losstrend, i):
    losstrend.record([1.0 / (1 + t) for t in range(30)])

def test_slow():
    open("started", "w").close()
    time.sleep(60)
"""

CRASH_SUITE = """
import pytest

@pytest.mark.loss_decreases
@pytest.mark.parametrize("i", range(4))
def test_fine(losstrend, i):
    losstrend.record([1.0 / (1 + t) for t in range(30)])

def test_crash():
    os._exit(3)
"""

EXTREME_SUITE = """
import pytest

CURVES = {
    "near_max_after_fall": [10.0 / (1 + t) for t in range(40)] + [1.7e308],
    "denormal_fall": [5e-310 / (1 + t) for t in range(40)],
    "negative": [-1.0 - 0.1 * t for t in range(40)],
    "mixed_sign": [1.0 - 0.05 * t for t in range(40)],
    "constant": [0.5] * 40,
    "zeros": [0.0] * 40,
    "huge_fall": [1e300 / (1 + t) for t in range(40)],
    "inf_then_fall": [float("inf")] + [1.0 / (1 + t) for t in range(40)],
}

@pytest.mark.loss_decreases
@pytest.mark.parametrize("name", sorted(CURVES))
def test_extreme(losstrend, name):
    losstrend.record(CURVES[name])
"""

REPORTS = ["--losstrend-report=json:r.json", "--losstrend-report=html:r.html",
           "--losstrend-report=md:r.md"]


def _run(folder: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly",
                           *args], check=False, cwd=folder, capture_output=True, text=True,
                          timeout=timeout)


def _last_line(text: str, *needles: str) -> str:
    for line in reversed(text.splitlines()):
        if any(n in line for n in needles):
            return line.strip()
    return text.strip().splitlines()[-1] if text.strip() else ""


def _whole(path: Path) -> str | None:
    """Which whole report ``path`` is ("old", "new"), or None when it is damaged."""
    if not path.exists():
        return None
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".json":
        try:
            doc = json.loads(text)
        except ValueError:
            return None
        return "old" if doc.get("old") else "new"
    if path.suffix == ".html":
        if not text.rstrip().endswith("</html>"):
            return None
        return "old" if "OLD REPORT" in text else "new"
    return "old" if text.startswith("OLD REPORT") else ("new" if "Loss trends" in text else None)


def kill_during_write(trials: int) -> dict[str, Any]:
    """SIGKILL the session the moment one of its report writes is under way."""
    outcomes: list[dict[str, Any]] = []
    for _ in range(trials):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "test_big.py").write_text(BIG_SUITE)
            (folder / "r.json").write_text(json.dumps({"old": True}))
            (folder / "r.html").write_text("<html>OLD REPORT</html>\n")
            (folder / "r.md").write_text("OLD REPORT\n")
            proc = subprocess.Popen([PY, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                     "-p", "no:randomly", *REPORTS], cwd=folder,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            killed_at = None
            deadline = time.monotonic() + 300
            while proc.poll() is None and time.monotonic() < deadline:
                tmps = list(folder.glob(".r.*.tmp"))
                if tmps:
                    proc.send_signal(signal.SIGKILL)
                    killed_at = tmps[0].name
                    break
                time.sleep(0.002)
            proc.wait()
            states = {p: _whole(folder / p) for p in ("r.json", "r.html", "r.md")}
            left = len(list(folder.glob(".r.*.tmp")))
            # The next session writing the same reports clears what the killed one left.
            (folder / "test_big.py").write_text(SMALL_SUITE)
            _run(folder, *REPORTS)
            outcomes.append({
                "killed_during": killed_at, "states": states, "left_tmp": left,
                "left_after_next": len(list(folder.glob(".r.*.tmp"))),
            })
    hit = [o for o in outcomes if o["killed_during"]]
    damaged = sum(1 for o in outcomes for s in o["states"].values() if s is None)
    return {
        "case": f"kill -9 during a report write ({len(hit)}/{trials} kills landed mid-write)",
        "sees": "the session dies; each report is the earlier file or the new one, whole",
        "lost": f"{damaged} damaged reports of {3 * trials}; "
                f"{sum(o['left_tmp'] for o in outcomes)} temp files left by the killed writers, "
                f"{sum(o['left_after_next'] for o in outcomes)} after the next session's write",
        "ok": damaged == 0 and len(hit) > 0
              and not any(o["left_after_next"] for o in outcomes),
        "detail": outcomes,
    }


def sigterm_mid_run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "test_slow.py").write_text(SLOW_SUITE)
        proc = subprocess.Popen([PY, "-m", "pytest", "-p", "no:cacheprovider",
                                 "-p", "no:randomly", *REPORTS], cwd=folder,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 120
        # Cancel, as a CI runner would, once the slow test is running.
        while not (folder / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        doc = json.loads((folder / "r.json").read_text()) if (folder / "r.json").exists() else {}
        kept = len(doc.get("tests", []))
        return {"case": "SIGTERM mid-run (3 tests done, the 4th running)",
                "sees": f"exit {proc.returncode}; " + _last_line(out, "SIGTERM"),
                "lost": f"{kept}/3 finished tests in the JSON, HTML and Markdown reports",
                "ok": kept == 3 and all((folder / p).exists() for p in ("r.html", "r.md"))}


def worker_crash() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "test_crash.py").write_text(CRASH_SUITE)
        res = _run(folder, "-n", "2", *REPORTS)
        doc = json.loads((folder / "r.json").read_text())
        kept = len(doc["tests"])
        return {"case": "pytest-xdist worker crash (os._exit in a test, -n 2)",
                "sees": f"exit {res.returncode}; " + _last_line(res.stdout, "crashed", "failed"),
                "lost": f"{kept}/4 other tests in the reports",
                "ok": kept == 4 and res.returncode == 1}


BAD_PATHS = [
    ("parent is a file", "md:afile/x.md"),
    ("path is a folder", "json:adir"),
    ("unwritable root", "json:/proc/losstrend.json"),
    ("missing folder under an unwritable root", "json:/proc/nope/r.json"),
    ("json and html on one file", "html:r.html --losstrend-report=json:r.html"),
    ("same file as --junitxml", "json:out.xml --junitxml=out.xml"),
]


def bad_paths() -> list[dict[str, Any]]:
    rows = []
    for name, report in BAD_PATHS:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "afile").write_text("")
            (folder / "adir").mkdir()
            (folder / "test_a.py").write_text(textwrap.dedent("""
                from pathlib import Path
                def test_a(losstrend):
                    Path("ran").write_text("")
                    losstrend.record([3.0, 2.0, 1.0])
            """))
            res = _run(folder, *f"--losstrend-report={report}".split())
            ran = (folder / "ran").exists()
            rows.append({"case": f"bad report path: {name}",
                         "sees": f"exit {res.returncode}; "
                                 + _last_line(res.stderr, "ERROR:").replace(tmp, "."),
                         "lost": "no test ran" if not ran else "A TEST RAN",
                         "ok": res.returncode == 4 and not ran})
    return rows


def extreme_values() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "test_extreme.py").write_text(EXTREME_SUITE)
        res = _run(folder, "-rA", "--losstrend-report=term", *REPORTS)
        internal = "INTERNALERROR" in res.stdout + res.stderr or "Traceback" in res.stdout
        doc = json.loads((folder / "r.json").read_text()) if (folder / "r.json").exists() else {}
        verdicts = {t["nodeid"].split("[")[1].rstrip("]"): (t.get("verdict") or {}).get("status")
                    for t in doc.get("tests", [])}
        # A test without a verdict was failed by an exception inside the plugin.
        internal = internal or any(v is None for v in verdicts.values())
        return {"case": f"extreme values ({len(verdicts)} curves: near float max, denormal, "
                        "negative, mixed sign, constant, zeros, inf)",
                "sees": f"exit {res.returncode}; verdicts "
                        + ", ".join(f"{k}={v}" for k, v in sorted(verdicts.items())),
                "lost": "no internal error; every report written" if not internal
                        else "AN INTERNAL ERROR (a test without a verdict)",
                "ok": not internal and len(verdicts) == 8}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = [kill_during_write(args.kills), sigterm_mid_run(), worker_crash(), *bad_paths(),
            extreme_values()]
    print("| case | what the user sees | nothing lost |")
    print("|---|---|---|")
    for r in rows:
        mark = "yes" if r["ok"] else "**NO**"
        print(f"| {r['case']} | {r['sees'].replace('|', '/')} | {mark}: {r['lost']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()

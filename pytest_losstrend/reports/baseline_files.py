"""Baseline files: the format of ``.losstrend/NAME.json``, read, checked, merged and written.

A baseline file holds, per test (its node id without the ``seedN`` id), one or more recorded
runs, one per seed, each with its loss curves and where it was made. This module is everything
that touches such a file and nothing that judges a curve: :func:`load` and its full check,
:func:`write` (atomic, key-sorted, curves on one line), :func:`merge` (a run's results into a
document) and :func:`save_runs` (read, merge and write under the lock ``NAME.json.lock``, so
that two sessions saving at once both keep their runs).

Every value the code reads is checked when a file is loaded: a file that is not a baseline, or
a damaged one, is an error naming it and the bad field, and is never rewritten. A loss that was
not finite is stored as ``null`` (earlier versions wrote the strings ``"nan"``, ``"inf"`` and
``"-inf"``, still read). Nothing is unpickled. Imports nothing of the package but the version
and the atomic write, and no numpy.
"""

from __future__ import annotations

import functools
import json
import math
import platform
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_losstrend._version import __version__
from pytest_losstrend.reports.files import write_text_atomic
from pytest_losstrend.reports.schema import Environment, MachineData, TestResult

BASELINE_SCHEMA = "losstrend-baseline/1"
DEFAULT_NAME = "default"
DEFAULT_DIR = ".losstrend"

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# The id that ``loss_decreases(seeds=N)`` adds to a test's node id: the runs of one test
# under several seeds are one baseline entry.
_SEED_ID_RE = re.compile(r"(?:(?<=\[)|-)seed\d+(?=\]|-)")


class BaselineError(Exception):
    """A baseline option or file that cannot be used; the message names it."""


def check_name(name: str) -> str:
    """A baseline name is a file name stem: letters, digits, ``_``, ``.``, ``-``."""
    if not _NAME_RE.fullmatch(name) or name.endswith(".json"):
        raise BaselineError(
            f"baseline name {name!r} must be letters, digits, '_', '.' or '-' (no path, no "
            "extension), e.g. --losstrend-save=main"
        )
    return name


def baseline_key(nodeid: str) -> str:
    """The entry a test's runs go under: its node id without the ``seedN`` id that
    ``loss_decreases(seeds=N)`` adds (``t.py::test[seed2]`` -> ``t.py::test``)."""
    if "[" not in nodeid:
        return nodeid
    head, _, params = nodeid.partition("[")
    params = _SEED_ID_RE.sub("", "[" + params)
    params = params.replace("[-", "[")
    return head if params == "[]" else head + params


def baseline_path(directory: Path, name: str) -> Path:
    """Where baseline ``name`` lives."""
    return directory / f"{check_name(name)}.json"


#: The strings earlier versions wrote for a loss that was not finite (now ``null``).
_LEGACY_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
#: The optional string fields of a baseline's ``environment``.
_ENV_FIELDS = ("plugin", "python", "platform", "machine", "device")


def load(path: Path) -> dict[str, Any] | None:
    """Read and check a baseline file; None when it does not exist.

    A file that is not valid JSON, not a baseline of this schema, or damaged in any value the
    code reads raises :class:`BaselineError` naming the file and the field (and is left
    untouched). Loss points come back as floats: ``null`` (a point that was not finite) and
    the strings ``"nan"``, ``"inf"``, ``"-inf"`` that earlier versions wrote are read as NaN
    and infinities.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise BaselineError(
            f"baseline {path} is not valid JSON (not UTF-8 text: {exc.reason} at byte "
            f"{exc.start}); it was left untouched: fix or delete it, then save the baseline again"
        ) from None
    except OSError as exc:
        raise BaselineError(f"cannot read baseline {path}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise BaselineError(
            f"baseline {path} is not valid JSON ({why}); it was left untouched: fix or delete "
            "it, then save the baseline again"
        ) from None
    if not isinstance(doc, dict) or doc.get("schema") != BASELINE_SCHEMA:
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise BaselineError(
            f"{path} is not a pytest-losstrend baseline (schema {found!r}, expected "
            f"{BASELINE_SCHEMA!r}); it was left untouched"
        )
    try:
        return _checked(doc)
    except _Damage as exc:
        raise BaselineError(
            f"baseline {path} is damaged: {exc}; it was left untouched: fix or delete it, then "
            "save the baseline again"
        ) from None


def _no_constant(name: str) -> float:
    # Python's json reads NaN and Infinity, which are not JSON; the writer never emits them.
    raise ValueError(f"{name} is not JSON (a point that was not finite is written null)")


class _Damage(Exception):
    """A bad value at a field of a baseline document (the message names the field)."""


def _got(value: Any) -> str:
    text = repr(value)
    kind = {dict: "a mapping", list: "a list", bool: "a boolean"}.get(type(value))
    if kind is not None and len(text) > 40:
        return kind
    return text if len(text) <= 60 else text[:57] + "..."


def _expect(ok: bool, where: str, what: str, value: Any) -> None:
    if not ok:
        raise _Damage(f"{where}: expected {what}, got {_got(value)}")


def _optional_str(obj: dict[str, Any], key: str, where: str) -> None:
    value = obj.get(key)
    # Fixed fields read as attributes, user-named keys (tests, series) in brackets.
    _expect(value is None or isinstance(value, str), f"{where}.{key}" if where else key,
            "a string or null", value)


def _point(value: Any, where: str) -> float:
    # bool is an int subclass, but True is no loss.
    if value is None:
        return math.nan
    if isinstance(value, str) and value in _LEGACY_NON_FINITE:
        return _LEGACY_NON_FINITE[value]
    _expect(isinstance(value, (int, float)) and not isinstance(value, bool), where,
            "a number", value)
    try:
        number = float(value)
    except OverflowError:
        raise _Damage(f"{where}: expected a number, got an integer too large for a float"
                      ) from None
    # 1e999 is valid JSON that reads as infinity: not something this plugin wrote.
    _expect(math.isfinite(number), where, "a finite number (or null for a point that was not "
            "finite)", value)
    return number


def _checked(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with every field the code reads checked, loss points as floats; raises
    :class:`_Damage` naming the first bad field."""
    for key in ("name", "created", "updated"):
        _optional_str(doc, key, "")
    env = doc.get("environment")
    _expect(env is None or isinstance(env, dict), "environment", "a mapping", env)
    if env is not None:
        for key in _ENV_FIELDS:
            _optional_str(env, key, "environment")
        fw = env.get("frameworks")
        _expect(fw is None or isinstance(fw, dict), "environment.frameworks",
                "a mapping of module -> version", fw)
        for mod, version in (fw or {}).items():
            _expect(isinstance(version, str), f"environment.frameworks[{mod!r}]",
                    "a version string", version)
    tests: Any = doc.get("tests")
    _expect(isinstance(tests, dict), "tests", "a mapping of test -> runs", tests)
    out_tests: dict[str, Any] = {}
    for key, entry in tests.items():
        where = f"tests[{key!r}]"
        _expect(isinstance(entry, dict), where, "a mapping with 'runs'", entry)
        runs = entry.get("runs")
        _expect(isinstance(runs, list), f"{where}.runs", "a list of runs", runs)
        out_runs = []
        seen: set[int] = set()
        for i, run in enumerate(runs):
            at = f"{where}.runs[{i}]"
            _expect(isinstance(run, dict), at, "a mapping with 'seed' and 'series'", run)
            seed = run.get("seed")
            _expect(seed is None or (isinstance(seed, int) and not isinstance(seed, bool)),
                    f"{at}.seed", "an integer or null", seed)
            if seed is not None:
                # Two runs under one seed: a save would replace one and keep the other.
                _expect(seed not in seen, f"{at}.seed", "a seed not already in the runs", seed)
                seen.add(seed)
            _optional_str(run, "framework", at)
            _optional_str(run, "saved", at)
            series = run.get("series")
            _expect(isinstance(series, dict), f"{at}.series", "a mapping of series -> losses",
                    series)
            curves: dict[str, list[float]] = {}
            for name, losses in series.items():
                here = f"{at}.series[{name!r}]"
                _expect(isinstance(losses, list), here, "a list of losses", losses)
                curves[name] = [_point(v, f"{here}[{j}]") for j, v in enumerate(losses)]
            out_runs.append({**run, "series": curves})
        out_tests[key] = {**entry, "runs": out_runs}
    return {**doc, "tests": out_tests}


@functools.lru_cache(maxsize=1)
def _machine() -> MachineData:
    return {"plugin": __version__, "python": platform.python_version(),
            "platform": platform.platform(terse=True), "machine": platform.machine()}


def environment() -> Environment:
    """What a run is made on: python, platform, the versions of the frameworks imported so
    far, and the device."""
    fw: dict[str, str] = {}
    for mod in ("numpy", "torch", "tensorflow", "keras"):
        m = sys.modules.get(mod)
        version = getattr(m, "__version__", None) if m is not None else None
        if isinstance(version, str):
            # str(): torch's is a str subclass that pytest-xdist cannot send.
            fw[mod] = str(version)
    device = "cpu"
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                device = f"cuda ({torch.cuda.get_device_name(0)})"
        except Exception:  # a broken CUDA set-up does not stop a save
            pass
    return {**_machine(), "frameworks": fw, "device": device}


def environment_differences(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """The framework, python and device differences worth a note (never a failure)."""
    notes = []
    for key in ("python", "device"):
        if saved.get(key) and now.get(key) and saved[key] != now[key]:
            notes.append(f"{key} {saved[key]} -> {now[key]}")
    a, b = saved.get("frameworks") or {}, now.get("frameworks") or {}
    for mod in sorted(set(a) & set(b)):
        if a[mod] != b[mod]:
            notes.append(f"{mod} {a[mod]} -> {b[mod]}")
    return notes


def savable(result: TestResult) -> bool:
    """A result goes into a baseline when its marked test passed: a known-bad case, a failed
    or skipped test and a mutant are no reference for later runs."""
    # A mutant's record (catalogue.mutate's MutantResult) says "mutant": a key no TestResult
    # has, read through a plain mapping so that such a record is still never saved.
    plain: Mapping[str, object] = result
    return (
        result.get("marker") == "loss_decreases"
        and result.get("outcome") == "passed"
        and not plain.get("mutant")
        and bool(result.get("series"))
    )


def merge(
    doc: dict[str, Any] | None, results: list[TestResult], *, name: str, seed: int,
    update: bool,
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The baseline document after saving ``results`` into ``doc`` (None: a new file).

    A run is keyed by test and seed. A new seed is added beside the saved ones (so a
    multi-seed baseline is built by saving under several ``--losstrend-seed`` values); a
    seed already saved is replaced only with ``update``. Returns the new document and the
    node ids per outcome (``added``, ``replaced``, ``kept``).
    """
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    # The environment the tests ran in: under pytest-xdist the controller that writes the file
    # never imports torch or tensorflow, so the workers' record of it is what counts.
    ran_in = next((r["environment"] for r in results if savable(r) and r.get("environment")),
                  None)
    out: dict[str, Any] = dict(doc) if doc else {"schema": BASELINE_SCHEMA, "name": name,
                                                 "created": now, "tests": {}}
    tests: dict[str, Any] = {k: dict(v) for k, v in out["tests"].items()}
    outcome: dict[str, list[str]] = {"added": [], "replaced": [], "kept": []}
    for r in sorted(results, key=lambda r: r["nodeid"]):
        if not savable(r):
            continue
        key = baseline_key(r["nodeid"])
        entry = tests.setdefault(key, {"runs": []})
        runs = list(entry["runs"])
        run_seed = r.get("seed") if r.get("seed") is not None else seed
        run = {"seed": run_seed, "framework": r.get("framework"), "saved": now,
               "series": {k: s["losses"] for k, s in r["series"].items()}}
        same = [i for i, old in enumerate(runs) if old.get("seed") == run_seed]
        if same and not update:
            outcome["kept"].append(r["nodeid"])
            continue
        if same:
            runs[same[0]] = run
            outcome["replaced"].append(r["nodeid"])
        else:
            runs.append(run)
            outcome["added"].append(r["nodeid"])
        entry["runs"] = sorted(runs, key=lambda x: (x.get("seed") is None, x.get("seed")))
        tests[key] = entry
    out["tests"] = dict(sorted(tests.items()))
    out["updated"] = now
    out["environment"] = ran_in or environment()
    return out, outcome


def write(path: Path, doc: dict[str, Any]) -> Path:
    """Write a baseline atomically, keys sorted, so a committed baseline diffs cleanly; a
    loss that was not finite is written as ``null``."""
    return write_text_atomic(path, _dumps(_null_non_finite(doc)) + "\n")


def _null_non_finite(doc: Any) -> Any:
    # JSON has no NaN or infinity. null (read back as NaN) keeps a curve a list of numbers;
    # the strings "nan"/"inf" earlier versions wrote made it a list of mixed types.
    if isinstance(doc, float) and not math.isfinite(doc):
        return None
    if isinstance(doc, dict):
        return {k: _null_non_finite(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_null_non_finite(v) for v in doc]
    return doc


def _dumps(obj: Any, depth: int = 0) -> str:
    # Indented and key-sorted so that a committed baseline diffs cleanly, but a curve stays
    # on one line (and at float32's 7 digits), or a baseline of 500-step curves would run to
    # thousands of lines.
    pad = " " * (depth + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{pad}{json.dumps(k)}: {_dumps(obj[k], depth + 1)}" for k in sorted(obj)]
        return "{\n" + ",\n".join(items) + "\n" + " " * depth + "}"
    if isinstance(obj, list):
        if all(isinstance(v, (int, float, str)) or v is None for v in obj):
            return "[" + ", ".join(_scalar(v) for v in obj) + "]"
        items = [pad + _dumps(v, depth + 1) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + " " * depth + "]"
    return _scalar(obj)


def _scalar(v: Any) -> str:
    if isinstance(v, float) and not isinstance(v, bool):
        return json.dumps(float(f"{v:.7g}"))
    return json.dumps(v, allow_nan=False)


#: How long a save waits for another session saving the same baseline (seconds).
LOCK_TIMEOUT = 120.0


def lock_path(path: Path) -> Path:
    """The lock file beside a baseline (``NAME.json.lock``); it stays in place, empty."""
    return path.with_name(path.name + ".lock")


def save_runs(
    path: Path, results: list[TestResult], *, name: str, seed: int, update: bool,
    interrupted: bool = False, timeout: float = LOCK_TIMEOUT,
) -> dict[str, Any]:
    """Save the passing marked tests of ``results`` into the baseline file ``path`` (named
    ``name``). Returns what happened, as plain data: the path, the node ids ``added``,
    ``replaced`` and ``kept`` (already saved, not overwritten without ``update``), and
    ``failed`` when the save did not do what was asked. An ``interrupted`` run saves nothing.

    The read, merge and write happen under the baseline's lock file, so that two sessions
    saving at once (say two seeds in parallel CI jobs) each merge into the other's runs. A
    save that cannot be done (the lock held longer than ``timeout`` seconds, the file damaged
    meanwhile, a full disk, a folder made read-only) leaves the file as it was and returns
    ``failed`` with a message naming it; it never raises.
    """
    from filelock import FileLock, Timeout

    out: dict[str, Any] = {"path": str(path), "name": name, "added": [],
                           "replaced": [], "kept": [], "failed": False}
    if interrupted:
        # Half a run is no reference: the baseline stays as it was.
        out["message"] = f"baseline {path} not saved: the run was interrupted"
        return out
    lock = lock_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(lock), timeout=timeout):
            doc = load(path)
            new, outcome = merge(doc, results, name=name, seed=seed, update=update)
            if outcome["added"] or outcome["replaced"]:
                write(path, new)
    except Timeout:
        out.update(failed=True, message=(
            f"baseline {path} not saved: another session held its lock {lock} for more than "
            f"{timeout:g} s (a pytest still saving to it, or a hung one); the baseline was "
            "left as it was: save again when that session is done"))
        return out
    except BaselineError as exc:
        out.update(failed=True, message=f"not saved: {exc}")
        return out
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        out.update(failed=True, message=(
            f"baseline {path} not saved: {where}{exc.strerror or exc}; the baseline was left as "
            "it was"))
        return out
    out.update(outcome)
    out["unsaved"] = sorted(r["nodeid"] for r in results
                            if r.get("marker") == "loss_decreases" and not savable(r))
    if outcome["kept"]:
        out["failed"] = True
    return out

"""Curve baselines: save a run's loss curves under ``.losstrend/`` and gate a later run on them.

A baseline file holds, per test, one or more recorded runs (one per seed). A test compared
against it is judged by gate metrics (``final``, ``auc``, ``steps_to``) whose band is the
envelope of the baseline's runs, widened by the tolerance the gate expression gives. Several
seeds in the baseline make the band as wide as seed noise is, so that a different CI runner
or seed does not make the gate flaky.

Files are JSON with a schema version, written atomically, and saved under a lock
(``NAME.json.lock`` beside the file) so that two sessions saving at once both keep their runs.
Every value the code reads is checked when a file is loaded: a file that is not a baseline, or
a damaged one, is an error naming it and the bad field, and is never rewritten. A loss that was
not finite is stored as ``null``. Nothing is unpickled. Only the pure comparison functions need
numpy; the plugin imports this module on use.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_losstrend._version import __version__
from pytest_losstrend.reports.files import write_text_atomic

BASELINE_SCHEMA = "losstrend-baseline/1"
DEFAULT_NAME = "default"
DEFAULT_DIR = ".losstrend"
METRICS = ("final", "auc", "steps_to")

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# The id that ``loss_decreases(seeds=N)`` adds to a test's node id: the runs of one test
# under several seeds are one baseline entry.
_SEED_ID_RE = re.compile(r"(?:(?<=\[)|-)seed\d+(?=\]|-)")


class BaselineError(Exception):
    """A baseline option or file that cannot be used; the message names it."""


@dataclass(frozen=True)
class Gate:
    """One gate: a metric, its tolerance (a fraction) and, for ``steps_to``, the level."""

    metric: str
    tolerance: float
    level: float | None = None

    @property
    def label(self) -> str:
        """The gate as it was written, e.g. ``final:10%`` or ``steps_to:0.5:20%``."""
        pct = f"{100 * self.tolerance:g}%"
        if self.metric == "steps_to":
            return f"steps_to:{self.level:g}:{pct}"
        return f"{self.metric}:{pct}"


def parse_gates(expr: str) -> list[Gate]:
    """Parse ``--losstrend-compare-fail``: comma-separated ``final:PCT``, ``auc:PCT`` and
    ``steps_to:LEVEL:PCT``; raises :class:`BaselineError` naming the bad part.

    Example::

        >>> parse_gates("final:10%,steps_to:0.5:20%")
        [Gate(metric='final', tolerance=0.1, level=None), Gate(metric='steps_to', ...)]
    """
    gates: list[Gate] = []
    parts = [p.strip() for p in expr.split(",") if p.strip()]
    if not parts:
        raise BaselineError("empty gate expression; expected e.g. final:10%,auc:15%")
    for part in parts:
        fields = part.split(":")
        metric = fields[0].strip().lower()
        if metric not in METRICS:
            raise BaselineError(
                f"unknown gate metric {metric!r} in {part!r}; expected final:PCT, auc:PCT or "
                "steps_to:LEVEL:PCT"
            )
        want = 3 if metric == "steps_to" else 2
        if len(fields) != want:
            form = "steps_to:LEVEL:PCT (e.g. steps_to:0.5:20%)" if want == 3 else f"{metric}:PCT"
            raise BaselineError(f"{part!r}: expected {form}")
        level = None
        if metric == "steps_to":
            try:
                level = float(fields[1])
            except ValueError:
                raise BaselineError(
                    f"{part!r}: LEVEL must be a loss value, got {fields[1]!r}"
                ) from None
            if not math.isfinite(level):
                raise BaselineError(f"{part!r}: LEVEL must be finite")
        raw = fields[-1].strip()
        try:
            pct = float(raw.removesuffix("%"))
        except ValueError:
            raise BaselineError(f"{part!r}: tolerance must be a percentage such as 10%") from None
        if not 0 <= pct <= 1000 or not math.isfinite(pct):
            raise BaselineError(f"{part!r}: tolerance must be from 0% to 1000%")
        gates.append(Gate(metric, pct / 100.0, level))
    return gates


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


# ---------------------------------------------------------------------------------------------
# metrics


def _floats(losses: list[Any]) -> list[float]:
    # A loaded baseline holds floats already (null read back as NaN); None and the legacy
    # strings are accepted here too so that the metrics never depend on where a curve came from.
    return [math.nan if v is None else float(v) for v in losses]


def _tail(y: list[float]) -> list[float]:
    # The verdict's end window: the last fifth, at least 3 points.
    return y[-min(len(y), max(3, len(y) // 5)):]


def final_level(losses: list[Any]) -> float:
    """The curve's end level: the median of its last fifth (at least 3 points), as the
    verdict's ``end``; infinite when the curve went non-finite."""
    y = _floats(losses)
    if not y:
        return math.nan
    if not all(math.isfinite(v) for v in y):
        return math.inf
    return _median(_tail(y))


def auc(losses: list[Any], steps: int | None = None) -> float:
    """The area under the curve per step over the first ``steps`` points (all by default),
    taken on a log scale when every loss is positive: the geometric mean loss.

    On a linear scale the first few steps, often ten times the rest, would decide the area
    and make it swing with the initialisation; on the log scale every step counts alike.
    Per step, so that curves of different lengths compare over a common prefix.
    """
    y = _floats(losses)[: steps if steps is not None else None]
    if not y:
        return math.nan
    if not all(math.isfinite(v) for v in y):
        return math.inf
    if min(y) > 0:
        return math.exp(math.fsum(math.log(v) for v in y) / len(y))
    return math.fsum(y) / len(y)


def steps_to(losses: list[Any], level: float) -> int | None:
    """The first step where the running median (window n/20, at least 3) is at or below
    ``level``, or None if never: one lucky mini-batch does not count as reaching it."""
    y = _floats(losses)
    n = len(y)
    w = min(n, max(3, n // 20))
    for t in range(w - 1, n):
        window = y[t - w + 1 : t + 1]
        if all(math.isfinite(v) for v in window) and _median(window) <= level:
            return t
    return None


def _median(v: list[float]) -> float:
    s = sorted(v)
    m = len(s) // 2
    return s[m] if len(s) % 2 else 0.5 * (s[m - 1] + s[m])


def noise_se(metric: str, losses: list[Any]) -> float:
    """The standard error a curve's own mini-batch noise puts on its ``final`` or ``auc``
    value (0 for ``steps_to`` and for a non-finite curve).

    ``final`` is a median of the last fifth: its error is the tail's robust spread over the
    square root of its length. ``auc`` averages every step: its error comes from the
    step-to-step noise (first differences, robust to the trend) over the square root of the
    length, on the log scale where ``auc`` is taken.
    """
    y = _floats(losses)
    if metric not in ("final", "auc") or len(y) < 3 or not all(math.isfinite(v) for v in y):
        return 0.0
    if metric == "final":
        tail = _tail(y)
        med = _median(tail)
        mad = _median([abs(v - med) for v in tail])
        # 1.4826 * MAD estimates sigma; the median's error is 1.2533 sigma / sqrt(k).
        return 1.2533 * 1.4826 * mad / math.sqrt(len(tail))
    positive = min(y) > 0
    z = [math.log(v) for v in y] if positive else y
    d = [b - a for a, b in itertools.pairwise(z)]
    dm = _median(d)
    sigma = 1.4826 * _median([abs(v - dm) for v in d]) / math.sqrt(2.0)
    se = sigma / math.sqrt(len(y))
    return auc(y) * se if positive else se


#: How many standard errors of curve noise the band allows for (one-sided, about 1 in 40).
NOISE_Z = 2.0


def _limit(lo: float, hi: float, tol: float, noise: float) -> float:
    # A new seed lands above the highest of m saved seeds one time in m + 1, and a curve's
    # value carries its own mini-batch noise: the band's top is first raised by the larger of
    # its own width (the seed spread, extrapolated) and that noise, then by the tolerance
    # (in the loss's own direction, also for losses below zero).
    return hi + max(hi - lo, noise) + tol * abs(hi)


def _fmt(v: float | None) -> str:
    if v is None:
        return "never"
    if isinstance(v, int):
        return str(v)
    return f"{v:.4g}"


def compare_series(
    current: list[Any], runs: list[list[Any]], gates: list[Gate], series: str
) -> list[dict[str, Any]]:
    """Compare one series against the baseline's runs of it, gate by gate.

    Each row gives the metric, the current value, the band (the envelope of the baseline
    runs), the limit (the band's top raised by the larger of the band's width and the curves'
    noise, then by the tolerance), and whether it regressed. Lower is better for every
    metric: an improvement never fails.
    """
    rows: list[dict[str, Any]] = []
    for gate in gates:
        row: dict[str, Any] = {"series": series, "metric": gate.metric, "gate": gate.label,
                               "runs": len(runs)}
        if gate.metric == "final":
            value: float | None = final_level(current)
            base = [final_level(r) for r in runs]
        elif gate.metric == "auc":
            # Over the steps both have: a test that now trains longer is not penalised for
            # the extra low-loss tail, nor rewarded for it.
            common = min(len(current), *(len(r) for r in runs))
            value = auc(current, common)
            base = [auc(r, common) for r in runs]
            row["steps"] = common
        else:
            assert gate.level is not None
            reached = steps_to(current, gate.level)
            value = float(reached) if reached is not None else None
            base_steps = [steps_to(r, gate.level) for r in runs]
            if any(b is None for b in base_steps):
                row.update(value=value, band=None, limit=None, regressed=False,
                           note=f"the baseline does not reach {gate.level:g} in every run")
                rows.append(row)
                continue
            base = [float(b) for b in base_steps if b is not None]
        finite = [b for b in base if math.isfinite(b)]
        if not finite:
            row.update(value=value, band=None, limit=None, regressed=False,
                       note="the baseline has no finite value")
            rows.append(row)
            continue
        lo, hi = min(finite), max(finite)
        ses = [noise_se(gate.metric, r) for r in runs]
        noise = NOISE_Z * math.hypot(noise_se(gate.metric, current), max(ses, default=0.0))
        limit = _limit(lo, hi, gate.tolerance, noise)
        row["noise"] = noise
        # A steps_to level the run never reached is the worst regression of all.
        regressed = value is None or not math.isfinite(value) or value > limit
        row.update(value=value, band=[lo, hi], limit=limit, regressed=regressed)
        rows.append(row)
    return rows


def envelope(runs: list[list[Any]], max_points: int = 200) -> dict[str, list[Any]]:
    """The band the baseline's runs span, step by step (lowest and highest finite loss), over
    the steps every run has: what the HTML report shades behind the current curve.

    Past ``max_points`` steps it is thinned to buckets of consecutive steps, each keeping its
    lowest low and highest high, so the band never narrows and the report stays small.
    """
    m = min((len(r) for r in runs), default=0)
    rows = [_floats(r[:m]) for r in runs]
    steps: list[int] = []
    lo: list[float] = []
    hi: list[float] = []
    size = max(1, math.ceil(m / max_points))
    for start in range(0, m, size):
        vals = [v for r in rows for v in r[start : start + size] if math.isfinite(v)]
        if vals:
            steps.append(min(start + size // 2, m - 1))
            lo.append(float(f"{min(vals):.7g}"))
            hi.append(float(f"{max(vals):.7g}"))
    return {"steps": steps, "lo": lo, "hi": hi}


def describe(row: dict[str, Any]) -> str:
    """One row of a comparison as a sentence with its figures."""
    name = {"final": "final loss", "auc": "auc (geometric mean loss)",
            "steps_to": "steps to"}[row["metric"]]
    if row["metric"] == "steps_to":
        name = f"steps to loss {row['gate'].split(':')[1]}"
    value = row["value"]
    if row.get("band") is None:
        return f"{row['series']} {name}: {_fmt(value)} ({row.get('note', 'not compared')})"
    lo, hi = row["band"]
    band = _fmt(lo) if lo == hi else f"{_fmt(lo)}-{_fmt(hi)}"
    runs = f"{row['runs']} run{'s' if row['runs'] != 1 else ''}"
    if value is None:
        now, where = "never reached", ""
    elif not math.isfinite(value):
        now, where = "not finite", ""
    else:
        now = _fmt(value)
        if value > hi:
            where = f"{100 * (value - hi) / abs(hi):.0f}% above the band; " if hi else ""
        elif value < lo:
            where = f"{100 * (lo - value) / abs(lo):.0f}% below the band; " if lo else ""
        else:
            where = "inside the band; "
    verdict = "REGRESSED" if row["regressed"] else "ok"
    return (f"{row['series']} {name}: {now} vs baseline {band} ({runs}): {where}"
            f"limit {_fmt(row['limit'])} ({row['gate']}): {verdict}")


# ---------------------------------------------------------------------------------------------
# files


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
def _machine() -> dict[str, str]:
    return {"plugin": __version__, "python": platform.python_version(),
            "platform": platform.platform(terse=True), "machine": platform.machine()}


def environment() -> dict[str, Any]:
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


def environment_differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
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


def savable(result: dict[str, Any]) -> bool:
    """A result goes into a baseline when its marked test passed: a known-bad case, a failed
    or skipped test and a mutant are no reference for later runs."""
    return (
        result.get("marker") == "loss_decreases"
        and result.get("outcome") == "passed"
        and not result.get("mutant")
        and bool(result.get("series"))
    )


def merge(
    doc: dict[str, Any] | None, results: list[dict[str, Any]], *, name: str, seed: int,
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


def compare_result(
    result: dict[str, Any], doc: dict[str, Any] | None, path: Path | str, gates: list[Gate],
    display: str, *, full_path: Path | str | None = None, gated: bool = False,
) -> dict[str, Any]:
    """The comparison of one test's result with the baseline, as plain data for the report:
    ``status`` is ``ok``, ``regressed``, ``missing`` (no baseline for this test) or
    ``no_file``; ``rows`` the figures per series and gate; ``message`` the sentence a failing
    test shows, naming ``path``; the report keeps ``full_path`` (default: ``path``)."""
    key = baseline_key(result["nodeid"])
    entry = (doc or {}).get("tests", {}).get(key)
    out: dict[str, Any] = {"name": display, "path": str(full_path or path), "gated": gated}
    if doc is None:
        return {**out, "status": "no_file", "rows": [],
                "message": f"no baseline file {path}: nothing compared"}
    if entry is None or not entry["runs"]:
        return {**out, "status": "missing", "rows": [],
                "message": f"no baseline for {key} in {path} (save one with "
                           f"--losstrend-save={display})"}
    rows: list[dict[str, Any]] = []
    bands: dict[str, Any] = {}
    missing_series = []
    for series, s in result["series"].items():
        runs = [r["series"][series] for r in entry["runs"] if series in r.get("series", {})]
        if not runs:
            missing_series.append(series)
            continue
        rows += compare_series(s["losses"], runs, gates, series)
        bands[series] = envelope(runs)
    seeds = sorted(r.get("seed") for r in entry["runs"] if r.get("seed") is not None)
    regressed = [r for r in rows if r["regressed"]]
    status = "regressed" if regressed else "ok"
    seeds_txt = f", seeds {', '.join(map(str, seeds))}" if seeds else ""
    lines = [describe(r) for r in (regressed or rows)]
    head = ("regressed against" if regressed else "within") + f" baseline {path}{seeds_txt}"
    message = head + (":\n  " + "\n  ".join(lines) if lines else "")
    if missing_series:
        message += f"\n  (not in the baseline: series {', '.join(missing_series)})"
    return {**out, "status": status, "rows": rows, "seeds": seeds, "message": message,
            "envelope": bands}


# ---------------------------------------------------------------------------------------------
# run settings

#: The gates a comparison is shown with when no ``--losstrend-compare-fail`` gates it.
DISPLAY_GATES = "final:10%,auc:10%"


@dataclass
class BaselineSettings:
    """The baseline options of one run, resolved (command line beats ini)."""

    directory: Path
    save: str | None = None
    compare: str | None = None
    gates: tuple[Gate, ...] = ()
    gated: bool = False
    update: bool = False
    #: The baseline compared against, read once at start (None: no such file).
    compare_doc: dict[str, Any] | None = None

    @property
    def active(self) -> bool:
        """Whether this run saves or compares baselines at all."""
        return self.save is not None or self.compare is not None

    def path(self, name: str) -> Path:
        """The file of baseline ``name``."""
        return baseline_path(self.directory, name)

    def display(self, path: Path) -> str:
        """A path as short as the user would write it."""
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)

    def as_plain(self) -> dict[str, Any]:
        """Plain data for pytest-xdist's workerinput."""
        return {"directory": str(self.directory), "save": self.save, "compare": self.compare,
                "gates": ",".join(g.label for g in self.gates), "gated": self.gated,
                "update": self.update}

    @classmethod
    def from_plain(cls, data: dict[str, Any]) -> BaselineSettings:
        """The settings the controller sent to a worker."""
        gates = tuple(parse_gates(data["gates"])) if data["gates"] else ()
        return cls(Path(data["directory"]), data["save"], data["compare"], gates,
                   bool(data["gated"]), bool(data["update"]))

    @classmethod
    def resolve(
        cls, *, directory: Path, save: str | None, compare: str | None, fail: str | None,
        update: bool,
    ) -> BaselineSettings:
        """Check the options against each other; raises :class:`BaselineError`.

        ``--losstrend-compare-fail`` alone compares against the saved baseline of this run's
        name (``--losstrend-save``'s, else ``default``), and ``--losstrend-update`` alone
        saves under the compared name (else ``default``), so neither needs its partner
        spelled out.
        """
        if save is not None:
            check_name(save)
        if compare is not None:
            check_name(compare)
        if fail and compare is None:
            compare = save or DEFAULT_NAME
        if update and save is None:
            save = compare or DEFAULT_NAME
        gates = tuple(parse_gates(fail)) if fail else tuple(parse_gates(DISPLAY_GATES))
        return cls(directory, save, compare, gates, gated=bool(fail), update=update)

    def compare_test(self, data: dict[str, Any]) -> dict[str, Any]:
        """Compare one marked test's result with the baseline: the report's ``baseline``
        entry (its message names the file as the user would write it)."""
        assert self.compare is not None
        path = self.path(self.compare)
        return compare_result(data, self.compare_doc, self.display(path), list(self.gates),
                              self.compare, full_path=path, gated=self.gated)

    def load_files(self) -> None:
        """Read the compared baseline and check the one to be saved into, so that a damaged
        file stops the run before any test trains."""
        if self.compare is not None:
            self.compare_doc = load(self.path(self.compare))
        if self.save is not None and self.save != self.compare:
            load(self.path(self.save))

    def check_writable(self) -> None:
        """When this run saves, check that the baseline folder exists or can be created, and
        can be written, so that a bad folder stops the run before any test trains rather
        than at the end of a green one. Raises :class:`BaselineError` naming the option and
        the path. Nothing is left behind: the probe is removed at once.
        """
        if self.save is None:
            return
        folder = self.directory
        option = "set by --losstrend-baseline-dir or ini losstrend_baseline_dir"
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            what = "is" if existing == folder else f"cannot be created: {existing} is"
            raise BaselineError(f"baseline folder {folder} ({option}) {what} not a directory")
        try:
            # A real write, not os.access: root passes access checks on a read-only mount.
            if existing == folder:
                with tempfile.TemporaryFile(dir=folder, prefix=".losstrend-probe-"):
                    pass
            else:
                Path(tempfile.mkdtemp(dir=existing, prefix=".losstrend-probe-")).rmdir()
        except OSError as exc:
            verb = "cannot be written" if existing == folder else (
                f"cannot be created in {existing}")
            raise BaselineError(
                f"baseline folder {folder} ({option}) {verb}: {exc.strerror or exc}"
            ) from None


#: How long a save waits for another session saving the same baseline (seconds).
LOCK_TIMEOUT = 120.0


def lock_path(path: Path) -> Path:
    """The lock file beside a baseline (``NAME.json.lock``); it stays in place, empty."""
    return path.with_name(path.name + ".lock")


def save_session(
    settings: BaselineSettings, results: list[dict[str, Any]], *, seed: int, exitstatus: int
) -> dict[str, Any]:
    """Save this run's passing marked tests into the baseline ``settings.save`` (controller
    side, once, at the end of the run). Returns what happened, as plain data: the path,
    the node ids ``added``, ``replaced`` and ``kept`` (already saved, not overwritten
    without ``--losstrend-update``), and ``failed`` when the save did not do what was asked.

    The read, merge and write happen under the baseline's lock file, so that two sessions
    saving at once (say two seeds in parallel CI jobs) each merge into the other's runs. A
    save that cannot be done (the lock held too long, the file damaged meanwhile, a full disk,
    a folder made read-only) leaves the file as it was and returns ``failed`` with a message
    naming it; it never raises.
    """
    from filelock import FileLock, Timeout

    assert settings.save is not None
    path = settings.path(settings.save)
    out: dict[str, Any] = {"path": str(path), "name": settings.save, "added": [],
                           "replaced": [], "kept": [], "failed": False}
    if exitstatus == 2:  # pytest.ExitCode.INTERRUPTED
        # Half a run is no reference: the baseline stays as it was.
        out["message"] = f"baseline {path} not saved: the run was interrupted"
        return out
    lock = lock_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(lock), timeout=LOCK_TIMEOUT):
            doc = load(path)
            new, outcome = merge(doc, results, name=settings.save, seed=seed,
                                 update=settings.update)
            if outcome["added"] or outcome["replaced"]:
                write(path, new)
    except Timeout:
        out.update(failed=True, message=(
            f"baseline {path} not saved: another session held its lock {lock} for more than "
            f"{LOCK_TIMEOUT:g} s (a pytest still saving to it, or a hung one); the baseline was "
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

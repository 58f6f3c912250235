"""Curve baselines: save a run's loss curves under ``.losstrend/`` and gate a later run on them.

A baseline file holds, per test, one or more recorded runs (one per seed). A test compared
against it is judged by gate metrics (``final``, ``auc``, ``steps_to``) whose band is the
envelope of the baseline's runs, widened by the tolerance the gate expression gives. Several
seeds in the baseline make the band as wide as seed noise is, so that a different CI runner
or seed does not make the gate flaky.

Three modules, each importing only the ones before it:

- ``baseline_files``: the file format (load and its full check, write, merge, the lock and
  the locked save), the names of baselines and of their entries, the environment a run
  was made in;
- ``baseline_metrics``: the gate expression and the metrics a gate measures on one curve;
- ``baseline`` (this one): the comparison of a test with the baseline (:func:`compare_result`,
  the report's ``baseline`` entry), the run's settings (:class:`BaselineSettings`) and the
  save at the end of a session. Every public name of the other two is importable from here.

:data:`NOISE_Z` and :data:`LOCK_TIMEOUT` are read from this module when used, so that setting
them here (as a benchmark's what-if or a test's short lock wait does) takes effect.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_losstrend.reports.baseline_files import (
    BASELINE_SCHEMA,
    DEFAULT_DIR,
    DEFAULT_NAME,
    LOCK_TIMEOUT,
    BaselineError,
    baseline_key,
    baseline_path,
    check_name,
    environment,
    environment_differences,
    load,
    lock_path,
    merge,
    savable,
    save_runs,
    write,
)
from pytest_losstrend.reports.baseline_metrics import (
    METRICS,
    Gate,
    auc,
    envelope,
    final_level,
    noise_se,
    parse_gates,
    steps_to,
)
from pytest_losstrend.reports.schema import (
    ComparisonNote,
    ComparisonResult,
    ComparisonRow,
    ComparisonSpan,
    Envelope,
    TestRecord,
    TestResult,
)
from pytest_losstrend.reports.schema import ComparisonStatus as Status

__all__ = [
    "BASELINE_SCHEMA",
    "DEFAULT_DIR",
    "DEFAULT_NAME",
    "DISPLAY_GATES",
    "LOCK_TIMEOUT",
    "METRICS",
    "NOISE_Z",
    "BaselineError",
    "BaselineSettings",
    "ComparisonResult",
    "ComparisonRow",
    "Envelope",
    "Gate",
    "auc",
    "baseline_key",
    "baseline_path",
    "check_name",
    "compare_result",
    "compare_series",
    "describe",
    "envelope",
    "environment",
    "environment_differences",
    "final_level",
    "load",
    "lock_path",
    "merge",
    "noise_se",
    "parse_gates",
    "savable",
    "save_session",
    "steps_to",
    "write",
]

# ---------------------------------------------------------------------------------------------
# comparison

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

def _row(
    gate: Gate, series: str, runs: int, span: ComparisonSpan, *, value: float | None,
    band: list[float] | None, limit: float | None, regressed: bool, note: str | None = None,
) -> ComparisonRow:
    # One place builds a row, its keys in the order the JSON report has always shown them.
    tail: ComparisonNote = {} if note is None else {"note": note}
    return {"series": series, "metric": gate.metric, "gate": gate.label, "runs": runs, **span,
            "value": value, "band": band, "limit": limit, "regressed": regressed, **tail}


def compare_series(
    current: list[Any], runs: list[list[Any]], gates: list[Gate], series: str
) -> list[ComparisonRow]:
    """Compare one series against the baseline's runs of it, gate by gate.

    Each row gives the metric, the current value, the band (the envelope of the baseline
    runs), the limit (the band's top raised by the larger of the band's width and the curves'
    noise, then by the tolerance), and whether it regressed. Lower is better for every
    metric: an improvement never fails.
    """
    rows: list[ComparisonRow] = []
    for gate in gates:
        span: ComparisonSpan = {}
        if gate.metric == "final":
            value: float | None = final_level(current)
            base = [final_level(r) for r in runs]
        elif gate.metric == "auc":
            # Over the steps both have: a test that now trains longer is not penalised for
            # the extra low-loss tail, nor rewarded for it.
            common = min(len(current), *(len(r) for r in runs))
            value = auc(current, common)
            base = [auc(r, common) for r in runs]
            span["steps"] = common
        else:
            assert gate.level is not None
            reached = steps_to(current, gate.level)
            value = float(reached) if reached is not None else None
            base_steps = [steps_to(r, gate.level) for r in runs]
            if any(b is None for b in base_steps):
                rows.append(_row(gate, series, len(runs), span, value=value, band=None,
                                 limit=None, regressed=False,
                                 note=f"the baseline does not reach {gate.level:g} in every run"))
                continue
            base = [float(b) for b in base_steps if b is not None]
        finite = [b for b in base if math.isfinite(b)]
        if not finite:
            rows.append(_row(gate, series, len(runs), span, value=value, band=None, limit=None,
                             regressed=False, note="the baseline has no finite value"))
            continue
        lo, hi = min(finite), max(finite)
        ses = [noise_se(gate.metric, r) for r in runs]
        noise = NOISE_Z * math.hypot(noise_se(gate.metric, current), max(ses, default=0.0))
        limit = _limit(lo, hi, gate.tolerance, noise)
        span["noise"] = noise
        # A steps_to level the run never reached is the worst regression of all.
        regressed = value is None or not math.isfinite(value) or value > limit
        rows.append(_row(gate, series, len(runs), span, value=value, band=[lo, hi], limit=limit,
                         regressed=regressed))
    return rows


def describe(row: ComparisonRow) -> str:
    """One row of a comparison as a sentence with its figures."""
    name = {"final": "final loss", "auc": "auc (geometric mean loss)",
            "steps_to": "steps to"}[row["metric"]]
    if row["metric"] == "steps_to":
        name = f"steps to loss {row['gate'].split(':')[1]}"
    value = row["value"]
    bounds = row.get("band")
    if bounds is None:
        return f"{row['series']} {name}: {_fmt(value)} ({row.get('note', 'not compared')})"
    lo, hi = bounds
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


def compare_result(
    result: TestRecord, doc: dict[str, Any] | None, path: Path | str, gates: list[Gate],
    display: str, *, full_path: Path | str | None = None, gated: bool = False,
) -> ComparisonResult:
    """The comparison of one test's result with the baseline, as plain data for the report:
    ``status`` is ``ok``, ``regressed``, ``missing`` (no baseline for this test) or
    ``no_file``; ``rows`` the figures per series and gate; ``message`` the sentence a failing
    test shows, naming ``path``; the report keeps ``full_path`` (default: ``path``)."""
    key = baseline_key(result["nodeid"])
    entry = (doc or {}).get("tests", {}).get(key)
    where = str(full_path or path)
    if doc is None:
        return {"name": display, "path": where, "gated": gated, "status": "no_file", "rows": [],
                "message": f"no baseline file {path}: nothing compared"}
    if entry is None or not entry["runs"]:
        return {"name": display, "path": where, "gated": gated, "status": "missing", "rows": [],
                "message": f"no baseline for {key} in {path} (save one with "
                           f"--losstrend-save={display})"}
    rows: list[ComparisonRow] = []
    bands: dict[str, Envelope] = {}
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
    status: Status = "regressed" if regressed else "ok"
    seeds_txt = f", seeds {', '.join(map(str, seeds))}" if seeds else ""
    lines = [describe(r) for r in (regressed or rows)]
    head = ("regressed against" if regressed else "within") + f" baseline {path}{seeds_txt}"
    message = head + (":\n  " + "\n  ".join(lines) if lines else "")
    if missing_series:
        message += f"\n  (not in the baseline: series {', '.join(missing_series)})"
    return {"name": display, "path": where, "gated": gated, "status": status, "rows": rows,
            "seeds": seeds, "message": message, "envelope": bands}


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

    def compare_test(self, data: TestRecord) -> ComparisonResult:
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

def save_session(
    settings: BaselineSettings, results: list[TestResult], *, seed: int, exitstatus: int
) -> dict[str, Any]:
    """Save this run's passing marked tests into the baseline ``settings.save`` (controller
    side, once, at the end of the run): :func:`save_runs` under the lock, which never raises.
    Returns what happened, as plain data: the path, the node ids ``added``, ``replaced`` and
    ``kept`` (already saved, not overwritten without ``--losstrend-update``), and ``failed``
    when the save did not do what was asked. An interrupted run saves nothing.
    """
    assert settings.save is not None
    # LOCK_TIMEOUT is passed from this module's namespace, not left to save_runs' default,
    # so that a change to pytest_losstrend.reports.baseline.LOCK_TIMEOUT takes effect.
    return save_runs(
        settings.path(settings.save), results, name=settings.save, seed=seed,
        update=settings.update, interrupted=exitstatus == 2,  # pytest.ExitCode.INTERRUPTED
        timeout=LOCK_TIMEOUT,
    )

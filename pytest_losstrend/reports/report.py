"""Loss-trend reports rendered from the plain-data results (terminal table and JSON)."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any, Final

from pytest_losstrend.diagnosis.messages import sparkline
from pytest_losstrend.reports.baseline import describe, environment_differences
from pytest_losstrend.reports.files import write_json_atomic, write_text_atomic
from pytest_losstrend.reports.rows import (
    _g,
    _plural,
    invariant_state,
    invariant_summary,
    outcome_counts,
    score_line,
    series_rows,
)
from pytest_losstrend.reports.schema import ReportDoc, TestResult

SCHEMA: Final = "losstrend-report/1"
#: Below this many saved seeds a baseline comparison says its band may be too narrow.
MIN_BASELINE_SEEDS = 3
#: The JSON Schema of the report document, shipped in the package.
SCHEMA_PATH = Path(__file__).parent.parent / "schemas" / "losstrend-report-1.schema.json"


def report_document(seed: int, results: list[TestResult]) -> ReportDoc:
    """The JSON report document (schema ``losstrend-report/1``)."""
    tests = sorted(results, key=lambda r: r["nodeid"])
    return {"schema": SCHEMA, "seed": seed, "tests": tests}


def _finite_json(doc: Any) -> Any:
    # JSON has no NaN or infinity; a diverged loss is written as the strings "nan"/"inf".
    if isinstance(doc, float):
        if math.isnan(doc):
            return "nan"
        if doc in (float("inf"), float("-inf")):
            return "inf" if doc > 0 else "-inf"
        return doc
    if isinstance(doc, dict):
        return {k: _finite_json(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_finite_json(v) for v in doc]
    return doc


def elide_middle(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters by replacing its middle with "…".

    A node id keeps its file name and its test name, the parts that tell rows apart: the
    folders go first, then the class, then the middle of what is left.
    """
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    path, sep, rest = text.partition("::")
    if sep:
        name = rest.rsplit("::", 1)[-1]
        base = path.rsplit("/", 1)[-1]
        for short in (f"…/{base}::{rest}", f"…/{base}::…::{name}" if "::" in rest else "",
                      f"{base}::{rest}", f"{base}::…::{name}" if "::" in rest else ""):
            if short and len(short) <= width and short != text:
                return short
        text = f"{base}::{name}"
        if len(text) <= width:
            return text
    # The whole file name while 12 characters are left for the end of the test name (with
    # its parameters, which tell tests apart more often than its start).
    name = text.rsplit("::", 1)[-1]
    head = min(len(path.rsplit("/", 1)[-1]) + len(sep), width - 1 - min(len(name), 12))
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def _distinct_labels(ids: list[str], width: int) -> dict[str, str]:
    """Each id elided to ``width``; ids that would then read alike show, instead of their
    start, the part where they differ (a folder, say), still ending in their test name."""
    labels = {i: elide_middle(i, width) for i in ids}
    by_label: dict[str, list[str]] = {}
    for i, lab in labels.items():
        by_label.setdefault(lab, []).append(i)
    for group in by_label.values():
        if len(group) < 2:
            continue
        for i in group:
            lo = max(_common_prefix(i, o) for o in group if o != i)
            labels[i] = _window(i, width, lo)
    return labels


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _window(text: str, width: int, lo: int) -> str:
    """``text`` cut to ``width``, keeping the end of its test name and the character ``lo``
    (where it differs from an id it would be confused with), "…" for what is left out."""
    if len(text) <= width:
        return text
    if width < 5:
        return text[lo:lo + width]
    tail = min(len(text.rsplit("::", 1)[-1]), (width - 1) // 2, len(text) - lo - 1)
    room = width - 1 - max(tail, 0)
    end = text[len(text) - tail:] if tail > 0 else ""
    if lo + 8 <= room:
        # The difference and a little of what follows it fit in a plain start.
        return text[:room] + "…" + end
    span = room - 1
    # Start the window at the folder or name holding the difference, when that fits.
    start = text.rfind("/", 0, lo) + 1
    if start <= lo - span:
        start = lo - span // 2
    return "…" + text[start:start + span] + "…" + end


#: The terminal table's columns, and the order in which they are left out when it does not fit.
_TERM_HEAD = ("test", "series", "steps", "start -> end", "drop", "verdict", "outcome",
              "reruns", "why", "curve")
_TERM_DROP_ORDER = ("curve", "start -> end", "steps", "drop", "why", "reruns", "series")
#: The narrowest the test column gets before another column is left out: room for a file
#: name and most of a test name.
_MIN_TEST_WIDTH = 40


def term_lines(results: list[TestResult], width: int = 100) -> list[str]:
    """The terminal table, one row per test and series, fitted to ``width`` columns.

    Columns: test, series, steps, start -> end, drop, verdict (the loss check), outcome
    (pytest's, e.g. FAILED when the body raised after a good curve, XFAIL for a
    ``loss_fails`` case), reruns (only when pytest-rerunfailures reran a test), why (top
    cause), curve (a sparkline). When the row does not fit, the test id is elided in its
    middle (keeping file and test name) down to 40 characters; below that, columns are left
    out in this order: curve, start -> end, steps, drop, why, reruns, series. The test, the
    verdict and the outcome always stay (a judged verdict is in capitals, an informational
    series' in lower case, which tells a test's rows apart once the series column is gone);
    ids that would read alike show the part where they differ.
    """
    if not results:
        return ["no test recorded a loss"]
    rows: list[dict[str, str]] = []
    curves: list[list[Any]] = []
    for r in sorted(results, key=lambda r: r["nodeid"]):
        for sr in series_rows(r):
            curves.append(sr["losses"])
            rows.append({
                "test": r["nodeid"], "series": sr["series"], "steps": str(sr["steps"]),
                "start -> end": f"{sr['start']} -> {sr['end']}", "drop": sr["drop"],
                "verdict": sr["status"], "outcome": sr["outcome"],
                "reruns": str(sr["reruns"]) if sr["reruns"] else "", "why": str(sr["why"]),
                "curve": "",
            })
    if not rows:
        return ["no test recorded a loss"]
    columns = [c for c in _TERM_HEAD
               if c != "reruns" or any(row["reruns"] for row in rows)]
    spark_w = 24 if width >= 120 else 16
    longest_id = max(len(row["test"]) for row in rows)

    def col_width(c: str) -> int:
        if c == "curve":
            return spark_w
        return max(len(c), *(len(row[c]) for row in rows))

    def test_room(cols: list[str]) -> int:
        return width - sum(col_width(c) for c in cols if c != "test") - 2 * (len(cols) - 1)

    for drop in _TERM_DROP_ORDER:
        if test_room(columns) >= min(longest_id, _MIN_TEST_WIDTH):
            break
        if drop in columns:
            columns.remove(drop)
    test_w = max(1, min(longest_id, test_room(columns)))
    labels = _distinct_labels(list(dict.fromkeys(row["test"] for row in rows)), test_w)
    widths = {c: (test_w if c == "test" else col_width(c)) for c in columns}

    def line(cells: dict[str, str]) -> str:
        out = [cells[c].ljust(widths[c]) for c in columns]
        text = "  ".join(out).rstrip()
        # Only when even the verdict and outcome do not fit (a very narrow terminal).
        return text if len(text) <= width else text[: max(0, width - 1)] + "…"

    lines = [line({c: c for c in columns})]
    for row, losses in zip(rows, curves, strict=True):
        cells = dict(row, test=labels[row["test"]])
        if "curve" in columns:
            cells["curve"] = sparkline(losses, spark_w)
        lines.append(line(cells))
    for r in sorted(results, key=lambda r: r["nodeid"]):
        summary = invariant_summary(r)
        if summary is not None:
            lines += textwrap.wrap(f"invariants: {r['nodeid']}: {summary}", max(width, 20),
                                   subsequent_indent="  ", break_on_hyphens=False)
    for r in sorted(results, key=lambda r: r["nodeid"]):
        for note in r.get("warnings") or []:
            lines += textwrap.wrap(f"warning: {r['nodeid']}: {note}", max(width, 20),
                                   subsequent_indent="  ", break_on_hyphens=False)
    return lines


def mutation_lines(results: list[TestResult]) -> list[str]:
    """One line per mutated test: its mutation score and the mutants it missed."""
    lines = []
    for r in sorted(results, key=lambda r: r["nodeid"]):
        line = score_line(r)
        if line is not None:
            lines.append(f"{r['nodeid']}: {line}")
    return lines


def write_term(terminalreporter: Any, seed: int, results: list[TestResult]) -> None:
    """The terminal report, into the pytest summary, fitted to the terminal's width."""
    tests = len({r["nodeid"] for r in results})
    counts = outcome_counts(results)
    terminalreporter.write_sep(
        "=", f"loss trends: {_plural(tests, 'test')}{f' ({counts})' if counts else ''}, "
        f"seed {seed}")
    for ln in term_lines(results, terminalreporter._tw.fullwidth):
        terminalreporter.write_line(ln)
    for ln in mutation_lines(results):
        terminalreporter.write_line(ln)


def final_document(seed: int, results: list[TestResult]) -> ReportDoc:
    """The finished report document as plain JSON-able data (what the sink hook receives):
    a loss that is not finite is the string ``"nan"``, ``"inf"`` or ``"-inf"`` in it (see
    :mod:`pytest_losstrend.reports.schema`)."""
    doc: ReportDoc = _finite_json(report_document(seed, results))
    return doc


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_report(doc: ReportDoc) -> str:
    """A Markdown summary of the report document, sized for a CI job summary.

    The tests are counted by outcome as pytest counts them (a ``loss_fails`` case that failed
    as expected is xfailed); the table shows each series' verdict beside the test's outcome
    (and, when any series was judged against one, its reference level: the loss of the best
    constant predictor), and every failed test is listed under "Failing" with why.
    """
    tests = doc["tests"]
    counts = outcome_counts(tests)
    rerun = any(t.get("reruns") for t in tests)
    # The reference level (the loss of the best constant predictor) where one applied.
    referenced = any(s.get("reference") for t in tests for s in t["series"].values())
    # The training invariants, where any test's run was watched.
    checked = any(t.get("invariants") for t in tests)
    head = ["test", "series", "steps", "start → end", *(["reference"] if referenced else []),
            "drop", "verdict", "outcome", *(["reruns"] if rerun else []), "top cause",
            *(["invariants"] if checked else []), "curve"]
    lines = [
        "## Loss trends",
        "",
        f"{_plural(len(tests), 'test')} (seed {doc['seed']}){': ' + counts if counts else ''}.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for t in tests:
        for row in series_rows(t):
            reruns = [str(row["reruns"] or "")] if rerun else []
            reference = [row["reference"]] if referenced else []
            lines.append("| " + " | ".join([
                f"`{_md_cell(t['nodeid'])}`", _md_cell(row["series"]), str(row["steps"]),
                f"{row['start']} → {row['end']}", *reference, row["drop"], row["status"],
                row["outcome"],
                *reruns, _md_cell(row["why"]),
                *([_md_cell(invariant_summary(t) or "-")] if checked else []),
                sparkline(row["losses"], 24),
            ]) + " |")
    failing = [t for t in tests if t.get("outcome") == "failed"]
    if failing:
        lines += ["", "### Failing", ""]
        for t in failing:
            verdict = t.get("verdict")
            reason = _md_cell(verdict.get("reason", "") if verdict else "")
            diagnosed = False
            if t.get("marker") == "loss_fails" and verdict:
                if verdict.get("status") == "fail":
                    diagnoses = t.get("diagnoses") or []
                    top = diagnoses[0].get("cause", "none") if diagnoses else "none"
                    why = ("loss_fails: the loss check failed as expected, but the test failed "
                           f"(top cause {top}; see pytest's output)")
                else:
                    what = "passed" if verdict.get("ok") else "was inconclusive"
                    why = f"loss_fails: expected the loss check to fail, but it {what}: {reason}"
            elif verdict and not verdict.get("ok"):
                why, diagnosed = reason, True
            elif verdict:
                why = "the loss check passed, but the test failed on its own (see pytest's output)"
            else:
                why = "the test failed (see pytest's output)"
            broken = [i for i in t.get("invariants") or [] if invariant_state(i) == "broken"]
            if broken and t.get("marker") != "loss_fails":
                names = ", ".join(i["name"] for i in broken)
                why = f"training invariant broken: {names}" + (
                    f" (and the loss check: {reason})" if verdict and not verdict.get("ok")
                    else "")
            lines.append(f"- `{_md_cell(t['nodeid'])}`: {why}")
            for i in broken:
                lines.append(f"  - **{i['name']}**: {_md_cell(i['evidence'])}")
            if diagnosed:
                for d in t["diagnoses"][:2]:
                    lines.append(f"  - **{d['cause']}** ({d['confidence']:.2f}): "
                                 f"{_md_cell(d['evidence'])}. Fix: {_md_cell(d['fix'])}")
    warned = [t for t in tests if t.get("warnings")]
    if warned:
        # A passing test's warnings are what a job summary reader would otherwise never see.
        lines += ["", "### Warnings", ""]
        for t in warned:
            lines += [f"- `{_md_cell(t['nodeid'])}`: {_md_cell(w)}" for w in t["warnings"]]
    lines += _markdown_baseline(tests)
    return "\n".join(lines) + "\n"


def _markdown_baseline(tests: list[TestResult]) -> list[str]:
    """The baseline comparison for the job summary: counts, then every regressed figure."""
    compared = [t for t in tests if t.get("baseline")]
    if not compared:
        return []
    first = compared[0]["baseline"]
    statuses = [t["baseline"]["status"] for t in compared]
    counts = ", ".join(f"{statuses.count(s)} {s}" for s in ("ok", "regressed", "missing", "no_file")
                       if statuses.count(s))
    gated = "gated" if first.get("gated") else "not gated"
    if all(s == "no_file" for s in statuses):
        # Say it plainly: a gate with nothing to compare against passes everything.
        return ["", "### Baseline", "",
                f"**No baseline file** `{_md_cell(first['path'])}`: nothing was compared. Save "
                f"one with `--losstrend-save={_md_cell(first['name'])}`."]
    lines = ["", "### Baseline", "",
             f"Compared with `{_md_cell(first['name'])}` ({gated}): {counts}."]
    rows = [(t, r) for t in compared for r in t["baseline"]["rows"] if r["regressed"]]
    if rows:
        lines += ["", "| test | series | gate | now | baseline band | limit |",
                  "|---|---|---|---|---|---|"]
        for t, r in rows:
            band: list[float] | list[str] = r["band"] or ["-", "-"]
            lines.append(f"| `{_md_cell(t['nodeid'])}` | {r['series']} | {r['gate']} | "
                         f"**{_g(r['value']) if r['value'] is not None else 'never'}** | "
                         f"{_g(band[0])} – {_g(band[1])} | {_g(r['limit'])} |")
    missing = [t["nodeid"] for t in compared if t["baseline"]["status"] == "missing"]
    if missing:
        lines += ["", "No baseline yet: " + ", ".join(f"`{_md_cell(m)}`" for m in missing)]
    return lines


def write_files(
    doc: ReportDoc, reports: list[tuple[str, str | None]]
) -> tuple[list[tuple[str, Path]], list[tuple[str, str, str]]]:
    """Write the requested file reports (json, html, md) from the finished document.

    Returns each written format's name and path, and each failed one's name, path and error:
    one writer failing (a full disk, a folder removed during the run) never stops the others.
    """
    names = {"json": "JSON", "html": "HTML", "md": "Markdown"}
    written: list[tuple[str, Path]] = []
    failed: list[tuple[str, str, str]] = []
    for fmt, path in reports:
        if path is None or fmt not in names:
            continue
        try:
            if fmt == "json":
                written.append((names[fmt], write_json_atomic(path, doc)))
            elif fmt == "html":
                from pytest_losstrend.reports.html import html_report

                written.append((names[fmt], write_text_atomic(path, html_report(doc))))
            else:
                written.append((names[fmt], write_text_atomic(path, markdown_report(doc))))
        except Exception as exc:  # reported, and the session fails; the rest still written
            failed.append((names[fmt], path, f"{type(exc).__name__}: {exc}"))
    return written, failed


def baseline_lines(
    settings: Any, results: list[TestResult], saved: dict[str, Any] | None
) -> list[tuple[str, bool]]:
    """The terminal lines of the baseline comparison and save, each with whether it is an
    error (shown red)."""
    lines: list[tuple[str, bool]] = []
    compared = [r for r in sorted(results, key=lambda r: r["nodeid"]) if r.get("baseline")]
    if settings.compare is not None:
        path = settings.display(settings.path(settings.compare))
        if settings.compare_doc is None:
            lines.append((f"no baseline file {path}: nothing compared (save one with "
                          f"--losstrend-save={settings.compare})", False))
        else:
            by = {s: [r for r in compared if r["baseline"]["status"] == s]
                  for s in ("ok", "regressed", "missing")}
            gates = ",".join(g.label for g in settings.gates)
            mode = f"gate {gates}" if settings.gated else f"shown with {gates}, not gated"
            counts = ", ".join(f"{len(v)} {k}" for k, v in by.items() if v) or "no marked test"
            lines.append((f"compared with {path} ({mode}): {counts}", False))
            now = next((r["environment"] for r in compared if r.get("environment")), None)
            diffs = environment_differences(settings.compare_doc.get("environment") or {},
                                            now or {})
            if diffs:
                lines.append((f"  the baseline was saved on another set-up ({', '.join(diffs)}):"
                              " compared all the same; re-save it if the curves moved", False))
            few = [r for r in compared if r["baseline"]["status"] in ("ok", "regressed")
                   and len(r["baseline"].get("seeds") or []) < MIN_BASELINE_SEEDS]
            if few:
                # A 1-seed band knows nothing of the spread between seeds: the gate false-
                # alarmed on 8% of reruns against one seed, 0% against five (benchmarks/).
                lines.append((
                    f"  {_plural(len(few), 'test')} compared with fewer than "
                    f"{MIN_BASELINE_SEEDS} saved seeds: the band does not know the spread "
                    "between seeds (save more with --losstrend-save --losstrend-seed=N)", False))
            for r in by["regressed"]:
                comp = r["baseline"]
                rows = [row for row in comp["rows"] if row["regressed"]]
                for row in rows:
                    lines.append((f"  {r['nodeid']}: {describe(row)}", bool(settings.gated)))
            for r in by["missing"]:
                lines.append((f"  {r['nodeid']}: no baseline", False))
    if saved is not None:
        path = settings.display(Path(saved["path"]))
        if saved.get("message"):
            lines.append((saved["message"], bool(saved["failed"])))
        else:
            parts = [f"{_plural(len(saved[k]), 'test')} {k}" for k in ("added", "replaced")
                     if saved[k]]
            lines.append((f"baseline {path}: {', '.join(parts) or 'nothing saved'}", False))
            if saved["kept"]:
                lines.append((
                    f"baseline {path}: {_plural(len(saved['kept']), 'test')} already saved for "
                    "this seed, not overwritten (add --losstrend-update to replace them): "
                    + ", ".join(saved["kept"]), True))
            if saved.get("unsaved"):
                lines.append((f"not saved (the test did not pass): "
                              f"{', '.join(saved['unsaved'])}", False))
    return lines

"""Loss-trend reports rendered from the plain-data results (terminal table and JSON)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from .render import sparkline

SCHEMA = "losstrend-report/1"
#: Below this many saved seeds a baseline comparison says its band may be too narrow.
MIN_BASELINE_SEEDS = 3
#: The JSON Schema of the report document, shipped in the package.
SCHEMA_PATH = Path(__file__).with_name("schemas") / "losstrend-report-1.schema.json"


def report_document(seed: int, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON report document (schema ``losstrend-report/1``)."""
    tests = sorted(results, key=lambda r: r["nodeid"])
    return {"schema": SCHEMA, "seed": seed, "tests": tests}


def write_json_atomic(path: str | os.PathLike[str], doc: Any) -> Path:
    """Write ``doc`` as JSON to ``path`` through a temporary file and a rename."""
    # No indent: with one, every loss takes a line and json falls back to its pure-Python
    # encoder (165 ms against 84 ms for 200 tests x 500 steps, and 22% larger).
    text = json.dumps(doc, allow_nan=False, default=_json_default) + "\n"
    return write_text_atomic(path, text)


def _json_default(obj: Any) -> Any:
    return str(obj)


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


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _g(v: Any) -> str:
    # + 0: a loss of -0.0 reads "0", not "-0".
    return f"{v + 0:.3g}" if isinstance(v, (int, float)) else "-"


def _drop(drop: Any) -> str:
    if not isinstance(drop, float):
        return "-"
    # A many-fold rise reads better as a factor than as a -1e9% drop.
    return f"{100 * drop:.0f}%" if drop > -1.0 else f"x{1.0 - drop:.3g}"


def series_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per recorded series of a test: what the terminal and Markdown tables show."""
    rows = []
    for name, s in result["series"].items():
        v = s["verdict"]
        st = v.get("stats", {})
        judged = result["criteria"].get("series") == name and result.get("verdict") is not None
        # The judged series' verdict in capitals; the others are shown for information.
        status = v["status"].upper() if judged else v["status"]
        if judged and result.get("marker") == "loss_fails" and v["status"] == "fail":
            # A known-bad configuration failing as it should: pytest's word for it.
            status = "XFAIL"
        diagnoses = result.get("diagnoses") or []
        why = diagnoses[0]["cause"] if judged and diagnoses else v.get("kind", "")
        comp = result.get("baseline") or {}
        gated = [r["metric"] for r in comp.get("rows", [])
                 if r["series"] == name and r["regressed"]] if comp.get("gated") else []
        if gated:
            # The curve may pass on its own; the baseline gate is what failed the test.
            status, why = "REGRESSED", "baseline " + ",".join(dict.fromkeys(gated))
        rows.append({
            "series": name, "steps": len(s["losses"]), "start": _g(st.get("start")),
            "end": _g(st.get("end")), "drop": _drop(st.get("drop")), "status": status,
            "why": why, "losses": s["losses"],
        })
    return rows


def term_lines(results: list[dict[str, Any]], width: int = 100) -> list[str]:
    """The terminal table: one row per test and series."""
    rows: list[tuple[Any, ...]] = []
    for r in sorted(results, key=lambda r: r["nodeid"]):
        for sr in series_rows(r):
            rows.append((
                r["nodeid"].rsplit("/", 1)[-1], sr["series"], str(sr["steps"]),
                f"{sr['start']} -> {sr['end']}", sr["drop"], sr["status"], sr["why"],
                sr["losses"],
            ))
    if not rows:
        return ["no test recorded a loss"]
    head = ("test", "series", "steps", "start -> end", "drop", "verdict", "why")
    fixed = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head) if i > 0]
    spark_w = 24 if width >= 120 else 16
    test_w = max(24, min(max(len(r[0]) for r in rows), width - sum(fixed) - 2 * 7 - spark_w))
    widths = [test_w, *fixed]

    def line(cells: tuple[str, ...], spark: str) -> str:
        out = []
        for c, w in zip(cells, widths, strict=False):
            # Keep the end of a long node id: the test name matters more than its folder.
            out.append(c if len(c) <= w else "…" + c[-(w - 1):])
            out[-1] = out[-1].ljust(w)
        return "  ".join([*out, spark]).rstrip()

    lines = [line(head, "curve")]
    for cells in rows:
        lines.append(line(cells[:7], sparkline(cells[7], spark_w)))
    for r in sorted(results, key=lambda r: r["nodeid"]):
        for note in r.get("warnings") or []:
            lines.append(f"warning: {r['nodeid']}: {note}")
    return lines


def mutation_lines(results: list[dict[str, Any]]) -> list[str]:
    """One line per mutated test: its mutation score and the mutants it missed."""
    from .mutate import score_line

    lines = []
    for r in sorted(results, key=lambda r: r["nodeid"]):
        line = score_line(r)
        if line is not None:
            lines.append(f"{r['nodeid']}: {line}")
    return lines


def write_term(terminalreporter: Any, seed: int, results: list[dict[str, Any]]) -> None:
    """The terminal report, into the pytest summary."""
    tests = len({r["nodeid"] for r in results})
    terminalreporter.write_sep("=", f"loss trends: {_plural(tests, 'test')}, seed {seed}")
    for ln in term_lines(results, terminalreporter._tw.fullwidth):
        terminalreporter.write_line(ln)
    for ln in mutation_lines(results):
        terminalreporter.write_line(ln)


def final_document(seed: int, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The finished report document as plain JSON-able data (what the sink hook receives)."""
    doc: dict[str, Any] = _finite_json(report_document(seed, results))
    return doc


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        # mkstemp makes the file private (0600); a report or baseline gets the usual mode.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_report(doc: dict[str, Any]) -> str:
    """A Markdown summary of the report document, sized for a CI job summary."""
    tests = doc["tests"]
    statuses = [t["verdict"]["status"] for t in tests if t.get("verdict")]
    counts = ", ".join(f"{statuses.count(s)} {s}" for s in ("pass", "fail", "inconclusive")
                       if statuses.count(s))
    lines = [
        "## Loss trends",
        "",
        f"{_plural(len(tests), 'test')} (seed {doc['seed']}){': ' + counts if counts else ''}.",
        "",
        "| test | series | steps | start → end | drop | verdict | top cause | curve |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in tests:
        for row in series_rows(t):
            lines.append(
                f"| `{_md_cell(t['nodeid'])}` | {row['series']} | {row['steps']} | "
                f"{row['start']} → {row['end']} | {row['drop']} | {row['status']} | "
                f"{_md_cell(row['why'])} | {sparkline(row['losses'], 24)} |"
            )
    failing = [t for t in tests if t.get("verdict") and t["verdict"]["status"] == "fail"
               and t.get("marker") != "loss_fails"]
    if failing:
        lines += ["", "### Failing", ""]
        for t in failing:
            lines.append(f"- `{_md_cell(t['nodeid'])}`: {_md_cell(t['verdict']['reason'])}")
            for d in t["diagnoses"][:2]:
                lines.append(f"  - **{d['cause']}** ({d['confidence']:.2f}): "
                             f"{_md_cell(d['evidence'])}. Fix: {_md_cell(d['fix'])}")
    lines += _markdown_baseline(tests)
    return "\n".join(lines) + "\n"


def _markdown_baseline(tests: list[dict[str, Any]]) -> list[str]:
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
            band = r["band"] or ["-", "-"]
            lines.append(f"| `{_md_cell(t['nodeid'])}` | {r['series']} | {r['gate']} | "
                         f"**{_g(r['value']) if r['value'] is not None else 'never'}** | "
                         f"{_g(band[0])} – {_g(band[1])} | {_g(r['limit'])} |")
    missing = [t["nodeid"] for t in compared if t["baseline"]["status"] == "missing"]
    if missing:
        lines += ["", "No baseline yet: " + ", ".join(f"`{_md_cell(m)}`" for m in missing)]
    return lines


def write_files(
    doc: dict[str, Any], reports: list[tuple[str, str | None]]
) -> list[tuple[str, Path]]:
    """Write the requested file reports (json, html, md) from the finished document; returns each
    format's name and the path written."""
    written: list[tuple[str, Path]] = []
    for fmt, path in reports:
        if path is None:
            continue
        if fmt == "json":
            written.append(("JSON", write_json_atomic(path, doc)))
        elif fmt == "html":
            from .html import html_report

            written.append(("HTML", write_text_atomic(path, html_report(doc))))
        elif fmt == "md":
            written.append(("Markdown", write_text_atomic(path, markdown_report(doc))))
    return written


def baseline_lines(
    settings: Any, results: list[dict[str, Any]], saved: dict[str, Any] | None
) -> list[tuple[str, bool]]:
    """The terminal lines of the baseline comparison and save, each with whether it is an
    error (shown red)."""
    from .baseline import describe, environment_differences

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

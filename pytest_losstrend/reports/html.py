"""The HTML report: one self-contained page with a summary table and an SVG chart per series.

Rendered from the plain report document alone (``losstrend-report/1``, what the
``pytest_losstrend_report`` hook receives), in pure Python: no numpy, no JavaScript, and no
reference to anything outside the file, so it can be archived as a CI artifact and opened
offline.

The page, its tables and cards are here; each series' SVG chart is drawn by
:mod:`pytest_losstrend.reports.html_chart`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_losstrend.reports.html_chart import chart_svg
from pytest_losstrend.reports.html_chart import esc as _e
from pytest_losstrend.reports.rows import (
    OUTCOMES,
    _plural,
    invariant_state,
    invariant_summary,
    outcome_word,
    score_line,
    series_rows,
)
from pytest_losstrend.reports.schema import (
    ComparisonResult,
    Envelope,
    ReportDoc,
    SeriesResult,
    TestResult,
)

_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica,
  Arial, sans-serif; color: #1f2328; background: #f6f8fa; }
header, main, footer { max-width: 1180px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 18px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 0 0 8px; overflow-wrap: anywhere; }
h3 { font-size: 14px; margin: 14px 0 6px; text-transform: uppercase; letter-spacing: .04em;
  color: #59636e; }
.meta { color: #59636e; margin: 0 0 14px; }
.meta .badge { margin-left: 4px; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono",
  monospace; font-size: 13px; }
.card { background: #fff; border: 1px solid #d1d9e0; border-radius: 8px; padding: 14px 18px;
  margin: 0 0 16px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #eaeef2;
  vertical-align: top; }
th { font-size: 12px; color: #59636e; font-weight: 600; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.test { overflow-wrap: anywhere; }
a { color: #0969da; text-decoration: none; }
a:hover { text-decoration: underline; }
.badge { display: inline-block; min-width: 3.2em; padding: 1px 7px; border-radius: 10px;
  font-size: 12px; font-weight: 600; text-align: center; border: 1px solid transparent;
  white-space: nowrap; }
.pass { background: #dafbe1; color: #116329; border-color: #a7e3b5; }
.fail { background: #ffebe9; color: #a40e26; border-color: #ffb8b0; }
.inconclusive { background: #fff8c5; color: #7d4e00; border-color: #ecd57a; }
.xfail { background: #fbefff; color: #6639ba; border-color: #d8b9ff; }
.none { background: #eaeef2; color: #59636e; }
.info { background: #fff; font-weight: 400; }
.reason { font-size: 15px; margin: 6px 0; }
.facts { display: flex; flex-wrap: wrap; gap: 4px 22px; margin: 4px 0; color: #59636e; }
.facts b { color: #1f2328; font-weight: 600; }
ol.diagnoses { margin: 0; padding-left: 22px; }
ol.diagnoses li { margin-bottom: 6px; }
.fix { color: #116329; }
ul.warnings { margin: 0; padding-left: 22px; color: #7d4e00; }
.charts { display: flex; flex-wrap: wrap; gap: 12px 20px; margin-top: 10px; }
figure { margin: 0; max-width: 100%; }
figure svg { display: block; width: 640px; max-width: 100%; height: auto; background: #fff;
  border: 1px solid #eaeef2; border-radius: 6px; }
figcaption { max-width: 640px; margin-top: 4px; font-size: 13px; }
figcaption .stats { color: #59636e; }
.top { float: right; font-size: 12px; }
details pre { white-space: pre-wrap; overflow-wrap: anywhere; font-size: 12px;
  background: #f6f8fa; padding: 8px; border-radius: 6px; max-height: 320px; overflow: auto; }
footer { color: #59636e; font-size: 12px; padding-bottom: 24px; }
"""


def _fmt(v: Any) -> str:
    # + 0: a loss of -0.0 reads "0", not "-0".
    return f"{v + 0:.4g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"


class _Ids:
    """Anchor ids: node ids hold brackets, slashes, colons and spaces, so each is slugified,
    and two node ids can slugify alike, so clashes get a numeric suffix."""

    def __init__(self, reserved: Sequence[str] = ()) -> None:
        self.used = set(reserved)

    def make(self, prefix: str, text: str) -> str:
        slug = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:80] or "x"
        base = f"{prefix}{slug}"
        cand, k = base, 2
        while cand in self.used:
            cand, k = f"{base}-{k}", k + 1
        self.used.add(cand)
        return cand


#: A test's section id, and the id of each of its series' charts.
_TestIds = tuple[str, dict[str, str]]


def _lenient(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """``data`` read as a plain mapping, where the page renders a missing key as empty: a
    document written by hand or by another tool may lack one the schema requires."""
    return data


def _status_of(test: TestResult) -> tuple[str, str]:
    """The badge of the test's loss verdict: (css class, label)."""
    verdict = test.get("verdict")
    if not verdict:
        return "none", "no verdict"
    status = str(verdict.get("status", ""))
    comp = test.get("baseline")
    if comp and comp.get("gated") and comp.get("status") == "regressed":
        # The curve itself passed, but the baseline gate failed the test.
        return "fail", "REGRESSED"
    if test.get("marker") == "loss_fails" and status == "fail":
        # A known-bad configuration failing as it should: not red.
        return "xfail", "FAIL"
    return (status if status in ("pass", "fail", "inconclusive") else "none"), status.upper()


#: The badge colour of each pytest outcome.
_OUTCOME_CSS = {"passed": "pass", "failed": "fail", "skipped": "none", "xfailed": "xfail",
                "xpassed": "inconclusive"}


def _outcome_badge(test: TestResult) -> str:
    """The badge of the test's outcome as pytest counts it (PASSED, FAILED, XFAIL...)."""
    outcome = str(test.get("outcome") or "")
    title = "pytest's outcome of the test"
    if outcome == "xfailed" and test.get("marker") == "loss_fails":
        title = "loss_fails: the loss check failed, as expected (an expected failure)"
    reruns = int(test.get("reruns") or 0)
    if reruns:
        title += f", after {_plural(reruns, 'rerun')}"
    return _badge(_OUTCOME_CSS.get(outcome, "none"), outcome_word(test), title)


def _badge(css: str, label: str, title: str = "") -> str:
    t = f' title="{_e(title)}"' if title else ""
    return f'<span class="badge {css}"{t}>{_e(label)}</span>'


def _row_badge(status: str, *, expected: bool = False) -> str:
    if expected:
        return _badge("xfail", status, "loss_fails: the loss check failed, as expected")
    if status == "REGRESSED":
        return _badge("fail", status, "worse than the saved baseline (--losstrend-compare-fail)")
    css = status.lower() if status.lower() in ("pass", "fail", "inconclusive") else "none"
    if status.islower():
        # Lower case in series_rows: a series shown for information, not the judged one.
        return _badge(f"{css} info", status, "shown for information (not the judged series)")
    return _badge(css, status)


# ---------------------------------------------------------------- page


def _counts(tests: list[TestResult]) -> str:
    """The tests counted by outcome, as pytest's summary counts them."""
    outcomes = [str(t.get("outcome")) for t in tests]
    parts = [_badge(_OUTCOME_CSS[o], f"{outcomes.count(o)} {o}")
             for o in OUTCOMES if outcomes.count(o)]
    rerun = sum(1 for t in tests if t.get("reruns"))
    if rerun:
        parts.append(f"({_plural(rerun, 'test')} rerun)")
    return " ".join(parts) or _badge("none", "no outcome")


def _summary(tests: list[TestResult], ids: list[_TestIds]) -> str:
    rerun = any(t.get("reruns") for t in tests)
    head = ("test", "series", "steps", "start → end", "drop", "verdict", "outcome",
            *(("reruns",) if rerun else ()), "top cause")
    out = ['<section class="card" id="summary"><h2>Summary</h2><table><thead><tr>',
           *(f"<th>{_e(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for test, (tid, fids) in zip(tests, ids, strict=True):
        link = f'<a href="#{_e(tid)}"><code>{_e(test["nodeid"])}</code></a>'
        rows = series_rows(test)
        reruns = f'<td class="num">{_e(test.get("reruns") or "")}</td>' if rerun else ""
        if not rows:
            css, label = _status_of(test)
            out.append(f'<tr><td class="test">{link}</td><td colspan="4">no series recorded</td>'
                       f"<td>{_badge(css, label)}</td><td>{_outcome_badge(test)}</td>{reruns}"
                       "<td></td></tr>")
        for r in rows:
            out.append(
                f'<tr><td class="test">{link}</td>'
                f'<td><a href="#{_e(fids[r["series"]])}">{_e(r["series"])}</a></td>'
                f'<td class="num">{r["steps"]}</td>'
                f'<td class="num">{_e(r["start"])} → {_e(r["end"])}</td>'
                f'<td class="num">{_e(r["drop"])}</td>'
                f'<td>{_row_badge(r["status"], expected=r["expected"])}</td>'
                f"<td>{_outcome_badge(test)}</td>{reruns}"
                f'<td>{_e(r["why"])}</td></tr>'
            )
    out.append("</tbody></table></section>")
    return "".join(out)


def _fact(name: str, value: Any) -> str:
    return f"<span>{_e(name)} <b>{_e('-' if value is None else value)}</b></span>"


def _series_figure(
    fid: str, name: str, s: SeriesResult, *, judged: bool, expects_failure: bool,
    band: Envelope | None = None,
) -> str:
    v = _lenient(s).get("verdict") or {}
    st = v.get("stats") or {}
    status = str(v.get("status", ""))
    css = status if status in ("pass", "fail", "inconclusive") else "none"
    if judged and expects_failure and status == "fail":
        badge = _row_badge("FAIL", expected=True)
    elif judged:
        badge = _badge(css, status.upper())
    else:
        badge = _row_badge(status.lower())
    stats = []
    if "start" in st:
        stats.append(f"start {_fmt(st.get('start'))} → end {_fmt(st.get('end'))}")
    drop = st.get("drop")
    if isinstance(drop, (int, float)) and not isinstance(drop, bool):
        stats.append(f"drop {100 * drop:.3g}%" if drop > -1.0 else f"rise x{1.0 - drop:.3g}")
    failed_at = v.get("failed_at")
    if failed_at is not None:
        stats.append(f"failed at step {failed_at}")
    ref = _lenient(s).get("reference") or {}
    ref_value = ref.get("value")
    if isinstance(ref_value, (int, float)) and not isinstance(ref_value, bool):
        where = f", from {ref['source']}" if ref.get("source") else ""
        stats.append(f"reference {_fmt(ref_value)}: {ref.get('how', '')}{where}")
    role = "judged" if judged else "for information"
    return (
        f'<figure id="{_e(fid)}" class="series">'
        f'{chart_svg(name, s.get("losses") or [], failed_at, band, ref_value)}'
        f"<figcaption>{badge} <b>{_e(name)}</b> <span class=\"stats\">({role}, "
        f"{_plural(len(s.get('losses') or []), 'step')})</span>: {_e(v.get('reason', ''))}"
        + (f'<br><span class="stats">{_e(", ".join(stats))}</span>' if stats else "")
        + "</figcaption></figure>"
    )


def _test_section(test: TestResult, ids: _TestIds, seed: Any) -> str:
    tid, fids = ids
    css, label = _status_of(test)
    verdict = _lenient(test).get("verdict") or {}
    crit = _lenient(test).get("criteria") or {}
    judged_name = crit.get("series") if test.get("verdict") else None
    out = [
        f'<section class="card test" id="{_e(tid)}">',
        '<a class="top" href="#summary">summary ↑</a>',
        # The outcome first: it is what pytest counted; the verdict is one reason for it.
        f"<h2>{_outcome_badge(test)} <code>{_e(test['nodeid'])}</code></h2>",
        '<div class="facts">',
        _fact("outcome", test.get("outcome")),
        f"<span>verdict {_badge(css, label)}</span>",
        *([_fact("reruns", test["reruns"])] if test.get("reruns") else []),
        _fact("marker", test.get("marker")),
        _fact("framework", test.get("framework")),
        _fact("seed", test.get("seed")),
        "</div>",
    ]
    if verdict.get("reason"):
        out.append(f'<p class="reason">{_e(verdict["reason"])}</p>')
    if crit:
        line = " ".join(f"{k}={_fmt(v) if isinstance(v, float) else v}"
                        for k, v in crit.items())
        out.append(f'<div class="facts mono">criteria: {_e(line)}</div>')
    rerun = f"pytest {test['nodeid']!r} --losstrend-seed={seed}"
    out.append(f'<div class="facts mono">rerun: {_e(rerun)}</div>')
    diagnoses = test.get("diagnoses") or []
    if diagnoses:
        out.append("<h3>Diagnoses</h3><ol class=\"diagnoses\">")
        for d in diagnoses:
            conf = d.get("confidence")
            conf_s = f"{conf:.2f}" if isinstance(conf, (int, float)) else "-"
            out.append(f"<li><b class=\"mono\">{_e(d.get('cause', ''))}</b> (confidence "
                       f"{conf_s}): {_e(d.get('evidence', ''))}<br>"
                       f"<span class=\"fix\">fix: {_e(d.get('fix', ''))}</span></li>")
        out.append("</ol>")
    invariants = test.get("invariants") or []
    unchecked = test.get("invariants_unchecked") or {}
    if invariants:
        out.append(f"<h3>Training invariants</h3><p>{_e(invariant_summary(test) or '')}</p>"
                   "<table class=\"invariants\"><tr><th>invariant</th><th>state</th>"
                   "<th>evidence</th></tr>")
        for inv in invariants:
            state = invariant_state(inv)
            css = {"held": "pass", "broken": "fail"}.get(state, "inconclusive")
            out.append(f"<tr><td class=\"mono\">{_e(inv['name'])}</td>"
                       f"<td>{_badge(css, state)}</td><td>{_e(inv['evidence'])}</td></tr>")
        # Where the run could not tell, say so: an invariant absent from the table would read
        # as one that held.
        for name, why in unchecked.items():
            reason = why.removeprefix("not checked: ")
            out.append(f"<tr><td class=\"mono\">{_e(name)}</td>"
                       f"<td>{_badge('none', 'not checked')}</td><td>{_e(reason)}</td></tr>")
        out.append("</table>")
    warnings = test.get("warnings") or []
    if warnings:
        out.append("<h3>Warnings</h3><ul class=\"warnings\">")
        out += [f"<li>{_e(w)}</li>" for w in warnings]
        out.append("</ul>")
    mutation = score_line(test)
    if mutation:
        out.append(f"<h3>Mutants</h3><p>{_e(mutation)}</p>")
    if test.get("baseline"):
        out.append(_baseline_table(test["baseline"]))
    series = test.get("series") or {}
    if series:
        out.append('<div class="charts">')
        xfail = test.get("marker") == "loss_fails"
        comp = test.get("baseline")
        bands = (comp.get("envelope") if comp else None) or {}
        out += [_series_figure(fids[name], name, s, judged=name == judged_name,
                               expects_failure=xfail, band=bands.get(name))
                for name, s in series.items()]
        out.append("</div>")
    else:
        out.append("<p>No series recorded.</p>")
    if test.get("evidence"):
        # What watch() saw is long and read rarely: folded, and <details> needs no script.
        dump = json.dumps(test["evidence"], indent=1, default=str)
        out.append(f"<details><summary>watch evidence</summary><pre>{_e(dump)}</pre></details>")
    out.append("</section>")
    return "".join(out)


def _baseline_table(comp: ComparisonResult) -> str:
    """The comparison with the saved baseline: one row per series and gate."""
    gated = "gated" if comp.get("gated") else "not gated"
    out = [f"<h3>Baseline <code>{_e(comp.get('name', ''))}</code> ({_e(gated)}): "
           f"{_e(comp.get('status', ''))}</h3>"]
    rows = comp.get("rows") or []
    if not rows:
        out.append(f"<p>{_e(comp.get('message', ''))}</p>")
        return "".join(out)
    out.append("<p class=\"stats\">The grey band on the charts below is the range of the "
               "baseline's runs, step by step.</p>")
    out.append("<table><thead><tr><th>series</th><th>gate</th><th>now</th>"
               "<th>baseline band</th><th>limit</th><th>runs</th><th></th></tr></thead><tbody>")
    for r in rows:
        band = r.get("band")
        band_s = f"{_fmt(band[0])} – {_fmt(band[1])}" if band else _e(r.get("note", "-"))
        value = "never" if r.get("value") is None else _fmt(r["value"])
        mark = _badge("fail", "REGRESSED") if r.get("regressed") else _badge("pass", "ok")
        out.append(f"<tr><td>{_e(r.get('series', ''))}</td><td class=\"mono\">"
                   f"{_e(r.get('gate', ''))}</td><td>{_e(value)}</td><td>{_e(band_s)}</td>"
                   f"<td>{_e(_fmt(r.get('limit')))}</td><td>{_e(r.get('runs', ''))}</td>"
                   f"<td>{mark}</td></tr>")
    out.append("</tbody></table>")
    return "".join(out)


def html_report(doc: ReportDoc) -> str:
    """The report document (``losstrend-report/1``) as one self-contained HTML5 page.

    A header with the seed and the verdict counts, a summary table linking to one section per
    test, and per test its facts, verdict reason, ranked diagnoses, warnings and one SVG chart
    per recorded series (log y-axis over two decades, the failing step marked in red). Long
    series are decimated to the chart's pixel columns. Inline CSS only: no script and no
    reference outside the file.
    """
    tests: list[TestResult] = list(doc.get("tests") or [])
    seed = doc.get("seed")
    ids = _Ids(reserved=("summary",))
    test_ids: list[_TestIds] = []
    for t in tests:
        tid = ids.make("t-", str(t.get("nodeid", "")))
        series = t.get("series") or {}
        test_ids.append((tid, {name: ids.make(f"{tid}--s-", name) for name in series}))
    title = f"Loss trends: {_plural(len(tests), 'test')}, seed {seed}"
    n_series = sum(len(t.get("series") or {}) for t in tests)
    body = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        "<header><h1>Loss trends</h1>",
        f'<p class="meta">{_e(_plural(len(tests), "test"))}, {_e(_plural(n_series, "chart"))}, '
        f"seed {_e(seed)}: {_counts(tests)}</p></header><main>",
    ]
    if tests:
        body.append(_summary(tests, test_ids))
        body += [_test_section(t, i, seed) for t, i in zip(tests, test_ids, strict=True)]
    else:
        body.append('<section class="card" id="summary"><p>No test recorded a loss.</p></section>')
    body.append(f"</main><footer>pytest-losstrend report, schema {_e(doc.get('schema', ''))}."
                "</footer></body></html>")
    return "\n".join(body) + "\n"

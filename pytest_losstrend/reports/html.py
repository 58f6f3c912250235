"""The HTML report: one self-contained page with a summary table and an SVG chart per series.

Rendered from the plain report document alone (``losstrend-report/1``, what the
``pytest_losstrend_report`` hook receives), in pure Python: no numpy, no JavaScript, and no
reference to anything outside the file, so it can be archived as a CI artifact and opened
offline.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Sequence
from typing import Any

from pytest_losstrend.reports.rows import OUTCOMES, _plural, outcome_word, score_line, series_rows

# Chart geometry, in CSS pixels: the plot area leaves room for the tick labels on the left and
# below.
CHART_W, CHART_H = 640, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 58, 14, 14, 36
PLOT_X0, PLOT_X1 = _LEFT, CHART_W - _RIGHT
PLOT_Y0, PLOT_Y1 = _TOP, CHART_H - _BOTTOM
#: Beyond this many points a chart keeps only the lowest and highest point of each pixel
#: column: the polyline then looks the same and the file stays small.
MAX_POINTS = PLOT_X1 - PLOT_X0

#: A log y-axis once the finite losses span this factor (two decades).
LOG_SPAN = 100.0
_HUGE = 1e300

STROKE = "#1f6feb"
FAIL_RED = "#d1242f"
NON_FINITE = "#8250df"

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


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any) -> float | None:
    """A loss as a float, or None for a non-finite or unreadable one."""
    if isinstance(value, bool):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


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


def _status_of(test: dict[str, Any]) -> tuple[str, str]:
    """The badge of the test's loss verdict: (css class, label)."""
    verdict = test.get("verdict")
    if not verdict:
        return "none", "no verdict"
    status = str(verdict.get("status", ""))
    comp = test.get("baseline") or {}
    if comp.get("gated") and comp.get("status") == "regressed":
        # The curve itself passed, but the baseline gate failed the test.
        return "fail", "REGRESSED"
    if test.get("marker") == "loss_fails" and status == "fail":
        # A known-bad configuration failing as it should: not red.
        return "xfail", "FAIL"
    return (status if status in ("pass", "fail", "inconclusive") else "none"), status.upper()


#: The badge colour of each pytest outcome.
_OUTCOME_CSS = {"passed": "pass", "failed": "fail", "skipped": "none", "xfailed": "xfail",
                "xpassed": "inconclusive"}


def _outcome_badge(test: dict[str, Any]) -> str:
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


# ---------------------------------------------------------------- chart geometry


def _nice_step(span: float, count: int) -> float:
    raw = span / max(count, 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0):
        if raw <= m * mag * (1 + 1e-9):
            return m * mag
    return 10.0 * mag


def _linear_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if not (hi - lo) / count > 1e-300:
        # A span of denormals: its tick step would underflow to zero.
        return []
    step = _nice_step(hi - lo, count)
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    if last - first > 4 * count:
        # A span lost in rounding (1 and 1 + 1e-15): no ticks rather than a flood of them.
        return []
    # Multiples of the step computed from integers, so 0.1 + 0.2 never shows as 0.30000004.
    return [k * step for k in range(first, last + 1)]


def _linear_label(t: float, step: float, big: float) -> str:
    if abs(t) < step * 1e-6:
        return "0"
    if big >= 1e5 or step < 1e-4:
        return f"{t:.3g}"
    exp = math.floor(math.log10(step) + 1e-9)
    # As many decimals as the step has: 0.25 needs two, 250 none.
    extra = 1 if round(step / 10.0**exp, 6) == 2.5 else 0
    return f"{t:.{max(0, extra - exp)}f}"


def _decade_label(k: int) -> str:
    if 0 <= k <= 3:
        return str(10**k)
    return f"{10.0**k:g}" if -2 <= k < 0 else f"1e{k}"


def _clamp(v: float) -> float:
    return max(-_HUGE, min(v, _HUGE))


class _Scale:
    """Maps steps and losses to chart coordinates; log in y when the losses span two decades
    and are all positive (a log axis cannot place zero or a negative loss)."""

    def __init__(self, n: int, finite: list[float]) -> None:
        self.n = n
        lo, hi = min(finite), max(finite)
        # Past 1e300 the span overflows; such a loss is off any scale, so it sits at the edge.
        lo, hi = _clamp(lo), _clamp(hi)
        self.log = lo > 0 and hi / lo >= LOG_SPAN
        if self.log:
            lo, hi = math.log10(lo), math.log10(hi)
            pad = 0.04 * (hi - lo)
            self.lo, self.hi = lo - pad, hi + pad
        else:
            if hi == lo:
                half = abs(lo) * 0.1 or 1.0
                lo, hi = lo - half, hi + half
            pad = 0.06 * (hi - lo)
            # A loss axis that only holds non-negative values should not dip below zero.
            self.lo = max(lo - pad, 0.0) if min(finite) >= 0 else lo - pad
            self.hi = hi + pad

    def x(self, i: float) -> float:
        if self.n <= 1:
            return (PLOT_X0 + PLOT_X1) / 2
        return PLOT_X0 + (PLOT_X1 - PLOT_X0) * i / (self.n - 1)

    def y(self, v: float) -> float:
        return self._y(math.log10(v) if self.log else _clamp(v))

    def _y(self, t: float) -> float:
        # t on the axis' own scale: the loss, or its log10 on a log axis.
        return PLOT_Y1 - (PLOT_Y1 - PLOT_Y0) * (t - self.lo) / (self.hi - self.lo)

    def y_ticks(self) -> list[tuple[float, str]]:
        """(y coordinate, label) of each tick."""
        if self.log:
            # Placed by exponent: 10.0 ** k underflows to 0 below k = -323.
            k0, k1 = math.ceil(self.lo - 1e-9), math.floor(self.hi + 1e-9)
            every = max(1, math.ceil((k1 - k0 + 1) / 7))
            return [(self._y(k), _decade_label(k)) for k in range(k0, k1 + 1, every)]
        ticks = _linear_ticks(self.lo, self.hi)
        if not ticks:
            return []
        step = ticks[1] - ticks[0] if len(ticks) > 1 else abs(ticks[0]) or 1.0
        big = max(abs(self.lo), abs(self.hi))
        return [(self._y(t), _linear_label(t, step, big)) for t in ticks]

    def x_ticks(self) -> list[tuple[float, str]]:
        if self.n <= 1:
            return [(0, "0")]
        step = max(1.0, _nice_step(self.n - 1, 6))
        step = float(math.ceil(step))
        return [(k * step, f"{k * step:.0f}") for k in range(int((self.n - 1) // step) + 1)]


def _kept_indices(vals: list[float | None], width: int) -> list[int]:
    """The indices a chart draws: all of them for a short series; for a long one the first,
    the last, and per pixel column its lowest and highest point (so a one-step spike survives)
    and its first non-finite point (so the line breaks there)."""
    n = len(vals)
    if n <= width:
        return list(range(n))
    keep = {0, n - 1}
    for b in range(width):
        lowest: tuple[float, int] | None = None
        highest: tuple[float, int] | None = None
        first_bad: int | None = None
        for i in range(b * n // width, (b + 1) * n // width):
            v = vals[i]
            if v is None:
                if first_bad is None:
                    first_bad = i
                    keep.add(i)
                continue
            if lowest is None or v < lowest[0]:
                lowest = (v, i)
            if highest is None or v > highest[0]:
                highest = (v, i)
        keep.update(p[1] for p in (lowest, highest) if p is not None)
    return sorted(keep)


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs ``(first, last)`` of sorted indices."""
    out: list[tuple[int, int]] = []
    for i in indices:
        if out and i == out[-1][1] + 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


def _non_finite_word(raw: Any) -> str:
    s = str(raw).strip().lower()
    return s if s in ("nan", "inf", "-inf") else "non-finite"


def chart_svg(
    name: str, losses: Sequence[Any], failed_at: Any, band: dict[str, Any] | None = None
) -> str:
    """One series as an inline SVG line chart (about 640x220).

    The y-axis is logarithmic when the finite losses are all positive and span two decades or
    more, linear otherwise. Non-finite losses break the line and are marked with a cross at the
    top of the plot; ``failed_at`` (a step index, or None) is a red vertical line. ``band``
    (the ``envelope`` of a baseline comparison: ``steps``, ``lo``, ``hi``) is shaded behind
    the line, so a regression shows as the curve leaving the baseline's band.
    """
    vals = [_num(v) for v in losses]
    n = len(vals)
    finite = [v for v in vals if v is not None]
    band_pts = _band_points(band)
    if band_pts:
        # The axes hold the band too: a curve far above it must still show where it was.
        n = max(n, band_pts[-1][0] + 1)
        finite_curve = finite
        finite = finite + [v for _, lo, hi in band_pts for v in (lo, hi)]
    else:
        finite_curve = finite
    parts = [
        f'<svg viewBox="0 0 {CHART_W} {CHART_H}" width="{CHART_W}" height="{CHART_H}" '
        f'role="img" aria-label="{_e(f"loss of series {name} over {n} steps")}">',
        f"<title>{_e(f'{name}: {n} steps')}</title>",
        f'<rect x="{PLOT_X0}" y="{PLOT_Y0}" width="{PLOT_X1 - PLOT_X0}" '
        f'height="{PLOT_Y1 - PLOT_Y0}" fill="#fff" stroke="#d1d9e0"/>',
    ]
    if not finite_curve:
        what = "no loss recorded" if not vals else "no finite loss"
        parts.append(f'<text x="{(PLOT_X0 + PLOT_X1) / 2:.0f}" y="{(PLOT_Y0 + PLOT_Y1) / 2:.0f}" '
                     f'text-anchor="middle" fill="#59636e" font-size="13">{what}</text>')
    scale = _Scale(n, finite or [1.0])
    parts += _axes(scale, draw_y=bool(finite))
    marked = isinstance(failed_at, int) and not isinstance(failed_at, bool) and 0 <= failed_at < n
    # The red line goes under the loss line, so a spike at the failing step stays visible.
    failed_line, failed_label = _failed_marker(scale, failed_at) if marked else ("", "")
    parts.append(failed_line)
    if band_pts:
        parts.append(_band_polygon(scale, band_pts))
    if finite_curve:
        parts += _line(scale, vals)
    parts += _non_finite_marks(scale, losses, vals)
    parts.append(failed_label)
    parts.append("</svg>")
    return "".join(parts)


def _band_points(band: dict[str, Any] | None) -> list[tuple[int, float, float]]:
    """(step, lo, hi) of a baseline band, dropping any point that is not a finite number."""
    if not band:
        return []
    out = []
    for step, lo, hi in zip(band.get("steps") or [], band.get("lo") or [], band.get("hi") or [],
                            strict=False):
        a, b = _num(lo), _num(hi)
        if isinstance(step, int) and step >= 0 and a is not None and b is not None:
            out.append((step, a, b))
    return sorted(out)


def _band_polygon(scale: _Scale, pts: list[tuple[int, float, float]]) -> str:
    # Along the top edge forward, back along the bottom edge: one closed shape.
    top = [f"{scale.x(i):.1f},{scale.y(hi):.1f}" for i, _, hi in pts]
    bottom = [f"{scale.x(i):.1f},{scale.y(lo):.1f}" for i, lo, _ in reversed(pts)]
    return (f'<polygon class="band" points="{" ".join(top + bottom)}" fill="#8c959f" '
            f'fill-opacity="0.28" stroke="none"><title>baseline band</title></polygon>')


def _axes(scale: _Scale, *, draw_y: bool) -> list[str]:
    out: list[str] = []
    font = 'font-size="11" fill="#59636e"'
    if draw_y:
        for y, label in scale.y_ticks():
            if not PLOT_Y0 - 0.5 <= y <= PLOT_Y1 + 0.5:
                continue
            out.append(f'<line x1="{PLOT_X0}" x2="{PLOT_X1}" y1="{y:.1f}" y2="{y:.1f}" '
                       f'stroke="#eaeef2"/>')
            out.append(f'<text x="{PLOT_X0 - 6}" y="{y + 3.5:.1f}" text-anchor="end" {font}>'
                       f"{_e(label)}</text>")
    for i, label in scale.x_ticks():
        x = scale.x(i)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{PLOT_Y1}" y2="{PLOT_Y1 + 4}" '
                   f'stroke="#8c959f"/>')
        out.append(f'<text x="{x:.1f}" y="{PLOT_Y1 + 16}" text-anchor="middle" {font}>'
                   f"{_e(label)}</text>")
    out.append(f'<text x="{(PLOT_X0 + PLOT_X1) / 2:.0f}" y="{CHART_H - 4}" '
               f'text-anchor="middle" {font}>step</text>')
    ylabel = "loss (log)" if scale.log else "loss"
    cy = (PLOT_Y0 + PLOT_Y1) / 2
    out.append(f'<text x="13" y="{cy:.0f}" transform="rotate(-90 13 {cy:.0f})" '
               f'text-anchor="middle" {font} class="ylabel">{ylabel}</text>')
    return out


def _line(scale: _Scale, vals: list[float | None]) -> list[str]:
    segments: list[list[tuple[float, float]]] = [[]]
    for i in _kept_indices(vals, MAX_POINTS):
        v = vals[i]
        if v is None:
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append((scale.x(i), scale.y(v)))
    out = []
    for seg in segments:
        if len(seg) > 1:
            pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in seg)
            out.append(f'<polyline class="loss" points="{pts}" fill="none" stroke="{STROKE}" '
                       f'stroke-width="1.6" stroke-linejoin="round"/>')
        elif seg:
            # A single finite point between non-finite ones would be an invisible polyline.
            out.append(f'<circle cx="{seg[0][0]:.1f}" cy="{seg[0][1]:.1f}" r="2.2" '
                       f'fill="{STROKE}"/>')
    if len(vals) <= 60:
        # On a short series the individual steps matter (a 3-step divergence).
        out += [f'<circle cx="{scale.x(i):.1f}" cy="{scale.y(v):.1f}" r="2.2" fill="{STROKE}"/>'
                for i, v in enumerate(vals) if v is not None]
    return out


def _non_finite_marks(scale: _Scale, raw: Sequence[Any], vals: list[float | None]) -> list[str]:
    bad = [i for i, v in enumerate(vals) if v is None]
    if not bad:
        return []
    y = PLOT_Y0 + 7
    # Runs closer than a few pixels are drawn as one mark, so 10 000 NaN steps cost one band.
    spans: list[list[float]] = []
    for a, b in _runs(bad):
        xa, xb = scale.x(a), scale.x(b)
        if spans and xa - spans[-1][1] <= 3:
            spans[-1][1] = xb
        else:
            spans.append([xa, xb])
    out = [f'<g class="non-finite" stroke="{NON_FINITE}" fill="{NON_FINITE}">']
    for xa, xb in spans:
        if xb - xa < 4:
            x = (xa + xb) / 2
            out.append(f'<path d="M{x - 3.5:.1f} {y - 3.5:.1f}l7 7m0 -7l-7 7" '
                       f'stroke-width="1.8" fill="none"/>')
        else:
            out.append(f'<rect x="{xa:.1f}" y="{y - 3:.1f}" width="{xb - xa:.1f}" height="6" '
                       f'opacity="0.55" stroke="none"/>')
    out.append("</g>")
    first = bad[0]
    word = _non_finite_word(raw[first])
    label = (f"{word} at step {first}" if len(bad) == 1
             else f"non-finite from step {first} ({len(bad)} steps)")
    x = scale.x(first)
    anchor, dx = ("end", -5) if x > (PLOT_X0 + PLOT_X1) / 2 else ("start", 5)
    # Below the row of marks, not on it, so a band of them does not cross out the label.
    out.append(f'<text x="{x + dx:.1f}" y="{y + 17:.1f}" text-anchor="{anchor}" font-size="11" '
               f'fill="{NON_FINITE}">{_e(label)}</text>')
    return out


def _failed_marker(scale: _Scale, step: int) -> tuple[str, str]:
    # Whole pixels and crisp edges: a 2 px line in exactly the failure red, not a blur.
    x = round(scale.x(step))
    anchor, dx = ("end", -5) if x > (PLOT_X0 + PLOT_X1) / 2 else ("start", 5)
    # Labelled at the bottom of the plot: the non-finite marks sit at the top.
    return (
        f'<line class="failed-at" x1="{x}" x2="{x}" y1="{PLOT_Y0}" y2="{PLOT_Y1}" '
        f'stroke="{FAIL_RED}" stroke-width="2" shape-rendering="crispEdges"/>',
        f'<text class="failed-at" x="{x + dx}" y="{PLOT_Y1 - 6}" text-anchor="{anchor}" '
        f'font-size="11" font-weight="600" fill="{FAIL_RED}">failed at step {step}</text>',
    )


# ---------------------------------------------------------------- page


def _counts(tests: list[dict[str, Any]]) -> str:
    """The tests counted by outcome, as pytest's summary counts them."""
    outcomes = [str(t.get("outcome")) for t in tests]
    parts = [_badge(_OUTCOME_CSS[o], f"{outcomes.count(o)} {o}")
             for o in OUTCOMES if outcomes.count(o)]
    rerun = sum(1 for t in tests if t.get("reruns"))
    if rerun:
        parts.append(f"({_plural(rerun, 'test')} rerun)")
    return " ".join(parts) or _badge("none", "no outcome")


def _summary(tests: list[dict[str, Any]], ids: list[_TestIds]) -> str:
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
    fid: str, name: str, s: dict[str, Any], *, judged: bool, expects_failure: bool,
    band: dict[str, Any] | None = None,
) -> str:
    v = s.get("verdict") or {}
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
    role = "judged" if judged else "for information"
    return (
        f'<figure id="{_e(fid)}" class="series">'
        f'{chart_svg(name, s.get("losses") or [], failed_at, band)}'
        f"<figcaption>{badge} <b>{_e(name)}</b> <span class=\"stats\">({role}, "
        f"{_plural(len(s.get('losses') or []), 'step')})</span>: {_e(v.get('reason', ''))}"
        + (f'<br><span class="stats">{_e(", ".join(stats))}</span>' if stats else "")
        + "</figcaption></figure>"
    )


def _test_section(test: dict[str, Any], ids: _TestIds, seed: Any) -> str:
    tid, fids = ids
    css, label = _status_of(test)
    verdict = test.get("verdict") or {}
    crit = test.get("criteria") or {}
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
        bands = (test.get("baseline") or {}).get("envelope") or {}
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


def _baseline_table(comp: dict[str, Any]) -> str:
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


def html_report(doc: dict[str, Any]) -> str:
    """The report document (``losstrend-report/1``) as one self-contained HTML5 page.

    A header with the seed and the verdict counts, a summary table linking to one section per
    test, and per test its facts, verdict reason, ranked diagnoses, warnings and one SVG chart
    per recorded series (log y-axis over two decades, the failing step marked in red). Long
    series are decimated to the chart's pixel columns. Inline CSS only: no script and no
    reference outside the file.
    """
    tests: list[dict[str, Any]] = list(doc.get("tests") or [])
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

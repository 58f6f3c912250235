"""The SVG line chart of one loss series in the HTML report: axes and ticks, a log y-axis over
two decades, decimation of long series to the plot's pixel columns, non-finite marks, the
failing step in red, a baseline's band behind the curve and the reference level as a dashed
line.

Pure Python and plain data, like the page around it (:mod:`pytest_losstrend.reports.html`):
no numpy, no script, nothing outside the SVG it returns.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

from pytest_losstrend.reports.schema import Envelope

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
REFERENCE = "#59636e"


def esc(value: Any) -> str:
    """``value`` as text safe inside an HTML element or a quoted attribute."""
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
    name: str, losses: Sequence[Any], failed_at: Any, band: Envelope | None = None,
    reference: Any = None,
) -> str:
    """One series as an inline SVG line chart (about 640x220).

    The y-axis is logarithmic when the finite losses are all positive and span two decades or
    more, linear otherwise. Non-finite losses break the line and are marked with a cross at the
    top of the plot; ``failed_at`` (a step index, or None) is a red vertical line. ``band``
    (the ``envelope`` of a baseline comparison: ``steps``, ``lo``, ``hi``) is shaded behind
    the line, so a regression shows as the curve leaving the baseline's band. ``reference``
    (the series' reference level, a positive number) is a dashed horizontal line labelled
    "reference 2.303", inside the axes' range.

    Example:
        >>> "reference 2.303" in chart_svg("train", [2.4, 2.0, 1.1], None, reference=2.3026)
        True
    """
    vals = [_num(v) for v in losses]
    n = len(vals)
    finite = [v for v in vals if v is not None]
    finite_curve = finite
    band_pts = _band_points(band)
    if band_pts:
        # The axes hold the band too: a curve far above it must still show where it was.
        n = max(n, band_pts[-1][0] + 1)
        finite = finite + [v for _, lo, hi in band_pts for v in (lo, hi)]
    ref = _num(reference)
    if ref is not None and not ref > 0:
        ref = None  # a reference of zero or below bounds nothing (and has no log)
    if ref is not None and finite_curve:
        # So do the axes hold the reference: the curve is read against it.
        finite = [*finite, ref]
    parts = [
        f'<svg viewBox="0 0 {CHART_W} {CHART_H}" width="{CHART_W}" height="{CHART_H}" '
        f'role="img" aria-label="{esc(f"loss of series {name} over {n} steps")}">',
        f"<title>{esc(f'{name}: {n} steps')}</title>",
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
    ref_line, ref_label = (_reference_line(scale, ref) if ref is not None and finite_curve
                           else ("", ""))
    parts.append(ref_line)
    if finite_curve:
        parts += _line(scale, vals)
    parts += _non_finite_marks(scale, losses, vals)
    # Over the curve, on a white halo: a run at chance ends right where the label is.
    parts.append(ref_label)
    parts.append(failed_label)
    parts.append("</svg>")
    return "".join(parts)


def _band_points(band: Envelope | None) -> list[tuple[int, float, float]]:
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
                       f"{esc(label)}</text>")
    for i, label in scale.x_ticks():
        x = scale.x(i)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{PLOT_Y1}" y2="{PLOT_Y1 + 4}" '
                   f'stroke="#8c959f"/>')
        out.append(f'<text x="{x:.1f}" y="{PLOT_Y1 + 16}" text-anchor="middle" {font}>'
                   f"{esc(label)}</text>")
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
               f'fill="{NON_FINITE}">{esc(label)}</text>')
    return out


def _reference_line(scale: _Scale, ref: float) -> tuple[str, str]:
    """The reference level: a dashed grey line across the plot (under the curve), and its
    label at the right end (above the line, or below it when the line runs along the top of
    the plot)."""
    y = scale.y(ref)
    label_y = y - 4 if y - 14 > PLOT_Y0 else y + 13
    return (
        f'<line class="reference" x1="{PLOT_X0}" x2="{PLOT_X1}" y1="{y:.1f}" y2="{y:.1f}" '
        f'stroke="{REFERENCE}" stroke-width="1.4" stroke-dasharray="6 4">'
        f"<title>{esc(f'reference level {ref:.4g}')}</title></line>",
        f'<text class="reference" x="{PLOT_X1 - 5}" y="{label_y:.1f}" text-anchor="end" '
        f'font-size="11" fill="{REFERENCE}" stroke="#fff" stroke-width="3" '
        f'paint-order="stroke">{esc(f"reference {ref:.4g}")}</text>',
    )


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

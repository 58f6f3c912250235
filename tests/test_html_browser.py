"""The HTML report in a real headless Chromium: no console errors, and the charts are drawn.

Skipped when no Chromium is installed, unless LOSSTREND_REQUIRE_BROWSER=1 (CI sets it), which
turns the missing browser into a failure.

Console errors are read from Chromium's own log (``--enable-logging=stderr``), where every
console message, uncaught exception and SVG attribute error of the page is a ``CONSOLE`` line;
a control page with each of those proves the check sees them.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

# Shares the real run with test_html (and imports what pytester needs imported early).
from test_html import parse, run_suite

from pytest_losstrend.reports.html_chart import FAIL_RED, STROKE

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
REQUIRE_ENV = "LOSSTREND_REQUIRE_BROWSER"
WINDOW = (1200, 2000)
TIMEOUT = 60
# Chromium's log line of a console message: "INFO:CONSOLE:1]" (older: "INFO:CONSOLE(1)]").
CONSOLE_LINE = re.compile(r":CONSOLE[(:]|Uncaught")

def find_browser() -> str | None:
    """The first Chromium-family binary on PATH."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def require_browser(path: str | None, env: dict[str, str]) -> str:
    """``path``, or a skip, or (with LOSSTREND_REQUIRE_BROWSER=1) a failure."""
    if path is not None:
        return path
    msg = f"no Chromium binary on PATH (looked for {', '.join(BROWSERS)})"
    if env.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{msg}, and {REQUIRE_ENV}=1 requires one")
    pytest.skip(msg)


@pytest.fixture(scope="module")
def browser() -> str:
    return require_browser(find_browser(), dict(os.environ))


@dataclass
class Rendered:
    dom: str
    console: list[str]
    png: bytes


def render(browser: str, page: Path, workdir: Path) -> Rendered:
    """Load ``page`` in headless Chromium once: its DOM after load, its console messages and a
    screenshot of the window."""
    shot = workdir / "shot.png"
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--no-first-run", "--hide-scrollbars",
         f"--user-data-dir={workdir / 'profile'}", "--enable-logging=stderr", "--v=0",
         f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--screenshot={shot}", "--dump-dom",
         page.as_uri()],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = [ln for ln in proc.stderr.splitlines() if CONSOLE_LINE.search(ln)]
    return Rendered(proc.stdout, console, shot.read_bytes())


def read_png(data: bytes) -> np.ndarray:
    """An 8-bit RGB or RGBA, non-interlaced PNG as an (height, width, 3) array."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, [], b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat.append(body)
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and interlace == 0 and colour in (2, 6), (depth, colour, interlace)
    ch = 3 if colour == 2 else 4
    stride = width * ch
    raw = zlib.decompress(b"".join(idat))
    out = np.empty((height, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for y in range(height):
        start = y * (stride + 1)
        kind_ = raw[start]
        line = np.frombuffer(raw, np.uint8, stride, start + 1)
        if kind_ == 0:
            cur = line.copy()
        elif kind_ == 1:       # Sub: a running sum along the row, per channel, mod 256
            cur = (np.cumsum(line.reshape(width, ch), axis=0, dtype=np.int64) & 255).astype(
                np.uint8).reshape(stride)
        elif kind_ == 2:       # Up
            cur = line + prev
        else:                  # Average and Paeth depend on the byte just decoded
            cur = np.frombuffer(_sequential_row(line.tobytes(), prev.tobytes(), ch, kind_),
                                np.uint8)
        out[y] = cur
        prev = cur
    return out.reshape(height, width, ch)[:, :, :3]


def _sequential_row(line: bytes, prev: bytes, ch: int, kind: int) -> bytes:
    cur = bytearray(line)
    for x in range(len(cur)):
        a = cur[x - ch] if x >= ch else 0
        b = prev[x]
        if kind == 3:
            cur[x] = (cur[x] + ((a + b) >> 1)) & 255
            continue
        c = prev[x - ch] if x >= ch else 0
        if b == c:
            # Paeth with b == c predicts a; on a flat page that is nearly every byte.
            cur[x] = (cur[x] + a) & 255
            continue
        pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
        pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        cur[x] = (cur[x] + pred) & 255
    return bytes(cur)


def near(img: np.ndarray, hex_colour: str, tol: int = 10) -> np.ndarray:
    """Where the screenshot has ``hex_colour`` (within ``tol`` per channel)."""
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)], np.int16)
    return np.all(np.abs(img.astype(np.int16) - rgb) <= tol, axis=2)


def test_console_check_sees_errors(browser: str, tmp_path: Path) -> None:
    """The control: a page with a console.error, an uncaught exception and an SVG attribute
    the browser rejects. If the log format changes, this fails instead of the report test
    passing blindly."""
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><html><body><p>control</p>"
        '<script>console.error("control-console-error")</script>'
        '<script>throw new Error("control-uncaught")</script>'
        '<svg width="50" height="50"><polyline points="nan,1 2,2"/></svg>'
        "</body></html>",
        encoding="utf-8",
    )
    got = render(browser, page, tmp_path)
    text = "\n".join(got.console)
    assert "control-console-error" in text, got.console
    assert "Uncaught Error: control-uncaught" in text, got.console
    assert "<polyline> attribute points" in text, got.console


def test_report_in_chromium(browser: str, lt_pytester: pytest.Pytester, tmp_path: Path) -> None:
    """The real run's report, loaded once (one test rather than three, so that parallel workers
    do not each start a browser): no console message, every chart in the DOM, and a
    screenshot with the loss lines and the red failure marker in it."""
    run = run_suite(lt_pytester)
    page = tmp_path / "report.html"
    page.write_text(run.html, encoding="utf-8")
    got = render(browser, page, tmp_path)

    # (a) Nothing on the console: no script error, no SVG attribute the browser rejected.
    assert got.console == []

    # The DOM after load holds every chart and marker, and nothing fetched.
    dom = parse(got.dom.strip())
    n_series = sum(len(t["series"]) for t in run.doc["tests"])
    assert len(dom.iter("svg")) == len(dom.iter("figure")) == n_series == 7
    failing = sum(1 for t in run.doc["tests"] for s in t["series"].values()
                  if s["verdict"]["failed_at"] is not None)
    assert len(dom.iter("line", "failed-at")) == failing == 4
    assert len(dom.iter("section", "test")) == len(run.doc["tests"])
    assert not dom.iter("script") and not dom.iter("img") and not dom.iter("link")

    # (b) The screenshot is not blank: the page background is near-white, text, tables and
    # charts are not.
    img = read_png(got.png)
    assert img.shape == (WINDOW[1], WINDOW[0], 3)
    ink = np.any(img < 200, axis=2)
    assert ink.mean() > 0.01, ink.mean()
    packed = (img[:, :, 0].astype(np.uint32) << 16) | (img[:, :, 1].astype(np.uint32) << 8) | img[
        :, :, 2]
    assert len(np.unique(packed)) > 50
    # The loss lines, in their stroke colour.
    stroke = near(img, STROKE)
    assert stroke.sum() > 500, stroke.sum()
    # The failing step: a vertical red line, 2 px wide and about as tall as the plot.
    red = near(img, FAIL_RED, tol=6)
    assert red.sum() > 200, red.sum()
    assert red.sum(axis=0).max() > 120, red.sum(axis=0).max()


def test_screenshot_png_decoder_handles_every_filter() -> None:
    """read_png against rows written with each of the five PNG filters."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    img[:, 3:] = img[:, 3:4]                     # flat runs, for Paeth's b == c shortcut
    rows = []
    prev = np.zeros(7 * 3, np.int16)
    for y, kind in enumerate(range(5)):
        cur = img[y].reshape(-1).astype(np.int16)
        left = np.concatenate([np.zeros(3, np.int16), cur[:-3]])
        upleft = np.concatenate([np.zeros(3, np.int16), prev[:-3]])
        if kind == 0:
            pred = np.zeros_like(cur)
        elif kind == 1:
            pred = left
        elif kind == 2:
            pred = prev
        elif kind == 3:
            pred = (left + prev) >> 1
        else:
            p = left + prev - upleft
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
        rows.append(bytes([kind]) + ((cur - pred) & 255).astype(np.uint8).tobytes())
        prev = cur

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 7, 5, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))
    assert np.array_equal(read_png(png), img)


def test_missing_browser_skips_unless_required() -> None:
    with pytest.raises(pytest.skip.Exception):
        require_browser(None, {})
    with pytest.raises(pytest.skip.Exception):
        require_browser(None, {REQUIRE_ENV: "0"})
    with pytest.raises(pytest.fail.Exception, match=REQUIRE_ENV):
        require_browser(None, {REQUIRE_ENV: "1"})
    assert require_browser("/usr/bin/chromium", {REQUIRE_ENV: "1"}) == "/usr/bin/chromium"

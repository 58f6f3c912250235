"""The HTML report, from real training runs: charts, axes, markers, links and escaping."""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import pytest

# Imported before pytester snapshots the modules: numpy and torch cannot be loaded twice in
# one process, and the inner run imports these.
import pytest_losstrend.diagnosis.rules
import pytest_losstrend.reports.report
import pytest_losstrend.runner  # noqa: F401
from pytest_losstrend.reports.html import html_report
from pytest_losstrend.reports.html_chart import MAX_POINTS, PLOT_X0, PLOT_X1, PLOT_Y0

SUITE = """
import pytest
from lt_helpers import diverge, nan_batch, train


@pytest.mark.loss_decreases
def test_learns(losstrend):
    # Minibatch SGD: 2.7 -> 0.18 over 40 steps, 1.5 decades between its extremes (and "eval").
    train(losstrend, steps=40, lr=0.02, batch=16, eval_every=5)


@pytest.mark.loss_decreases
def test_many_decades(losstrend):
    # Full-batch SGD to the noise floor: 2.2 -> 0.0093, 2.4 decades.
    train(losstrend, steps=150, lr=0.1)


@pytest.mark.loss_decreases
def test_lr_too_high(losstrend):
    diverge(losstrend)


@pytest.mark.loss_fails(cause="lr_too_high")
def test_known_bad(losstrend):
    diverge(losstrend)


@pytest.mark.loss_decreases
def test_nan_batch(losstrend):
    nan_batch(losstrend)


def test_unmarked_nan(losstrend):
    # No marker, so nothing stops the run: NaN from the bad batch on, to the end.
    nan_batch(losstrend)
"""

LEARNS = "test_curves.py::test_learns"
DECADES = "test_curves.py::test_many_decades"
LR_HIGH = "test_curves.py::test_lr_too_high"
KNOWN_BAD = "test_curves.py::test_known_bad"
NAN_BATCH = "test_curves.py::test_nan_batch"
UNMARKED = "test_curves.py::test_unmarked_nan"

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


@dataclass
class Node:
    """An element of the parsed page (attribute names come lower-cased from html.parser)."""

    tag: str
    attrs: dict[str, str | None]
    children: list[Node | str] = field(default_factory=list)

    def iter(self, tag: str | None = None, cls: str | None = None) -> list[Node]:
        out = []
        for c in self.children:
            if isinstance(c, Node):
                if (tag is None or c.tag == tag) and (
                        cls is None or cls in (c.attrs.get("class") or "").split()):
                    out.append(c)
                out += c.iter(tag, cls)
        return out

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack = [Node("#root", {})]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(text: str) -> Node:
    """The page as a tree; every element must be closed where it is opened."""
    builder = _TreeBuilder()
    builder.feed(text)
    builder.close()
    assert len(builder.stack) == 1, f"unclosed: {[n.tag for n in builder.stack[1:]]}"
    return builder.stack[0]


def sections(root: Node) -> dict[str, Node]:
    """Each test's section, by node id (the text of its heading's <code>)."""
    return {s.iter("h2")[0].iter("code")[0].text(): s for s in root.iter("section", "test")}


def charts(section: Node) -> dict[str, Node]:
    """Each series' <figure>, by series name (the <b> of its caption)."""
    return {f.iter("figcaption")[0].iter("b")[0].text(): f for f in section.iter("figure")}


def y_label(fig: Node) -> str:
    return fig.iter("text", "ylabel")[0].text()


def polyline_points(fig: Node) -> list[list[tuple[float, float]]]:
    return [[(float(x), float(y)) for x, y in (p.split(",") for p in (line.attrs["points"] or
                                                                       "").split())]
            for line in fig.iter("polyline", "loss")]


def decades(losses: list[Any]) -> float:
    """How many decades the finite losses span (inf when one is zero or negative)."""
    finite = [float(v) for v in losses if not isinstance(v, str) and math.isfinite(float(v))]
    if min(finite) <= 0:
        return math.inf
    return math.log10(max(finite) / min(finite))


def step_x(step: int, n: int) -> float:
    return PLOT_X0 + (PLOT_X1 - PLOT_X0) * step / (n - 1)


@dataclass
class Run:
    html: str
    doc: dict[str, Any]

    def test(self, nodeid: str) -> dict[str, Any]:
        return next(t for t in self.doc["tests"] if t["nodeid"] == nodeid)


_RUN: list[Run] = []


def run_suite(pytester: pytest.Pytester) -> Run:
    """The HTML and JSON reports of one real run of SUITE (~1 s; run once per process and
    shared, also by the browser tests). ``pytester`` must hold ``lt_helpers``."""
    if not _RUN:
        pytester.makepyfile(test_curves=SUITE)
        result = pytester.runpytest_inprocess(
            "--losstrend-report=html:out/report.html", "--losstrend-report=json:out/report.json")
        result.assert_outcomes(passed=3, failed=2, xfailed=1)
        result.stdout.fnmatch_lines(["losstrend: HTML report written to */out/report.html"])
        out = pytester.path / "out"
        _RUN.append(Run((out / "report.html").read_text(encoding="utf-8"),
                        json.loads((out / "report.json").read_text())))
    return Run(_RUN[0].html, copy.deepcopy(_RUN[0].doc))


@pytest.fixture
def real_run(lt_pytester: pytest.Pytester) -> Run:
    """The reports of the real run, the document a fresh copy each time."""
    return run_suite(lt_pytester)


def test_one_chart_per_series_and_one_section_per_test(real_run: Run) -> None:
    root = parse(real_run.html)
    secs = sections(root)
    assert set(secs) == {t["nodeid"] for t in real_run.doc["tests"]}
    for t in real_run.doc["tests"]:
        figs = charts(secs[t["nodeid"]])
        assert set(figs) == set(t["series"])
        assert len(secs[t["nodeid"]].iter("svg")) == len(t["series"])
        for fig in figs.values():
            svg = fig.iter("svg")[0]
            assert (svg.attrs["width"], svg.attrs["height"]) == ("640", "220")
            assert len(fig.iter("polyline", "loss")) >= 1
    assert len(root.iter("svg")) == sum(len(t["series"]) for t in real_run.doc["tests"]) == 7
    # The learning test's eval series is charted too, with its own verdict below it.
    eval_caption = charts(secs[LEARNS])["eval"].iter("figcaption")[0].text()
    assert "pass" in eval_caption and "for information" in eval_caption
    assert real_run.test(LEARNS)["series"]["eval"]["verdict"]["reason"] in eval_caption


def test_the_file_is_the_plain_document_rendered(real_run: Run) -> None:
    """What --losstrend-report=html writes is html_report of the JSON document: the sink hook's
    plain data is all it needs."""
    assert html_report(real_run.doc) == real_run.html
    assert html_report(json.loads(json.dumps(real_run.doc))) == real_run.html


def test_section_shows_facts_reason_diagnoses_and_warnings(real_run: Run) -> None:
    sec = sections(parse(real_run.html))[LR_HIGH]
    text = " ".join(sec.text().split())
    t = real_run.test(LR_HIGH)
    for fact in ("outcome failed", "marker loss_decreases", "framework torch", "seed 0"):
        assert fact in text
    assert t["verdict"]["reason"] in text
    assert t["diagnoses"] and t["diagnoses"][0]["cause"] == "lr_too_high"
    items = sec.iter("ol", "diagnoses")[0].iter("li")
    assert len(items) == len(t["diagnoses"])
    for li, d in zip(items, t["diagnoses"], strict=True):
        li_text = " ".join(li.text().split())
        assert d["cause"] in li_text and f"{d['confidence']:.2f}" in li_text
        assert d["evidence"] in li_text and f"fix: {d['fix']}" in li_text
    assert "rerun: pytest 'test_curves.py::test_lr_too_high' --losstrend-seed=0" in text

    doc = real_run.doc
    doc["tests"][0]["warnings"] = ["first loss 12x above chance level ln C"]
    sec = sections(parse(html_report(doc)))[doc["tests"][0]["nodeid"]]
    assert [li.text() for li in sec.iter("ul", "warnings")[0].iter("li")] == [
        "first loss 12x above chance level ln C"]


def test_log_axis_exactly_when_the_loss_spans_two_decades(real_run: Run) -> None:
    secs = sections(parse(real_run.html))
    seen = set()
    for t in real_run.doc["tests"]:
        for name, fig in charts(secs[t["nodeid"]]).items():
            span = decades(t["series"][name]["losses"])
            assert y_label(fig) == ("loss (log)" if span >= 2 else "loss"), (t["nodeid"], name)
            seen.add(span >= 2)
    assert seen == {True, False}
    # The real curves on either side of the threshold.
    assert 1.4 < decades(real_run.test(LEARNS)["series"]["train"]["losses"]) < 1.6
    assert y_label(charts(secs[LEARNS])["train"]) == "loss"
    assert 2.2 < decades(real_run.test(DECADES)["series"]["train"]["losses"]) < 2.6
    assert y_label(charts(secs[DECADES])["train"]) == "loss (log)"
    # A log axis is labelled in decades.
    ticks = [t.text() for t in charts(secs[DECADES])["train"].iter("text")]
    assert "0.01" in ticks and "0.1" in ticks and "1" in ticks


def _rescaled(losses: list[float], lo: float, hi: float) -> list[float]:
    """The same curve shape, mapped in log space onto [lo, hi] exactly."""
    logs = [math.log10(v) for v in losses]
    a, b = min(logs), max(logs)
    out = [10 ** (math.log10(lo) + (v - a) / (b - a) * (math.log10(hi) - math.log10(lo)))
           for v in logs]
    out[logs.index(a)], out[logs.index(b)] = lo, hi
    return out


@pytest.mark.parametrize(("lo", "hi", "log"), [
    (10 ** -1.5, 1.0, False),     # 1.5 decades
    (0.0101, 1.0, False),         # just under two
    (0.01, 1.0, True),            # exactly two
    (1e-3, 1.0, True),
])
def test_axis_threshold_on_a_rescaled_real_curve(
        real_run: Run, lo: float, hi: float, log: bool) -> None:
    doc = real_run.doc
    t = next(t for t in doc["tests"] if t["nodeid"] == DECADES)
    t["series"]["train"]["losses"] = _rescaled(t["series"]["train"]["losses"], lo, hi)
    fig = charts(sections(parse(html_report(doc)))[DECADES])["train"]
    assert y_label(fig) == ("loss (log)" if log else "loss")


@pytest.mark.parametrize("bad", [0.0, -0.5])
def test_log_axis_falls_back_to_linear_for_zero_or_negative(real_run: Run, bad: float) -> None:
    doc = real_run.doc
    t = next(t for t in doc["tests"] if t["nodeid"] == DECADES)
    t["series"]["train"]["losses"][-1] = bad      # the other values still span 2.4 decades
    fig = charts(sections(parse(html_report(doc)))[DECADES])["train"]
    assert y_label(fig) == "loss"
    # The curve is still drawn, down to the bad value: the lowest point is the bottom one.
    (line,) = polyline_points(fig)
    assert len(line) == len(t["series"]["train"]["losses"])
    assert max(y for _, y in line) == line[-1][1]


def test_failing_step_is_marked_on_failing_series_only(real_run: Run) -> None:
    secs = sections(parse(real_run.html))
    marked = 0
    for t in real_run.doc["tests"]:
        for name, fig in charts(secs[t["nodeid"]]).items():
            s = t["series"][name]
            at, n = s["verdict"]["failed_at"], len(s["losses"])
            lines = fig.iter("line", "failed-at")
            if s["verdict"]["status"] == "pass":
                assert at is None and not lines and "failed at" not in fig.iter("svg")[0].text()
                continue
            assert isinstance(at, int)
            (line,) = lines
            assert line.attrs["stroke"] == "#d1242f"
            assert float(line.attrs["x1"] or 0) == pytest.approx(step_x(at, n), abs=0.5)
            assert f"failed at step {at}" in fig.iter("svg")[0].text()
            # ... and the series' verdict is stated beside the chart.
            caption = fig.iter("figcaption")[0].text()
            assert s["verdict"]["reason"] in caption and f"failed at step {at}" in caption
            marked += 1
    # The divergences (stopped at step 2 of 3) and both NaN runs (step 7).
    assert marked == 4
    assert real_run.test(LR_HIGH)["series"]["train"]["verdict"]["failed_at"] == 2
    assert real_run.test(NAN_BATCH)["series"]["train"]["verdict"]["failed_at"] == 7


def test_non_finite_losses_are_marked_and_the_finite_part_drawn(real_run: Run) -> None:
    secs = sections(parse(real_run.html))
    # Marked: the test stopped at the NaN, the last recorded value.
    stopped = real_run.test(NAN_BATCH)["series"]["train"]["losses"]
    assert stopped[-1] == "nan" and all(not isinstance(v, str) for v in stopped[:-1])
    fig = charts(secs[NAN_BATCH])["train"]
    assert [len(seg) for seg in polyline_points(fig)] == [len(stopped) - 1]
    (marks,) = fig.iter("g", "non-finite")
    assert len(marks.iter("path")) == 1
    assert "nan at step 7" in fig.iter("svg")[0].text()
    # Unmarked: nothing stops it, so NaN from step 7 to the end, drawn as one band.
    losses = real_run.test(UNMARKED)["series"]["train"]["losses"]
    assert losses[6] != "nan" and set(losses[7:]) == {"nan"}
    fig = charts(secs[UNMARKED])["train"]
    assert [len(seg) for seg in polyline_points(fig)] == [7]
    (band,) = fig.iter("g", "non-finite")[0].iter("rect")
    assert float(band.attrs["x"] or 0) == pytest.approx(step_x(7, len(losses)), abs=0.1)
    assert f"non-finite from step 7 ({len(losses) - 7} steps)" in fig.iter("svg")[0].text()
    # A test without a marker has no verdict of its own; its outcome is pytest's.
    assert "verdict no verdict" in " ".join(secs[UNMARKED].iter("div", "facts")[0].text().split())
    assert secs[UNMARKED].iter("h2")[0].text().startswith("PASSED ")


def test_non_finite_in_the_middle_breaks_the_line(real_run: Run) -> None:
    doc = real_run.doc
    t = next(t for t in doc["tests"] if t["nodeid"] == LEARNS)
    losses = t["series"]["train"]["losses"]
    losses[10], losses[20], losses[21] = "inf", "-inf", "nan"
    t["series"]["eval"]["losses"] = ["nan", "nan", "inf"]
    t["series"]["empty"] = copy.deepcopy(t["series"]["eval"])
    t["series"]["empty"]["losses"] = []
    figs = charts(sections(parse(html_report(doc)))[LEARNS])
    assert [len(seg) for seg in polyline_points(figs["train"])] == [10, 9, 18]
    (marks,) = figs["train"].iter("g", "non-finite")
    # A lone step is a cross; two steps in a row, 15 px apart, a band over both.
    assert len(marks.iter("path")) == 1 and len(marks.iter("rect")) == 1
    assert "non-finite from step 10 (3 steps)" in figs["train"].iter("svg")[0].text()
    # Nothing finite at all: axes and a note, no line, no failure.
    assert not figs["eval"].iter("polyline") and "no finite loss" in figs["eval"].text()
    assert not figs["empty"].iter("polyline") and "no loss recorded" in figs["empty"].text()


def test_summary_links_resolve_to_unique_valid_ids(real_run: Run) -> None:
    root = parse(real_run.html)
    ids = [n.attrs["id"] for n in root.iter() if "id" in n.attrs]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", i or "") for i in ids)
    hrefs = [a.attrs["href"] or "" for a in root.iter("a")]
    assert hrefs and all(h.startswith("#") and h[1:] in ids for h in hrefs)
    summary = root.iter("section")[0]
    assert summary.attrs["id"] == "summary"
    rows = summary.iter("tbody")[0].iter("tr")
    assert len(rows) == sum(len(t["series"]) for t in real_run.doc["tests"])
    secs = {s.attrs["id"]: s for s in root.iter("section", "test")}
    secs_by_node = sections(root)
    for row in rows:
        # The test links to its section, the series to its chart in that section.
        test_link, series_link = row.iter("a")
        target = secs[(test_link.attrs["href"] or "")[1:]]
        assert target.iter("h2")[0].iter("code")[0].text() == test_link.text()
        fig = charts(target)[series_link.text()]
        assert series_link.attrs["href"] == f"#{fig.attrs['id']}"
    # The rows: series, steps, start -> end, drop, verdict, outcome and top cause.
    cells = {(r.iter("a")[0].text(), r.iter("td")[1].text()): [c.text() for c in r.iter("td")]
             for r in rows}
    assert cells[(LR_HIGH, "train")][2:] == ["3", "144 → 2.63e+09", "x1.83e+07", "FAIL",
                                              "FAILED", "lr_too_high"]
    # The known-bad case: its verdict failed, as expected, so pytest counted it xfailed.
    assert cells[(KNOWN_BAD, "train")][5:7] == ["FAIL", "XFAIL"]
    assert charts(secs_by_node[KNOWN_BAD])["train"].iter("figcaption")[0].text().startswith(
        "FAIL train (judged")
    # No red badge for it: its card reads XFAIL and its verdict badge is not "fail"-coloured.
    assert not secs_by_node[KNOWN_BAD].iter("span", "fail")
    assert secs_by_node[KNOWN_BAD].iter("h2")[0].iter("span", "xfail")[0].text() == "XFAIL"
    assert cells[(LEARNS, "train")][5:] == ["PASS", "PASSED", "decrease"]
    assert cells[(LEARNS, "eval")][5] == "pass"


def test_header_counts(real_run: Run) -> None:
    root = parse(real_run.html)
    header = " ".join(root.iter("header")[0].text().split())
    # Counted as pytest counts them.
    assert header == "Loss trends 6 tests, 7 charts, seed 0: 2 failed 3 passed 1 xfailed"
    assert root.iter("title")[0].text() == "Loss trends: 6 tests, seed 0"
    doc = real_run.doc
    doc["tests"] = [real_run.test(LR_HIGH)]
    del doc["tests"][0]["series"]["train"]["losses"][1:]
    header = " ".join(parse(html_report(doc)).iter("header")[0].text().split())
    assert header == "Loss trends 1 test, 1 chart, seed 0: 1 failed"
    doc["tests"] = []
    assert "No test recorded a loss." in html_report(doc)


def test_no_network_references_and_no_script(real_run: Run) -> None:
    text = real_run.html
    for needle in ("http://", "https://", "src=", "<script", "<link", "url(", "@import",
                   "xmlns", "//"):
        assert needle not in text, needle
    assert text.startswith("<!DOCTYPE html>\n")


def test_everything_is_escaped(real_run: Run) -> None:
    doc = real_run.doc
    a, b = doc["tests"][0], doc["tests"][1]
    evil = 'test_curves.py::test_a[<b>&amp;"x"/y:z]'
    a["nodeid"] = evil
    b["nodeid"] = "test_curves.py::test_a[ b amp x y z]"  # slugifies like the first one
    a["verdict"]["reason"] = "<script>alert(1)</script> & more"
    a["diagnoses"] = [{"cause": "lr_too_high", "confidence": 0.9,
                       "evidence": '<img src=x onerror="alert(1)">', "fix": "lr < 0.1 & 'b'"}]
    a["warnings"] = ["</section><h1>x</h1>"]
    name = next(iter(a["series"]))
    a["series"]['<svg onload="x">'] = a["series"].pop(name)
    a["criteria"]["series"] = '<svg onload="x">'
    text = html_report(doc)
    for raw in ("<script", "<img", "<b>&amp;", "<h1>x", "<svg onload"):
        assert raw not in text, raw
    assert "&lt;b&gt;&amp;amp;&quot;x&quot;" in text
    root = parse(text)       # still well-formed: nothing broke out of its element
    secs = sections(root)
    assert evil in secs and b["nodeid"] in secs
    body = secs[evil].text()
    assert "<script>alert(1)</script> & more" in body
    assert '<img src=x onerror="alert(1)">' in body and "fix: lr < 0.1 & 'b'" in body
    assert '<svg onload="x">' in charts(secs[evil])
    ids = [n.attrs["id"] for n in root.iter() if "id" in n.attrs]
    assert len(ids) == len(set(ids))
    assert secs[evil].attrs["id"] != secs[b["nodeid"]].attrs["id"]
    assert all(re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", i or "") for i in ids)
    links = {a_.text(): a_.attrs["href"] for a_ in root.iter("section")[0].iter("a")}
    assert links[evil] == f"#{secs[evil].attrs['id']}"
    assert links[b["nodeid"]] == f"#{secs[b['nodeid']].attrs['id']}"


def _long_real_curve(losses: list[float], n: int, spike_at: int) -> list[float]:
    """A real curve stretched to ``n`` steps (log-linear interpolation), with minibatch-like
    ripples and one spike, late, to 10x the first loss."""
    out = []
    for i in range(n):
        pos = i * (len(losses) - 1) / (n - 1)
        k = min(int(pos), len(losses) - 2)
        frac = pos - k
        base = math.exp((1 - frac) * math.log(losses[k]) + frac * math.log(losses[k + 1]))
        out.append(base * (1 + 0.25 * math.sin(i * 1.7)))
    out[spike_at] = 10 * out[0]
    return out


def test_long_series_are_decimated_keeping_spikes(real_run: Run) -> None:
    doc = real_run.doc
    t = next(t for t in doc["tests"] if t["nodeid"] == DECADES)
    before = len(html_report(doc).encode())
    n, spike = 20000, 15000
    t["series"]["train"]["losses"] = _long_real_curve(t["series"]["train"]["losses"], n, spike)
    text = html_report(doc)
    grown = len(text.encode()) - before
    # 20000 points at full resolution would be ~240 kB of coordinates.
    assert grown < 16_000, grown
    fig = charts(sections(parse(text))[DECADES])["train"]
    (line,) = polyline_points(fig)
    assert len(line) <= 2 * MAX_POINTS + 2
    # The one-step spike is the top of the line, where it happened.
    top = min(line, key=lambda p: p[1])
    assert top[0] == pytest.approx(step_x(spike, n), abs=0.1)
    assert top[1] < PLOT_Y0 + 15
    # The first and the last step are kept.
    assert line[0][0] == PLOT_X0 and line[-1][0] == PLOT_X1


NUMERIC_ATTRS = ("x", "y", "x1", "x2", "y1", "y2", "cx", "cy", "r", "width", "height", "points",
                 "d")


@pytest.mark.parametrize("losses", [
    [1e308, -1e308, 0.0],              # a span that overflows a float
    [5e-324, 1.7e308],                 # 630 decades, from a subnormal
    [1.0, 1.0 + 1e-15, 1.0],           # a span lost in rounding
    [-5.0, -4.0, "nan", -4.5],
    [0.0] * 5,
    [7.0],
])
def test_extreme_losses_give_finite_coordinates(real_run: Run, losses: list[Any]) -> None:
    doc = real_run.doc
    t = next(t for t in doc["tests"] if t["nodeid"] == DECADES)
    t["series"]["train"]["losses"] = losses
    fig = charts(sections(parse(html_report(doc)))[DECADES])["train"]
    for el in fig.iter("svg")[0].iter():
        for name in NUMERIC_ATTRS:
            if el.tag != "svg" and name in el.attrs:
                for tok in re.split(r"[\s,MmLl]+", el.attrs[name] or ""):
                    assert not tok or math.isfinite(float(tok)), (el.tag, name, tok)
    assert len(fig.iter("text")) < 40


def test_a_test_without_series_keeps_its_row_and_section(real_run: Run) -> None:
    doc = real_run.doc
    t = next(t for t in doc["tests"] if t["nodeid"] == LR_HIGH)
    t["series"] = {}
    root = parse(html_report(doc))
    summary = root.iter("section")[0]
    width = len(summary.iter("th"))
    for row in summary.iter("tbody")[0].iter("tr"):
        assert sum(int(td.attrs.get("colspan") or 1) for td in row.iter("td")) == width
    row = next(r for r in summary.iter("tr") if r.iter("a") and r.iter("a")[0].text() == LR_HIGH)
    assert "no series recorded" in row.text() and "FAIL" in row.text()
    sec = sections(root)[LR_HIGH]
    assert not sec.iter("svg") and "No series recorded." in sec.text()

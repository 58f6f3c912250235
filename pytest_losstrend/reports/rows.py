"""The words and rows every report shows alike: outcomes as pytest words them, one row per
recorded series, the mutation score line. Plain data in, strings out; imports nothing of the
package but the report's types, so the terminal, Markdown and HTML reports all build on it.
"""

from __future__ import annotations

from typing import Any, TypedDict

from pytest_losstrend.reports.schema import InvariantData, TestResult


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


#: pytest's outcome words, in the order of its summary line ("1 failed, 2 passed, 4 xfailed").
OUTCOMES = ("failed", "passed", "skipped", "xfailed", "xpassed")
#: The word pytest's verbose output and its short summary use for each outcome.
OUTCOME_WORDS = {"passed": "PASSED", "failed": "FAILED", "skipped": "SKIPPED",
                 "xfailed": "XFAIL", "xpassed": "XPASS"}


def outcome_word(result: TestResult) -> str:
    """The test's outcome as pytest prints it (``PASSED``, ``FAILED``, ``XFAIL``...)."""
    outcome = str(result.get("outcome") or "")
    return OUTCOME_WORDS.get(outcome, outcome.upper() or "-")


def outcome_counts(results: list[TestResult]) -> str:
    """The tests counted by outcome as pytest's summary line counts them, e.g.
    ``"1 failed, 2 passed, 4 xfailed"`` (empty when there are none)."""
    outcomes = [str(r.get("outcome")) for r in results]
    return ", ".join(f"{outcomes.count(o)} {o}" for o in OUTCOMES if outcomes.count(o))


class SeriesRow(TypedDict):
    """One row of the terminal, Markdown and HTML tables: a series of a test, its figures as
    the tables print them."""

    series: str
    steps: int
    start: str
    end: str
    drop: str
    status: str
    #: The reference level the series was judged against ("-": none).
    reference: str
    #: A loss_fails test's judged series that failed, as expected.
    expected: bool
    outcome: str
    reruns: int
    why: str
    losses: list[float]


def series_rows(result: TestResult) -> list[SeriesRow]:
    """One row per recorded series of a test: what the terminal and Markdown tables show.

    ``status`` is the loss verdict (the judged series in capitals, the others in lower case,
    ``REGRESSED`` when the baseline gate failed the test); ``outcome`` is pytest's outcome of
    the whole test, which a test body that raised or an expected failure (``loss_fails``)
    makes differ from the verdict.
    """
    rows: list[SeriesRow] = []
    for name, s in result["series"].items():
        v = s["verdict"]
        st = v.get("stats", {})
        judged = result["criteria"].get("series") == name and result.get("verdict") is not None
        # The judged series' verdict in capitals; the others are shown for information.
        status = v["status"].upper() if judged else v["status"]
        diagnoses = result.get("diagnoses") or []
        why = diagnoses[0]["cause"] if judged and diagnoses else v.get("kind", "")
        comp = result.get("baseline")
        gated = [r["metric"] for r in comp.get("rows", [])
                 if r["series"] == name and r["regressed"]] if comp and comp.get("gated") else []
        if gated:
            # The curve may pass on its own; the baseline gate is what failed the test.
            status, why = "REGRESSED", "baseline " + ",".join(dict.fromkeys(gated))
        rows.append({
            "series": name, "steps": len(s["losses"]), "start": _g(st.get("start")),
            "end": _g(st.get("end")), "drop": _drop(st.get("drop")), "status": status,
            "reference": _g(s["reference"]["value"]) if "reference" in s else "-",
            "expected": judged and result.get("marker") == "loss_fails"
            and v["status"] == "fail",
            "outcome": outcome_word(result), "reruns": int(result.get("reruns") or 0),
            "why": why, "losses": s["losses"],
        })
    return rows


def score_line(data: TestResult) -> str | None:
    """``"mutation score 6/8 (75%): missed a, b"`` for a mutated test's result, else None."""
    score = data.get("mutation_score")
    if not score:
        return None
    k, n = score["caught"], score["applied"]
    pct = f"{100 * k / n:.0f}%" if n else "-"
    missed = [m["mutation"] for m in data.get("mutants", []) if not m["caught"]]
    tail = f": missed {', '.join(missed)}" if missed else ""
    return f"mutation score {k}/{n} ({pct}){tail}"


def invariant_state(inv: InvariantData) -> str:
    """``"held"``, ``"broken"`` or ``"allowed"`` (broken, but allowed by the test's ``allow``).

    Example:
        >>> invariant_state({"name": "negative_loss", "held": False, "evidence": "",
        ...                  "allowed": True})
        'allowed'
    """
    if inv["held"]:
        return "held"
    return "allowed" if inv.get("allowed") else "broken"


def invariant_summary(result: TestResult) -> str | None:
    """One line on a test's training invariants, None when none was checked.

    Example:
        >>> invariant_summary({"invariants": [
        ...     {"name": "stale_gradients", "held": False, "evidence": "..."},
        ...     {"name": "negative_loss", "held": True, "evidence": "..."}]})
        '1/2 held; broken: stale_gradients'
    """
    invariants = result.get("invariants") or []
    if not invariants:
        return None
    held = sum(1 for i in invariants if i["held"])
    line = f"{held}/{len(invariants)} held"
    for state in ("broken", "allowed"):
        names = [i["name"] for i in invariants if invariant_state(i) == state]
        if names:
            line += f"; {state}: {', '.join(names)}"
    return line

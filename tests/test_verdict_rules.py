"""The verdict's rules: documented, in the README's order, overridable constants.

The README's "How the verdict works" lists the checks in the order the verdict runs them. Once
that list is the generated one (``rules.readme_bullets()``: each rule's docstring first line),
it must match the rules exactly. Until then it is the hand-written list, and the rules' names
and order are checked against its bullets through the mapping below.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest

from pytest_losstrend.verdict import constants, rules, trend
from pytest_losstrend.verdict.criteria import Criteria

README = Path(__file__).resolve().parent.parent / "README.md"

# The hand-written README list, bullet by bullet (a phrase that identifies the bullet), and the
# rules each bullet describes. Rules in one bullet may run in any order among themselves.
HAND_WRITTEN_BULLETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("a non-finite loss", ("divergence_bound", "non_finite")),
    ("**divergence**", ("divergence",)),
    ("**a spike that does not recover**, or **a late rise**", ("spike", "late_rise")),
    ("**an overall rise**", ("rise",)),
    ("**a frozen loss**", ("frozen",)),
    ("**oscillation**", ("oscillation",)),
    ("**a stall**", ("stall",)),
    ("**Pass**", ("decrease",)),
    ("**Inconclusive**", ("noisy",)),
)
# Rules the hand-written list does not name (the README covers them elsewhere: the empty run
# under "a test that records nothing", min_points and below under "Criteria").
NOT_IN_HAND_WRITTEN_LIST = frozenset({"empty", "short_run", "above_ceiling"})
# The hand-written list names "frozen" after the rises; the verdict checks it before them,
# since a constant curve has no noise scale for the rise rules' levels.
HAND_WRITTEN_ORDER_DIFFERS = frozenset({"frozen"})


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## How the verdict works")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _bullets(section: str) -> list[str]:
    """Each bullet of the section with its continuation lines, in order."""
    out: list[str] = []
    for line in section.splitlines():
        if re.match(r"\s*- ", line):
            out.append(line.strip()[2:])
        elif out and line.startswith("  ") and line.strip():
            out[-1] += " " + line.strip()
        elif not line.strip() and out:
            out.append("")  # a blank line ends the bullet
    return [b for b in out if b]


def _names() -> list[str]:
    return [r.__name__ for r in rules.RULES]


def test_every_rule_documents_its_algorithm_and_constants() -> None:
    for rule in rules.RULES:
        doc = inspect.getdoc(rule)
        assert doc, f"{rule.__name__} has no docstring"
        first, *rest = doc.splitlines()
        assert re.match(r"\*\*[^*]+\*\*", first), f"{rule.__name__}: first line {first!r}"
        assert rest and "".join(rest).strip(), f"{rule.__name__} documents no algorithm"
        # Every constant the rule reads is named in its docstring.
        used = set(re.findall(r"constants\.([A-Z_]+)", inspect.getsource(rule)))
        used.discard("ADVICE")  # the advice text, not a calibrated constant
        missing = sorted(name for name in used if name not in doc)
        assert not missing, f"{rule.__name__} reads {missing} without documenting them"


def test_rule_names_are_unique_and_the_last_rule_always_decides() -> None:
    names = _names()
    assert len(set(names)) == len(names)
    assert names[-1] == "noisy"
    curve = trend.Curve(np.linspace(1.0, 1.01, 30), Criteria())
    assert rules.noisy(curve) is not None


def test_readme_lists_the_rules_in_their_order() -> None:
    section = _section()
    generated = rules.readme_bullets()
    if generated.splitlines()[0] in section:
        # The README carries the generated list: it must be exactly the rules' first lines.
        assert generated in section, "README's rule list is stale: paste rules.readme_bullets()"
        return
    bullets = _bullets(section)
    positions = []
    for phrase, _ in HAND_WRITTEN_BULLETS:
        hits = [i for i, b in enumerate(bullets) if phrase in b]
        assert len(hits) == 1, f"README bullet {phrase!r} found {len(hits)} times"
        positions.append(hits[0])
    assert positions == sorted(positions), "README bullets moved: update HAND_WRITTEN_BULLETS"

    mapped = [name for _, group in HAND_WRITTEN_BULLETS for name in group]
    names = _names()
    assert set(mapped) | NOT_IN_HAND_WRITTEN_LIST == set(names), (
        "a rule the README does not describe (or a stale name): "
        f"{sorted(set(names) ^ (set(mapped) | NOT_IN_HAND_WRITTEN_LIST))}"
    )
    # The README's order is the rules' order, bullet by bullet, except the known difference.
    group_of = {name: i for i, (_, group) in enumerate(HAND_WRITTEN_BULLETS) for name in group}
    in_readme = [n for n in names if n in group_of and n not in HAND_WRITTEN_ORDER_DIFFERS]
    assert [group_of[n] for n in in_readme] == sorted(group_of[n] for n in in_readme)
    for name in HAND_WRITTEN_ORDER_DIFFERS:
        # Still a difference: once the README is fixed, drop the name from the set.
        after = [n for n in names[names.index(name) + 1 :] if n in group_of]
        assert any(group_of[n] < group_of[name] for n in after), (
            f"README now lists {name} in the rules' order: remove it from "
            "HAND_WRITTEN_ORDER_DIFFERS"
        )


def test_readme_bullets_are_the_docstrings_first_lines() -> None:
    lines = rules.readme_bullets().splitlines()
    assert len(lines) == len(rules.RULES)
    for line, rule in zip(lines, rules.RULES, strict=True):
        assert line == "- " + (inspect.getdoc(rule) or "").splitlines()[0].replace("``", "`")


def test_constants_are_importable_from_trend() -> None:
    for name in ("ALPHA", "Z_BAD", "Z_STALL", "Z_PASS", "DIVERGENCE_FACTOR", "FROZEN_RTOL",
                 "MIN_UNIT", "OSCILLATION_RHO", "OSCILLATION_Z", "ADVICE"):
        assert getattr(trend, name) == getattr(constants, name)


def test_an_overridden_constant_takes_effect(monkeypatch: pytest.MonkeyPatch) -> None:
    # benchmarks/calibrate.py --set overrides the constants module: every rule must see it.
    x = np.exp(-np.arange(40) / 10.0)
    assert trend.judge(x, Criteria()).kind == "decrease"
    monkeypatch.setattr(constants, "FROZEN_RTOL", 2.0)
    assert trend.judge(x, Criteria()).kind == "frozen"
    monkeypatch.setattr(constants, "FROZEN_RTOL", 1e-12)
    monkeypatch.setattr(constants, "DIVERGENCE_BOUND", 0.5)
    assert trend.judge(x[::-1].copy(), Criteria()).kind == "divergence"
    monkeypatch.setattr(constants, "DIVERGENCE_BOUND", 1e4)
    monkeypatch.setattr(constants, "ALPHA", 0.0)
    monkeypatch.setattr(constants, "Z_PASS", np.inf)
    assert trend.judge(x, Criteria()).kind == "noisy"

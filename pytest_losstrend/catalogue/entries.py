"""The catalogue of known-bad training configurations.

Each entry (a :class:`~pytest_losstrend.catalogue.scenarios.Scenario`) is a real, small training
run with one known fault and its healthy twin: a name, the framework, the training loop for both
sides, the verdict and the top cause the bad side must get, a paragraph of explanation and the fix.
``pytest --losstrend-catalogue`` runs them as tests; ``docs/catalogue.md`` is generated from
them (``python -m pytest_losstrend.catalogue > docs/catalogue.md``).

Teams add their own entries with the ``pytest_losstrend_catalogue_entries`` hook; the built-in
entries come through the same hook.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_losstrend.catalogue.scenarios import Scenario

def builtin_entries() -> tuple[Scenario, ...]:
    """The entries that ship with pytest-losstrend."""
    from pytest_losstrend.catalogue.scenarios import SCENARIOS

    return SCENARIOS


def entries(config: Any = None) -> tuple[Scenario, ...]:
    """Every catalogue entry: through the ``pytest_losstrend_catalogue_entries`` hook when a
    pytest ``config`` is given (the built-in entries included), else the built-in ones.

    Raises:
        ValueError: when two entries share a name.
    """
    if config is None:
        found: list[Scenario] = list(builtin_entries())
    else:
        found = [e for batch in config.hook.pytest_losstrend_catalogue_entries() if batch
                 for e in batch]
    names = [e.name for e in found]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"catalogue entries with the same name: {', '.join(dupes)}")
    return tuple(found)


def markdown(items: tuple[Scenario, ...] | None = None) -> str:
    """The catalogue as a Markdown page (what ``docs/catalogue.md`` holds)."""
    items = builtin_entries() if items is None else items
    lines = [
        "# The catalogue of known-bad training configurations",
        "",
        "Generated from `pytest_losstrend/catalogue/scenarios.py` by "
        "`python -m pytest_losstrend.catalogue > docs/catalogue.md`; a test fails when this "
        "page is stale. `pytest --losstrend-catalogue` runs every entry as tests: the bad side "
        "must fail with its cause first among the diagnoses, the healthy twin must pass.",
        "",
        "| entry | framework | expected verdict | top cause | criteria |",
        "|---|---|---|---|---|",
    ]
    for e in items:
        crit = ", ".join(f"`{k}={v!r}`" for k, v in e.criteria.items()) or "defaults"
        lines.append(f"| [{e.name}](#{e.name.replace('_', '-')}) | {e.framework} | "
                     f"{e.bad_status} | `{e.cause}` | {crit} |")
    for e in items:
        lines += ["", f"## {e.name}", "", f"- **Framework:** {e.framework}",
                  f"- **Expected:** the verdict {e.bad_status}s with `{e.cause}` first.",
                  "", " ".join(e.explanation.split()), "", f"**Fix:** {' '.join(e.fix.split())}"]
    return "\n".join(lines) + "\n"


def main() -> int:
    """Print the catalogue page."""
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

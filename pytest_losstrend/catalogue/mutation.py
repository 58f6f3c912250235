"""What a mutation is (:class:`Mutation`), apart from running mutants (``mutate``), so that the
training loop (``fit``), which applies one, and ``mutate``, which runs the loop, do not import
each other. Users import these names from :mod:`pytest_losstrend.catalogue.mutate`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Frameworks a mutation can name: ``"torch"`` and ``"keras"`` (the paths of ``fit``).
FRAMEWORKS = ("torch", "keras")


class MutationNotApplicable(Exception):
    """Raised inside ``run_fit`` when the mutation cannot act on this run (e.g. ``on_data`` on a
    DataLoader): the mutant is then not counted."""


@dataclass(frozen=True)
class Mutation:
    """One injected training bug.

    Example:
        >>> def halve_lr(opt, model, framework):
        ...     for g in opt.param_groups:
        ...         g["lr"] /= 2
        ...     return opt
        >>> m = Mutation("lr_half", "learning rate halved", frameworks=("torch",),
        ...              on_optimizer=halve_lr)
        >>> m.applies("torch"), m.applies("keras")
        (True, False)
    """

    name: str
    description: str
    frameworks: tuple[str, ...] = FRAMEWORKS
    on_data: Callable[[Any, Any, bool], tuple[Any, Any, bool]] | None = None
    on_model: Callable[[Any, str], None] | None = None
    on_optimizer: Callable[[Any, Any, str], Any] | None = None
    skip_zero_grad: bool = False

    def applies(self, framework: str | None) -> bool:
        """Whether this mutation can act on a ``fit`` run of ``framework``."""
        return framework in self.frameworks

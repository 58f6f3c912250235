"""The checks ``losstrend.fit`` shares between its torch and Keras loops.

Which framework a model belongs to, what kind of data it was given, whether ``X`` and ``y`` match,
how a target that would broadcast is explained, and the mutation's ``on_data`` hook. A module of
its own, below :mod:`~pytest_losstrend.catalogue.fit` (the dispatch) and the two loops
(:mod:`~pytest_losstrend.catalogue.fit_torch`, :mod:`~pytest_losstrend.catalogue.fit_keras`), so
that the loops import the checks without importing the dispatch that imports them: no circle.
It tells frameworks apart by their classes' module names, so it imports none.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_losstrend.catalogue.mutation import MutationNotApplicable

if TYPE_CHECKING:
    from pytest_losstrend.catalogue.mutation import Mutation


def mutated_arrays(mutation: Mutation, data: Any, shuffle: bool) -> tuple[Any, bool]:
    """``(X, y)`` and the shuffle flag after the mutation's ``on_data``."""
    if data_kind(data, "data") != "arrays":
        # A loader or a dataset decides its own order and contents.
        raise MutationNotApplicable(f"{mutation.name} needs (X, y) arrays as data")
    x, y, shuffle = mutation.on_data(data[0], data[1], shuffle)  # type: ignore[misc]
    return (x, y), shuffle


# -- classifying inputs --------------------------------------------------------------------


def type_roots(obj: Any) -> set[str]:
    """The top-level packages of the modules defining ``obj``'s class and its bases."""
    return {(c.__module__ or "").split(".")[0] for c in type(obj).__mro__}


def framework_of(model: Any) -> str:
    """``"torch"`` or ``"keras"``: the framework of ``model``, a TypeError for anything else."""
    roots = type_roots(model)
    if "torch" in roots and hasattr(model, "named_parameters"):
        return "torch"
    if "keras" in roots or ("tensorflow" in roots and hasattr(model, "compile")):
        return "keras"
    raise TypeError(
        f"fit(): model must be a torch nn.Module or a Keras model, got {type(model).__name__}"
    )


def data_kind(data: Any, arg: str) -> str:
    """``"arrays"``, ``"loader"`` (torch DataLoader) or ``"dataset"`` (tf.data.Dataset)."""
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise TypeError(f"fit(): {arg} must be (X, y), got a sequence of {len(data)} items")
        return "arrays"
    roots = type_roots(data)
    if "torch" in roots and hasattr(data, "batch_sampler"):
        return "loader"
    if "tensorflow" in roots and hasattr(data, "cardinality"):
        return "dataset"
    raise TypeError(
        f"fit(): {arg} must be (X, y) arrays, a torch DataLoader or a tf.data.Dataset, "
        f"got {type(data).__name__}"
    )


def check_lengths(x: Any, y: Any, arg: str) -> int:
    """The rows of ``x`` and ``y``; a ValueError naming ``arg`` when they differ or are 0."""
    n, m = len(x), len(y)
    if n != m:
        raise ValueError(
            f"fit(): {arg} has X and y of different lengths: X has {n} rows "
            f"(shape {tuple(x.shape)}), y has {m} (shape {tuple(y.shape)})"
        )
    if n == 0:
        raise ValueError(f"fit(): {arg} is empty (X and y have 0 rows)")
    return n


def shape_error(pred: tuple[int, ...], target: tuple[int, ...], loss: str, arg: str) -> str:
    """The message for a target that would broadcast against the output, with the fix."""
    hint = ""
    if len(target) == len(pred) - 1 and pred[-1:] == (1,):
        hint = " (reshape y with y.reshape(-1, 1))"
    elif len(target) == len(pred) + 1 and target[-1:] == (1,):
        hint = " (flatten y with y.reshape(-1))"
    return (
        f"fit(): the model's output has shape {pred} but y in {arg} has shape {target}; "
        f"{loss} compares them element by element, so they would broadcast and every "
        f"prediction would be compared with every target: give y the output's shape{hint}"
    )

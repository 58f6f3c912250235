"""Keras 3 ``fit`` on arrays reshuffles its batches every epoch under the seed.

Why this is needed: under a TensorFlow global seed (``tf.random.set_seed``, which
``keras.utils.set_random_seed`` and so the fixture's seeding call), Keras 3 replays the *same*
batch order every epoch of ``fit(x, y, shuffle=True)`` on arrays. Keras' array adapter draws
each epoch's permutation with ``tf.random.shuffle`` inside its ``tf.data`` pipeline; the op
gets fixed seeds (the global seed and a counter) when the pipeline is traced, and every epoch's
new iterator starts the op's generator again from them (tensorflow#29558). Every ``fit`` on the
same arrays under the same seed replays that permutation too. A per-batch curve then repeats
with the period of an epoch, which reads as oscillation. ``Dataset.shuffle`` does reshuffle
each iteration under a global seed (its seed generator outlives the iterators), so
``tf.data`` pipelines need nothing.

The fix, while :func:`arm` is in force (from the fixture's seeding to its teardown): the
adapter builds its pipeline as it always does, except that a ``tf.random.shuffle`` without a
seed, under a global seed, becomes a ``stateless_shuffle`` keyed by the seeds TensorFlow would
have given the op and the index of the pipeline since :func:`arm`, and by an epoch counter (a
``tf.Variable`` the pipeline advances once per iteration). Same seed and same test code, same
batches bit for bit; another epoch or another ``fit``, another order. Without a global seed, or
with another Keras whose shuffle is seeded or drawn otherwise, Keras' own shuffling is left as
it is.

The substitution is made by giving ``ArrayDataAdapter.get_tf_dataset``, for the length of one
call, a ``tf`` whose ``random.shuffle`` is the one above (the method imports ``tf`` from
``keras.src.utils.module_utils`` when called), under a lock; Keras code in another thread that
imports ``tf`` that way in that instant gets the same stand-in, which differs from ``tf`` in
nothing else. Keras and TensorFlow are imported only where used, and only once Keras is
loaded.
"""

from __future__ import annotations

import hashlib
import importlib
import sys
import threading
from collections.abc import Callable
from typing import Any

_ADAPTER_MODULE = "keras.src.trainers.data_adapters.array_data_adapter"
_LAZY_TF_MODULE = "keras.src.utils.module_utils"
#: The wrapped method's attribute holding its :class:`_State`; it also marks the method as
#: wrapped, so that installing twice wraps once.
_STATE = "__losstrend_reshuffle_state__"
#: The adapter attribute that keeps a pipeline's epoch counter alive as long as the adapter:
#: a traced function holds its variables weakly.
_KEEP = "_losstrend_epoch_counters"


class _State:
    """Whether the reshuffling is in force, and how many pipelines it built since armed.

    Kept on the wrapped method, not in this module: the wrapper lives as long as Keras, and
    this module may be imported again meanwhile (pytester's in-process runs drop the modules
    they imported), which must find the same state.
    """

    def __init__(self) -> None:
        self.armed = False
        self.pipelines = 0
        self.lock = threading.RLock()


def arm() -> bool:
    """Make Keras array fits reshuffle every epoch, from now until :func:`disarm`; restart the
    count of pipelines, so that the same seed and code give the same batches.

    Returns whether it is in force (False when Keras has no array adapter to wrap).
    """
    state = _install()
    if state is None:
        return False
    with state.lock:
        state.pipelines = 0
        state.armed = True
    return True


def disarm() -> None:
    """Give Keras its own shuffling back (the wrapped method then calls Keras' as it is)."""
    state = _installed_state(_adapter_class())
    if state is not None:
        with state.lock:
            state.armed = False


def is_armed() -> bool:
    """Whether Keras array fits reshuffle every epoch now."""
    state = _installed_state(_adapter_class())
    return state is not None and state.armed


def _adapter_class(*, load: bool = False) -> Any:
    """Keras' ``ArrayDataAdapter`` if Keras is loaded (and ``load``: its module imported if
    need be), else None."""
    module = sys.modules.get(_ADAPTER_MODULE)
    if module is None and load and "keras" in sys.modules:
        try:
            module = importlib.import_module(_ADAPTER_MODULE)
        except ImportError:  # pragma: no cover - Keras 2 or tf_keras
            return None
    return getattr(module, "ArrayDataAdapter", None)


def _installed_state(cls: Any) -> Any:
    """The state of the wrapper installed on ``cls``, or None."""
    return getattr(getattr(cls, "get_tf_dataset", None), _STATE, None)


def _install() -> Any:
    """Wrap ``ArrayDataAdapter.get_tf_dataset`` once; its state, or None if this Keras has
    no such method."""
    cls = _adapter_class(load=True)
    original = getattr(cls, "get_tf_dataset", None)
    if original is None:
        return None
    state = _installed_state(cls)
    if state is None:
        state = _State()
        cls.get_tf_dataset = _wrap(original, state)
    return state


def _wrap(original: Callable[..., Any], state: _State) -> Callable[..., Any]:
    def get_tf_dataset(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not state.armed or not getattr(self, "_shuffle", False):
            return original(self, *args, **kwargs)
        import tensorflow as tf

        if tf.distribute.has_strategy():
            # A distribution strategy's scope would make the counter a distributed variable.
            return original(self, *args, **kwargs)
        module_utils: Any = sys.modules[_LAZY_TF_MODULE]
        with state.lock:
            index = state.pipelines
            state.pipelines += 1
            with tf.init_scope(), tf.device("/CPU:0"):
                counter = tf.Variable(-1, dtype=tf.int64, trainable=False,
                                      name="losstrend_epoch")
            lazy_tf = module_utils.tensorflow
            module_utils.tensorflow = _TensorFlow(lazy_tf, _reshuffle(tf, counter, index))
            try:
                dataset = original(self, *args, **kwargs)
            finally:
                module_utils.tensorflow = lazy_tf
        setattr(self, _KEEP, [*getattr(self, _KEEP, []), counter])
        return dataset

    setattr(get_tf_dataset, _STATE, state)
    get_tf_dataset.__wrapped__ = original  # type: ignore[attr-defined]
    get_tf_dataset.__doc__ = original.__doc__
    return get_tf_dataset


def _reshuffle(tf: Any, counter: Any, index: int) -> Callable[..., Any]:
    """A ``tf.random.shuffle`` that shuffles anew each time its pipeline is iterated."""

    def shuffle(value: Any, seed: Any = None, name: Any = None) -> Any:
        if seed is not None:
            return tf.random.shuffle(value, seed=seed, name=name)
        # The seeds TensorFlow gives an unseeded op here: (None, None) without a global seed,
        # when the op draws fresh entropy every epoch (and nothing is reproducible anyway).
        seed1, seed2 = tf.compat.v1.random.get_seed(None)
        if seed1 is None:
            return tf.random.shuffle(value, name=name)
        key = tf.constant(shuffle_key(seed1, seed2, index), dtype=tf.int64)
        epoch = counter.assign_add(1)
        return tf.random.experimental.stateless_shuffle(
            value, seed=tf.stack([key, epoch]), name=name
        )

    return shuffle


def shuffle_key(seed1: int, seed2: int, index: int) -> int:
    """The stateless shuffle's key for the ``index``-th pipeline under the op seeds
    ``(seed1, seed2)``: a 63-bit hash, so that pipelines get unrelated orders.

    Example:
        >>> shuffle_key(0, 0, 0) == shuffle_key(0, 0, 0) != shuffle_key(0, 0, 1)
        True
    """
    digest = hashlib.blake2b(f"{seed1} {seed2} {index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class _Forward:
    """Forwards every attribute to ``target`` but those set on it."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


class _Random(_Forward):
    """``tf.random`` but for ``shuffle``."""

    def __init__(self, random: Any, shuffle: Callable[..., Any]) -> None:
        super().__init__(random)
        self.shuffle = shuffle


class _TensorFlow(_Forward):
    """``tf`` but for ``tf.random.shuffle``."""

    def __init__(self, tf: Any, shuffle: Callable[..., Any]) -> None:
        super().__init__(tf)
        self.random = _Random(tf.random, shuffle)

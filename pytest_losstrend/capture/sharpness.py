"""The sharpness of a loss: its top Hessian eigenvalue, by power iteration on Hessian-vector
products (Pearlmutter 1994), for torch and TensorFlow/Keras models.

Gradient descent on a quadratic diverges once ``lr > 2 / λ_max``, so a measured ``λ_max`` turns
"the loss went up" into "the learning rate is past the stability limit". Each iteration costs
about two gradients; 20-50 iterations on one fixed batch are enough (research digest, section
2). Each function imports its framework itself: importing this module costs nothing.

The starting vector comes from a private, fixed-seed generator, so measuring never moves the
global random state the test runs under, and the same model gives the same figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

#: Seed of the power iteration's starting vector.
START_SEED = 0


def power_iteration(
    matvec: Callable[[Any], Any],
    start: Any,
    dot: Callable[[Any, Any], float],
    *,
    iters: int = 50,
    tol: float = 1e-4,
) -> float:
    """The eigenvalue of largest magnitude of the symmetric operator ``matvec``, as the
    Rayleigh quotient ``vᵀAv`` of the normalised iterate.

    Stops after ``iters`` products, or once the quotient changes by at most ``tol`` relative to
    itself between two iterations. ``start`` is any vector type supporting ``/`` by a float
    (a flat torch or TensorFlow tensor); ``dot`` returns a Python float. Returns 0.0 when
    ``matvec`` maps the iterate to zero (a zero operator), NaN when it is not finite.
    """
    v = start / math.sqrt(dot(start, start))
    previous: float | None = None
    quotient = 0.0
    for _ in range(max(1, iters)):
        av = matvec(v)
        quotient = dot(v, av)
        norm = math.sqrt(max(dot(av, av), 0.0))
        if not (math.isfinite(quotient) and math.isfinite(norm)):
            return math.nan
        if norm == 0.0:
            return 0.0
        v = av / norm
        if previous is not None and abs(quotient - previous) <= tol * abs(quotient):
            break
        previous = quotient
    return quotient


def top_eigenvalue(
    hvp: Callable[[Any], Any],
    make_start: Callable[[], Any],
    dot: Callable[[Any, Any], float],
    *,
    iters: int = 50,
    tol: float = 1e-4,
) -> float:
    """The algebraically largest eigenvalue of the symmetric operator ``hvp``.

    Power iteration finds the eigenvalue of largest *magnitude*. When that one is negative
    (a saddle, or a concave direction dominating), the operator is shifted by it: ``H - μI``
    has non-negative eigenvalues, its top one is ``λ_max - μ``, and a second run finds it.
    """
    mu = power_iteration(hvp, make_start(), dot, iters=iters, tol=tol)
    if not mu < 0.0:  # positive, zero or NaN: nothing to shift by
        return mu

    def shifted(v: Any) -> Any:
        return hvp(v) - mu * v

    return power_iteration(shifted, make_start(), dot, iters=iters, tol=tol) + mu


def top_hessian_eigenvalue_torch(
    model: Any,
    loss_fn: Callable[[Any, Any], Any],
    x: Any,
    y: Any,
    *,
    iters: int = 50,
    tol: float = 1e-4,
) -> float:
    """The top Hessian eigenvalue of ``loss_fn(model(x), y)`` with respect to the trainable
    parameters (``requires_grad``) of a torch module.

    The model runs in eval mode (dropout and batch norm in train mode would change the Hessian
    between products) and is restored to its modes after. Hessian-vector products are double
    backward passes through one graph, built once. Parameters the loss does not depend on
    have zero Hessian rows and are left out.

    Example:
        >>> top_hessian_eigenvalue_torch(model, torch.nn.functional.mse_loss, x, y)
        103.79
    """
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (requires_grad=True)")
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.enable_grad():
            loss = loss_fn(model(x), y)
            grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        # A gradient without a graph is constant in the parameters: zero curvature.
        pairs = [(p, g) for p, g in zip(params, grads, strict=True)
                 if g is not None and g.requires_grad]
        if not pairs:
            return 0.0
        used = [p for p, _ in pairs]
        flat_grads = [g for _, g in pairs]
        sizes = [p.numel() for p in used]
        dtype = flat_grads[0].dtype
        device = flat_grads[0].device
        gen = torch.Generator().manual_seed(START_SEED)

        def hvp(v: Any) -> torch.Tensor:
            parts = [c.view_as(p) for c, p in zip(v.split(sizes), used, strict=True)]
            out = torch.autograd.grad(flat_grads, used, parts, retain_graph=True,
                                      allow_unused=True)
            return torch.cat([
                (h if h is not None else torch.zeros_like(p)).reshape(-1)
                for h, p in zip(out, used, strict=True)
            ])

        def make_start() -> torch.Tensor:
            return torch.randn(sum(sizes), generator=gen, dtype=torch.float64).to(
                device=device, dtype=dtype)

        def dot(a: torch.Tensor, b: torch.Tensor) -> float:
            # Accumulate in float64: a float32 sum of many products loses the digits the
            # relative stopping tolerance compares.
            return float(torch.dot(a.double(), b.double()))

        return top_eigenvalue(hvp, make_start, dot, iters=iters, tol=tol)
    finally:
        for m, training in modes:
            m.training = training


def top_hessian_eigenvalue_tf(
    model: Any,
    loss_fn: Callable[[Any, Any], Any],
    x: Any,
    y: Any,
    *,
    iters: int = 50,
    tol: float = 1e-4,
) -> float:
    """The top Hessian eigenvalue of ``loss_fn(y, model(x))`` (the Keras argument order) with
    respect to the model's trainable variables, for a Keras model on the TensorFlow backend.

    Each Hessian-vector product is a nested ``tf.GradientTape``: the outer tape differentiates
    ``gradient · v``. The model is called with ``training=False``. Variables the loss does not
    depend on contribute zero rows.

    Example:
        >>> top_hessian_eigenvalue_tf(model, keras.losses.MeanSquaredError(), x, y)
        103.79
    """
    import numpy as np
    import tensorflow as tf

    variables = list(model.trainable_variables)
    if not variables:
        raise ValueError("the model has no trainable variables")
    shapes = [tuple(v.shape) for v in variables]
    sizes = [math.prod(s) for s in shapes]
    dtype = tf.as_dtype(variables[0].dtype)
    x = tf.convert_to_tensor(x)
    y = tf.convert_to_tensor(y)
    rng = np.random.default_rng(START_SEED)

    def flatten(parts: list[Any]) -> Any:
        return tf.concat([
            tf.reshape(tf.zeros(s, dtype) if h is None else tf.cast(h, dtype), [-1])
            for h, s in zip(parts, shapes, strict=True)
        ], axis=0)

    def hvp(v: Any) -> Any:
        parts = [tf.reshape(c, s) for c, s in zip(tf.split(v, sizes), shapes, strict=True)]
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = loss_fn(y, model(x, training=False))
            grads = inner.gradient(loss, variables)
            terms = [tf.reduce_sum(tf.cast(g, dtype) * p)
                     for g, p in zip(grads, parts, strict=True) if g is not None]
            if not terms:
                return tf.zeros([sum(sizes)], dtype)
            along = tf.add_n(terms)
        return flatten(outer.gradient(along, variables))

    def make_start() -> Any:
        return tf.constant(rng.standard_normal(sum(sizes)), dtype=dtype)

    def dot(a: Any, b: Any) -> float:
        return float(tf.reduce_sum(tf.cast(a, tf.float64) * tf.cast(b, tf.float64)))

    return top_eigenvalue(hvp, make_start, dot, iters=iters, tol=tol)

"""What :class:`~pytest_losstrend.capture.torch_watch.TorchWatcher` reads once rather than per
step: the loss's name and input kind, the statistics of the first batch of inputs, the loss's
argument shapes, and the units of ReLU-like activations that never fire (imported only by
``torch_watch``, itself imported only by ``watch``).

Plain functions of a model, a loss or a tensor: the watcher's hooks collect the arguments and
call them. Names with a leading underscore are internal to ``capture``, not API.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from pytest_losstrend.diagnosis.evidence import Evidence
from pytest_losstrend.verdict.stats import FloatArray

#: Activations whose units can die: the ReLU family and its smooth cousins, whose outputs for
#: negative inputs are zero or close to it. A unit counts as dead when it is never positive.
RELU_LIKE: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Hardswish, nn.Threshold,
)

#: Losses that compare prediction and target elementwise, so that differing shapes broadcast
#: silently (MSE, L1 and Huber warn; nothing stops the run). Class-index losses, whose target
#: has no class dimension by design, are left out.
ELEMENTWISE_LOSSES: tuple[type[nn.Module], ...] = (
    nn.MSELoss, nn.L1Loss, nn.SmoothL1Loss, nn.HuberLoss, nn.BCELoss, nn.BCEWithLogitsLoss,
    nn.SoftMarginLoss, nn.PoissonNLLLoss, nn.KLDivLoss,
)

#: ``Evidence.loss_name`` for the common torch losses (others: snake case of the class name).
LOSS_NAMES = {
    "MSELoss": "mse",
    "L1Loss": "l1",
    "CrossEntropyLoss": "cross_entropy",
    "NLLLoss": "nll",
    "BCELoss": "binary_cross_entropy",
    "BCEWithLogitsLoss": "binary_cross_entropy_with_logits",
    "HuberLoss": "huber",
    "SmoothL1Loss": "smooth_l1",
    "KLDivLoss": "kl_div",
}


#: ``Evidence.loss_from_logits`` for the losses whose input is known: logits, or
#: probabilities (log-probabilities for NLL).
LOSS_FROM_LOGITS = {
    "cross_entropy": True,
    "binary_cross_entropy_with_logits": True,
    "multi_label_soft_margin": True,
    "binary_cross_entropy": False,
    "nll": False,
}


def loss_name(loss_fn: Any) -> str | None:
    """``"mse"``, ``"cross_entropy"``... for a torch loss module or function, else None."""
    if loss_fn is None:
        return None
    if isinstance(loss_fn, nn.Module):
        cls = type(loss_fn).__name__
        if cls in LOSS_NAMES:
            return LOSS_NAMES[cls]
        return _snake(cls.removesuffix("Loss")) or None
    name = getattr(loss_fn, "__name__", None)
    if not isinstance(name, str) or name == "<lambda>":
        return None
    return name.removesuffix("_loss")


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def input_stats(x: torch.Tensor) -> dict[str, float]:
    """Statistics of a batch of inputs, for the unscaled-features diagnosis.

    For a 2-d float batch ``X`` (rows are samples, columns features):

    - ``n_features``: the column count; ``n_constant``: columns with zero spread.
    - ``std_min``, ``std_max``, ``std_ratio``: the smallest and largest per-feature standard
      deviation (population, ``ddof=0``) over the non-constant columns, and their ratio.
    - ``range_ratio``: the largest per-feature ``max |x|`` over the smallest (non-constant
      columns): features in different units. Unlike ``std_ratio`` it ignores sparsity, a
      pixel lit on one image of a batch having a tiny std but the usual range.
    - ``max_abs``: the largest ``|x|``; ``rms``: the root mean square of every element (1 for
      standardised features, at most 1 for [0, 1] ones, about 85 for 0-255 pixels).
    - ``mean_abs_over_std``: the largest ``|mean| / std`` over the non-constant columns (an
      offset the model must learn away, e.g. years around 2000).
    - ``cond``: the condition number ``λ_max / λ_min`` of the raw, uncentred Gram matrix
      ``XᵀX`` (every column, no bias column added), computed as the squared ratio of the
      extreme singular values of ``X``: what gradient descent on a linear model of these
      inputs faces. ``inf`` when ``XᵀX`` is singular (fewer rows than columns, a zero or a
      duplicated column).
    - ``cond_standardised``: the same for the non-constant columns after standardising each
      (subtract the mean, divide by the std): what it would face after a ``StandardScaler``.

    Any other float batch (images, sequences) gives ``max_abs``, ``rms``, ``mean`` and ``std``
    over all its elements; a non-float one (token ids for an ``nn.Embedding``) gives nothing.
    """
    if not x.is_floating_point() or x.numel() == 0:
        return {}
    # numpy rather than torch: a dozen tiny reductions cost a few microseconds each in
    # numpy, several times that through torch's dispatcher.
    a = x.detach().to(device="cpu", dtype=torch.float64).numpy()
    max_abs = float(np.abs(a).max())
    rms = float(np.sqrt(np.mean(np.square(a)))) if math.isfinite(max_abs) else max_abs
    if a.ndim != 2:
        return {"max_abs": max_abs, "rms": rms, "mean": float(a.mean()), "std": float(a.std())}
    if not math.isfinite(max_abs):
        return {"n_features": float(a.shape[1]), "max_abs": max_abs}
    std = a.std(0)
    mean = a.mean(0)
    keep = std > 0
    out = {
        "n_features": float(a.shape[1]),
        "n_constant": float((~keep).sum()),
        "max_abs": max_abs,
        "rms": rms,
        "cond": _gram_cond(a),
    }
    if keep.any():
        s = std[keep]
        out["std_min"] = float(s.min())
        out["std_max"] = float(s.max())
        out["std_ratio"] = out["std_max"] / out["std_min"]
        peak = np.abs(a[:, keep]).max(0)
        out["range_ratio"] = float(peak.max() / peak.min()) if peak.min() > 0 else math.inf
        out["mean_abs_over_std"] = float((np.abs(mean[keep]) / s).max())
        out["cond_standardised"] = _gram_cond((a[:, keep] - mean[keep]) / s)
    return out


def _gram_cond(a: FloatArray) -> float:
    """The condition number of ``aᵀa`` (``inf`` when singular)."""
    if a.shape[0] < a.shape[1]:
        return math.inf
    s = np.linalg.svd(a, compute_uv=False)
    lo, hi = float(s.min()), float(s.max())
    # Below this relative size a singular value is rounding noise: XᵀX is singular.
    if hi == 0.0 or lo <= hi * 1e-12:
        return math.inf
    return (hi / lo) ** 2


# torch.broadcast_shapes is untyped: called through Any for mypy --strict.
_broadcast_shapes: Any = torch.broadcast_shapes


def _first_tensor(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor | None:
    """The first tensor among a call's arguments (the batch, for a model's forward)."""
    for v in (*args, *kwargs.values()):
        if isinstance(v, torch.Tensor):
            return v
    return None


def _truncate(v: Any, rows: int, n: int) -> Any:
    """A detached copy of the first ``n`` rows of ``v`` if it is a batch of ``rows`` rows."""
    if isinstance(v, torch.Tensor) and v.ndim > 0 and v.shape[0] == rows:
        return v.detach()[:n].clone()
    return v


def check_loss_args(ev: Evidence, seen: set[str], module: nn.Module, pred: torch.Tensor,
                    target: torch.Tensor) -> None:
    """Check one call of a loss module: the class dimension of a classification loss's
    prediction as the output width (``ev.output_features``), an elementwise loss whose
    prediction and target broadcast to a bigger shape (``ev.shape_mismatches``), and
    cross-entropy given probabilities instead of logits (``ev.notes``). ``seen`` holds
    the messages already recorded, so each is recorded once."""
    name = type(module).__name__
    if isinstance(module, (nn.CrossEntropyLoss, nn.NLLLoss)) and pred.ndim >= 2:
        # The class dimension of the prediction is the model's real output width.
        ev.output_features = int(pred.shape[1])
    if isinstance(module, ELEMENTWISE_LOSSES) and pred.shape != target.shape:
        try:
            wide = _broadcast_shapes(pred.shape, target.shape)
        except RuntimeError:
            return  # torch raises on it itself
        if wide.numel() > max(pred.numel(), target.numel()):
            msg = (f"{name}: prediction of shape {tuple(pred.shape)} and target of shape "
                   f"{tuple(target.shape)} broadcast to {tuple(wide)}")
            if msg not in seen:
                seen.add(msg)
                ev.shape_mismatches.append(msg)
    if isinstance(module, nn.CrossEntropyLoss) and pred.ndim == 2 and pred.is_floating_point():
        p = pred.detach()
        if bool((p >= 0).all()) and bool((p <= 1).all()) and bool(
                torch.allclose(p.sum(1), torch.ones_like(p[:, 0]), atol=1e-3)):
            msg = (f"{name} got probabilities (rows in [0, 1] summing to 1), but it "
                   "expects logits: drop the softmax before it")
            if msg not in seen:
                seen.add(msg)
                ev.notes.append(msg)


def dead_fraction(model: nn.Module, args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> dict[str, float]:
    """Per ReLU-like module, the fraction of its units (each output element of a row)
    that is never positive over the captured batch, run once in eval mode."""
    out: dict[str, float] = {}
    handles: list[RemovableHandle] = []

    def hook_for(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if not isinstance(output, torch.Tensor) or output.ndim < 1:
                return
            flat = output.detach().reshape(output.shape[0], -1)
            if flat.shape[1] == 0 or flat.shape[0] == 0:
                return
            alive = (flat > 0).any(0)
            key, k = name, 2
            while key in out:  # a module applied more than once per forward
                key, k = f"{name}[{k}]", k + 1
            out[key] = 1.0 - float(alive.float().mean())

        return hook

    for name, m in model.named_modules():
        if isinstance(m, RELU_LIKE):
            handles.append(m.register_forward_hook(hook_for(name)))
    if not handles:
        return out
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            model(*args, **kwargs)
    finally:
        for m, training in modes:
            m.training = training
        for h in handles:
            h.remove()
    return out

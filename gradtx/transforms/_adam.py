"""optax's ``scale_by_adam`` as gradtx stages: one home for the optimizers built on it
(optimistic Adam, Muon's AdamW) and for GaLore's default inner optimizer."""

from __future__ import annotations

from typing import Any

import optax
from jax.typing import DTypeLike

from gradtx.transforms.momentum import add_momentum
from gradtx.transforms.momentum import add_nesterov_momentum
from gradtx.transforms.momentum import bias_correct
from gradtx.transforms.rms import scale_by_rms


def ema_momentum(
    decay: Any, nesterov: bool, dtype: DTypeLike | None = None
) -> list[optax.GradientTransformation]:
    """optax's bias-corrected EMA of the gradient, or its Nesterov look-ahead (the
    numerator of its ``scale_by_adam``, its Muon's momentum)."""
    if nesterov:
        return [add_nesterov_momentum(decay, warming=False, dtype=dtype)]
    return [add_momentum(decay, ema=True, dtype=dtype), bias_correct(decay)]


def adam_stages(
    b1: Any,
    b2: Any,
    eps: Any,
    eps_root: Any,
    *,
    nesterov: bool = False,
    mu_dtype: DTypeLike | None = None,
) -> list[optax.GradientTransformation]:
    """optax's ``scale_by_adam``: ``ema_momentum`` over the root of the bias-corrected
    second moment (optimistic Adam's step, Muon's AdamW for other leaves)."""
    return [
        *ema_momentum(b1, nesterov, mu_dtype),
        scale_by_rms(b2, eps, eps_root=eps_root, bias_correction=True),
    ]

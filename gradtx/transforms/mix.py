"""Mixing the gradient, or a second (slow) average of it, into the updates (AdEMAMix)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _tree
from gradtx._base import GradientTransformation
from gradtx._base import ScalarOrSchedule
from gradtx._base import Updates
from gradtx._base import gradient
from gradtx._factory import factory
from gradtx._specs import DECAY_RATE
from gradtx._specs import DType
from gradtx._specs import Hyper

ALPHA = Hyper(low=0.0, schedule=True)


class MixGradientState(NamedTuple):
    """``mu``: ``m_t = decay · m_{t-1} + (1 - decay) · g_t`` (AdEMAMix's slow EMA),
    or ``None`` when the gradient itself is mixed in."""

    mu: Updates


@factory(alpha=ALPHA, decay=DECAY_RATE.schedulable()._replace(nullable=True), dtype=DType())
def mix_gradient(
    alpha: ScalarOrSchedule,
    decay: ScalarOrSchedule | None = None,
    *,
    dtype: DTypeLike | None = None,
) -> GradientTransformation:
    """Add ``alpha`` times the gradient, or an EMA of it, to the updates.

    ``out = u + alpha · m_t`` with ``m_t = decay · m_{t-1} + (1 - decay) · g_t``
    (``m_0 = 0``, no bias correction), or ``out = u + alpha · g_t`` when
    ``decay`` is ``None``.  Placed after a bias-corrected fast EMA it is
    AdEMAMix's numerator ``m̂₁ + α m₂`` (``decay`` = b3, the slow rate, e.g.
    0.9999); after a heavy-ball buffer with ``decay=None`` it is simplified
    AdEMAMix's ``m + α g``.  The slow EMA is left uncorrected, as in the
    paper: it fills slowly on purpose.

    ``g`` is the chain's ``grads`` keyword when present, else the input.

    Args:
      alpha: the weight α ≥ 0 of the mixed-in term, a number or schedule.
      decay: the EMA rate in [0, 1), a number or schedule; ``None``: no
        average, the current gradient.
      dtype: storage dtype of ``m`` (``None``: the params' dtype, float32 for 16-bit ones).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.mix_gradient(2.0)
      >>> g = jnp.array([1.0, -1.0])
      >>> tx.update(jnp.zeros(2), tx.init(g), grads=g)[0]  # 0 + 2 g
      Array([ 2., -2.], dtype=float32)

    References:
      Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster,
      Older", ICLR 2025 (arXiv:2409.03137); Morwani et al., "Connections
      between Schedule-Free Optimizers, AdEMAMix, and Accelerated SGD
      Variants", 2025 (arXiv:2502.02431), for the simplified form.
    """

    def init(params):
        return MixGradientState(None if decay is None else _tree.zeros_like(params, dtype))

    def update(updates, state, params=None, **extra):
        grads = gradient(updates, extra)
        mu = None if decay is None else _numerics.ema(decay, state.mu, grads, wide=True)

        def one(u, m):
            wide = _dtypes.compute_dtype(u.dtype, m.dtype)
            a = jnp.asarray(alpha).astype(wide)
            return (u.astype(wide) + a * m.astype(wide)).astype(u.dtype)

        out = jax.tree.map(one, updates, grads if mu is None else mu)
        return out, MixGradientState(None if mu is None else _tree.stored_like(mu, state.mu))

    return GradientTransformation(init, update)

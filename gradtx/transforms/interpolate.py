"""Interpolation between the updates and the gradient (Muon's Nesterov look-ahead)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradtx import _dtypes
from gradtx import _numerics
from gradtx._base import EmptyState
from gradtx._base import GradientTransformation
from gradtx._base import ScalarOrSchedule
from gradtx._base import gradient
from gradtx._factory import factory
from gradtx._specs import MOMENTUM


@factory(weight=MOMENTUM)
def interpolate_gradient(weight: ScalarOrSchedule) -> GradientTransformation:
    """``u <- weight · u + (1 - weight) · g``: move the updates toward the gradient.

    After ``add_momentum(μ, ema=True)`` with ``weight = μ`` this is the
    Nesterov look-ahead of an EMA, ``μ m_t + (1 - μ) g_t`` (what ``m_{t+1}``
    would be if ``g_t`` came again): ``torch.optim.Muon``'s ``nesterov=True``
    and Jordan's Muon (``g.lerp(m, μ)``).  Compare ``add_momentum(ema=True,
    nesterov=True)``, which returns ``g + μ m_t``, and
    ``add_nesterov_momentum``, which also bias-corrects both terms (optax).
    ``g`` is the chain's ``grads`` keyword when present, else the input.

    Args:
      weight: the updates' share, in [0, 1], a number or schedule.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.chain(gradtx.add_momentum(0.5, ema=True), gradtx.interpolate_gradient(0.5))
      >>> tx.update(jnp.ones(2), tx.init(jnp.ones(2)))[0]  # m_1 = 0.5; 0.5·0.5 + 0.5·1
      Array([0.75, 0.75], dtype=float32)
    """

    def update(updates, state, params=None, **extra):
        def one(u, g):
            wide = _dtypes.compute_dtype(u.dtype, g.dtype)
            w = jnp.asarray(weight).astype(wide)
            rest = _numerics.one_minus(weight, wide)
            return (w * u.astype(wide) + rest * g.astype(wide)).astype(u.dtype)

        return jax.tree.map(one, updates, gradient(updates, extra)), state

    return GradientTransformation(lambda params: EmptyState(), update)

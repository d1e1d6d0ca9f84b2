"""A momentum read before it is updated, with its own interpolation weight (Lion)."""

from __future__ import annotations

from typing import NamedTuple

import jax
from jax.typing import DTypeLike

from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _tree
from gradtx._base import GradientTransformation
from gradtx._base import Updates
from gradtx._factory import factory
from gradtx._specs import DECAY_RATE
from gradtx._specs import DType
from gradtx._specs import Hyper


class AddInterpolatedMomentumState(NamedTuple):
    """``mu``: ``m_t = b2 m_{t-1} + (1 - b2) u_t``, the EMA of the inputs."""

    mu: Updates


@factory(b1=Hyper(0.0, 1.0, decays=True), b2=DECAY_RATE, dtype=DType())
def add_interpolated_momentum(
    b1: float = 0.9, b2: float = 0.99, *, dtype: DTypeLike | None = None
) -> GradientTransformation:
    """Output an interpolation of the input with the previous momentum, then update it.

    With ``u_t`` the input and ``m_0 = 0``::

      out = b1 m_{t-1} + (1 - b1) u_t        (the interpolation, with weight b1)
      m_t = b2 m_{t-1} + (1 - b2) u_t        (the momentum, an EMA with rate b2)

    Lion's momentum (Chen et al.): the step is taken along the
    interpolation (usually through ``scale_by_sign``) while the buffer keeps a
    slower EMA.  ``b1 = b2`` gives ``m_t``'s value before it is stored: an EMA.
    Computed in at least float32 and stored in ``dtype``; the output has the
    input's dtype.

    Args:
      b1: interpolation weight of the previous momentum, in [0, 1].
      b2: the momentum's EMA rate, in [0, 1).
      dtype: storage dtype of ``m`` (``None``: the params' dtype; optax's ``mu_dtype``).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.add_interpolated_momentum(0.5, 0.75)
      >>> state = tx.init(jnp.zeros(1))
      >>> out, state = tx.update(jnp.array([4.0]), state)  # m_1 = 0.25 · 4 = 1
      >>> tx.update(jnp.array([2.0]), state)[0]  # 0.5 · 1 + 0.5 · 2
      Array([1.5], dtype=float32)

    References:
      Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023.
    """

    def init(params):
        return AddInterpolatedMomentumState(_tree.zeros_like(params, dtype))

    def update(updates, state, params=None, **extra):
        def interpolate(m, u):
            # In at least float32 (m widened first, so the result is not rounded to
            # m's storage dtype), returned in the input's dtype.
            wide = m.astype(_dtypes.compute_dtype(m.dtype, u.dtype))
            return _numerics.ema(b1, wide, u).astype(u.dtype)

        out = jax.tree.map(interpolate, state.mu, updates)
        mu = _numerics.ema(b2, state.mu, updates)
        return out, AddInterpolatedMomentumState(mu)

    return GradientTransformation(init, update)

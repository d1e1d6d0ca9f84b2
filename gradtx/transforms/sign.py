"""The elementwise sign of the updates (signSGD, Signum, Lion)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradtx._base import EmptyState
from gradtx._base import GradientTransformation
from gradtx._factory import factory


@factory()
def scale_by_sign() -> GradientTransformation:
    """Replace each coordinate of the updates by its sign: ``u <- sign(u)``.

    ``sign(0) = 0``; for a complex coordinate ``sign(z) = z / |z|`` (its phase,
    as ``jnp.sign`` and ``optax.scale_by_sign``).  It acts on its input, so
    placed after a momentum it takes the momentum's sign (Signum, Lion).
    Stateless, and the output keeps the input's dtype.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale_by_sign()
      >>> tx.update(jnp.array([0.3, -2.0, 0.0]), tx.init(jnp.zeros(3)))[0]
      Array([ 1., -1.,  0.], dtype=float32)

    References:
      Bernstein et al., "signSGD: Compressed Optimisation for Non-Convex
      Problems", ICML 2018.
    """

    def update(updates, state, params=None, **extra):
        return jax.tree.map(jnp.sign, updates), state

    return GradientTransformation(lambda params: EmptyState(), update)

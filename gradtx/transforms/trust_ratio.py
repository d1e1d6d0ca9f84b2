"""Scaling each leaf by the ratio of its parameter norm to its update norm (LARS, Fromage)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _tree
from gradtx._base import EmptyState
from gradtx._base import GradientTransformation
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._specs import NON_NEGATIVE


def _clipped_norm(x: jax.Array, min_norm: jax.Array) -> jax.Array:
    """``‖x‖`` (Frobenius, over the whole leaf), or ``min_norm`` where it is not above it."""
    norm = _numerics.safe_sqrt(jnp.sum(jnp.real(_tree.abs_sq(x))))
    return jnp.where(norm <= min_norm, min_norm, norm)


@factory(min_norm=NON_NEGATIVE, trust_coefficient=NON_NEGATIVE, eps=NON_NEGATIVE)
def scale_by_trust_ratio(
    min_norm: float = 0.0, trust_coefficient: float = 1.0, eps: float = 0.0
) -> GradientTransformation:
    """Multiply each leaf by the trust ratio ``c · ‖θ‖ / (‖u‖ + eps)``.

    For each leaf, with ``θ`` its parameters, ``u`` its update (this
    transform's input) and norms over the whole leaf clipped below at
    ``min_norm``::

      ‖θ‖' = max(‖θ‖, min_norm),   ‖u‖' = max(‖u‖, min_norm)
      out = u · trust_coefficient · ‖θ‖' / (‖u‖' + eps)        (out = u where ‖θ‖' or ‖u‖' is 0)

    The layer-wise step size of LARS and LAMB (You et al.) and the relative
    step of Fromage (Bernstein et al.): each layer moves by a fixed fraction
    of its own norm, whatever the gradient's scale.  With ``min_norm = 0`` a
    leaf whose parameters or update are all zero keeps its update unscaled, as
    ``optax.scale_by_trust_ratio``.  Norms are computed in at least float32.

    It needs each leaf's shape, so it refuses to run inside ``gradtx.flatten``;
    ``update`` needs the params.

    Args:
      min_norm: lower bound of both norms (it keeps the ratio finite).
      trust_coefficient: the multiplier ``c``.
      eps: added to the update norm.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale_by_trust_ratio()
      >>> params, u = jnp.array([3.0, 4.0]), jnp.array([0.0, 0.5])  # ‖θ‖ = 5, ‖u‖ = 0.5
      >>> tx.update(u, tx.init(params), params)[0]
      Array([0., 5.], dtype=float32)

    References:
      You et al., "Large Batch Training of Convolutional Networks", 2017
      (arXiv:1708.03888); Bernstein et al., "On the Distance Between Two Neural
      Networks and the Stability of Learning", NeurIPS 2020.
    """
    call = current_call("gradtx.scale_by_trust_ratio")

    def update(updates, state, params=None, **extra):
        _tree.check_per_leaf(call, "gradtx.scale_by_trust_ratio")
        if params is None:
            raise ValueError(f"{call}: update needs params (the ratio is ‖params‖ / ‖updates‖)")

        def one(u, p):
            wide = _dtypes.compute_dtype(u.dtype, p.dtype)
            real = _dtypes.real_dtype(wide)
            low = jnp.asarray(min_norm).astype(real)
            p_norm = _clipped_norm(p.astype(wide), low)
            u_norm = _clipped_norm(u.astype(wide), low)
            ratio = jnp.asarray(trust_coefficient).astype(real) * p_norm
            unscaled = (p_norm == 0) | (u_norm == 0)
            # the inner where keeps x/0 out of the derivative of the branch not taken
            e = jnp.asarray(eps).astype(real)
            den = jnp.where(unscaled, jnp.ones_like(u_norm), u_norm + e)
            ratio = jnp.where(unscaled, jnp.ones_like(ratio), ratio / den)
            return (u.astype(wide) * ratio.astype(wide)).astype(u.dtype)

        return jax.tree.map(one, updates, params), state

    return GradientTransformation(lambda params: EmptyState(), update)

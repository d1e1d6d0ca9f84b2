"""Layer-wise trust ratio: each leaf's update rescaled by ``‖θ‖ / ‖u‖`` (LARS, LAMB)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradtx import _tree
from gradtx._base import EmptyState, GradientTransformation
from gradtx._factory import NON_NEGATIVE, current_call, factory


def _leaf_norm(x: jax.Array) -> jax.Array:
    """The 2-norm of a whole leaf (Frobenius for a matrix), real-valued."""
    return jnp.linalg.norm(jnp.ravel(x))


@factory(min_norm=NON_NEGATIVE, trust_coefficient=NON_NEGATIVE, eps=NON_NEGATIVE)
def scale_by_trust_ratio(
    min_norm: float = 0.0, trust_coefficient: float = 1.0, eps: float = 0.0
) -> GradientTransformation:
    """Rescale each leaf's update by its trust ratio ``c · ‖θ‖ / (‖u‖ + eps)``.

    Per leaf (a layer's weight matrix, a bias vector)::

      r = trust_coefficient · max(‖θ‖, min_norm) / (max(‖u‖, min_norm) + eps)
      out = r · u,     with r = 1 where either clipped norm is 0

    ``‖·‖`` is the 2-norm of the whole leaf (Frobenius for a matrix).  The
    fallback ``r = 1`` keeps a zero-initialised layer (``‖θ‖ = 0``) moving
    and a zero update harmless.  The LARS and LAMB trust ratio, as
    ``optax.scale_by_trust_ratio``: LAMB puts it after Adam's step and the
    decoupled decay, LARS after the L2 term (with ``trust_coefficient`` η,
    0.001 in ``optax.lars``).

    Stateless; ``update`` needs the params.  It works per leaf, so it refuses
    to run inside ``gradtx.flatten`` (a flat buffer is not a layer).

    Args:
      min_norm: lower bound applied to both norms (0: none).
      trust_coefficient: c, multiplies the ratio.
      eps: added to the update's norm in the denominator.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale_by_trust_ratio()
      >>> params = jnp.array([3.0, 4.0])  # ‖θ‖ = 5
      >>> tx.update(jnp.array([0.6, 0.8]), tx.init(params), params)[0]  # ‖u‖ = 1
      Array([3., 4.], dtype=float32)

    References:
      You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks",
      2017 (arXiv:1708.03888); You et al., "Large Batch Optimization for Deep
      Learning: Training BERT in 76 minutes", ICLR 2020.
    """

    def update(updates, state, params=None, **extra):
        call = current_call("gradtx.scale_by_trust_ratio")
        _tree.check_per_leaf(call, "gradtx.scale_by_trust_ratio")
        if params is None:
            raise ValueError(f"{call}: update needs params (the trust ratio is ‖θ‖ / ‖u‖)")

        def one(u, p):
            wide = _tree.compute_dtype(u.dtype, p.dtype)
            real = _tree.real_dtype(wide)
            lo, c, e = (jnp.asarray(x).astype(real) for x in (min_norm, trust_coefficient, eps))
            p_norm = jnp.maximum(_leaf_norm(p.astype(wide)).astype(real), lo)
            u_norm = jnp.maximum(_leaf_norm(u.astype(wide)).astype(real), lo)
            ratio = jnp.where(
                (p_norm == 0) | (u_norm == 0), jnp.ones([], real), c * p_norm / (u_norm + e)
            )
            return (u.astype(wide) * ratio.astype(wide)).astype(u.dtype)

        return jax.tree.map(one, updates, params), state

    return GradientTransformation(lambda params: EmptyState(), update)

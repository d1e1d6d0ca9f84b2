"""Division by the global norm of the updates (SAM's adversarial direction)."""

from __future__ import annotations

import jax

from gradtx import _dtypes
from gradtx import _numerics
from gradtx._base import EmptyState
from gradtx._base import GradientMap
from gradtx._base import float_dtype
from gradtx._factory import factory
from gradtx.transforms.clipping import global_norm


@factory(kind=GradientMap)
def normalize() -> GradientMap:
    """Divide the updates by their global norm: ``u / sqrt(Σ_i ‖u_i‖²)``.

    The unit-norm direction of SAM's adversarial step (Foret et al.):
    ``gradtx.sam(opt, gradtx.chain(gradtx.normalize(), gradtx.scale(-rho)))``
    moves the params by ``rho · g / ‖g‖``.  As ``optax.contrib.normalize``,
    except that an all-zero input stays zero (optax: ``0 / 0 = NaN``).  The
    norm is taken over all leaves in JAX's default float dtype (float64
    under x64); in float32 its sum of squares underflows to 0 when every
    entry is below about 1e-19, and the output is then ±inf, as optax's (an
    overflow-proof norm cost SAM 1.3x its compile time).  A gradient map:
    statistics after it see the normalised gradient.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.normalize()
      >>> g = {"a": jnp.array([3.0]), "b": jnp.array([4.0])}
      >>> tx.update(g, tx.init(g))[0]["b"]
      Array([0.8], dtype=float32)

    References:
      Foret, Kleiner, Mobahi & Neyshabur, "Sharpness-Aware Minimization for
      Efficiently Improving Generalization", ICLR 2021 (arXiv:2010.01412).
    """

    def update(updates, state, params=None, **extra):
        norm = global_norm(updates, float_dtype())

        def one(u):
            wide = _dtypes.compute_dtype(u.dtype, norm.dtype)
            return _numerics.div0(u.astype(wide), norm.astype(wide)).astype(u.dtype)

        return jax.tree.map(one, updates), state

    return GradientMap(lambda params: EmptyState(), update)

"""Division by an exponentially weighted infinity norm of the gradients (Adamax)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from gradtx import _dtypes
from gradtx import _numerics
from gradtx._base import GradientTransformation
from gradtx._base import Updates
from gradtx._base import gradient
from gradtx._factory import factory
from gradtx._specs import DECAY_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import DType


class ScaleByInfinityNormState(NamedTuple):
    """``nu``: ``u_t = max(decay · u_{t-1}, |g_t| + eps)``, in the params' real dtype
    (float32 for 16-bit params: ``0.999 u`` rounds back to ``u`` in bfloat16)."""

    nu: Updates


@factory(decay=DECAY_RATE, eps=NON_NEGATIVE, dtype=DType())
def scale_by_infinity_norm(
    decay: float = 0.999, eps: float = 1e-8, *, dtype: DTypeLike | None = None
) -> GradientTransformation:
    """Divide the updates by an exponentially weighted infinity norm of the gradients.

    ``u_t = max(decay · u_{t-1}, |g_t| + eps)`` (``u_0 = 0``) and
    ``out = updates / u_t``: Adamax's denominator (Kingma & Ba, §7.1), the
    limit of Adam's ``(E|g|^p)^{1/p}`` as ``p → ∞``.  It needs no bias
    correction.  ``eps`` sits inside the max, as in both ``torch.optim.Adamax``
    and ``optax.scale_by_adamax``.  ``|g|`` is the modulus for complex leaves
    (torch splits real and imaginary parts instead).  With ``eps = 0`` a
    coordinate whose gradient has always been zero takes no step: the divisor
    is floored at ``f = tiny / epsneg`` (2^-102 in float32, 2^-969 in
    float64), so 0/0 is 0.  The floor is not the smallest normal number
    because XLA rewrites a bias correction before this, ``(m / c) / u``, as
    ``m / (c · u)``, and ``c · tiny`` flushed to 0 (``c ≥ epsneg`` keeps ``c ·
    f`` normal; under x64 a float64 b1 over float32 leaves closer to 1 than
    float32's epsneg, 6e-8, can still give 0/0 with ``eps = 0``).  The floor
    changes nothing when ``eps ≥ f`` (the default 1e-8: ``u_t ≥ eps``).  With
    ``eps = 0`` it differs from torch and optax only where ``u_t < f``: with
    ``u_t = 0`` and ``updates ≠ 0`` (``decay = 0``), ``updates / f`` is a huge
    number (±inf, as torch's, once ``|updates|`` reaches about 7e7 in
    float32), and a smaller positive ``u_t`` gives a smaller quotient than
    torch's.

    ``g`` is the chain's ``grads`` keyword when present, else the input.

    Args:
      decay: b2 in [0, 1).
      eps: added to ``|g_t|`` inside the max.
      dtype: storage dtype of ``u`` (``None``: the params' real dtype, float32 for
        16-bit params).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale_by_infinity_norm(0.5, eps=0.0)
      >>> state = tx.init(jnp.zeros(2))
      >>> u, state = tx.update(jnp.array([4.0, -1.0]), state)
      >>> tx.update(jnp.array([1.0, -1.0]), state)[0]  # u_2 = max(0.5 u_1, |g_2|) = [2, 1]
      Array([ 0.5, -1. ], dtype=float32)

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, §7.1.
    """

    def init(params):
        return ScaleByInfinityNormState(
            jax.tree.map(
                lambda p: jnp.zeros_like(p, dtype=_dtypes.square_dtype(p.dtype, dtype)), params
            )
        )

    def update(updates, state, params=None, **extra):
        def norm(u, g):
            # |g| is real: the norm is kept in the real dtype (no complex-to-real cast)
            wide = _dtypes.real_dtype(_dtypes.compute_dtype(u.dtype, g.dtype))
            d, e = (jnp.asarray(x).astype(wide) for x in (decay, eps))
            return jnp.maximum(d * u.astype(wide), jnp.abs(g).astype(wide) + e).astype(u.dtype)

        nu = jax.tree.map(norm, state.nu, gradient(updates, extra))

        def scale(x, u):
            wide = _dtypes.compute_dtype(x.dtype, u.dtype)
            real = _dtypes.real_dtype(wide)
            # A floor instead of div0's compare-and-select: one max per element, which
            # made Adamax's step compile about 7% faster (benchmarks/NOTES.md §31).
            den = _numerics.at_least_tiny_over_epsneg(u.astype(real))
            return _numerics.quotient(x.astype(wide), den).astype(x.dtype)

        return jax.tree.map(scale, updates, nu), ScaleByInfinityNormState(nu)

    return GradientTransformation(init, update)

"""Division by the root of a second moment that moves additively toward g² (Yogi)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _tree
from gradtx._base import GradientTransformation
from gradtx._base import Updates
from gradtx._base import gradient
from gradtx._base import step_count
from gradtx._build import current_call
from gradtx._build import reads_count
from gradtx._factory import factory
from gradtx._specs import DECAY_RATE
from gradtx._specs import INITIAL_VALUE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import DType
from gradtx._specs import Flag


class ScaleByAdditiveRmsState(NamedTuple):
    """``nu``: ``v_t = v_{t-1} - (1 - decay) sign(v_{t-1} - g_t²) g_t²`` (Yogi's second moment)."""

    nu: Updates


@factory(decay=DECAY_RATE, eps=NON_NEGATIVE, eps_root=NON_NEGATIVE, initial_value=INITIAL_VALUE,
         bias_correction=Flag(), dtype=DType())  # fmt: skip
def scale_by_additive_rms(
    decay: float = 0.999,
    eps: float = 1e-3,
    *,
    eps_root: float = 0.0,
    initial_value: float = 1e-6,
    bias_correction: bool = True,
    dtype: DTypeLike | None = None,
) -> GradientTransformation:
    """Divide the updates by the root of Yogi's additively updated second moment.

    With ``g_t`` the gradient (the chain's ``grads``) and ``t`` from 1::

      v_t = v_{t-1} - (1 - decay) sign(v_{t-1} - g_t²) g_t²      (v_0 = initial_value)
      v̂_t = v_t / (1 - decay^t)                                  (if bias_correction)
      out = updates / (sqrt(v̂_t + eps_root) + eps)

    Adam's EMA moves ``v`` toward ``g²`` by ``(1 - decay) |v - g²|``, a step
    that grows with ``v`` itself; Yogi's moves it by ``(1 - decay) g²`` in the
    same direction, so a large ``v`` does not shrink in one jump and the
    effective learning rate grows slowly (Zaheer et al.).  ``v`` stays
    non-negative: a step down is at most ``(1 - decay) g² < v``.  Where ``v``
    and ``g²`` are both infinite ``v`` stays infinite (optax's
    ``sign(inf - inf)`` gives NaN).  ``|g|²`` for complex leaves.

    Args:
      decay: Yogi's b2, in [0, 1).
      eps: added outside the root (Yogi's default 1e-3).
      eps_root: added inside the root.
      initial_value: ``v_0`` (optax's ``initial_accumulator_value``).
      bias_correction: divide ``v`` by ``1 - decay^t``, as ``optax.scale_by_yogi``
        (the paper does not).
      dtype: storage dtype of ``v`` (``None``: the params' dtype; float32 for 16-bit params).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale_by_additive_rms(0.5, eps=0.0, initial_value=4.5,
      ...                                   bias_correction=False)
      >>> tx.update(jnp.array([3.0, 1.0]), tx.init(jnp.zeros(2)))[0]  # v = 4.5 ± 0.5 g² = [9, 4]
      Array([1. , 0.5], dtype=float32)

    References:
      Zaheer et al., "Adaptive Methods for Nonconvex Optimization", NeurIPS 2018.
    """
    call = current_call("gradtx.scale_by_additive_rms")
    if bias_correction:
        reads_count()

    def init(params):
        return ScaleByAdditiveRmsState(_tree.squares_like(params, initial_value, dtype))

    def update(updates, state, params=None, **extra):
        correction = None
        if bias_correction:
            t = _numerics.safe_increment(step_count(extra, call))
            correction = _numerics.bias_correction(decay, t)

        def second_moment(v, g):
            wide = _dtypes.compute_dtype(v.dtype, g.dtype)
            sq = jnp.real(_tree.abs_sq(g.astype(wide)))
            old = jnp.real(v.astype(wide))
            step = _numerics.one_minus(decay, sq.dtype) * sq
            # sign(v - g²) as a select: the same numbers, and no inf - inf.  The last
            # branch takes what is neither above nor equal, so a NaN reaches v.
            new = jnp.where(old > sq, old - step, jnp.where(old == sq, old, old + step))
            return new.astype(v.dtype)

        nu = jax.tree.map(second_moment, state.nu, gradient(updates, extra))

        def scale(u, v):
            wide = _dtypes.compute_dtype(u.dtype, v.dtype)
            v_hat = jnp.real(v.astype(wide))
            if correction is not None:
                v_hat = v_hat / correction.astype(v_hat.dtype)
            denom = _numerics.safe_sqrt(v_hat + _tree.scalar_like(eps_root, v_hat))
            denom = denom + _tree.scalar_like(eps, denom)
            return _numerics.div0(u.astype(wide), denom.astype(wide)).astype(u.dtype)

        return jax.tree.map(scale, updates, nu), ScaleByAdditiveRmsState(nu)

    return GradientTransformation(init, update)

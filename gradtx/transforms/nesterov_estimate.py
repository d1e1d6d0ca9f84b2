"""Adan's Nesterov momentum estimate: gradient differences in the step and in the RMS."""

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
from gradtx._factory import factory
from gradtx._specs import DECAY_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import DType


class ScaleByNesterovEstimateState(NamedTuple):
    """``previous_grad``: ``g_{t-1}``; ``mu_diff``: ``v_t``, the EMA of the gradient
    differences ``g_t - g_{t-1}``; ``nu``: ``n_t``, the EMA of the squared
    extrapolated gradient ``|g_t + (1 - b2)(g_t - g_{t-1})|²``."""

    previous_grad: Updates
    mu_diff: Updates
    nu: Updates


@factory(counted=True, b2=DECAY_RATE, b3=DECAY_RATE, eps=NON_NEGATIVE, eps_root=NON_NEGATIVE,
         dtype=DType())  # fmt: skip
def scale_by_nesterov_estimate(
    b2: float = 0.92,
    b3: float = 0.99,
    eps: float = 1e-8,
    eps_root: float = 1e-8,
    *,
    dtype: DTypeLike | None = None,
) -> GradientTransformation:
    """Add the EMA of gradient differences, divide by the RMS of the extrapolated gradient.

    Adan's Nesterov momentum estimation (Xie et al., Algorithm 1).  With
    ``g_t`` the gradient (the chain's ``grads``), ``u_t`` the input (Adan's
    bias-corrected first moment ``m̂_t``) and ``t`` from 1::

      Δ_t = g_t - g_{t-1}                                    (Δ_1 = 0)
      v_t = b2 v_{t-1} + (1 - b2) Δ_t
      n_t = b3 n_{t-1} + (1 - b3) |g_t + (1 - b2) Δ_t|²
      out = (u_t + (1 - b2) v_t / (1 - b2^t)) / (sqrt(n_t / (1 - b3^t) + eps_root) + eps)

    ``g_t + (1 - b2) Δ_t`` extrapolates the gradient one step ahead, which is
    how Adan gets Nesterov's look-ahead without evaluating the gradient at a
    second point.  The three statistics share ``g_{t-1}``, so they are one
    transform.  ``v`` is bias-corrected from ``t = 1`` although ``Δ_1 = 0``,
    as ``optax.scale_by_adan`` does.  A coordinate whose numerator and
    denominator are both 0 takes no step.

    Args:
      b2: EMA rate of the gradient differences, in [0, 1).
      b3: EMA rate of the squared extrapolated gradient, in [0, 1).
      eps: added outside the root.
      eps_root: added inside the root.
      dtype: storage dtype of ``v`` and ``n`` (``None``: the params' dtype;
        ``n`` in float32 for 16-bit params).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale_by_nesterov_estimate(0.5, 0.5, eps=0.0, eps_root=0.0)
      >>> state = tx.init(jnp.zeros(1))
      >>> out, state = tx.update(jnp.array([2.0]), state)  # Δ = 0, n̂ = 4: 2 / 2
      >>> out
      Array([1.], dtype=float32)

    References:
      Xie et al., "Adan: Adaptive Nesterov Momentum Algorithm for Faster
      Optimizing Deep Models", IEEE TPAMI 2024 (arXiv:2208.06677).
    """
    call = current_call("gradtx.scale_by_nesterov_estimate")

    def init(params):
        return ScaleByNesterovEstimateState(
            _tree.zeros_like(params), _tree.zeros_like(params, dtype),
            _tree.squares_like(params, 0.0, dtype),
        )  # fmt: skip

    def update(updates, state, params=None, **extra):
        grads = gradient(updates, extra)
        count = step_count(extra, call)
        t = _numerics.safe_increment(count)
        first = count == 0
        corrections = _numerics.bias_correction(b2, t), _numerics.bias_correction(b3, t)

        def difference(g, prev):
            wide = _dtypes.compute_dtype(g.dtype, prev.dtype)
            diff = g.astype(wide) - prev.astype(wide)
            return jnp.where(first, jnp.zeros_like(diff), diff)

        diffs = jax.tree.map(difference, grads, state.previous_grad)
        mu_diff = _numerics.ema(b2, state.mu_diff, diffs)

        def second_moment(n, g, d):
            wide = _dtypes.compute_dtype(n.dtype, d.dtype)
            ahead = g.astype(wide) + _numerics.one_minus(b2, wide) * d.astype(wide)
            real = _dtypes.real_dtype(wide)  # |ahead|² is real, so is the state
            return _numerics.ema(b3, n.astype(real), _tree.abs_sq(ahead).astype(real)).astype(
                n.dtype
            )

        nu = jax.tree.map(second_moment, state.nu, grads, diffs)

        def scale(u, v, n):
            wide = _dtypes.compute_dtype(u.dtype, v.dtype, n.dtype)
            c2, c3 = (c.astype(_dtypes.real_dtype(wide)) for c in corrections)
            rest = _numerics.one_minus(b2, wide)
            num = u.astype(wide) + rest * (v.astype(wide) / c2.astype(wide))
            n_hat = jnp.real(n.astype(wide)) / c3
            denom = _numerics.safe_sqrt(n_hat + _tree.scalar_like(eps_root, n_hat))
            denom = denom + _tree.scalar_like(eps, denom)
            return _numerics.div0(num, denom.astype(wide)).astype(u.dtype)

        out = jax.tree.map(scale, updates, mu_diff, nu)
        previous = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, state.previous_grad)
        return out, ScaleByNesterovEstimateState(previous, mu_diff, nu)

    return GradientTransformation(init, update)

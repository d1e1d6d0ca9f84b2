"""Denominators from the previous step's statistics (ADOPT, ACProp).

Adam divides ``g_t`` by a second moment that already contains ``g_t``; these
divide by the estimate from the steps before, so the current gradient and its
scale are independent (the "asynchronous" update of ACProp, the reordering of
ADOPT).
"""

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
from gradtx.transforms.belief import belief_ema


class ScaleByLaggedRmsState(NamedTuple):
    """``nu``: ``v_t = decay · v_{t-1} + (1 - decay) · |g_t|²``, with ``v_1 = |g_1|²``."""

    nu: Updates


@factory(counted=True, decay=DECAY_RATE, eps=NON_NEGATIVE, dtype=DType())
def scale_by_lagged_rms(
    decay: float = 0.9999, eps: float = 1e-6, *, dtype: DTypeLike | None = None
) -> GradientTransformation:
    """Divide by the root of the previous step's second moment, floored at ``eps`` (ADOPT).

    With ``t`` from 1::

      v_1 = |g_1|²,   v_t = decay · v_{t-1} + (1 - decay) · |g_t|²
      out_1 = 0,      out_t = u_t / max(sqrt(v_{t-1}), eps)

    The first gradient only initialises ``v``; the step starts at ``t = 2``,
    as in ADOPT (Taniguchi et al., Algorithm 1).  ``optax.contrib.scale_by_adopt``
    computes ``g_1 / eps`` there and discards it (its clip bound and its
    momentum weight are 0 at the first step): the same numbers.  No bias
    correction (``v_1`` is not biased).  Follow it with ``clip`` and
    ``add_momentum(b1, ema=True)`` for ADOPT's whole step.  ``eps`` is
    floored at the dtype's smallest normal number, which changes nothing
    unless ``eps = 0`` (or subnormal): then a coordinate whose gradient has
    always been 0 takes no step, and ``u / 0`` is ``u / tiny``, a huge number
    (±inf, as optax's, once ``|u|`` reaches about 4); ADOPT's ``clip`` bounds
    either alike.

    ``g`` is the chain's ``grads`` keyword when present, else the input.
    Statistics are computed in at least float32 and stored in ``dtype``.

    Args:
      decay: b2 in [0, 1).
      eps: floor of the root (not added to it).
      dtype: storage dtype of ``v`` (``None``: the params' dtype; float32
        for float16 params).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale_by_lagged_rms(0.5)
      >>> state = tx.init(jnp.zeros(2))
      >>> u, state = tx.update(jnp.array([2.0, -4.0]), state)  # v_1 = g²; out_1 = 0
      >>> tx.update(jnp.array([1.0, 1.0]), state)[0]  # g_2 / |g_1|
      Array([0.5 , 0.25], dtype=float32)

    References:
      Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any β2 with the
      Optimal Rate", NeurIPS 2024 (arXiv:2411.02853).
    """

    def init(params):
        return ScaleByLaggedRmsState(_tree.squares_like(params, 0.0, dtype))

    def update(updates, state, params=None, **extra):
        later = step_count(extra, current_call("gradtx.scale_by_lagged_rms")) > 0
        # v_1 as the EMA with rate 0 (v_0 = 0 from init), not a select per element: the
        # select made each kernel larger, ADOPT compiled in 1.28-1.42x optax inject's time
        # (benchmarks/NOTES.md section 28).  A count set back to 0 over a v that holds
        # inf gives NaN there (0 * inf), where the select gave |g|².
        rate = jnp.asarray(decay)
        rate = jnp.where(later, rate, jnp.zeros_like(rate))

        def second_moment(v, g):
            sq = _tree.abs_sq(g.astype(_dtypes.compute_dtype(g.dtype, v.dtype)))
            return _numerics.ema(rate, v, sq)

        def scale(u, v):
            wide = _dtypes.compute_dtype(u.dtype, v.dtype)
            root = _numerics.safe_sqrt(jnp.real(v.astype(wide)))
            # eps floored: with eps = 0 a never-moved coordinate gets 0 / tiny = 0 with
            # one max, not div0's compare-and-select (compile 1.22x -> 1.16x optax
            # inject, benchmarks/NOTES.md section 31)
            floor = _numerics.at_least_tiny(_tree.scalar_like(eps, root))
            denom = jnp.maximum(root, floor).astype(wide)
            # the first step is 0 whatever u / denom is: keep u / tiny out of its derivative
            denom = jnp.where(later, denom, jnp.ones_like(denom))
            step = _numerics.quotient(u.astype(wide), denom)
            return jnp.where(later, step, jnp.zeros([], wide)).astype(u.dtype)

        out = jax.tree.map(scale, updates, state.nu)
        nu = jax.tree.map(second_moment, state.nu, gradient(updates, extra))
        return out, ScaleByLaggedRmsState(nu)

    return GradientTransformation(init, update)


class ScaleByLaggedBeliefState(NamedTuple):
    """``mu``: the prediction ``m_t``, an EMA of g; ``nu``: the belief
    ``s_t``, an EMA of the squared prediction error ``|g_t - m_{t-1}|²`` plus ``eps_root``."""

    mu: Updates
    nu: Updates


@factory(counted=True, b1=DECAY_RATE, b2=DECAY_RATE, eps=NON_NEGATIVE, eps_root=NON_NEGATIVE,
         dtype=DType())  # fmt: skip
def scale_by_lagged_belief(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    *,
    dtype: DTypeLike | None = None,
) -> GradientTransformation:
    """Divide by the root of the previous step's bias-corrected belief (ACProp).

    With ``t`` from 1 (``m_0 = s_0 = 0``)::

      m_t = b1 m_{t-1} + (1 - b1) g_t
      s_t = b2 s_{t-1} + (1 - b2) |g_t - m_{t-1}|² + eps_root
      ŝ_{t-1} = s_{t-1} / (1 - b2^{t-1}),   ŝ_0 = 1
      out_t = u_t / (sqrt(ŝ_{t-1}) + eps)

    AdaBelief's second moment of the prediction error, used one step late
    (ACProp's asynchronous update), as ``optax.contrib.scale_by_acprop``:
    the error is taken against the prediction before this step's gradient
    entered it, ``eps_root`` is added to the stored ``s`` at every step, and
    the first step divides by ``1 + eps``.  ``m`` is only the prediction: the
    numerator is the input itself (ACProp has no momentum in it).

    ``g`` is the chain's ``grads`` keyword when present, else the input.
    Statistics are computed in at least float32 and stored in ``dtype``.

    Args:
      b1: decay of the prediction ``m``, in [0, 1).
      b2: decay of the belief ``s``, in [0, 1).
      eps: added to the root.
      eps_root: added to ``s`` at every step.
      dtype: storage dtype of ``m`` and ``s`` (``None``: the params' dtype;
        ``s`` in float32 for 16-bit params).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale_by_lagged_belief(eps=0.0, eps_root=0.0)
      >>> tx.update(jnp.array([2.0, -3.0]), tx.init(jnp.zeros(2)))[0]  # ŝ_0 = 1
      Array([ 2., -3.], dtype=float32)

    References:
      Zhuang et al., "Momentum Centering and Asynchronous Update for Adaptive
      Gradient Methods", NeurIPS 2021 (arXiv:2110.05454).
    """

    def init(params):
        return ScaleByLaggedBeliefState(
            _tree.zeros_like(params, dtype), _tree.squares_like(params, 0.0, dtype)
        )

    def update(updates, state, params=None, **extra):
        count = step_count(extra, current_call("gradtx.scale_by_lagged_belief"))
        first = count == 0
        # s_{t-1} is corrected with 1 - b2^{t-1}; the first step has none (1 instead).
        correction = _numerics.bias_correction(b2, jnp.maximum(count, 1))
        grads = gradient(updates, extra)

        def scale(u, s):
            wide = _dtypes.compute_dtype(u.dtype, s.dtype)
            s_hat = jnp.real(s.astype(wide)) / correction.astype(_dtypes.real_dtype(wide))
            s_hat = jnp.where(first, jnp.ones([], s_hat.dtype), s_hat)
            denom = (_numerics.safe_sqrt(s_hat) + _tree.scalar_like(eps, s_hat)).astype(wide)
            return _numerics.div0(u.astype(wide), denom).astype(u.dtype)

        out = jax.tree.map(scale, updates, state.nu)
        nu = jax.tree.map(belief_ema(b2, eps_root), state.nu, grads, state.mu)
        mu = _numerics.ema(b1, state.mu, grads)
        return out, ScaleByLaggedBeliefState(mu, nu)

    return GradientTransformation(init, update)

"""Mechanic (Cutkosky et al.): learn the scale of any optimizer's steps online."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradtx import _control
from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _update_checks
from gradtx._base import GradientTransformation
from gradtx._base import OptState
from gradtx._base import Params
from gradtx._base import extras_for
from gradtx._base import float_dtype
from gradtx._base import gradient
from gradtx._build import current_call
from gradtx._registry import optimizer
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import Int
from gradtx._specs import Transform
from gradtx.transforms._sums import tree_dot
from gradtx.transforms._sums import tree_norm_scaled
from gradtx.transforms.distance import copy_params
from gradtx.transforms.distance import needs_params


class MechanicState(NamedTuple):
    """State of ``mechanize`` (the vectors have one entry per β in the ladder).

    Attributes:
      inner_state: the base optimizer's state.
      started: False until the first update (which sets x_0).  A flag, not a
        step count: the base keeps the one count, so ``optax.tree_utils``
        finds a single ``count`` in the state.
      initial_params: x_0 (the params of the first update).
      max_abs_product: m, the running max (discounted by β) of |h| + eps.
      sum_of_squared_products: v, the β²-discounted sum of h².
      reward: r, the β-discounted sum of clip(h) s.
      scale: s, the learned scales; their sum multiplies the base steps.
    """

    inner_state: OptState
    started: jax.Array
    initial_params: Params
    max_abs_product: jax.Array
    sum_of_squared_products: jax.Array
    reward: jax.Array
    scale: jax.Array


def _travel_scale(den):
    """``Σ s + eps``, or ∞ where it is 0, for ``Δ_{t-1} = (x_0 - x_t) / (Σ s + eps)``.
    It is 0 only with eps = 0 and no wealth: the scales are 0 and x stays at x_0, so
    Δ_{t-1} is 0 (per coordinate 0/0 would be NaN, and params changed outside the
    optimizer would give ±∞).  A per-element guard, or this select outside
    ``_control.once``, was copied into every leaf's kernels (9-15% more compile time)."""
    return jnp.where(den == 0, jnp.full_like(den, jnp.inf), den)


def _mechanize(base, weight_decay, eps, s_init, num_betas):
    call = current_call("gradtx.mechanize")
    ladder = np.asarray([1.0 - 0.1**k for k in range(1, num_betas + 1)])  # 0.9, 0.99, ...

    def init(params):
        _update_checks.check_real(call, params, "its scale is bet on real inner products")
        dt = float_dtype()
        zeros = lambda: jnp.zeros([num_betas], dt)  # noqa: E731  distinct buffers
        scales = jnp.full([num_betas], jnp.asarray(s_init).astype(dt))
        return MechanicState(
            base.init(params),
            jnp.zeros([], bool),
            copy_params(params),
            zeros(),
            zeros(),
            zeros(),
            scales,
        )

    def update(updates, state, params=None, **extra):
        needs_params(call, params, "the steps are taken from the first params")
        inner_extra = {k: v for k, v in extra.items() if k != "count"}  # the base counts itself
        base_updates, inner_state = base.update(
            updates, state.inner_state, params, **extras_for(base, inner_extra)
        )
        grads = gradient(updates, extra)
        # x_0 is the params of the first update (a checkpoint loaded after init counts).
        x0 = jax.tree.map(lambda p, x: jnp.where(state.started, x, p), params, state.initial_params)

        dt = state.scale.dtype
        e, wd = jnp.asarray(eps).astype(dt), jnp.asarray(weight_decay).astype(dt)
        s_sum = jnp.sum(state.scale)
        # Norms scaled by the largest entry: a huge gradient's norm stays finite (optax's
        # overflows to inf, and inf · 0 makes h NaN at the first step).
        norm_g, norm_x = tree_norm_scaled(grads, dt), tree_norm_scaled(params, dt)
        # 0/0 with eps = 0 where the params are all 0 and the gradient or Σ s is 0
        coef = _numerics.div0(wd * s_sum * norm_g, norm_x + e)

        def wide(*xs):
            return _dtypes.compute_dtype(*(x.dtype for x in xs))

        def decayed(g, x):  # Mechanic's own decay, on a copy of the gradient only
            w = wide(g, x)
            return g.astype(w) + coef.astype(w) * x.astype(w)

        den = _control.once(_travel_scale, s_sum + e)

        def travelled(x, x_init):  # Δ_{t-1} = (x_0 - x_t) / (Σ s + eps)
            w = wide(x)
            return (x_init.astype(w) - x.astype(w)) / den.astype(w)

        previous = jax.tree.map(travelled, params, x0)
        h = tree_dot(jax.tree.map(decayed, grads, params), previous, dt)
        betas = jnp.asarray(ladder, dt)
        m_old = state.max_abs_product
        clipped = jnp.clip(h, -m_old, m_old)
        m = jnp.maximum(betas * m_old, jnp.abs(h) + e)
        v = betas**2 * state.sum_of_squared_products + h**2
        r = betas * state.reward + clipped * state.scale
        wealth = jnp.asarray(s_init).astype(dt) / num_betas * m + jnp.maximum(0, r)
        # eps = 0: wealth and v are 0 until h ≠ 0
        s = _numerics.div0(wealth, _numerics.safe_sqrt(v) + e)
        total = jnp.sum(s)

        def step(x, x_init, d, u):  # x_{t+1} = x_0 - Σ s (Δ_{t-1} - u_t), as an update
            w = wide(x, d, u)
            new = x_init.astype(w) - total.astype(w) * (d.astype(w) - u.astype(w))
            return (new - x.astype(w)).astype(u.dtype)

        out = jax.tree.map(step, params, x0, previous, base_updates)
        return out, MechanicState(inner_state, jnp.ones([], bool), x0, m, v, r, s)

    return GradientTransformation(init, update)


@optimizer(
    references="`optax.contrib.mechanize` (around `gradtx` and `optax` optimizers)",
    counted=False,
    base_optimizer=Transform(), weight_decay=NON_NEGATIVE, eps=NON_NEGATIVE,
    s_init=NON_NEGATIVE, num_betas=Int(1),
)  # fmt: skip
def mechanize(
    base_optimizer: optax.GradientTransformation,
    weight_decay: float = 1e-2,
    eps: float = 1e-8,
    s_init: float = 1e-6,
    num_betas: int = 6,
) -> GradientTransformation:
    """Mechanic (Cutkosky et al.), as ``optax.contrib.mechanize``: a learned step scale.

    Runs ``base_optimizer`` and replaces its params trajectory by
    ``x_{t+1} = x_0 - (Σ_i s_i) Δ_t``, where Δ_t sums the base's steps negated
    (u_t signed as updates, so Δ_t points from x_{t+1} back to x_0) and the
    scales s_i are learned by coin betting, one per β_i = 1 - 0.1^i
    (``i = 1..num_betas``).  With g_t the gradient, x_0
    the params of the first update and ``t`` from 1::

      Δ_{t-1} = (x_0 - x_t) / (Σ s + eps),        Δ_t = Δ_{t-1} - u_t
      h_t = ⟨g_t + λ (Σ s) ||g_t|| / (||x_t|| + eps) · x_t, Δ_{t-1}⟩
      m_i = max(β_i m_i, |h_t| + eps),   v_i = β_i² v_i + h_t²
      r_i = β_i r_i + clip(h_t, ±m_i^old) s_i
      s_i = (s_init / num_betas · m_i + max(0, r_i)) / (sqrt(v_i) + eps)
      x_{t+1} = x_0 - (Σ s) Δ_t

    (norms and ⟨·,·⟩ over the whole tree).  The base needs no tuned learning
    rate: keep its schedule's shape, with peak 1 or any constant.

    Chain: ``base_optimizer``, its updates rescaled through the learned Σ s
    (a wrapper, like ``lookahead``).

    Differences: equals ``optax.contrib.mechanize``.  The base keeps its own
    step count and hyperparameters (``get_hyperparams`` shows them next to
    Mechanic's).  With ``eps = 0`` the starting wealth is 0 and the scales
    stay 0, no step (optax's ``0 / 0`` gives NaN); params moved meanwhile by
    anything else are taken back to x_0 (Δ is 0 there, where optax's is ±∞).
    Real params only.

    Args:
      base_optimizer: the optimizer whose steps are scaled (gradtx or optax).
      weight_decay: λ, Mechanic's own decay (in h only; the base's is separate).
      eps: added to the norms and roots.
      s_init: the initial scale, also Mechanic's starting wealth.
      num_betas: how many β_i (static: it shapes the state).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.mechanize(gradtx.adam(1.0), s_init=0.01)
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> updates, state = opt.update({"w": jnp.array([2.0, -4.0])}, opt.init(params), params)
      >>> # t = 1: Δ_0 = 0, so h_1 = 0 and each s_i = (s_init / 6 · eps) / eps: Σ s = s_init
      >>> updates["w"].round(6)  # s_init times Adam's first step -1.0 · sign(g)
      Array([-0.01,  0.01], dtype=float32)

    References:
      Cutkosky, Defazio & Mehta, "Mechanic: A Learning Rate Tuner", NeurIPS
      2023 (arXiv:2306.00144).
    """
    return _mechanize(base_optimizer, weight_decay, eps, s_init, num_betas)

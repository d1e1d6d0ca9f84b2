"""MoMo's step sizes (Schaipp et al.): Polyak steps on a model built from momentum.

Both primitives read the loss ``value`` passed to ``update`` as a keyword
(``update(grads, state, params, value=loss)``), average it with the same
weights as the gradients and as ⟨g, x⟩, and take the largest step along the
momentum (capped by the learning rate) that does not take the averaged
linear model below a lower bound of the loss.  Sums over the whole tree run
in the state's scalar dtype (JAX's default float).
"""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _tree
from gradtx import _update_checks
from gradtx._base import GradientTransformation
from gradtx._base import ScalarOrSchedule
from gradtx._base import Updates
from gradtx._base import float_dtype
from gradtx._base import gradient
from gradtx._base import step_count
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._specs import DECAY_RATE
from gradtx._specs import LEARNING_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import Flag
from gradtx._specs import Hyper
from gradtx.transforms._sums import tree_dot
from gradtx.transforms._sums import tree_squared_norm
from gradtx.transforms.distance import needs_params

# Below this squared norm of the momentum no step is taken (float64's machine
# epsilon whatever the dtype, as optax's ``jnp.finfo(float).eps``).
_TINY = float(np.finfo(np.float64).eps)
LOWER_BOUND = Hyper()
"""A lower bound of the loss: any finite number."""


def loss_value(call: str, extra: dict[str, Any], dtype: Any) -> jax.Array:
    """The ``value`` keyword as a scalar of ``dtype``; a clear error without it."""
    value = extra.get("value")
    if value is None:
        raise _update_checks.missing_keyword(
            f"{call}: update needs the loss at the params as the keyword value: "
            "value, grads = jax.value_and_grad(loss)(params); "
            "opt.update(grads, state, params, value=value)"
        )
    return _update_checks.scalar_loss(call, value).astype(dtype)


def _polyak(alpha, decay, loss, inner, iprod, norm, lb_prev, lower_bound, adapt, bc1=None):
    """τ and the next lower-bound estimate from the averaged model (all scalars).

    ``loss`` f̄, ``inner`` γ (the average of ⟨g, x⟩), ``iprod`` ⟨m, x⟩, ``norm``
    the (preconditioned) squared norm of m, ``decay`` 1 + αλ, ``lb_prev`` f*
    (or its running estimate); ``bc1`` is MoMo-Adam's bias correction 1 - b1^t
    (``None`` for MoMo).  The products keep optax's order.
    """
    lb = lb_prev
    if adapt:  # lower the estimate where the model already goes below it
        cap = decay * (loss - inner) + iprod
        if bc1 is None:
            below, halved = cap < decay * lb_prev, cap / (2 * decay)
        else:
            below, halved = cap < decay * bc1 * lb_prev, cap / (2 * bc1 * decay)
        lb = jnp.where(below, jnp.maximum(halved, lower_bound), lb_prev)
    scaled_lb = lb if bc1 is None else bc1 * lb
    gap = jnp.maximum(decay * (loss - scaled_lb - inner) + iprod, 0)
    # No direction, or a gradient so large that the loss and ||m||² both overflowed
    # (∞/∞ says nothing about the step; optax's is NaN): no step, as scale_by_polyak.
    none = (norm <= _TINY) | (jnp.isinf(gap) & jnp.isinf(norm))
    t1 = jnp.where(none, 0, gap / jnp.where(none, 1, norm))
    tau = jnp.minimum(alpha if bc1 is None else alpha / bc1, t1)
    new_lb = None
    if adapt:
        # no step, no decrease of the model: not 0 · ∞ where ||m||² overflowed
        model = (loss + iprod - inner) - jnp.where(tau == 0, 0, 0.5 * tau * norm)
        model = model if bc1 is None else model / bc1
        # An overflowed loss makes the model +∞, no bound: optax's ∞ estimate
        # gives ∞ - ∞ = NaN at the next step; the estimate stays instead.
        new_lb = jnp.where(model == jnp.inf, lb, jnp.maximum(model, lower_bound))
    return tau, new_lb


class ScaleByMomoState(NamedTuple):
    """State of ``scale_by_momo``.

    Attributes:
      mu: m_t, the momentum (EMA of g, m_1 = g_1).
      loss_average: f̄_t, the EMA of the loss values (f̄_1 = f_1).
      inner_product_average: γ_t, the EMA of ⟨g_t, x_t⟩.
      estimated_lower_bound: the running estimate of the loss's lower
        bound (``adapt_lower_bound``, else ``None``); not ``lower_bound``,
        the hyperparameter it starts from, so ``optax.tree_utils.tree_get``
        finds one of each.
    """

    mu: Updates
    loss_average: jax.Array
    inner_product_average: jax.Array
    estimated_lower_bound: jax.Array | None


def _scalars(adapt, lower_bound):
    dtype = float_dtype()
    zero = jnp.zeros([], dtype)
    lb = jnp.asarray(lower_bound).astype(dtype) if adapt else None
    return zero, jnp.zeros([], dtype), lb


def _decay(alpha, weight_decay):
    return 1 if weight_decay is None else 1 + alpha * jnp.asarray(weight_decay).astype(alpha.dtype)


@factory(counted=True, learning_rate=LEARNING_RATE, beta=DECAY_RATE, lower_bound=LOWER_BOUND,
         weight_decay=Hyper(low=0.0, optional=True), adapt_lower_bound=Flag())  # fmt: skip
def scale_by_momo(
    learning_rate: ScalarOrSchedule = 1.0,
    beta: float = 0.9,
    lower_bound: float = 0.0,
    weight_decay: float | None = None,
    *,
    adapt_lower_bound: bool = False,
) -> GradientTransformation:
    """MoMo's step τ_t m_t: heavy-ball momentum with a capped Polyak step size.

    With f_t the loss ``value``, g_t the gradient, x_t the params at update t
    (from 1), α = ``learning_rate``, λ = ``weight_decay`` and β_1 = 0, β_t = β::

      f̄_t = β_t f̄_{t-1} + (1 - β_t) f_t,   m_t = β_t m_{t-1} + (1 - β_t) g_t
      γ_t = β_t γ_{t-1} + (1 - β_t) ⟨g_t, x_t⟩
      τ_t = min(α, max((1 + αλ)(f̄_t - f* - γ_t) + ⟨m_t, x_t⟩, 0) / ||m_t||²)
      out = τ_t m_t

    (τ_t = 0 where ||m_t||² is below float64's epsilon).  f* is
    ``lower_bound``, or with ``adapt_lower_bound`` a running estimate that
    starts there and is never below it (the paper's online update).  The
    decoupled decay ``αλ/(1 + αλ) x_t`` and the sign are the next stages'
    (``momo``).

    Differences: where the loss and ||m_t||² both overflow to ∞ (a huge
    gradient) τ_t = 0 here, and an infinite model leaves the lower-bound
    estimate as it was (optax's ``∞/∞``, ``0 · ∞`` and ``∞ - ∞`` give NaN).

    Args:
      learning_rate: α, the cap on the step size.
      beta: the momentum and averaging coefficient in [0, 1).
      lower_bound: f*, a lower bound of the loss (0 for most losses).
      weight_decay: λ (enters the model as 1 + αλ; ``None``: 0).
      adapt_lower_bound: estimate f* on the fly, from ``lower_bound`` up.

    Example:
      >>> import gradtx, jax, jax.numpy as jnp
      >>> tx = gradtx.scale_by_momo()
      >>> x = jnp.array([1.0, 2.0])
      >>> value, g = jax.value_and_grad(lambda x: jnp.sum(x**2))(x)
      >>> tx.update(g, tx.init(x), x, value=value)[0]  # (f - f*) / ||g||² · g
      Array([0.5, 1. ], dtype=float32)

    References:
      Schaipp, Ohana, Eickenberg, Defazio & Gower, "MoMo: Momentum Models for
      Adaptive Learning Rates", ICML 2024 (arXiv:2305.07583).
    """
    call = current_call("gradtx.scale_by_momo")

    def init(params):
        loss, inner, lb = _scalars(adapt_lower_bound, lower_bound)
        return ScaleByMomoState(_tree.zeros_like(params), loss, inner, lb)

    def update(updates, state, params=None, **extra):
        needs_params(call, params, "the momentum model is linear in the params")
        dt = state.loss_average.dtype
        value = loss_value(call, extra, dt)
        grads = gradient(updates, extra)
        first = step_count(extra, call) == 0
        b = jnp.where(first, 0, jnp.asarray(beta).astype(dt))  # m_1 = g_1, f̄_1 = f_1
        loss = b * state.loss_average + (1 - b) * value
        mu = _numerics.ema(b, state.mu, grads)
        inner = b * state.inner_product_average + (1 - b) * tree_dot(grads, params, dt, once=True)
        alpha = jnp.asarray(learning_rate).astype(dt)
        low = jnp.asarray(lower_bound).astype(dt)
        tau, new_lb = _polyak(
            alpha, _decay(alpha, weight_decay), loss, inner, tree_dot(mu, params, dt, once=True),
            tree_squared_norm(mu, dt, once=True), state.estimated_lower_bound if adapt_lower_bound else low, low,
            adapt_lower_bound,
        )  # fmt: skip

        def step(m, u):
            wide = _dtypes.compute_dtype(m.dtype, u.dtype)
            return (tau.astype(wide) * m.astype(wide)).astype(u.dtype)

        out = jax.tree.map(step, mu, updates)
        return out, ScaleByMomoState(mu, loss, inner, new_lb)

    return GradientTransformation(init, update)


class ScaleByMomoAdamState(NamedTuple):
    """State of ``scale_by_momo_adam``.

    Attributes:
      mu: m_t, EMA (b1) of g.
      nu: v_t, EMA (b2) of g².
      loss_average: f̄_t, EMA (b1) of the loss values.
      inner_product_average: γ_t, EMA (b1) of ⟨g_t, x_t⟩.
      estimated_lower_bound: the running estimate of the loss's lower
        bound (``adapt_lower_bound``, else ``None``); not ``lower_bound``,
        the hyperparameter it starts from, so ``optax.tree_utils.tree_get``
        finds one of each.
    """

    mu: Updates
    nu: Updates
    loss_average: jax.Array
    inner_product_average: jax.Array
    estimated_lower_bound: jax.Array | None


@factory(counted=True, learning_rate=LEARNING_RATE, b1=DECAY_RATE, b2=DECAY_RATE,
         eps=NON_NEGATIVE, lower_bound=LOWER_BOUND, weight_decay=Hyper(low=0.0, optional=True),
         adapt_lower_bound=Flag())  # fmt: skip
def scale_by_momo_adam(
    learning_rate: ScalarOrSchedule = 1e-2,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    lower_bound: float = 0.0,
    weight_decay: float | None = None,
    *,
    adapt_lower_bound: bool = False,
) -> GradientTransformation:
    """MoMo-Adam's step τ_t D_t⁻¹ m_t: Adam's direction with a capped Polyak step size.

    With f_t the loss ``value``, g_t the gradient, x_t the params at update t
    (from 1), α = ``learning_rate``, λ = ``weight_decay``, c1 = 1 - b1^t::

      f̄_t = b1 f̄_{t-1} + (1 - b1) f_t,   m_t = b1 m_{t-1} + (1 - b1) g_t
      v_t = b2 v_{t-1} + (1 - b2) g_t²,   D_t = eps + sqrt(v_t / (1 - b2^t))
      γ_t = b1 γ_{t-1} + (1 - b1) ⟨g_t, x_t⟩
      τ_t = min(α / c1, max((1 + αλ)(f̄_t - c1 f* - γ_t) + ⟨m_t, x_t⟩, 0) / ⟨m_t, D_t⁻¹ m_t⟩)
      out = τ_t D_t⁻¹ m_t

    (τ_t = 0 where ⟨m_t, D_t⁻¹ m_t⟩ is below float64's epsilon; f* as in
    ``scale_by_momo``).  The decoupled decay and the sign are the next
    stages' (``momo_adam``).

    Differences: with ``eps = 0`` a coordinate whose gradient has always been
    0 has D_t⁻¹ m_t = 0 here (optax's ``0 / 0`` gives NaN, and a NaN step);
    overflows are handled as in ``scale_by_momo``.

    Args:
      learning_rate: α, the cap on the (bias-corrected) step size.
      b1: decay of m, f̄ and γ in [0, 1).
      b2: decay of v in [0, 1).
      eps: added to the root in D.
      lower_bound: f*, as in ``scale_by_momo``.
      weight_decay: λ, which enters only the model's 1 + αλ (``None``: 0).
      adapt_lower_bound: replace f* by a running estimate, never below ``lower_bound``.

    Example:
      >>> import gradtx, jax, jax.numpy as jnp
      >>> tx = gradtx.scale_by_momo_adam(learning_rate=0.1, eps=0.0)
      >>> x = jnp.array([1.0, 2.0])
      >>> value, g = jax.value_and_grad(lambda x: jnp.sum(x**2))(x)
      >>> tx.update(g, tx.init(x), x, value=value)[0]  # capped: α · sign(g) at the first step
      Array([0.1, 0.1], dtype=float32)

    References:
      Schaipp et al., "MoMo: Momentum Models for Adaptive Learning Rates", ICML 2024,
      which derives MoMo-Adam alongside MoMo.
    """
    call = current_call("gradtx.scale_by_momo_adam")

    def init(params):
        loss, inner, lb = _scalars(adapt_lower_bound, lower_bound)
        return ScaleByMomoAdamState(
            _tree.zeros_like(params), _tree.squares_like(params), loss, inner, lb
        )

    def update(updates, state, params=None, **extra):
        needs_params(call, params, "the momentum model is linear in the params")
        dt = state.loss_average.dtype
        value = loss_value(call, extra, dt)
        grads = gradient(updates, extra)
        t = _numerics.safe_increment(step_count(extra, call))
        beta1 = jnp.asarray(b1).astype(dt)
        loss = beta1 * state.loss_average + (1 - beta1) * value
        mu = _numerics.ema(b1, state.mu, grads)
        nu = _numerics.ema(b2, state.nu, jax.tree.map(lambda g: _tree.abs_sq(g.astype(
            _dtypes.compute_dtype(g.dtype))), grads))  # fmt: skip
        correction2 = _numerics.bias_correction(jnp.asarray(b2).astype(dt), t)

        def precondition(m, v):
            wide = _dtypes.compute_dtype(m.dtype, v.dtype)
            root = _numerics.safe_sqrt(v.astype(wide) / correction2.astype(wide))
            # eps = 0 and a gradient always 0: m = v = 0, no direction rather than 0/0
            return _numerics.div0(m.astype(wide), jnp.asarray(eps).astype(wide) + root)

        direction = jax.tree.map(precondition, mu, nu)
        inner = beta1 * state.inner_product_average + (1 - beta1) * tree_dot(
            grads, params, dt, once=True
        )
        alpha = jnp.asarray(learning_rate).astype(dt)
        low = jnp.asarray(lower_bound).astype(dt)
        tau, new_lb = _polyak(
            alpha, _decay(alpha, weight_decay), loss, inner, tree_dot(mu, params, dt, once=True),
            tree_dot(mu, direction, dt, once=True), state.estimated_lower_bound if adapt_lower_bound else low, low,
            adapt_lower_bound, bc1=_numerics.bias_correction(beta1, t),
        )  # fmt: skip

        def step(p, u):
            return (tau.astype(p.dtype) * p).astype(u.dtype)

        out = jax.tree.map(step, direction, updates)
        return out, ScaleByMomoAdamState(mu, nu, loss, inner, new_lb)

    return GradientTransformation(init, update)

"""MoMo and MoMo-Adam: momentum methods whose step size is a capped Polyak step on a model."""

from __future__ import annotations

from gradtx._base import GradientTransformation
from gradtx._base import ScalarOrSchedule
from gradtx._base import chain
from gradtx._registry import optimizer
from gradtx._specs import DECAY_RATE
from gradtx._specs import LEARNING_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import Flag
from gradtx._specs import Hyper
from gradtx.transforms.decay import decoupled_weight_decay
from gradtx.transforms.momo import LOWER_BOUND
from gradtx.transforms.momo import scale_by_momo
from gradtx.transforms.momo import scale_by_momo_adam
from gradtx.transforms.scaling import scale

WEIGHT_DECAY = Hyper(low=0.0, optional=True)
"""optax's ``weight_decay`` here: a number (0 leaves the decay out)."""


def _signed(direction, learning_rate, weight_decay):
    """``-(direction + αλ / (1 + αλ) x)``: MoMo's decoupled decay, then the sign."""
    stages = [direction]
    if weight_decay is not None:
        shrink = learning_rate * weight_decay / (1 + learning_rate * weight_decay)
        stages.append(decoupled_weight_decay(shrink))
    return chain(*stages, scale(-1.0))


@optimizer(
    references="`optax.contrib.momo` (`value` from `jax.value_and_grad`; adaptive lower bound, "
    "decay, schedule)",
    takes=("value",),
    learning_rate=LEARNING_RATE, beta=DECAY_RATE, lower_bound=LOWER_BOUND,
    weight_decay=WEIGHT_DECAY, adapt_lower_bound=Flag(),
)  # fmt: skip
def momo(
    learning_rate: ScalarOrSchedule = 1.0,
    beta: float = 0.9,
    lower_bound: float = 0.0,
    weight_decay: float | None = 0.0,
    adapt_lower_bound: bool = False,
) -> GradientTransformation:
    """MoMo (Schaipp et al.), as ``optax.contrib.momo``: SGD with momentum and a Polyak step.

    ``update`` needs the loss at the params: ``value, grads =
    jax.value_and_grad(loss)(params)``; ``opt.update(grads, state, params,
    value=value)``.  With α = ``learning_rate``, λ = ``weight_decay``, f* =
    ``lower_bound`` and β_1 = 0, β_t = ``beta`` (``t`` from 1)::

      f̄_t = β_t f̄_{t-1} + (1 - β_t) f_t,   m_t = β_t m_{t-1} + (1 - β_t) g_t
      γ_t = β_t γ_{t-1} + (1 - β_t) ⟨g_t, x_t⟩
      τ_t = min(α, max((1 + αλ)(f̄_t - f* - γ_t) + ⟨m_t, x_t⟩, 0) / ||m_t||²)
      x_{t+1} = x_t - τ_t m_t - αλ / (1 + αλ) x_t

    τ_t is the step to where the averaged linear model of the loss meets f*,
    capped at α; it is 0 where ||m_t||² is below float64's epsilon.  With
    ``adapt_lower_bound`` f* is estimated on the fly, never below
    ``lower_bound``.

    Chain: ``scale_by_momo(learning_rate, beta, lower_bound, weight_decay) →
    decoupled_weight_decay(αλ / (1 + αλ)) → scale(-1)``.

    Differences: equals ``optax.contrib.momo``.  Without ``adapt_lower_bound``
    the bound is read from the hyperparameter at every step (so setting it
    takes effect); with it, the estimate lives in the state as in optax.
    Where the loss overflows to ∞ the bound estimate stays, and where
    ||m_t||² overflows too no step is taken (optax's ``∞/∞`` gives NaN).

    Args:
      learning_rate: α, the cap on the step size (a number or schedule).
      beta: momentum and averaging coefficient in [0, 1).
      lower_bound: f*, a lower bound of the loss (0 for most losses).
      weight_decay: λ (``0``: none).
      adapt_lower_bound: estimate f* on the fly, from ``lower_bound`` up.

    Example:
      >>> import gradtx, jax, jax.numpy as jnp
      >>> loss = lambda p: jnp.sum(p["w"] ** 2)  # its minimum is 0, the default f*
      >>> params = {"w": jnp.array([3.0])}
      >>> value, grads = jax.value_and_grad(loss)(params)  # f = 9, g = 6
      >>> opt = gradtx.momo()
      >>> updates, state = opt.update(grads, opt.init(params), params, value=value)
      >>> updates["w"]  # m_1 = g; Polyak step (f - f*) / g² = 9 / 36 below α = 1: -0.25 · 6
      Array([-1.5], dtype=float32)

    References:
      Schaipp, Ohana, Eickenberg, Defazio & Gower, "MoMo: Momentum Models for
      Adaptive Learning Rates", ICML 2024 (arXiv:2305.07583).
    """
    direction = scale_by_momo(
        learning_rate, beta, lower_bound, weight_decay, adapt_lower_bound=adapt_lower_bound
    )
    return _signed(direction, learning_rate, weight_decay)


@optimizer(
    references="`optax.contrib.momo_adam` (`value` from `jax.value_and_grad`; adaptive lower "
    "bound, decay, schedule)",
    takes=("value",),
    learning_rate=LEARNING_RATE, b1=DECAY_RATE, b2=DECAY_RATE, eps=NON_NEGATIVE,
    lower_bound=LOWER_BOUND, weight_decay=WEIGHT_DECAY, adapt_lower_bound=Flag(),
)  # fmt: skip
def momo_adam(
    learning_rate: ScalarOrSchedule = 1e-2,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    lower_bound: float = 0.0,
    weight_decay: float | None = 0.0,
    adapt_lower_bound: bool = False,
) -> GradientTransformation:
    """MoMo-Adam (Schaipp et al.), as ``optax.contrib.momo_adam``: Adam with a Polyak step.

    ``update`` needs the loss at the params (``value=``, as for ``momo``).
    With c1 = 1 - b1^t (``t`` from 1) and the rest as in ``momo``::

      f̄_t = b1 f̄_{t-1} + (1 - b1) f_t,   m_t = b1 m_{t-1} + (1 - b1) g_t
      v_t = b2 v_{t-1} + (1 - b2) g_t²,   D_t = eps + sqrt(v_t / (1 - b2^t))
      γ_t = b1 γ_{t-1} + (1 - b1) ⟨g_t, x_t⟩
      τ_t = min(α / c1, max((1 + αλ)(f̄_t - c1 f* - γ_t) + ⟨m_t, x_t⟩, 0) / ⟨m_t, D_t⁻¹ m_t⟩)
      x_{t+1} = x_t - τ_t D_t⁻¹ m_t - αλ / (1 + αλ) x_t

    Chain: ``scale_by_momo_adam(learning_rate, b1, b2, eps, lower_bound,
    weight_decay) → decoupled_weight_decay(αλ / (1 + αλ)) → scale(-1)``.

    Differences: equals ``optax.contrib.momo_adam`` (the bound as in ``momo``).
    With ``eps = 0`` a coordinate whose gradient has always been 0 takes no
    step (optax's ``0 / 0`` in D_t⁻¹ m_t gives NaN, and NaN everywhere);
    overflows as in ``momo``.  For complex params optax squares ``g`` itself
    in v_t, where gradtx keeps ``|g|²`` (as every second moment here): the
    steps differ unless the gradients are real.

    Args:
      learning_rate: α, the cap on the bias-corrected step size (number or schedule).
      b1: decay of m, f̄ and γ in [0, 1).
      b2: decay of v in [0, 1).
      eps: added to the root in D.
      lower_bound: f*, as in ``momo``.
      weight_decay: λ of the decoupled decay, as in ``momo``.
      adapt_lower_bound: replace f* by a running estimate, never below ``lower_bound``.

    Example:
      >>> import gradtx, jax, jax.numpy as jnp
      >>> opt = gradtx.momo_adam(learning_rate=1.0)
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> value, grads = jax.value_and_grad(lambda p: jnp.sum(p["w"] ** 2))(params)
      >>> updates, _ = opt.update(grads, opt.init(params), params, value=value)
      >>> # t = 1: m = 0.1 g, D⁻¹m = 0.1 sign(g), τ = 0.1 f / ⟨m, D⁻¹m⟩ = 0.5 / 0.06 < α / c1
      >>> updates["w"]  # so both coordinates move τ · 0.1 = f / Σ|g| = 5 / 6 (momo: 0.5 and 1)
      Array([-0.83333343,  0.83333343], dtype=float32)

    References:
      Schaipp et al., "MoMo: Momentum Models for Adaptive Learning Rates", ICML 2024,
      which derives MoMo-Adam alongside MoMo.
    """
    direction = scale_by_momo_adam(
        learning_rate, b1, b2, eps, lower_bound, weight_decay, adapt_lower_bound=adapt_lower_bound
    )
    return _signed(direction, learning_rate, weight_decay)

"""Optimistic methods: steps extrapolated from their last change (min-max games)."""

from __future__ import annotations

from jax.typing import DTypeLike

from gradtx._base import GradientTransformation
from gradtx._base import ScalarOrSchedule
from gradtx._base import chain
from gradtx._factory_state import Specs
from gradtx._registry import optimizer
from gradtx._specs import DECAY_RATE
from gradtx._specs import LEARNING_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import DType
from gradtx._specs import Flag
from gradtx._specs import Hyper
from gradtx.optimizers._stages import descent
from gradtx.transforms._adam import adam_stages
from gradtx.transforms.optimism import add_optimism
from gradtx.transforms.scaling import scale_by_learning_rate

OPTIMISM: Specs = dict(
    learning_rate=LEARNING_RATE, alpha=Hyper(schedule=True), beta=Hyper(schedule=True)
)
"""optax's optimistic step: a final learning rate, the weights of a step and its change."""


@optimizer(references="`optax.optimistic_gradient_descent` (schedules)", **OPTIMISM)
def optimistic_gradient_descent(
    learning_rate: ScalarOrSchedule,
    alpha: ScalarOrSchedule = 1.0,
    beta: ScalarOrSchedule = 1.0,
) -> GradientTransformation:
    """Optimistic gradient descent (Mokhtari et al.), as ``optax.optimistic_gradient_descent``.

    Update (``g_0 = g_1``)::

      θ_t = θ_{t-1} - η_t ((α + β) g_t - β g_{t-1})

    With ``α = β = 1``, ``2 g_t - g_{t-1}``: the gradient plus its last
    change, an approximation of the extra-gradient step with one gradient per
    step.  On bilinear games it converges in the last iterate where
    simultaneous gradient descent spirals out.

    Chain: ``add_optimism(alpha, beta) → scale_by_learning_rate``.

    Differences: none from ``optax.optimistic_gradient_descent``; ``alpha`` and
    ``beta`` may be schedules here (optax's annotation allows them, its
    ``scale_by_optimistic_gradient`` multiplies by the numbers only).

    Args:
      learning_rate: η, a number or schedule.
      alpha: weight of the current gradient.
      beta: weight of the gradient's last change.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.optimistic_gradient_descent(0.1)
      >>> params = {"w": jnp.array([1.0])}
      >>> state = opt.init(params)
      >>> _, state = opt.update({"w": jnp.array([1.0])}, state)
      >>> updates, _ = opt.update({"w": jnp.array([3.0])}, state)
      >>> updates["w"]  # -0.1 · (2 · 3 - 1)
      Array([-0.5], dtype=float32)

    References:
      Mokhtari, Ozdaglar & Pattathil, "A Unified Analysis of Extra-gradient and
      Optimistic Gradient Methods for Saddle Point Problems", AISTATS 2020.
    """
    return descent(add_optimism(alpha, beta), learning_rate=learning_rate)


ADAM_STEP: Specs = dict(
    b1=DECAY_RATE,
    b2=DECAY_RATE,
    eps=NON_NEGATIVE,
    eps_root=NON_NEGATIVE,
    mu_dtype=DType(),
    nesterov=Flag(),
)
"""The options of optax's ``scale_by_adam``, the step both optimistic Adams weigh."""


@optimizer(
    references="`optax.optimistic_adam` (`nesterov`, `mu_dtype`)",
    learning_rate=Hyper(low=0.0),
    optimism=Hyper(nullable=True),
    **ADAM_STEP,
)
def optimistic_adam(
    learning_rate: float,
    optimism: float | None = None,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: DTypeLike | None = None,
    *,
    nesterov: bool = True,
) -> GradientTransformation:
    """Optimistic Adam (Daskalakis et al.), as ``optax.optimistic_adam``.

    Update (``t`` from 1, ``r_0 = r_1``), with ``o`` the optimism::

      m̂_t, v̂_t as in Adam; with ``nesterov`` (Dozat's look-ahead, constant b1)
        m̂_t = b1 m_t / (1 - b1^{t+1}) + (1 - b1) g_t / (1 - b1^t)
      r_t = m̂_t / (sqrt(v̂_t + eps_root) + eps)
      θ_t = θ_{t-1} - (η r_t + o (r_t - r_{t-1}))

    Adam's step made optimistic: the step plus ``o`` times its last change.
    The learning rate is the weight of ``r_t``, not a final scale, so it is
    a number (as in optax); ``optimism=None`` uses the learning rate, as the
    paper does, and keeps following it when it is set later.

    Chain: ``add_nesterov_momentum(b1, warming=False) → scale_by_rms(b2, eps,
    eps_root, bias_correction=True) → add_optimism(learning_rate, optimism) →
    scale_by_learning_rate(1)`` (without ``nesterov``: ``add_momentum(b1,
    ema=True) → bias_correct(b1)`` first).

    Differences: none from ``optax.optimistic_adam`` (its Nesterov default
    included).  optax deprecates it for ``optimistic_adam_v2``, whose
    learning rate multiplies the whole optimistic step; gradtx keeps this one.

    Args:
      learning_rate: η ≥ 0, the weight of the current Adam step (a number).
      optimism: o, the weight of its last change (``None``: η).
      b1: first-moment EMA rate, in [0, 1).
      b2: second-moment EMA rate, in [0, 1).
      eps: added outside the root.
      eps_root: added inside the root.
      mu_dtype: storage dtype of the first moment.
      nesterov: Dozat's look-ahead first moment (optax's default ``True``).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.optimistic_adam(0.1, b1=0.0, nesterov=False)  # o = η = 0.1
      >>> _, state = opt.update({"w": jnp.array([1.0])}, opt.init({"w": jnp.zeros(1)}))
      >>> updates, state = opt.update({"w": jnp.array([-1.0])}, state)
      >>> # b1 = 0: r_t = g_t / |g_t| (v̂_2 = 1), so r_1 = 1 and r_2 = -1
      >>> updates["w"]  # -(η r_2 + o (r_2 - r_1)) = 0.1 + 0.2 (Adam alone: 0.1)
      Array([0.3], dtype=float32)

    References:
      Daskalakis et al., "Training GANs with Optimism", ICLR 2018.
    """
    return chain(
        *adam_stages(b1, b2, eps, eps_root, nesterov=nesterov, mu_dtype=mu_dtype),
        add_optimism(learning_rate, learning_rate if optimism is None else optimism),
        scale_by_learning_rate(1.0),
    )


@optimizer(
    references="`optax.optimistic_adam_v2` (`nesterov`, `mu_dtype`, schedules)",
    **OPTIMISM,
    **ADAM_STEP,
)
def optimistic_adam_v2(
    learning_rate: ScalarOrSchedule,
    *,
    alpha: ScalarOrSchedule = 1.0,
    beta: ScalarOrSchedule = 1.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: DTypeLike | None = None,
    nesterov: bool = True,
) -> GradientTransformation:
    """Optimistic Adam with a final learning rate, as ``optax.optimistic_adam_v2``.

    Update (``t`` from 1, ``r_0 = r_1``)::

      m̂_t, v̂_t as in Adam; with ``nesterov`` (Dozat's look-ahead, constant b1)
        m̂_t = b1 m_t / (1 - b1^{t+1}) + (1 - b1) g_t / (1 - b1^t)
      r_t = m̂_t / (sqrt(v̂_t + eps_root) + eps)
      θ_t = θ_{t-1} - η_t ((α + β) r_t - β r_{t-1})

    The same algorithm as ``optimistic_adam``, parametrised as
    ``optimistic_gradient_descent`` on Adam's step: ``alpha`` and ``beta``
    weigh the step and its last change, and the learning rate scales the
    whole, so it may be a schedule.  ``optimistic_adam(η, o)`` is
    ``optimistic_adam_v2(1, alpha=η, beta=o)``.

    Chain: ``add_nesterov_momentum(b1, warming=False) → scale_by_rms(b2, eps,
    eps_root, bias_correction=True) → add_optimism(alpha, beta) →
    scale_by_learning_rate`` (without ``nesterov``: ``add_momentum(b1,
    ema=True) → bias_correct(b1)`` first).

    Differences: none from ``optax.optimistic_adam_v2``; ``alpha`` and
    ``beta`` may be schedules here (optax's multiplies by numbers only).

    Args:
      learning_rate: η, a number or schedule.
      alpha: weight of the current Adam step.
      beta: weight of its last change.
      b1, b2, eps, eps_root, mu_dtype, nesterov: Adam's step, as in ``optimistic_adam``.

    Example:
      >>> import gradtx, jax, jax.numpy as jnp
      >>> opt = gradtx.optimistic_adam_v2(1e-2, alpha=1.0, beta=0.5, nesterov=False)
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(params)
      >>> updates, state = opt.update(grads, opt.init(params))
      >>> updates["w"]  # r_0 = r_1 = sign(g), Adam's first step: a step of η α
      Array([-0.01,  0.01], dtype=float32)

    References:
      Daskalakis et al., "Training GANs with Optimism", ICLR 2018.
    """
    return descent(
        *adam_stages(b1, b2, eps, eps_root, nesterov=nesterov, mu_dtype=mu_dtype),
        add_optimism(alpha, beta),
        learning_rate=learning_rate,
    )

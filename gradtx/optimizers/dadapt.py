"""Prodigy and D-Adapt AdamW: AdamW whose learning rate is a growing distance estimate."""

from __future__ import annotations

import jax
import numpy as np

from gradtx import _checks
from gradtx import _stored
from gradtx._base import GradientTransformation
from gradtx._base import ScalarOrSchedule
from gradtx._base import chain
from gradtx._base import float_dtype
from gradtx._registry import optimizer
from gradtx._specs import LEARNING_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import Flag
from gradtx._specs import Hyper
from gradtx.transforms.dadapt import ESTIM_LR0
from gradtx.transforms.dadapt import scale_by_dadapt_adam
from gradtx.transforms.dadapt import scale_by_prodigy
from gradtx.transforms.scaling import scale
from gradtx.transforms.scaling import scale_by_learning_rate


class Betas(Hyper):
    """Spec of optax's ``betas=(b1, b2)``: two decay rates in [0, 1), kept in state
    as one array of shape (2,) (``set_hyperparams(betas=(0.9, 0.99))``)."""

    def check(self, call, name, value):
        given = value
        if isinstance(value, (np.ndarray, jax.Array)) and value.ndim == 1:
            value = tuple(value)  # optax takes an array of the two as well
        if isinstance(value, (np.ndarray, jax.Array)) and value.ndim > 1:
            raise TypeError(f"{call}({name}={given!r}): {name} must be a pair (b1, b2)")
        if not isinstance(value, (tuple, list)):
            super().check(call, name, value)  # a bad number is reported as such
            raise TypeError(f"{call}({name}={given!r}): {name} must be a pair (b1, b2)")
        if len(value) != 2:
            raise TypeError(f"{call}({name}={given!r}): {name} must be a pair (b1, b2)")
        for i, v in enumerate(value):
            element = f"{name}[{i}]"  # which of the two is wrong
            super().check(call, element, v)
            if _checks.is_concrete_number(v):
                _stored.check_below_one(call, element, float(v), float_dtype(), "stored in")
        return tuple(value)


BETAS = Betas(low=0.0, high=1.0, high_open=True)
WEIGHT_DECAY = Hyper(low=0.0, optional=True)
"""optax's ``weight_decay`` here: a number (0 leaves the decay out)."""


@optimizer(
    references="`optax.contrib.prodigy` (schedule, `beta3`, decay, `safeguard_warmup`)",
    learning_rate=LEARNING_RATE, betas=BETAS, beta3=Hyper(0.0, 1.0, high_open=True, nullable=True),
    eps=NON_NEGATIVE, estim_lr0=ESTIM_LR0, estim_lr_coef=NON_NEGATIVE,
    weight_decay=WEIGHT_DECAY, safeguard_warmup=Flag(),
)  # fmt: skip
def prodigy(
    learning_rate: ScalarOrSchedule = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    beta3: float | None = None,
    eps: float = 1e-8,
    estim_lr0: float = 1e-6,
    estim_lr_coef: float = 1.0,
    weight_decay: float | None = 0.0,
    safeguard_warmup: bool = False,
) -> GradientTransformation:
    """Prodigy (Mishchenko & Defazio), as ``optax.contrib.prodigy``.

    AdamW on d·g at the step size ``d_t η_t sqrt(1 - b2^t) / (1 - b1^t)``,
    where d_t, a distance to the solution, is estimated from how the
    gradients correlate with the distance travelled from x_0 (the params
    given to ``init``; ``t`` from 1, x_t the params at update t)::

      m_t = b1 m_{t-1} + (1 - b1) d_t g_t,      v_t = b2 v_{t-1} + (1 - b2) d_t² g_t²
      s_t = b3 s_{t-1} + (d_t η_t c_t / d_0) d_t g_t     (safeguard_warmup: d_t / d_0 · d_t g_t)
      r_t = b3 r_{t-1} + (d_t / d_0) d_t η_t c_t ⟨g_t, x_0 - x_t⟩
      d_{t+1} = max(d_t, estim_lr_coef · r_t / ||s_t||₁)
      x_{t+1} = x_t - η_t d_t c_t (m_t / (sqrt(v_t) + d_{t+1} eps) + λ x_t)

    with c_t = sqrt(1 - b2^t) / (1 - b1^t), b3 = ``beta3`` (default sqrt(b2))
    and d_0 = ``estim_lr0``.  ``learning_rate`` is a schedule multiplier
    (peak 1; the authors suggest linear decay with some warm-up).

    Chain: ``scale_by_prodigy(learning_rate, b1, b2, beta3, eps, estim_lr0,
    estim_lr_coef, weight_decay) → scale_by_learning_rate``.

    Differences: equals ``optax.contrib.prodigy``.  ``betas`` is one
    hyperparameter of shape (2,) in the state.  Where optax's estimate is
    0/0 (a zero gradient sum, e.g. ``learning_rate=0``) and turns d into NaN,
    the estimate here is 0 and d stays.  So it is where the sum alone is 0
    (float32 leaves with x64 on, in which tiny gradients' terms underflow),
    where optax's d becomes infinite.  With ``eps = 0`` a coordinate whose
    gradient has always been 0 takes no step (optax's ``0 / 0`` gives NaN).
    ``estim_lr0`` is read by ``init`` only and kept in the state as d_0
    (``initial_distance``): a value written later into
    ``optax.inject_hyperparams``' state changes nothing here, where optax's
    update divides its sums by the current ``estim_lr0``.

    Args:
      learning_rate: η, a schedule multiplier (number or schedule).
      betas: ``(b1, b2)``, the moment decay rates.
      beta3: decay of s and r (``None``: sqrt(b2)).
      eps: added to the root, in units of d.
      estim_lr0: d_0 > 0, the initial under-estimate of the distance.
      estim_lr_coef: multiplies each new estimate.
      weight_decay: λ, decoupled (multiplied by the step size).
      safeguard_warmup: leave η_t c_t out of s (for warm-up schedules).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.prodigy(estim_lr0=0.01)
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> state = opt.init(params)  # the real initial params: x_0
      >>> updates, state = opt.update({"w": jnp.array([2.0, -4.0])}, state, params)
      >>> # t = 1: m_1 = 0.1 d g, sqrt(v_1) = sqrt(0.001) d |g|, c_1 = sqrt(0.001) / 0.1
      >>> updates["w"]  # so Adam's first step times d_1 = d_0: -0.01 sign(g)
      Array([-0.01,  0.01], dtype=float32)
      >>> # the params at t = 1 are x_0, so r_1 = 0 and d stays d_0: it grows once they move

    References:
      Mishchenko & Defazio, "Prodigy: An Expeditiously Adaptive
      Parameter-Free Learner", ICML 2024 (arXiv:2306.06101).
    """
    b1, b2 = betas[0], betas[1]
    direction = scale_by_prodigy(
        learning_rate, b1, b2, beta3, eps, estim_lr0, estim_lr_coef, weight_decay,
        safeguard_warmup=safeguard_warmup,
    )  # fmt: skip
    return chain(direction, scale_by_learning_rate(learning_rate))


@optimizer(
    references="`optax.contrib.dadapt_adamw` (schedule, decay)",
    learning_rate=LEARNING_RATE, betas=BETAS, eps=NON_NEGATIVE,
    estim_lr0=ESTIM_LR0, weight_decay=WEIGHT_DECAY,
)  # fmt: skip
def dadapt_adamw(
    learning_rate: ScalarOrSchedule = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    estim_lr0: float = 1e-6,
    weight_decay: float | None = 0.0,
) -> GradientTransformation:
    """D-Adapt AdamW (Defazio & Mishchenko), as ``optax.contrib.dadapt_adamw``.

    AdamW at the step size λ_t = d_t η_t sqrt(1 - b2^t) / (1 - b1^t), with
    d_t estimated from the Adam-weighted sum of past steps (``t`` from 1,
    β = sqrt(b2), d_1 = d_0 = ``estim_lr0``)::

      r_t = β r_{t-1} + (1 - β) λ_t ⟨g_t, s_{t-1} / (sqrt(v_{t-1}) + eps)⟩
      m_t = b1 m_{t-1} + (1 - b1) λ_t g_t,     v_t = b2 v_{t-1} + (1 - b2) g_t²
      s_t = β s_{t-1} + (1 - β) λ_t g_t
      x_{t+1} = x_t - m_t / (sqrt(v_t) + eps) - wd λ_t x_t
      d_{t+1} = max(d_t, r_t / ((1 - β) ||s_t||₁))

    ``learning_rate`` is a schedule multiplier (peak 1).

    Chain: ``scale_by_dadapt_adam(learning_rate, b1, b2, eps, estim_lr0,
    weight_decay) → scale(-1)``.

    Differences: equals ``optax.contrib.dadapt_adamw``.  ``betas`` is one
    hyperparameter of shape (2,) in the state.  Where optax's estimate is
    0/0 (e.g. ``learning_rate=0``) and turns d into NaN, it is 0 here, as
    where the sum alone is 0 (optax: infinite d).  With
    ``eps = 0`` a coordinate whose gradient has always been 0 takes no step
    and adds nothing to r_t (optax's ``0 / 0`` gives NaN, and NaN d).

    Args:
      learning_rate: η, a schedule multiplier (number or schedule).
      betas: ``(b1, b2)``, the moment decay rates.
      eps: added to the root.
      estim_lr0: d_0 > 0, the initial under-estimate of the distance.
      weight_decay: decoupled decay, multiplied by the step size λ_t.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.dadapt_adamw(estim_lr0=0.01)
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> updates, state = opt.update({"w": jnp.array([2.0, -4.0])}, opt.init(params), params)
      >>> # t = 1: λ_1 = d_0 sqrt(0.001) / 0.1, m_1 = 0.1 λ_1 g, sqrt(v_1) = sqrt(0.001) |g|
      >>> updates["w"]  # -m_1 / sqrt(v_1) = -d_0 sign(g); r_1 = 0 (s_0 = 0) keeps d_2 = d_0
      Array([-0.01,  0.01], dtype=float32)

    References:
      Defazio & Mishchenko, "Learning-Rate-Free Learning by D-Adaptation",
      ICML 2023 (arXiv:2301.07733).
    """
    b1, b2 = betas[0], betas[1]
    step = scale_by_dadapt_adam(learning_rate, b1, b2, eps, estim_lr0, weight_decay)
    return chain(step, scale(-1.0))

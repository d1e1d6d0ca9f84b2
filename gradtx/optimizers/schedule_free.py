"""Schedule-free AdamW and SGD: a base step without momentum, averaged and interpolated."""

from __future__ import annotations

from typing import Any

from jax.typing import DTypeLike

from gradtx._base import GradientTransformation
from gradtx._base import MaskFn
from gradtx._base import MaskTree
from gradtx._base import ScalarOrSchedule
from gradtx._base import chain
from gradtx._registry import optimizer
from gradtx._specs import DECAY_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import WEIGHT_DECAY
from gradtx._specs import DType
from gradtx._specs import Function
from gradtx._specs import Hyper
from gradtx._specs import Mask
from gradtx.optimizers._stages import descent
from gradtx.transforms.rms import scale_by_rms
from gradtx.transforms.schedule_free import B1
from gradtx.transforms.schedule_free import WARMUP_STEPS
from gradtx.transforms.schedule_free import schedule_free_averaging
from gradtx.transforms.schedule_free import warmup_learning_rate

SCHEDULE_FREE: dict[str, Any] = dict(
    learning_rate=Hyper(low=0.0),
    warmup_steps=WARMUP_STEPS,
    b1=B1,
    weight_decay=WEIGHT_DECAY,
    weight_lr_power=NON_NEGATIVE,
    mask=Mask(),
    mask_fn=Function(),
    state_dtype=DType(),
)


def _schedule_free(base, learning_rate, warmup_steps, b1, weight_decay, weight_lr_power,
                   state_dtype, decoupled, mask, mask_fn):  # fmt: skip
    rate = learning_rate
    if warmup_steps is not None:  # the base step reads the warm-up at the 0-based step

        def rate(t):
            return warmup_learning_rate(learning_rate, warmup_steps, t)

    step = descent(*base, learning_rate=rate, weight_decay=weight_decay, decoupled=decoupled,
                   mask=mask, mask_fn=mask_fn)  # fmt: skip
    averaging = schedule_free_averaging(
        learning_rate, b1, weight_lr_power, warmup_steps=warmup_steps, dtype=state_dtype
    )
    return chain(step, averaging)


@optimizer(
    references="`optax.contrib.schedule_free_adamw` (warm-up, decay, `state_dtype`)",
    **SCHEDULE_FREE, b2=DECAY_RATE, eps=NON_NEGATIVE,
)  # fmt: skip
def schedule_free_adamw(
    learning_rate: float = 0.0025,
    warmup_steps: int | None = None,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: ScalarOrSchedule | None = 0.0,
    weight_lr_power: float = 2.0,
    state_dtype: DTypeLike | None = None,
    *,
    mask: MaskTree | None = None,
    mask_fn: MaskFn | None = None,
) -> GradientTransformation:
    """Schedule-free AdamW (Defazio et al.), as ``optax.contrib.schedule_free_adamw``.

    The params you hold are the interpolation y; evaluate the model at
    ``schedule_free_eval_params(state, params)``, the average x (gradtx's:
    ``optax.contrib.schedule_free_eval_params`` reads optax's state, not this
    one).  With g_t the gradient at y_t, ``t`` from 1, η_t the learning rate
    after the linear warm-up (``min(t, warmup_steps) / warmup_steps · learning_rate``)::

      v_t = b2 v_{t-1} + (1 - b2) g_t²,   v̂_t = v_t / (1 - b2^t)
      z_{t+1} = z_t - η_{t-1} (g_t / (sqrt(v̂_t) + eps) + λ y_t)
      x_{t+1} = (1 - c_t) x_t + c_t z_{t+1},   c_t = η̄_t² / Σ_{s≤t} η̄_s²   (η̄: running max of η)
      y_{t+1} = b1 x_{t+1} + (1 - b1) z_{t+1}

    (the weights' exponent 2 is ``weight_lr_power``).  No momentum and no
    decaying schedule: the interpolation replaces both.

    Chain: ``scale_by_rms(b2, eps, bias_correction=True) → decoupled_weight_decay
    → scale_by_learning_rate → schedule_free_averaging(learning_rate, b1,
    weight_lr_power)``.

    Differences: equals ``optax.contrib.schedule_free_adamw`` without
    warm-up.  With ``warmup_steps``, optax's ``warmup_constant_schedule``
    takes the int32 count in float32 even under x64 (1/3 of the way is
    0.33333337), so under x64 optax's params are off the float64 values by
    up to about 4e-6 relative (2e-5 for ``schedule_free_sgd``; 8- and
    20-step probes); gradtx forms the warm-up in the hyperparameters'
    precision and matches a float64 evaluation.  The state keeps z and the
    averaging weights as optax's does (``z`` in ``state_dtype``); with a
    narrower ``state_dtype`` than the params (float32 z, float64 params)
    optax forms ``(1 - b1) z`` in z's dtype and gradtx in the params', about
    1e-8 relative apart from the first step.
    Its numbers are hyperparameters in state; changing ``b1`` between steps is
    exact here (the b1 that formed y is kept to recover x).  The output is
    computed as the difference ``y_{t+1} - y_t`` term by term, so a step that
    moves nothing adds exactly 0.  ``learning_rate`` is a number, as in
    optax's signature (the warm-up is the schedule); ``warmup_steps=0`` is
    refused (optax's warm-up of length 0 is a learning rate of 0 forever).

    Args:
      learning_rate: η after warm-up.
      warmup_steps: length of the linear warm-up from 0 (``None``: none).
      b1: interpolation weight in (0, 1] between the average x and z.
      b2: second-moment decay in [0, 1).
      eps: added to the root.
      weight_decay: λ, decoupled (applied at y, scaled by η).
      weight_lr_power: exponent of η̄ in the averaging weights.
      state_dtype: storage dtype of z (``None``: the params').
      mask, mask_fn: which leaves are decayed (a pytree of bools or a prefix
        of the params, or a function of the params returning one).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.schedule_free_adamw(0.1)  # b1 = 0.9, no warm-up
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> state = opt.init(params)
      >>> for _ in range(3):  # a constant g: v̂ = g², each z step is -0.1 sign(g)
      ...     updates, state = opt.update({"w": jnp.array([2.0, -4.0])}, state, params)
      ...     params = gradtx.apply_updates(params, updates)
      >>> # z = 0.9, 0.8, 0.7 (and -1.9, -1.8, -1.7); equal weights: x is their mean
      >>> gradtx.schedule_free_eval_params(state, params)["w"]  # evaluate here
      Array([ 0.8, -1.8], dtype=float32)
      >>> params["w"].round(6)  # train here: y = 0.9 x + 0.1 z, 0.72 + 0.07 and -1.62 - 0.17
      Array([ 0.79, -1.79], dtype=float32)

    References:
      Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, "The Road Less
      Scheduled", NeurIPS 2024 (arXiv:2405.15682).
    """
    base = [scale_by_rms(b2, eps, bias_correction=True)]
    return _schedule_free(base, learning_rate, warmup_steps, b1, weight_decay, weight_lr_power,
                          state_dtype, decoupled=True, mask=mask, mask_fn=mask_fn)  # fmt: skip


@optimizer(
    references="`optax.contrib.schedule_free_sgd` (warm-up, L2, `state_dtype`)",
    **SCHEDULE_FREE,
)
def schedule_free_sgd(
    learning_rate: float = 1.0,
    warmup_steps: int | None = None,
    b1: float = 0.9,
    weight_decay: ScalarOrSchedule | None = None,
    weight_lr_power: float = 2.0,
    state_dtype: DTypeLike | None = None,
    *,
    mask: MaskTree | None = None,
    mask_fn: MaskFn | None = None,
) -> GradientTransformation:
    """Schedule-free SGD (Defazio et al.), as ``optax.contrib.schedule_free_sgd``.

    The params you hold are the interpolation y; evaluate the model at
    ``schedule_free_eval_params(state, params)``, the average x (gradtx's, as
    for ``schedule_free_adamw``).  With g_t the gradient at y_t and η_t as in
    ``schedule_free_adamw``::

      z_{t+1} = z_t - η_{t-1} (g_t + λ y_t)
      x_{t+1} = (1 - c_t) x_t + c_t z_{t+1},   c_t = η̄_t² / Σ_{s≤t} η̄_s²
      y_{t+1} = b1 x_{t+1} + (1 - b1) z_{t+1}

    Chain: ``add_l2 → scale_by_learning_rate → schedule_free_averaging(learning_rate,
    b1, weight_lr_power)``.

    Differences: as for ``schedule_free_adamw``, including optax's float32
    warm-up (up to about 2e-5 relative from optax under x64 with
    ``warmup_steps``); the decay is L2 (added to the gradient), as optax's.

    Args:
      learning_rate: η after warm-up.
      warmup_steps: length of the linear warm-up from 0 (``None``: none).
      b1: interpolation weight in (0, 1] between the average x and z.
      weight_decay: λ of the L2 term, taken at y (``None``: none).
      weight_lr_power: exponent of η̄ in the averaging weights.
      state_dtype: storage dtype of z (``None``: the params').
      mask, mask_fn: which leaves are decayed (a pytree of bools or a prefix
        of the params, or a function of the params returning one).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.schedule_free_sgd(1.0)  # b1 = 0.9
      >>> params, g = {"w": jnp.zeros(1)}, {"w": jnp.ones(1)}
      >>> updates, state = opt.update(g, opt.init(params), params)
      >>> params = gradtx.apply_updates(params, updates)  # z = x = y = -1: an SGD step
      >>> updates, state = opt.update(g, state, params)
      >>> params = gradtx.apply_updates(params, updates)  # z = -2, x = (-1 + -2) / 2
      >>> gradtx.schedule_free_eval_params(state, params)["w"].round(6)
      Array([-1.5], dtype=float32)
      >>> params["w"].round(6)  # y = 0.9 x + 0.1 z = -1.35 - 0.2, ahead of x
      Array([-1.55], dtype=float32)

    References:
      Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, "The Road Less
      Scheduled", NeurIPS 2024 (arXiv:2405.15682).
    """
    return _schedule_free([], learning_rate, warmup_steps, b1, weight_decay, weight_lr_power,
                          state_dtype, decoupled=False, mask=mask, mask_fn=mask_fn)  # fmt: skip

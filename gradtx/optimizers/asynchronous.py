"""ADOPT and ACProp: adaptive steps whose denominator leaves the current gradient out."""

from __future__ import annotations

from collections.abc import Callable

import jax
from jax.typing import DTypeLike

from gradtx._base import GradientTransformation
from gradtx._base import MaskFn
from gradtx._base import MaskTree
from gradtx._base import ScalarOrSchedule
from gradtx._base import chain
from gradtx._base import float_dtype
from gradtx._build import current_call
from gradtx._registry import optimizer
from gradtx._specs import DECAY_RATE
from gradtx._specs import LEARNING_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import WEIGHT_DECAY
from gradtx._specs import DType
from gradtx._specs import Flag
from gradtx._specs import Function
from gradtx._specs import Mask
from gradtx.optimizers._stages import descent
from gradtx.transforms.clipping import clip
from gradtx.transforms.lagged import scale_by_lagged_belief
from gradtx.transforms.lagged import scale_by_lagged_rms
from gradtx.transforms.momentum import add_momentum
from gradtx.transforms.scaling import scale_by_learning_rate


def _quartic_root(count: jax.Array) -> jax.Array:
    """ADOPT's default clip bound ``t^{1/4}`` (``t`` the 0-based step), in JAX's float dtype."""
    return count.astype(float_dtype()) ** 0.25


@optimizer(
    references="`optax.contrib.adopt` (Nesterov, clipping, mu_dtype)",
    learning_rate=LEARNING_RATE, b1=DECAY_RATE, b2=DECAY_RATE, eps=NON_NEGATIVE, mu_dtype=DType(),
    nesterov=Flag(), use_clipping=Flag(), clip_value_fn=Function(takes="the step count"),
)  # fmt: skip
def adopt(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.9999,
    eps: float = 1e-6,
    mu_dtype: DTypeLike | None = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = _quartic_root,
) -> GradientTransformation:
    """ADOPT (Taniguchi et al.), as ``optax.contrib.adopt``: Adam normalised by the past.

    With ``t`` from 1 (``m_0 = 0``; ``c`` is ``clip_value_fn``)::

      v_1 = g_1²,   v_t = b2 v_{t-1} + (1 - b2) g_t²
      n_t = clip(g_t / max(sqrt(v_{t-1}), eps), ±c(t - 1))    (n_1 = 0)
      m_t = b1 m_{t-1} + (1 - b1) n_t
      θ_t = θ_{t-1} - η_t m_t              (Nesterov: η_t (b1 m_t + (1 - b1) n_t))

    The first gradient only initialises ``v``; the first step is 0.  No bias
    correction.

    Chain: ``scale_by_lagged_rms(b2, eps) → clip(clip_value_fn) →
    add_momentum(b1, ema=True, nesterov) → scale_by_learning_rate``.

    Differences: optax's signature and defaults (``learning_rate`` required;
    clipping on with ``c(t) = t^{1/4}``, the paper's practical variant).
    optax divides ``g_1`` by ``eps`` and then discards it; here ``n_1 = 0``
    directly (the same steps, without the overflow a tiny eps can cause).

    Args:
      learning_rate: η, a number or schedule.
      b1: momentum decay in [0, 1).
      b2: second-moment decay in [0, 1).
      eps: floor of the root of the second moment.
      mu_dtype: storage dtype of the momentum.
      nesterov: use the Nesterov look-ahead of the momentum.
      use_clipping: clip the normalised gradient to ``±clip_value_fn(t - 1)``.
      clip_value_fn: the bound as a function of the 0-based step count.

    Example:
      >>> import gradtx, jax, jax.numpy as jnp
      >>> opt = gradtx.adopt(1e-2)
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> state = opt.init(params)
      >>> grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(params)
      >>> updates, state = opt.update(grads, state, params)
      >>> bool(jnp.all(updates["w"] == 0))  # the first gradient only sets the scale
      True

    References:
      Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any β2 with the
      Optimal Rate", NeurIPS 2024 (arXiv:2411.02853).
    """
    stages = [scale_by_lagged_rms(b2, eps)]
    if use_clipping:
        if clip_value_fn is None:
            raise TypeError(
                f"{current_call('gradtx.adopt')}(clip_value_fn=None): use_clipping=True "
                "needs the bound as a function of the step count (or use_clipping=False)"
            )
        stages.append(clip(clip_value_fn))
    stages.append(add_momentum(b1, ema=True, nesterov=nesterov, dtype=mu_dtype))
    return chain(*stages, scale_by_learning_rate(learning_rate))


@optimizer(
    references="`optax.contrib.acprop` (mask)",
    learning_rate=LEARNING_RATE, b1=DECAY_RATE, b2=DECAY_RATE, eps=NON_NEGATIVE,
    eps_root=NON_NEGATIVE, weight_decay=WEIGHT_DECAY._replace(schedule=False), mask=Mask(),
    mask_fn=Function(),
)  # fmt: skip
def acprop(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    weight_decay: float | None = 0.0,
    mask: MaskTree | None = None,
    *,
    mask_fn: MaskFn | None = None,
) -> GradientTransformation:
    """ACProp (Zhuang et al.), as ``optax.contrib.acprop``: AdaBelief's scale, one step late.

    With ``t`` from 1 (``m_0 = s_0 = 0``)::

      m_t = b1 m_{t-1} + (1 - b1) g_t
      s_t = b2 s_{t-1} + (1 - b2) (g_t - m_{t-1})² + eps_root
      θ_t = θ_{t-1} - η_t (g_t / (sqrt(s_{t-1} / (1 - b2^{t-1})) + eps) + λ θ_{t-1})

    with ``s_{t-1} / (1 - b2^{t-1})`` taken as 1 at ``t = 1``.

    Chain: ``scale_by_lagged_belief(b1, b2, eps, eps_root) →
    decoupled_weight_decay → scale_by_learning_rate``.

    Differences: optax's signature and defaults; its ``mask`` also takes a
    function, here given as ``mask_fn``.  As in optax, the step's numerator
    is the gradient itself (the paper's Algorithm 2 uses momentum), the
    prediction error is taken against ``m_{t-1}``, and ``eps_root`` is added
    to the stored ``s``.

    Args:
      learning_rate: η, a number or schedule.
      b1: decay of the prediction ``m``, in [0, 1).
      b2: decay of the belief ``s``, in [0, 1).
      eps: added to the root.
      eps_root: added to ``s`` at each step.
      weight_decay: λ of the decoupled decay (0: none).
      mask: which leaves are decayed (a pytree of bools, a prefix of the params).
      mask_fn: a function of the params returning such a mask.

    Example:
      >>> import gradtx, jax, jax.numpy as jnp
      >>> opt = gradtx.acprop(1e-2)
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> state = opt.init(params)
      >>> grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(params)
      >>> updates, state = opt.update(grads, state, params)
      >>> updates["w"]  # first step: -η g / (1 + eps)
      Array([-0.02,  0.04], dtype=float32)

    References:
      Zhuang et al., "Momentum Centering and Asynchronous Update for Adaptive
      Gradient Methods", NeurIPS 2021 (arXiv:2110.05454).
    """
    return descent(
        scale_by_lagged_belief(b1, b2, eps, eps_root),
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        decoupled=True,
        mask=mask,
        mask_fn=mask_fn,
    )

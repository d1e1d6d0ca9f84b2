"""Layer-wise trust-ratio optimizers: LARS and LAMB."""

from __future__ import annotations

from typing import Any

import numpy as np

from gradtx._base import GradientTransformation
from gradtx._base import MaskFn
from gradtx._base import MaskTree
from gradtx._base import ScalarOrSchedule
from gradtx._base import chain
from gradtx._build import current_call
from gradtx._registry import optimizer
from gradtx._specs import DECAY_RATE
from gradtx._specs import LEARNING_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import WEIGHT_DECAY
from gradtx._specs import Flag
from gradtx._specs import Function
from gradtx._specs import Hyper
from gradtx._specs import Mask
from gradtx.optimizers._stages import gradient_stages
from gradtx.transforms.decay import check_mask_pair
from gradtx.transforms.decay import decoupled_weight_decay
from gradtx.transforms.momentum import add_momentum
from gradtx.transforms.momentum import bias_correct
from gradtx.transforms.rms import scale_by_rms
from gradtx.transforms.scaling import scale_by_learning_rate
from gradtx.transforms.trust_ratio import scale_by_trust_ratio
from gradtx.wrappers.groups import masked


@optimizer(
    references="`optax.lamb` (mask)",
    learning_rate=LEARNING_RATE, b1=DECAY_RATE, b2=DECAY_RATE, eps=NON_NEGATIVE,
    eps_root=NON_NEGATIVE, weight_decay=WEIGHT_DECAY, mask=Mask(), mask_fn=Function(),
)  # fmt: skip
def lamb(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    eps_root: float = 0.0,
    weight_decay: ScalarOrSchedule | None = 0.0,
    mask: MaskTree | None = None,
    *,
    mask_fn: MaskFn | None = None,
) -> GradientTransformation:
    """LAMB (You et al.): Adam's step, decoupled decay, then a layer-wise trust ratio.

    Per leaf, with Adam's bias-corrected moments (``t`` from 1)::

      r_t = m̂_t / (sqrt(v̂_t + eps_root) + eps) + λ θ_{t-1}
      θ_t = θ_{t-1} - η_t · ‖θ_{t-1}‖ / ‖r_t‖ · r_t       (ratio 1 if a norm is 0)

    Chain: ``add_momentum(b1, ema=True) → bias_correct(b1) → scale_by_rms(b2,
    eps, eps_root, bias_correction=True) → decoupled_weight_decay →
    scale_by_trust_ratio → scale_by_learning_rate``.

    Differences: ``optax.lamb``'s signature and defaults (``learning_rate``
    required, eps 1e-6, no decay); its ``mask`` also takes a function, here
    given as ``mask_fn``.  The paper clips ‖θ‖ with a function φ (identity
    here, as in optax).  The trust ratio works per leaf, so ``lamb`` cannot
    run inside ``gradtx.flatten``.

    Args:
      learning_rate: η, a number or schedule.
      b1: first-moment decay in [0, 1).
      b2: second-moment decay in [0, 1).
      eps: added to the root.
      eps_root: added inside the root.
      weight_decay: λ of the decoupled decay (a number or schedule; 0: none).
      mask: which leaves are decayed (a pytree of bools, a prefix of the params).
      mask_fn: a function of the params returning such a mask.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.lamb(1e-2)
      >>> params = {"a": jnp.array([2.0]), "b": jnp.array([-0.5])}
      >>> grads = {"a": jnp.array([100.0]), "b": jnp.array([0.1])}
      >>> # Adam's first step is r = sign(g) = 1 per leaf, rescaled to length η ‖θ‖
      >>> opt.update(grads, opt.init(params), params)[0]  # -0.01 · 2 and -0.01 · 0.5
      {'a': Array([-0.02], dtype=float32), 'b': Array([-0.005], dtype=float32)}

    References:
      You et al., "Large Batch Optimization for Deep Learning: Training BERT in
      76 minutes", ICLR 2020 (arXiv:1904.00962).
    """
    check_mask_pair(mask, mask_fn)
    tail = []
    if weight_decay is not None:
        tail.append(decoupled_weight_decay(weight_decay, mask=mask, mask_fn=mask_fn))
    return chain(
        add_momentum(b1, ema=True),
        bias_correct(b1),
        scale_by_rms(b2, eps, eps_root=eps_root, bias_correction=True),
        *tail,
        scale_by_trust_ratio(),
        scale_by_learning_rate(learning_rate),
    )


def _all(name: str, mask: Any, mask_fn: Any) -> bool | None:
    """``True``/``False`` when a mask selects every leaf / none (no wrapper needed), else None."""
    if mask_fn is not None:
        if mask is not None and mask is not True:
            call = current_call("gradtx.lars")
            raise ValueError(f"{call}({name}=..., {name}_fn=...): give {name} or {name}_fn")
        return None
    if mask is None or isinstance(mask, (bool, np.bool_)):
        return mask is None or bool(mask)
    return None


@optimizer(
    references="`optax.lars` (masks, Nesterov)",
    learning_rate=LEARNING_RATE, weight_decay=WEIGHT_DECAY, weight_decay_mask=Mask(),
    trust_coefficient=NON_NEGATIVE, eps=NON_NEGATIVE, trust_ratio_mask=Mask(),
    momentum=Hyper(low=0.0, high=1.0, decays=True), nesterov=Flag(),
    weight_decay_mask_fn=Function(), trust_ratio_mask_fn=Function(),
)  # fmt: skip
def lars(
    learning_rate: ScalarOrSchedule,
    weight_decay: ScalarOrSchedule | None = 0.0,
    weight_decay_mask: MaskTree = True,
    trust_coefficient: float = 0.001,
    eps: float = 0.0,
    trust_ratio_mask: MaskTree = True,
    momentum: float = 0.9,
    nesterov: bool = False,
    *,
    weight_decay_mask_fn: MaskFn | None = None,
    trust_ratio_mask_fn: MaskFn | None = None,
) -> GradientTransformation:
    """LARS (You et al.): SGD with momentum on layer-wise trust-ratio-scaled gradients.

    Per leaf::

      d_t = g_t + λ θ_{t-1}                                 (decayed leaves)
      d_t ← c · ‖θ_{t-1}‖ / (‖d_t‖ + eps) · d_t              (trust-ratio leaves; 1 if a norm is 0)
      m_t = μ m_{t-1} + η_t d_t,      θ_t = θ_{t-1} - m_t    (Nesterov: - (η_t d_t + μ m_t))

    The learning rate sits inside the momentum buffer, as in optax.

    Chain: ``add_l2 → masked(scale_by_trust_ratio(trust_coefficient=c, eps))
    → scale_by_learning_rate → add_momentum(μ, nesterov)``.

    Differences: ``optax.lars``'s signature and defaults (c = 0.001, μ = 0.9,
    no decay); its masks also take functions, here given as
    ``weight_decay_mask_fn`` / ``trust_ratio_mask_fn``.  ``trust_ratio_mask=False``
    leaves the trust ratio out (SGD with momentum and L2).  The trust ratio
    works per leaf, so ``lars`` cannot run inside ``gradtx.flatten`` unless
    it is off.

    Args:
      learning_rate: η, a number or schedule.
      weight_decay: λ of the L2 term (a number or schedule; 0: none).
      weight_decay_mask: which leaves are decayed (``True``: all).
      trust_coefficient: c, multiplies the trust ratio.
      eps: added to the update's norm in the trust ratio.
      trust_ratio_mask: which leaves are rescaled (``True``: all).
      momentum: μ in [0, 1].
      nesterov: use Nesterov's look-ahead.
      weight_decay_mask_fn: a function of the params returning ``weight_decay_mask``.
      trust_ratio_mask_fn: a function of the params returning ``trust_ratio_mask``.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.lars(0.1, trust_coefficient=0.02, trust_ratio_mask={"w": True, "b": False})
      >>> params = {"w": jnp.array([3.0, 4.0]), "b": jnp.array([0.5])}
      >>> grads = {"w": jnp.array([6.0, 8.0]), "b": jnp.array([2.0])}
      >>> updates, state = opt.update(grads, opt.init(params), params)
      >>> updates["w"]  # trust ratio c ‖w‖ / ‖g‖ = 0.02 · 5 / 10: -0.1 · 0.01 · (6, 8)
      Array([-0.006, -0.008], dtype=float32)
      >>> updates["b"]  # outside the trust-ratio mask: the plain SGD step -0.1 · 2
      Array([-0.2], dtype=float32)

    References:
      You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks",
      2017 (arXiv:1708.03888).
    """
    decayed = _all("weight_decay_mask", weight_decay_mask, weight_decay_mask_fn)
    if decayed is False:
        weight_decay = None
    if decayed is not None or weight_decay_mask_fn is not None:
        weight_decay_mask = None
    head = gradient_stages(weight_decay, mask=weight_decay_mask, mask_fn=weight_decay_mask_fn)
    ratio = scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps)
    everywhere = _all("trust_ratio_mask", trust_ratio_mask, trust_ratio_mask_fn)
    if trust_ratio_mask_fn is not None:
        trust_ratio_mask = None
    if everywhere is None:
        head.append(masked(ratio, trust_ratio_mask, mask_fn=trust_ratio_mask_fn))
    elif everywhere:
        head.append(ratio)
    return chain(
        *head,
        scale_by_learning_rate(learning_rate),
        add_momentum(momentum, nesterov=nesterov),
    )

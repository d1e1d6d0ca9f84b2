"""AdEMAMix and simplified AdEMAMix: Adam with a second, slow average mixed in."""

from __future__ import annotations

from jax.typing import DTypeLike

from gradtx._base import GradientTransformation
from gradtx._base import MaskFn
from gradtx._base import MaskTree
from gradtx._base import ScalarOrSchedule
from gradtx._registry import optimizer
from gradtx._specs import DECAY_RATE
from gradtx._specs import LEARNING_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import WEIGHT_DECAY
from gradtx._specs import DType
from gradtx._specs import Function
from gradtx._specs import Hyper
from gradtx._specs import Mask
from gradtx.optimizers._stages import descent
from gradtx.transforms.mix import ALPHA
from gradtx.transforms.mix import mix_gradient
from gradtx.transforms.momentum import add_momentum
from gradtx.transforms.momentum import bias_correct
from gradtx.transforms.rms import scale_by_rms

DECAY = WEIGHT_DECAY._replace(schedule=False)


@optimizer(
    references="`optax.contrib.ademamix` (schedules of b3 and alpha, mask)",
    learning_rate=LEARNING_RATE, b1=DECAY_RATE, b2=DECAY_RATE, b3=DECAY_RATE.schedulable(),
    alpha=ALPHA, eps=NON_NEGATIVE, eps_root=NON_NEGATIVE, mu_dtype=DType(), weight_decay=DECAY,
    mask=Mask(), mask_fn=Function(),
)  # fmt: skip
def ademamix(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    b3: ScalarOrSchedule = 0.9999,
    alpha: ScalarOrSchedule = 5.0,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: DTypeLike | None = None,
    weight_decay: float | None = 0.0,
    mask: MaskTree | None = None,
    *,
    mask_fn: MaskFn | None = None,
) -> GradientTransformation:
    """AdEMAMix (Pagliardini et al.), as ``optax.contrib.ademamix``.

    With ``t`` from 1 (all moments start at 0; ``b3`` and ``α`` may be
    schedules of the 0-based step)::

      m1_t = b1 m1_{t-1} + (1 - b1) g_t,    m̂1_t = m1_t / (1 - b1^t)
      m2_t = b3 m2_{t-1} + (1 - b3) g_t                 (slow, not corrected)
      v_t  = b2 v_{t-1} + (1 - b2) g_t²,     v̂_t = v_t / (1 - b2^t)
      θ_t = θ_{t-1} - η_t ((m̂1_t + α m2_t) / (sqrt(v̂_t + eps_root) + eps) + λ θ_{t-1})

    Chain: ``add_momentum(b1, ema=True) → bias_correct(b1) → mix_gradient(α,
    b3) → scale_by_rms(b2, eps, eps_root, bias_correction=True) →
    decoupled_weight_decay → scale_by_learning_rate``.

    Differences: optax's signature and defaults (α = 5; the paper's
    experiments use α ≈ 5-10 with warm-up schedules of α and b3, given here
    as schedules).  optax's ``mask`` also takes a function, here ``mask_fn``.
    ``mu_dtype`` stores all three moments, as in optax, and keeps storing them
    in it; optax's update does not cast back, so its moments take the
    gradients' dtype from the first step on (bfloat16 asked, float32
    gradients: float32 moments).

    Args:
      learning_rate: η, a number or schedule.
      b1: decay of the fast EMA, in [0, 1).
      b2: second-moment decay in [0, 1).
      b3: decay of the slow EMA, in [0, 1), a number or schedule.
      alpha: α ≥ 0, the slow EMA's weight, a number or schedule.
      eps: added to the root.
      eps_root: added inside the root.
      mu_dtype: storage dtype of the moments.
      weight_decay: λ of the decoupled decay (0: none).
      mask: which leaves are decayed (a pytree of bools, a prefix of the params).
      mask_fn: a function of the params returning such a mask.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.ademamix(0.1, b3=0.75, alpha=2.0)
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> updates, _ = opt.update({"w": jnp.array([2.0, -4.0])}, opt.init(params), params)
      >>> # t = 1: m̂1 = g, v̂ = g², and the slow m2 = (1 - b3) g is not bias-corrected
      >>> updates["w"]  # -η (1 + α (1 - b3)) sign(g) = -0.1 · 1.5 sign(g) (Adam: -0.1 sign(g))
      Array([-0.15,  0.15], dtype=float32)
      >>> # with the default b3 = 0.9999, m2 starts at 1e-4 g and builds up over thousands of steps

    References:
      Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster,
      Older", ICLR 2025 (arXiv:2409.03137).
    """
    return descent(
        add_momentum(b1, ema=True, dtype=mu_dtype),
        bias_correct(b1),
        mix_gradient(alpha, b3, dtype=mu_dtype),
        scale_by_rms(b2, eps, eps_root=eps_root, bias_correction=True, dtype=mu_dtype),
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        decoupled=True,
        mask=mask,
        mask_fn=mask_fn,
    )


@optimizer(
    references="`optax.contrib.simplified_ademamix` (alpha schedule, mask)",
    learning_rate=LEARNING_RATE, b1=Hyper(low=0.0, high=1.0, decays=True), b2=DECAY_RATE,
    alpha=ALPHA, eps=NON_NEGATIVE, eps_root=NON_NEGATIVE, weight_decay=DECAY, mask=Mask(),
    mask_fn=Function(),
)  # fmt: skip
def simplified_ademamix(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.99,
    b2: float = 0.95,
    alpha: ScalarOrSchedule = 0.0,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: float | None = 0.0,
    mask: MaskTree | None = None,
    *,
    mask_fn: MaskFn | None = None,
) -> GradientTransformation:
    """Simplified AdEMAMix (Morwani et al.), as ``optax.contrib.simplified_ademamix``.

    With ``t`` from 1 (``m_0 = v_0 = 0``; ``α`` may be a schedule)::

      m_t = b1 m_{t-1} + g_t                           (heavy ball, no dampening)
      v_t = b2 v_{t-1} + (1 - b2) g_t²,   v̂_t = v_t / (1 - b2^t)
      θ_t = θ_{t-1} - η_t ((m_t + α g_t) / (sqrt(v̂_t + eps_root) + eps) + λ θ_{t-1})

    Chain: ``add_momentum(b1) → mix_gradient(α) → scale_by_rms(b2, eps,
    eps_root, bias_correction=True) → decoupled_weight_decay →
    scale_by_learning_rate``.

    Differences: optax's signature and defaults (α = 0: a heavy-ball Adam
    whose momentum is a sum, so η is about ``1 - b1`` times Adam's); its
    ``mask`` also takes a function, here ``mask_fn``.  optax writes the
    second-moment EMA as ``g² + b2 (v - g²)``: equal up to rounding; for
    complex params it squares ``g`` itself, where gradtx keeps ``|g|²`` (as
    every second moment here), so optax's steps are rotated.

    Args:
      learning_rate: η, a number or schedule.
      b1: heavy-ball momentum in [0, 1].
      b2: second-moment decay in [0, 1).
      alpha: α ≥ 0, the weight of the current gradient, a number or schedule.
      eps: added to the root.
      eps_root: added inside the root.
      weight_decay: λ of the decoupled decay (0: none).
      mask: which leaves are decayed (a pytree of bools, a prefix of the params).
      mask_fn: a function of the params returning such a mask.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.simplified_ademamix(0.01, alpha=2.0)  # b1 = 0.99
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> grads = {"w": jnp.array([2.0, -4.0])}
      >>> _, state = opt.update(grads, opt.init(params), params)
      >>> updates, state = opt.update(grads, state, params)  # the same g again: v̂_2 = g²
      >>> # m_2 = b1 g + g, a sum: the step is -η (1 + b1 + α) sign(g) = -0.01 · 3.99 sign(g)
      >>> updates["w"].round(6)
      Array([-0.0399,  0.0399], dtype=float32)

    References:
      Morwani et al., "Connections between Schedule-Free Optimizers, AdEMAMix,
      and Accelerated SGD Variants", 2025 (arXiv:2502.02431).
    """
    return descent(
        add_momentum(b1),
        mix_gradient(alpha),
        scale_by_rms(b2, eps, eps_root=eps_root, bias_correction=True),
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        decoupled=True,
        mask=mask,
        mask_fn=mask_fn,
    )

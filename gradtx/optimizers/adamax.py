"""Adamax and AdamaxW: Adam with an infinity-norm denominator."""

from __future__ import annotations

from gradtx._base import GradientTransformation
from gradtx._base import MaskFn
from gradtx._base import MaskTree
from gradtx._base import ScalarOrSchedule
from gradtx._factory_state import Specs
from gradtx._registry import optimizer
from gradtx.optimizers._stages import descent
from gradtx.optimizers.adam import ADAM
from gradtx.transforms.infinity_norm import scale_by_infinity_norm
from gradtx.transforms.momentum import add_momentum
from gradtx.transforms.momentum import bias_correct

ADAMAX: Specs = {
    k: ADAM[k]
    for k in ("learning_rate", "b1", "b2", "eps", "weight_decay", "decoupled_weight_decay")
    + ("mask", "mask_fn", "maximize", "convention")
}


@optimizer(
    references="`torch.optim.Adamax` (L2, maximize); `optax.adamax`",
    **ADAMAX,
)
def adamax(
    learning_rate: ScalarOrSchedule = 2e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    weight_decay: ScalarOrSchedule | None = None,
    decoupled_weight_decay: bool = False,
    mask: MaskTree | None = None,
    mask_fn: MaskFn | None = None,
    maximize: bool = False,
    convention: str = "torch",
) -> GradientTransformation:
    """Adamax (Kingma & Ba, §7.1), as ``torch.optim.Adamax``.

    Update (``t`` from 1)::

      g_t = ∇f(θ_{t-1}) + λ θ_{t-1}                         (L2, if weight_decay)
      m_t = b1 m_{t-1} + (1 - b1) g_t
      u_t = max(b2 u_{t-1}, |g_t| + eps)                     (u_0 = 0)
      θ_t = θ_{t-1} - η_t / (1 - b1^t) · m_t / u_t

    Chain: ``add_l2 → add_momentum(b1, ema=True) → bias_correct(b1) →
    scale_by_infinity_norm(b2, eps) → scale_by_learning_rate``.

    Differences: ``torch.optim.Adamax`` and ``optax.adamax`` have the same
    rule (eps inside the max), so ``convention="optax"`` changes nothing;
    torch adds L2 ``weight_decay``, optax's ``adamaxw`` decoupled decay
    (``decoupled_weight_decay=True`` here, or ``gradtx.adamaxw``).  The paper
    has no eps.  torch treats a complex parameter as two real ones; here
    ``|g|`` is the complex modulus.

    Args:
      learning_rate: η, a number or schedule.
      b1: first-moment decay in [0, 1), a number or schedule.
      b2: decay of the infinity norm, in [0, 1).
      eps: added to ``|g|`` inside the max.
      weight_decay: λ; L2 unless ``decoupled_weight_decay``.
      decoupled_weight_decay: decay the weights directly (optax's AdamaxW).
      mask, mask_fn: which leaves are decayed.
      maximize: ascend the objective instead (torch's).
      convention: ``"torch"`` or ``"optax"``: the same rule.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.adamax(0.1, b1=0.0, b2=0.5)
      >>> params = {"w": jnp.array([1.0])}
      >>> _, state = opt.update({"w": jnp.array([4.0])}, opt.init(params), params)
      >>> updates, state = opt.update({"w": jnp.array([1.0])}, state, params)
      >>> # b1 = 0: m̂_2 = g_2 = 1; u_2 = max(0.5 · 4, 1 + eps) = 2 keeps the old peak
      >>> updates["w"]  # -0.1 · 1 / 2 (Adam's sqrt(v̂_2) = sqrt(4.5 / 0.75) = 2.45: -0.041)
      Array([-0.05], dtype=float32)

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, §7.1.
    """
    return descent(
        add_momentum(b1, ema=True),
        bias_correct(b1),
        scale_by_infinity_norm(b2, eps),
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        decoupled=decoupled_weight_decay,
        mask=mask,
        mask_fn=mask_fn,
        maximize=maximize,
    )


@optimizer(
    references="`optax.adamaxw` (mask)",
    **{k: v for k, v in ADAMAX.items() if k != "decoupled_weight_decay"},
)
def adamaxw(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: ScalarOrSchedule | None = 1e-4,
    mask: MaskTree | None = None,
    *,
    mask_fn: MaskFn | None = None,
    maximize: bool = False,
    convention: str = "optax",
) -> GradientTransformation:
    """AdamaxW: Adamax with decoupled weight decay, as ``optax.adamaxw``.

    ``adamax(..., decoupled_weight_decay=True)`` with optax's signature and
    defaults (``learning_rate`` required, ``weight_decay=1e-4``; torch has no
    AdamaxW)::

      θ_t = θ_{t-1} - η_t (m_t / (1 - b1^t) / u_t + λ θ_{t-1})

    Chain: Adamax's, with ``decoupled_weight_decay`` before
    ``scale_by_learning_rate``.

    Differences: equals ``optax.adamaxw`` (its signature, defaults and
    ``mask``; a mask given as a function goes in ``mask_fn``).  torch has no
    AdamaxW: ``torch.optim.Adamax``'s ``weight_decay`` is L2.  The paper's
    Adamax has no eps and no weight decay.  The decay is Loshchilov & Hutter's
    multiplied by the full learning rate, as in optax (their paper multiplies
    it by the schedule multiplier only: ``weight_decay = λ_paper / base_lr``).

    Args:
      learning_rate: η, a number or schedule.
      b1: first-moment decay in [0, 1).
      b2: decay of the infinity norm, in [0, 1).
      eps: added to ``|g|`` inside the max.
      weight_decay: λ (optax's default 1e-4).
      mask, mask_fn: which leaves are decayed (optax's ``mask``).
      maximize: ascend the objective instead.
      convention: ``"optax"`` (default, optax's optimizer) or ``"torch"``: the same rule.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.adamaxw(0.1, weight_decay=0.5)
      >>> params = {"w": jnp.array([2.0])}
      >>> updates, state = opt.update({"w": jnp.array([1.0])}, opt.init(params), params)
      >>> updates["w"]  # -0.1 · (m_1 / (1 - b1) / u_1 + 0.5 · 2), with m_1 / (1 - b1) = u_1 = 1
      Array([-0.2], dtype=float32)

    References:
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
    """
    return adamax(
        learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
        decoupled_weight_decay=True, mask=mask, mask_fn=mask_fn, maximize=maximize,
        convention=convention,
    )  # fmt: skip

"""Adan: adaptive Nesterov momentum from gradient differences."""

from __future__ import annotations

from gradtx._base import GradientTransformation
from gradtx._base import MaskFn
from gradtx._base import MaskTree
from gradtx._base import ScalarOrSchedule
from gradtx._registry import optimizer
from gradtx._specs import DECAY_RATE
from gradtx._specs import LEARNING_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import WEIGHT_DECAY
from gradtx._specs import Function
from gradtx._specs import Mask
from gradtx.optimizers._stages import descent
from gradtx.transforms.momentum import add_momentum
from gradtx.transforms.momentum import bias_correct
from gradtx.transforms.nesterov_estimate import scale_by_nesterov_estimate


@optimizer(
    references="`optax.adan` (`eps_root`, schedules, mask)",
    learning_rate=LEARNING_RATE,
    b1=DECAY_RATE,
    b2=DECAY_RATE,
    b3=DECAY_RATE,
    eps=NON_NEGATIVE,
    eps_root=NON_NEGATIVE,
    weight_decay=WEIGHT_DECAY,
    mask=Mask(),
    mask_fn=Function(),
)
def adan(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.98,
    b2: float = 0.92,
    b3: float = 0.99,
    eps: float = 1e-8,
    eps_root: float = 1e-8,
    weight_decay: ScalarOrSchedule | None = 0.0,
    mask: MaskTree | None = None,
    *,
    mask_fn: MaskFn | None = None,
) -> GradientTransformation:
    """Adan (Xie et al.), as ``optax.adan``.

    Update (``t`` from 1, every buffer 0 at the start, ``Δ_1 = 0``)::

      Δ_t = g_t - g_{t-1}
      m_t = b1 m_{t-1} + (1 - b1) g_t
      v_t = b2 v_{t-1} + (1 - b2) Δ_t
      n_t = b3 n_{t-1} + (1 - b3) (g_t + (1 - b2) Δ_t)²
      u_t = (m_t / (1 - b1^t) + (1 - b2) v_t / (1 - b2^t)) / (sqrt(n_t / (1 - b3^t) + eps_root) + eps)
      θ_t = θ_{t-1} - η_t (u_t + λ θ_{t-1})

    Chain: ``add_momentum(b1, ema=True) → bias_correct(b1) →
    scale_by_nesterov_estimate(b2, b3, eps, eps_root) → decoupled_weight_decay
    → scale_by_learning_rate``.

    Differences: none from ``optax.adan`` (its defaults, the bias corrections of
    its code, its positional order; ``mask`` is a pytree of bools, a function
    goes to ``mask_fn``).  The paper's Algorithm 1 writes its EMAs as
    ``(1 - β) m + β g`` (β = 1 - b here), shows no bias correction and applies
    the decay proximally, ``θ_t = (θ_{t-1} - η u_t) / (1 + λη)``; optax and
    gradtx add ``λθ`` to the step.  optax and gradtx also weight ``Δ_t`` in
    ``n_t``, and ``v_t`` in ``u_t``, by ``1 - b2`` (0.08 by default), where the
    paper's ``1 - β2`` is ``b2`` (0.92), as in the authors' code (sail-sg/Adan)
    and ``pytorch_optimizer.Adan``; gradtx follows optax, so the steps differ
    from theirs from the second on (optax PR #1715, open, calls this a bug).

    Args:
      learning_rate: η, a number or schedule.
      b1: EMA rate of the gradients, in [0, 1).
      b2: EMA rate of the gradient differences, in [0, 1).
      b3: EMA rate of the squared extrapolated gradient, in [0, 1).
      eps: added outside the root.
      eps_root: added inside the root.
      weight_decay: λ, a number or schedule (``None`` or 0: no decay).
      mask: which leaves are decayed (a pytree of bools, or a prefix of the params).
      mask_fn: a function of the params returning such a mask (optax's callable ``mask``).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.adan(0.1, weight_decay=0.5)
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> updates, state = opt.update({"w": jnp.array([2.0, -4.0])}, opt.init(params), params)
      >>> # t = 1: Δ_1 = 0, so v_1 = 0, m̂_1 = g, n̂_1 = g² and u_1 = sign(g)
      >>> updates["w"]  # -η (sign(g) + λ θ): -0.1 (1 + 0.5) and -0.1 (-1 - 1)
      Array([-0.15,  0.2 ], dtype=float32)

    References:
      Xie et al., "Adan: Adaptive Nesterov Momentum Algorithm for Faster
      Optimizing Deep Models", IEEE TPAMI 2024 (arXiv:2208.06677).
    """
    return descent(
        add_momentum(b1, ema=True),
        bias_correct(b1),
        scale_by_nesterov_estimate(b2, b3, eps, eps_root),
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        decoupled=True,
        mask=mask,
        mask_fn=mask_fn,
    )

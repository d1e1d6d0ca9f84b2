"""COCOB-Backprop: learning-rate-free descent by betting on each coordinate."""

from __future__ import annotations

from typing import cast

from gradtx._base import GradientTransformation
from gradtx._base import MaskFn
from gradtx._base import MaskTree
from gradtx._base import ScalarOrSchedule
from gradtx._base import chain
from gradtx._registry import optimizer
from gradtx._specs import INITIAL_VALUE
from gradtx._specs import LEARNING_RATE
from gradtx._specs import WEIGHT_DECAY
from gradtx._specs import Function
from gradtx._specs import Hyper
from gradtx._specs import Mask
from gradtx.optimizers._stages import gradient_stages
from gradtx.transforms.coin_betting import scale_by_coin_betting
from gradtx.transforms.scaling import scale


@optimizer(
    references="`optax.contrib.cocob` (L2 with mask, scheduled multiplier)",
    learning_rate=LEARNING_RATE, alpha=Hyper(low=0.0, low_open=True), eps=INITIAL_VALUE,
    weight_decay=WEIGHT_DECAY, mask=Mask(), mask_fn=Function(),
)  # fmt: skip
def cocob(
    learning_rate: ScalarOrSchedule = 1.0,
    alpha: float = 100.0,
    eps: float = 1e-8,
    weight_decay: ScalarOrSchedule | None = 0.0,
    mask: MaskTree | None = None,
    *,
    mask_fn: MaskFn | None = None,
) -> GradientTransformation:
    """COCOB-Backprop (Orabona & Tommasi), as ``optax.contrib.cocob``.

    Per coordinate, with c_t = η_t (∇f(x_t) + λ x_t) and x_0 the params given
    to ``init`` (``t`` from 1)::

      L_t = max(L_{t-1}, |c_t|)  (L_0 = eps),   G_t = G_{t-1} + |c_t|
      R_t = max(R_{t-1} - c_t (x_t - x_0), 0),   θ_t = θ_{t-1} - c_t
      x_{t+1} = x_0 + θ_t / (L_t max(G_t + L_t, α L_t)) · (L_t + R_t)

    No learning rate is needed: the bet scales itself.  ``learning_rate``
    multiplies the gradient the bets see (a number or a schedule).

    Chain: ``add_l2 → scale(learning_rate) → scale_by_coin_betting(alpha, eps)``.

    Differences: equals ``optax.contrib.cocob`` (its ``weight_decay=0.0``
    default adds nothing; here 0 leaves the stage out).  A mask given as a
    function goes in ``mask_fn`` (optax takes either in ``mask``).  With
    ``eps = 0`` a coordinate whose gradient has always been 0 takes no step
    (optax's ``0 / 0`` gives NaN).  Real params only.

    Args:
      learning_rate: η, multiplier of the gradient (a number or schedule).
      alpha: α > 0, which caps the fraction of the wealth bet early on.
      eps: L_0, the initial bound on |c| (read by ``init`` only).
      weight_decay: λ in c_t (0 leaves the L2 stage out).
      mask, mask_fn: the leaves λ applies to: a pytree of bools (or a prefix),
        or a function of the params returning one.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.cocob(alpha=4.0)
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> state = opt.init(params)  # the real initial params: the bets are relative to them
      >>> updates, state = opt.update({"w": jnp.array([0.5, -300.0])}, state, params)
      >>> # t = 1: L_1 = G_1 = |g|, R_1 = 0, θ_1 = -g, and α L_1 > G_1 + L_1
      >>> updates["w"]  # -g / (|g| · α |g|) · |g| = -sign(g) / α, whatever the size of g
      Array([-0.25,  0.25], dtype=float32)

    References:
      Orabona & Tommasi, "Training Deep Networks without Learning Rates
      Through Coin Betting", NeurIPS 2017 (arXiv:1705.07795).
    """
    head = gradient_stages(weight_decay, mask=mask, mask_fn=mask_fn)
    factor = cast(float, learning_rate)  # the factory has evaluated a schedule by now
    return chain(*head, scale(factor), scale_by_coin_betting(alpha, eps))

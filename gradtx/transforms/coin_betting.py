"""Coin betting: COCOB-Backprop's per-coordinate bets (Orabona & Tommasi)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _tree
from gradtx import _update_checks
from gradtx._base import GradientTransformation
from gradtx._base import Params
from gradtx._base import Updates
from gradtx._base import gradient
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._specs import INITIAL_VALUE
from gradtx._specs import Hyper
from gradtx.transforms.distance import copy_params
from gradtx.transforms.distance import needs_params


class ScaleByCoinBettingState(NamedTuple):
    """State of ``scale_by_coin_betting`` (each like the params).

    Attributes:
      initial_params: x_0, the params ``init`` was given.
      negative_gradient_sum: θ_t = -Σ_{s≤t} g_s.
      max_abs_gradient: L_t = max(eps, max_{s≤t} |g_s|).
      abs_gradient_sum: G_t = Σ_{s≤t} |g_s|.
      reward: R_t = max(R_{t-1} - g_t (x_t - x_0), 0).
    """

    initial_params: Params
    negative_gradient_sum: Updates
    max_abs_gradient: Updates
    abs_gradient_sum: Updates
    reward: Updates


@factory(alpha=Hyper(low=0.0, low_open=True), eps=INITIAL_VALUE)
def scale_by_coin_betting(alpha: float = 100.0, eps: float = 1e-8) -> GradientTransformation:
    """Replace the updates by COCOB-Backprop's bet (Orabona & Tommasi, Alg. 2).

    Per coordinate, with g_t the gradient (the chain's ``grads`` keyword when
    present, else the input) and x_t the params at update t (from 1)::

      L_t = max(L_{t-1}, |g_t|)                 (L_0 = eps)
      G_t = G_{t-1} + |g_t|
      R_t = max(R_{t-1} - g_t (x_t - x_0), 0)
      θ_t = θ_{t-1} - g_t
      x_{t+1} = x_0 + θ_t / (L_t max(G_t + L_t, α L_t)) · (L_t + R_t)

    The output is ``x_{t+1} - x_t``: a complete step, already signed (no
    learning rate follows it).  ``init`` copies the params as x_0: give it the
    real initial params.  Real leaves only.

    Differences: with ``eps = 0`` a coordinate whose gradient has always been
    0 bets nothing here (optax's ``0 / 0`` gives NaN).

    Args:
      alpha: α > 0, which caps the fraction of the wealth bet early on.
      eps: L_0, the initial bound on |g| (keeps the first bet finite; read by
        ``init`` only).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale_by_coin_betting(alpha=1.0)
      >>> x = jnp.zeros(2)
      >>> tx.update(jnp.array([1.0, -2.0]), tx.init(x), x)[0]
      Array([-0.5,  0.5], dtype=float32)

    References:
      Orabona & Tommasi, "Training Deep Networks without Learning Rates
      Through Coin Betting", NeurIPS 2017 (arXiv:1705.07795).
    """
    call = current_call("gradtx.scale_by_coin_betting")

    def init(params):
        _update_checks.check_real(call, params, "the bets and wealth are real numbers")
        zeros = _tree.zeros_like  # three distinct buffers (donation-safe)
        return ScaleByCoinBettingState(
            copy_params(params), zeros(params), _tree.full_like(params, eps), zeros(params),
            zeros(params),
        )  # fmt: skip

    def update(updates, state, params=None, **extra):
        needs_params(call, params, "the bet is placed relative to the initial params")

        def one(g, x, x0, theta, big_l, big_g, reward):
            wide = _dtypes.compute_dtype(g.dtype, x.dtype)
            g, x, x0 = g.astype(wide), x.astype(wide), x0.astype(wide)
            theta, big_l = theta.astype(wide), big_l.astype(wide)
            big_g, reward = big_g.astype(wide), reward.astype(wide)
            a = _tree.scalar_like(alpha, g)
            big_l = jnp.maximum(big_l, jnp.abs(g))
            big_g = big_g + jnp.abs(g)
            reward = jnp.maximum(reward - g * (x - x0), 0)
            theta = theta - g
            # L = 0 only while every |g| has been 0 (eps = 0), and then θ = 0: no bet
            wager = _numerics.div0(theta, big_l * jnp.maximum(big_g + big_l, a * big_l))
            bet = wager * (big_l + reward)
            return -x + (x0 + bet), theta, big_l, big_g, reward

        grads = gradient(updates, extra)
        treedef = jax.tree.structure(updates)
        others = [
            treedef.flatten_up_to(t)
            for t in (grads, params, state.initial_params, state.negative_gradient_sum,
                      state.max_abs_gradient, state.abs_gradient_sum, state.reward)
        ]  # fmt: skip
        results = [one(*args) for args in zip(*others)]

        def column(i, like):
            return treedef.unflatten(
                [r[i].astype(x.dtype) for r, x in zip(results, treedef.flatten_up_to(like))]
            )

        new_state = ScaleByCoinBettingState(
            state.initial_params,
            column(1, state.negative_gradient_sum),
            column(2, state.max_abs_gradient),
            column(3, state.abs_gradient_sum),
            column(4, state.reward),
        )
        return column(0, updates), new_state

    return GradientTransformation(init, update)

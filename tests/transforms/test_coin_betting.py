"""scale_by_coin_betting: COCOB-Backprop's per-coordinate bets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


def test_two_steps_by_hand(x64):
    tx = gradtx.scale_by_coin_betting(alpha=1.0, eps=0.0)
    x0 = jnp.array([0.0, 1.0])
    g1, g2 = jnp.array([1.0, -2.0]), jnp.array([-3.0, 1.0])
    state = tx.init(x0)
    u1, state = tx.update(g1, state, x0)
    # L = |g|, G = |g|, R = 0, θ = -g: x0 + θ / (L (G + L)) L = x0 - g / (2|g|)
    np.testing.assert_allclose(u1, [-0.5, 0.5], rtol=1e-14)
    x1 = x0 + u1
    u2, state = tx.update(g2, state, x1)
    s = state.inner_state
    np.testing.assert_allclose(s.max_abs_gradient, [3.0, 2.0])
    np.testing.assert_allclose(s.abs_gradient_sum, [4.0, 3.0])
    np.testing.assert_allclose(s.negative_gradient_sum, [2.0, 1.0])
    reward = np.maximum(0 - np.asarray(g2) * np.asarray(x1 - x0), 0)  # both bets lost: 0
    np.testing.assert_allclose(s.reward, reward)
    bet = (
        np.array([2.0, 1.0])
        / (np.array([3.0, 2.0]) * np.array([7.0, 5.0]))
        * (np.array([3.0, 2.0]) + reward)
    )
    np.testing.assert_allclose(u2, np.asarray(x0) + bet - np.asarray(x1), rtol=1e-14)


def test_reward_grows_when_the_bet_paid(x64):
    tx = gradtx.scale_by_coin_betting(alpha=1.0, eps=0.0)
    x0 = jnp.zeros(1)
    state = tx.init(x0)
    u, state = tx.update(jnp.array([1.0]), state, x0)  # bets x < 0
    _, state = tx.update(jnp.array([1.0]), state, x0 + u)  # the gradient agrees: it paid
    np.testing.assert_allclose(state.inner_state.reward, [0.5])


def test_reads_the_gradient_from_the_chain(x64):
    tx = gradtx.scale_by_coin_betting(alpha=1.0, eps=0.0)
    x = jnp.zeros(2)
    u, _ = tx.update(jnp.array([9.0, 9.0]), tx.init(x), x, grads=jnp.array([1.0, -2.0]))
    np.testing.assert_allclose(u, [-0.5, 0.5], rtol=1e-14)


def test_state_is_stable_and_needs_params():
    params = {"a": jnp.ones((2, 3), jnp.bfloat16), "b": jnp.ones(4, jnp.bfloat16)}
    tx = gradtx.scale_by_coin_betting()
    state = tx.init(params)
    grads = jax.tree.map(lambda p: 0.5 * p, params)
    u, new = jax.jit(tx.update)(grads, state, params)
    assert jax.tree.structure(new) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(new)):
        assert a.dtype == b.dtype and a.shape == b.shape
    assert u["a"].dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="update needs params"):
        tx.update(grads, state)

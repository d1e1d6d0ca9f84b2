"""add_optimism: the input plus β times its last change, by hand."""

import jax
import jax.numpy as jnp
import numpy as np

import gradtx


def test_by_hand(x64):
    tx = gradtx.add_optimism(0.5, 2.0)
    state = tx.init(jnp.zeros(2))
    u1, u2, u3 = jnp.array([1.0, -1.0]), jnp.array([3.0, 0.0]), jnp.array([2.0, 2.0])
    out, state = tx.update(u1, state)
    np.testing.assert_allclose(out, 0.5 * u1)  # the first previous is u_1 itself
    out, state = tx.update(u2, state)
    np.testing.assert_allclose(out, 2.5 * u2 - 2.0 * u1)
    out, state = jax.jit(tx.update)(u3, state)
    np.testing.assert_allclose(out, 2.5 * u3 - 2.0 * u2)
    np.testing.assert_array_equal(state.inner_state.previous, u3)


def test_acts_on_its_input_not_the_gradient(x64):
    # After a momentum the extrapolation is of the momentum (optimistic Adam's r_t).
    tx = gradtx.chain(gradtx.add_momentum(0.5), gradtx.add_optimism(1.0, 1.0))
    state = tx.init(jnp.zeros(1))
    _, state = tx.update(jnp.array([2.0]), state)  # m = 2
    out, _ = tx.update(jnp.array([1.0]), state)  # m = 2, out = 2 m - m_prev = 2
    np.testing.assert_allclose(out, [2.0])


def test_schedules(x64):
    tx = gradtx.add_optimism(gradtx.schedules.linear(1.0, 0.0, 2), 1.0)
    state = tx.init(jnp.zeros(1))
    out, state = tx.update(jnp.array([4.0]), state)  # α_0 = 1
    np.testing.assert_allclose(out, [4.0])
    out, state = tx.update(jnp.array([4.0]), state)  # α_1 = 0.5: 1.5 · 4 - 4
    np.testing.assert_allclose(out, [2.0])

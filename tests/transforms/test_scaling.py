"""scale and scale_by_learning_rate."""

import jax
import jax.numpy as jnp
import numpy as np

import gradtx


def test_scale_is_a_gradient_map_with_its_factor_in_state():
    tx = gradtx.scale(-2.0)
    assert isinstance(tx, gradtx.GradientMap)
    u, state = tx.update(jnp.asarray([1.0, 3.0]), tx.init(jnp.zeros(2)))
    np.testing.assert_allclose(u, [-2.0, -6.0])
    state = gradtx.set_hyperparams(state, factor=0.5)
    np.testing.assert_allclose(tx.update(jnp.ones(2), state)[0], [0.5, 0.5])


def test_learning_rate_numbers_schedules_and_the_sign():
    g = jnp.ones(2)
    tx = gradtx.scale_by_learning_rate(0.1)
    np.testing.assert_allclose(tx.update(g, tx.init(g))[0], -0.1)
    tx = gradtx.scale_by_learning_rate(0.1, flip_sign=False)
    np.testing.assert_allclose(tx.update(g, tx.init(g))[0], 0.1)
    tx = gradtx.scale_by_learning_rate(gradtx.schedules.exponential_decay(1.0, 1, 0.5))
    state = tx.init(g)
    rates = []
    for _ in range(3):
        u, state = jax.jit(tx.update)(g, state)
        rates.append(float(-u[0]))
    np.testing.assert_allclose(rates, [1.0, 0.5, 0.25])
    assert int(state.count) == 3  # a schedule makes it count


def test_low_precision_updates_are_scaled_in_float32():
    # 0.3 * u rounded once: the same as float32 arithmetic rounded to bfloat16
    u = jnp.asarray([0.7, -1.3, 3.1], jnp.bfloat16)
    tx = gradtx.scale(0.3)
    out = tx.update(u, tx.init(u))[0]
    want = (u.astype(jnp.float32) * jnp.float32(0.3)).astype(jnp.bfloat16)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(out, np.float32), np.asarray(want, np.float32))

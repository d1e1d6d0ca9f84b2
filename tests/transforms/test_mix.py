"""mix_gradient: u + α·g, or u + α·EMA(g) (AdEMAMix's slow average)."""

import jax
import jax.numpy as jnp
import numpy as np

import gradtx


def test_slow_ema_matches_numpy(x64):
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=(2, 3)) for _ in range(6)]
    updates = [rng.normal(size=(2, 3)) for _ in range(6)]
    tx = gradtx.mix_gradient(2.5, 0.9)
    state = tx.init(jnp.zeros((2, 3)))
    m = np.zeros((2, 3))
    for u, g in zip(updates, grads):
        out, state = jax.jit(tx.update)(jnp.asarray(u), state, grads=jnp.asarray(g))
        m = 0.9 * m + 0.1 * g  # no bias correction
        np.testing.assert_allclose(out, u + 2.5 * m, rtol=1e-14)
    np.testing.assert_allclose(state.inner_state.mu, m, rtol=1e-14)


def test_without_decay_mixes_the_gradient_and_keeps_no_buffer():
    tx = gradtx.mix_gradient(0.5)
    state = tx.init(jnp.zeros(2))
    assert state.inner_state.mu is None
    out, _ = tx.update(jnp.ones(2), state, grads=jnp.array([2.0, -2.0]))
    np.testing.assert_array_equal(out, [2.0, 0.0])
    out, _ = tx.update(jnp.array([2.0, -2.0]), state)  # alone: the input is the gradient
    np.testing.assert_array_equal(out, [3.0, -3.0])


def test_alpha_and_decay_schedules_and_set_hyperparams(x64):
    tx = gradtx.mix_gradient(lambda t: t.astype(jnp.float64), gradtx.schedules.constant(0.5))
    state = tx.init(jnp.zeros(1))
    outs = []
    for _ in range(3):
        out, state = tx.update(jnp.zeros(1), state, grads=jnp.ones(1))
        outs.append(float(out[0]))
    np.testing.assert_allclose(outs, [0.0 * 0.5, 1.0 * 0.75, 2.0 * 0.875])
    tx = gradtx.mix_gradient(1.0, 0.5)
    state = gradtx.set_hyperparams(tx.init(jnp.zeros(1)), alpha=3.0)
    out, _ = tx.update(jnp.zeros(1), state, grads=jnp.ones(1))
    np.testing.assert_allclose(out, [1.5])

"""dual_average: MADGRAD's dual averaging with a cube-root denominator."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


def test_matches_numpy(x64):
    rng = np.random.default_rng(2)
    x0 = rng.normal(size=(3, 2))
    grads = [rng.normal(size=(3, 2)) for _ in range(8)]
    lr, eps = 0.05, 1e-4
    tx = gradtx.dual_average(lambda k: lr / (1.0 + k.astype(jnp.float64)), eps)
    state = tx.init(jnp.asarray(x0))
    x = x0.copy()
    G = s = np.zeros_like(x0)
    for k, g in enumerate(grads):
        weight = (lr / (1.0 + k) + eps) * np.sqrt(k + 1)
        G, s = G + weight * g**2, s + weight * g
        z = x0 - s / (np.cbrt(G) + eps)
        out, state = jax.jit(tx.update)(jnp.asarray(g), state, jnp.asarray(x))
        np.testing.assert_allclose(out, z - x, rtol=1e-12, atol=1e-14)
        x = x + 0.3 * (z - x)  # any params: the step is to z from where they are
    np.testing.assert_allclose(state.inner_state.sum_of_squares, G, rtol=1e-13)
    np.testing.assert_allclose(state.inner_state.sum_of_gradients, s, rtol=1e-13)
    np.testing.assert_array_equal(state.inner_state.x0, x0)


def test_nothing_accumulated_stays_at_x0_and_needs_params():
    tx = gradtx.dual_average(0.0, eps=0.0)  # weights 0: G = s = 0, 0/0 -> 0
    x0 = jnp.array([1.0, 2.0])
    out, _ = tx.update(jnp.ones(2), tx.init(x0), x0 + 1)
    np.testing.assert_array_equal(out, [-1.0, -1.0])
    with pytest.raises(ValueError, match=r"gradtx\.dual_average: update needs params"):
        tx.update(jnp.ones(2), tx.init(x0))


def test_count_saturates_without_nan():
    tx = gradtx.dual_average(0.1)
    x = jnp.ones(2)
    state = tx.init(x)
    state = state._replace(count=jnp.asarray(jnp.iinfo(jnp.int32).max, jnp.int32))
    out, state = tx.update(jnp.ones(2), state, x)
    assert bool(jnp.all(jnp.isfinite(out)))

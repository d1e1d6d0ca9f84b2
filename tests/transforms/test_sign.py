"""scale_by_sign and add_interpolated_momentum (Lion's), against hand and NumPy values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


def test_scale_by_sign_values_zero_and_complex(x64):
    tx = gradtx.scale_by_sign()
    u = {"a": jnp.array([0.3, -2.0, 0.0, -0.0]), "c": jnp.array([3.0 + 4.0j, 0.0j])}
    out, state = tx.update(u, tx.init(u))
    np.testing.assert_array_equal(out["a"], [1.0, -1.0, 0.0, 0.0])
    np.testing.assert_allclose(out["c"], [0.6 + 0.8j, 0.0], rtol=1e-15)  # the phase
    assert state == gradtx.EmptyState()


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_scale_by_sign_keeps_the_dtype(dtype):
    tx = gradtx.scale_by_sign()
    u = jnp.asarray([0.5, -1e-3, 0.0], dtype)
    out, _ = jax.jit(tx.update)(u, tx.init(u))
    assert out.dtype == dtype
    np.testing.assert_array_equal(np.asarray(out, np.float32), [1.0, -1.0, 0.0])


def test_scale_by_sign_acts_on_its_input_not_the_gradient(x64):
    # After a momentum the input is the momentum: its sign, not the gradient's.
    tx = gradtx.chain(gradtx.add_momentum(0.9), gradtx.scale_by_sign())
    state = tx.init(jnp.zeros(2))
    _, state = tx.update(jnp.array([1.0, 1.0]), state)
    out, _ = tx.update(jnp.array([-0.5, -2.0]), state)  # m = [0.4, -1.1]
    np.testing.assert_array_equal(out, [1.0, -1.0])


def _numpy_interpolated(grads, b1, b2):
    m = np.zeros_like(grads[0])
    outs = []
    for g in grads:
        outs.append(b1 * m + (1 - b1) * g)
        m = b2 * m + (1 - b2) * g
    return outs, m


@pytest.mark.parametrize("jit", [False, True])
def test_interpolated_momentum_matches_numpy(x64, jit):
    rng = np.random.default_rng(4)
    grads = [rng.normal(size=(2, 3)) for _ in range(6)]
    ref, m = _numpy_interpolated(grads, 0.7, 0.95)
    tx = gradtx.add_interpolated_momentum(0.7, 0.95)
    state = tx.init(jnp.zeros((2, 3)))
    update = jax.jit(tx.update) if jit else tx.update
    for g, r in zip(grads, ref):
        out, state = update(jnp.asarray(g), state)
        np.testing.assert_allclose(out, r, rtol=1e-14)
    np.testing.assert_allclose(state.inner_state.mu, m, rtol=1e-14)


def test_interpolated_momentum_with_equal_rates_is_the_ema(x64):
    rng = np.random.default_rng(5)
    grads = [jnp.asarray(rng.normal(size=4)) for _ in range(4)]
    ours, ema = gradtx.add_interpolated_momentum(0.8, 0.8), gradtx.add_momentum(0.8, ema=True)
    s1, s2 = ours.init(grads[0]), ema.init(grads[0])
    for g in grads:
        a, s1 = ours.update(g, s1)
        b, s2 = ema.update(g, s2)
        np.testing.assert_allclose(a, b, rtol=1e-15)


def test_interpolated_momentum_storage_dtype():
    params = {"w": jnp.ones((2, 2), jnp.float32)}
    tx = gradtx.add_interpolated_momentum(dtype=jnp.bfloat16)
    state = tx.init(params)
    out, state = jax.jit(tx.update)(params, state)
    assert state.inner_state.mu["w"].dtype == jnp.bfloat16
    assert out["w"].dtype == jnp.float32
    # The interpolation is computed in float32, not rounded to the bfloat16 buffer.
    np.testing.assert_array_equal(out["w"], np.full((2, 2), 1 - np.float32(0.9)))

"""scale_by_additive_rms (Yogi's second moment), against NumPy and hand values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


def _numpy_yogi_denominator(grads, b2, eps, eps_root, v0, bias_correction):
    v = np.full_like(grads[0], v0)
    outs = []
    for t, g in enumerate(grads, start=1):
        v = v - (1 - b2) * np.sign(v - g**2) * g**2
        v_hat = v / (1 - b2**t) if bias_correction else v
        outs.append(1.0 / (np.sqrt(v_hat + eps_root) + eps))
    return outs, v


@pytest.mark.parametrize("bias_correction", [True, False])
def test_matches_numpy(x64, bias_correction):
    rng = np.random.default_rng(7)
    # Gradients around the starting value, so v moves both up and down.
    grads = [rng.normal(size=(2, 3)) * s for s in (1.0, 0.1, 0.01, 2.0, 0.01, 0.5)]
    ref, v = _numpy_yogi_denominator(grads, 0.7, 1e-3, 1e-4, 0.3, bias_correction)
    tx = gradtx.scale_by_additive_rms(
        0.7, 1e-3, eps_root=1e-4, initial_value=0.3, bias_correction=bias_correction
    )
    state = tx.init(jnp.zeros((2, 3)))
    ones = jnp.ones((2, 3))
    for g, r in zip(grads, ref):
        # Input ones, gradient g: the output is the reciprocal denominator.
        out, state = jax.jit(tx.update)(ones, state, grads=jnp.asarray(g))
        np.testing.assert_allclose(out, r, rtol=1e-13)
    np.testing.assert_allclose(state.inner_state.nu, v, rtol=1e-13)


def test_moves_by_a_fraction_of_g_squared_not_of_the_gap(x64):
    tx = gradtx.scale_by_additive_rms(0.5, eps=0.0, initial_value=100.0, bias_correction=False)
    state = tx.init(jnp.zeros(3))
    _, state = tx.update(jnp.ones(3), state, grads=jnp.array([1.0, 20.0, 10.0]))
    # v > g²: 100 - 0.5 · 1; v < g² = 400: 100 + 0.5 · 400 (Adam's EMA: 50.5 and 250);
    # v = g²: no move.
    np.testing.assert_array_equal(state.inner_state.nu, [99.5, 300.0, 100.0])
    _, state = tx.update(jnp.ones(3), state, grads=jnp.zeros(3))
    np.testing.assert_array_equal(state.inner_state.nu, [99.5, 300.0, 100.0])  # g = 0


def test_infinite_squares_stay_infinite_not_nan():
    tx = gradtx.scale_by_additive_rms(bias_correction=False)
    state = tx.init(jnp.zeros(2))
    huge = jnp.array([1e30, -1e30], jnp.float32)  # g² overflows float32
    for _ in range(3):
        out, state = tx.update(jnp.ones(2), state, grads=huge)
        assert np.all(np.isinf(state.inner_state.nu))
        np.testing.assert_array_equal(out, [0.0, 0.0])


def test_a_nan_gradient_reaches_the_second_moment():
    """NaN is neither above nor below v: the select must not keep the old v (optax's
    sign(NaN) gives NaN too, and docs/errors.md promises NaN moments)."""
    tx = gradtx.scale_by_additive_rms(bias_correction=False)
    state = tx.init(jnp.zeros(2))
    _, state = tx.update(jnp.ones(2), state, grads=jnp.array([jnp.nan, 1.0]))
    nu = np.asarray(state.inner_state.nu)
    assert np.isnan(nu[0]) and np.isfinite(nu[1])


def test_complex_gradients_use_the_modulus(x64):
    tx = gradtx.scale_by_additive_rms(0.5, eps=0.0, initial_value=0.0, bias_correction=False)
    z = jnp.array([3.0 + 4.0j])
    out, state = tx.update(z, tx.init(z), grads=z)  # v = 0 + 0.5 · 25
    np.testing.assert_allclose(out, np.asarray(z) / np.sqrt(12.5), rtol=1e-15)
    assert state.inner_state.nu.dtype == jnp.float64  # squares are real


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_storage(dtype):
    params = {"w": jnp.ones(3, dtype)}
    tx = gradtx.scale_by_additive_rms()
    out, state = jax.jit(tx.update)(params, tx.init(params))
    assert out["w"].dtype == dtype
    assert state.inner_state.nu["w"].dtype == jnp.float32  # 16-bit params: float32 state


def test_float32_moments_under_x64_take_their_weight_from_the_float64_rate(x64):
    """1 - b2 is formed from the stored float64 b2 and rounded once, as the bias
    correction is: with 1 - float32(b2) the two did not cancel, and Yogi's first step
    in float32 was 8e-5 off at b2 = 0.9999 (optax's float32 step: 1e-7)."""
    rng = np.random.default_rng(5)
    g = rng.normal(size=20)
    tx = gradtx.scale_by_additive_rms(0.9999, eps=1e-8, bias_correction=True, initial_value=0.0)
    ours, _ = tx.update(jnp.asarray(g, jnp.float32), tx.init(jnp.zeros(20, jnp.float32)))
    exact, _ = _numpy_yogi_denominator([g], 0.9999, 1e-8, 0.0, 0.0, True)
    np.testing.assert_allclose(ours, (g * exact[0]).astype(np.float32), rtol=1e-6)

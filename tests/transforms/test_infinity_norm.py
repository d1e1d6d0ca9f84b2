"""scale_by_infinity_norm: Adamax's denominator, against a numpy recurrence and optax."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx


def test_twenty_random_steps_follow_the_recurrence(x64):
    rng = np.random.default_rng(0)
    decay, eps = rng.uniform(0.5, 0.999), rng.uniform(1e-8, 1e-2)
    grads = [rng.normal(size=(3, 4)) * 10.0 ** rng.uniform(-3, 3) for _ in range(20)]
    tx = gradtx.scale_by_infinity_norm(decay, eps)
    state = tx.init(jnp.zeros((3, 4)))
    u = np.zeros((3, 4))
    for g in grads:
        out, state = tx.update(jnp.asarray(g), state)
        u = np.maximum(decay * u, np.abs(g) + eps)
        np.testing.assert_allclose(np.asarray(out), g / u, rtol=1e-14, atol=0)
        np.testing.assert_allclose(np.asarray(state.inner_state.nu), u, rtol=1e-15, atol=0)


def test_equals_optax_adamax_denominator_after_a_momentum(x64):
    # optax.scale_by_adamax(b1, b2, eps) = bias-corrected EMA of g, divided by the same norm.
    b1, b2, eps = 0.8, 0.95, 1e-3
    ours = gradtx.chain(
        gradtx.add_momentum(b1, ema=True),
        gradtx.bias_correct(b1),
        gradtx.scale_by_infinity_norm(b2, eps),
    )
    theirs = optax.scale_by_adamax(b1, b2, eps)
    params = {"a": jnp.zeros(5), "b": jnp.zeros((2, 3))}
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    key = jax.random.PRNGKey(1)
    for _ in range(20):
        key, sub = jax.random.split(key)
        g = {k: jax.random.normal(sub, v.shape, jnp.float64) for k, v in params.items()}
        a, s_ours = ours.update(g, s_ours, params)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes weak and strong types
            b, s_theirs = theirs.update(g, s_theirs, params)
        for k in params:
            np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=1e-12, atol=0)


def test_norm_reads_the_chains_gradient_not_the_input(x64):
    tx = gradtx.scale_by_infinity_norm(0.5, eps=0.0)
    state = tx.init(jnp.zeros(2))
    out, state = tx.update(jnp.asarray([1.0, 1.0]), state, grads=jnp.asarray([4.0, -2.0]))
    np.testing.assert_array_equal(np.asarray(state.inner_state.nu), [4.0, 2.0])
    np.testing.assert_array_equal(np.asarray(out), [0.25, 0.5])


def test_eps_zero_leaves_never_moved_coordinates_at_zero():
    tx = gradtx.scale_by_infinity_norm(0.9, eps=0.0)
    state = tx.init(jnp.zeros(3))
    out, _ = tx.update(jnp.asarray([0.0, 2.0, 0.0]), state)
    np.testing.assert_array_equal(np.asarray(out), [0.0, 1.0, 0.0])


def test_a_zero_norm_is_floored_at_tiny_over_epsneg():
    # decay = 0, eps = 0: u_2 = |g_2| = 0 under a non-zero input.  torch divides by 0
    # (inf); the floor gives input / 2^-102, still far from a usable step, and NaN stays NaN.
    tx = gradtx.scale_by_infinity_norm(0.0, eps=0.0)
    state = tx.init(jnp.zeros(3))
    x = jnp.asarray([0.5, 0.0, jnp.nan])
    out, _ = tx.update(x, state, grads=jnp.asarray([0.0, 0.0, 1.0]))
    np.testing.assert_array_equal(
        np.asarray(out), [np.float32(0.5) / np.float32(2.0**-102), 0.0, np.nan]
    )


@pytest.mark.parametrize("b1", [0.9, float(np.float32(1 - 2.0**-24))])  # c = 1 - b1 down to epsneg
def test_adamax_with_eps_zero_jitted_over_two_leaves_leaves_zero_gradients_still(b1):
    # XLA rewrote the bias-corrected (m / c) / max(u, tiny) as m / (c · max(u, tiny)), and
    # c · tiny flushed to 0: 0/0, NaN, where the gradient had always been 0.
    tx = gradtx.adamax(0.05, b1=b1, eps=0.0)
    params = {"v": jnp.zeros(3), "w": jnp.zeros(3)}
    grads = {"v": jnp.asarray([0.0, 1.0, 0.0]), "w": jnp.asarray([2.0, 0.0, 0.0])}
    out, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    np.testing.assert_allclose(np.asarray(out["v"]), [0.0, -0.05, 0.0], rtol=1e-6, atol=0)
    np.testing.assert_allclose(np.asarray(out["w"]), [-0.05, 0.0, 0.0], rtol=1e-6, atol=0)


@pytest.mark.parametrize("g", [5e37, 1e38, 3e38])
def test_adamax_steps_by_the_rate_at_gradients_near_the_largest_float32(g):
    # a form through the reciprocal 1 / u (subnormal beyond 8.5e37, flushed) took no step
    tx = gradtx.adamax(1.0)
    params = {"v": jnp.zeros(2), "w": jnp.zeros(2)}
    grads = {"v": jnp.asarray([g, -g], jnp.float32), "w": jnp.asarray([1.0, g], jnp.float32)}
    out, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    np.testing.assert_allclose(np.asarray(out["v"]), [-1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out["w"]), [-1.0, -1.0], rtol=1e-6)


def test_sixteen_bit_params_keep_the_norm_in_float32():
    # 0.999 u rounds back to u in bfloat16: the norm would never decay.
    tx = gradtx.scale_by_infinity_norm(0.999, eps=0.0)
    params = jnp.zeros(2, jnp.bfloat16)
    state = tx.init(params)
    assert state.inner_state.nu.dtype == jnp.float32
    g = jnp.asarray([1.0, 1.0], jnp.bfloat16)
    out, state = tx.update(g, state, params)
    out, state = tx.update(jnp.zeros(2, jnp.bfloat16), state, params)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_array_equal(
        np.asarray(state.inner_state.nu), np.float32(0.999) * np.ones(2, np.float32)
    )

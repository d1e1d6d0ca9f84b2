"""scale_by_nesterov_estimate (Adan's gradient-difference terms), against NumPy."""

import jax
import jax.numpy as jnp
import numpy as np

import gradtx


def _numpy_adan(grads, b1, b2, b3, eps, eps_root):
    """Adan's step without the learning rate, written from optax.adan's docstring and
    the paper's Algorithm 1 (EMAs as b m + (1 - b) x, bias-corrected)."""
    m = v = n = np.zeros_like(grads[0])
    prev = None
    outs = []
    for t, g in enumerate(grads, start=1):
        diff = np.zeros_like(g) if prev is None else g - prev
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * diff
        n = b3 * n + (1 - b3) * (g + (1 - b2) * diff) ** 2
        num = m / (1 - b1**t) + (1 - b2) * v / (1 - b2**t)
        outs.append(num / (np.sqrt(n / (1 - b3**t) + eps_root) + eps))
        prev = g
    return outs, (prev, v, n)


def test_in_adans_chain_matches_numpy(x64):
    rng = np.random.default_rng(8)
    grads = [rng.normal(size=(2, 2, 2)) for _ in range(8)]
    b1, b2, b3, eps, eps_root = 0.9, 0.8, 0.95, 1e-3, 1e-2
    ref, (prev, v, n) = _numpy_adan(grads, b1, b2, b3, eps, eps_root)

    @gradtx.factory(counted=True)
    def chain():  # one counter for the chain, as in an optimizer
        return gradtx.chain(
            gradtx.add_momentum(b1, ema=True),
            gradtx.bias_correct(b1),
            gradtx.scale_by_nesterov_estimate(b2, b3, eps, eps_root),
        )

    tx = chain()
    state = tx.init(jnp.zeros((2, 2, 2)))
    for g, r in zip(grads, ref):
        out, state = jax.jit(tx.update)(jnp.asarray(g), state)
        np.testing.assert_allclose(out, r, rtol=1e-13)
    inner = state.inner_state[2]
    np.testing.assert_array_equal(inner.previous_grad, prev)
    np.testing.assert_allclose(inner.mu_diff, v, rtol=1e-13)
    np.testing.assert_allclose(inner.nu, n, rtol=1e-13)


def test_first_difference_is_zero_and_input_passes_through(x64):
    tx = gradtx.scale_by_nesterov_estimate(0.5, 0.5, eps=0.0, eps_root=0.0)
    state = tx.init(jnp.zeros(2))
    u, g = jnp.array([1.0, -2.0]), jnp.array([2.0, 4.0])
    out, state = tx.update(u, state, grads=g)
    # Δ_1 = 0 (not g - 0): v = 0, n̂ = g², out = u / |g|.
    np.testing.assert_allclose(out, u / jnp.abs(g))
    np.testing.assert_array_equal(state.inner_state.mu_diff, [0.0, 0.0])
    np.testing.assert_array_equal(state.inner_state.previous_grad, g)
    # Second step, g = [4, 4]: Δ = [2, 0], v_2 = 0.5 Δ, v̂_2 = v_2 / 0.75;
    # ĝ = g + 0.5 Δ = [5, 4], n_2 = 0.5 · 0.5 g_1² + 0.5 ĝ² = [13.5, 12], n̂_2 = [18, 16].
    out, state = tx.update(u, state, grads=jnp.array([4.0, 4.0]))
    v_hat = np.array([1.0, 0.0]) / 0.75
    np.testing.assert_allclose(out, (u + 0.5 * v_hat) / np.sqrt([18.0, 16.0]), rtol=1e-15)


def test_low_precision_storage():
    params = {"w": jnp.ones(3, jnp.float16)}
    tx = gradtx.scale_by_nesterov_estimate()
    out, state = jax.jit(tx.update)(params, tx.init(params))
    assert out["w"].dtype == jnp.float16
    inner = state.inner_state
    # float16 params keep their statistics in float32 (_dtypes.state_dtype)
    assert inner.previous_grad["w"].dtype == jnp.float32
    assert inner.mu_diff["w"].dtype == jnp.float32
    assert inner.nu["w"].dtype == jnp.float32

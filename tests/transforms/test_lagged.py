"""scale_by_lagged_rms (ADOPT) and scale_by_lagged_belief (ACProp) against numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


def _grads(n=8, shape=(3, 2), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape) for _ in range(n)]


def _run(tx, grads):
    state = tx.init(jnp.zeros_like(jnp.asarray(grads[0])))
    update = jax.jit(tx.update)
    out = []
    for g in grads:
        u, state = update(jnp.asarray(g), state)
        out.append(np.asarray(u))
    return out, state


@pytest.mark.parametrize("eps", [1e-6, 0.5])
def test_lagged_rms_matches_numpy(x64, eps):
    grads = _grads()
    decay = 0.9
    v = None
    want = []
    for g in grads:
        if v is None:  # the first gradient only initialises v
            want.append(np.zeros_like(g))
            v = g**2
        else:
            want.append(g / np.maximum(np.sqrt(v), eps))
            v = decay * v + (1 - decay) * g**2
    got, state = _run(gradtx.scale_by_lagged_rms(decay, eps), grads)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-13)
    np.testing.assert_allclose(state.inner_state.nu, v, rtol=1e-13)


def test_lagged_rms_zero_gradient_with_eps_zero_takes_no_step():
    tx = gradtx.scale_by_lagged_rms(0.9, eps=0.0)
    got, _ = _run(tx, [np.zeros(3), np.zeros(3)])
    np.testing.assert_array_equal(got[1], np.zeros(3))  # 0 / 0 = 0, not NaN


@pytest.mark.parametrize("eps, eps_root", [(1e-16, 1e-16), (0.1, 1e-3)])
def test_lagged_belief_matches_numpy(x64, eps, eps_root):
    grads = _grads(seed=1)
    b1, b2 = 0.8, 0.95
    m = s = np.zeros_like(grads[0])
    want = []
    for t, g in enumerate(grads, start=1):
        s_hat = np.ones_like(g) if t == 1 else s / (1 - b2 ** (t - 1))
        want.append(g / (np.sqrt(s_hat) + eps))
        s = b2 * s + (1 - b2) * (g - m) ** 2 + eps_root  # the error against m_{t-1}
        m = b1 * m + (1 - b1) * g
    got, state = _run(gradtx.scale_by_lagged_belief(b1, b2, eps, eps_root), grads)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-13)
    np.testing.assert_allclose(state.inner_state.mu, m, rtol=1e-13)
    np.testing.assert_allclose(state.inner_state.nu, s, rtol=1e-13)


def test_statistics_read_the_chain_gradient():
    """After momentum in a chain, the denominators still see the gradient."""
    g = jnp.array([2.0, -1.0])
    for tx in (gradtx.scale_by_lagged_rms(0.5), gradtx.scale_by_lagged_belief(0.5, 0.5)):
        chained = gradtx.chain(gradtx.scale(3.0), gradtx.add_momentum(0.9), tx)
        state = chained.init(g)
        _, state = chained.update(g, state)
        alone = tx.init(g)
        _, alone = tx.update(3 * g, alone)
        jax.tree.map(np.testing.assert_array_equal, state[2].inner_state, alone.inner_state)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision(dtype):
    for tx in (gradtx.scale_by_lagged_rms(0.999), gradtx.scale_by_lagged_belief()):
        state = tx.init(jnp.zeros(3, dtype))
        update = jax.jit(tx.update)
        for _ in range(3):
            u, state = update(jnp.full(3, 1e-3, dtype), state)
        assert u.dtype == dtype and bool(jnp.all(jnp.isfinite(u)))
        assert float(u[0]) > 0.1  # (1e-3)² kept in float32, not flushed to 0


def test_clip_built_in_a_body_from_a_function_of_the_step(x64):
    """ADOPT's clip_value_fn: gradtx.clip inside a factory calls it with the owner's count."""

    @gradtx.factory(counted=True)
    def clipped():
        return gradtx.clip(lambda t: 0.5 * (t + 1).astype(jnp.float64))

    tx = clipped()
    state = tx.init(jnp.zeros(2))
    for bound in (0.5, 1.0, 1.5):
        out, state = tx.update(jnp.array([10.0, -0.7]), state)
        np.testing.assert_array_equal(out, [bound, max(-0.7, -bound)])

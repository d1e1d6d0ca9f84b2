"""scale_by_belief (AdaBelief's denominator), against NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


def _numpy_belief(grads, b1, b2, eps, eps_root, nesterov=False):
    """AdaBelief's step without the learning rate, from the paper's Algorithm 2."""
    m = s = np.zeros_like(grads[0])
    outs = []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        s = b2 * s + (1 - b2) * (g - m) ** 2 + eps_root
        denom = np.sqrt(s / (1 - b2**t)) + eps
        if nesterov:
            num = b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
        else:
            num = m / (1 - b1**t)
        outs.append(num / denom)
    return outs, s


@pytest.mark.parametrize("nesterov", [False, True])
def test_in_adabeliefs_chain_matches_numpy(x64, nesterov):
    rng = np.random.default_rng(6)
    grads = [rng.normal(size=(3, 2)) for _ in range(8)]
    b1, b2, eps, eps_root = 0.8, 0.9, 1e-3, 1e-2
    ref, s = _numpy_belief(grads, b1, b2, eps, eps_root, nesterov)

    @gradtx.factory(counted=True)
    def chain():  # one counter for the chain, as in an optimizer
        if nesterov:
            tail = [gradtx.scale_by_belief(b2, eps, eps_root, nesterov=b1)]
        else:
            tail = [gradtx.scale_by_belief(b2, eps, eps_root), gradtx.bias_correct(b1)]
        return gradtx.chain(gradtx.add_momentum(b1, ema=True), *tail)

    tx = chain()
    state = tx.init(jnp.zeros((3, 2)))
    for g, r in zip(grads, ref):
        out, state = jax.jit(tx.update)(jnp.asarray(g), state)
        np.testing.assert_allclose(out, r, rtol=1e-13)
    np.testing.assert_allclose(state.inner_state[1].nu, s, rtol=1e-13)


def test_prediction_is_the_input_and_the_gradient_the_grads_keyword(x64):
    tx = gradtx.scale_by_belief(0.5, eps=0.0, eps_root=0.0)
    m, g = jnp.array([1.0, -1.0, 2.0]), jnp.array([3.0, 1.0, 2.0])
    out, state = tx.update(m, tx.init(m), grads=g)
    # s_1 = 0.5 (g - m)², ŝ_1 = (g - m)²: out = m / |g - m|; a zero error and a
    # zero prediction give 0 (not 0/0).
    np.testing.assert_allclose(out, [0.5, -0.5, np.inf])
    np.testing.assert_allclose(state.inner_state.nu, [2.0, 2.0, 0.0])
    out, _ = tx.update(jnp.zeros(3), tx.init(m), grads=jnp.zeros(3))
    np.testing.assert_array_equal(out, np.zeros(3))


def test_eps_root_enters_the_state_every_step(x64):
    # A zero error: s_t = eps_root (1 + b2 + ... + b2^{t-1}), so ŝ_t = eps_root / (1 - b2).
    tx = gradtx.scale_by_belief(0.5, eps=0.0, eps_root=0.25)
    state = tx.init(jnp.zeros(1))
    for t in range(1, 4):
        out, state = tx.update(jnp.ones(1), state, grads=jnp.ones(1))
        np.testing.assert_allclose(state.inner_state.nu, 0.25 * (1 - 0.5**t) / 0.5)
        np.testing.assert_allclose(out, 1 / np.sqrt(0.5), rtol=1e-15)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_storage(dtype):
    params = {"w": jnp.ones(3, dtype)}
    tx = gradtx.scale_by_belief()
    state = tx.init(params)
    out, state = jax.jit(tx.update)(params, state, grads={"w": jnp.full(3, 2.0, dtype)})
    assert out["w"].dtype == dtype
    assert state.inner_state.nu["w"].dtype == jnp.float32  # 16-bit params: float32 state

"""add_nesterov_momentum: NAdam's numerator with Dozat's warming momentum schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


def _numpy_nadam_numerator(grads, b1, psi):
    """Written from torch.optim.NAdam's equations (ALGORITHMS.md §13)."""
    m = np.zeros_like(grads[0])
    product = 1.0
    out = []
    for t, g in enumerate(grads, start=1):
        mu = b1 * (1 - 0.5 * 0.96 ** (t * psi))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        product *= mu
        m = b1 * m + (1 - b1) * g
        out.append((1 - mu) / (1 - product) * g + mu_next / (1 - product * mu_next) * m)
    return out, m, product


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("psi", [4e-3, 0.3])
def test_matches_numpy(x64, jit, psi):
    rng = np.random.default_rng(2)
    grads = [rng.normal(size=(3, 2)) for _ in range(8)]
    ref, m, product = _numpy_nadam_numerator(grads, 0.9, psi)
    tx = gradtx.add_nesterov_momentum(0.9, psi)
    state = tx.init(jnp.zeros((3, 2)))
    update = jax.jit(tx.update) if jit else tx.update
    for g, r in zip(grads, ref):
        u, state = update(jnp.asarray(g), state)
        np.testing.assert_allclose(u, r, rtol=1e-12)
    np.testing.assert_allclose(state.inner_state.mu, m, rtol=1e-13)
    np.testing.assert_allclose(state.inner_state.mu_product, product, rtol=1e-13)


def test_huge_momentum_decay_is_constant_momentum_form(x64):
    """ψ = 1e6: μ_t = b1 exactly, optax.nadam's bias-corrected Nesterov EMA."""
    b1 = 0.8
    rng = np.random.default_rng(3)
    grads = [rng.normal(size=4) for _ in range(5)]
    tx = gradtx.add_nesterov_momentum(b1, 1e6)
    state = tx.init(jnp.zeros(4))
    m = np.zeros(4)
    for t, g in enumerate(grads, start=1):
        u, state = tx.update(jnp.asarray(g), state)
        m = b1 * m + (1 - b1) * g
        expected = (1 - b1) / (1 - b1**t) * g + b1 / (1 - b1 ** (t + 1)) * m
        np.testing.assert_allclose(u, expected, rtol=1e-13)
    np.testing.assert_allclose(state.inner_state.mu_product, b1**5, rtol=1e-14)


def test_ignores_grads_keyword_and_extras(x64):
    tx = gradtx.add_nesterov_momentum(0.9)
    g = jnp.array([1.0, -1.0])
    a, _ = tx.update(g, tx.init(g))
    b, _ = tx.update(g, tx.init(g), grads=jnp.array([5.0, 5.0]), value=1.0)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_state_dtypes_stable(dtype):
    params = {"a": jnp.ones((2, 3), dtype), "b": jnp.ones(4, dtype)}
    tx = gradtx.add_nesterov_momentum(0.9, dtype=None)
    state0 = tx.init(params)
    u, state1 = jax.jit(tx.update)(params, state0, params)
    assert jax.tree.structure(state0) == jax.tree.structure(state1)
    for a, b in zip(jax.tree.leaves(state0), jax.tree.leaves(state1)):
        assert a.dtype == b.dtype and a.shape == b.shape
    assert state1.inner_state.mu["a"].dtype == jnp.float32  # also for bfloat16 params
    # Π_t is a scalar in the hyperparameters' precision, not the params'.
    assert state1.inner_state.mu_product.shape == ()
    assert state1.inner_state.mu_product.dtype == jnp.float32
    assert u["b"].dtype == dtype


def test_mu_dtype_option_and_errors():
    tx = gradtx.add_nesterov_momentum(dtype=jnp.float32)
    assert tx.init(jnp.ones(2, jnp.bfloat16)).inner_state.mu.dtype == jnp.float32
    with pytest.raises(ValueError, match=r"gradtx.add_nesterov_momentum\(b1=1.0\)"):
        gradtx.add_nesterov_momentum(1.0)
    with pytest.raises(ValueError, match="momentum_decay must be in"):
        gradtx.add_nesterov_momentum(0.9, -1.0)


@pytest.mark.parametrize("ema", [False, True])
def test_add_momentum_initial_value(x64, ema):
    """``m_0 = c`` (Yogi's 1e-6), by hand; ``None`` and 0 both mean zeros and store nothing."""
    c, d = 0.25, 0.5
    g1, g2 = np.array([1.0, -2.0]), np.array([0.5, 4.0])
    tx = gradtx.add_momentum(d, ema=ema, initial_value=c)
    state = tx.init(jnp.zeros(2))
    np.testing.assert_array_equal(state.inner_state.mu, [c, c])
    u1, state = tx.update(jnp.asarray(g1), state)
    u2, state = tx.update(jnp.asarray(g2), state)
    w = 1 - d if ema else 1.0
    m1 = d * c + w * g1
    np.testing.assert_allclose(u1, m1, rtol=1e-15)
    np.testing.assert_allclose(u2, d * m1 + w * g2, rtol=1e-15)
    assert "initial_value" not in gradtx.get_hyperparams(state)  # read by init only
    for none in (None, 0.0):
        state = gradtx.add_momentum(d, ema=ema, initial_value=none).init(jnp.ones(2))
        np.testing.assert_array_equal(state.inner_state.mu, [0.0, 0.0])
        assert "initial_value" not in gradtx.get_hyperparams(state)


def test_ema_nesterov_is_the_ema_look_ahead(x64):
    """add_momentum(ema=True, nesterov=True) returns decay·m_t + (1 - decay)·u_t."""
    rng = np.random.default_rng(5)
    tx = gradtx.add_momentum(0.8, ema=True, nesterov=True)
    state = tx.init(jnp.zeros(3))
    m = np.zeros(3)
    for _ in range(4):
        u = rng.normal(size=3)
        out, state = tx.update(jnp.asarray(u), state)
        m = 0.8 * m + 0.2 * u
        np.testing.assert_allclose(out, 0.8 * m + 0.2 * u, rtol=1e-14)

"""scale_by_adadelta: the ratio of the RMS of past steps to the RMS of gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


def _numpy_adadelta(grads, rho, eps):
    """Zeiler's Alg. 1 in NumPy, returning the pre-lr steps Δx_t."""
    e_g2 = np.zeros_like(grads[0])
    e_dx2 = np.zeros_like(grads[0])
    out = []
    for g in grads:
        e_g2 = rho * e_g2 + (1 - rho) * g**2
        dx = np.sqrt(e_dx2 + eps) / np.sqrt(e_g2 + eps) * g
        e_dx2 = rho * e_dx2 + (1 - rho) * dx**2
        out.append(dx)
    return out, e_g2, e_dx2


@pytest.mark.parametrize("jit", [False, True])
def test_matches_numpy(x64, jit):
    rng = np.random.default_rng(1)
    grads = [rng.normal(size=(2, 3)) for _ in range(6)]
    ref, e_g2, e_dx2 = _numpy_adadelta(grads, 0.85, 1e-4)
    tx = gradtx.scale_by_adadelta(0.85, 1e-4)
    state = tx.init(jnp.zeros((2, 3)))
    update = jax.jit(tx.update) if jit else tx.update
    for g, r in zip(grads, ref):
        u, state = update(jnp.asarray(g), state)
        np.testing.assert_allclose(u, r, rtol=1e-13)
    np.testing.assert_allclose(state.inner_state.e_g2, e_g2, rtol=1e-13)
    np.testing.assert_allclose(state.inner_state.e_dx2, e_dx2, rtol=1e-13)


def test_first_step_closed_form(x64):
    g = jnp.array([2.0, -0.1])
    tx = gradtx.scale_by_adadelta(0.9, 1e-6)
    u, _ = tx.update(g, tx.init(g))
    np.testing.assert_allclose(u, np.sqrt(1e-6) / np.sqrt(0.1 * g**2 + 1e-6) * g, rtol=1e-14)


def test_statistic_reads_grads_keyword(x64):
    tx = gradtx.scale_by_adadelta(0.5, 1e-2)
    updates, grads = jnp.array([1.0, 1.0]), jnp.array([3.0, -1.0])
    u, state = tx.update(updates, tx.init(updates), grads=grads)
    np.testing.assert_allclose(u, np.sqrt(1e-2) / np.sqrt(0.5 * grads**2 + 1e-2), rtol=1e-14)
    np.testing.assert_allclose(state.inner_state.e_g2, 0.5 * grads**2, rtol=1e-14)
    # The step accumulator stores the (pre-lr) output.
    np.testing.assert_allclose(state.inner_state.e_dx2, 0.5 * u**2, rtol=1e-14)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_state_dtype_and_structure_stable(dtype):
    params = {"a": jnp.ones((2, 3), dtype), "b": jnp.ones(4, dtype)}
    tx = gradtx.scale_by_adadelta()
    state0 = tx.init(params)
    u, state1 = jax.jit(tx.update)(params, state0, params)
    assert jax.tree.structure(state0) == jax.tree.structure(state1)
    for a, b in zip(jax.tree.leaves(state0), jax.tree.leaves(state1)):
        assert a.dtype == b.dtype and a.shape == b.shape
    # 16-bit params keep their statistics in float32 (a bfloat16 EMA stalls)
    stored = jnp.float32 if jnp.dtype(dtype).itemsize == 2 else dtype
    assert state1.inner_state.e_dx2["a"].dtype == stored
    assert u["a"].dtype == dtype


def test_hyperparameters_and_errors():
    hp = gradtx.get_hyperparams(gradtx.scale_by_adadelta(0.95, 1e-5).init(jnp.zeros(1)))
    np.testing.assert_allclose([hp["rho"], hp["eps"]], [0.95, 1e-5], rtol=1e-6)
    with pytest.raises(ValueError, match=r"gradtx.scale_by_adadelta\(rho=1.0\): rho must be in"):
        gradtx.scale_by_adadelta(1.0)
    with pytest.raises(ValueError, match="eps must be in"):
        gradtx.scale_by_adadelta(eps=-1.0)

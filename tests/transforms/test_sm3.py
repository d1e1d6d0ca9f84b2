"""scale_by_sm3: SM3-II's per-axis accumulators against optax.scale_by_sm3 (b1 = 0)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx


def _run(tx, params, grads):
    state = tx.init(params)
    out = []
    for g in grads:
        u, state = jax.jit(tx.update)(g, state, params)
        out.append(u)
    return out, state


def test_matches_optax_without_momentum(x64):
    rng = np.random.default_rng(1)
    shapes = {"w": (3, 4), "b": (5,), "k": (2, 3, 2)}
    params = {k: jnp.asarray(rng.normal(size=s)) for k, s in shapes.items()}
    # Sparse gradients: some rows and entries are 0 (0/0 = 0 there).
    grads = [
        {
            k: jnp.asarray(rng.normal(size=s) * (rng.uniform(size=s) < 0.5))
            for k, s in shapes.items()
        }
        for _ in range(10)
    ]
    ours, state = _run(gradtx.scale_by_sm3(eps=1e-8), params, grads)
    with jax.numpy_dtype_promotion("standard"):
        theirs, _ = _run(optax.scale_by_sm3(b1=0.0), params, grads)
    for a, b in zip(ours, theirs):
        for k in shapes:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-12, atol=1e-14)
    acc = state.inner_state.accumulators
    assert [a.shape for a in acc["w"]] == [(3,), (4,)]
    assert [a.shape for a in acc["k"]] == [(2,), (3,), (2,)]
    assert [a.shape for a in acc["b"]] == [(5,)]


def test_first_step_and_one_axis_leaf_are_adagrad():
    tx = gradtx.scale_by_sm3(eps=0.0)
    g = jnp.array([3.0, -4.0, 0.0])
    state = tx.init(g)
    u, state = tx.update(g, state)
    np.testing.assert_array_equal(u, [1.0, -1.0, 0.0])
    u, _ = tx.update(g, state)  # ν = 2 g²
    np.testing.assert_allclose(u, np.array([1.0, -1.0, 0.0]) / np.sqrt(2.0), rtol=1e-6)


def test_scalar_leaf_and_dtypes():
    tx = gradtx.scale_by_sm3()
    params = {"s": jnp.float16(1.0), "w": jnp.ones((2, 3), jnp.float16)}
    state = tx.init(params)
    assert jax.tree.map(lambda x: x.dtype, state.inner_state.accumulators) == {
        "s": [jnp.dtype(jnp.float32)],
        "w": [jnp.dtype(jnp.float32)] * 2,
    }
    grads = {"s": jnp.float16(1e-3), "w": jnp.full((2, 3), 1e-3, jnp.float16)}
    u, _ = jax.jit(tx.update)(grads, state)
    assert u["s"].dtype == jnp.float16 and u["w"].dtype == jnp.float16
    # (1e-3)² underflows float16 but not the float32 accumulator: a unit step, not 0.
    np.testing.assert_allclose(np.asarray(u["w"], np.float32), 1.0, rtol=1e-2)


def test_refuses_flat_buffers():
    tx = gradtx.flatten(gradtx.scale_by_sm3())
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    with pytest.raises(ValueError, match="scale_by_sm3 works per leaf"):
        tx.update(params, tx.init(params), params)


def test_a_nan_gradient_gives_nan_steps_not_zeros():
    """A test of ``nu > 0`` is false for NaN: the step was 0, and the coordinate, its
    accumulator NaN, never moved again (optax's step turns 0 the same way)."""
    tx = gradtx.scale_by_sm3()
    for params in (jnp.zeros(2), jnp.zeros((2, 2))):
        state = tx.init(params)
        bad = jnp.full(params.shape, 1.0).at[0].set(jnp.nan)
        u, state = tx.update(bad, state, params)
        assert np.isnan(np.asarray(u)[0]).all()
        u, _ = tx.update(jnp.ones_like(params), state, params)
        assert np.isnan(np.asarray(u)[0]).all()  # the poisoned coordinate stays visible
    # where every gradient so far was 0 the step is still 0
    u, _ = tx.update(jnp.zeros(2), tx.init(jnp.zeros(2)), jnp.zeros(2))
    np.testing.assert_array_equal(u, np.zeros(2))

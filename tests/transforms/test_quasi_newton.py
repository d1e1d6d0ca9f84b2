"""scale_by_lbfgs against optax.scale_by_lbfgs: the direction after every update.

Random gradients and params in float64 over 1-D, 2-D and 3-D leaves, more
updates than the memory holds (its ring wraps), both scalings; then its
low-precision policy and its errors.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx

SHAPES = {"a": (5,), "b": (3, 2), "c": (2, 2, 1)}


def _tree(rng, dtype=np.float64):
    return {k: rng.normal(size=s).astype(dtype) for k, s in SHAPES.items()}


@pytest.mark.parametrize(("memory_size", "scale_init_precond"), [(1, True), (3, False), (4, True)])
def test_directions_match_optax(x64, memory_size, scale_init_precond):
    rng = np.random.default_rng(memory_size)
    ours = gradtx.scale_by_lbfgs(memory_size, scale_init_precond)
    ref = optax.scale_by_lbfgs(memory_size, scale_init_precond)
    params = jax.tree.map(jnp.asarray, _tree(rng))
    s_ours, s_ref = ours.init(params), ref.init(params)
    for step in range(12):
        grads = jax.tree.map(jnp.asarray, _tree(rng))
        with jax.numpy_dtype_promotion("standard"):  # optax is not strict-promotion clean
            want, s_ref = jax.jit(ref.update)(grads, s_ref, params)
        got, s_ours = jax.jit(ours.update)(grads, s_ours, params)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-10, err_msg=f"update {step}")
        params = jax.tree.map(lambda p, d: p - 0.1 * d, params, want)


def test_the_first_direction_is_capped_at_length_one():
    tx = gradtx.scale_by_lbfgs()
    g = {"w": jnp.array([30.0, 40.0]), "b": jnp.array(0.0)}
    d, _ = tx.update(g, tx.init(g), g)
    np.testing.assert_allclose(d["w"], [0.6, 0.8], rtol=1e-6)
    g = jax.tree.map(lambda x: x / 100, g)  # |g| = 0.5 < 1: taken as it is
    d, _ = tx.update(g, tx.init(g), g)
    np.testing.assert_allclose(d["w"], [0.3, 0.4], rtol=1e-6)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_leaves_compute_in_float32(dtype):
    """The memory and the recursion run in float32; only the direction is rounded."""
    rng = np.random.default_rng(0)
    low, wide = gradtx.scale_by_lbfgs(3), gradtx.scale_by_lbfgs(3)
    p32 = {k: jnp.asarray(v, jnp.float32) for k, v in _tree(rng, np.float32).items()}
    params = {k: v.astype(dtype) for k, v in p32.items()}
    p32 = {k: v.astype(jnp.float32) for k, v in params.items()}  # the same values
    s_low, s_wide = low.init(params), wide.init(p32)
    for _ in range(6):
        g = {k: jnp.asarray(v, dtype) for k, v in _tree(rng, np.float32).items()}
        d, s_low = jax.jit(low.update)(g, s_low, params)
        want, s_wide = jax.jit(wide.update)(jax.tree.map(lambda x: x.astype(jnp.float32), g),
                                            s_wide, p32)  # fmt: skip
        for k in d:
            assert d[k].dtype == jnp.dtype(dtype)
            np.testing.assert_allclose(
                d[k].astype(jnp.float32), want[k].astype(dtype).astype(jnp.float32), rtol=0, atol=0
            )
        params = jax.tree.map(lambda p, u: (p - 0.1 * u).astype(dtype), params, d)
        p32 = {k: v.astype(jnp.float32) for k, v in params.items()}
    assert all(r.dtype == jnp.float32 for r in jax.tree.leaves(s_low.inner_state.s))


def test_bad_arguments_name_the_call():
    with pytest.raises(ValueError, match=r"gradtx\.scale_by_lbfgs\(memory_size"):
        gradtx.scale_by_lbfgs(0)
    with pytest.raises(TypeError, match=r"gradtx\.scale_by_lbfgs\(scale_init_precond"):
        gradtx.scale_by_lbfgs(3, scale_init_precond=1)
    tx = gradtx.scale_by_lbfgs()
    with pytest.raises(ValueError, match=r"gradtx\.scale_by_lbfgs: update needs params"):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))

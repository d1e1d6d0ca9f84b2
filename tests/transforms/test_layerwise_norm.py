"""scale_by_layerwise_norm (NovoGrad's second moment) and scale_by_trust_ratio, by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


def test_layerwise_norm_per_leaf_by_hand(x64):
    tx = gradtx.scale_by_layerwise_norm(0.5, eps=0.1, eps_root=0.0)
    g1 = {"w": jnp.array([[3.0, 0.0], [0.0, -4.0]]), "b": jnp.array([0.5]), "s": jnp.array(2.0)}
    state = tx.init(g1)
    # one entry per leaf, in jax.tree.leaves order: b, s, w
    assert state.inner_state.nu.shape == (3,)
    out, state = tx.update(g1, state)
    # v_1 = ‖g_1‖² (no EMA from 0): 25, 0.25, 4.
    np.testing.assert_allclose(state.inner_state.nu, [0.25, 4.0, 25.0])
    np.testing.assert_allclose(out["w"], g1["w"] / (5.0 + 0.1), rtol=1e-15)
    np.testing.assert_allclose(out["b"], g1["b"] / (0.5 + 0.1), rtol=1e-15)
    np.testing.assert_allclose(out["s"], 2.0 / 2.1, rtol=1e-15)
    g2 = jax.tree.map(lambda x: 2 * x, g1)
    out, state = tx.update(g2, state)
    # v_2 = 0.5 · 25 + 0.5 · 100 = 62.5
    np.testing.assert_allclose(state.inner_state.nu[2], 62.5)
    np.testing.assert_allclose(out["w"], g2["w"] / (np.sqrt(62.5) + 0.1), rtol=1e-15)


def test_layerwise_norm_reads_the_gradient_and_eps_root(x64):
    tx = gradtx.scale_by_layerwise_norm(0.5, eps=0.0, eps_root=9.0)
    u, g = jnp.ones(2), jnp.array([0.0, 4.0])
    out, _ = tx.update(u, tx.init(u), grads=g)
    np.testing.assert_allclose(out, u / np.sqrt(16.0 + 9.0))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_layerwise_norm_storage(dtype):
    params = {"w": jnp.full((30, 30), 20.0, dtype)}  # ‖g‖² = 360000 > float16's max
    tx = gradtx.scale_by_layerwise_norm()
    out, state = jax.jit(tx.update)(params, tx.init(params))
    assert state.inner_state.nu.dtype == jnp.float32  # one number per leaf: kept in float32
    assert out["w"].dtype == dtype
    np.testing.assert_allclose(np.asarray(out["w"], np.float32), 1 / 30, rtol=1e-2)


def test_trust_ratio_by_hand(x64):
    tx = gradtx.scale_by_trust_ratio(min_norm=0.0, trust_coefficient=2.0, eps=0.5)
    params = {"w": jnp.array([[3.0, 4.0]]), "b": jnp.zeros(2), "c": jnp.ones(2)}
    u = {"w": jnp.array([[0.0, 1.5]]), "b": jnp.array([1.0, -1.0]), "c": jnp.zeros(2)}
    out, _ = tx.update(u, tx.init(params), params)
    np.testing.assert_allclose(out["w"], u["w"] * 2.0 * 5.0 / (1.5 + 0.5), rtol=1e-15)
    # ‖θ‖ = 0 or ‖u‖ = 0 (min_norm = 0): the update is left as it is.
    np.testing.assert_array_equal(out["b"], u["b"])
    np.testing.assert_array_equal(out["c"], u["c"])


def test_trust_ratio_min_norm_clips_both_norms(x64):
    tx = gradtx.scale_by_trust_ratio(min_norm=1.0)
    params, u = jnp.array([0.3, 0.4]), jnp.array([0.0, 0.01])  # norms 0.5 and 0.01
    out, _ = tx.update(u, tx.init(params), params)
    np.testing.assert_allclose(out, u * 1.0 / 1.0)
    params = jnp.array([3.0, 4.0])
    out, _ = tx.update(u, tx.init(params), params)
    np.testing.assert_allclose(out, u * 5.0 / 1.0)


def test_trust_ratio_needs_params():
    tx = gradtx.scale_by_trust_ratio()
    with pytest.raises(ValueError, match=r"^gradtx\.scale_by_trust_ratio: update needs params"):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))
    opt = gradtx.fromage(0.1)
    with pytest.raises(ValueError, match=r"^gradtx\.fromage: update needs params"):
        opt.update(jnp.ones(2), opt.init(jnp.ones(2)))


@pytest.mark.parametrize(
    "make", [gradtx.scale_by_layerwise_norm, gradtx.scale_by_trust_ratio], ids=lambda f: f.__name__
)
def test_refuses_flat_buffers(make):
    params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
    tx = gradtx.flatten(make())
    with pytest.raises(ValueError, match=f"gradtx.{make.__name__} works per leaf"):
        tx.update(params, tx.init(params), params)

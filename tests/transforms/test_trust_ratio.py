"""scale_by_trust_ratio: the layer-wise ratio, its options and its fallbacks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


def _numpy(u, p, min_norm, c, eps):
    pn = max(np.linalg.norm(p.ravel()), min_norm)
    un = max(np.linalg.norm(u.ravel()), min_norm)
    return u * (1.0 if pn == 0 or un == 0 else c * pn / (un + eps))


@pytest.mark.parametrize("min_norm, c, eps", [(0.0, 1.0, 0.0), (2.0, 0.01, 0.3), (0.5, 3.0, 1e-3)])
def test_matches_numpy_per_leaf(x64, min_norm, c, eps):
    rng = np.random.default_rng(0)
    params = {
        "w": rng.normal(size=(3, 4)),
        "b": rng.normal(size=5),
        "k": rng.normal(size=(2, 2, 3)),
    }
    params["s"] = np.float64(0.7)  # a scalar leaf: its norm is |θ|
    updates = {k: rng.normal(size=np.shape(v)) for k, v in params.items()}
    tx = gradtx.scale_by_trust_ratio(min_norm, c, eps)
    p = jax.tree.map(jnp.asarray, params)
    out, _ = jax.jit(tx.update)(jax.tree.map(jnp.asarray, updates), tx.init(p), p)
    for k in params:
        np.testing.assert_allclose(
            out[k], _numpy(updates[k], params[k], min_norm, c, eps), rtol=1e-13
        )


def test_zero_norms_give_ratio_one():
    tx = gradtx.scale_by_trust_ratio(trust_coefficient=0.5)
    params = {"zero": jnp.zeros(3), "w": jnp.ones(3)}
    updates = {"zero": jnp.full(3, 2.0), "w": jnp.zeros(3)}
    out, _ = tx.update(updates, tx.init(params), params)
    np.testing.assert_array_equal(out["zero"], updates["zero"])  # ‖θ‖ = 0: unscaled
    np.testing.assert_array_equal(out["w"], updates["w"])
    # min_norm > 0 floors both norms instead: no fallback needed.
    tx = gradtx.scale_by_trust_ratio(min_norm=1.0)
    out, _ = tx.update(updates, tx.init(params), params)
    np.testing.assert_allclose(out["zero"], updates["zero"] / np.linalg.norm([2.0] * 3))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_low_precision_leaves_keep_their_dtype(dtype):
    tx = gradtx.scale_by_trust_ratio()
    p = jnp.full((4, 4), 300.0, dtype)  # ‖θ‖² = 1.44e6 overflows float16: computed in float32
    out, _ = jax.jit(tx.update)(jnp.ones((4, 4), dtype), tx.init(p), p)
    assert out.dtype == dtype
    np.testing.assert_allclose(np.asarray(out, np.float32), 300.0, rtol=1e-2)


def test_needs_params_and_refuses_flat_buffers():
    tx = gradtx.scale_by_trust_ratio()
    with pytest.raises(ValueError, match=r"gradtx\.scale_by_trust_ratio: update needs params"):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))
    flat = gradtx.flatten(tx)
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    with pytest.raises(ValueError, match="scale_by_trust_ratio works per leaf"):
        flat.update(params, flat.init(params), params)

"""scale_by_polyak: the step from the loss value, its variants and its guards."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx


@pytest.mark.parametrize("variant", ["sps", "sps+"])
@pytest.mark.parametrize("value", [3.0, 0.5])
def test_matches_numpy_and_optax(x64, variant, value):
    rng = np.random.default_rng(3)
    g = {"w": rng.normal(size=(2, 3)), "b": rng.normal(size=2)}
    f_min, cap, eps = 1.0, 0.2, 0.1
    sq = sum(np.sum(x**2) for x in g.values())
    gap = value - f_min if variant == "sps" else max(value - f_min, 0.0)
    step = min(gap / (sq + eps), cap)
    tx = gradtx.scale_by_polyak(f_min, cap, eps, variant)
    g = jax.tree.map(jnp.asarray, g)
    out, _ = jax.jit(tx.update)(g, tx.init(g), value=jnp.asarray(value))
    ref = optax.scale_by_polyak(f_min, cap, eps, variant)
    with jax.numpy_dtype_promotion("standard"):
        theirs, _ = ref.update(g, ref.init(g), value=jnp.asarray(value))
    for k in g:
        np.testing.assert_allclose(out[k], step * np.asarray(g[k]), rtol=1e-14)
        np.testing.assert_allclose(out[k], theirs[k], rtol=1e-14)


def test_zero_gradient_takes_no_step_and_overflow_is_not_nan():
    tx = gradtx.scale_by_polyak()
    out, _ = tx.update(jnp.zeros(3), tx.init(jnp.zeros(3)), value=jnp.float32(2.0))
    np.testing.assert_array_equal(out, np.zeros(3))
    huge = jnp.full(3, 1e30, jnp.float32)  # ‖g‖² = inf and the loss too: no step, not NaN
    out, _ = tx.update(huge, tx.init(huge), value=jnp.float32(np.inf))
    np.testing.assert_array_equal(out, np.zeros(3))


def test_value_is_required():
    tx = gradtx.scale_by_polyak()
    with pytest.raises(ValueError, match=r"gradtx\.scale_by_polyak: update needs the loss"):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))
    opt = gradtx.polyak_sgd()
    with pytest.raises(ValueError, match=r"gradtx\.polyak_sgd: update needs the loss"):
        opt.update(jnp.ones(2), opt.init(jnp.ones(2)), jnp.ones(2))


def test_value_of_per_example_losses_is_refused():
    # It broadcast: one step size per element (optax's polyak_sgd does the same).
    opt = gradtx.polyak_sgd()
    w = jnp.asarray([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"polyak_sgd\.update: value must be the scalar loss"):
        opt.update(2 * w, opt.init(w), w, value=w**2)


def test_bfloat16_gradient_computes_the_step_in_float32():
    tx = gradtx.scale_by_polyak(max_learning_rate=10.0)
    g = jnp.full(1000, 0.01, jnp.bfloat16)  # ‖g‖² = 0.1: bfloat16 sums lose it
    out, _ = jax.jit(tx.update)(g, tx.init(g), value=jnp.bfloat16(0.05))
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out, np.float32), 0.5 * 0.01, rtol=2e-2)


def test_float16_squared_norm_beyond_65504_still_steps():
    """‖g‖² = 76800 is inf in float16: summed there, γ = gap / inf was 0 and no step."""
    g = jnp.full(300, 16.0, jnp.float16)
    out, _ = gradtx.polyak_sgd().update(g, gradtx.polyak_sgd().init(g), g, value=jnp.float32(100.0))
    assert out.dtype == jnp.float16
    np.testing.assert_allclose(np.asarray(out, np.float32), -100.0 / 76800 * 16, rtol=2e-3)

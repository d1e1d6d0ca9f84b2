"""normalize: division by the global norm, as optax.contrib.normalize."""

import jax
import jax.numpy as jnp
import numpy as np
import optax.contrib

import gradtx


def test_matches_optax_and_has_unit_norm(x64):
    rng = np.random.default_rng(4)
    g = {"w": jnp.asarray(rng.normal(size=(3, 2))), "b": jnp.asarray(rng.normal(size=4))}
    tx = gradtx.normalize()
    out, _ = jax.jit(tx.update)(g, tx.init(g))
    ref = optax.contrib.normalize()
    theirs, _ = ref.update(g, ref.init(g))
    for k in g:
        np.testing.assert_allclose(out[k], theirs[k], rtol=1e-15)
    np.testing.assert_allclose(sum(float(jnp.sum(x**2)) for x in out.values()), 1.0, rtol=1e-14)


def test_zero_stays_zero_and_low_precision():
    tx = gradtx.normalize()
    out, _ = tx.update({"w": jnp.zeros(3)}, tx.init({"w": jnp.zeros(3)}))
    np.testing.assert_array_equal(out["w"], np.zeros(3))  # optax: NaN
    g = jnp.full(4, 300.0, jnp.float16)  # ‖g‖² overflows float16
    out, _ = tx.update(g, tx.init(g))
    assert out.dtype == jnp.float16
    np.testing.assert_allclose(np.asarray(out, np.float32), 0.5, rtol=1e-3)
    assert isinstance(tx, gradtx.GradientMap)

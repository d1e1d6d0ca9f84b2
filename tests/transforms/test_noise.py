"""add_noise: optax's draw (key split per step, then per leaf), and its key arguments."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx


def test_noise_is_the_documented_draw(x64):
    eta, gamma = 0.3, 0.55
    tx = gradtx.add_noise(eta, gamma, key=jax.random.key(11))
    g = {"a": jnp.ones((2, 3)), "b": jnp.zeros(4)}
    state = tx.init(g)
    key = jax.random.key(11)
    for t in (1, 2, 3):
        out, state = jax.jit(tx.update)(g, state)
        key, sample = jax.random.split(key)
        ka, kb = jax.random.split(sample, 2)  # leaves in jax.tree order: a, b
        std = np.sqrt(eta / t**gamma)
        np.testing.assert_allclose(out["a"], 1.0 + std * jax.random.normal(ka, (2, 3)), 1e-15)
        np.testing.assert_allclose(out["b"], std * jax.random.normal(kb, (4,)), 1e-15)
        np.testing.assert_array_equal(state.inner_state.rng_key, jax.random.key_data(key))


def test_int_seed_is_jax_random_key_and_default_is_zero(x64):
    g = jnp.zeros(3)
    outs = [
        tx.update(g, tx.init(g))[0]
        for tx in (
            gradtx.add_noise(key=5),
            gradtx.add_noise(key=jax.random.key(5)),
            gradtx.add_noise(seed=5),
            gradtx.add_noise(key=np.int64(5)),
        )
    ]
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])
    default = gradtx.add_noise()
    zero = gradtx.add_noise(key=0)
    np.testing.assert_array_equal(
        default.update(g, default.init(g))[0], zero.update(g, zero.init(g))[0]
    )


def test_no_variance_no_noise_and_low_precision():
    tx = gradtx.add_noise(eta=0.0)
    for dtype in (jnp.float32, jnp.bfloat16, jnp.float16):
        g = jnp.arange(3.0, dtype=dtype)
        out, _ = jax.jit(tx.update)(g, tx.init(g))
        assert out.dtype == dtype
        np.testing.assert_array_equal(out, g)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("with_params", [False, True])
def test_a_16_bit_leaf_draws_optaxs_noise_with_or_without_params(dtype, with_params):
    """With params, 16-bit updates reach the body widened to float32; the noise is still
    drawn in the leaf's own dtype, as optax draws it (the sum is then rounded once)."""
    p = {"a": jnp.ones(6, dtype)}
    ours, theirs = gradtx.add_noise(0.3, 0.6, key=3), optax.add_noise(0.3, 0.6, key=3)
    s, o = ours.init(p), theirs.init(p)
    for t in (1, 2, 3):
        g = {"a": jnp.full(6, t, dtype)}
        u, s = ours.update(g, s, p if with_params else None)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes its int count with floats
            v, o = theirs.update(g, o, p)
        assert u["a"].dtype == dtype
        # the same draw; the sums differ by optax's 16-bit rounding at most
        ulp = float(jnp.finfo(dtype).eps) * 4 * t
        np.testing.assert_allclose(np.asarray(u["a"], float), np.asarray(v["a"], float), atol=ulp)


def test_is_a_gradient_map_statistics_see_the_noisy_gradient(x64):
    tx = gradtx.chain(
        gradtx.add_noise(1.0, key=2), gradtx.add_momentum(0.0), gradtx.scale_by_rss(0.0, 0.0)
    )
    g = jnp.ones(3)
    out, _ = tx.update(g, tx.init(g))
    np.testing.assert_allclose(np.abs(out), 1.0, rtol=1e-15)  # noisy g / |noisy g|


@pytest.mark.parametrize(
    ("kwargs", "exc", "arg"),
    [
        (dict(key=1, seed=2), ValueError, "key"),
        (dict(key="a"), TypeError, "key"),
        (dict(key=True), TypeError, "key"),
        (dict(key=1.5), TypeError, "key"),
        (dict(seed=jnp.ones(2)), TypeError, "seed"),
        (dict(key=jax.random.split(jax.random.key(0), 2)), ValueError, "key"),
    ],
)
def test_bad_keys(kwargs, exc, arg):
    for name in ("add_noise", "noisy_sgd"):
        args = (0.1,) if name == "noisy_sgd" else ()
        with pytest.raises(exc, match=rf"^gradtx\.{name}\({arg}="):
            getattr(gradtx, name)(*args, **kwargs)


def test_refuses_flat_buffers():
    params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
    tx = gradtx.flatten(gradtx.noisy_sgd(0.1))
    with pytest.raises(ValueError, match="gradtx.noisy_sgd: gradtx.add_noise works per leaf"):
        tx.update(params, tx.init(params), params)


@pytest.mark.parametrize("name", ["key", "seed"])
def test_a_seed_beyond_64_bits_names_the_call(name):
    # It was a bare OverflowError from jax.random.key.
    with pytest.raises(ValueError, match=rf"^gradtx.add_noise\({name}=\d+\): {name} must be in"):
        gradtx.add_noise(**{name: 2**70})

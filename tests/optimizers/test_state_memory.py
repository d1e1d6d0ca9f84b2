"""Optimizer-state size against optax, and low-precision (bfloat16) moments."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx

PARAMS = {"w": jnp.ones((64, 32)), "b": jnp.ones(32), "k": jnp.ones((3, 3, 4, 8))}
N = sum(x.size for x in jax.tree.leaves(PARAMS))

# The same optimizer in both libraries.
PAIRS = {
    "adam": (lambda: gradtx.adam(1e-3), lambda: optax.adam(1e-3)),
    "adamw": (lambda: gradtx.adamw(1e-3), lambda: optax.adamw(1e-3, weight_decay=1e-2)),
    "sgd_momentum": (lambda: gradtx.sgd(0.1, 0.9), lambda: optax.sgd(0.1, 0.9)),
    "sgd": (lambda: gradtx.sgd(0.1), lambda: optax.sgd(0.1)),
    "radam": (lambda: gradtx.radam(1e-3), lambda: optax.radam(1e-3)),
    "nadam": (lambda: gradtx.nadam(1e-3), lambda: optax.nadam(1e-3)),
    "rmsprop": (lambda: gradtx.rmsprop(1e-2), lambda: optax.rmsprop(1e-2)),
    "adagrad": (lambda: gradtx.adagrad(1e-2), lambda: optax.adagrad(1e-2)),
    "adam_bf16": (
        lambda: gradtx.adam(1e-3, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16),
        lambda: optax.adam(1e-3, mu_dtype=jnp.bfloat16),
    ),
}


def _split_bytes(state):
    """(bytes in arrays shaped like params, bytes in scalars)."""
    leaves = jax.tree.leaves(state)
    return (
        sum(x.nbytes for x in leaves if x.ndim > 0),
        sum(x.nbytes for x in leaves if x.ndim == 0),
    )


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_state_bytes_never_above_optax_except_scalars(name):
    ours, theirs = (make().init(PARAMS) for make in PAIRS[name])
    big, small = _split_bytes(ours)
    ref_big, ref_small = _split_bytes(theirs)
    assert big <= ref_big, (name, big, ref_big)
    # What gradtx adds: hyperparameters (data, DESIGN.md) and step counters.
    assert small - ref_small <= 64, (name, small, ref_small)


def test_bfloat16_moments_halve_the_state_and_track_float32_moments():
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(40,)), jnp.float32)}
    f32, bf16 = gradtx.adam(1e-2), gradtx.adam(1e-2, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)
    s32, s16 = f32.init(params), bf16.init(params)
    assert _split_bytes(s16)[0] * 2 == _split_bytes(s32)[0]
    for _ in range(20):
        g = {"w": jnp.asarray(rng.normal(size=(40,)), jnp.float32)}
        u32, s32 = f32.update(g, s32)
        u16, s16 = bf16.update(g, s16)
        assert u16["w"].dtype == jnp.float32
        # Adam's step is bounded by about the learning rate; a bfloat16
        # 1 - b2 rounded to 0 (v stuck at 0) gave steps of ~1e5 here.
        assert float(jnp.max(jnp.abs(u16["w"]))) < 1.5e-2
        np.testing.assert_allclose(u16["w"], u32["w"], rtol=0.05, atol=1e-4)
    nu = s16.inner_state[2].nu["w"]
    assert nu.dtype == jnp.bfloat16 and float(jnp.min(nu)) > 0

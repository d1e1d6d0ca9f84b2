"""Wrapper states serialise with flax; wrappers mix with optax transforms."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import serialization

import gradtx

PARAMS = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}


def _everything():
    groups = gradtx.partition(
        {"a": gradtx.masked(gradtx.adam(0.1), {"w": True, "b": False}), "b": gradtx.sgd(0.1, 0.9)},
        {"w": "a", "b": "b"},
    )
    inner = gradtx.chain(gradtx.clip_by_global_norm(1.0), groups, gradtx.track_norms())
    return gradtx.apply_if_finite(gradtx.accumulate_gradients(inner, 2), 3)


def test_state_round_trips_through_flax_serialization():
    opt = _everything()
    state = opt.init(PARAMS)
    for _ in range(3):
        _, state = opt.update(jax.tree.map(jnp.ones_like, PARAMS), state, PARAMS)
    restored = serialization.from_bytes(opt.init(PARAMS), serialization.to_bytes(state))
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    jax.tree.map(np.testing.assert_array_equal, restored, state)
    assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(state))


def test_optax_transforms_inside_and_around_gradtx_wrappers():
    g = jax.tree.map(jnp.ones_like, PARAMS)
    with jax.numpy_dtype_promotion("standard"):
        inside = gradtx.masked(optax.sgd(0.1), {"w": True, "b": False})
        u, _ = inside.update(g, inside.init(PARAMS), PARAMS)
        np.testing.assert_allclose(u["w"], -0.1)
        np.testing.assert_array_equal(u["b"], 1.0)
        around = optax.chain(
            optax.clip(0.5), gradtx.partition({"a": gradtx.sgd(0.1), "b": optax.sgd(1.0)}, "a")
        )
        u, _ = around.update(g, around.init(PARAMS), PARAMS)
        np.testing.assert_allclose(u["w"], -0.05)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize(
    "make",
    [
        lambda: gradtx.mechanize(optax.sgd(0.01, momentum=0.9)),
        lambda: gradtx.sam(optax.adam(0.01), optax.sgd(0.05)),
        lambda: gradtx.lookahead(optax.adam(0.01), 2, 0.5),
    ],
    ids=["mechanize", "sam", "lookahead"],
)
def test_an_optax_inner_keeps_its_16_bit_state(make, dtype):
    # The wrapper hands its body float32 updates (16-bit digits kept between stages);
    # the optax inner's moments, made in the params' dtype, stay in it.
    def run(dtype):
        tx = make()
        p = {"w": jnp.linspace(-1.0, 1.0, 6, dtype=dtype)}
        state = tx.init(p)
        before = jax.tree.map(lambda x: x.dtype, state)
        step = jax.jit(tx.update)
        for k in range(4):
            g = {"w": (jnp.cos(jnp.arange(6.0) + k) * p["w"].astype(jnp.float32)).astype(dtype)}
            with jax.numpy_dtype_promotion("standard"):  # optax mixes its own dtypes
                u, state = step(g, state, p)
            p = gradtx.apply_updates(p, u)
            assert jax.tree.map(lambda x: x.dtype, state) == before
        return p["w"].astype(jnp.float32)

    chex.assert_trees_all_close(run(dtype), run(jnp.float32), rtol=2e-2, atol=1e-2)

"""Wrapper states serialise with flax; wrappers mix with optax transforms."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
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

"""A Haiku training loop with a gradtx optimizer, equal to the same loop with optax."""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax

import gradtx
from gradtx._base import float_dtype


def _curve(tx, steps=20):
    kx, kw = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(kx, (64, 5), float_dtype())
    y = jnp.sin(x @ jax.random.normal(kw, (5, 1), float_dtype()))
    net = hk.without_apply_rng(hk.transform(lambda x: hk.nets.MLP([16, 1])(x)))
    params = net.init(jax.random.PRNGKey(1), x)
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(lambda p: jnp.mean((net.apply(p, x) - y) ** 2))(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    losses = []
    for _ in range(steps):
        params, state, loss = step(params, state)
        losses.append(loss)
    return np.array(losses), params, state


def test_haiku_loop_with_gradtx_matches_optax(x64):
    with jax.numpy_dtype_promotion(
        "standard"
    ):  # haiku's initialisers and optax are not strict-clean
        ours, params, state = _curve(gradtx.adamw(3e-2, weight_decay=1e-3))
        theirs, _, _ = _curve(optax.adamw(3e-2, weight_decay=1e-3))
    assert ours[-1] < 0.5 * ours[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    assert set(params) == {"mlp/~/linear_0", "mlp/~/linear_1"}  # plain Haiku dicts, no wrappers
    assert jnp.result_type(params["mlp/~/linear_0"]["w"]) == jnp.float64


def test_haiku_loop_sgd_momentum_trains():
    with jax.numpy_dtype_promotion("standard"):
        losses, _, state = _curve(gradtx.sgd(0.1, momentum=0.9), steps=30)
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0]
    assert int(state.count) == 30

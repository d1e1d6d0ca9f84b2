"""scale_by_momo and scale_by_momo_adam: capped Polyak steps on a momentum model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


def _loss(x):
    return jnp.sum(x**2)


def test_momo_first_step_is_the_polyak_step(x64):
    x = jnp.array([1.0, 2.0])
    value, g = jax.value_and_grad(_loss)(x)  # 5, [2, 4]
    tx = gradtx.scale_by_momo(learning_rate=1.0)
    u, state = tx.update(g, tx.init(x), x, value=value)
    np.testing.assert_allclose(u, 5.0 / 20.0 * g, rtol=1e-14)  # (f - f*) / ||g||² · g
    capped = gradtx.scale_by_momo(learning_rate=0.1)
    u, _ = capped.update(g, capped.init(x), x, value=value)
    np.testing.assert_allclose(u, 0.1 * g, rtol=1e-14)
    assert float(state.inner_state.loss_average) == 5.0  # f̄_1 = f_1


def test_momo_adam_first_step(x64):
    x = jnp.array([1.0, 2.0])
    value, g = jax.value_and_grad(_loss)(x)
    tx = gradtx.scale_by_momo_adam(learning_rate=1.0, b1=0.8, eps=0.0)
    u, _ = tx.update(g, tx.init(x), x, value=value)
    # m / D = (1 - b1) sign(g); τ = (f - f*) / ((1 - b1) Σ|g|): a step of (f - f*) / Σ|g|
    np.testing.assert_allclose(u, 5.0 / 6.0 * np.sign(g), rtol=1e-14)
    capped = gradtx.scale_by_momo_adam(learning_rate=0.1, b1=0.8, eps=0.0)
    u, _ = capped.update(g, capped.init(x), x, value=value)
    np.testing.assert_allclose(u, 0.1 * np.sign(g), rtol=1e-14)


def test_a_bound_above_the_model_takes_no_step(x64):
    x = jnp.array([1.0, 2.0])
    value, g = jax.value_and_grad(_loss)(x)
    tx = gradtx.scale_by_momo(lower_bound=6.0)
    u, _ = tx.update(g, tx.init(x), x, value=value)
    np.testing.assert_array_equal(u, np.zeros(2))


@pytest.mark.parametrize("name", ["scale_by_momo", "scale_by_momo_adam"])
def test_the_lower_bound_is_read_from_state(x64, name):
    x = jnp.array([1.0, 2.0])
    value, g = jax.value_and_grad(_loss)(x)
    tx = getattr(gradtx, name)(learning_rate=10.0, lower_bound=1.0)
    state = tx.init(x)
    before, _ = tx.update(g, state, x, value=value)
    after, _ = tx.update(g, gradtx.set_hyperparams(state, lower_bound=3.0), x, value=value)
    np.testing.assert_allclose(after, before * (5.0 - 3.0) / (5.0 - 1.0), rtol=1e-13)


@pytest.mark.parametrize("name", ["scale_by_momo", "scale_by_momo_adam"])
def test_adaptive_lower_bound_moves_and_stays_above_the_floor(x64, name):
    tx = getattr(gradtx, name)(learning_rate=1.0, lower_bound=-1.0, adapt_lower_bound=True)
    x = jnp.array([1.0, 2.0])
    state = tx.init(x)
    bounds = [float(state.inner_state.estimated_lower_bound)]
    for _ in range(10):
        value, g = jax.value_and_grad(_loss)(x)
        u, state = tx.update(g, state, x, value=value)
        x = x - u
        bounds.append(float(state.inner_state.estimated_lower_bound))
    assert len(set(bounds)) > 2 and min(bounds) >= -1.0
    fixed = getattr(gradtx, name)()
    assert fixed.init(x).inner_state.estimated_lower_bound is None  # no estimate without adapt


@pytest.mark.parametrize("name", ["scale_by_momo", "scale_by_momo_adam"])
def test_value_is_required(name):
    tx, x = getattr(gradtx, name)(), jnp.ones(2)
    with pytest.raises(ValueError, match=rf"^gradtx\.{name}: update needs the loss"):
        tx.update(x, tx.init(x), x)


@pytest.mark.parametrize("name", ["scale_by_momo", "scale_by_momo_adam"])
def test_state_is_stable_in_low_precision(name):
    params = {"a": jnp.ones((2, 3), jnp.float16), "b": jnp.ones(4, jnp.bfloat16)}
    tx = getattr(gradtx, name)(weight_decay=0.1)
    state = tx.init(params)
    grads = jax.tree.map(lambda p: 0.5 * p, params)
    u, new = jax.jit(tx.update)(grads, state, params, value=jnp.float32(3.0))
    assert jax.tree.structure(new) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(new)):
        assert a.dtype == b.dtype and a.shape == b.shape
    assert u["a"].dtype == jnp.float16 and u["b"].dtype == jnp.bfloat16


@pytest.mark.parametrize("adapt", [False, True])
@pytest.mark.parametrize("value", [np.inf, 3.0])
def test_an_overflowing_gradient_gives_no_nan(adapt, value):
    # float32: ||m||² = 2e60 overflows.  With an overflowed loss, optax's τ is ∞/∞
    # = NaN; with a finite one τ = 0 and the bound's model has 0 · ∞ = NaN.
    tx = gradtx.scale_by_momo(lower_bound=-1.0, adapt_lower_bound=adapt)
    x, g = jnp.ones(2), jnp.full(2, 1e30)
    state = tx.init(x)
    for _ in range(3):
        u, state = jax.jit(tx.update)(g, state, x, value=jnp.float32(value))
        np.testing.assert_array_equal(u, np.zeros(2))  # no step
        for leaf in jax.tree.leaves(state):
            assert not bool(jnp.any(jnp.isnan(leaf))), state
    if adapt:  # an infinite model leaves the estimate; a finite one sets it, finite
        bound = float(state.inner_state.estimated_lower_bound)
        assert bound == -1.0 if value == np.inf else np.isfinite(bound)

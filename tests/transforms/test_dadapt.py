"""scale_by_prodigy and scale_by_dadapt_adam: Adam at a D-adapted step size."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx


def test_first_steps_are_the_initial_estimate_times_the_sign(x64):
    g = jnp.array([0.5, -2.0, 3.0])
    x = jnp.zeros(3)
    prodigy = gradtx.scale_by_prodigy(b1=0.8, b2=0.9, eps=0.0, estim_lr0=1e-3)
    u, state = prodigy.update(g, prodigy.init(x), x)
    # d0 c m / sqrt(v) with m = (1 - b1) d0 g, v = (1 - b2) d0² g², c = sqrt(1 - b2) / (1 - b1)
    np.testing.assert_allclose(u, 1e-3 * np.sign(g), rtol=1e-13)
    assert float(state.inner_state.distance) == 1e-3  # x = x_0: nothing to estimate yet
    dadapt = gradtx.scale_by_dadapt_adam(0.5, b1=0.8, b2=0.9, eps=0.0, estim_lr0=1e-3)
    u, state = dadapt.update(g, dadapt.init(x), x)
    np.testing.assert_allclose(u, 0.5 * 1e-3 * np.sign(g), rtol=1e-13)  # the lr is inside
    assert int(state.count) == 1


@pytest.mark.parametrize("name", ["scale_by_prodigy", "scale_by_dadapt_adam"])
def test_estimate_grows_monotonically_on_a_quadratic(x64, name):
    tx = getattr(gradtx, name)(estim_lr0=1e-4)
    x = jnp.array([1.0, -2.0, 3.0])
    state, estimates = tx.init(x), []
    for _ in range(30):
        u, state = tx.update(x, state, x)  # gradient of |x|² / 2
        x = x - u  # these primitives stop before the sign
        estimates.append(float(state.inner_state.distance))
    assert all(b >= a for a, b in zip(estimates, estimates[1:]))
    assert estimates[-1] > 10 * 1e-4


@pytest.mark.parametrize("name", ["scale_by_prodigy", "scale_by_dadapt_adam"])
def test_reads_the_gradient_from_the_chain(x64, name):
    tx, g, x = getattr(gradtx, name)(eps=0.0), jnp.array([1.0, -2.0]), jnp.zeros(2)
    u, _ = tx.update(jnp.array([7.0, 7.0]), tx.init(x), x, grads=g)
    np.testing.assert_allclose(np.sign(u), np.sign(g))


@pytest.mark.parametrize("name", ["scale_by_prodigy", "scale_by_dadapt_adam"])
def test_state_is_stable_in_low_precision(name):
    params = {"a": jnp.ones((2, 3), jnp.float16), "b": jnp.ones(4, jnp.bfloat16)}
    tx = getattr(gradtx, name)(weight_decay=0.1)
    state = tx.init(params)
    grads = jax.tree.map(lambda p: 0.5 * p, params)
    u, new = jax.jit(tx.update)(grads, state, params)
    assert jax.tree.structure(new) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(new)):
        assert a.dtype == b.dtype and a.shape == b.shape
    assert new.inner_state.nu["a"].dtype == jnp.float32  # float16 squares are kept in float32
    assert u["a"].dtype == jnp.float16 and u["b"].dtype == jnp.bfloat16
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree.leaves(u))


def test_dadapt_eps_zero_leaf_without_gradient_changes_nothing(x64):
    """With eps = 0 a coordinate whose gradient has always been 0 has s = v = 0: its term
    of ⟨g, s / sqrt(v)⟩ is 0/0.  The other leaf must then step exactly as optax's
    D-Adapt AdamW on that leaf alone.  optax runs with eps = 1e-300: at its first step
    s = v = 0 too (its 0/0 turns d NaN), and from then on sqrt(v) + 1e-300 = sqrt(v)."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(3, 4)))
    ours = gradtx.dadapt_adamw(0.7, betas=(0.8, 0.95), eps=0.0, estim_lr0=1e-3)
    theirs = optax.contrib.dadapt_adamw(0.7, betas=(0.8, 0.95), eps=1e-300, estim_lr0=1e-3)
    params, ref = {"a": x, "b": jnp.ones(5)}, x
    state, ref_state = ours.init(params), theirs.init(ref)
    for _ in range(20):
        u, state = ours.update({"a": jnp.sin(params["a"]), "b": jnp.zeros(5)}, state, params)
        v, ref_state = theirs.update(jnp.sin(ref), ref_state, ref)
        np.testing.assert_allclose(u["a"], v, rtol=1e-10, atol=0)
        np.testing.assert_array_equal(u["b"], 0.0)
        params, ref = gradtx.apply_updates(params, u), optax.apply_updates(ref, v)
    assert float(state.inner_state[0].distance) > 1e-3  # the estimate moved


def test_tiny_float32_gradients_under_x64_keep_the_estimate(x64):
    """The numerator is summed in the state's float64 and stays non-zero; ‖s‖₁, summed
    from float32 leaves in which w·g underflowed, is 0.  That x/0 made d infinite and
    the params NaN; no estimate is taken (d stays) where the sum is 0."""
    opt = gradtx.prodigy(1.0)
    params = {"bias": jnp.zeros(3, jnp.float32)}
    state = opt.init(params)
    for _ in range(3):
        updates, state = opt.update({"bias": jnp.full(3, 1e-30, jnp.float32)}, state, params)
        params = gradtx.apply_updates(params, updates)
    assert bool(jnp.all(jnp.isfinite(params["bias"])))
    assert bool(jnp.all(params["bias"] < 0))  # it moved against the gradient
    distance = [x for x in jax.tree.leaves(state) if x.dtype == jnp.float64 and x.shape == ()]
    assert 1e-6 in [float(x) for x in distance]  # d_0, as with x64 off


@pytest.mark.parametrize("name", ["prodigy", "dadapt_adamw"])
def test_a_nan_gradient_reaches_the_estimate(name):
    """Where the gradient sum is 0 no estimate is taken; a NaN sum is not 0 and makes d
    NaN, as in optax (docs/errors.md: nothing hides a NaN gradient)."""
    opt = getattr(gradtx, name)(1.0)
    params = {"w": jnp.ones(3)}
    state = opt.init(params)
    _, state = opt.update(params, state, params)
    updates, state = opt.update({"w": jnp.array([jnp.nan, 1.0, 1.0])}, state, params)
    assert bool(jnp.isnan(updates["w"][0]))
    assert bool(jnp.isnan(state.inner_state[0].distance))  # D-Adapt's next step uses it

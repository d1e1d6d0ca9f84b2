"""scale_by_distance_over_gradients (DoG) and scale_by_distance_over_weighted_gradients (DoWG)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


def _two_steps(tx, x0, g1, x1, g2):
    state = tx.init(x0)
    u1, state = tx.update(g1, state, x0)
    u2, state = tx.update(g2, state, x1)
    return u1, u2, state


def test_dog_by_hand(x64):
    x0, x1 = jnp.array([3.0, 4.0]), jnp.array([0.0, 0.0])
    g1, g2 = jnp.array([1.0, 2.0]), jnp.array([2.0, -1.0])
    tx = gradtx.scale_by_distance_over_gradients("distance", 0.5, eps=0.0)
    u1, u2, state = _two_steps(tx, x0, g1, x1, g2)
    np.testing.assert_allclose(u1, 0.5 / np.sqrt(5.0) * g1, rtol=1e-14)
    # ||x1 - x0|| = 5 becomes the distance; G = 5 + 5
    np.testing.assert_allclose(u2, 5.0 / np.sqrt(10.0) * g2, rtol=1e-14)
    assert float(state.inner_state.max_distance) == 5.0
    assert float(state.inner_state.sum_of_squared_norms) == 10.0


def test_dog_initial_steps(x64):
    x0, g = jnp.array([3.0, 4.0]), jnp.array([1.0, 2.0])
    heuristic = gradtx.scale_by_distance_over_gradients("heuristic", 0.1, eps=0.0)
    u, _ = heuristic.update(g, heuristic.init(x0), x0)
    np.testing.assert_allclose(u, 0.1 * (1 + 5.0) / np.sqrt(5.0) * g, rtol=1e-14)
    first = gradtx.scale_by_distance_over_gradients("learning_rate", 0.1)
    u1, u2, state = _two_steps(first, x0, g, x0 + 1.0, g)
    np.testing.assert_allclose(u1, 0.1 * g, rtol=1e-14)  # the first step size is the value
    np.testing.assert_allclose(u2, np.sqrt(2.0) / np.sqrt(10.0 + 1e-8) * g, rtol=1e-14)
    assert int(state.count) == 2  # the primitive alone owns a counter for that mode


def test_dowg_by_hand(x64):
    x0, x1 = jnp.array([3.0, 4.0]), jnp.array([0.0, 0.0])
    g1, g2 = jnp.array([1.0, 2.0]), jnp.array([2.0, -1.0])
    tx = gradtx.scale_by_distance_over_weighted_gradients(4.0, eps=0.0)
    u1, u2, state = _two_steps(tx, x0, g1, x1, g2)
    np.testing.assert_allclose(u1, 4.0 / np.sqrt(4.0 * 5.0) * g1, rtol=1e-14)
    v = 4.0 * 5.0 + 25.0 * 5.0  # r̄² grows to 25 before the second weight
    np.testing.assert_allclose(u2, 25.0 / np.sqrt(v) * g2, rtol=1e-14)
    assert float(state.inner_state.max_squared_distance) == 25.0
    default = gradtx.scale_by_distance_over_weighted_gradients(eps=0.01)
    assert float(default.init(x0).inner_state.max_squared_distance) == 0.01


@pytest.mark.parametrize(
    "make",
    [
        lambda: gradtx.scale_by_distance_over_gradients("distance", 1.0, eps=0.0),
        lambda: gradtx.scale_by_distance_over_weighted_gradients(1.0, eps=0.0),
    ],
    ids=["dog", "dowg"],
)
def test_reads_the_gradient_from_the_chain(x64, make):
    # After momentum the step size is estimated from the gradient, and scales the input.
    tx, g, m = make(), jnp.array([3.0, 4.0]), jnp.array([1.0, 1.0])
    x = jnp.zeros(2)
    u, _ = tx.update(m, tx.init(x), x, grads=g)
    np.testing.assert_allclose(u, m / 5.0, rtol=1e-14)


@pytest.mark.parametrize(
    "make",
    [gradtx.scale_by_distance_over_gradients, gradtx.scale_by_distance_over_weighted_gradients],
)
def test_state_is_stable_and_needs_params(make):
    params = {"a": jnp.ones((2, 3), jnp.bfloat16), "b": jnp.ones(4, jnp.bfloat16)}
    tx = make()
    state = tx.init(params)
    grads = jax.tree.map(lambda p: 0.5 * p, params)
    u, new = jax.jit(tx.update)(grads, state, params)
    assert jax.tree.structure(new) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(new)):
        assert a.dtype == b.dtype and a.shape == b.shape
    assert u["a"].dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="update needs params"):
        tx.update(grads, state)


@pytest.mark.parametrize(
    "make",
    [
        lambda: gradtx.scale_by_distance_over_gradients("heuristic", 1e-3, eps=0.0),
        lambda: gradtx.scale_by_distance_over_gradients("distance", 0.5, eps=0.0),
        lambda: gradtx.scale_by_distance_over_weighted_gradients(4.0, eps=0.0),
    ],
    ids=["dog-heuristic", "dog-distance", "dowg-init"],
)
def test_zero_gradients_with_eps_zero_take_no_step_then_the_first_real_one_moves(make):
    # r̄ > 0 from the start, eps = 0: the denominator is 0 until a gradient arrives.
    tx = make()
    params = {"w": jnp.asarray([1.0, -2.0])}
    state = tx.init(params)
    for g in ([0.0, 0.0], [0.0, 0.0], [1.0, -1.0]):
        u, state = tx.update({"w": jnp.asarray(g)}, state, params)
        assert bool(jnp.all(jnp.isfinite(u["w"]))), (g, u)
        assert jax.tree.all(jax.tree.map(lambda x: bool(jnp.all(jnp.isfinite(x))), state))
    assert bool(jnp.all(u["w"] != 0))  # the first non-zero gradient gives a step


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["float32", "bfloat16"])
def test_dowg_zero_gradients_with_eps_zero_stay_zero_under_x64(x64, dtype):
    """With x64 the size is float64; capped at float64's largest number it was ∞ in a
    float32 leaf, and 0 · ∞ made a zero gradient's step NaN."""
    params = {"a": jnp.ones(3, dtype), "b": jnp.ones(2, jnp.float64)}
    for tx in (
        gradtx.scale_by_distance_over_weighted_gradients(4.0, eps=0.0),
        gradtx.dowg(0.1, init_estim_sq_dist=1.0, eps=0.0),
    ):
        out, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
        for leaf in jax.tree.leaves(out):
            np.testing.assert_array_equal(np.asarray(leaf, np.float64), 0.0)


_HUGE = float(jnp.finfo(jnp.float32).max)


@pytest.mark.parametrize(
    ("make", "size"),
    [
        (lambda: gradtx.scale_by_distance_over_gradients("distance", 0.5, eps=0.0), np.inf),
        (lambda: gradtx.scale_by_distance_over_weighted_gradients(4.0, eps=0.0), _HUGE),
    ],
    ids=["dog", "dowg"],
)
def test_zero_gradients_step_zero_and_underflowing_ones_stay_visible(make, size):
    # float32: a gradient of 1e-20 squares to 0.  The size was 0 there, so the
    # optimizer stopped without a sign; now r̄/0 = ∞ as in optax (DoG), or the largest
    # float32 (DoWG, whose size is capped so that zero updates need no test).
    tx = make()
    params = jnp.ones(3)
    state = tx.init(params)
    out, _ = tx.update(jnp.zeros(3), state, params)
    np.testing.assert_array_equal(out, np.zeros(3))
    tiny = jnp.asarray([1e-20, -2e-20, 3e-20])
    out, _ = tx.update(tiny, state, params)
    np.testing.assert_array_equal(out, tiny * jnp.asarray(size, jnp.float32))
    assert bool(jnp.all(jnp.abs(out) > 1e18))


@pytest.mark.parametrize("mode", ["distance", "heuristic"])
def test_dog_init_value_read_by_init_is_not_a_settable_hyperparameter(mode):
    # r̄_0 is made from init_value in init: a value set later would change nothing,
    # so the state keeps none and set_hyperparams refuses it
    tx = gradtx.scale_by_distance_over_gradients(mode, 1e-3)
    state = tx.init(jnp.ones(3))
    assert sorted(gradtx.get_hyperparams(state)) == ["eps"]
    with pytest.raises(KeyError, match="unknown hyperparameter 'init_value'"):
        gradtx.set_hyperparams(state, {"init_value": 0.5})


def test_dog_first_step_size_set_later_is_used(x64):
    x, g = jnp.array([1.0, -2.0]), jnp.array([0.5, 0.25])
    tx = gradtx.scale_by_distance_over_gradients("learning_rate", 1e-3)
    state = gradtx.set_hyperparams(tx.init(x), {"init_value": 0.5})
    fresh = gradtx.scale_by_distance_over_gradients("learning_rate", 0.5)
    got = tx.update(g, state, x)[0]
    np.testing.assert_array_equal(got, fresh.update(g, fresh.init(x), x)[0])
    np.testing.assert_allclose(got, 0.5 * g, rtol=1e-15)

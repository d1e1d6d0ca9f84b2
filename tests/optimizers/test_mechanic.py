"""mechanize's own behaviour where optax has none to compare with (its reference
tests are in tests/reference/test_mechanic.py)."""

import jax.numpy as jnp
import numpy as np

import gradtx


def test_eps_zero_without_wealth_keeps_x0_when_the_params_move_outside():
    # With eps = 0 the scales start and stay at 0, so Σ s + eps = 0 and x stays at
    # x_0.  Params moved by someone else (a loaded checkpoint, a user's edit) must not
    # turn Δ = (x_0 - x) / 0 into ±∞ (and the step into NaN): Δ is 0, and the update
    # returns the params to x_0.
    opt = gradtx.mechanize(gradtx.sgd(0.1), eps=0.0)
    x0 = {"w": jnp.array([1.0, -2.0, 0.0])}
    state = opt.init(x0)
    u, state = opt.update({"w": jnp.array([1.0, 1.0, 1.0])}, state, x0)
    np.testing.assert_array_equal(u["w"], 0.0)
    moved = {"w": x0["w"] + jnp.array([0.5, 0.0, -0.25])}
    u, state = opt.update({"w": jnp.array([1.0, -1.0, 2.0])}, state, moved)
    np.testing.assert_array_equal(u["w"], x0["w"] - moved["w"])
    np.testing.assert_array_equal(state.inner_state.scale, 0.0)

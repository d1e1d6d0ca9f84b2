"""polyak_average: ax follows the params, then averages them from step t0 + 2."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx


def _run(tx, params, updates):
    state, out = tx.init(params), []
    for u in updates:
        passed, state = jax.jit(tx.update)(u, state, params)
        np.testing.assert_array_equal(passed, u)  # the updates pass through
        params = params + u
        out.append((params, optax.tree_utils.tree_get(state, "ax")))
    return out


@pytest.mark.parametrize("t0", [0, 2, 3.5])
def test_torch_weights(t0):
    """ax ← θ while μ_k = 1 / max(1, k - t0) is 1, then ax ← ax + μ_k (θ - ax)."""
    updates = [jnp.asarray([float(i), -2.0 * i]) for i in range(1, 9)]
    out = _run(gradtx.polyak_average(t0), jnp.zeros(2), updates)
    ax = np.zeros(2)
    for k, (p, ours) in enumerate(out):
        mu = 1 / max(1.0, k - t0)
        ax = np.asarray(p) if mu == 1 else ax + mu * (np.asarray(p) - ax)
        np.testing.assert_allclose(ours, ax, rtol=1e-6)


@pytest.mark.parametrize("t0", [0, 2])
def test_integer_t0_gives_the_mean_of_the_iterates_from_step_t0_plus_2(t0):
    updates = [jnp.asarray([float(i) ** 2, -2.0 * i]) for i in range(1, 9)]
    out = _run(gradtx.polyak_average(t0), jnp.zeros(2), updates)
    iterates = [np.asarray(p) for p, _ in out]
    for k in range(t0 + 1, len(out)):
        mean = np.mean(iterates[t0 + 1 : k + 1], axis=0)
        np.testing.assert_allclose(out[k][1], mean, rtol=1e-6)


def test_ax_dtype_and_missing_params():
    tx = gradtx.polyak_average(0, dtype=jnp.float32)
    params = jnp.zeros(2, jnp.bfloat16)
    state = tx.init(params)
    assert optax.tree_utils.tree_get(state, "ax").dtype == jnp.float32
    with pytest.raises(ValueError, match=r"^gradtx.polyak_average: update needs params"):
        tx.update(jnp.ones(2, jnp.bfloat16), state)


def test_a_t0_the_count_can_reach_keeps_its_whole_part_or_is_refused(x64):
    """t0 is compared with the step count: float32 would store 16777217 (or 16777217.5)
    as 16777216 and start the mean one step early, so it is refused; float64 holds it.
    A t0 beyond the int32 count's reach (1e12: no averaging) may round."""
    big = 2**24 + 1
    with jax.enable_x64(False):
        for make in (gradtx.polyak_average, gradtx.asgd):
            for t0 in (big, big + 0.5):
                with pytest.raises(ValueError, match=rf"\(t0={t0}\): t0 is stored in float32"):
                    make(t0=t0)
        for t0 in (2**24, 1e6 + 0.3, 1e12, 1e30):
            gradtx.polyak_average(t0=t0)  # the whole part survives, or no step reaches it
        state = gradtx.asgd().init(jnp.zeros(2))
        with pytest.raises(ValueError, match=r"^gradtx.set_hyperparams\(t0=16777217\)"):
            gradtx.set_hyperparams(state, t0=big)
    state = gradtx.polyak_average(t0=big).init(jnp.zeros(2))
    assert float(optax.tree_utils.tree_get(state, "t0")) == big


@pytest.mark.parametrize("t0", [2**25, 2**30, 2**24 + 2])
def test_torch_weights_past_2_24_in_float32(t0):
    """k - t0 is formed in integers: a float32 k past 2^24 is a multiple of 2 or more,
    and from t0 = 2^25 the means 2.5, 3, 3.5 came out 3, 3.25, 3.6875."""
    tx = gradtx.polyak_average(t0)
    params = jnp.zeros(2)
    state = optax.tree_utils.tree_set(tx.init(params), count=jnp.asarray(t0 - 1, jnp.int32))
    ax = np.zeros(2)
    for i in range(1, 9):
        u = jnp.asarray([1.0, -3.0])
        _, state = jax.jit(tx.update)(u, state, params)
        params = params + u
        mu = 1 / max(1, (t0 - 2 + i) - t0)  # torch's rule at the 0-based step k
        ax = np.asarray(params, np.float64) if mu == 1 else ax + mu * (np.asarray(params) - ax)
        np.testing.assert_allclose(optax.tree_utils.tree_get(state, "ax"), ax, rtol=1e-6)

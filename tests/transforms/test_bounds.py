"""scale_by_bounded_rms: the AdaBound bound as a primitive."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from tests.reference.harness import assert_trajectories_close
from tests.reference.harness import make_problem
from tests.reference.harness import run_gradtx


def test_primitive_chain_is_adabound(x64):
    params, grads = make_problem(0, 12)
    chained = gradtx.chain(
        gradtx.add_momentum(0.9, ema=True),
        gradtx.scale_by_bounded_rms(0.9, 0.99, 1e-8, final_lr=0.05, base_lr=0.02, gamma=0.1),
        gradtx.scale_by_learning_rate(0.02),
    )
    named = gradtx.adabound(0.02, 0.05, 0.9, 0.99, 0.1)
    assert_trajectories_close(run_gradtx(chained, params, grads), run_gradtx(named, params, grads))


def test_unbounded_is_e2_adam(x64):
    """final_lr=None: sqrt(1 - b2^t)/(1 - b1^t) * u/(sqrt(v) + eps), v from the grads keyword."""
    b1, b2, eps = 0.8, 0.95, 1e-3
    tx = gradtx.scale_by_bounded_rms(b1, b2, eps)
    rng = np.random.default_rng(0)
    state = tx.init(jnp.zeros(4))
    v = np.zeros(4)
    for t in range(1, 5):
        u, g = rng.normal(size=4), rng.normal(size=4)
        out, state = tx.update(jnp.asarray(u), state, grads=jnp.asarray(g))
        v = b2 * v + (1 - b2) * g * g
        want = np.sqrt(1 - b2**t) / (1 - b1**t) * u / (np.sqrt(v) + eps)
        np.testing.assert_allclose(out, want, rtol=1e-12)


def test_bounds_clip_both_ways(x64):
    """A tiny gradient hits the upper bound, a huge one the lower bound."""
    b1, b2, final_lr, base_lr, gamma = 0.9, 0.999, 0.1, 0.01, 0.5
    tx = gradtx.scale_by_bounded_rms(b1, b2, 0.0, final_lr=final_lr, base_lr=base_lr, gamma=gamma)
    state = tx.init(jnp.zeros(2))
    g = jnp.asarray([1e-9, 1e9])
    out, _ = tx.update(jnp.ones(2), state, grads=g)
    r = final_lr / base_lr
    np.testing.assert_allclose(out, [r * (1 + 1 / gamma), r * (1 - 1 / (gamma + 1))], rtol=1e-12)


def test_amsbound_keeps_max_of_raw_v(x64):
    tx = gradtx.scale_by_bounded_rms(0.9, 0.5, 0.0, amsbound=True)
    state = tx.init(jnp.zeros(1))
    _, state = tx.update(jnp.ones(1), state, grads=jnp.asarray([2.0]))
    _, state = tx.update(jnp.ones(1), state, grads=jnp.asarray([0.0]))
    inner = state.inner_state
    np.testing.assert_allclose(inner.nu, [1.0])  # 0.5 * 2.0
    np.testing.assert_allclose(inner.nu_max, [2.0])


def test_keeps_dtype():
    tx = gradtx.adabound(1e-2)
    params = {"a": jnp.ones(3, jnp.bfloat16), "b": jnp.ones(2, jnp.float32)}
    state = tx.init(params)
    u, state = jax.jit(tx.update)(params, state, params)
    assert u["a"].dtype == jnp.bfloat16 and u["b"].dtype == jnp.float32
    assert gradtx.get_hyperparams(state)["final_lr"].dtype == jnp.float32


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(final_lr=0.1), ValueError, "give base_lr"),
        (dict(final_lr=0.1, base_lr=0.0), ValueError, r"base_lr must be in \(0, inf\)"),
        (dict(b2=1.0), ValueError, r"b2 must be in \[0, 1\)"),
        (dict(gamma=-1.0, final_lr=0.1, base_lr=1.0), ValueError, "gamma"),
        (dict(amsbound=1), TypeError, "amsbound must be a bool"),
    ],
)
def test_bad_arguments(kwargs, err, match):
    with pytest.raises(err, match=match):
        gradtx.scale_by_bounded_rms(**kwargs)


def test_gamma_zero_and_final_lr_zero_stay_finite(x64):
    tx = gradtx.scale_by_bounded_rms(0.9, 0.999, 1e-8, final_lr=0.0, base_lr=1.0, gamma=0.0)
    out, _ = tx.update(jnp.ones(2), tx.init(jnp.zeros(2)), grads=jnp.asarray([1.0, 2.0]))
    assert bool(jnp.all(jnp.isfinite(out)))

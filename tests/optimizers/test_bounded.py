"""adabound / amsbound: hyperparameters in state, checks, jit and vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


def _step_counter(tx):
    traces = []

    @jax.jit
    def step(params, state):
        traces.append(1)
        u, state = tx.update(params, state, params)
        return gradtx.apply_updates(params, u), state

    return step, traces


def test_hyperparams_readable_and_settable_without_retrace():
    tx = gradtx.adabound(1e-2, final_lr=0.2, gamma=0.01, weight_decay=1e-3)
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    hp = gradtx.get_hyperparams(state)
    assert {"learning_rate", "final_lr", "base_lr", "gamma", "weight_decay"} <= set(hp)
    np.testing.assert_allclose(hp["base_lr"], 1e-2)
    step, traces = _step_counter(tx)
    params, state = step(params, state)
    state = gradtx.set_hyperparams(state, final_lr=0.05, learning_rate=1e-3)
    params, state = step(params, state)
    assert len(traces) == 1
    np.testing.assert_allclose(gradtx.get_hyperparams(state)["final_lr"], 0.05, rtol=1e-6)


def test_final_lr_changes_the_step_and_vmaps(x64):
    """A sweep over final_lr in one program; each member equals its own run."""
    tx = gradtx.adabound(1e-2, final_lr=0.1, gamma=0.5)
    params = jnp.asarray([1.0, -2.0, 3.0])
    finals = jnp.asarray([0.001, 0.1, 10.0])
    states = jax.vmap(lambda f: gradtx.set_hyperparams(tx.init(params), final_lr=f))(finals)
    u, _ = jax.vmap(lambda s: tx.update(params, s, params))(states)
    for i, f in enumerate([0.001, 0.1, 10.0]):
        want, _ = gradtx.adabound(1e-2, final_lr=f, gamma=0.5).update(
            params, gradtx.adabound(1e-2, final_lr=f, gamma=0.5).init(params), params
        )
        np.testing.assert_allclose(u[i], want, rtol=1e-12)
    assert not np.allclose(u[0], u[2])


def test_schedule_base_lr_is_initial_value(x64):
    tx = gradtx.adabound(lambda k: 0.1 / (1.0 + k.astype(jnp.float64)), final_lr=0.5)
    state = tx.init(jnp.zeros(2))
    np.testing.assert_allclose(gradtx.get_hyperparams(state)["base_lr"], 0.1)


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(learning_rate=0.0), ValueError, "initial learning rate must be > 0"),
        (
            dict(learning_rate=lambda k: 0.0 * k.astype(float)),
            ValueError,
            "initial learning rate must be > 0",
        ),
        (
            dict(learning_rate=gradtx.schedules.linear(0.0, 1e-3, 10)),
            ValueError,
            "initial learning rate must be > 0",
        ),
        (dict(learning_rate=-1.0), ValueError, "learning_rate must be in"),
        # float32 flushes it to 0, and base_lr took it: the bounds were 0/0, NaN updates
        (
            dict(learning_rate=1e-40),
            ValueError,
            "base_lr defaults to it, which float32 stores as 0",
        ),
        (dict(final_lr=-0.1), ValueError, "final_lr must be in"),
        (dict(b1=1.0), ValueError, r"gradtx.adabound\(b1=1.0\)"),
        (dict(gamma=-1e-3), ValueError, "gamma must be in"),
        (dict(amsbound="yes"), TypeError, "amsbound must be a bool"),
        (dict(decoupled_weight_decay=1), TypeError, "decoupled_weight_decay must be a bool"),
        (dict(final_lr=lambda k: 0.1), TypeError, "final_lr must be a number"),
    ],
)
def test_bad_arguments(kwargs, err, match):
    with pytest.raises(err, match=match):
        gradtx.adabound(**kwargs)


def test_a_rate_float32_flushes_needs_its_base_lr_and_then_steps():
    with pytest.raises(ValueError, match=r"gradtx\.amsbound\(learning_rate=1e-40\).*pass base_lr"):
        gradtx.amsbound(1e-40)
    tx = gradtx.adabound(1e-40, base_lr=1e-3)  # a rate of 0 as float32 stores it: no step
    params = jnp.asarray([1.0, -2.0])
    updates, _ = tx.update(jnp.asarray([1.0, 2.0]), tx.init(params), params)
    np.testing.assert_array_equal(updates, jnp.zeros(2))


def test_under_x64_the_rate_is_stored_in_float64(x64):
    gradtx.adabound(1e-40)  # a normal float64
    with pytest.raises(ValueError, match=r"which float64 stores as 0 \(.*\); pass base_lr$"):
        gradtx.adabound(1e-310)  # subnormal there


def test_amsbound_is_adabound_with_amsbound(x64):
    params = jnp.asarray([1.0, -2.0])
    a, b = gradtx.amsbound(0.01, gamma=0.1), gradtx.adabound(0.01, gamma=0.1, amsbound=True)
    sa, sb = a.init(params), b.init(params)
    for g in ([1.0, 2.0], [0.1, -3.0], [2.0, 0.0]):
        ua, sa = a.update(jnp.asarray(g), sa, params)
        ub, sb = b.update(jnp.asarray(g), sb, params)
        np.testing.assert_array_equal(ua, ub)


@pytest.mark.parametrize("factory", [gradtx.adabound, gradtx.amsbound])
def test_a_scheduled_optimizer_built_under_jit_takes_the_schedules_first_value(factory, x64):
    """A Flax create_train_state under jit: base_lr (the schedule at step 0) was formed
    from a tracer, and float() of it raised JAX's ConcretizationTypeError."""
    schedule = gradtx.schedules.linear(1e-3, 1e-4, 100)
    params = {"w": jnp.asarray([1.0, -2.0, 0.5])}

    def step(p):
        tx = factory(schedule)
        return tx.update(p, tx.init(p), p)[0]

    np.testing.assert_allclose(jax.jit(step)(params)["w"], step(params)["w"], rtol=1e-14)
    state = jax.jit(lambda p: factory(schedule).init(p))(params)
    assert float(gradtx.get_hyperparams(state)["base_lr"]) == 1e-3

"""adagrad, rmsprop, adadelta, nadam: hyperparameters in state, structure, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

PARAMS = {"w": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array([0.3])}


def _grads(i):
    return jax.tree.map(lambda p: jnp.sin(p * (i + 1)), PARAMS)


@pytest.mark.parametrize(
    ("opt", "names"),
    [
        (
            gradtx.adagrad(0.1, lr_decay=0.01, weight_decay=0.1),
            {"learning_rate", "lr_decay", "eps", "weight_decay"},
        ),
        # starting values are read by init only: bound, not stored
        (gradtx.adagrad(initial_accumulator_value=0.1), {"learning_rate", "lr_decay", "eps"}),
        (
            gradtx.rmsprop(momentum=0.9, weight_decay=0.1),
            {"learning_rate", "decay", "eps", "momentum", "weight_decay"},
        ),
        (gradtx.rmsprop(initial_scale=1.0), {"learning_rate", "decay", "eps"}),
        (gradtx.adadelta(weight_decay=0.1), {"learning_rate", "rho", "eps", "weight_decay"}),
        (
            gradtx.nadam(weight_decay=0.1, decoupled_weight_decay=True),
            {"learning_rate", "b1", "b2", "eps", "eps_root", "momentum_decay", "weight_decay"},
        ),
    ],
)
def test_hyperparameters_stored_under_argument_names(opt, names):
    assert set(gradtx.get_hyperparams(opt.init(PARAMS))) == names


def test_zero_weight_decay_and_momentum_leave_their_stages_out():
    plain = jax.tree.leaves(gradtx.rmsprop().init(PARAMS))
    full = jax.tree.leaves(gradtx.rmsprop(momentum=0.9, weight_decay=0.1).init(PARAMS))
    # A momentum buffer (one leaf per param) and its count appear only when asked for.
    assert len(full) > len(plain)


def test_set_lr_decay_changes_the_step_without_retrace(x64):
    opt = gradtx.adagrad(0.1, lr_decay=0.0)
    traces = []

    @jax.jit
    def step(state, g):
        traces.append(1)
        return opt.update(g, state, PARAMS)

    state = opt.init(PARAMS)
    _, state = step(state, _grads(0))
    u_plain, _ = step(state, _grads(1))
    u_decay, _ = step(gradtx.set_hyperparams(state, lr_decay=1.0), _grads(1))
    # Second update, k = 1: the learning rate is halved by lr_decay = 1.
    np.testing.assert_allclose(u_decay["w"], 0.5 * u_plain["w"], rtol=1e-13)
    assert len(traces) == 1


@pytest.mark.parametrize(
    "make",
    [
        lambda: gradtx.adagrad(0.05),
        lambda: gradtx.rmsprop(0.01, momentum=0.5, centered=True),
        lambda: gradtx.adadelta(eps=1e-3),  # eps sets the first steps: 1e-6 warms up slowly
        lambda: gradtx.nadam(0.01),
    ],
)
def test_descends_a_quadratic(make):
    opt = make()
    params = PARAMS
    state = opt.init(params)
    loss = lambda p: sum(jnp.sum(x**2) for x in jax.tree.leaves(p))  # noqa: E731
    start = loss(params)
    step = jax.jit(lambda p, s: opt.update(jax.grad(loss)(p), s, p))
    for _ in range(100):
        u, state = step(params, state)
        params = gradtx.apply_updates(params, u)
    assert loss(params) < 0.5 * start


@pytest.mark.parametrize(
    ("make", "message", "kind"),
    [
        (lambda: gradtx.adagrad(lr_decay=-1.0), r"gradtx.adagrad\(lr_decay=-1.0\)", ValueError),
        (lambda: gradtx.rmsprop(decay=1.0), r"gradtx.rmsprop\(decay=1.0\)", ValueError),
        (lambda: gradtx.rmsprop(nesterov=True), r"Nesterov needs momentum", ValueError),
        (lambda: gradtx.rmsprop(centered="yes"), r"centered must be a bool", TypeError),
        (lambda: gradtx.adadelta(rho=-0.1), r"gradtx.adadelta\(rho=-0.1\)", ValueError),
        (lambda: gradtx.adadelta(None), r"learning_rate must be a real number", TypeError),
        (lambda: gradtx.nadam(momentum_decay=-1.0), r"momentum_decay must be in", ValueError),
        (lambda: gradtx.nadam(b1=1.0), r"gradtx.nadam\(b1=1.0\)", ValueError),
        (  # torch's warming of b1, which optax's rule does not have: refused, not ignored
            lambda: gradtx.nadam(convention="optax", momentum_decay=0.3),
            r"gradtx.nadam\(momentum_decay=0.3\): .* has no meaning there",
            ValueError,
        ),
        (lambda: gradtx.nadam(mask={"w": 1}), r"mask must be a pytree of Python bools", TypeError),
    ],
)
def test_bad_arguments(make, message, kind):
    with pytest.raises(kind, match=message):
        make()

"""optax's names for torch-named numbers (gradtx/optimizers/_aliases.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx


def test_an_int_given_under_optax_name_is_not_taken_for_the_default():
    # 0 compared with the default 0.95 in int precision was 0 == 0: "not given".
    state = gradtx.muon(0.01, beta=0, convention="optax").init({"w": jnp.ones((2, 3))})
    assert float(gradtx.get_hyperparams(state)["momentum"]) == 0.0
    state = gradtx.adafactor(decay_rate=1, convention="optax").init({"w": jnp.ones((2, 3))})
    assert float(gradtx.get_hyperparams(state)["beta2_decay"]) == -1.0


def test_a_float32_default_given_under_optax_name_is_the_default():
    # float32(0.8) is not the float 0.8, but it is the default in its own precision.
    opt = gradtx.adafactor(decay_rate=np.float32(0.8), beta2_decay=-0.5, convention="optax")
    state = opt.init({"w": jnp.ones((2, 3))})
    np.testing.assert_allclose(gradtx.get_hyperparams(state)["beta2_decay"], -0.5)


def _loss_after_steps(opt, steps=3):
    p = jnp.array([[0.3, -0.7, 1.1], [0.5, 0.2, -0.4]])

    def loss(q):
        return jnp.sum(jnp.sin(q) ** 2 + q**4)

    state = opt.init(p)
    for _ in range(steps):
        u, state = opt.update(jax.grad(loss)(p), state, p)
        p = p + u
    return loss(p)


ADAFACTOR_STATIC = ("min_dim_size_to_factor",)


@pytest.mark.parametrize(
    "make,default",
    [
        (lambda x: gradtx.adafactor(0.1, decay_rate=x), 0.8),
        (lambda x: gradtx.adafactor(0.1, clipping_threshold=x), 1.0),
        (lambda x: gradtx.muon(0.05, beta=x, convention="optax"), 0.95),
        (
            lambda x: optax.inject_hyperparams(gradtx.adafactor, static_args=ADAFACTOR_STATIC)(
                learning_rate=0.1, decay_rate=x
            ),
            0.8,
        ),
        (
            lambda x: optax.inject_hyperparams(gradtx.muon, static_args=("ns_steps",))(
                learning_rate=0.05, beta=x, convention="optax"
            ),
            0.95,
        ),
    ],
    ids=["adafactor-decay_rate", "adafactor-clipping_threshold", "muon-beta", "inject-decay_rate",
         "inject-muon-beta"],
)  # fmt: skip
def test_the_derivative_through_an_optax_name_at_its_default(x64, make, default):
    """A traced alias at the shared default used to select the torch-named constant,
    and jax.grad with respect to it was silently 0."""

    def f(x):
        return _loss_after_steps(make(x))

    h = 1e-7  # one-sided: clipping_threshold's range starts at its default
    fd = (f(default + h) - f(default)) / h
    assert abs(float(fd)) > 1e-3
    np.testing.assert_allclose(jax.grad(f)(default), fd, rtol=1e-5)
    np.testing.assert_allclose(jax.grad(f)(default), jax.grad(f)(default + 1e-9), rtol=1e-6)


def test_under_jit_both_names_are_traced_and_a_set_target_keeps_its_value(x64):
    """Inside a jitted update optax.inject_hyperparams hands over both names traced:
    at the shared default the alias's derivative flows, and a target set away from its
    default is the value (the alias at its default adds nothing to it)."""
    make = optax.inject_hyperparams(gradtx.adafactor, static_args=ADAFACTOR_STATIC)
    p = jnp.array([[0.3, -0.7, 1.1], [0.5, 0.2, -0.4]])

    def loss(q):
        return jnp.sum(jnp.sin(q) ** 2 + q**4)

    def after(opt, hyper):
        state = opt.init(p)
        state = state._replace(hyperparams={**state.hyperparams, **hyper})
        q = p
        for _ in range(3):
            u, state = jax.jit(opt.update)(jax.grad(loss)(q), state, q)
            q = q + u
        return loss(q)

    at_default = make(learning_rate=0.1)
    by_alias = jax.grad(lambda x: after(at_default, {"decay_rate": x}))(0.8)
    by_target = jax.grad(lambda x: after(at_default, {"beta2_decay": -x}))(0.8)
    np.testing.assert_allclose(by_alias, by_target, rtol=1e-12)
    assert abs(float(by_alias)) > 1e-3
    set_target = make(learning_rate=0.1, beta2_decay=-0.5)
    np.testing.assert_allclose(
        after(set_target, {}),
        _loss_after_steps(gradtx.adafactor(0.1, beta2_decay=-0.5)),
        rtol=1e-12,
    )
    assert float(jax.grad(lambda x: after(set_target, {"decay_rate": x}))(0.8)) == 0.0

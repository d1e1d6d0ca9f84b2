"""Optimistic gradient descent and optimistic Adam (both interfaces) against optax, step by
step in float64."""

import numpy as np
import optax
import pytest

import gradtx
from tests.reference.harness import assert_matches_optax
from tests.reference.harness import assert_matches_optax_retuned


def _h(seed):
    rng = np.random.default_rng(800 + seed)
    return dict(
        lr=float(rng.uniform(1e-3, 0.05)),
        alpha=float(rng.uniform(0.5, 2.0)),
        beta=float(rng.uniform(0.1, 1.5)),
        optimism=float(rng.uniform(1e-3, 0.1)),
        b1=float(rng.uniform(0.7, 0.95)),
        b2=float(rng.uniform(0.9, 0.999)),
        eps=float(rng.uniform(1e-8, 1e-3)),
        eps_root=float(rng.uniform(1e-8, 1e-3)),
    )


# optax deprecates optimistic_adam for optimistic_adam_v2 (inject_hyperparams calls it
# at every step, so the filter is for the whole module).
pytestmark = pytest.mark.filterwarnings("ignore:`optimistic_adam` is deprecated")


@pytest.mark.parametrize("seed", [0, 1])
def test_optimistic_gradient_descent_matches_optax(x64, seed):
    h = _h(seed)
    args = h["lr"], h["alpha"], h["beta"]
    assert_matches_optax(
        gradtx.optimistic_gradient_descent(*args), optax.optimistic_gradient_descent(*args), seed
    )
    assert_matches_optax(  # optax defaults
        gradtx.optimistic_gradient_descent(h["lr"]),
        optax.optimistic_gradient_descent(h["lr"]),
        seed,
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_optimistic_gradient_descent_schedules(x64, seed):
    """alpha and beta as schedules; optax evaluates them through inject_hyperparams.
    (gradtx's schedules, in float64: optax's compute in float32.)"""
    h = _h(seed)
    lr = gradtx.schedules.linear(h["lr"], 0.0, 30)
    alpha = gradtx.schedules.linear(h["alpha"], 0.5, 20)
    beta = gradtx.schedules.linear(h["beta"], 0.0, 15)
    theirs = optax.inject_hyperparams(optax.optimistic_gradient_descent)(
        learning_rate=lr, alpha=alpha, beta=beta
    )
    assert_matches_optax(gradtx.optimistic_gradient_descent(lr, alpha, beta), theirs, seed)


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_optimistic_adam_matches_optax(x64, nesterov, seed):
    h = _h(seed)
    args = h["lr"], h["optimism"], h["b1"], h["b2"], h["eps"], h["eps_root"]
    assert_matches_optax(
        gradtx.optimistic_adam(*args, nesterov=nesterov),
        optax.optimistic_adam(*args, nesterov=nesterov),
        seed,
    )
    assert_matches_optax(  # optax defaults: optimism = learning rate, Nesterov
        gradtx.optimistic_adam(h["lr"]), optax.optimistic_adam(h["lr"]), seed
    )


def test_optimistic_adam_optimism_follows_a_new_learning_rate(x64):
    """optimism=None means "the learning rate", also after set_hyperparams (optax's
    inject_hyperparams gives the same: its injected learning rate reaches both)."""
    h = _h(0)
    ours = gradtx.optimistic_adam(h["lr"])
    retuned = optax.GradientTransformationExtraArgs(
        lambda params: gradtx.set_hyperparams(ours.init(params), learning_rate=0.02), ours.update
    )
    state = retuned.init({"w": np.zeros(3)})
    assert set(gradtx.get_hyperparams(state)) == {"learning_rate", "b1", "b2", "eps", "eps_root"}
    theirs = optax.inject_hyperparams(optax.optimistic_adam)(learning_rate=0.02)
    assert_matches_optax(retuned, theirs, 0)


def test_optimistic_adam_follows_a_new_b1_as_inject_hyperparams_does(x64):
    """Nesterov's bias correction is 1 - b1^t of the current b1, not a running product."""
    h = _h(1)
    assert_matches_optax_retuned(
        gradtx.optimistic_adam(h["lr"]),
        optax.inject_hyperparams(optax.optimistic_adam)(learning_rate=h["lr"]),
        1,
        {8: {"b1": ("b1", 0.5)}, 16: {"b1": ("b1", 0.95)}},
    )


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_optimistic_adam_v2_matches_optax(x64, nesterov, seed):
    h = _h(seed)
    kwargs = dict(alpha=h["alpha"], beta=h["beta"], b1=h["b1"], b2=h["b2"], eps=h["eps"])
    kwargs |= dict(eps_root=h["eps_root"], nesterov=nesterov)
    assert_matches_optax(
        gradtx.optimistic_adam_v2(h["lr"], **kwargs),
        optax.optimistic_adam_v2(h["lr"], **kwargs),
        seed,
    )
    assert_matches_optax(  # optax defaults
        gradtx.optimistic_adam_v2(h["lr"]), optax.optimistic_adam_v2(h["lr"]), seed
    )


def test_optimistic_adam_v2_schedules_and_the_first_version(x64):
    """A scheduled learning rate, alpha and beta (optax's through inject_hyperparams), and
    the identity optimistic_adam(η, o) == optimistic_adam_v2(1, alpha=η, beta=o)."""
    h = _h(1)
    lr = gradtx.schedules.linear(h["lr"], 0.0, 30)
    alpha = gradtx.schedules.linear(h["alpha"], 0.5, 20)
    beta = gradtx.schedules.linear(h["beta"], 0.0, 15)
    theirs = optax.inject_hyperparams(optax.optimistic_adam_v2)(
        learning_rate=lr, alpha=alpha, beta=beta
    )
    assert_matches_optax(gradtx.optimistic_adam_v2(lr, alpha=alpha, beta=beta), theirs, 1)
    assert_matches_optax(
        gradtx.optimistic_adam_v2(1.0, alpha=h["lr"], beta=h["optimism"]),
        optax.optimistic_adam(h["lr"], h["optimism"]),
        1,
    )

"""Mechanic against optax.contrib.mechanize, step by step in float64."""

import numpy as np
import optax
import pytest

import gradtx
from tests.reference.harness import assert_matches_optax
from tests.reference.harness import assert_matches_optax_on_loss


def _h(seed):
    rng = np.random.default_rng(2300 + seed)
    return dict(
        wd=float(rng.uniform(1e-3, 0.1)),
        eps=float(rng.uniform(1e-9, 1e-6)),
        s_init=float(rng.uniform(1e-5, 1e-2)),
        num_betas=int(rng.integers(2, 8)),
        lr=float(rng.uniform(0.05, 0.5)),
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_mechanize_gradtx_base_matches_optax(x64, seed):
    h = _h(seed)
    args = (h["wd"], h["eps"], h["s_init"], h["num_betas"])
    assert_matches_optax(
        gradtx.mechanize(gradtx.adam(h["lr"]), *args),
        optax.contrib.mechanize(optax.adam(h["lr"]), *args),
        seed,
    )
    assert_matches_optax(
        gradtx.mechanize(gradtx.sgd(h["lr"], momentum=0.9)),
        optax.contrib.mechanize(optax.sgd(h["lr"], momentum=0.9)),
        seed,
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_mechanize_optax_base_on_a_loss_matches_optax(x64, seed):
    # An optax base on both sides, on a real loss: the scale s moves far from s_init.
    h = _h(seed)
    args = (h["wd"], h["eps"], h["s_init"], h["num_betas"])
    assert_matches_optax_on_loss(
        gradtx.mechanize(optax.lion(h["lr"] / 10), *args),
        optax.contrib.mechanize(optax.lion(h["lr"] / 10), *args),
        seed,
    )


def test_the_base_keeps_its_own_count_and_hyperparameters():
    opt = gradtx.mechanize(gradtx.named_chain(("adam", gradtx.adam(0.1))))
    params = {"w": np.ones(3, np.float32)}
    state = opt.init(params)
    for _ in range(2):
        _, state = opt.update({"w": np.ones(3, np.float32)}, state, params)
    hyper = gradtx.get_hyperparams(state)
    assert {"weight_decay", "eps", "s_init", "adam/eps", "learning_rate"} <= set(hyper)
    # One step count, the base's: Mechanic itself only marks that x_0 is set.
    assert "count" not in state._fields and bool(state.inner_state.started)
    assert int(state.inner_state.inner_state["adam"].count) == 2
    assert int(optax.tree_utils.tree_get(state, "count")) == 2


def test_x0_is_the_params_of_the_first_update(x64):
    # optax's rule too: params loaded after init (a checkpoint) are the start.
    opt = gradtx.mechanize(gradtx.sgd(0.1))
    state = opt.init({"w": np.zeros(3)})
    params = {"w": np.asarray([1.0, 2.0, 3.0])}
    _, state = opt.update({"w": np.ones(3)}, state, params)
    np.testing.assert_array_equal(state.inner_state.initial_params["w"], params["w"])

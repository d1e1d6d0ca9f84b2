"""signSGD, Signum and Lion against optax, step by step in float64."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from tests.reference.harness import assert_matches_optax


def _h(seed):
    rng = np.random.default_rng(500 + seed)
    return dict(
        lr=float(rng.uniform(1e-3, 0.05)),
        b1=float(rng.uniform(0.7, 0.95)),
        b2=float(rng.uniform(0.9, 0.999)),
        wd=float(rng.uniform(1e-3, 0.1)),
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_sign_sgd_matches_optax(x64, seed):
    h = _h(seed)
    assert_matches_optax(gradtx.sign_sgd(h["lr"]), optax.sign_sgd(h["lr"]), seed)
    # A schedule, evaluated at the same 0-based count.
    lr = optax.exponential_decay(h["lr"], 3, 0.7)
    assert_matches_optax(gradtx.sign_sgd(lr), optax.sign_sgd(lr), seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_signum_matches_optax(x64, seed):
    h = _h(seed)
    assert_matches_optax(gradtx.signum(h["lr"], h["b1"]), optax.signum(h["lr"], h["b1"]), seed)
    assert_matches_optax(gradtx.signum(h["lr"]), optax.signum(h["lr"]), seed)  # optax defaults


@pytest.mark.parametrize("seed", [0, 1])
def test_lion_matches_optax(x64, seed):
    h = _h(seed)
    mask = {"w": True, "b": False, "k": True}
    assert_matches_optax(
        gradtx.lion(h["lr"], h["b1"], h["b2"], None, h["wd"], mask),
        optax.lion(h["lr"], h["b1"], h["b2"], None, h["wd"], mask),
        seed,
    )
    assert_matches_optax(gradtx.lion(h["lr"]), optax.lion(h["lr"]), seed)  # optax defaults
    # A callable mask (optax's) is mask_fn here; a weight-decay schedule.
    fn = lambda p: {k: v.ndim > 1 for k, v in p.items()}  # noqa: E731
    wd = optax.linear_schedule(h["wd"], 0.0, 20)
    assert_matches_optax(
        gradtx.lion(h["lr"], h["b1"], h["b2"], weight_decay=wd, mask_fn=fn),
        optax.lion(h["lr"], h["b1"], h["b2"], weight_decay=wd, mask=fn),
        seed,
    )


def test_lion_mu_dtype_matches_optax(x64):
    h = _h(0)
    ours = gradtx.lion(h["lr"], h["b1"], h["b2"], mu_dtype=jnp.float32)
    theirs = optax.lion(h["lr"], h["b1"], h["b2"], mu_dtype=jnp.float32)
    # The float32 momentum rounds the same way in both; its sign decides the step.
    assert_matches_optax(ours, theirs, 0)
    state = ours.init({"w": jnp.zeros(3, jnp.float64)})
    assert state.inner_state[0].mu["w"].dtype == jnp.float32

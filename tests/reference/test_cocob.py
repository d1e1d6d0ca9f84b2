"""COCOB against optax.contrib.cocob, step by step in float64."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from tests.reference.harness import assert_matches_optax

MASK = {"w": True, "b": False, "k": True}


def _schedule(t):
    # The same plain callable on both sides (optax's own schedules round to float32).
    return 1.0 / (1.0 + 0.05 * t.astype(jnp.float64))


@pytest.mark.parametrize("seed", [0, 1])
def test_cocob_matches_optax(x64, seed):
    rng = np.random.default_rng(2100 + seed)
    lr, alpha = float(rng.uniform(0.3, 2.0)), float(rng.uniform(2.0, 200.0))
    eps, wd = float(rng.uniform(1e-8, 1e-3)), float(rng.uniform(1e-3, 0.1))
    assert_matches_optax(
        gradtx.cocob(lr, alpha, eps, wd, MASK), optax.contrib.cocob(lr, alpha, eps, wd, MASK), seed
    )
    assert_matches_optax(
        gradtx.cocob(_schedule, alpha), optax.contrib.cocob(_schedule, alpha), seed
    )
    assert_matches_optax(gradtx.cocob(), optax.contrib.cocob(), seed)

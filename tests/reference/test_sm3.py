"""SM3 against optax.sm3, step by step in float64."""

import jax
import numpy as np
import optax
import pytest

import gradtx
from tests.reference.harness import MIXED_SHAPES
from tests.reference.harness import assert_matches_optax
from tests.reference.harness import assert_trajectories_close
from tests.reference.harness import make_problem
from tests.reference.harness import run_gradtx


@pytest.mark.parametrize("seed", [0, 1])
def test_sm3_matches_optax(x64, seed):
    rng = np.random.default_rng(1710 + seed)
    lr, momentum = float(rng.uniform(1e-3, 0.1)), float(rng.uniform(0.5, 0.95))
    # MIXED_SHAPES: a 2-D and a 3-D leaf (per-axis accumulators) and a 1-D one (Adagrad).
    assert_matches_optax(gradtx.sm3(lr, momentum), optax.sm3(lr, momentum), seed)
    assert_matches_optax(gradtx.sm3(lr), optax.sm3(lr), seed)  # optax's default momentum


@pytest.mark.parametrize("seed", [0, 1])
def test_sm3_with_sparse_gradients_matches_optax(x64, seed):
    """Gradients that are often exactly 0 (embedding rows): the 0/0 = 0 convention."""
    params, grads = make_problem(seed, 25, MIXED_SHAPES)
    rng = np.random.default_rng(seed)
    grads = [{k: v * (rng.uniform(size=v.shape) < 0.3) for k, v in g.items()} for g in grads]
    with jax.numpy_dtype_promotion("standard"):
        ref = run_gradtx(optax.sm3(0.05), params, grads)
    assert_trajectories_close(run_gradtx(gradtx.sm3(0.05), params, grads), ref)

"""NovoGrad and Fromage against optax, step by step in float64.

Both compute one norm per leaf: the harness's 2-D, 1-D and 3-D leaves (and a
scalar leaf here) each get their own.
"""

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

SHAPES = MIXED_SHAPES | {"s": ()}


def _h(seed):
    rng = np.random.default_rng(700 + seed)
    return dict(
        lr=float(rng.uniform(1e-3, 0.05)),
        b1=float(rng.uniform(0.7, 0.95)),
        b2=float(rng.uniform(0.1, 0.9)),
        eps=float(rng.uniform(1e-8, 1e-3)),
        eps_root=float(rng.uniform(1e-8, 1e-3)),
        wd=float(rng.uniform(1e-3, 0.1)),
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_novograd_matches_optax(x64, seed):
    h = _h(seed)
    args = h["lr"], h["b1"], h["b2"], h["eps"], h["eps_root"], h["wd"]
    assert_matches_optax(gradtx.novograd(*args), optax.novograd(*args), seed, shapes=SHAPES)
    assert_matches_optax(  # optax defaults (no decay, eps_root = 0)
        gradtx.novograd(h["lr"]), optax.novograd(h["lr"]), seed, shapes=SHAPES
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_novograd_eps_root_with_small_gradients(x64, seed):
    """Gradients of norm ~1e-3: eps_root = 1e-4 inside the root is then most of the
    denominator (and eps = 0), so its placement decides the step."""
    h = _h(seed)
    args = h["lr"], h["b1"], h["b2"], 0.0, 1e-4, h["wd"]
    assert_matches_optax(
        gradtx.novograd(*args), optax.novograd(*args), seed, shapes=SHAPES, scale=1e-3
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_fromage_matches_optax(x64, seed):
    h = _h(seed)
    assert_matches_optax(gradtx.fromage(h["lr"]), optax.fromage(h["lr"]), seed, shapes=SHAPES)
    # A large step and a min_norm the small gradients fall under (the clip is active).
    assert_matches_optax(
        gradtx.fromage(0.5, min_norm=0.1),
        optax.fromage(0.5, min_norm=0.1),
        seed,
        shapes=SHAPES,
        scale=0.01,
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_fromage_schedule(x64, seed):
    h = _h(seed)
    init = 10 * h["lr"]

    def lr(count):  # in float64 (optax's exponential_decay computes in float32)
        return init * 0.5 ** (count.astype(jax.numpy.float64) / 5)

    assert_matches_optax(gradtx.fromage(lr), optax.fromage(lr), seed, shapes=SHAPES)


def test_fromage_zero_leaf_and_min_norm_zero(x64):
    """min_norm = 0 and a leaf that starts at zero: the trust ratio falls back to 1
    (‖θ‖ = 0), so that leaf's first step is -η c g; later steps are relative."""
    params, grads = make_problem(3, 25, {"w": (3, 4), "z": (5,)})
    params["z"] = np.zeros(5)
    ours, theirs = gradtx.fromage(0.05, min_norm=0.0), optax.fromage(0.05, min_norm=0.0)
    with jax.numpy_dtype_promotion("standard"):
        ref = run_gradtx(theirs, params, grads)
    out = run_gradtx(ours, params, grads)
    assert_trajectories_close(out, ref)
    c = 1 / np.sqrt(1 + 0.05**2)
    np.testing.assert_allclose(out[0]["z"], -0.05 * c * grads[0]["z"], rtol=1e-13)


@pytest.mark.parametrize("lr", [1e-2, 1e-3, 1e-4])
def test_fromage_decay_in_float32(lr):
    """With a zero gradient the step is only the shrink (c - 1) θ, c = 1/sqrt(1 + η²):
    formed as a difference in float32 it was 5% off at η = 1e-3 and 0 at 1e-4 (optax
    forms it in Python floats)."""
    theta = np.array([3.0, -4.0, 0.5], np.float32)
    tx = gradtx.fromage(lr)
    params = jax.numpy.asarray(theta)
    updates, _ = tx.update(jax.numpy.zeros(3), tx.init(params), params)
    c_minus_1 = 1 / np.sqrt(1 + np.float64(np.float32(lr)) ** 2) - 1
    np.testing.assert_allclose(np.asarray(updates, np.float64), c_minus_1 * theta, rtol=1e-6)

"""MADGRAD against optax.contrib.madgrad, step by step in float64.

optax computes the averaging weight ``λ_k = (η + eps) sqrt(k + 1)`` in float32
even under x64: ``jnp.sqrt`` of the int32 count is float32, and a Python float
times it stays float32.  gradtx computes it in the hyperparameters' precision.
So the exact comparison gives gradtx a learning-rate schedule that makes its
``λ_k`` equal optax's rounded one (every other operation is then compared at
1e-10), and a second comparison with the same plain learning rate bounds the
difference that rounding makes.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax.contrib
import pytest

import gradtx
from tests.reference.harness import MIXED_SHAPES
from tests.reference.harness import assert_matches_optax
from tests.reference.harness import assert_trajectories_close
from tests.reference.harness import make_problem
from tests.reference.harness import run_gradtx


def _h(seed):
    rng = np.random.default_rng(1740 + seed)
    return dict(
        lr=float(rng.uniform(1e-3, 0.05)),
        momentum=float(rng.uniform(0.5, 0.95)),
        wd=float(rng.uniform(1e-3, 0.1)),
        eps=float(rng.uniform(1e-8, 1e-4)),
    )


def _optax_rounded_lr(lr, eps):
    """η'_k with (η'_k + eps) sqrt(k + 1) = optax's float32 λ_k, in float64."""

    def schedule(k):
        rounded = (lr + eps) * jnp.sqrt(k + 1)  # optax's expression: float32
        assert rounded.dtype == jnp.float32
        exact_root = jnp.sqrt((k + 1).astype(jnp.float64))
        return rounded.astype(jnp.float64) / exact_root - eps

    return schedule


@pytest.mark.parametrize("seed", [0, 1])
def test_madgrad_matches_optax(x64, seed):
    h = _h(seed)
    lr = _optax_rounded_lr(h["lr"], h["eps"])
    with jax.numpy_dtype_promotion("standard"):
        gradtx_lr = jax.jit(lr)  # evaluated inside gradtx's strict-promotion update
    assert_matches_optax(
        gradtx.madgrad(gradtx_lr, h["momentum"], h["wd"], h["eps"]),
        optax.contrib.madgrad(h["lr"], h["momentum"], h["wd"], h["eps"]),
        seed,
    )
    lr = _optax_rounded_lr(h["lr"], 1e-6)
    with jax.numpy_dtype_promotion("standard"):
        gradtx_lr = jax.jit(lr)
    assert_matches_optax(gradtx.madgrad(gradtx_lr), optax.contrib.madgrad(h["lr"]), seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_madgrad_plain_learning_rate_is_within_optax_float32_weights(x64, seed):
    """With the same number, the params differ by the float32 rounding of λ_k only:
    ~2^-24 relative in each weight, ~1e-7 in the params after 25 steps."""
    h = _h(seed)
    params, grads = make_problem(seed, 25, MIXED_SHAPES)
    ours = gradtx.madgrad(h["lr"], h["momentum"], h["wd"], h["eps"])
    theirs = optax.contrib.madgrad(h["lr"], h["momentum"], h["wd"], h["eps"])
    with jax.numpy_dtype_promotion("standard"):
        ref = run_gradtx(theirs, params, grads)
    assert_trajectories_close(run_gradtx(ours, params, grads), ref, rtol=1e-6, atol=1e-7)


def test_a_momentum_of_one_is_refused():
    # c = 1 - momentum = 0: the params would never move (the authors' code refuses it).
    with pytest.raises(ValueError, match=r"madgrad\(momentum=1\.0\): momentum must be in \[0, 1\)"):
        gradtx.madgrad(0.1, momentum=1.0)
    gradtx.madgrad(0.1, momentum=0.0)

"""Noisy SGD against optax: the same noise for the same key or seed, step by step in float64."""

import warnings

import jax
import numpy as np
import optax
import pytest

import gradtx
from tests.reference.harness import assert_matches_optax


def _h(seed):
    rng = np.random.default_rng(900 + seed)
    return dict(
        lr=float(rng.uniform(1e-3, 0.05)),
        eta=float(rng.uniform(1e-3, 0.5)),
        gamma=float(rng.uniform(0.3, 1.0)),
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_noisy_sgd_matches_optax_with_a_key(x64, seed):
    h = _h(seed)
    key = jax.random.key(40 + seed)
    assert_matches_optax(
        gradtx.noisy_sgd(h["lr"], h["eta"], h["gamma"], key),
        optax.noisy_sgd(h["lr"], h["eta"], h["gamma"], key),
        seed,
    )


def test_noisy_sgd_matches_optax_with_an_int_seed_and_defaults(x64):
    """The other ways to give the key (one seed of hyperparameters: each comparison
    compiles optax's and gradtx's noise)."""
    seed = 0
    h = _h(seed)
    assert_matches_optax(
        gradtx.noisy_sgd(h["lr"], key=7 + seed), optax.noisy_sgd(h["lr"], key=7 + seed), seed
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optax: seed is deprecated; no key will be required
        theirs_seed = optax.noisy_sgd(h["lr"], h["eta"], seed=3)
        theirs_none = optax.noisy_sgd(h["lr"], h["eta"])
    assert_matches_optax(gradtx.noisy_sgd(h["lr"], h["eta"], seed=3), theirs_seed, seed)
    assert_matches_optax(gradtx.noisy_sgd(h["lr"], h["eta"]), theirs_none, seed)  # seed 0


def test_noisy_sgd_noise_is_the_difference_and_keys_differ(x64):
    """The trajectory minus plain SGD's is the noise: non-zero, annealed, and another key
    gives another draw (so the comparison above is not vacuous)."""
    from tests.reference.harness import make_problem
    from tests.reference.harness import run_gradtx

    params, grads = make_problem(0, 25)
    a = run_gradtx(gradtx.noisy_sgd(0.1, 0.5, 0.55, key=1), params, grads)
    b = run_gradtx(gradtx.noisy_sgd(0.1, 0.5, 0.55, key=2), params, grads)
    plain = run_gradtx(gradtx.sgd(0.1), params, grads)
    assert not np.allclose(a[-1]["w"], b[-1]["w"])
    steps = [(x["w"] - y["w"]) for x, y in zip(a, plain)]
    noise = np.diff(np.stack([np.zeros_like(steps[0])] + steps), axis=0) / -0.1
    stds = np.sqrt(0.5 / np.arange(1, 26) ** 0.55)
    z = noise / stds[:, None, None]
    assert abs(z.mean()) < 0.2 and 0.8 < z.std() < 1.2

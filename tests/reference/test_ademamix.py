"""AdEMAMix and simplified AdEMAMix against optax.contrib, step by step in float64."""

import jax.numpy as jnp
import numpy as np
import optax.contrib
import pytest

import gradtx
from tests.reference.harness import assert_matches_optax


def _h(seed):
    rng = np.random.default_rng(1730 + seed)
    return dict(
        lr=float(rng.uniform(1e-3, 0.05)),
        b1=float(rng.uniform(0.7, 0.95)),
        b2=float(rng.uniform(0.9, 0.999)),
        b3=float(rng.uniform(0.95, 0.999)),
        alpha=float(rng.uniform(0.5, 8.0)),
        eps=float(rng.uniform(1e-8, 1e-3)),
        eps_root=float(rng.uniform(0.0, 1e-3)),
        wd=float(rng.uniform(1e-3, 0.1)),
    )


MASK = {"w": True, "b": False, "k": True}


@pytest.mark.parametrize("seed", [0, 1])
def test_ademamix_matches_optax(x64, seed):
    h = _h(seed)
    args = (h["lr"], h["b1"], h["b2"], h["b3"], h["alpha"], h["eps"], h["eps_root"])
    assert_matches_optax(
        gradtx.ademamix(*args, weight_decay=h["wd"], mask=MASK),
        optax.contrib.ademamix(*args, weight_decay=h["wd"], mask=MASK),
        seed,
    )
    assert_matches_optax(gradtx.ademamix(h["lr"]), optax.contrib.ademamix(h["lr"]), seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_ademamix_schedules_match_optax(x64, seed):
    """b3 and alpha warm up (the paper's schedules' shape), as plain functions of the step."""
    h = _h(seed)
    b3 = lambda t: 0.9 + (h["b3"] - 0.9) * jnp.minimum(t.astype(jnp.float64) / 10, 1)  # noqa: E731
    alpha = lambda t: h["alpha"] * jnp.minimum(t.astype(jnp.float64) / 15, 1)  # noqa: E731
    lr = lambda t: h["lr"] / (1.0 + 0.05 * t.astype(jnp.float64))  # noqa: E731
    decayed = lambda p: {"w": True, "b": True, "k": False}  # noqa: E731
    assert_matches_optax(
        gradtx.ademamix(lr, h["b1"], h["b2"], b3, alpha, weight_decay=h["wd"], mask_fn=decayed),
        optax.contrib.ademamix(lr, h["b1"], h["b2"], b3, alpha, weight_decay=h["wd"], mask=decayed),
        seed,
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_simplified_ademamix_matches_optax(x64, seed):
    h = _h(seed)
    args = (h["lr"], h["b3"], h["b2"], h["alpha"], h["eps"], h["eps_root"], h["wd"], MASK)
    assert_matches_optax(
        gradtx.simplified_ademamix(*args), optax.contrib.simplified_ademamix(*args), seed
    )
    assert_matches_optax(
        gradtx.simplified_ademamix(h["lr"]), optax.contrib.simplified_ademamix(h["lr"]), seed
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_simplified_ademamix_alpha_schedule_matches_optax(x64, seed):
    h = _h(seed)
    alpha = lambda t: h["alpha"] * jnp.minimum(t.astype(jnp.float64) / 10, 1)  # noqa: E731
    decayed = lambda p: {"w": False, "b": True, "k": True}  # noqa: E731
    assert_matches_optax(
        gradtx.simplified_ademamix(h["lr"], h["b1"], alpha=alpha, weight_decay=h["wd"],
                                   mask_fn=decayed),
        optax.contrib.simplified_ademamix(h["lr"], h["b1"], alpha=alpha, weight_decay=h["wd"],
                                          mask=decayed),
        seed,
    )  # fmt: skip

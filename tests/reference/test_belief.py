"""AdaBelief, Yogi and Adan against optax, step by step in float64."""

import jax
import numpy as np
import optax
import pytest

import gradtx
from tests.reference.harness import assert_matches_optax


def _h(seed):
    rng = np.random.default_rng(600 + seed)
    return dict(
        lr=float(rng.uniform(1e-3, 0.05)),
        b1=float(rng.uniform(0.7, 0.95)),
        b2=float(rng.uniform(0.8, 0.999)),
        b3=float(rng.uniform(0.9, 0.999)),
        eps=float(rng.uniform(1e-8, 1e-3)),
        eps_root=float(rng.uniform(1e-8, 1e-3)),
        wd=float(rng.uniform(1e-3, 0.1)),
    )


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_adabelief_matches_optax(x64, nesterov, seed):
    h = _h(seed)
    args = h["lr"], h["b1"], h["b2"], h["eps"], h["eps_root"]
    assert_matches_optax(
        gradtx.adabelief(*args, nesterov=nesterov),
        optax.adabelief(*args, nesterov=nesterov),
        seed,
    )
    # optax's defaults: eps = eps_root = 1e-16, where eps_root (in the state) dominates.
    assert_matches_optax(
        gradtx.adabelief(h["lr"], nesterov=nesterov),
        optax.adabelief(h["lr"], nesterov=nesterov),
        seed,
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_adabelief_eps_root_accumulates_in_the_state(x64, seed):
    """eps_root large against small gradients, eps = 0: the denominator is then mostly
    eps_root summed into s_t every step (optax's placement); adding it once under
    the root instead would give a step about sqrt(1/(1 - b2)) times larger."""
    h = _h(seed)
    ours = gradtx.adabelief(h["lr"], h["b1"], h["b2"], 0.0, 0.5)
    theirs = optax.adabelief(h["lr"], h["b1"], h["b2"], 0.0, 0.5)
    assert_matches_optax(ours, theirs, seed, scale=1e-3)


@pytest.mark.parametrize("seed", [0, 1])
def test_yogi_matches_optax(x64, seed):
    h = _h(seed)
    assert_matches_optax(
        gradtx.yogi(h["lr"], h["b1"], h["b2"], h["eps"]),
        optax.yogi(h["lr"], h["b1"], h["b2"], h["eps"]),
        seed,
    )
    # Small gradients: v moves both up and down around the 1e-6 start.
    assert_matches_optax(gradtx.yogi(h["lr"]), optax.yogi(h["lr"]), seed, scale=1e-3)


@pytest.mark.parametrize("seed", [0, 1])
def test_adan_matches_optax(x64, seed):
    h = _h(seed)
    mask = {"w": True, "b": False, "k": True}
    args = h["lr"], h["b1"], h["b2"], h["b3"], h["eps"], h["eps_root"], h["wd"], mask
    assert_matches_optax(gradtx.adan(*args), optax.adan(*args), seed)
    assert_matches_optax(gradtx.adan(h["lr"]), optax.adan(h["lr"]), seed)  # optax defaults


@pytest.mark.parametrize("seed", [0, 1])
def test_adan_eps_root_and_schedules(x64, seed):
    """eps_root large enough to matter, eps = 0; learning-rate and decay schedules;
    a callable mask (``mask_fn`` here)."""
    h = _h(seed)
    cosine = optax.cosine_decay_schedule(h["lr"], 30)

    def lr(count):  # optax's schedule is not strict-promotion clean
        with jax.numpy_dtype_promotion("standard"):
            return cosine(count)

    wd = optax.linear_schedule(h["wd"], 0.0, 20)
    fn = lambda p: {k: v.ndim > 1 for k, v in p.items()}  # noqa: E731
    assert_matches_optax(
        gradtx.adan(lr, h["b1"], h["b2"], h["b3"], 0.0, 0.3, wd, mask_fn=fn),
        optax.adan(lr, h["b1"], h["b2"], h["b3"], 0.0, 0.3, wd, fn),
        seed,
    )

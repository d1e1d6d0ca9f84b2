"""ADOPT and ACProp against optax.contrib, step by step in float64."""

import jax.numpy as jnp
import numpy as np
import optax.contrib
import pytest

import gradtx
from tests.reference.harness import assert_matches_optax


def _h(seed):
    rng = np.random.default_rng(1720 + seed)
    return dict(
        lr=float(rng.uniform(1e-3, 0.05)),
        b1=float(rng.uniform(0.7, 0.95)),
        b2=float(rng.uniform(0.9, 0.999)),
        eps=float(rng.uniform(1e-8, 1e-2)),
        eps_root=float(rng.uniform(1e-12, 1e-3)),
        wd=float(rng.uniform(1e-3, 0.1)),
    )


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("use_clipping", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_adopt_matches_optax(x64, nesterov, use_clipping, seed):
    h = _h(seed)
    kw = dict(nesterov=nesterov, use_clipping=use_clipping)
    assert_matches_optax(
        gradtx.adopt(h["lr"], h["b1"], h["b2"], h["eps"], **kw),
        optax.contrib.adopt(h["lr"], h["b1"], h["b2"], h["eps"], **kw),
        seed,
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_adopt_defaults_and_clip_function_match_optax(x64, seed):
    h = _h(seed)
    assert_matches_optax(gradtx.adopt(h["lr"]), optax.contrib.adopt(h["lr"]), seed)
    # A bound that binds often (gradients of scale 3), from a function of the step.
    bound = lambda t: 0.5 + 0.1 * t.astype(jnp.float64)  # noqa: E731
    assert_matches_optax(
        gradtx.adopt(h["lr"], h["b1"], clip_value_fn=bound),
        optax.contrib.adopt(h["lr"], h["b1"], clip_value_fn=bound),
        seed,
        scale=3.0,
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_acprop_matches_optax(x64, seed):
    h = _h(seed)
    mask = {"w": True, "b": False, "k": True}
    args = (h["lr"], h["b1"], h["b2"], h["eps"], h["eps_root"], h["wd"], mask)
    assert_matches_optax(gradtx.acprop(*args), optax.contrib.acprop(*args), seed)
    assert_matches_optax(gradtx.acprop(h["lr"]), optax.contrib.acprop(h["lr"]), seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_acprop_schedule_and_mask_fn_match_optax(x64, seed):
    h = _h(seed)
    lr = lambda t: h["lr"] * 0.95 ** t.astype(jnp.float64)  # noqa: E731
    decayed = lambda p: {"w": False, "b": True, "k": True}  # noqa: E731
    assert_matches_optax(
        gradtx.acprop(lr, weight_decay=h["wd"], mask_fn=decayed),
        optax.contrib.acprop(lr, weight_decay=h["wd"], mask=decayed),
        seed,
    )

"""LAMB and LARS against optax.lamb and optax.lars, step by step in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from tests.reference.harness import MIXED_SHAPES
from tests.reference.harness import assert_matches_optax
from tests.reference.harness import assert_trajectories_close
from tests.reference.harness import make_problem
from tests.reference.harness import run_gradtx


def _h(seed):
    rng = np.random.default_rng(1700 + seed)
    return dict(
        lr=float(rng.uniform(1e-3, 0.05)),
        b1=float(rng.uniform(0.7, 0.95)),
        b2=float(rng.uniform(0.9, 0.999)),
        eps=float(rng.uniform(1e-8, 1e-3)),
        eps_root=float(rng.uniform(0.0, 1e-3)),
        wd=float(rng.uniform(1e-3, 0.1)),
        tc=float(rng.uniform(1e-3, 1.0)),
        momentum=float(rng.uniform(0.5, 0.95)),
        min_norm=float(rng.uniform(2.5, 4.0)),  # between the leaves' norms: clips some
    )


MASK = {"w": True, "b": False, "k": True}


@pytest.mark.parametrize("seed", [0, 1])
def test_lamb_matches_optax(x64, seed):
    h = _h(seed)
    assert_matches_optax(
        gradtx.lamb(h["lr"], h["b1"], h["b2"], h["eps"], h["eps_root"], h["wd"], MASK),
        optax.lamb(h["lr"], h["b1"], h["b2"], h["eps"], h["eps_root"], h["wd"], MASK),
        seed,
    )
    assert_matches_optax(gradtx.lamb(h["lr"]), optax.lamb(h["lr"]), seed)  # optax's defaults


@pytest.mark.parametrize("seed", [0, 1])
def test_lamb_schedules_and_mask_fn_match_optax(x64, seed):
    h = _h(seed)
    lr = lambda t: h["lr"] / (1.0 + 0.1 * t.astype(jnp.float64))  # noqa: E731
    wd = lambda t: h["wd"] * 0.9 ** t.astype(jnp.float64)  # noqa: E731
    no_bias = lambda p: {"w": True, "b": False, "k": True}  # noqa: E731
    assert_matches_optax(
        gradtx.lamb(lr, h["b1"], weight_decay=wd, mask_fn=no_bias),
        optax.lamb(lr, h["b1"], weight_decay=wd, mask=no_bias),
        seed,
    )


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_lars_matches_optax(x64, nesterov, seed):
    h = _h(seed)
    trust_mask = {"w": True, "b": True, "k": False}
    ours = gradtx.lars(
        h["lr"], h["wd"], MASK, h["tc"], h["eps"], trust_mask, h["momentum"], nesterov
    )
    theirs = optax.lars(
        h["lr"], h["wd"], MASK, h["tc"], h["eps"], trust_mask, h["momentum"], nesterov
    )
    assert_matches_optax(ours, theirs, seed)
    assert_matches_optax(gradtx.lars(h["lr"]), optax.lars(h["lr"]), seed)  # optax's defaults


@pytest.mark.parametrize("seed", [0, 1])
def test_lars_schedules_and_mask_fns_match_optax(x64, seed):
    h = _h(seed)
    lr = lambda t: h["lr"] * (1.0 + t.astype(jnp.float64)) ** -0.5  # noqa: E731
    wd = lambda t: h["wd"] / (1.0 + t.astype(jnp.float64))  # noqa: E731
    decayed = lambda p: {"w": True, "b": False, "k": False}  # noqa: E731
    rescaled = lambda p: {"w": False, "b": True, "k": True}  # noqa: E731
    assert_matches_optax(
        gradtx.lars(lr, wd, trust_coefficient=h["tc"], weight_decay_mask_fn=decayed,
                    trust_ratio_mask_fn=rescaled),
        optax.lars(lr, wd, decayed, h["tc"], trust_ratio_mask=rescaled),
        seed,
    )  # fmt: skip
    # No trust ratio at all: SGD with momentum inside the learning rate, and L2.
    assert_matches_optax(
        gradtx.lars(h["lr"], h["wd"], trust_ratio_mask=False),
        optax.lars(h["lr"], h["wd"], trust_ratio_mask=False),
        seed,
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_trust_ratio_options_match_optax(x64, seed):
    """scale_by_trust_ratio's min_norm, coefficient and eps, in LAMB's place."""
    h = _h(seed)

    ours = gradtx.chain(
        gradtx.add_momentum(h["b1"], ema=True),
        gradtx.bias_correct(h["b1"]),
        gradtx.scale_by_rms(h["b2"], h["eps"], bias_correction=True),
        gradtx.scale_by_trust_ratio(h["min_norm"], h["tc"], h["eps"]),
        gradtx.scale_by_learning_rate(h["lr"]),
    )
    theirs = optax.chain(
        optax.scale_by_adam(h["b1"], h["b2"], h["eps"]),
        optax.scale_by_trust_ratio(h["min_norm"], h["tc"], h["eps"]),
        optax.scale_by_learning_rate(h["lr"]),
    )
    assert_matches_optax(ours, theirs, seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_zero_initialised_leaf_and_zero_update_match_optax(x64, seed):
    """Where ‖θ‖ = 0 (a zero-initialised bias) or ‖u‖ = 0 (no gradient) the ratio is 1."""
    h = _h(seed)
    params, grads = make_problem(seed, 25, MIXED_SHAPES)
    params["b"] = np.zeros_like(params["b"])
    for g in grads[:5]:
        g["k"] = np.zeros_like(g["k"])  # LARS: ‖u‖ = 0 for a few steps
    for ours, theirs in [
        (gradtx.lamb(h["lr"]), optax.lamb(h["lr"])),
        (
            gradtx.lars(h["lr"], trust_coefficient=h["tc"]),
            optax.lars(h["lr"], trust_coefficient=h["tc"]),
        ),
    ]:
        with jax.numpy_dtype_promotion("standard"):
            ref = run_gradtx(theirs, params, grads)
        assert_trajectories_close(run_gradtx(ours, params, grads), ref)

"""MoMo and MoMo-Adam against optax.contrib, step by step in float64.

Both sides follow their own trajectory on a loss, each update given the loss
value and the gradient at the same params (``jax.value_and_grad``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from tests.reference.harness import MIXED_SHAPES
from tests.reference.harness import assert_matches_optax_on_loss
from tests.reference.harness import make_loss
from tests.reference.harness import make_problem


def _h(seed):
    rng = np.random.default_rng(2700 + seed)
    return dict(
        lr=float(rng.uniform(0.05, 0.15)),
        adam_lr=float(rng.uniform(0.05, 0.5)),
        beta=float(rng.uniform(0.5, 0.95)),
        b2=float(rng.uniform(0.9, 0.999)),
        eps=float(rng.uniform(1e-9, 1e-4)),
        # with these learning rates the cap decides some steps, the Polyak step others
        lb=float(rng.uniform(0.0, 1.0)),
        wd=float(rng.uniform(1e-3, 0.1)),
    )


def _schedule(t):
    # The same plain callable on both sides (optax's own schedules round to float32).
    return 1.0 / (1.0 + 0.05 * t.astype(jnp.float64))


@pytest.mark.parametrize("adapt", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_momo_matches_optax(x64, adapt, seed):
    h = _h(seed)
    args = (h["lr"], h["beta"], 0.0 if adapt else h["lb"], h["wd"], adapt)
    assert_matches_optax_on_loss(gradtx.momo(*args), optax.contrib.momo(*args), seed)


@pytest.mark.parametrize("adapt", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_momo_adam_matches_optax(x64, adapt, seed):
    h = _h(seed)
    args = (h["adam_lr"], h["beta"], h["b2"], h["eps"], 0.0 if adapt else h["lb"], h["wd"], adapt)
    assert_matches_optax_on_loss(gradtx.momo_adam(*args), optax.contrib.momo_adam(*args), seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_schedules_and_defaults_match_optax(x64, seed):
    assert_matches_optax_on_loss(gradtx.momo(_schedule), optax.contrib.momo(_schedule), seed)
    assert_matches_optax_on_loss(
        gradtx.momo_adam(_schedule), optax.contrib.momo_adam(_schedule), seed
    )
    assert_matches_optax_on_loss(gradtx.momo(), optax.contrib.momo(), seed)
    assert_matches_optax_on_loss(gradtx.momo_adam(), optax.contrib.momo_adam(), seed)


def _step_sizes(opt, seed, lr):
    """τ_t / lr along the run (τ_t from the update: |u + decay| / |m|)."""
    params, _ = make_problem(seed, 0, MIXED_SHAPES)
    p = {k: jnp.asarray(v) for k, v in params.items()}
    loss, state, ratios, bounds = make_loss(seed), opt.init(p), [], []
    update, value_and_grad = jax.jit(opt.update), jax.jit(jax.value_and_grad(loss))
    for step in range(25):
        value, grads = value_and_grad(p, step)
        updates, state = update(grads, state, p, value=value)
        inner = state.inner_state[0]
        ratios.append(float(-updates["w"][0, 0] / inner.mu["w"][0, 0]) / lr)
        bounds.append(inner.estimated_lower_bound)
        p = gradtx.apply_updates(p, updates)
    return np.asarray(ratios), bounds


@pytest.mark.parametrize("seed", [0, 1])
def test_the_runs_cover_both_the_cap_and_the_polyak_step(x64, seed):
    # The comparisons above exercise the model only if τ_t < lr on some steps.
    h = _h(seed)
    ratios, _ = _step_sizes(gradtx.momo(h["lr"], h["beta"], h["lb"]), seed, h["lr"])
    assert np.any(np.isclose(ratios, 1.0)) and np.any(ratios < 0.99), ratios
    _, bounds = _step_sizes(gradtx.momo(h["lr"], h["beta"], adapt_lower_bound=True), seed, h["lr"])
    assert len({float(b) for b in bounds}) > 3  # the estimate of the bound moves


def test_value_is_required():
    opt = gradtx.momo()
    params = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match=r"^gradtx\.momo: update needs the loss"):
        opt.update(params, opt.init(params), params)
    opt = gradtx.momo_adam()
    with pytest.raises(ValueError, match="value must be the scalar loss"):
        opt.update(params, opt.init(params), params, value=jnp.ones(2))

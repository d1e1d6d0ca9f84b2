"""Schedule-free AdamW and SGD against optax.contrib, step by step in float64."""

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
    rng = np.random.default_rng(2500 + seed)
    return dict(
        lr=float(rng.uniform(0.01, 0.2)),
        b1=float(rng.uniform(0.5, 0.98)),
        b2=float(rng.uniform(0.9, 0.999)),
        eps=float(rng.uniform(1e-9, 1e-4)),
        wd=float(rng.uniform(1e-3, 0.1)),
        power=float(rng.uniform(0.5, 3.0)),
        # optax computes the warm-up in float32 (its linear schedule's count / W):
        # a learning rate of few bits and W = 8 make that exact, so both sides agree.
        warm_lr=float(rng.integers(1, 64)) / 512,
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_schedule_free_adamw_matches_optax(x64, seed):
    h = _h(seed)
    args = (h["lr"], None, h["b1"], h["b2"], h["eps"], h["wd"], h["power"])
    assert_matches_optax(
        gradtx.schedule_free_adamw(*args), optax.contrib.schedule_free_adamw(*args), seed
    )
    warm = (h["warm_lr"], 8, h["b1"], h["b2"], h["eps"], h["wd"], h["power"])
    assert_matches_optax(
        gradtx.schedule_free_adamw(*warm), optax.contrib.schedule_free_adamw(*warm), seed
    )
    assert_matches_optax(gradtx.schedule_free_adamw(), optax.contrib.schedule_free_adamw(), seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_schedule_free_sgd_matches_optax(x64, seed):
    h = _h(seed)
    args = (h["lr"], None, h["b1"], h["wd"], h["power"])
    assert_matches_optax(
        gradtx.schedule_free_sgd(*args), optax.contrib.schedule_free_sgd(*args), seed
    )
    warm = (h["warm_lr"], 8, h["b1"], None, h["power"])
    assert_matches_optax(
        gradtx.schedule_free_sgd(*warm), optax.contrib.schedule_free_sgd(*warm), seed
    )
    assert_matches_optax(gradtx.schedule_free_sgd(), optax.contrib.schedule_free_sgd(), seed)


def _states(tx, params, grads):
    p = {k: jnp.asarray(v) for k, v in params.items()}
    state, update, out = tx.init(p), jax.jit(tx.update), []
    for g in grads:
        u, state = update({k: jnp.asarray(v) for k, v in g.items()}, state, p)
        p = gradtx.apply_updates(p, u)
        out.append((p, state))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_eval_params_match_optax_at_every_step(x64, seed):
    h = _h(seed)
    params, grads = make_problem(seed, 25, MIXED_SHAPES)
    args = (h["warm_lr"], 8, h["b1"], h["b2"], h["eps"], h["wd"], h["power"])
    ours = _states(gradtx.schedule_free_adamw(*args), params, grads)
    with jax.numpy_dtype_promotion("standard"):
        theirs = _states(optax.contrib.schedule_free_adamw(*args), params, grads)
        ref = [optax.contrib.schedule_free_eval_params(s, p) for p, s in theirs]
    got = [gradtx.schedule_free_eval_params(s, p) for p, s in ours]
    assert_trajectories_close(got, ref)
    # x is the average, not y: it lags behind the params
    assert not np.allclose(got[-1]["w"], ours[-1][0]["w"])


def _numpy_schedule_free_sgd(params, grads, lr, b1, power, z_dtype):
    """Schedule-free SGD written out in NumPy float64, z stored in ``z_dtype``."""
    y = {k: np.array(v) for k, v in params.items()}
    z = {k: v.astype(z_dtype) for k, v in y.items()}
    max_lr, weight_sum, out = 0.0, 0.0, []
    for g in grads:
        max_lr = max(max_lr, lr)
        weight = max_lr**power
        weight_sum += weight
        c = weight / weight_sum
        for k in y:
            z_new = (z[k].astype(np.float64) - lr * g[k]).astype(z_dtype)
            x = (y[k] - (1 - b1) * z[k].astype(np.float64)) / b1
            x = (1 - c) * x + c * z_new.astype(np.float64)
            y[k], z[k] = b1 * x + (1 - b1) * z_new.astype(np.float64), z_new
        out.append({k: v.copy() for k, v in y.items()})
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_state_dtype_float32_matches_the_math_and_optax(x64, seed):
    h = _h(seed)
    params, grads = make_problem(seed, 25, MIXED_SHAPES)
    opt = gradtx.schedule_free_sgd(h["lr"], b1=h["b1"], weight_lr_power=h["power"],
                                   state_dtype=jnp.float32)  # fmt: skip
    ours = _states(opt, params, grads)
    assert ours[-1][1].inner_state[1].z["w"].dtype == jnp.float32
    want = _numpy_schedule_free_sgd(params, grads, h["lr"], h["b1"], h["power"], np.float32)
    assert_trajectories_close([{k: np.asarray(v) for k, v in p.items()} for p, _ in ours], want)
    # optax also computes (1 - b1) · z in z's float32 (a weakly typed (1 - b1) times a
    # float32 array), so it agrees to float32 precision only.
    theirs = optax.contrib.schedule_free_sgd(h["lr"], b1=h["b1"], weight_lr_power=h["power"],
                                             state_dtype=jnp.float32)  # fmt: skip
    with jax.numpy_dtype_promotion("standard"):
        ref = run_gradtx(theirs, params, grads)
    assert_trajectories_close(run_gradtx(opt, params, grads), ref, rtol=1e-6, atol=1e-7)


def test_changing_b1_between_steps_is_exact(x64):
    params, grads = make_problem(0, 6, MIXED_SHAPES)
    opt = gradtx.schedule_free_sgd(0.1, b1=0.9)
    p, state = _states(opt, params, grads[:5])[-1]
    x = gradtx.schedule_free_eval_params(state, p)
    # At lr 0 z stays and x moves toward it by the averaging weight c; y is then
    # formed with the new b1 (the old one recovers x from the old y).
    state = gradtx.set_hyperparams(state, b1=0.5, learning_rate=0.0)
    u, state = opt.update(jax.tree.map(jnp.asarray, grads[5]), state, p)
    p = gradtx.apply_updates(p, u)
    averaging = state.inner_state[1]
    c = averaging.max_learning_rate**2 / averaging.weight_sum
    x = jax.tree.map(lambda a, z: (1 - c) * a + c * z, x, averaging.z)
    assert_trajectories_close([gradtx.schedule_free_eval_params(state, p)], [x], rtol=1e-13)
    want = jax.tree.map(lambda a, z: 0.5 * a + 0.5 * z, x, averaging.z)
    assert_trajectories_close([p], [want], rtol=1e-13)


def test_eval_params_needs_one_schedule_free_state():
    params = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match="holds 0 schedule_free_averaging states"):
        gradtx.schedule_free_eval_params(gradtx.adam().init(params), params)
    state = gradtx.schedule_free_sgd().init(params)
    with pytest.raises(ValueError, match="params' tree does not match"):
        gradtx.schedule_free_eval_params(state, {"v": jnp.ones(2)})


def test_warmup_steps_must_be_a_positive_int():
    # optax's warm-up of length 0 is a learning rate of 0 forever: refused here.
    with pytest.raises(
        ValueError,
        match=r"gradtx\.schedule_free_adamw\(warmup_steps=0\): warmup_steps must be in \(0, inf\)",
    ):
        gradtx.schedule_free_adamw(warmup_steps=0)
    with pytest.raises(TypeError, match="warmup_steps must be an int"):
        gradtx.schedule_free_sgd(warmup_steps=2.5)

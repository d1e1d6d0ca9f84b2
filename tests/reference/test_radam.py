"""RAdam against torch.optim.RAdam, optax.radam and pytorch_optimizer.RAdam, in float64."""

import jax
import numpy as np
import optax
import pytest
import pytorch_optimizer
import torch

import gradtx
from tests.reference.harness import assert_trajectories_close
from tests.reference.harness import make_problem
from tests.reference.harness import run_gradtx
from tests.reference.harness import run_torch


def _hparams(seed):
    rng = np.random.default_rng(2000 + seed)
    return dict(
        lr=float(rng.uniform(1e-3, 0.1)),
        b1=float(rng.uniform(0.7, 0.95)),
        b2=float(rng.uniform(0.95, 0.999)),
        eps=float(10 ** rng.uniform(-8, -3)),
        wd=float(rng.uniform(1e-3, 0.1)),
    )


@pytest.mark.parametrize("decay", ["none", "l2", "decoupled"])
@pytest.mark.parametrize("seed", [0, 1])
def test_radam_matches_torch(x64, decay, seed):
    h = _hparams(seed)
    wd = 0.0 if decay == "none" else h["wd"]
    params, grads = make_problem(seed, steps=30)
    ref = run_torch(
        lambda ps: torch.optim.RAdam(
            ps,
            lr=h["lr"],
            betas=(h["b1"], h["b2"]),
            eps=h["eps"],
            weight_decay=wd,
            decoupled_weight_decay=decay == "decoupled",
        ),
        params,
        grads,
    )
    ours = run_gradtx(
        gradtx.radam(
            h["lr"],
            h["b1"],
            h["b2"],
            h["eps"],
            weight_decay=wd,
            decoupled_weight_decay=decay == "decoupled",
        ),
        params,
        grads,
    )
    assert_trajectories_close(ours, ref)


@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_radam_maximize_matches_torch(x64, decoupled, seed):
    """torch.optim.RAdam(maximize=True), with weight decay of either kind."""
    h = _hparams(seed)
    kw = dict(weight_decay=h["wd"], decoupled_weight_decay=decoupled, maximize=True)
    params, grads = make_problem(seed, steps=30)
    ref = run_torch(
        lambda ps: torch.optim.RAdam(ps, lr=h["lr"], betas=(h["b1"], h["b2"]), eps=h["eps"], **kw),
        params,
        grads,
    )
    ours = run_gradtx(gradtx.radam(h["lr"], h["b1"], h["b2"], h["eps"], **kw), params, grads)
    assert_trajectories_close(ours, ref)


def test_radam_default_threshold_crossing_matches_torch(x64):
    # b2 = 0.999: rho_t passes 5 first at t = 6, so steps 1-5 are SGD steps.
    params, grads = make_problem(3, steps=25)
    ref = run_torch(lambda ps: torch.optim.RAdam(ps, lr=0.01), params, grads)
    ours = run_gradtx(gradtx.radam(0.01), params, grads)
    assert_trajectories_close(ours, ref)


@pytest.mark.parametrize("seed", [0, 1])
def test_radam_matches_optax_with_e1_and_ge(x64, seed):
    h = _hparams(seed)
    params, grads = make_problem(seed, steps=30)
    p = jax.tree.map(jax.numpy.asarray, params)
    opt = optax.radam(h["lr"], h["b1"], h["b2"], h["eps"], threshold=5.0)
    with jax.numpy_dtype_promotion("standard"):
        state = opt.init(p)
        ref = []
        for g in grads:
            u, state = opt.update(jax.tree.map(jax.numpy.asarray, g), state, p)
            p = optax.apply_updates(p, u)
            ref.append({k: np.asarray(v) for k, v in p.items()})
    ours = run_gradtx(
        gradtx.radam(h["lr"], h["b1"], h["b2"], h["eps"], compare=">=", eps_on="v_hat"),
        params,
        grads,
    )
    assert_trajectories_close(ours, ref)


@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_radam_skip_matches_pytorch_optimizer_default(x64, wd):
    # pytorch_optimizer.RAdam's default (= the authors' default): no step and
    # no decay while rho_t < 5, decoupled decay afterwards, rho_t >= 5.
    h = _hparams(2)
    params, grads = make_problem(2, steps=25)
    ref = run_torch(
        lambda ps: pytorch_optimizer.RAdam(
            ps, lr=h["lr"], betas=(h["b1"], 0.999), eps=h["eps"], weight_decay=wd
        ),
        params,
        grads,
    )
    # The first five steps leave the params untouched in the reference.
    np.testing.assert_array_equal(ref[4]["w"], params["w"])
    ours = run_gradtx(
        gradtx.radam(
            h["lr"],
            h["b1"],
            0.999,
            h["eps"],
            weight_decay=wd,
            decoupled_weight_decay=True,
            untractable="skip",
            compare=">=",
        ),
        params,
        grads,
    )
    assert_trajectories_close(ours, ref)


def test_pytorch_optimizer_radam_ignores_coupled_weight_decay(x64):
    # Found while testing: with weight_decouple=False, pytorch_optimizer.RAdam
    # passes grad=None to its decay helper, so the L2 term is silently dropped.
    params, grads = make_problem(4, steps=12)
    kw = dict(lr=0.01, weight_decouple=False, degenerated_to_sgd=True)
    with_l2 = run_torch(
        lambda ps: pytorch_optimizer.RAdam(ps, weight_decay=0.1, **kw), params, grads
    )
    without = run_torch(
        lambda ps: pytorch_optimizer.RAdam(ps, weight_decay=0.0, **kw), params, grads
    )
    np.testing.assert_array_equal(with_l2[-1]["w"], without[-1]["w"])
    ours = run_gradtx(gradtx.radam(0.01, weight_decay=0.1), params, grads)
    assert np.abs(ours[-1]["w"] - without[-1]["w"]).max() > 1e-4

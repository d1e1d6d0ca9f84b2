"""Lookahead and Ranger against pytorch_optimizer, optax and pytorch_ranger."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import pytorch_optimizer
import pytorch_ranger
import torch
import torch_optimizer

import gradtx
from tests.reference.harness import assert_trajectories_close
from tests.reference.harness import make_problem
from tests.reference.harness import run_gradtx
from tests.reference.harness import run_torch

INNER = {
    # name: (torch optimizer factory, gradtx transform), same hyperparameters.
    "sgd_momentum": (
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9),
        lambda: gradtx.sgd(0.05, momentum=0.9),
    ),
    "adam": (
        lambda ps: torch.optim.Adam(ps, lr=0.02, betas=(0.85, 0.99)),
        lambda: gradtx.adam(0.02, 0.85, 0.99),
    ),
}


@pytest.mark.parametrize("k,alpha", [(5, 0.5), (3, 0.8)])
@pytest.mark.parametrize("inner", sorted(INNER))
def test_lookahead_matches_pytorch_optimizer(x64, inner, k, alpha):
    make_torch, make_ours = INNER[inner]
    params, grads = make_problem(7, steps=3 * k + 2)  # >= 2k+1 steps: several syncs
    ref = run_torch(
        lambda ps: pytorch_optimizer.Lookahead(make_torch(ps), k=k, alpha=alpha), params, grads
    )
    ours = run_gradtx(gradtx.lookahead(make_ours(), k, alpha), params, grads)
    assert_trajectories_close(ours, ref)


@pytest.mark.parametrize("inner", ["sgd_momentum", "adam"])
def test_lookahead_matches_optax_fast_params(x64, inner):
    k, alpha = 4, 0.6
    params, grads = make_problem(8, steps=3 * k + 1)
    fast_opt = optax.sgd(0.05, momentum=0.9) if inner == "sgd_momentum" else optax.adam(0.02)
    opt = optax.lookahead(fast_opt, k, alpha)
    lp = optax.LookaheadParams.init_synced(jax.tree.map(jnp.asarray, params))
    ref = []
    with jax.numpy_dtype_promotion("standard"):
        state = opt.init(lp)
        for g in grads:
            u, state = opt.update(jax.tree.map(jnp.asarray, g), state, lp)
            lp = optax.apply_updates(lp, u)
            ref.append({n: np.asarray(v) for n, v in lp.fast.items()})
    ours_inner = gradtx.sgd(0.05, momentum=0.9) if inner == "sgd_momentum" else gradtx.adam(0.02)
    ours = run_gradtx(gradtx.lookahead(ours_inner, k, alpha), params, grads)
    assert_trajectories_close(ours, ref)


def test_torch_optimizer_lookahead_starts_slow_weights_late(x64):
    # torch_optimizer.Lookahead syncs right after step 1 (a no-op that sets the
    # slow weights to theta_1), then after steps k+1, 2k+1, ...  gradtx follows
    # the paper (phi_0 = theta_0, syncs after k, 2k, ...), so they part at step k.
    k = 3
    params, grads = make_problem(9, steps=2 * k + 1)
    make = lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9)  # noqa: E731
    buggy = run_torch(lambda ps: torch_optimizer.Lookahead(make(ps), k=k, alpha=0.5), params, grads)
    ours = run_gradtx(gradtx.lookahead(gradtx.sgd(0.05, momentum=0.9), k, 0.5), params, grads)
    assert_trajectories_close(ours[: k - 1], buggy[: k - 1])
    assert np.abs(ours[k - 1]["w"] - buggy[k - 1]["w"]).max() > 1e-3


RANGER_SHAPES = {"w": (4, 3), "conv": (3, 2, 2, 2), "w3": (2, 3, 2), "b": (4,)}


@pytest.mark.parametrize("conv_only", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_ranger_matches_pytorch_optimizer_with_gc(x64, seed, conv_only):
    rng = np.random.default_rng(3000 + seed)
    lr, b1, b2 = float(rng.uniform(1e-3, 0.05)), float(rng.uniform(0.8, 0.95)), 0.999
    eps, wd = float(10 ** rng.uniform(-8, -4)), float(rng.uniform(1e-3, 0.1))
    k, alpha = int(rng.integers(3, 7)), float(rng.uniform(0.3, 0.8))
    params, grads = make_problem(seed, steps=max(25, 2 * k + 1), shapes=RANGER_SHAPES)
    ref = run_torch(
        lambda ps: pytorch_optimizer.Ranger(
            ps,
            lr=lr,
            betas=(b1, b2),
            alpha=alpha,
            k=k,
            eps=eps,
            weight_decay=wd,
            degenerated_to_sgd=True,
            gc_conv_only=conv_only,
        ),
        params,
        grads,
    )
    ours = run_gradtx(
        gradtx.ranger(
            lr,
            b1,
            b2,
            eps,
            sync_period=k,
            slow_step_size=alpha,
            weight_decay=wd,
            gc_conv_only=conv_only,
        ),
        params,
        grads,
    )
    assert_trajectories_close(ours, ref)


def test_ranger_defaults_match_pytorch_optimizer(x64):
    params, grads = make_problem(5, steps=20, shapes=RANGER_SHAPES)
    ref = run_torch(lambda ps: pytorch_optimizer.Ranger(ps, degenerated_to_sgd=True), params, grads)
    ours = run_gradtx(gradtx.ranger(), params, grads)
    assert_trajectories_close(ours, ref)


def test_pytorch_optimizer_ranger_default_ascends_before_threshold(x64):
    # pytorch_optimizer.Ranger's default degenerated_to_sgd=False sets r_t = -1
    # for rho_t < 5, so its first step is exactly the negative of the official one.
    params, grads = make_problem(6, steps=1, shapes=RANGER_SHAPES)
    buggy = run_torch(lambda ps: pytorch_optimizer.Ranger(ps), params, grads)
    ours = run_gradtx(gradtx.ranger(), params, grads)
    for n in params:
        np.testing.assert_allclose(buggy[0][n] - params[n], -(ours[0][n] - params[n]), rtol=1e-10)


def test_ranger_without_gc_matches_pytorch_ranger(x64):
    # torch_optimizer.Ranger is pytorch_ranger.Ranger re-exported.
    assert torch_optimizer.Ranger is pytorch_ranger.Ranger
    lr, wd, k, alpha = 0.02, 0.01, 4, 0.6
    params, grads = make_problem(11, steps=20, shapes=RANGER_SHAPES)
    ref = run_torch(
        lambda ps: pytorch_ranger.Ranger(ps, lr=lr, alpha=alpha, k=k, weight_decay=wd),
        params,
        grads,
    )
    ours = run_gradtx(
        gradtx.ranger(
            lr, sync_period=k, slow_step_size=alpha, weight_decay=wd, gradient_centralization=False
        ),
        params,
        grads,
    )
    # pytorch_ranger computes in float32 (p.data.float()) even for float64
    # params, so only float32 agreement is possible here.
    assert_trajectories_close(ours, ref, rtol=1e-6, atol=1e-7)
    # ... and it really has no centralisation: with GC on we are far from it.
    with_gc = run_gradtx(
        gradtx.ranger(lr, sync_period=k, slow_step_size=alpha, weight_decay=wd), params, grads
    )
    assert np.abs(with_gc[-1]["w"] - ref[-1]["w"]).max() > 1e-4

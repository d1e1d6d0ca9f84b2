"""AdaBound and AMSBound against the authors' code and two PyTorch packages, in float64."""

import warnings

import adabound as official
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import pytorch_optimizer
import torch
import torch_optimizer

import gradtx
from tests.reference.harness import assert_trajectories_close
from tests.reference.harness import make_problem
from tests.reference.harness import run_gradtx
from tests.reference.harness import run_torch

STEPS = 30


def _hparams(seed):
    rng = np.random.default_rng(2000 + seed)
    return dict(
        lr=float(rng.uniform(5e-3, 0.05)),
        final_lr=float(rng.uniform(0.01, 0.2)),
        b1=float(rng.uniform(0.7, 0.95)),
        b2=float(rng.uniform(0.9, 0.999)),
        # large gamma so that both bounds bind within the run
        gamma=float(rng.uniform(0.05, 0.3)),
        wd=float(rng.uniform(1e-3, 0.1)),
    )


def _ours(h, wd, amsbound, **kw):
    return gradtx.adabound(
        h["lr"],
        h["final_lr"],
        h["b1"],
        h["b2"],
        h["gamma"],
        1e-8,
        amsbound=amsbound,
        weight_decay=wd,
        **kw,
    )


def _torch_kw(h, wd, amsbound):
    return dict(
        lr=h["lr"],
        betas=(h["b1"], h["b2"]),
        final_lr=h["final_lr"],
        gamma=h["gamma"],
        eps=1e-8,
        weight_decay=wd,
        amsbound=amsbound,
    )


def _run_official(make, params, grads, after_step=None):
    with warnings.catch_warnings():  # the authors' add_(scalar, tensor) overloads are deprecated
        warnings.simplefilter("ignore", UserWarning)
        return run_torch(make, params, grads, after_step)


@pytest.mark.parametrize(
    "amsbound, l2, seed", [(False, False, 0), (False, True, 1), (True, False, 2), (True, True, 3)]
)
def test_adabound_matches_official_and_torch_optimizer(x64, amsbound, l2, seed):
    h = _hparams(seed)
    wd = h["wd"] if l2 else 0.0
    params, grads = make_problem(seed, STEPS)
    ours = run_gradtx(_ours(h, wd, amsbound), params, grads)
    ref = _run_official(
        lambda ps: official.AdaBound(ps, **_torch_kw(h, wd, amsbound)), params, grads
    )
    assert_trajectories_close(ours, ref)
    ref2 = run_torch(
        lambda ps: torch_optimizer.AdaBound(ps, **_torch_kw(h, wd, amsbound)), params, grads
    )
    assert_trajectories_close(ours, ref2)
    # The bounds matter on this run: without them (gamma=0 gives [0, inf]) the
    # trajectory is far away, so the comparison above exercises the clip.
    free = run_gradtx(_ours({**h, "gamma": 0.0}, wd, amsbound), params, grads)
    assert max(np.max(np.abs(a["w"] - b["w"])) for a, b in zip(free, ref)) > 1e-3


def test_amsbound_alias(x64):
    h = _hparams(3)
    params, grads = make_problem(3, STEPS)
    ref = _run_official(lambda ps: official.AdaBound(ps, **_torch_kw(h, 0.0, True)), params, grads)
    ours = gradtx.amsbound(h["lr"], h["final_lr"], h["b1"], h["b2"], h["gamma"])
    assert_trajectories_close(run_gradtx(ours, params, grads), ref)


def _lambda_lr_case(h, factor, base_lr):
    """Official AdaBound under torch LambdaLR vs adabound with the same schedule."""
    params, grads = make_problem(5, STEPS)
    sched = []

    def make(ps):
        opt = official.AdaBound(ps, **_torch_kw(h, h["wd"], False))
        sched.append(torch.optim.lr_scheduler.LambdaLR(opt, lambda k: factor(float(k))))
        return opt

    ref = _run_official(make, params, grads, after_step=lambda opt, i: sched[0].step())

    def schedule(count):
        return h["lr"] * factor(count.astype(jnp.float64))

    ours = gradtx.adabound(
        schedule, h["final_lr"], h["b1"], h["b2"], h["gamma"], weight_decay=h["wd"], base_lr=base_lr
    )
    assert_trajectories_close(run_gradtx(ours, params, grads), ref)
    return ours


def test_adabound_bounds_follow_a_schedule(x64):
    """The bounds scale with lr_t / base_lr; base_lr defaults to the schedule at step 0."""
    h = _hparams(4)
    ours = _lambda_lr_case(h, lambda k: 0.9**k, None)
    state = ours.init({"w": jnp.zeros(2)})
    np.testing.assert_allclose(gradtx.get_hyperparams(state)["base_lr"], h["lr"])


def test_adabound_schedule_not_starting_at_one(x64):
    """LambdaLR with lambda(0) != 1: torch's base_lr is the constructor lr; pass it."""
    h = _hparams(6)
    _lambda_lr_case(h, lambda k: 0.5 + 0.5 * 0.8**k * (k + 1), h["lr"])


def test_adabound_set_learning_rate_moves_bounds(x64):
    """Changing group['lr'] mid-run in torch == set_hyperparams(learning_rate=...)."""
    h = _hparams(7)
    params, grads = make_problem(7, STEPS)

    def after(opt, i):
        if i == 9:
            opt.param_groups[0]["lr"] = h["lr"] / 4

    ref = _run_official(
        lambda ps: official.AdaBound(ps, **_torch_kw(h, 0.0, False)), params, grads, after
    )
    tx = _ours(h, 0.0, False)
    p = {k: jnp.asarray(v) for k, v in params.items()}
    state, update, ours = tx.init(p), jax.jit(tx.update), []
    for i, g in enumerate(grads):
        u, state = update({k: jnp.asarray(v) for k, v in g.items()}, state, p)
        p = gradtx.apply_updates(p, u)
        ours.append({k: np.asarray(v) for k, v in p.items()})
        if i == 9:
            state = gradtx.set_hyperparams(state, learning_rate=h["lr"] / 4)
    assert_trajectories_close(ours, ref)


@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("amsbound", [False, True])
def test_adabound_matches_pytorch_optimizer(x64, decoupled, amsbound):
    # pytorch_optimizer's denominator is sqrt(v + 1e-15) + eps: with v as small
    # as (1 - b2) g² ~ 1e-3 that moves each step by ~1e-13 relative, which
    # accumulates to ~1e-11 over the run; 1e-9 bounds it with margin.
    h = _hparams(8)
    params, grads = make_problem(8, STEPS)
    ref = run_torch(
        lambda ps: pytorch_optimizer.AdaBound(
            ps,
            lr=h["lr"],
            final_lr=h["final_lr"],
            betas=(h["b1"], h["b2"]),
            gamma=h["gamma"],
            weight_decay=h["wd"],
            weight_decouple=decoupled,
            ams_bound=amsbound,
            eps=1e-8,
        ),
        params,
        grads,
    )
    ours = _ours(h, h["wd"], amsbound, decoupled_weight_decay=decoupled)
    assert_trajectories_close(run_gradtx(ours, params, grads), ref, rtol=1e-9)


def test_adabound_with_gradtx_schedule_vs_exponential_lr(x64):
    """A gradtx schedule (data in state) against torch ExponentialLR."""
    h = _hparams(9)
    params, grads = make_problem(9, STEPS)
    sched = []

    def make(ps):
        opt = official.AdaBound(ps, **_torch_kw(h, 0.0, True))
        sched.append(torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.85))
        return opt

    ref = _run_official(make, params, grads, after_step=lambda opt, i: sched[0].step())
    lr = gradtx.schedules.exponential_decay(h["lr"], 1, 0.85)
    ours = gradtx.amsbound(lr, h["final_lr"], h["b1"], h["b2"], h["gamma"])
    assert_trajectories_close(run_gradtx(ours, params, grads), ref)

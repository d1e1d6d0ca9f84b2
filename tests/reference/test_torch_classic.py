"""Adagrad, RMSProp, AdaDelta, NAdam and SGDW against torch.optim, pytorch-optimizer
and optax, step by step in float64 on random gradients and random hyperparameters."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import pytorch_optimizer
import torch
import torch_optimizer

import gradtx
from tests.reference.harness import assert_matches_optax_retuned
from tests.reference.harness import assert_trajectories_close
from tests.reference.harness import make_problem
from tests.reference.harness import run_gradtx
from tests.reference.harness import run_torch

SEEDS = [0, 1]


def _h(seed):
    rng = np.random.default_rng(2000 + seed)
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    return dict(
        lr=u(1e-3, 0.1),
        lr_decay=u(0.01, 0.5),
        acc0=u(0.0, 1.0),
        wd=u(1e-3, 0.1),
        alpha=u(0.8, 0.999),
        mu=u(0.5, 0.95),
        rho=u(0.8, 0.99),
        b1=u(0.7, 0.95),
        b2=u(0.9, 0.999),
        psi=u(1e-3, 0.05),
        eps=10 ** u(-6, -2),
    )


def _compare(torch_opt, ours, seed, **kw):
    params, grads = make_problem(seed, **kw)
    assert_trajectories_close(run_gradtx(ours, params, grads), run_torch(torch_opt, params, grads))


# ------------------------------------------------------------------------ torch.optim


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_adagrad_matches_torch(x64, full, seed):
    h = _h(seed)
    kw = dict(lr_decay=h["lr_decay"], initial_accumulator_value=h["acc0"], weight_decay=h["wd"])
    kw = kw if full else {}
    _compare(
        lambda ps: torch.optim.Adagrad(ps, lr=h["lr"], **kw), gradtx.adagrad(h["lr"], **kw), seed
    )


@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_adagrad_eps_maximize_match_torch(x64, maximize, seed):
    """torch.optim.Adagrad's eps (random) and maximize, with every other argument set."""
    h = _h(seed)
    kw = dict(
        lr_decay=h["lr_decay"], initial_accumulator_value=h["acc0"], weight_decay=h["wd"],
        eps=h["eps"], maximize=maximize,
    )  # fmt: skip
    _compare(
        lambda ps: torch.optim.Adagrad(ps, lr=h["lr"], **kw), gradtx.adagrad(h["lr"], **kw), seed
    )


def test_adagrad_schedule_composes_with_lr_decay(x64):
    """A learning-rate schedule and lr_decay multiply, as torch + LambdaLR."""
    params, grads = make_problem(4)

    def make(ps):
        opt = torch.optim.Adagrad(ps, lr=1.0, lr_decay=0.2)
        make.sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.1 * 0.9**k)
        return opt

    ref = run_torch(make, params, grads, after_step=lambda opt, i: make.sched.step())
    ours = gradtx.adagrad(lambda k: 0.1 * 0.9 ** k.astype(jnp.float64), lr_decay=0.2)
    assert_trajectories_close(run_gradtx(ours, params, grads), ref)


@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("momentum", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_rmsprop_matches_torch(x64, centered, momentum, seed):
    h = _h(seed)
    mu = h["mu"] if momentum else 0.0
    wd = h["wd"] if seed == 1 else 0.0
    _compare(
        lambda ps: torch.optim.RMSprop(
            ps, lr=h["lr"], alpha=h["alpha"], momentum=mu, centered=centered, weight_decay=wd
        ),
        gradtx.rmsprop(h["lr"], h["alpha"], momentum=mu, centered=centered, weight_decay=wd),
        seed,
    )


@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_rmsprop_eps_maximize_match_torch(x64, centered, maximize, seed):
    """torch.optim.RMSprop's eps (random) and maximize, with momentum and weight decay."""
    h = _h(seed)
    kw = dict(momentum=h["mu"], centered=centered, weight_decay=h["wd"], maximize=maximize)
    _compare(
        lambda ps: torch.optim.RMSprop(ps, lr=h["lr"], alpha=h["alpha"], eps=h["eps"], **kw),
        gradtx.rmsprop(h["lr"], h["alpha"], h["eps"], **kw),
        seed,
    )


def test_rmsprop_momentum_under_schedule_matches_torch_lambdalr(x64):
    """Convention (A): the current learning rate multiplies the whole buffer."""
    params, grads = make_problem(5)
    schedule = lambda k: 0.1 * 0.8**k  # noqa: E731

    def make(ps):
        opt = torch.optim.RMSprop(ps, lr=1.0, momentum=0.9, centered=True)
        make.sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return opt

    ref = run_torch(make, params, grads, after_step=lambda opt, i: make.sched.step())
    ours = gradtx.rmsprop(
        lambda k: 0.1 * 0.8 ** k.astype(jnp.float64),
        momentum=0.9,
        centered=True,
    )
    assert_trajectories_close(run_gradtx(ours, params, grads), ref)


@pytest.mark.parametrize("seed", SEEDS)
def test_adadelta_matches_torch(x64, seed):
    h = _h(seed)
    _compare(
        lambda ps: torch.optim.Adadelta(ps, lr=10 * h["lr"], rho=h["rho"], weight_decay=h["wd"]),
        gradtx.adadelta(10 * h["lr"], h["rho"], weight_decay=h["wd"]),
        seed,
    )
    _compare(lambda ps: torch.optim.Adadelta(ps), gradtx.adadelta(), seed)


@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_adadelta_eps_maximize_match_torch(x64, maximize, seed):
    """torch.optim.Adadelta's eps (random) and maximize, with weight decay."""
    h = _h(seed)
    kw = dict(weight_decay=h["wd"], maximize=maximize)
    _compare(
        lambda ps: torch.optim.Adadelta(ps, lr=10 * h["lr"], rho=h["rho"], eps=h["eps"], **kw),
        gradtx.adadelta(10 * h["lr"], h["rho"], h["eps"], **kw),
        seed,
    )


NADAM_CASES = {
    "default": lambda h: {},
    "l2": lambda h: dict(weight_decay=h["wd"]),
    "decoupled": lambda h: dict(weight_decay=h["wd"], decoupled_weight_decay=True),
    "psi": lambda h: dict(momentum_decay=h["psi"], weight_decay=h["wd"]),
}


@pytest.mark.parametrize("case", sorted(NADAM_CASES))
@pytest.mark.parametrize("seed", SEEDS)
def test_nadam_matches_torch(x64, torch64, case, seed):
    h = _h(seed)
    kw = NADAM_CASES[case](h)
    _compare(
        lambda ps: torch.optim.NAdam(ps, lr=h["lr"], betas=(h["b1"], h["b2"]), **kw),
        gradtx.nadam(h["lr"], h["b1"], h["b2"], **kw),
        seed,
    )


@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_nadam_eps_maximize_match_torch(x64, torch64, decoupled, maximize, seed):
    """torch.optim.NAdam's eps (random) and maximize, with momentum_decay and weight decay."""
    h = _h(seed)
    kw = dict(
        eps=h["eps"], momentum_decay=h["psi"], weight_decay=h["wd"],
        decoupled_weight_decay=decoupled, maximize=maximize,
    )  # fmt: skip
    _compare(
        lambda ps: torch.optim.NAdam(ps, lr=h["lr"], betas=(h["b1"], h["b2"]), **kw),
        gradtx.nadam(h["lr"], h["b1"], h["b2"], **kw),
        seed,
    )


@pytest.mark.parametrize(
    "kw",
    [
        dict(momentum=0.9, weight_decay=0.05),
        dict(momentum=0.8, nesterov=True, weight_decay=0.1),
        dict(momentum=0.7, dampening=0.3, weight_decay=0.02),
        dict(weight_decay=0.05),
    ],
)
def test_sgdw_matches_pytorch_optimizer(x64, kw):
    lr = 0.05
    _compare(lambda ps: pytorch_optimizer.SGDW(ps, lr=lr, **kw), gradtx.sgdw(lr, **kw), 3)


# ------------------------------------------------------------------------------ optax


def _compare_optax(ours, theirs, seed):
    params, grads = make_problem(seed)
    with jax.numpy_dtype_promotion("standard"):  # optax is not strict-promotion clean
        ref = run_gradtx(theirs, params, grads)
    assert_trajectories_close(run_gradtx(ours, params, grads), ref)


@pytest.mark.parametrize("seed", [0])
def test_adagrad_matches_optax(x64, seed):
    h = _h(seed)
    # eps = 0: the placement no longer matters, so torch's default form equals optax.
    _compare_optax(
        gradtx.adagrad(h["lr"], initial_accumulator_value=h["acc0"], eps=0.0),
        optax.adagrad(h["lr"], initial_accumulator_value=h["acc0"], eps=0.0),
        seed,
    )
    _compare_optax(
        gradtx.adagrad(h["lr"], initial_accumulator_value=0.1, eps=1e-7, eps_in_sqrt=True),
        optax.adagrad(h["lr"]),
        seed,
    )


@pytest.mark.parametrize(("centered", "seed"), [(False, 0), (True, 1)])
def test_rmsprop_matches_optax(x64, centered, seed):
    h = _h(seed)
    # Constant lr: conventions (A) and (B) coincide.
    _compare_optax(
        gradtx.rmsprop(h["lr"], h["alpha"], momentum=h["mu"], centered=centered),
        optax.rmsprop(h["lr"], h["alpha"], eps_in_sqrt=False, centered=centered, momentum=h["mu"]),
        seed,
    )
    # With a schedule, optax's own convention (B), eps in the root, Nesterov.
    sched = optax.exponential_decay(h["lr"], 1, 0.85)
    _compare_optax(
        gradtx.rmsprop(
            sched,
            h["alpha"],
            momentum=h["mu"],
            centered=centered,
            nesterov=True,
            lr_in_momentum=True,
            eps_in_sqrt=True,
            initial_scale=0.5,
            bias_correction=True,
        ),
        optax.rmsprop(
            sched,
            h["alpha"],
            centered=centered,
            momentum=h["mu"],
            nesterov=True,
            initial_scale=0.5,
            bias_correction=True,
        ),
        seed,
    )


@pytest.mark.parametrize("seed", [0])
def test_adadelta_matches_optax(x64, seed):
    h = _h(seed)
    _compare_optax(gradtx.adadelta(), optax.adadelta(1.0), seed)
    _compare_optax(
        gradtx.adadelta(0.5, h["rho"], weight_decay=h["wd"]),
        optax.adadelta(0.5, h["rho"], weight_decay=h["wd"]),
        seed,
    )


@pytest.mark.parametrize("seed", [0])
def test_nadam_constant_momentum_matches_optax(x64, seed):
    """momentum_decay=1e6 makes 0.96^(tψ) underflow: μ_t = b1, optax's form."""
    h = _h(seed)
    args = (h["lr"], h["b1"], h["b2"])
    _compare_optax(gradtx.nadam(*args, momentum_decay=1e6), optax.nadam(*args), seed)
    _compare_optax(
        gradtx.nadam(*args, momentum_decay=1e6, weight_decay=h["wd"], decoupled_weight_decay=True),
        optax.nadamw(*args, weight_decay=h["wd"]),
        seed,
    )


def test_nadam_optax_rule_follows_a_new_b1_as_inject_hyperparams_does(x64):
    h = _h(0)
    assert_matches_optax_retuned(
        gradtx.nadam(h["lr"], h["b1"], h["b2"], convention="optax"),
        optax.inject_hyperparams(optax.nadam)(h["lr"], h["b1"], h["b2"]),
        0,
        {10: {"b1": ("b1", 0.6)}},
    )


def test_nadam_default_differs_from_optax(x64):
    """The warming schedule matters: a guard that the two forms are not conflated."""
    params, grads = make_problem(0)
    ours = run_gradtx(gradtx.nadam(0.01), params, grads)
    with jax.numpy_dtype_promotion("standard"):
        ref = run_gradtx(optax.nadam(0.01), params, grads)
    assert np.max(np.abs(ours[-1]["w"] - ref[-1]["w"])) > 1e-4


def test_torch_optimizer_sgdw_bug_is_not_reproduced(x64):
    """torch_optimizer.SGDW subtracts the constant lr*wd from every element (ALGORITHMS.md §11);
    gradtx.sgdw decays proportionally to the params, as pytorch_optimizer.SGDW does."""
    params = {"w": np.array([1.0, -2.0, 3.0])}
    grads = [{"w": np.zeros(3)}]
    buggy = run_torch(lambda ps: torch_optimizer.SGDW(ps, lr=0.1, weight_decay=0.5), params, grads)
    np.testing.assert_allclose(buggy[0]["w"], [0.95, -2.05, 2.95], rtol=1e-15)
    ours = run_gradtx(gradtx.sgdw(0.1, weight_decay=0.5), params, grads)
    np.testing.assert_allclose(
        ours[0]["w"], np.array([1.0, -2.0, 3.0]) * (1 - 0.1 * 0.5), rtol=1e-15
    )

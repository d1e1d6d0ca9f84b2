"""Rprop against torch.optim.Rprop and optax.rprop, step by step in float64."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import gradtx
from tests.reference.harness import assert_matches_optax
from tests.reference.harness import assert_matches_torch
from tests.reference.harness import assert_trajectories_close
from tests.reference.harness import make_problem
from tests.reference.harness import run_gradtx
from tests.reference.harness import run_torch


def _h(seed):
    rng = np.random.default_rng(1600 + seed)
    lr = float(rng.uniform(1e-3, 0.05))
    return dict(
        lr=lr,
        etas=(float(rng.uniform(0.2, 0.8)), float(rng.uniform(1.05, 1.6))),
        # Bounds both reached within 25 steps of random gradients.
        step_sizes=(lr * float(rng.uniform(0.05, 0.3)), lr * float(rng.uniform(1.5, 3.0))),
    )


def _ours(h, **kw):
    (em, ep), (lo, hi) = h["etas"], h["step_sizes"]
    return gradtx.rprop(h["lr"], em, ep, lo, hi, **kw)


@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_rprop_matches_torch(x64, maximize, seed):
    h = _h(seed)
    assert_matches_torch(
        _ours(h, maximize=maximize),
        lambda ps: torch.optim.Rprop(
            ps, lr=h["lr"], etas=h["etas"], step_sizes=h["step_sizes"], maximize=maximize
        ),
        seed,
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_rprop_defaults_match_torch(x64, seed):
    assert_matches_torch(gradtx.rprop(), lambda ps: torch.optim.Rprop(ps), seed)


def test_rprop_clips_the_initial_step_like_torch(x64):
    """A learning rate above max_step_size: torch clips it at the first step."""
    h = dict(lr=0.5, etas=(0.5, 1.2), step_sizes=(1e-3, 0.1))
    assert_matches_torch(
        _ours(h),
        lambda ps: torch.optim.Rprop(ps, lr=0.5, etas=(0.5, 1.2), step_sizes=(1e-3, 0.1)),
        0,
    )


def test_rprop_complex_matches_torch(x64):
    """A complex parameter is two real ones (torch's view_as_real)."""
    rng = np.random.default_rng(7)
    shapes = {"w": (3, 4), "b": (5,)}
    z = lambda s: rng.normal(size=s) + 1j * rng.normal(size=s)  # noqa: E731
    params = {k: z(s) for k, s in shapes.items()}
    grads = [{k: z(s) for k, s in shapes.items()} for _ in range(25)]
    h = _h(0)

    def make(ps):
        return torch.optim.Rprop(ps, lr=h["lr"], etas=h["etas"], step_sizes=h["step_sizes"])

    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt, ref = make(list(tensors.values())), []
    for g in grads:
        for k, t in tensors.items():
            t.grad = torch.tensor(g[k])
        opt.step()
        ref.append({k: t.detach().numpy().copy() for k, t in tensors.items()})
    tx = _ours(h)
    p = {k: jnp.asarray(v) for k, v in params.items()}
    state, ours = tx.init(p), []
    for g in grads:
        u, state = tx.update({k: jnp.asarray(v) for k, v in g.items()}, state, p)
        p = gradtx.apply_updates(p, u)
        ours.append({k: np.asarray(v) for k, v in p.items()})
    assert_trajectories_close(ours, ref)


@pytest.mark.parametrize("seed", [0, 1])
def test_rprop_optax_convention_matches_optax(x64, seed):
    h = _h(seed)
    (em, ep), (lo, hi) = h["etas"], h["step_sizes"]
    assert_matches_optax(_ours(h, convention="optax"), optax.rprop(h["lr"], em, ep, lo, hi), seed)
    assert_matches_optax(gradtx.rprop(0.02, convention="optax"), optax.rprop(0.02), seed)


def test_rprop_optax_convention_keeps_an_out_of_bounds_learning_rate(x64):
    assert_matches_optax(
        gradtx.rprop(0.5, 0.5, 1.2, 1e-3, 0.1, convention="optax"),
        optax.rprop(0.5, 0.5, 1.2, 1e-3, 0.1),
        0,
    )


def test_rprop_conventions_differ(x64):
    """The two rules are not the same rule: optax's first update is zero."""
    params, grads = make_problem(0, 3)
    a = run_gradtx(gradtx.rprop(0.01), params, grads)
    b = run_gradtx(gradtx.rprop(0.01, convention="optax"), params, grads)
    np.testing.assert_array_equal(b[0]["w"], params["w"])
    assert not np.allclose(a[0]["w"], params["w"])
    same = np.sign(grads[0]["w"]) == np.sign(grads[1]["w"])  # no flip at step 2:
    np.testing.assert_allclose(b[1]["w"][same], a[0]["w"][same], rtol=1e-12)  # a step late


def test_rprop_learning_rate_set_before_the_first_step_is_the_initial_step_size(x64):
    """set_hyperparams(learning_rate=...) on a fresh state = building with that value."""
    params, grads = make_problem(3)
    ref = run_torch(lambda ps: torch.optim.Rprop(ps, lr=0.03), params, grads)

    class Reset:
        def __init__(self):
            self.tx = gradtx.rprop(0.0)

        def init(self, p):
            return gradtx.set_hyperparams(self.tx.init(p), {"learning_rate": 0.03})

        def update(self, *a, **k):
            return self.tx.update(*a, **k)

    assert_trajectories_close(run_gradtx(Reset(), params, grads), ref)

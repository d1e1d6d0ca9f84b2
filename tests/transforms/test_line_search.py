"""strong_wolfe and cubic_interpolate against torch's _strong_wolfe, in float64.

Random one-dimensional searches along ``-∇f`` on ``f(z) = Σ a sin(bz) + c z² + e z⁴``
with random first steps, tolerances and evaluation budgets: the returned
value, gradient, step and evaluation count must be torch's, and together the
searches must take every branch of torch's bracketing and zoom phases.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.optim.lbfgs as torch_lbfgs

from gradtx.transforms.line_search import cubic_interpolate
from gradtx.transforms.line_search import strong_wolfe
from tests.reference.torch_branches import LINE_SEARCH
from tests.reference.torch_branches import missing
from tests.reference.torch_branches import taken

# The first five take every branch between them (checked below; found by
# tracing torch over seeds 0..1999).  Left out: searches far along a fast
# oscillation (seeds 7, 215, 399, 823, 1073, 1233 of those 2000), where
# torch's own step moves by 1e-10 to 1e-5 when the start or the first step
# moves by one ulp, so no other implementation can agree with it closely.
SEEDS = [1116, 592, 1545, 6, 9, 0, 1, 2, 3, 4, 5, 8, 10, 11, 12]


def _problem(seed):
    rng = np.random.default_rng(seed)
    coef = (
        rng.uniform(0, 3, 3),
        rng.uniform(0.5, 4, 3),
        rng.uniform(0, 1, 3) * rng.integers(0, 2),
        rng.uniform(0, 0.3, 3) * rng.integers(0, 2),
    )
    x = rng.normal(size=3)
    t = math.exp(rng.uniform(math.log(0.05), math.log(300)))
    tol = 10 ** rng.uniform(-9, 0)
    max_ls = int(rng.integers(1, 26))
    return coef, x, t, tol, max_ls


def _f(coef, z, xp):
    a, b, c, e = (torch.tensor(v) for v in coef) if xp is torch else coef
    return (a * xp.sin(b * z) + c * z**2 + e * z**4).sum()


def _torch_search(coef, x, t, tol, max_ls):
    def value_and_grad(z):
        z = z.clone().requires_grad_(True)
        value = _f(coef, z, torch)
        value.backward()
        return float(value.detach()), z.grad

    x = torch.tensor(x)
    f, g = value_and_grad(x)
    d = -g

    def obj_func(x, t, d):  # what LBFGS._directional_evaluate computes
        return value_and_grad(x.add(d, alpha=float(t)))

    value, grad, step, evals = torch_lbfgs._strong_wolfe(
        obj_func, x, t, d, f, g, g.dot(d), tolerance_change=tol, max_ls=max_ls
    )
    return float(value), grad.numpy(), float(step), int(evals)


@jax.jit
def _search(coef, x, t, tol, max_ls):
    loss = jax.value_and_grad(lambda z: _f(coef, z, jnp))
    f, g = loss(x)
    d = -g
    return strong_wolfe(lambda s: loss(x + s * d), d, t, f, g, g @ d,
                        tolerance_change=tol, max_ls=max_ls)  # fmt: skip


def test_strong_wolfe_matches_torch_and_takes_every_branch(x64):
    seen = set()
    for seed in SEEDS:
        problem = _problem(seed)
        ref, arcs = taken(lambda problem=problem: _torch_search(*problem))
        seen |= arcs
        coef, x, t, tol, max_ls = problem
        out = _search(tuple(jnp.asarray(c) for c in coef), jnp.asarray(x), t, tol, max_ls)
        assert int(out.evals) == ref[3], seed
        np.testing.assert_allclose(
            float(out.step), ref[2], rtol=1e-10, atol=1e-15, err_msg=str(seed)
        )
        np.testing.assert_allclose(float(out.value), ref[0], rtol=1e-10, err_msg=str(seed))
        np.testing.assert_allclose(out.grad, ref[1], rtol=1e-10, atol=1e-12, err_msg=str(seed))
    assert missing(seen, LINE_SEARCH) == []


@pytest.mark.parametrize("seed", range(3))
def test_cubic_interpolate_matches_torch(x64, seed):
    rng = np.random.default_rng(seed)
    for _ in range(50):
        x1, f1, g1, x2, f2, g2 = rng.normal(size=6) * 3
        bounds = tuple(sorted(rng.normal(size=2) * 5)) if rng.integers(2) else None
        ref = torch_lbfgs._cubic_interpolate(
            x1, f1, torch.tensor(g1), x2, f2, torch.tensor(g2), bounds=bounds
        )
        ours = jax.jit(cubic_interpolate)(x1, f1, g1, x2, f2, g2, bounds)
        np.testing.assert_allclose(float(ours), float(ref), rtol=1e-13, atol=1e-15)

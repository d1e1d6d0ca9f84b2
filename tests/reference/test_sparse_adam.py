"""SparseAdam against torch.optim.SparseAdam with sparse COO gradients, step by
step in float64.  Each step touches a few rows (an embedding lookup), some
steps touch none of a leaf, and one entry comes as two duplicates that torch
sums when it coalesces."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import gradtx
from tests.reference.harness import MIXED_SHAPES
from tests.reference.harness import assert_trajectories_close
from tests.reference.harness import run_gradtx


def _h(seed):
    rng = np.random.default_rng(1800 + seed)
    return dict(
        lr=float(rng.uniform(1e-3, 0.05)),
        b1=float(rng.uniform(0.7, 0.95)),
        b2=float(rng.uniform(0.9, 0.999)),
        eps=float(rng.uniform(1e-8, 1e-3)),
    )


def _problem(seed, steps=25, shapes=MIXED_SHAPES):
    """Params, dense gradients with most rows zero, and the same gradients as
    torch sparse COO tensors (row-sparse hybrid tensors for leaves of 2 or
    more dimensions, element-sparse for vectors)."""
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(size=s) for k, s in shapes.items()}
    dense, sparse = [], []
    for step in range(steps):
        d, s = {}, {}
        for k, shape in shapes.items():
            rows = np.flatnonzero(rng.random(shape[0]) < 0.35)
            if step % 7 == 3:
                rows = rows[:0]  # no entry at all this step
            values = rng.normal(size=(len(rows),) + shape[1:])
            indices = rows[None, :]
            if len(rows) and step % 5 == 1:  # a duplicate index: torch sums the two
                half = rng.normal(size=values[:1].shape)
                values = np.concatenate([values, values[:1] - half])
                values[0] = half[0]
                indices = np.concatenate([indices, indices[:, :1]], axis=1)
            g = np.zeros(shape)
            np.add.at(g, rows, values[: len(rows)])
            np.add.at(g, indices[0, len(rows) :], values[len(rows) :])
            d[k] = g
            s[k] = (indices, values)
        dense.append(d)
        sparse.append(s)
    return params, dense, sparse


def _run_torch(make, params, sparse):
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt, out = make(list(tensors.values())), []
    for g in sparse:
        for k, t in tensors.items():
            indices, values = g[k]
            t.grad = torch.sparse_coo_tensor(
                torch.tensor(indices, dtype=torch.int64), torch.tensor(values), t.shape,
                check_invariants=True,
            )  # fmt: skip
        opt.step()
        out.append({k: t.detach().numpy().copy() for k, t in tensors.items()})
    return out


@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_sparse_adam_matches_torch(x64, maximize, seed):
    h = _h(seed)
    params, dense, sparse = _problem(seed)
    ours = run_gradtx(
        gradtx.sparse_adam(h["lr"], h["b1"], h["b2"], h["eps"], maximize=maximize), params, dense
    )
    ref = _run_torch(
        lambda ps: torch.optim.SparseAdam(
            ps, lr=h["lr"], betas=(h["b1"], h["b2"]), eps=h["eps"], maximize=maximize
        ),
        params,
        sparse,
    )
    assert_trajectories_close(ours, ref)
    # the lazy rule is exercised: steps where some rows of w moved and others stayed
    before = [params] + ours[:-1]
    stayed = [np.all(a["w"] == b["w"], axis=1) for a, b in zip(ours, before)]
    assert any(s.any() and not s.all() for s in stayed)


@pytest.mark.parametrize("seed", [0, 1])
def test_sparse_adam_defaults_match_torch(x64, seed):
    params, dense, sparse = _problem(seed + 2)
    assert_trajectories_close(
        run_gradtx(gradtx.sparse_adam(), params, dense),
        _run_torch(lambda ps: torch.optim.SparseAdam(ps), params, sparse),
    )


def test_sparse_adam_on_gradients_without_zeros_is_adam_when_eps_is_zero(x64):
    """Every element an entry: only eps's placement differs from Adam's."""
    rng = np.random.default_rng(5)
    params = {"w": rng.normal(size=(4, 3))}
    grads = [{"w": rng.normal(size=(4, 3))} for _ in range(25)]
    ref = run_gradtx(gradtx.adam(0.01, eps=0.0), params, grads)
    assert_trajectories_close(run_gradtx(gradtx.sparse_adam(0.01, eps=0.0), params, grads), ref)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_subnormal_gradient_entry_moves_its_element_as_in_torch(dtype, x64):
    """XLA on CPU compares a subnormal as 0; torch's sparse gradient stores it, and
    the element takes its momentum step (it stood still here: 0.08 off torch)."""
    tiny = 1e-40 if dtype == "float32" else 1e-310
    grads = [np.array(g, dtype) for g in ([1.0, 0.5], [0.8, -0.3], [tiny, 0.2])]
    w = torch.zeros(2, dtype=getattr(torch, dtype), requires_grad=True)
    opt = torch.optim.SparseAdam([w], lr=0.1)
    tx = gradtx.sparse_adam(0.1)
    params = {"w": jnp.zeros(2, dtype)}
    state = tx.init(params)
    for g in grads:
        w.grad = torch.from_numpy(g).to_sparse()
        opt.step()
        updates, state = tx.update({"w": jnp.asarray(g)}, state, params)
        params = gradtx.apply_updates(params, updates)
    rtol = 1e-6 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(params["w"], w.detach().numpy(), rtol=rtol)

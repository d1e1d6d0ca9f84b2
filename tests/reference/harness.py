"""Step-by-step comparison of a gradtx transform with a reference optimizer.

Both sides get the same precomputed gradient sequence (the reference by
setting ``p.grad``), in float64, and the parameters are compared after every
step.  Importing this module imports torch: a missing reference package is an
import error, so CI fails rather than skips.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import torch

import gradtx

SHAPES = {"w": (3, 4), "b": (5,)}


def make_problem(seed: int, steps: int = 25, shapes=None, scale: float = 1.0):
    """Initial params and a gradient sequence (dicts of float64 NumPy arrays)."""
    shapes = shapes or SHAPES
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(size=s) for k, s in shapes.items()}
    grads = [{k: scale * rng.normal(size=s) for k, s in shapes.items()} for _ in range(steps)]
    return params, grads


def run_torch(make_opt: Callable, params: dict, grads: Sequence[dict], after_step=None):
    """Params after each step of a torch optimizer built by ``make_opt(tensors)``."""
    tensors = {
        k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()
    }
    opt = make_opt(list(tensors.values()))
    out = []
    for i, g in enumerate(grads):
        for k, t in tensors.items():
            t.grad = torch.tensor(g[k], dtype=torch.float64)
        opt.step()
        if after_step is not None:
            after_step(opt, i)
        out.append({k: t.detach().numpy().copy() for k, t in tensors.items()})
    return out


def run_gradtx(tx, params: dict, grads: Sequence[dict], *, jit: bool = True, extra=None):
    """Params after each step of a gradtx transform, in float64."""
    assert jax.config.jax_enable_x64, "reference tests run under the x64 fixture"
    p = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
    state = tx.init(p)
    update = jax.jit(tx.update) if jit else tx.update
    out = []
    for i, g in enumerate(grads):
        g = {k: jnp.asarray(v, jnp.float64) for k, v in g.items()}
        kw = extra(i) if extra is not None else {}
        u, state = update(g, state, p, **kw)
        p = gradtx.apply_updates(p, u)
        out.append({k: np.asarray(v) for k, v in p.items()})
    return out


def assert_trajectories_close(ours, ref, rtol: float = 1e-10, atol: float = 1e-12):
    """Every step's params agree: |ours - ref| <= atol + rtol * |ref|."""
    assert len(ours) == len(ref)
    for step, (a, b) in enumerate(zip(ours, ref)):
        for k in b:
            np.testing.assert_allclose(
                a[k], b[k], rtol=rtol, atol=atol, err_msg=f"leaf {k!r} differs at step {step + 1}"
            )


MIXED_SHAPES = {"w": (3, 4), "b": (5,), "k": (2, 3, 2)}
"""A 2-D, a 1-D and a 3-D leaf: per-leaf statistics (norms, factored moments) meet each."""


def assert_matches_optax(ours, theirs, seed: int, *, shapes=MIXED_SHAPES, steps: int = 25,
                         scale: float = 1.0, extra=None, rtol: float = 1e-10):  # fmt: skip
    """``ours`` and the optax transform ``theirs`` give the same params after every step."""
    params, grads = make_problem(seed, steps, shapes, scale)
    with jax.numpy_dtype_promotion("standard"):  # optax is not strict-promotion clean
        ref = run_gradtx(theirs, params, grads, extra=extra)
    assert_trajectories_close(run_gradtx(ours, params, grads, extra=extra), ref, rtol=rtol)


def assert_matches_torch(ours, make_torch, seed: int, *, shapes=MIXED_SHAPES, steps: int = 25,
                         scale: float = 1.0, rtol: float = 1e-10):  # fmt: skip
    """``ours`` and the torch optimizer ``make_torch(tensors)`` agree after every step."""
    params, grads = make_problem(seed, steps, shapes, scale)
    assert_trajectories_close(
        run_gradtx(ours, params, grads), run_torch(make_torch, params, grads), rtol=rtol
    )


def make_loss(seed: int, shapes=MIXED_SHAPES) -> Callable:
    """A smooth, non-negative loss of params shaped like ``shapes`` that changes
    with the step (a minibatch-like sequence): ``loss(params, step)``."""
    rng = np.random.default_rng(1000 + seed)
    weights = {k: rng.uniform(0.5, 2.0, size=s) for k, s in shapes.items()}
    centres = {k: rng.normal(size=s) for k, s in shapes.items()}
    noise = rng.uniform(0.0, 0.5, size=(1000,))

    def loss(params, step):
        total, scale = 0.0, jnp.asarray(noise)[step]
        for k, p in params.items():
            d = p - centres[k]
            total = total + jnp.sum(weights[k] * jnp.log(jnp.cosh(d))) + scale * jnp.sum(d * d)
        return total

    return loss


def mixed_loss(seed: int) -> Callable:
    """A smooth, non-separable loss of ``MIXED_SHAPES`` params, bounded below:
    ``loss(params, step)`` (the same at every step).

    Per-element weights and targets, a quartic term (so the Hessian changes
    with the params) and a coupling of all elements (so it is not diagonal).
    """
    rng = np.random.default_rng(1000 + seed)
    weights = {k: jnp.asarray(rng.uniform(0.5, 2.0, size=s)) for k, s in MIXED_SHAPES.items()}
    targets = {k: jnp.asarray(rng.normal(size=s)) for k, s in MIXED_SHAPES.items()}

    def loss(p, step=0):
        total = jnp.zeros([], jnp.float64)
        coupling = jnp.zeros([], jnp.float64)
        for k in MIXED_SHAPES:
            d = p[k] - targets[k]
            total = total + jnp.sum(weights[k] * d**2 + 0.1 * d**4 + 0.2 * jnp.cos(p[k]))
            coupling = coupling + jnp.sum(d)
        return total + 0.05 * coupling**2

    return loss


def run_on_loss(tx, params: dict, loss: Callable, steps: int, keywords: Sequence[str] = ("value",)):
    """Params after each step of ``tx`` minimising ``loss(params, step)``, in float64.

    Each step takes ``value, grads = jax.value_and_grad(loss)(params, step)`` at the
    current params and passes the extra ``keywords`` ``update`` needs: ``value``
    (Polyak, MoMo), ``obj_fn`` (Sophia's Hessian estimate), ``grad_fn(p, i)``
    (SAM's opaque mode).
    """
    assert jax.config.jax_enable_x64, "reference tests run under the x64 fixture"
    p = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
    state = tx.init(p)

    @jax.jit
    def one(p, state, step):
        value, grads = jax.value_and_grad(loss)(p, step)
        given = {
            "value": value,
            "obj_fn": lambda q: loss(q, step),
            "grad_fn": lambda q, i: jax.grad(loss)(q, step),
        }
        u, state = tx.update(grads, state, p, **{k: given[k] for k in keywords})
        return gradtx.apply_updates(p, u), state

    out = []
    for step in range(steps):
        p, state = one(p, state, step)
        out.append({k: np.asarray(v) for k, v in p.items()})
    return out


def assert_matches_optax_on_loss(ours, theirs, seed: int, *, keywords: Sequence[str] = ("value",),
                                 loss: Callable | None = None, shapes=MIXED_SHAPES,
                                 steps: int = 25, rtol: float = 1e-10):  # fmt: skip
    """``ours`` and the optax ``theirs`` minimising ``loss`` (default ``make_loss(seed)``)
    from the same params agree after every step, each given the ``keywords``."""
    params, _ = make_problem(seed, 1, shapes)
    loss = make_loss(seed, shapes) if loss is None else loss
    with jax.numpy_dtype_promotion("standard"):  # optax is not strict-promotion clean
        ref = run_on_loss(theirs, params, loss, steps, keywords)
    assert_trajectories_close(run_on_loss(ours, params, loss, steps, keywords), ref, rtol=rtol)


def assert_matches_optax_retuned(ours, theirs, seed: int, changes: dict[int, dict], *,
                                 shapes=MIXED_SHAPES, steps: int = 25, rtol: float = 1e-10):  # fmt: skip
    """As ``assert_matches_optax``, with hyperparameters changed between steps:
    ``changes[i]`` (name -> value) is set before step ``i`` (0-based), in gradtx's
    state by ``set_hyperparams`` and in the state of ``theirs``, an
    ``optax.inject_hyperparams`` transform, under the name ``theirs`` uses
    (``{gradtx_name: (optax_name, value)}``)."""
    params, grads = make_problem(seed, steps, shapes)
    p0 = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
    trajectories = []
    for tx, ref in ((ours, False), (theirs, True)):
        p, state = p0, tx.init(p0)
        out = []
        for i, g in enumerate(grads):
            for name, (their_name, value) in changes.get(i, {}).items():
                if ref:
                    old = state.hyperparams[their_name]
                    state.hyperparams[their_name] = jnp.asarray(value, jnp.asarray(old).dtype)
                else:
                    state = gradtx.set_hyperparams(state, **{name: value})
            g = {k: jnp.asarray(v, jnp.float64) for k, v in g.items()}
            with jax.numpy_dtype_promotion("standard" if ref else "strict"):
                u, state = jax.jit(tx.update)(g, state, p)
            p = gradtx.apply_updates(p, u)
            out.append({k: np.asarray(v) for k, v in p.items()})
        trajectories.append(out)
    assert_trajectories_close(*trajectories, rtol=rtol)

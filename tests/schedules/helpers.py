"""Shared by the schedule tests: a gradtx schedule's values as they run in optimizer
state (fields as float64 arrays, int32 count, jitted), the learning rates a torch
scheduler applies, optax's values, and the tolerance."""

import jax
import jax.numpy as jnp
import numpy as np
import torch

RTOL = 1e-10
L = torch.optim.lr_scheduler


def ours(schedule, n):
    """Values at steps 0..n-1: fields as float64 arrays, count int32, jitted."""
    stored = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), schedule)
    fn = jax.jit(jax.vmap(lambda k, s: s(k), in_axes=(0, None)))
    out = np.asarray(fn(jnp.arange(n, dtype=jnp.int32), stored))
    assert out.dtype == np.float64
    return out


def ours_plain(fn, n):
    """Values of a plain callable at steps 0..n-1, jitted."""
    return np.asarray(jax.jit(jax.vmap(fn))(jnp.arange(n, dtype=jnp.int32)))


def torch_lrs(make, n, base_lr=1.0):
    """The lr torch applies at each of n optimizer steps (scheduler stepped after each)."""
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = make(opt)
    lrs = []
    for _ in range(n):
        lrs.append(float(opt.param_groups[0]["lr"]))
        opt.step()
        sched.step()
    return np.asarray(lrs)


def optax_values(schedule, n):
    """optax's values at float64 counts 0..n-1.

    float64 counts: optax divides an int32 count by a Python int, which gives
    float32, so its exponential_decay would otherwise be float32 under x64.
    """
    with jax.numpy_dtype_promotion("standard"):
        out = jax.vmap(schedule)(jnp.arange(n, dtype=jnp.float64))
    assert out.dtype == jnp.float64
    return np.asarray(out)


def assert_close(a, b):
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-15 * np.max(np.abs(b)))


def check_torch(schedule, make, base_lr, n):
    """``schedule`` equals the torch scheduler ``make(optimizer)`` over n steps."""
    ref = torch_lrs(make, n, base_lr)
    assert_close(ours(schedule, n), ref)
    # The values vary: a constant schedule would not pass by accident.
    assert np.ptp(ref) > 0

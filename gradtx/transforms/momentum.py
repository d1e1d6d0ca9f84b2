"""Momentum buffers and bias correction."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _tree
from gradtx._base import GradientTransformation, hyperparameterized
from gradtx._checks import check_dtype, check_flag, check_hyperparam, is_zero


class AddMomentumState(NamedTuple):
    """``count``: updates so far; ``mu``: the momentum buffer."""

    count: jax.Array
    mu: Any


def _add_momentum(*, decay, dampening, ema, nesterov, dtype):
    def init(params):
        return AddMomentumState(jnp.zeros([], jnp.int32), _tree.zeros_like(params, dtype))

    def update(updates, state, params=None, **extra):
        first = state.count == 0

        def one(m, u):
            d = _tree.scalar_like(decay, m)
            u = u.astype(m.dtype)
            if ema:
                return d * m + (1 - d) * u
            # PyTorch: the first step copies the gradient, ignoring dampening.
            damp = 1 - _tree.scalar_like(dampening, m) if dampening is not None else 1
            return jnp.where(first, u, d * m + damp * u)

        mu = jax.tree.map(one, state.mu, updates)
        if nesterov:
            out = jax.tree.map(
                lambda u, m: (u + _tree.scalar_like(decay, m) * m).astype(u.dtype), updates, mu
            )
        else:
            out = jax.tree.map(lambda u, m: m.astype(u.dtype), updates, mu)
        return out, AddMomentumState(_tree.safe_increment(state.count), mu)

    return GradientTransformation(init, update)


def add_momentum(
    decay: Any,
    *,
    ema: bool = False,
    nesterov: bool = False,
    dampening: Any = 0.0,
    dtype: Any = None,
) -> GradientTransformation:
    """Accumulate a momentum buffer and return it (or the Nesterov look-ahead).

    Heavy ball (default, PyTorch's SGD, convention (A)):
      ``m_1 = u_1``, ``m_t = decay * m_{t-1} + (1 - dampening) * u_t``; output ``m_t``.
    EMA (``ema=True``, Adam's first moment, convention (C)):
      ``m_0 = 0``, ``m_t = decay * m_{t-1} + (1 - decay) * u_t``.
    Nesterov (``nesterov=True``): output ``u_t + decay * m_t`` (PyTorch and optax).

    Where the learning rate sits (inside the buffer, convention (B), or outside)
    is chosen by placing this before or after ``scale_by_learning_rate``.

    Args:
      decay: momentum coefficient in [0, 1] (schedulable through a named optimizer).
      ema: exponential moving average instead of heavy ball.
      nesterov: return the Nesterov look-ahead combination.
      dampening: PyTorch's dampening; like PyTorch, ignored on the first step.
      dtype: storage dtype of the buffer (``None``: the params' dtype).
    """
    call = "gradtx.add_momentum"
    check_hyperparam(call, "decay", decay, low=0.0, high=1.0)
    check_flag(call, "ema", ema, bool)
    check_flag(call, "nesterov", nesterov, bool)
    check_hyperparam(call, "dampening", dampening, low=0.0, high=1.0)
    check_dtype(call, "dtype", dtype)
    if ema and not is_zero(dampening):
        raise ValueError(f"{call}(dampening={dampening!r}): dampening needs ema=False")
    values = {"decay": decay}
    if not is_zero(dampening):
        values["dampening"] = dampening
    else:
        values["dampening"] = None
    build = functools.partial(_add_momentum, ema=ema, nesterov=nesterov, dtype=dtype)
    if values["dampening"] is None:
        del values["dampening"]
        build = functools.partial(build, dampening=None)
    return hyperparameterized(build, values)


class BiasCorrectState(NamedTuple):
    """``count``: updates so far."""

    count: jax.Array


def _bias_correct(*, decay):
    def update(updates, state, params=None, **extra):
        count = _tree.safe_increment(state.count)
        correction = _tree.bias_correction(decay, count)
        out = jax.tree.map(lambda u: u / _tree.scalar_like(correction, u), updates)
        return out, BiasCorrectState(count)

    return GradientTransformation(lambda params: BiasCorrectState(jnp.zeros([], jnp.int32)), update)


def bias_correct(decay: Any) -> GradientTransformation:
    """Divide by ``1 - decay**t`` (Adam's first-moment bias correction, t from 1)."""
    check_hyperparam("gradtx.bias_correct", "decay", decay, low=0.0, high=1.0, high_open=True)
    return hyperparameterized(_bias_correct, {"decay": decay})

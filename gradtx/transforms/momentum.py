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


def _heavy_ball(decay, dampening=None, first=None):
    """``m <- decay * m + (1 - dampening) * u`` for one leaf, coefficients cast once per dtype."""
    coefs = {}

    def one(m, u):
        # In the wider dtype, stored in the buffer's (a bfloat16 buffer of
        # float32 gradients keeps its coefficients exact); equal dtypes: no cast.
        wide = _tree.wider(m.dtype, u.dtype)
        if wide not in coefs:
            d = jnp.asarray(decay).astype(wide)
            coefs[wide] = (
                d,
                None if dampening is None else 1 - jnp.asarray(dampening).astype(wide),
            )
        d, damp = coefs[wide]
        store = m.dtype
        m, u = m.astype(wide), u.astype(wide)
        if damp is None:
            return (d * m + u).astype(store)
        return jnp.where(first, u, d * m + damp * u).astype(store)

    return one


def _add_momentum(*, decay, dampening, ema, nesterov, dtype):
    def init(params):
        return AddMomentumState(jnp.zeros([], jnp.int32), _tree.zeros_like(params, dtype))

    def update(updates, state, params=None, **extra):
        if ema:
            mu = _tree.ema(decay, state.mu, updates)
        elif dampening is None:
            # m_0 = 0, so d * m_0 + u_1 = u_1: PyTorch's first-step copy, without a select.
            mu = jax.tree.map(_heavy_ball(decay), state.mu, updates)
        else:
            # PyTorch: the first step copies the gradient, ignoring dampening.
            first = state.count == 0
            mu = jax.tree.map(_heavy_ball(decay, dampening, first), state.mu, updates)
        if nesterov:
            out = jax.tree.map(
                lambda u, m: (u + _tree.scalar_like(decay, m) * m).astype(u.dtype), updates, mu
            )
        else:
            out = jax.tree.map(
                lambda u, m: m if m.dtype == u.dtype else m.astype(u.dtype), updates, mu
            )
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


class AddNesterovMomentumState(NamedTuple):
    """``count``: updates so far; ``mu_product``: Π_t = Π_{s≤t} μ_s; ``mu``: EMA of g."""

    count: jax.Array
    mu_product: jax.Array
    mu: Any


def _momentum_schedule(b1, momentum_decay, t):
    """Dozat's warming momentum μ_t = b1 (1 - ½·0.96^{t ψ}), in the hyperparameters' dtype."""
    return b1 * (
        1 - 0.5 * jnp.power(jnp.asarray(0.96, b1.dtype), t.astype(b1.dtype) * momentum_decay)
    )


def _add_nesterov_momentum(*, b1, momentum_decay, dtype):
    b1 = jnp.asarray(b1)
    momentum_decay = jnp.asarray(momentum_decay).astype(b1.dtype)

    def init(params):
        # Π_0 = 1, kept as one scalar in the hyperparameters' (full) precision.
        product = jnp.ones([], b1.dtype)
        return AddNesterovMomentumState(
            jnp.zeros([], jnp.int32), product, _tree.zeros_like(params, dtype)
        )

    def update(updates, state, params=None, **extra):
        count = _tree.safe_increment(state.count)
        mu_t = _momentum_schedule(b1, momentum_decay, count)
        mu_next = _momentum_schedule(b1, momentum_decay, _tree.safe_increment(count))
        product = state.mu_product * mu_t
        coef_g = (1 - mu_t) / (1 - product)
        coef_m = mu_next / (1 - product * mu_next)
        # The EMA itself uses the constant b1 (PyTorch, optax); only the
        # combination below uses the schedule.
        mu = _tree.ema(b1, state.mu, updates)

        def combine(u, m):
            m = m.astype(u.dtype)
            return (_tree.scalar_like(coef_g, u) * u + _tree.scalar_like(coef_m, u) * m).astype(
                u.dtype
            )

        out = jax.tree.map(combine, updates, mu)
        return out, AddNesterovMomentumState(count, product, mu)

    return GradientTransformation(init, update)


def add_nesterov_momentum(
    b1: Any = 0.9, momentum_decay: Any = 4e-3, *, dtype: Any = None
) -> GradientTransformation:
    """NAdam's bias-corrected Nesterov momentum with Dozat's warming schedule.

    With ``t`` from 1 and ``ψ = momentum_decay``::

      μ_t = b1 (1 - ½ · 0.96^{t ψ}),     Π_t = Π_{s≤t} μ_s
      m_t = b1 m_{t-1} + (1 - b1) g_t     (m_0 = 0, constant b1)
      out = (1 - μ_t) / (1 - Π_t) · g_t + μ_{t+1} / (1 - Π_t μ_{t+1}) · m_t

    This is the numerator of ``torch.optim.NAdam``; follow it with
    ``scale_by_rms(b2, eps, bias_correction=True)`` for the whole NAdam step.
    A huge ``momentum_decay`` (e.g. 1e6) makes ``0.96^{tψ}`` underflow to 0, so
    ``μ_t = b1`` and ``Π_t = b1^t``: Dozat's constant-momentum form, as
    ``optax.nadam``'s numerator.  ``momentum_decay = 0`` gives a constant ``b1/2``.

    The input is the gradient ``g`` (put this first after any gradient maps).
    ``Π_t`` is one scalar in the hyperparameters' precision (float64 under x64).

    Args:
      b1: the EMA rate and the schedule's ceiling, in [0, 1).
      momentum_decay: ψ ≥ 0 (PyTorch's default 4e-3 = 1/250, the paper's).
      dtype: storage dtype of ``m`` (``None``: the params' dtype).

    References:
      Dozat, "Incorporating Nesterov Momentum into Adam", ICLR workshop 2016.
    """
    call = "gradtx.add_nesterov_momentum"
    check_hyperparam(call, "b1", b1, low=0.0, high=1.0, high_open=True)
    check_hyperparam(call, "momentum_decay", momentum_decay, low=0.0)
    build = functools.partial(_add_nesterov_momentum, dtype=dtype)
    return hyperparameterized(build, {"b1": b1, "momentum_decay": momentum_decay})

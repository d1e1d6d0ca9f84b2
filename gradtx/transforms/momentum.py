"""Momentum buffers and bias correction."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _tree
from gradtx._base import EmptyState
from gradtx._base import GradientTransformation
from gradtx._base import ScalarOrSchedule
from gradtx._base import Updates
from gradtx._base import step_count
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._specs import DECAY_RATE
from gradtx._specs import MOMENTUM
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import DType
from gradtx._specs import Flag
from gradtx._specs import Hyper


class AddMomentumState(NamedTuple):
    """State of ``add_momentum``.

    Attributes:
      mu: the momentum buffer.
      started: with ``dampening`` only (else ``None``), whether a step has
        filled the buffer: until then a step copies its input into it, undamped
        (torch's first step with momentum != 0).
    """

    mu: Updates
    started: Any = None


def _heavy_ball(decay, dampening=None, first=None):
    """``m <- decay * m + (1 - dampening) * u`` for one leaf, coefficients cast once per dtype;
    the result in the dtype it is computed in (``_tree.stored_like`` rounds it)."""
    coefs = {}

    def one(m, u):
        # In at least float32 (bfloat16 buffers and gradients keep exact
        # coefficients); float32/float64: no cast.
        wide = _dtypes.compute_dtype(m.dtype, u.dtype)
        if wide not in coefs:
            d = jnp.asarray(decay).astype(wide)
            coefs[wide] = (
                d,
                None if dampening is None else _numerics.one_minus(dampening, wide),
            )
        d, damp = coefs[wide]
        m, u = m.astype(wide), u.astype(wide)
        if damp is None:
            return d * m + u
        return jnp.where(first, u, d * m + damp * u)

    return one


def _ema_rate(call: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """With ``ema`` the decay weighs the input by ``1 - decay``: it must stay below 1
    after rounding, as every EMA rate (a heavy ball may take 1)."""
    if arguments["ema"]:
        DECAY_RATE.schedulable().check(call, "decay", arguments["decay"])
    return arguments


@factory(decay=MOMENTUM, ema=Flag(), nesterov=Flag(), dampening=Hyper(0.0, 1.0, optional=True),
         initial_value=Hyper(optional=True, init_only=True), pause_at_zero=Flag(),
         dtype=DType(), derive=_ema_rate)  # fmt: skip
def add_momentum(
    decay: ScalarOrSchedule,
    *,
    ema: bool = False,
    nesterov: bool = False,
    dampening: float | None = None,
    initial_value: float | None = None,
    pause_at_zero: bool = False,
    dtype: DTypeLike | None = None,
) -> GradientTransformation:
    """Accumulate a momentum buffer and return it (or the Nesterov look-ahead).

    Heavy ball (default, PyTorch's SGD, convention (A)):
      ``m_1 = u_1``, ``m_t = decay * m_{t-1} + (1 - dampening) * u_t``; output ``m_t``.
    EMA (``ema=True``, Adam's first moment, convention (C)):
      ``m_0 = 0``, ``m_t = decay * m_{t-1} + (1 - decay) * u_t``.
    With ``initial_value`` = c, ``m_0 = c`` in both (heavy ball: ``m_1 = decay·c + u_1``).
    Nesterov (``nesterov=True``): output ``u_t + decay * m_t`` (PyTorch and optax);
      with ``ema`` the EMA's look-ahead ``decay * m_t + (1 - decay) * u_t``
      (the next EMA step on the same input: ``optax.scale_by_adam(nesterov=True)``'s
      numerator before bias correction, ADOPT's Nesterov form).

    Where the learning rate sits (inside the buffer, convention (B), or outside)
    is chosen by placing this before or after ``scale_by_learning_rate``.

    Args:
      decay: momentum coefficient in [0, 1] (with ``ema``, [0, 1)), a number or
        schedule.
      ema: exponential moving average instead of heavy ball.
      nesterov: return the Nesterov look-ahead combination.
      dampening: PyTorch's dampening (``None`` or 0: none); like PyTorch,
        ignored on the step that first fills the buffer (``started`` in state).
      initial_value: ``m_0`` for every coordinate (``None`` or 0: zeros).  Yogi
        starts its EMA at 1e-6 (``optax.scale_by_yogi``); with ``dampening``
        the first step still copies the input.
      pause_at_zero: a step whose ``decay`` is 0 (a schedule or a value set in
        state; a Python 0 removes the stage) leaves the buffer as it is and
        returns its input undamped, as torch's SGD and RMSprop skip their
        buffer while the momentum is 0.  Without it the recurrence gives
        ``m_t = (1 - dampening) u_t`` (optax's ``trace``).  Heavy ball only.
        With dampening the buffer is first filled, undamped, at the first step
        whose ``decay`` is not 0, as in torch.
      dtype: storage dtype of the buffer (``None``: the params' dtype, float32 for 16-bit ones).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.add_momentum(0.9)
      >>> state = tx.init(jnp.zeros(2))
      >>> u, state = tx.update(jnp.ones(2), state)
      >>> tx.update(jnp.ones(2), state)[0]
      Array([1.9, 1.9], dtype=float32)
    """
    if ema and dampening is not None:
        call = current_call("gradtx.add_momentum")
        raise ValueError(f"{call}(dampening={dampening!r}): dampening needs ema=False")
    if ema and pause_at_zero:
        call = current_call("gradtx.add_momentum")
        raise ValueError(f"{call}(pause_at_zero=True): pause_at_zero needs ema=False")

    def init(params):
        # With dampening the step that fills the buffer differs from a step on a zero
        # buffer, and under pause_at_zero it need not be step 0: a flag, not the count.
        started = None if dampening is None else jnp.zeros([], jnp.bool_)
        if initial_value is None:
            return AddMomentumState(_tree.zeros_like(params, dtype), started)
        return AddMomentumState(_tree.full_like(params, initial_value, dtype), started)

    def update(updates, state, params=None, **extra):
        # mu as computed (at least float32): the step reads it unrounded, the state
        # keeps it in the buffer's dtype, as optax's trace and scale_by_adam do.
        if ema:
            mu = _numerics.ema(decay, state.mu, updates, wide=True)
        elif dampening is None:
            # m_0 = 0 (by default), so d * m_0 + u_1 = u_1: PyTorch's first-step copy,
            # without a select.
            mu = jax.tree.map(_heavy_ball(decay), state.mu, updates)
        else:
            first = jnp.logical_not(state.started)
            mu = jax.tree.map(_heavy_ball(decay, dampening, first), state.mu, updates)

        filled = state.started
        if pause_at_zero:
            off = jnp.asarray(decay) == 0
            mu = jax.tree.map(
                lambda new, old: jnp.where(off, old.astype(new.dtype), new), mu, state.mu
            )
            if dampening is not None:
                filled = jnp.logical_or(state.started, jnp.logical_not(off))
        elif dampening is not None:
            filled = jnp.ones([], jnp.bool_)

        def look(u, m):
            if not nesterov:
                return m if m.dtype == u.dtype else m.astype(u.dtype)
            wide = _dtypes.compute_dtype(u.dtype, m.dtype)
            d = jnp.asarray(decay).astype(wide)
            if ema:
                rest = _numerics.one_minus(decay, wide)
                return (d * m.astype(wide) + rest * u.astype(wide)).astype(u.dtype)
            return (u.astype(wide) + d * m.astype(wide)).astype(u.dtype)

        def out(u, m):
            if pause_at_zero:
                # the held buffer is not the step (and 0 · an inf buffer would be NaN):
                # the input passes through undamped
                return jnp.where(off, u, look(u, m))
            return look(u, m)

        stored = _tree.stored_like(mu, state.mu)
        return jax.tree.map(out, updates, mu), AddMomentumState(stored, filled)

    return GradientTransformation(init, update)


def _divide_by_correction(updates, decay, t):
    correction = _numerics.bias_correction(decay, t)  # once, in the hyperparameters' precision

    def one(u):
        dtype = _dtypes.compute_dtype(u.dtype)
        return (u.astype(dtype) / correction.astype(dtype)).astype(u.dtype)

    return jax.tree.map(one, updates)


@factory(counted=True, decay=DECAY_RATE.schedulable())
def bias_correct(decay: ScalarOrSchedule) -> GradientTransformation:
    """Divide by ``1 - decay**t`` (Adam's first-moment bias correction, t from 1).

    Stateless: ``t`` is the owning optimizer's step count.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.bias_correct(0.5)
      >>> tx.update(jnp.ones(2), tx.init(jnp.ones(2)))[0]
      Array([2., 2.], dtype=float32)
    """

    def update(updates, state, params=None, **extra):
        t = _numerics.safe_increment(step_count(extra, current_call("gradtx.bias_correct")))
        return _divide_by_correction(updates, decay, t), state

    return GradientTransformation(lambda params: EmptyState(), update)


class AddNesterovMomentumState(NamedTuple):
    """``mu_product``: Π_t = Π_{s≤t} μ_s (``b1^t`` without the warming schedule); ``mu``:
    EMA of g."""

    mu_product: jax.Array
    mu: Updates


def _momentum_schedule(b1, momentum_decay, t):
    """Dozat's warming momentum μ_t = b1 (1 - ½·0.96^{t ψ}), in the hyperparameters' dtype."""
    return b1 * (
        1 - 0.5 * jnp.power(jnp.asarray(0.96, b1.dtype), t.astype(b1.dtype) * momentum_decay)
    )


@factory(counted=True, b1=DECAY_RATE.schedulable(), momentum_decay=NON_NEGATIVE, warming=Flag(),
         dtype=DType())  # fmt: skip
def add_nesterov_momentum(
    b1: ScalarOrSchedule = 0.9,
    momentum_decay: float = 4e-3,
    *,
    warming: bool = True,
    dtype: DTypeLike | None = None,
) -> GradientTransformation:
    """NAdam's bias-corrected Nesterov momentum with Dozat's warming schedule.

    With ``t`` from 1 and ``ψ = momentum_decay``::

      μ_t = b1 (1 - ½ · 0.96^{t ψ}),     Π_t = Π_{s≤t} μ_s
      m_t = b1 m_{t-1} + (1 - b1) g_t     (m_0 = 0, constant b1)
      out = (1 - μ_t) / (1 - Π_t) · g_t + μ_{t+1} / (1 - Π_t μ_{t+1}) · m_t

    This is the numerator of ``torch.optim.NAdam``; follow it with
    ``scale_by_rms(b2, eps, bias_correction=True)`` for the whole NAdam step.
    ``warming=False`` drops the schedule: ``μ_t = b1`` and ``Π_t = b1^t``,
    Dozat's constant-momentum form and ``optax.nadam``'s numerator (a huge
    ``momentum_decay`` gives the same).  ``momentum_decay = 0`` gives a
    constant ``b1/2``.  With the schedule ``Π_t`` is a running product, as
    in torch; without it, ``b1^t`` of the current ``b1``, as in optax (they
    differ once ``set_hyperparams`` changes ``b1``).

    The input is the gradient ``g`` (put this first after any gradient maps).
    ``Π_t`` is one scalar in the hyperparameters' precision (float64 under x64).

    Args:
      b1: the EMA rate and the schedule's ceiling, in [0, 1); a number or schedule.
      momentum_decay: ψ ≥ 0 (PyTorch's default 4e-3 = 1/250, the paper's).
      warming: Dozat's warming schedule of μ_t (``False``: constant ``b1``).
      dtype: storage dtype of ``m`` (``None``: the params' dtype, float32 for 16-bit ones).

    References:
      Dozat, "Incorporating Nesterov Momentum into Adam", ICLR workshop 2016.
    """

    def init(params):
        # Π_0 = 1, kept as one scalar in the hyperparameters' (full) precision.
        product = jnp.ones([], jnp.asarray(b1).dtype)
        return AddNesterovMomentumState(product, _tree.zeros_like(params, dtype))

    def update(updates, state, params=None, **extra):
        beta = jnp.asarray(b1)
        psi = jnp.asarray(momentum_decay).astype(beta.dtype)
        t = _numerics.safe_increment(
            step_count(extra, current_call("gradtx.add_nesterov_momentum"))
        )
        if warming:
            mu_t = _momentum_schedule(beta, psi, t)
            mu_next = _momentum_schedule(beta, psi, _numerics.safe_increment(t))
            product = state.mu_product * mu_t  # torch keeps the product of the μ_s it used
        else:
            mu_t = mu_next = beta
            # b1^t of the current b1, as optax computes it: after set_hyperparams(b1=...)
            # a running product would mix the old b1 into the new correction.
            product = beta ** t.astype(beta.dtype)
        coef_g = (1 - mu_t) / (1 - product)
        coef_m = mu_next / (1 - product * mu_next)
        # The EMA itself uses the constant b1 (PyTorch, optax); only the
        # combination below uses the schedule.
        mu = _numerics.ema(beta, state.mu, updates, wide=True)  # stored rounded, used as is

        def combine(u, m):
            wide = _dtypes.compute_dtype(u.dtype, m.dtype)
            cg, cm = jnp.asarray(coef_g).astype(wide), jnp.asarray(coef_m).astype(wide)
            return (cg * u.astype(wide) + cm * m.astype(wide)).astype(u.dtype)

        out = jax.tree.map(combine, updates, mu)
        return out, AddNesterovMomentumState(product, _tree.stored_like(mu, state.mu))

    return GradientTransformation(init, update)

"""RAdam's variance rectification of an Adam-style step."""

from __future__ import annotations

import functools
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import DTypeLike

from gradtx import _control
from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _tree
from gradtx._base import GradientTransformation
from gradtx._base import OptState
from gradtx._base import Updates
from gradtx._base import extras_for
from gradtx._base import gradient
from gradtx._base import step_count
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._specs import DECAY_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import Choice
from gradtx._specs import DType
from gradtx._specs import Hyper
from gradtx._specs import Transform

COMPARE = Choice(">", ">=")
# r_t's root is of a negative number for 2 < rho_t < 4: a threshold below 4 would
# select it (optax's step is NaN there).
THRESHOLD = Hyper(low=4.0)


class RectifyState(NamedTuple):
    """``nu``: EMA of squared gradients (uncorrected)."""

    nu: Updates


# Taylor coefficients: (L - c) / c² = Σ c^k / (k + 2) for L = -ln(1 - c), and
# h(x) = 1 - x / (e^x - 1) = x/2 - x²/12 + x⁴/720 - ... (Bernoulli numbers), as far
# as float64 needs on the ranges they are used on (c <= 1/16, x <= 1/2).
_LOG_TAIL = tuple(1 / (k + 2) for k in range(15))
_BERNOULLI_TAIL = (0.0, 1 / 2, -1 / 12, 0.0, 1 / 720, 0.0, -1 / 30240, 0.0, 1 / 1209600, 0.0,
                   -1 / 47900160, 0.0, 691 / 1307674368000, 0.0, -1 / 74724249600, 0.0,
                   3617 / 10670622842880000)  # fmt: skip


def _polynomial(x: jax.Array, coefficients: tuple[float, ...]) -> jax.Array:
    out = jnp.zeros_like(x)
    for c in reversed(coefficients):
        out = out * x + c
    return out


def rectification(
    b2: Any, t: jax.Array, threshold: Any, compare: str
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(tractable, r_t, 1 - b2**t)`` for the 1-based step ``t``, in ``b2``'s dtype.

    ``rho_t = rho_inf - 2 t b2^t / (1 - b2^t)`` with ``rho_inf = 2 / (1 - b2) - 1``
    is the length of the simple moving average that the EMA approximates;
    the variance of the adaptive rate is tractable when ``rho_t`` passes
    ``threshold`` (``compare`` is ``">"`` or ``">="``).

    Written as it reads, ``rho_t`` is a difference of two numbers near ``rho_inf``
    (2e5 at b2 = 0.99999, for a result near t): in float32 that was off by 0.2% at
    b2 = 0.999 and took the wrong branch near 1.  With ``c = 1 - b2``, ``L = -ln b2``
    and ``x = t L``, it is ``rho_t = (2/c - 2/L) - 1 + (2/L) h(x)``, where
    ``h(x) = 1 - x / (e^x - 1)``: each part is formed without cancellation.
    """
    b2 = jnp.asarray(b2)
    threshold = jnp.asarray(threshold).astype(b2.dtype)
    return _control.once(_RECTIFICATION[compare], b2, t, threshold)


def _rectification(b2: jax.Array, t: jax.Array, threshold: jax.Array, compare: str) -> tuple:
    dtype = b2.dtype
    correction = _numerics.bias_correction(b2, t)  # 1 - b2^t
    t = t.astype(dtype)
    rho_inf = 2 / (1 - b2) - 1
    # Below b2 = 1/2 nothing cancels and rho_t is formed as it reads: the rewritten
    # form's 1/ln(b2) terms have infinite derivatives at b2 = 0 (NaN gradients in
    # b2 through the unselected branch).  Each form sees a b2 it is finite at.
    direct = b2 < 0.5
    low = jnp.where(direct, b2, jnp.zeros([], dtype))
    power = low**t
    rho_low = rho_inf - 2 * t * power / (1 - power)
    b2 = jnp.where(direct, jnp.full([], 0.75, dtype), b2)
    c = 1 - b2  # exact for b2 >= 1/2
    L = _numerics.neg_log(b2)
    x = t * L
    small_c = c <= 1 / 16
    cs = jnp.where(small_c, c, jnp.zeros([], dtype))
    tail = 2 * cs * _polynomial(cs, _LOG_TAIL) / jnp.where(small_c, L, jnp.ones([], dtype))
    ahead = jnp.where(small_c, tail, 2 / c - 2 / L)  # 2/c - 2/L
    small_x = x <= 0.5
    xs = jnp.where(small_x, x, jnp.zeros([], dtype))
    xl = jnp.clip(jnp.where(small_x, jnp.ones([], dtype), x), None, 40.0)  # x/expm1(x) ~ 0 past 40
    h = jnp.where(small_x, _polynomial(xs, _BERNOULLI_TAIL), 1 - xl / jnp.expm1(xl))
    rho_t = jnp.where(direct, rho_low, ahead - 1 + (2 / L) * h)
    # rho_1 = 1 for every b2 (one sample), exactly, as a threshold of 1 expects
    rho_t = jnp.where(t == 1, jnp.ones([], dtype), rho_t)
    tractable = rho_t > threshold if compare == ">" else rho_t >= threshold
    ratio = (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
    # Between rho_t = 2 and 4 the ratio is negative.  The factories refuse a threshold
    # that would select it, but a traced JAX array is data, unchecked: there r_t is
    # NaN (as optax's), not a silent zero step.  Unselected, the clamp (and safe_sqrt,
    # for derivatives) keep NaNs out, since 0 * NaN would reach the gradients.
    r = _numerics.safe_sqrt(jnp.maximum(ratio, 0))
    r = jnp.where(tractable & (ratio < 0), jnp.full([], jnp.nan, dtype), r)
    return tractable, r, correction


_RECTIFICATION = {  # one function object per comparison, for _control.once
    compare: functools.partial(_rectification, compare=compare) for compare in COMPARE.choices
}


@factory(counted=True, b2=DECAY_RATE, eps=NON_NEGATIVE, threshold=THRESHOLD, compare=COMPARE,
         untractable=Choice("sgd", "skip"), eps_on=Choice("v", "v_hat"), dtype=DType())  # fmt: skip
def rectify(
    b2: float = 0.999,
    eps: float = 1e-8,
    threshold: float = 5.0,
    *,
    compare: str = ">",
    untractable: str = "sgd",
    eps_on: str = "v",
    dtype: DTypeLike | None = None,
) -> GradientTransformation:
    """RAdam's rectified adaptive step: ``u <- r_t sqrt(1 - b2^t) u / (sqrt(v_t) + eps)``.

    Keeps ``v_t = b2 v_{t-1} + (1 - b2) g_t²`` of the chain's ``grads`` (else of
    its input, see ``gradtx.chain``) and, with ``t`` from 1::

      rho_inf = 2 / (1 - b2) - 1,    rho_t = rho_inf - 2 t b2^t / (1 - b2^t)
      r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
      rho_t > threshold:  u <- u r_t sqrt(1 - b2^t) / (sqrt(v_t) + eps)   (E2, PyTorch)
      otherwise:          u <- u (untractable="sgd") or 0 (untractable="skip")

    Its input is Adam's bias-corrected first moment, so the untractable phase
    is an SGD-with-momentum step (PyTorch, optax) or no step at all (the
    authors' current default and ``pytorch_optimizer.RAdam``).

    Args:
      b2: second-moment decay in [0, 1).
      eps: added to the root.
      threshold: rho_t must exceed it (5 in code; the paper says 4); at least 4,
        where r_t is real (a traced JAX array is not checked: below 4 its steps with
        2 < rho_t < 4 are NaN, as optax's).
      compare: ``">"`` (PyTorch, official Ranger) or ``">="`` (optax, the
        authors' RAdam, pytorch-optimizer).
      untractable: ``"sgd"`` passes the input through, ``"skip"`` returns zeros.
      eps_on: ``"v"`` adds eps to ``sqrt(v_t)`` (E2: PyTorch, the authors) or
        ``"v_hat"`` to ``sqrt(v_t / (1 - b2^t))`` (E1: ``optax.radam``).
      dtype: storage dtype of ``v`` (``None``: the params' dtype; float32 for
        float16 params).
    """
    call = current_call("gradtx.rectify")

    def init(params):
        return RectifyState(_tree.squares_like(params, 0.0, dtype))

    def update(updates, state, params=None, **extra):
        t = _numerics.safe_increment(step_count(extra, call))

        def second_moment(v, g):
            return _numerics.ema_of_square(b2, v, g)

        nu = jax.tree.map(second_moment, state.nu, gradient(updates, extra))
        tractable, r, correction = rectification(b2, t, threshold, compare)

        def one(u, v):
            wide = _dtypes.compute_dtype(u.dtype, v.dtype)
            v = jnp.real(v.astype(wide))
            e, c, rr = (_tree.scalar_like(x, v) for x in (eps, correction, r))
            uw = u.astype(wide)
            # 0/0 (eps = 0, no gradient yet) is a step of 0; the guard sits in the
            # denominator, so the derivative of the branch not taken is not 0 * inf
            if eps_on == "v":  # E2: r sqrt(1 - b2^t) / (sqrt(v) + eps)
                num, den = rr * jnp.sqrt(c), _numerics.safe_sqrt(v) + e
            else:  # E1: r / (sqrt(v / (1 - b2^t)) + eps)
                num, den = rr, _numerics.safe_sqrt(v / c) + e
            dead = (uw == 0) & (den == 0)
            factor = num / jnp.where(dead, jnp.ones_like(den), den)
            step = jnp.where(dead, jnp.zeros_like(uw), uw * factor.astype(wide))
            fallback = uw if untractable == "sgd" else jnp.zeros_like(uw)
            return jnp.where(tractable, step, fallback).astype(u.dtype)

        return jax.tree.map(one, updates, nu), RectifyState(nu)

    return GradientTransformation(init, update)


class WhenRectifiedState(NamedTuple):
    """``inner_state``: the wrapped transform's state."""

    inner_state: OptState


@factory(counted=True, inner=Transform(), b2=DECAY_RATE, threshold=THRESHOLD, compare=COMPARE)
def when_rectified(
    inner: optax.GradientTransformation,
    b2: float = 0.999,
    threshold: float = 5.0,
    *,
    compare: str = ">",
) -> GradientTransformation:
    """Run ``inner`` only on the steps where ``rectify`` rectifies, else pass through.

    The authors' RAdam skips the decoupled weight decay together with the step
    while the variance is untractable; ``radam(untractable="skip")`` wraps its
    decay in this.  ``inner``'s state is kept (and advanced) on every step.
    """
    call = current_call("gradtx.when_rectified")

    def update(updates, state, params=None, **extra):
        t = _numerics.safe_increment(step_count(extra, call))
        tractable, _, _ = rectification(b2, t, threshold, compare)
        out, inner_state = inner.update(
            updates, state.inner_state, params, **extras_for(inner, extra)
        )
        out = jax.tree.map(lambda a, b: jnp.where(tractable, a, b), out, updates)
        return out, WhenRectifiedState(inner_state)

    return GradientTransformation(lambda params: WhenRectifiedState(inner.init(params)), update)

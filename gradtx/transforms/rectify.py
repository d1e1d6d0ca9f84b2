"""RAdam's variance rectification of an Adam-style step."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _tree
from gradtx._base import GradientTransformation, _with_extra_args, hyperparameterized
from gradtx._checks import check_choice, check_hyperparam


class RectifyState(NamedTuple):
    """``count``: updates so far; ``nu``: EMA of squared gradients (uncorrected)."""

    count: jax.Array
    nu: Any


def rectification(b2: Any, count: jax.Array, threshold: Any, compare: str):
    """``(tractable, r_t, 1 - b2**t)`` for the 1-based step ``count``, in ``b2``'s dtype.

    ``rho_t = rho_inf - 2 t b2^t / (1 - b2^t)`` with ``rho_inf = 2 / (1 - b2) - 1``
    is the length of the simple moving average that the EMA approximates;
    the variance of the adaptive rate is tractable when ``rho_t`` passes
    ``threshold`` (``compare`` is ``">"`` or ``">="``).
    """
    b2 = jnp.asarray(b2)
    t = count.astype(b2.dtype)
    b2_t = b2**t
    correction = 1 - b2_t
    rho_inf = 2 / (1 - b2) - 1
    rho_t = rho_inf - 2 * t * b2_t / correction
    threshold = jnp.asarray(threshold).astype(b2.dtype)
    tractable = rho_t > threshold if compare == ">" else rho_t >= threshold
    ratio = (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
    # Below rho_t = 4 the ratio is negative; that branch is never selected, the
    # clamp only keeps NaNs out of the unselected values.
    return tractable, jnp.sqrt(jnp.maximum(ratio, 0)), correction


def _rectify(*, b2, eps, threshold, compare, untractable, eps_on, dtype):
    def init(params):
        return RectifyState(jnp.zeros([], jnp.int32), _tree.zeros_like(params, dtype))

    def update(updates, state, params=None, *, grads=None, **extra):
        grads = updates if grads is None else grads
        _tree.check_same_structure("gradtx.rectify.update", updates, state.nu)
        count = _tree.safe_increment(state.count)
        nu = jax.tree.map(lambda v, g: _tree.ema(b2, v, _tree.abs_sq(g)), state.nu, grads)
        tractable, r, correction = rectification(b2, count, threshold, compare)

        def one(u, v):
            e = _tree.scalar_like(eps, v)
            c = _tree.scalar_like(correction, v)
            if eps_on == "v":  # E2: r sqrt(1 - b2^t) / (sqrt(v) + eps)
                factor = _tree.scalar_like(r, v) * jnp.sqrt(c) / (jnp.sqrt(v) + e)
            else:  # E1: r / (sqrt(v / (1 - b2^t)) + eps)
                factor = _tree.scalar_like(r, v) / (jnp.sqrt(v / c) + e)
            fallback = u if untractable == "sgd" else jnp.zeros_like(u)
            return jnp.where(tractable, u * factor.astype(u.dtype), fallback)

        return jax.tree.map(one, updates, nu), RectifyState(count, nu)

    return GradientTransformation(init, update)


def rectify(
    b2: Any = 0.999,
    eps: Any = 1e-8,
    threshold: Any = 5.0,
    *,
    compare: str = ">",
    untractable: str = "sgd",
    eps_on: str = "v",
    dtype: Any = None,
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
      threshold: rho_t must exceed it (5 in code; the paper says 4).
      compare: ``">"`` (PyTorch, official Ranger) or ``">="`` (optax, the
        authors' RAdam, pytorch-optimizer).
      untractable: ``"sgd"`` passes the input through, ``"skip"`` returns zeros.
      eps_on: ``"v"`` adds eps to ``sqrt(v_t)`` (E2: PyTorch, the authors) or
        ``"v_hat"`` to ``sqrt(v_t / (1 - b2^t))`` (E1: ``optax.radam``).
      dtype: storage dtype of ``v`` (``None``: the params' dtype).
    """
    call = "gradtx.rectify"
    check_hyperparam(call, "b2", b2, low=0.0, high=1.0, high_open=True)
    check_hyperparam(call, "eps", eps, low=0.0)
    check_hyperparam(call, "threshold", threshold)
    check_choice(call, "compare", compare, (">", ">="))
    check_choice(call, "untractable", untractable, ("sgd", "skip"))
    check_choice(call, "eps_on", eps_on, ("v", "v_hat"))
    build = functools.partial(
        _rectify, compare=compare, untractable=untractable, eps_on=eps_on, dtype=dtype
    )
    return hyperparameterized(build, {"b2": b2, "eps": eps, "threshold": threshold})


class WhenRectifiedState(NamedTuple):
    """``count``: updates so far; ``inner_state``: the wrapped transform's state."""

    count: jax.Array
    inner_state: Any


def _when_rectified(inner, *, b2, threshold, compare):
    def init(params):
        return WhenRectifiedState(jnp.zeros([], jnp.int32), inner.init(params))

    def update(updates, state, params=None, **extra):
        count = _tree.safe_increment(state.count)
        tractable, _, _ = rectification(b2, count, threshold, compare)
        out, inner_state = inner.update(updates, state.inner_state, params, **extra)
        out = jax.tree.map(lambda a, b: jnp.where(tractable, a, b), out, updates)
        return out, WhenRectifiedState(count, inner_state)

    return GradientTransformation(init, update)


def when_rectified(
    inner: GradientTransformation, b2: Any = 0.999, threshold: Any = 5.0, *, compare: str = ">"
) -> GradientTransformation:
    """Run ``inner`` only on the steps where ``rectify`` rectifies, else pass through.

    The authors' RAdam skips the decoupled weight decay together with the step
    while the variance is untractable; ``radam(untractable="skip")`` wraps its
    decay in this.  ``inner``'s state is kept (and advanced) on every step.
    """
    call = "gradtx.when_rectified"
    inner = _with_extra_args(inner, call)
    check_hyperparam(call, "b2", b2, low=0.0, high=1.0, high_open=True)
    check_hyperparam(call, "threshold", threshold)
    check_choice(call, "compare", compare, (">", ">="))
    build = functools.partial(_when_rectified, inner, compare=compare)
    return hyperparameterized(build, {"b2": b2, "threshold": threshold})

"""AdaBound's clipped per-parameter step size (and the unclipped E2 Adam step)."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _tree
from gradtx._base import GradientTransformation, hyperparameterized
from gradtx._checks import check_flag, check_hyperparam


class ScaleByBoundedRmsState(NamedTuple):
    """``nu``: EMA of g²; ``nu_max``: running max of the raw ``nu`` (AMSBound)."""

    count: jax.Array
    nu: Any
    nu_max: Any


def _scale_by_bounded_rms(*, b1, b2, eps, final_lr, base_lr, gamma, bounded, amsbound, dtype):
    def init(params):
        empty = jax.tree.map(lambda _: None, params)
        nu_max = _tree.zeros_like(params, dtype) if amsbound else empty
        return ScaleByBoundedRmsState(
            jnp.zeros([], jnp.int32), _tree.zeros_like(params, dtype), nu_max
        )

    def update(updates, state, params=None, *, grads=None, **extra):
        grads = updates if grads is None else grads
        count = _tree.safe_increment(state.count)
        nu = jax.tree.map(
            lambda v, g: _tree.ema(b2, v, jnp.square(g.astype(v.dtype))), state.nu, grads
        )
        nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu) if amsbound else state.nu_max
        # Kingma & Ba's "efficient" form (E2): the bias corrections multiply the
        # step size, eps sits on the uncorrected root.  AdaBound clips this product,
        # so the 1/(1 - b1^t) of the first moment lives here, not in bias_correct.
        step = jnp.sqrt(_tree.bias_correction(b2, count)) / _tree.bias_correction(b1, count)
        if bounded:
            ratio = jnp.asarray(final_lr) / jnp.asarray(base_lr)
            t = count.astype(ratio.dtype)
            lower = ratio * (1 - 1 / (gamma * t + 1))
            # gamma = 0 leaves the step unbounded above (no 0 * inf when final_lr = 0)
            upper = jnp.where(gamma > 0, ratio * (1 + 1 / (gamma * t)), jnp.inf)

        def one(u, v):
            size = _tree.scalar_like(step, v) / (jnp.sqrt(v) + _tree.scalar_like(eps, v))
            if bounded:
                size = jnp.clip(size, _tree.scalar_like(lower, v), _tree.scalar_like(upper, v))
            return (size.astype(u.dtype) * u).astype(u.dtype)

        out = jax.tree.map(one, updates, nu_max if amsbound else nu)
        return out, ScaleByBoundedRmsState(count, nu, nu_max)

    return GradientTransformation(init, update)


def scale_by_bounded_rms(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    *,
    final_lr: Any = None,
    base_lr: Any = None,
    gamma: Any = 1e-3,
    amsbound: bool = False,
    dtype: Any = None,
) -> GradientTransformation:
    """Multiply the updates by AdaBound's clipped per-parameter step size.

    With ``v_t = b2 v_{t-1} + (1 - b2) g_t²`` (``v_0 = 0``; AMSBound uses
    ``max_{s≤t} v_s`` of the raw ``v``) and ``r = final_lr / base_lr``::

      s_t   = sqrt(1 - b2^t) / (1 - b1^t) / (sqrt(v_t) + eps)      (per parameter)
      lower = r (1 - 1 / (gamma t + 1)),   upper = r (1 + 1 / (gamma t))
      u    <- clip(s_t, lower, upper) ⊙ u

    The step size is in units of the learning rate applied *after* this
    transform: the official code clips ``lr · s_t`` between
    ``final_lr · lr / base_lr · (1 ∓ ...)``, and since ``lr ≥ 0`` multiplies the
    value and both bounds, ``clip(lr·s, lr·a, lr·b) = lr · clip(s, a, b)``.  So
    ``chain(add_momentum(b1, ema=True), scale_by_bounded_rms(...),
    scale_by_learning_rate(lr))`` is AdaBound, and a learning-rate schedule (or
    ``set_hyperparams(state, learning_rate=...)``) moves the bounds with it, as
    a torch LR scheduler does with the official code.  ``base_lr`` is the
    initial learning rate the bounds are relative to (the official
    ``base_lrs``).

    The input is the *uncorrected* EMA of the gradient: the first-moment bias
    correction is inside the clip.  ``g`` is the chain's ``grads`` keyword when
    present, else the input (see ``gradtx.chain``).

    With ``final_lr=None`` nothing is clipped: the transform is the E2 Adam step
    ``sqrt(1 - b2^t) / (1 - b1^t) · u / (sqrt(v_t) + eps)`` (SWATS's Adam phase).

    Args:
      b1: decay of the first moment the input holds (only its bias correction is used).
      b2: decay of the second moment, in [0, 1).
      eps: added to ``sqrt(v_t)``.
      final_lr: the SGD learning rate both bounds converge to (``None``: no bounds).
      base_lr: the learning rate ``final_lr`` is relative to; required with ``final_lr``.
      gamma: convergence speed of the bounds (``gamma = 0`` gives ``[0, inf]``).
      amsbound: use the running max of the raw ``v`` (AMSBound).
      dtype: storage dtype of the second moments (``None``: the params' dtype).
    """
    call = "gradtx.scale_by_bounded_rms"
    check_hyperparam(call, "b1", b1, low=0.0, high=1.0, high_open=True)
    check_hyperparam(call, "b2", b2, low=0.0, high=1.0, high_open=True)
    check_hyperparam(call, "eps", eps, low=0.0)
    check_hyperparam(call, "gamma", gamma, low=0.0)
    check_flag(call, "amsbound", amsbound, bool)
    values = {"b1": b1, "b2": b2, "eps": eps}
    bounded = final_lr is not None
    if bounded:
        check_hyperparam(call, "final_lr", final_lr, low=0.0)
        if base_lr is None:
            raise ValueError(
                f"{call}(final_lr={final_lr!r}): give base_lr, the initial learning rate"
            )
        check_hyperparam(call, "base_lr", base_lr, low=0.0, low_open=True)
        values |= {"final_lr": final_lr, "base_lr": base_lr, "gamma": gamma}
    build = functools.partial(
        _scale_by_bounded_rms, bounded=bounded, amsbound=amsbound, dtype=dtype
    )
    if not bounded:
        build = functools.partial(build, final_lr=None, base_lr=None, gamma=None)
    return hyperparameterized(build, values)

"""RAdam's variance rectification of an Adam-style step."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gradtx import _tree
from gradtx._base import GradientTransformation, gradient, step_count
from gradtx._factory import current_call, factory
from gradtx._specs import DECAY_RATE, NON_NEGATIVE, Choice, DType, Hyper, Transform

COMPARE = Choice(">", ">=")


class RectifyState(NamedTuple):
    """``nu``: EMA of squared gradients (uncorrected)."""

    nu: Any


def rectification(
    b2: Any, t: jax.Array, threshold: Any, compare: str
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(tractable, r_t, 1 - b2**t)`` for the 1-based step ``t``, in ``b2``'s dtype.

    ``rho_t = rho_inf - 2 t b2^t / (1 - b2^t)`` with ``rho_inf = 2 / (1 - b2) - 1``
    is the length of the simple moving average that the EMA approximates;
    the variance of the adaptive rate is tractable when ``rho_t`` passes
    ``threshold`` (``compare`` is ``">"`` or ``">="``).
    """
    b2 = jnp.asarray(b2)
    t = t.astype(b2.dtype)
    b2_t = b2**t
    correction = 1 - b2_t
    rho_inf = 2 / (1 - b2) - 1
    rho_t = rho_inf - 2 * t * b2_t / correction
    threshold = jnp.asarray(threshold).astype(b2.dtype)
    tractable = rho_t > threshold if compare == ">" else rho_t >= threshold
    ratio = (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
    # Below rho_t = 4 the ratio is negative; that branch is never selected, the
    # clamp (and safe_sqrt, for derivatives) only keep NaNs out of the unselected values.
    return tractable, _tree.safe_sqrt(jnp.maximum(ratio, 0)), correction


@factory(counted=True, b2=DECAY_RATE, eps=NON_NEGATIVE, threshold=Hyper(), compare=COMPARE,
         untractable=Choice("sgd", "skip"), eps_on=Choice("v", "v_hat"), dtype=DType())  # fmt: skip
def rectify(
    b2: float = 0.999,
    eps: float = 1e-8,
    threshold: float = 5.0,
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
      dtype: storage dtype of ``v`` (``None``: the params' dtype; float32 for
        float16 params).
    """
    call = current_call("gradtx.rectify")

    def init(params):
        return RectifyState(_tree.squares_like(params, 0.0, dtype))

    def update(updates, state, params=None, **extra):
        t = _tree.safe_increment(step_count(extra, call))

        def second_moment(v, g):
            return _tree.ema(b2, v, _tree.squared(g, v))

        nu = jax.tree.map(second_moment, state.nu, gradient(updates, extra))
        tractable, r, correction = rectification(b2, t, threshold, compare)

        def one(u, v):
            wide = _tree.compute_dtype(u.dtype, v.dtype)
            v = jnp.real(v.astype(wide))
            e, c, rr = (_tree.scalar_like(x, v) for x in (eps, correction, r))
            if eps_on == "v":  # E2: r sqrt(1 - b2^t) / (sqrt(v) + eps)
                den = jnp.sqrt(v) + e
                factor = rr * jnp.sqrt(c) / den
            else:  # E1: r / (sqrt(v / (1 - b2^t)) + eps)
                den = jnp.sqrt(v / c) + e
                factor = rr / den
            uw = u.astype(wide)
            step = jnp.where((uw == 0) & (den == 0), jnp.zeros_like(uw), uw * factor.astype(wide))
            fallback = uw if untractable == "sgd" else jnp.zeros_like(uw)
            return jnp.where(tractable, step, fallback).astype(u.dtype)

        return jax.tree.map(one, updates, nu), RectifyState(nu)

    return GradientTransformation(init, update)


class WhenRectifiedState(NamedTuple):
    """``inner_state``: the wrapped transform's state."""

    inner_state: Any


@factory(counted=True, inner=Transform(), b2=DECAY_RATE, threshold=Hyper(), compare=COMPARE)
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
        t = _tree.safe_increment(step_count(extra, call))
        tractable, _, _ = rectification(b2, t, threshold, compare)
        out, inner_state = inner.update(updates, state.inner_state, params, **extra)
        out = jax.tree.map(lambda a, b: jnp.where(tractable, a, b), out, updates)
        return out, WhenRectifiedState(inner_state)

    return GradientTransformation(lambda params: WhenRectifiedState(inner.init(params)), update)

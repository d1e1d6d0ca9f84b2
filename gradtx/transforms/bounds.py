"""AdaBound's clipped per-parameter step size (and the unclipped E2 Adam step)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _tree
from gradtx._base import GradientTransformation
from gradtx._base import Updates
from gradtx._base import gradient
from gradtx._base import step_count
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._specs import DECAY_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import DType
from gradtx._specs import Flag
from gradtx._specs import Hyper


class ScaleByBoundedRmsState(NamedTuple):
    """``nu``: EMA of g²; ``nu_max``: running max of the raw ``nu`` (AMSBound, else ``None``)."""

    nu: Updates
    nu_max: Updates


@factory(counted=True, b1=DECAY_RATE, b2=DECAY_RATE, eps=NON_NEGATIVE,
         final_lr=Hyper(low=0.0, nullable=True), base_lr=Hyper(low=0.0, low_open=True, nullable=True),
         gamma=NON_NEGATIVE, amsbound=Flag(), dtype=DType())  # fmt: skip
def scale_by_bounded_rms(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    final_lr: float | None = None,
    base_lr: float | None = None,
    gamma: float = 1e-3,
    amsbound: bool = False,
    dtype: DTypeLike | None = None,
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
      dtype: storage dtype of the second moments (``None``: the params' dtype;
        float32 for 16-bit params).
    """
    call = current_call("gradtx.scale_by_bounded_rms")
    bounded = final_lr is not None
    if bounded and base_lr is None:
        raise ValueError(f"{call}(final_lr={final_lr!r}): give base_lr, the initial learning rate")

    def init(params):
        zeros = _tree.squares_like(params, 0.0, dtype)
        return ScaleByBoundedRmsState(
            zeros, _tree.squares_like(params, 0.0, dtype) if amsbound else None
        )

    def update(updates, state, params=None, **extra):
        t = _numerics.safe_increment(step_count(extra, call))

        def second_moment(v, g):
            return _numerics.ema_of_square(b2, v, g)

        nu = jax.tree.map(second_moment, state.nu, gradient(updates, extra))
        nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu) if amsbound else None
        # Kingma & Ba's "efficient" form (E2): the bias corrections multiply the
        # step size, eps sits on the uncorrected root.  AdaBound clips this product,
        # so the 1/(1 - b1^t) of the first moment lives here, not in bias_correct.
        step = jnp.sqrt(_numerics.bias_correction(b2, t)) / _numerics.bias_correction(b1, t)
        if bounded:
            ratio = jnp.asarray(final_lr) / jnp.asarray(base_lr)
            tf = t.astype(ratio.dtype)
            lower = ratio * (1 - 1 / (gamma * tf + 1))
            # gamma = 0 leaves the step unbounded above (no 0 * inf when final_lr = 0);
            # the inner where keeps 1/0 out of the derivative of the branch not taken
            capped = gamma > 0
            upper = jnp.where(capped, ratio * (1 + 1 / jnp.where(capped, gamma * tf, 1)), jnp.inf)

        def one(u, v):
            wide = _dtypes.compute_dtype(u.dtype, v.dtype)
            v = jnp.real(v.astype(wide))
            uw = u.astype(wide)
            den = _numerics.safe_sqrt(v) + _tree.scalar_like(eps, v)
            # 1 where it will not be read: the derivative of that branch is then not 0 * inf
            den = jnp.where(uw == 0, jnp.ones_like(den), den)
            size = _tree.scalar_like(step, v) / den
            if bounded:
                size = jnp.clip(
                    size, _tree.scalar_like(lower, size), _tree.scalar_like(upper, size)
                )
            # A coordinate with no gradient yet (v = 0, eps = 0) takes no step, not 0 * inf.
            return jnp.where(uw == 0, jnp.zeros_like(uw), size.astype(wide) * uw).astype(u.dtype)

        out = jax.tree.map(one, updates, nu_max if amsbound else nu)
        return out, ScaleByBoundedRmsState(nu, nu_max)

    return GradientTransformation(init, update)

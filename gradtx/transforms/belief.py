"""Division by the root of an EMA of the squared prediction error (AdaBelief)."""

from __future__ import annotations

from typing import Any
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


class ScaleByBeliefState(NamedTuple):
    """``nu``: ``s_t = decay · s_{t-1} + (1 - decay) |g_t - m_t|² + eps_root``, the
    EMA of the squared prediction error (AdaBelief's "belief")."""

    nu: Updates


def belief_ema(decay: Any, eps_root: Any):
    """``(s, g, m) -> b s + (1 - b) |g - m|² + eps_root`` for one leaf: AdaBelief's
    second moment of the prediction error, in at least float32, stored in ``s``'s dtype."""

    def one(s, g, m):
        wide = _dtypes.compute_dtype(s.dtype, g.dtype, m.dtype)
        error = g.astype(wide) - m.astype(wide)
        real = _dtypes.real_dtype(wide)  # |error|² is real, so is the state
        new = _numerics.ema(decay, s.astype(real), _tree.abs_sq(error).astype(real))
        return (new + _tree.scalar_like(eps_root, new)).astype(s.dtype)

    return one


@factory(
    counted=True,
    decay=DECAY_RATE,
    eps=NON_NEGATIVE,
    eps_root=NON_NEGATIVE,
    nesterov=DECAY_RATE._replace(nullable=True),
    dtype=DType(),
)
def scale_by_belief(
    decay: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    *,
    nesterov: float | None = None,
    dtype: DTypeLike | None = None,
) -> GradientTransformation:
    """Divide the prediction ``m_t`` by the root of the EMA of ``(g_t - m_t)²``.

    The input is the prediction ``m_t`` of the gradient: put this right after
    ``add_momentum(b1, ema=True)``, whose output is ``m_t``.  With ``g_t`` the
    gradient (the chain's ``grads``) and ``t`` from 1::

      s_t = decay · s_{t-1} + (1 - decay) |g_t - m_t|² + eps_root     (s_0 = 0)
      ŝ_t = s_t / (1 - decay^t)
      out = m_t / (sqrt(ŝ_t) + eps)

    AdaBelief's denominator (Zhuang et al.): it measures how far the gradient
    is from its prediction ("belief"), where Adam's measures the gradient
    itself.  ``eps_root`` is added to ``s_t`` every step and so enters the
    state, as ``optax.scale_by_belief`` does.  The first moment's bias
    correction is left to ``bias_correct(b1)`` after it.

    With ``nesterov = b1`` (the rate of the EMA that made ``m_t``) the output
    is Dozat's bias-corrected look-ahead instead, as ``optax.adabelief(nesterov=True)``
    (no ``bias_correct`` follows then)::

      out = (b1 m_t / (1 - b1^{t+1}) + (1 - b1) g_t / (1 - b1^t)) / (sqrt(ŝ_t) + eps)

    A coordinate whose numerator and denominator are both 0 takes no step.
    Statistics are computed in at least float32 and stored in ``dtype``.

    Args:
      decay: the EMA rate of the squared prediction error (AdaBelief's b2), in [0, 1).
      eps: added outside the root.
      eps_root: added to ``s_t`` at every step (inside the root).
      nesterov: ``None``, or the prediction's EMA rate b1 for the Nesterov look-ahead.
      dtype: storage dtype of ``s`` (``None``: the params' dtype; float32 for 16-bit params).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale_by_belief(0.5, eps=0.0, eps_root=0.0)
      >>> m, g = jnp.array([1.0, -1.0]), jnp.array([3.0, 1.0])  # errors 2 and 2
      >>> tx.update(m, tx.init(m), grads=g)[0]  # s = 0.5 · 4, ŝ = s / 0.5 = 4
      Array([ 0.5, -0.5], dtype=float32)

    References:
      Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in
      Observed Gradients", NeurIPS 2020.
    """
    call = current_call("gradtx.scale_by_belief")

    def init(params):
        return ScaleByBeliefState(_tree.squares_like(params, 0.0, dtype))

    def update(updates, state, params=None, **extra):
        grads = gradient(updates, extra)
        t = _numerics.safe_increment(step_count(extra, call))
        correction = _numerics.bias_correction(decay, t)

        nu = jax.tree.map(belief_ema(decay, eps_root), state.nu, grads, updates)
        if nesterov is not None:
            ahead = _numerics.bias_correction(nesterov, _numerics.safe_increment(t))
            now = _numerics.bias_correction(nesterov, t)

        def scale(m, s, g):
            wide = _dtypes.compute_dtype(m.dtype, s.dtype, g.dtype)
            s_hat = jnp.real(s.astype(wide))
            s_hat = s_hat / correction.astype(s_hat.dtype)
            denom = _numerics.safe_sqrt(s_hat) + _tree.scalar_like(eps, s_hat)
            num = m.astype(wide)
            if nesterov is not None:
                b1 = jnp.asarray(nesterov).astype(wide)
                num = b1 * (num / ahead.astype(wide)) + _numerics.one_minus(nesterov, wide) * (
                    g.astype(wide) / now.astype(wide)
                )
            return _numerics.div0(num, denom.astype(num.dtype)).astype(m.dtype)

        return jax.tree.map(scale, updates, nu, grads), ScaleByBeliefState(nu)

    return GradientTransformation(init, update)

"""AdaDelta's unit-correcting ratio of two running RMS values."""

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
from gradtx._factory import factory
from gradtx._specs import DECAY_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import DType


class ScaleByAdadeltaState(NamedTuple):
    """``e_g2``: E[g²], the EMA of squared gradients; ``e_dx2``: E[Δx²], of squared steps."""

    e_g2: Updates
    e_dx2: Updates


@factory(rho=DECAY_RATE, eps=NON_NEGATIVE, dtype=DType())
def scale_by_adadelta(
    rho: float = 0.9, eps: float = 1e-6, *, dtype: DTypeLike | None = None
) -> GradientTransformation:
    """AdaDelta's step: ``u <- RMS[Δx]_{t-1} / RMS[g]_t * u``.

    With ``RMS[y]_t = sqrt(E[y²]_t + eps)``::

      E[g²]_t  = rho E[g²]_{t-1}  + (1 - rho) g_t²
      Δx_t     = sqrt(E[Δx²]_{t-1} + eps) / sqrt(E[g²]_t + eps) · u_t
      E[Δx²]_t = rho E[Δx²]_{t-1} + (1 - rho) Δx_t²

    and the output is ``Δx_t`` (positive along the gradient: follow it with
    ``scale_by_learning_rate(1.0)`` to descend).  Both accumulators start at 0;
    with ``eps = 0`` a coordinate with nothing accumulated takes no step.
    ``g`` is the chain's ``grads`` keyword when present, else the input.

    Args:
      rho: decay of both averages, in [0, 1).  PyTorch and optax 0.9; the paper's
        experiments 0.95.
      eps: inside both roots (1e-6 everywhere).
      dtype: storage dtype of the accumulators (``None``: the params' dtype;
        float32 for 16-bit params).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.chain(gradtx.scale_by_adadelta(), gradtx.scale_by_learning_rate(1.0))
      >>> state = tx.init(jnp.zeros(2))
      >>> updates, state = tx.update(jnp.array([1.0, -1.0]), state)

    References:
      Zeiler, "ADADELTA: An Adaptive Learning Rate Method", arXiv:1212.5701, Alg. 1.
    """

    def init(params):
        return ScaleByAdadeltaState(
            _tree.squares_like(params, 0.0, dtype), _tree.squares_like(params, 0.0, dtype)
        )

    def update(updates, state, params=None, **extra):
        e_g2 = jax.tree.map(
            lambda v, g: _numerics.ema_of_square(rho, v, g),
            state.e_g2,
            gradient(updates, extra),
        )

        def delta(u, v, x):
            wide = _dtypes.compute_dtype(u.dtype, v.dtype)
            v, x = jnp.real(v.astype(wide)), jnp.real(x.astype(wide))
            e = _tree.scalar_like(eps, v)
            # torch's order of operations
            ratio = _numerics.div0(_numerics.safe_sqrt(x + e), _numerics.safe_sqrt(v + e))
            return (ratio.astype(wide) * u.astype(wide)).astype(u.dtype)

        out = jax.tree.map(delta, updates, e_g2, state.e_dx2)
        # The step accumulator holds the step before the learning rate, as in
        # PyTorch and optax (the paper has no learning rate).
        e_dx2 = _numerics.ema_of_square(rho, state.e_dx2, out)
        return out, ScaleByAdadeltaState(e_g2, e_dx2)

    return GradientTransformation(init, update)

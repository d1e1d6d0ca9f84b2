"""MADGRAD's dual averaging with a cube-root denominator."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _tree
from gradtx._base import GradientTransformation
from gradtx._base import Params
from gradtx._base import ScalarOrSchedule
from gradtx._base import Updates
from gradtx._base import gradient
from gradtx._base import step_count
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._specs import LEARNING_RATE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import DType


class DualAverageState(NamedTuple):
    """``sum_of_squares``: ``G_k = Σ λ_j g_j²``; ``sum_of_gradients``:
    ``s_k = Σ λ_j g_j``; ``x0``: the params ``init`` was given (the centre)."""

    sum_of_squares: Updates
    sum_of_gradients: Updates
    x0: Params


@factory(counted=True, learning_rate=LEARNING_RATE, eps=NON_NEGATIVE, dtype=DType())
def dual_average(
    learning_rate: ScalarOrSchedule, eps: float = 1e-6, *, dtype: DTypeLike | None = None
) -> GradientTransformation:
    """The step to MADGRAD's dual-averaging iterate ``z``.

    With ``k`` the 0-based step and ``η_k`` the learning rate::

      λ_k = (η_k + eps) · sqrt(k + 1)
      G_{k+1} = G_k + λ_k g_k²,    s_{k+1} = s_k + λ_k g_k      (G_0 = s_0 = 0)
      z_{k+1} = x_0 - s_{k+1} / (G_{k+1}^{1/3} + eps)
      out = z_{k+1} - x_k

    ``x_0`` is the params given to ``init`` and ``x_k`` those given to
    ``update``.  Applied as is, the params jump to ``z`` (dual averaging);
    MADGRAD moves a fraction ``1 - momentum`` of the way (``gradtx.scale``
    after this).  The learning rate is inside the averaging weights (it
    cannot be a last stage: the step grows as ``η^{2/3}``), with ``eps``
    added to it as in the authors' code and ``optax.contrib.madgrad``.  A
    coordinate with nothing accumulated and ``eps = 0`` stays at ``x_0``.

    ``g`` is the chain's ``grads`` keyword when present, else the input (the
    output does not scale the input: it replaces it).  ``update`` needs the params.

    Args:
      learning_rate: η, a number or schedule (of the 0-based step).
      eps: added to η and to the cube root.
      dtype: storage dtype of ``G`` and ``s`` (``None``: the params' dtype;
        ``G`` in float32 for 16-bit params).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.dual_average(1.0, eps=0.0)
      >>> x = jnp.zeros(2)
      >>> tx.update(jnp.array([8.0, -1.0]), tx.init(x), x)[0]  # -g / |g|^(2/3)
      Array([-2.,  1.], dtype=float32)

    References:
      Defazio & Jelassi, "Adaptivity without Compromise: A Momentumized,
      Adaptive, Dual Averaged Gradient Method for Stochastic Optimization",
      JMLR 2022 (arXiv:2101.11075).
    """

    def init(params):
        return DualAverageState(
            _tree.squares_like(params, 0.0, dtype),
            _tree.zeros_like(params, dtype),
            jax.tree.map(jnp.array, params),  # a copy, in the params' dtype and sharding
        )

    def update(updates, state, params=None, **extra):
        call = current_call("gradtx.dual_average")
        if params is None:
            raise ValueError(f"{call}: update needs params (the step is z - params)")
        k = step_count(extra, call)
        lr = _dtypes.as_float(learning_rate)
        steps = _numerics.safe_increment(k).astype(lr.dtype)  # k + 1, saturating
        weight = (lr + jnp.asarray(eps).astype(lr.dtype)) * jnp.sqrt(steps)

        def accumulate(total, g, square):
            wide = _dtypes.compute_dtype(total.dtype, g.dtype)
            g = g.astype(wide)
            if square:  # |g|² is real: summed in the real dtype, no complex-to-real cast
                wide = _dtypes.real_dtype(wide)
                g = _tree.abs_sq(g).astype(wide)
            return (total.astype(wide) + weight.astype(wide) * g).astype(total.dtype)

        grads = gradient(updates, extra)
        squares = jax.tree.map(lambda t, g: accumulate(t, g, True), state.sum_of_squares, grads)
        sums = jax.tree.map(lambda t, g: accumulate(t, g, False), state.sum_of_gradients, grads)

        def step(u, sq, s, x0, x):
            wide = _dtypes.compute_dtype(u.dtype, sq.dtype, s.dtype, x.dtype)
            root = _numerics.safe_cbrt(jnp.real(sq.astype(wide)))
            sigma = (root + _tree.scalar_like(eps, root)).astype(wide)
            z = x0.astype(wide) - _numerics.div0(s.astype(wide), sigma)
            return (z - x.astype(wide)).astype(u.dtype)

        out = jax.tree.map(step, updates, squares, sums, state.x0, params)
        return out, DualAverageState(squares, sums, state.x0)

    return GradientTransformation(init, update)

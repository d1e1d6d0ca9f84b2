"""Division by the root of a running *sum* of squared gradients (Adagrad)."""

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
from gradtx._specs import INITIAL_VALUE
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import DType
from gradtx._specs import Flag


class ScaleByRssState(NamedTuple):
    """``sum_of_squares``: ``S_t = S_0 + Σ_{s≤t} |g_s|²``."""

    sum_of_squares: Updates


@factory(initial_accumulator_value=INITIAL_VALUE, eps=NON_NEGATIVE, eps_in_sqrt=Flag(),
         dtype=DType())  # fmt: skip
def scale_by_rss(
    initial_accumulator_value: float = 0.0,
    eps: float = 1e-10,
    *,
    eps_in_sqrt: bool = False,
    dtype: DTypeLike | None = None,
) -> GradientTransformation:
    """Divide the updates by the root of the sum of all squared gradients so far.

    ``S_t = S_{t-1} + g_t²`` with ``S_0 = initial_accumulator_value``, and
    ``u <- u / (sqrt(S_t) + eps)`` (PyTorch's Adagrad and the paper's δ), or
    ``u / sqrt(S_t + eps)`` with ``eps_in_sqrt`` (optax's ``scale_by_rss``).
    Where the denominator is 0 (nothing accumulated and ``eps = 0``) a zero
    input gives 0, as in optax, not ``0 / 0``; a NaN gradient stays NaN.

    ``g`` is the chain's ``grads`` keyword when present, else the input, as in
    ``scale_by_rms``.

    Args:
      initial_accumulator_value: ``S_0`` (PyTorch 0, optax 0.1), non-negative.
      eps: added outside the root (inside with ``eps_in_sqrt``).  PyTorch 1e-10,
        optax 1e-7.
      eps_in_sqrt: put ``eps`` inside the root (optax's placement).
      dtype: storage dtype of ``S`` (``None``: the params' dtype; float32 for
        float16 params).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale_by_rss()
      >>> state = tx.init(jnp.zeros(2))
      >>> tx.update(jnp.array([3.0, -4.0]), state)[0]
      Array([ 1., -1.], dtype=float32)

    References:
      Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning
      and Stochastic Optimization", JMLR 2011.
    """

    def init(params):
        return ScaleByRssState(_tree.squares_like(params, initial_accumulator_value, dtype))

    def update(updates, state, params=None, **extra):
        def accumulate(s, g):
            sq = _tree.squared(g, s)
            return (s.astype(sq.dtype) + sq).astype(s.dtype)

        total = jax.tree.map(accumulate, state.sum_of_squares, gradient(updates, extra))

        def scale(u, s):
            wide = _dtypes.compute_dtype(u.dtype, s.dtype)
            s = jnp.real(s.astype(wide))
            e = _tree.scalar_like(eps, s)
            denom = _numerics.safe_sqrt(s + e) if eps_in_sqrt else _numerics.safe_sqrt(s) + e
            return _numerics.div0(u.astype(wide), denom.astype(wide)).astype(u.dtype)

        return jax.tree.map(scale, updates, total), ScaleByRssState(total)

    return GradientTransformation(init, update)

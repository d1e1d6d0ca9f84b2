"""SM3's memory-efficient Adagrad: one accumulator per row, column, ... of each leaf."""

from __future__ import annotations

import functools
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _tree
from gradtx._base import GradientTransformation
from gradtx._base import gradient
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import DType


class ScaleBySm3State(NamedTuple):
    """``accumulators``: per leaf, a list of one vector per axis (``μ(r)`` of the
    cover's sets: the running max of the squared-gradient sums along that
    axis); a leaf of fewer than two axes keeps one accumulator per element."""

    accumulators: Any


def _axis_zeros(p: jax.Array, axis: int, dtype: Any) -> jax.Array:
    """Zeros shaped like ``p``'s ``axis`` (the sum over the other axes keeps its sharding)."""
    others = tuple(i for i in range(p.ndim) if i != axis)
    shape = jax.eval_shape(functools.partial(jnp.sum, axis=others), p)
    return jnp.zeros_like(shape, dtype=dtype)


def _broadcast(vector: jax.Array, ndim: int, axis: int) -> jax.Array:
    """``vector`` of axis ``axis`` reshaped to broadcast against a rank-``ndim`` leaf."""
    return vector.reshape([1] * axis + [vector.shape[0]] + [1] * (ndim - axis - 1))


def _cover_max(nu: jax.Array, axis: int) -> jax.Array:
    """The max of ``nu`` over every axis but ``axis``; 0 where that is empty (a leaf of
    shape (0, n)): ``nu >= 0``, so 0 is also the max's neutral element."""
    others = tuple(i for i in range(nu.ndim) if i != axis)
    return jnp.max(nu, axis=others, initial=jnp.zeros([], nu.dtype))


@factory(eps=NON_NEGATIVE, dtype=DType())
def scale_by_sm3(eps: float = 1e-8, *, dtype: DTypeLike | None = None) -> GradientTransformation:
    """Divide by the root of SM3's cover-based sum of squared gradients.

    For a leaf with axes ``1..k`` (the cover: one set per row, one per
    column, ...), accumulators ``μ_r`` per index of each axis (``μ_0 = 0``)::

      ν_t(i) = min over the axes r of μ_{t-1}^r(i_r) + g_t(i)²
      μ_t^r(j) = max over the entries i with i_r = j of ν_t(i)
      out(i) = u(i) / sqrt(ν_t(i) + eps)        (0 where ν_t(i) = 0)

    SM3-II (Anil et al., 2019): Adagrad's per-coordinate sum bounded by
    per-axis maxima, in memory ``Σ_r n_r`` instead of ``Π_r n_r``.  A leaf
    with one axis (or none) keeps one accumulator per element: plain
    Adagrad.  ``optax.scale_by_sm3`` with its default ``b2 = 1``; its
    momentum is a separate stage here (``add_momentum(b1, ema=True)`` after
    this, as ``gradtx.sm3`` does).  Statistics are computed in at least
    float32 and stored in ``dtype`` (float16 leaves: float32).  A NaN
    gradient gives NaN steps wherever it reaches through the covers (optax's
    step is 0 there once its accumulator is NaN).

    ``g`` is the chain's ``grads`` keyword when present, else the input.  It
    needs each leaf's axes, so it refuses to run inside ``gradtx.flatten``.

    Args:
      eps: added inside the root.
      dtype: storage dtype of the accumulators (``None``: the params' dtype,
        float32 for 16-bit params).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale_by_sm3(eps=0.0)
      >>> g = jnp.array([[3.0, 0.0], [0.0, 4.0]])
      >>> tx.update(g, tx.init(g))[0]  # first step: g / |g|
      Array([[1., 0.],
             [0., 1.]], dtype=float32)

    References:
      Anil, Gupta, Koren & Singer, "Memory-Efficient Adaptive Optimization",
      NeurIPS 2019 (arXiv:1901.11150).
    """

    def init(params):
        def one(p):
            store = _dtypes.square_dtype(jnp.result_type(p), dtype)
            if p.ndim < 2:
                return [jnp.zeros_like(p, dtype=store)]
            return [_axis_zeros(p, axis, store) for axis in range(p.ndim)]

        return ScaleBySm3State(jax.tree.map(one, params))

    def update(updates, state, params=None, **extra):
        call = current_call("gradtx.scale_by_sm3")
        _tree.check_per_leaf(call, "gradtx.scale_by_sm3")
        grads = gradient(updates, extra)
        leaves, treedef = jax.tree.flatten(updates)
        accumulators = treedef.flatten_up_to(state.accumulators)
        out, new = [], []
        for u, g, slot in zip(leaves, treedef.flatten_up_to(grads), accumulators):
            # A list from init, or Flax NNX's mapping {0: ..., 1: ...} of it.
            acc = jax.tree.leaves(slot)
            wide = _dtypes.compute_dtype(u.dtype, g.dtype, acc[0].dtype)
            g2 = _tree.abs_sq(g.astype(wide)).real.astype(_dtypes.real_dtype(wide))
            if g.ndim < 2:
                nu = g2 + acc[0].astype(g2.dtype)
                new.append([nu.astype(acc[0].dtype)])
            else:
                cover = functools.reduce(
                    jnp.minimum, [_broadcast(a, g.ndim, r) for r, a in enumerate(acc)]
                )
                nu = g2 + cover.astype(g2.dtype)
                new.append([_cover_max(nu, r).astype(a.dtype) for r, a in enumerate(acc)])
            denom = _numerics.safe_sqrt(nu + _tree.scalar_like(eps, nu))
            # nu == 0 only where every gradient so far was 0; a NaN nu must give a NaN step,
            # not the 0 that a test of nu > 0 gives it (optax's does).
            x = u.astype(wide)
            denom = jnp.where(nu == 0, jnp.ones_like(denom), denom)  # not read there: no 0 * inf
            step = jnp.where(nu == 0, x * jnp.zeros([], wide), x / denom.astype(wide))
            out.append(step.astype(u.dtype))
        return treedef.unflatten(out), ScaleBySm3State(treedef.unflatten(new))

    return GradientTransformation(init, update)

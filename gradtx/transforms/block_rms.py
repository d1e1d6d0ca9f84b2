"""The RMS of a whole leaf: clipping the updates by it, scaling them by the params'."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _tree
from gradtx._base import EmptyState
from gradtx._base import GradientMap
from gradtx._base import GradientTransformation
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import Hyper


def leaf_rms(x: jax.Array, dtype: jnp.dtype) -> jax.Array:
    """``sqrt(mean(|x|²))`` over the whole leaf, computed in ``dtype`` (0-D leaves too)."""
    return _numerics.safe_sqrt(jnp.mean(jnp.real(_tree.abs_sq(x.astype(dtype)))))


@factory(kind=GradientMap, threshold=Hyper(low=0.0, low_open=True))
def clip_by_block_rms(threshold: float = 1.0) -> GradientMap:
    """Rescale each leaf so that its RMS is at most ``threshold``.

    ``u <- u / max(1, RMS(u) / threshold)`` leaf by leaf, with ``RMS(u) =
    sqrt(mean(|u|²))`` over the leaf: Adafactor's update clipping (Shazeer &
    Stern, §6), ``d`` in ``torch.optim.Adafactor``, ``optax.clip_by_block_rms``.
    A gradient map.  Needs each leaf's own elements, so it refuses to run
    inside ``gradtx.flatten``.

    Args:
      threshold: the largest RMS a leaf keeps, > 0 (optax's range; torch's
        Adafactor takes ``d >= 1``, as ``gradtx.adafactor`` does).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.clip_by_block_rms(1.0)
      >>> tx.update(jnp.array([3.0, -4.0]), tx.init(jnp.zeros(2)))[0]  # RMS 3.54 -> 1
      Array([ 0.84852815, -1.1313709 ], dtype=float32)
    """

    def update(updates, state, params=None, **extra):
        _tree.check_per_leaf(current_call("gradtx.clip_by_block_rms"), "gradtx.clip_by_block_rms")

        def one(u):
            wide = _dtypes.compute_dtype(u.dtype)
            d = jnp.asarray(threshold).astype(_dtypes.real_dtype(wide))
            denom = jnp.maximum(1, leaf_rms(u, wide) / d)
            return (u.astype(wide) / denom.astype(wide)).astype(u.dtype)

        return jax.tree.map(one, updates), state

    return GradientMap(lambda params: EmptyState(), update)


@factory(min_scale=NON_NEGATIVE)
def scale_by_param_rms(min_scale: float = 1e-3) -> GradientTransformation:
    """Multiply each leaf of the updates by ``max(min_scale, RMS(θ))`` of its parameter.

    Adafactor's relative step (Shazeer & Stern, §8): a step in units of the
    parameter's scale.  ``min_scale`` is torch's ``eps2``
    (``torch.optim.Adafactor``) and ``optax.scale_by_param_block_rms``'s
    ``min_scale``.  Needs each leaf's own elements, so it refuses to run
    inside ``gradtx.flatten``; and ``update`` needs the params.

    Args:
      min_scale: the smallest scale, for parameters near 0 (e.g. at init).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale_by_param_rms()
      >>> p = jnp.array([3.0, -4.0])
      >>> tx.update(jnp.ones(2), tx.init(p), p)[0]  # RMS(θ) = sqrt(12.5)
      Array([3.535534, 3.535534], dtype=float32)
    """

    def update(updates, state, params=None, **extra):
        call = current_call("gradtx.scale_by_param_rms")
        _tree.check_per_leaf(call, "gradtx.scale_by_param_rms")
        if params is None:
            raise ValueError(f"{call}: update needs params (the step scales with RMS(params))")

        def one(u, p):
            wide = _dtypes.compute_dtype(u.dtype, p.dtype)
            floor = jnp.asarray(min_scale).astype(_dtypes.real_dtype(wide))
            scale = jnp.maximum(floor, leaf_rms(p, wide))
            return (u.astype(wide) * scale.astype(wide)).astype(u.dtype)

        return jax.tree.map(one, updates, params), state

    return GradientTransformation(lambda params: EmptyState(), update)

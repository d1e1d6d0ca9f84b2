"""Gradient centralisation (Yong et al. 2020), the first stage of Ranger."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradtx import _tree
from gradtx._base import EmptyState
from gradtx._base import GradientMap
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._specs import Flag
from gradtx._specs import Int


@factory(kind=GradientMap, channel_axis=Int(low=None), conv_only=Flag())
def centralize(*, channel_axis: int = 0, conv_only: bool = False) -> GradientMap:
    """Subtract from each output channel's gradient its mean.

    For every leaf with more than one axis (more than three with
    ``conv_only``), ``g <- g - mean(g over all axes but channel_axis)``; vectors
    and scalars (biases, norms) pass unchanged.  The default ``channel_axis=0``
    is PyTorch's layout (``Linear.weight`` is ``(out, in)``, conv weights are
    ``(out, in, h, w)``), which is what Ranger and the reference packages use.
    Flax and Haiku kernels put the output features last: pass
    ``channel_axis=-1`` there.

    A gradient map, so the statistics after it in a ``chain`` (both Adam
    moments) see the centralised gradient, as in the official Ranger.

    Args:
      channel_axis: the output-channel axis, kept; the mean runs over the others.
      conv_only: centralise only leaves with four or more axes (Ranger's
        ``gc_conv_only``).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.centralize()
      >>> g = {"w": jnp.array([[1.0, 3.0], [0.0, 4.0]]), "b": jnp.array([1.0, 2.0])}
      >>> out, _ = tx.update(g, tx.init(g))
      >>> out["w"].tolist(), out["b"].tolist()
      ([[-1.0, 1.0], [-2.0, 2.0]], [1.0, 2.0])

    References:
      Yong et al., "Gradient Centralization: A New Optimization Technique for
      Deep Neural Networks", ECCV 2020 (arXiv:2004.01461).
    """
    call = current_call("gradtx.centralize")
    min_ndim = 4 if conv_only else 2

    def update(updates, state, params=None, **extra):
        _tree.check_per_leaf(call, "gradtx.centralize")

        def one(g):
            ndim = jnp.ndim(g)
            if ndim < min_ndim:
                return g
            if not -ndim <= channel_axis < ndim:
                raise ValueError(
                    f"{call}(channel_axis={channel_axis}): out of range for a leaf of shape "
                    f"{jnp.shape(g)}"
                )
            keep = channel_axis % ndim
            axes = tuple(a for a in range(ndim) if a != keep)
            return g - jnp.mean(g, axis=axes, keepdims=True).astype(g.dtype)

        return jax.tree.map(one, updates), state

    return GradientMap(lambda params: EmptyState(), update)

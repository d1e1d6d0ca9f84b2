"""Clipping: element-wise and by the global norm.

Both are gradient maps: a clipped gradient is still a gradient, so statistics
later in a ``gradtx.chain`` (momentum, second moments) see the clipped values,
as with ``torch.nn.utils.clip_grad_norm_`` called before ``optimizer.step()``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradtx import _dtypes
from gradtx import _tree
from gradtx import _update_checks
from gradtx._base import EmptyState
from gradtx._base import GradientMap
from gradtx._base import ScalarOrSchedule
from gradtx._base import step_count
from gradtx._build import current_call
from gradtx._build import reads_count
from gradtx._factory import factory
from gradtx._specs import Hyper
from gradtx.transforms._sums import tree_norm
from gradtx.transforms.scaling import scaled


def global_norm(tree: Any, dtype: Any) -> jax.Array:
    """``sqrt(sum of squares of every leaf)`` computed in ``dtype`` (0 for no leaves).

    The sum runs in ``dtype`` (the hyperparameters' float dtype), not in the
    leaves' dtype, so bfloat16 gradients do not lose the norm to rounding.  A
    complex leaf counts ``|z|² = Re(z)² + Im(z)²``, as in ``torch.linalg.norm``.
    """
    return tree_norm(tree, dtype)


@factory(kind=GradientMap, max_delta=Hyper(low=0.0, schedule=True))
def clip(max_delta: ScalarOrSchedule) -> GradientMap:
    """Clip each element of the updates to ``[-max_delta, max_delta]``.

    Equals ``optax.clip`` and ``torch.nn.utils.clip_grad_value_`` (the
    ``clip_value`` there).  ``max_delta`` is stored in state.  Built inside
    another factory's body from a function of the step count (ADOPT's
    ``clip_value_fn``), it calls that function with the owner's count.

    Args:
      max_delta: non-negative bound (a number or schedule).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.clip(1.0)
      >>> tx.update(jnp.array([-3.0, 0.5]), tx.init(jnp.zeros(2)))[0]
      Array([-1. ,  0.5], dtype=float32)
    """

    if callable(max_delta):
        reads_count()  # a function of the step made inside a body (adopt's clip_value_fn)

    call = current_call("gradtx.clip")

    def update(updates, state, params=None, **extra):
        # jnp.clip has no order on complex numbers (torch's clip_grad_value_ neither).
        _update_checks.check_real(call, updates, "clipping by value needs real updates")
        bound = max_delta
        if callable(bound):
            bound = bound(step_count(extra, call))

        def one(u):
            m = _tree.scalar_like(bound, u)
            return jnp.clip(u, -m, m)

        return jax.tree.map(one, updates), state

    return GradientMap(lambda params: EmptyState(), update)


@factory(kind=GradientMap, max_norm=Hyper(low=0.0, low_open=True, schedule=True),
         eps=Hyper(low=0.0, optional=True))  # fmt: skip
def clip_by_global_norm(max_norm: ScalarOrSchedule, *, eps: float | None = None) -> GradientMap:
    """Rescale the updates so that their global norm is at most ``max_norm``.

    With ``n = sqrt(sum_i ||u_i||^2)`` over all leaves::

      u <- u * max_norm / (n + eps)   if n + eps > max_norm,   else u unchanged

    ``eps=None`` or 0 (default) is ``optax.clip_by_global_norm``.  ``eps=1e-6`` is
    ``torch.nn.utils.clip_grad_norm_``, which always multiplies by
    ``min(max_norm / (n + 1e-6), 1)``: the clipped norm lands slightly below
    ``max_norm`` there, and exactly on it here.  A Python zero ``eps`` is not
    stored (so it does not collide with an optimizer's ``eps`` when both sit in
    one chain); a non-zero one is a hyperparameter like ``max_norm``.

    The norm is taken in JAX's default float dtype (float32, or float64 under
    x64) whatever the leaves' dtypes.

    Args:
      max_norm: positive bound on the global norm (a number or schedule).
      eps: added to the norm before dividing (torch uses 1e-6; ``None``: none).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.clip_by_global_norm(1.0)
      >>> g = {"w": jnp.array([3.0, 4.0])}
      >>> tx.update(g, tx.init(g))[0]["w"]
      Array([0.6, 0.8], dtype=float32)
    """

    def update(updates, state, params=None, **extra):
        bound = _dtypes.as_float(max_norm)  # a float32 array under x64: the norm in float64
        norm = global_norm(updates, bound.dtype)
        denom = norm if eps is None else norm + jnp.asarray(eps).astype(bound.dtype)
        # Clip only when the norm exceeds max_norm: below it the updates pass
        # bit for bit, and a zero gradient never divides by zero.  A NaN norm
        # "exceeds" it, so that every leaf turns NaN (as optax's and torch's do)
        # instead of the others passing unclipped.
        clipped = ~(denom <= bound)
        factor = jnp.where(clipped, bound / jnp.where(clipped, denom, 1), 1)
        # in at least float32: cast to float16 first, max_norm / norm flushes to 0
        return scaled(updates, factor), state

    return GradientMap(lambda params: EmptyState(), update)

"""Polyak's step size, from the loss value passed to ``update``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _control
from gradtx import _dtypes
from gradtx import _tree
from gradtx import _update_checks
from gradtx._base import EmptyState
from gradtx._base import GradientTransformation
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._specs import NON_NEGATIVE
from gradtx._specs import Choice
from gradtx._specs import Hyper

# optax's threshold under which the squared norm counts as 0 (float64's epsilon).
TINY = float(np.finfo(np.float64).eps)


@factory(f_min=Hyper(), max_learning_rate=NON_NEGATIVE, eps=NON_NEGATIVE,
         variant=Choice("sps", "sps+"))  # fmt: skip
def scale_by_polyak(
    f_min: float = 0.0, max_learning_rate: float = 1.0, eps: float = 0.0, variant: str = "sps"
) -> GradientTransformation:
    """Multiply the updates by Polyak's step size, from the loss ``value``.

    ``update(updates, state, params, value=f(θ))``::

      γ = min((f(θ) - f_min) / (‖u‖² + eps), max_learning_rate)
      out = γ · u,   with γ = 0 where ‖u‖² + eps ≤ 2.2e-16 (or both overflow to ∞)

    ``‖u‖²`` is the squared norm of the whole input tree (all leaves).
    ``variant="sps+"`` uses ``max(f(θ) - f_min, 0)`` (Garrigos et al.).  The
    norm is the input's, as in ``optax.scale_by_polyak``: placed after
    ``scale_by_learning_rate(s)`` (as ``gradtx.polyak_sgd`` does) it is
    ``s²‖g‖²``.  The step is computed in the hyperparameters' precision (at
    least float32, whatever the leaves' dtype); the threshold is float64's
    machine epsilon, as optax's.  Where the loss and ``‖u‖²`` are both
    infinite (an overflowing gradient), optax's ``∞/∞`` gives NaN; here no step.

    Args:
      f_min: a lower bound on the loss (its minimum where the model
        interpolates the data: 0).
      max_learning_rate: the cap on γ.
      eps: added to the squared norm.
      variant: ``"sps"`` or ``"sps+"`` (the non-negative part of the gap).

    Example:
      >>> import gradtx, jax, jax.numpy as jnp
      >>> f = lambda w: jnp.sum(w ** 2)
      >>> w = jnp.array([1.0, 2.0])
      >>> tx = gradtx.scale_by_polyak()
      >>> value, g = jax.value_and_grad(f)(w)  # 5, [2, 4]
      >>> tx.update(g, tx.init(w), w, value=value)[0]  # γ = 5 / 20
      Array([0.5, 1. ], dtype=float32)

    References:
      Loizou, Vaswani, Laradji & Lacoste-Julien, "Stochastic Polyak Step-size
      for SGD", AISTATS 2021 (arXiv:2002.10542); Garrigos, Gower & Schaipp,
      "Function Value Learning", 2023 (arXiv:2307.14528).
    """

    def update(updates, state, params=None, **extra):
        call = current_call("gradtx.scale_by_polyak")
        value = extra.get("value")
        if value is None:
            raise _update_checks.missing_keyword(
                f"{call}: update needs the loss as the keyword value, update(grads, state, "
                "params, value=loss): the step is (value - f_min) / ‖g‖²"
            )
        value = _update_checks.scalar_loss(f"{call}.update", value)
        cap = _dtypes.as_float(max_learning_rate)
        dtype = cap.dtype
        sq_norm = _tree.sum_of_squares(updates, dtype)
        gap = value.astype(dtype) - jnp.asarray(f_min).astype(dtype)
        if variant == "sps+":
            gap = jnp.maximum(gap, 0)
        gamma = _control.once(_step_size, sq_norm, gap, jnp.asarray(eps).astype(dtype), cap)

        def one(u):
            wide = _dtypes.compute_dtype(u.dtype, dtype)
            return (u.astype(wide) * gamma.astype(wide)).astype(u.dtype)

        return jax.tree.map(one, updates), state

    return GradientTransformation(lambda params: EmptyState(), update)


def _step_size(sq_norm: jax.Array, gap: jax.Array, eps: jax.Array, cap: jax.Array) -> jax.Array:
    """γ from the tree-wide scalars, computed once per step (``_control.once``: XLA on CPU
    would copy these scalar operations into each leaf's kernel, one compile each)."""
    dtype = sq_norm.dtype
    denom = sq_norm + eps
    # No step where the norm is ~0, nor where both the loss and the norm overflowed.
    none = (denom <= TINY) | (jnp.isinf(gap) & jnp.isinf(denom))
    ratio = gap / jnp.where(none, jnp.ones([], dtype), denom)
    return jnp.where(none, jnp.zeros([], dtype), jnp.minimum(ratio, cap.astype(dtype)))

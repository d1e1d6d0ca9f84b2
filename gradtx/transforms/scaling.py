"""Scaling by constants and by the learning rate."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradtx import _tree
from gradtx._base import (
    EmptyState,
    GradientMap,
    GradientTransformation,
    ScalarOrSchedule,
    Updates,
    step_count,
)
from gradtx._factory import LEARNING_RATE, Flag, Hyper, current_call, factory, reads_count


def scaled(updates: Updates, factor: Any) -> Updates:
    """``updates * factor`` leaf by leaf, in at least float32, each in its own dtype."""

    def one(u):
        dtype = _tree.compute_dtype(u.dtype)
        if dtype == u.dtype:
            return u * _tree.scalar_like(factor, u)
        return (u.astype(dtype) * jnp.asarray(factor).astype(dtype)).astype(u.dtype)

    return jax.tree.map(one, updates)


@factory(kind=GradientMap, factor=Hyper())
def scale(factor: float) -> GradientMap:
    """Multiply the updates by ``factor`` (stored in state as ``factor``).

    A gradient map: a scaled gradient is still a gradient for the statistics
    that follow in a ``chain``.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale(-1.0)
      >>> tx.update(jnp.ones(2), tx.init(jnp.ones(2)))[0]
      Array([-1., -1.], dtype=float32)
    """

    def update(updates, state, params=None, **extra):
        return scaled(updates, factor), state

    return GradientMap(lambda params: EmptyState(), update)


@factory(learning_rate=LEARNING_RATE, flip_sign=Flag())
def scale_by_learning_rate(
    learning_rate: ScalarOrSchedule, *, flip_sign: bool = True
) -> GradientTransformation:
    """Multiply the updates by ``-learning_rate`` (a number or a schedule).

    ``u <- -eta_k * u`` where ``eta_k`` is ``learning_rate(k)`` for a schedule
    called with the 0-based step count ``k``.  Unlike optax, there is no
    ``None`` learning rate that silently skips the sign flip.

    Args:
      learning_rate: non-negative number, gradtx schedule or callable.
      flip_sign: ``False`` multiplies by ``+learning_rate`` (for ascent).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.scale_by_learning_rate(0.5)
      >>> tx.update(jnp.ones(2), tx.init(jnp.ones(2)))[0]
      Array([-0.5, -0.5], dtype=float32)
    """
    sign = -1 if flip_sign else 1
    if callable(learning_rate):
        reads_count()  # a schedule made inside a body (adagrad's lr_decay)

    def update(updates, state, params=None, **extra):
        lr = learning_rate
        if callable(lr):
            lr = lr(step_count(extra, current_call("gradtx.scale_by_learning_rate")))
        return scaled(updates, sign * jnp.asarray(lr)), state

    return GradientTransformation(lambda params: EmptyState(), update)

"""Scaling by constants and by the learning rate."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _tree
from gradtx._base import EmptyState, GradientMap, GradientTransformation, hyperparameterized
from gradtx._checks import check_flag, check_hyperparam


class ScaleByScheduleState(NamedTuple):
    """Step count for a learning rate given as a callable inside a build."""

    count: jax.Array


def _scale(*, factor):
    def update(updates, state, params=None, **extra):
        return jax.tree.map(lambda u: u * _tree.scalar_like(factor, u), updates), state

    return GradientMap(lambda params: EmptyState(), update)


def scale(factor: float) -> GradientMap:
    """Multiply the updates by ``factor`` (stored in state as ``factor``).

    A gradient map: a scaled gradient is still a gradient for the statistics
    that follow in a ``chain``.
    """
    check_hyperparam("gradtx.scale", "factor", factor)
    inner = hyperparameterized(_scale, {"factor": factor})
    return GradientMap(*inner)


def _scale_by_learning_rate(*, learning_rate, flip_sign):
    sign = -1 if flip_sign else 1
    if not callable(learning_rate):

        def update(updates, state, params=None, **extra):
            lr = sign * jnp.asarray(learning_rate)
            return jax.tree.map(lambda u: u * _tree.scalar_like(lr, u), updates), state

        return GradientTransformation(lambda params: EmptyState(), update)

    def init_schedule(params):
        return ScaleByScheduleState(jnp.zeros([], jnp.int32))

    def update_schedule(updates, state, params=None, **extra):
        lr = sign * jnp.asarray(learning_rate(state.count))
        updates = jax.tree.map(lambda u: u * _tree.scalar_like(lr, u), updates)
        return updates, ScaleByScheduleState(_tree.safe_increment(state.count))

    return GradientTransformation(init_schedule, update_schedule)


def scale_by_learning_rate(learning_rate: Any, *, flip_sign: bool = True) -> GradientTransformation:
    """Multiply the updates by ``-learning_rate`` (a number or a schedule).

    ``u <- -eta_k * u`` where ``eta_k`` is ``learning_rate(k)`` for a schedule
    called with the 0-based step count ``k``.  Unlike optax, there is no
    ``None`` learning rate that silently skips the sign flip.

    Args:
      learning_rate: non-negative number, gradtx schedule or callable.
      flip_sign: ``False`` multiplies by ``+learning_rate`` (for ascent).
    """
    call = "gradtx.scale_by_learning_rate"
    check_hyperparam(call, "learning_rate", learning_rate, low=0.0, schedule=True)
    check_flag(call, "flip_sign", flip_sign, bool)
    build = functools.partial(_scale_by_learning_rate, flip_sign=flip_sign)
    return hyperparameterized(build, {"learning_rate": learning_rate})

"""Optimism: extrapolate the updates from their last change (optimistic gradient methods)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _dtypes
from gradtx import _tree
from gradtx._base import GradientTransformation
from gradtx._base import ScalarOrSchedule
from gradtx._base import Updates
from gradtx._base import step_count
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._specs import Hyper


class AddOptimismState(NamedTuple):
    """``previous``: the last input ``u_{t-1}``."""

    previous: Updates


@factory(counted=True, alpha=Hyper(schedule=True), beta=Hyper(schedule=True))
def add_optimism(
    alpha: ScalarOrSchedule = 1.0, beta: ScalarOrSchedule = 1.0
) -> GradientTransformation:
    """Output ``α u_t + β (u_t - u_{t-1})``: the input plus its last change.

    With ``u_t`` this transform's input (the gradient in optimistic gradient
    descent, Adam's step in optimistic Adam)::

      out = (α + β) u_t - β u_{t-1}          (u_0 = u_1: the first output is α u_1)

    The ``β`` term bets that the next input changes as the last one did, an
    approximation of the extra-gradient step that needs no second gradient
    (Mokhtari et al.; Daskalakis et al.).  It damps the rotation of
    simultaneous gradient steps in min-max games.  The first step uses the
    input itself as the previous one, as ``optax.scale_by_optimistic_gradient``.

    Args:
      alpha: weight of the current input, a number or schedule.
      beta: weight of the change (the "negative momentum"), a number or schedule.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.add_optimism(1.0, 0.5)
      >>> state = tx.init(jnp.zeros(1))
      >>> out, state = tx.update(jnp.array([2.0]), state)  # α u_1
      >>> tx.update(jnp.array([3.0]), state)[0]  # 1.5 · 3 - 0.5 · 2
      Array([3.5], dtype=float32)

    References:
      Mokhtari, Ozdaglar & Pattathil, "A Unified Analysis of Extra-gradient and
      Optimistic Gradient Methods for Saddle Point Problems", AISTATS 2020;
      Daskalakis et al., "Training GANs with Optimism", ICLR 2018.
    """
    call = current_call("gradtx.add_optimism")

    def init(params):
        return AddOptimismState(_tree.zeros_like(params))

    def update(updates, state, params=None, **extra):
        first = step_count(extra, call) == 0

        def extrapolate(u, prev):
            wide = _dtypes.compute_dtype(u.dtype, prev.dtype)
            a, b = (jnp.asarray(x).astype(wide) for x in (alpha, beta))
            now = u.astype(wide)
            before = jnp.where(first, now, prev.astype(wide))
            return ((a + b) * now - b * before).astype(u.dtype)

        out = jax.tree.map(extrapolate, updates, state.previous)
        previous = jax.tree.map(lambda u, p: u.astype(p.dtype), updates, state.previous)
        return out, AddOptimismState(previous)

    return GradientTransformation(init, update)

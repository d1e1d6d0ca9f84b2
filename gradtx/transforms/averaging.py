"""Polyak–Ruppert averaging of the iterates (ASGD's ``ax``)."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from gradtx import _dtypes
from gradtx import _tree
from gradtx._base import GradientTransformation
from gradtx._base import Params
from gradtx._base import step_count
from gradtx._build import current_call
from gradtx._factory import factory
from gradtx._specs import STEP
from gradtx._specs import DType
from gradtx.schedules._counts import count_shift


class PolyakAverageState(NamedTuple):
    """``ax``: the averaged iterate (torch ASGD's ``state["ax"]``), shaped like the params."""

    ax: Params


@factory(counted=True, t0=STEP, dtype=DType())
def polyak_average(t0: float = 1e6, *, dtype: DTypeLike | None = None) -> GradientTransformation:
    """Keep a running average of the parameters after each update; pass the updates on.

    With ``k`` the 0-based step and ``θ_k' = θ + u`` the parameters this
    update leads to (``u`` this transform's input: put it last in a chain)::

      μ_k  = 1 / max(1, k - t0)
      ax  ← θ'                    if μ_k = 1    (k ≤ t0 + 1: ax follows θ)
      ax  ← ax + μ_k (θ' - ax)    otherwise     (the mean of θ' since k = t0 + 1)

    This is ``torch.optim.ASGD``'s average, with torch's weights: its ``mu``
    is the value computed at the end of the previous step, which is ``μ_k``.
    The averaged parameters are ``optax.tree_utils.tree_get(state, "ax")``.
    ``ax`` is computed in at least float32 and stored in ``dtype``.

    Args:
      t0: the step after which averaging starts (torch's ``t0``), ≥ 0.
      dtype: storage dtype of ``ax`` (``None``: the params' dtype, float32 for 16-bit ones).

    Example:
      >>> import gradtx, jax.numpy as jnp, optax
      >>> tx = gradtx.polyak_average(t0=0)
      >>> params, state = jnp.zeros(1), tx.init(jnp.zeros(1))
      >>> for _ in range(3):
      ...     u, state = tx.update(jnp.ones(1), state, params)
      ...     params = params + u
      >>> optax.tree_utils.tree_get(state, "ax")  # steps 1, 2 copy θ (μ = 1); step 3: mean of 2, 3
      Array([2.5], dtype=float32)

    References:
      Polyak & Juditsky, "Acceleration of stochastic approximation by
      averaging", SIAM J. Control Optim. 1992.
    """

    def init(params):
        return PolyakAverageState(_tree.zeros_like(params, dtype))

    def update(updates, state, params=None, **extra):
        call = current_call("gradtx.polyak_average")
        if params is None:
            raise ValueError(f"{call}: update needs params (the average is of params + updates)")
        start = jnp.asarray(t0)
        count = step_count(extra, call)
        # k - t0 as (k - ceil t0) in integers plus (ceil t0 - t0), both exact: from a
        # float32 k past 2^24 (a multiple of 2 or more there) the weights from t0 = 2^25
        # were 1, 1/4, 1/4, 1/4 instead of 1/2, 1/3, 1/4, 1/5.  Below 1 (k <= t0) either
        # way, so the weight is 1 there.  A t0 below 0 (a traced JAX array) is taken
        # as a float.
        past = count_shift(count, start).astype(start.dtype) + (jnp.ceil(start) - start)
        late = jnp.where(start < 0, count.astype(start.dtype) - start, past)
        mu = 1 / jnp.maximum(jnp.ones_like(late), late)

        def one(ax, p, u):
            u = as_returned(u, p)  # the params the user will hold: a 16-bit update rounded
            wide = _dtypes.compute_dtype(ax.dtype, p.dtype, u.dtype)
            new = (p.astype(wide) + u.astype(wide)).astype(p.dtype).astype(wide)
            m = mu.astype(wide)
            old = ax.astype(wide)
            return jnp.where(m == 1, new, old + (new - old) * m).astype(ax.dtype)

        return updates, PolyakAverageState(jax.tree.map(one, state.ax, params, updates))

    return GradientTransformation(init, update)


def as_returned(u: jax.Array, p: Any) -> jax.Array:
    """The update ``u`` of param ``p`` as the outermost gradtx call returns it.

    Inside a call, 16-bit params' updates are float32 and rounded once at the
    end (``gradtx._build.run_body``); a stage that forms the params the user
    will hold must round first, across an optimization barrier (under jit XLA may drop a
    rounding that a widening cast follows).
    """
    dtype = jnp.result_type(p)
    if u.dtype == dtype or u.dtype != _dtypes.compute_dtype(dtype):
        return u
    return jax.lax.optimization_barrier(u.astype(dtype))

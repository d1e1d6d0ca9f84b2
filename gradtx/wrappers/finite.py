"""Skipping steps whose gradient (or update) is not finite."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from gradtx import _numerics
from gradtx import _tree
from gradtx._base import GradientTransformation
from gradtx._base import OptState
from gradtx._base import extras_for
from gradtx._base import kind_of
from gradtx._checks import check_int
from gradtx._specs import Transform
from gradtx.wrappers._state import StateCheck


class ApplyIfFiniteState(NamedTuple):
    """Counters of non-finite steps and the wrapped state.

    Attributes:
      notfinite_count: non-finite steps in a row (0 after a finite one).
      last_finite: whether the last step was finite.
      total_notfinite: non-finite steps since ``init``.
      inner_state: the wrapped transform's state, untouched by skipped steps.
    """

    notfinite_count: jax.Array
    last_finite: jax.Array
    total_notfinite: jax.Array
    inner_state: OptState


def all_finite(tree: Any) -> jax.Array:
    """True when every element of every leaf is finite (True for no leaves)."""
    flags = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(flags)) if flags else jnp.asarray(True)


def apply_if_finite(
    inner: optax.GradientTransformation, max_consecutive_errors: int
) -> GradientTransformation:
    """Skip steps whose gradient or update contains a NaN or an infinity.

    A step is *bad* when the incoming updates (the gradient), or the updates
    ``inner`` computes from them, have a non-finite element.  A bad step
    returns zero updates and keeps ``inner``'s state as it was, so the params
    and the optimizer do not move and the next finite step continues exactly
    as if the bad step had never come.  It is counted in the state
    (``notfinite_count`` in a row, ``total_notfinite`` overall).

    Giving up: the ``max_consecutive_errors + 1``-th bad step in a row is no
    longer skipped: its updates and ``inner``'s new state go through, NaN
    included, as in ``optax.apply_if_finite``.  A run that only produces NaNs
    thus fails loudly (the params become NaN) instead of silently freezing;
    ``notfinite_count > max_consecutive_errors`` in the state tells why.
    ``max_consecutive_errors=0`` never skips (it only counts).

    Both branches are computed and selected with ``jnp.where`` (no Python
    control flow), so the wrapper works under ``jit`` and ``vmap``.  Extras
    reach ``inner`` unchanged, but for a step skipped because its gradient is
    not finite: ``inner`` then runs, discarded, on zeros (the gradient and
    ``grads``), so ``jax.grad`` across the skipped step is finite (optax's
    wrapper gives NaN there) where the NaN does not itself depend on what is
    differentiated (a NaN gradient that does, as ``g * nan`` with ``g`` a
    function of the learning rate, still sends ``0 · NaN`` back through its own
    derivative, upstream of the wrapper).  An optimizer built inside a user's factory
    body, which would read the factory's count (one per call), gets the calls
    less the non-finite steps instead (a non-finite step taken after
    ``max_consecutive_errors`` leaves that one behind).

    Args:
      inner: the transform to protect (usually the whole optimizer).
      max_consecutive_errors: static int >= 0: how many bad steps in a row
        are skipped.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.apply_if_finite(gradtx.adam(1e-3), max_consecutive_errors=5)
      >>> state = opt.init({"w": jnp.zeros(2)})
      >>> u, state = opt.update({"w": jnp.array([jnp.nan, 1.0])}, state)
      >>> u["w"], int(state.notfinite_count)
      (Array([0., 0.], dtype=float32), 1)
    """
    call = "gradtx.apply_if_finite"
    inner = Transform().check(call, "inner", inner)
    check_int(call, "max_consecutive_errors", max_consecutive_errors, 0)

    def init(params):
        checked.record(params)
        zero = jnp.zeros([], jnp.int32)
        state = ApplyIfFiniteState(zero, jnp.asarray(True), zero, inner.init(params))
        return _tree.settled(state, params)

    checked = StateCheck(call, init)

    def update(updates, state, params=None, **extra):
        state = checked.check(state, updates, params)
        given = all_finite(updates)
        # A step that will be skipped whatever inner returns runs inner on zeros: its
        # discarded result then carries a zero derivative, not 0 · inf = NaN through
        # jax.grad (a meta-gradient across a skipped step).
        skipped = jnp.logical_and(
            jnp.logical_not(given),
            _numerics.safe_increment(state.notfinite_count) <= max_consecutive_errors,
        )

        def clean(tree):
            return jax.tree.map(lambda u: jnp.where(skipped, jnp.zeros_like(u), u), tree)

        if "grads" in extra and extra["grads"] is not None:
            extra = {**extra, "grads": clean(extra["grads"])}
        if extra.get("count") is not None:
            # Inside a factory's body the count is the factory's, one per call; the
            # inner reads how many steps it took, the skipped ones not among them.  The
            # state counts non-finite steps, not skipped ones (optax's fields): one
            # taken after max_consecutive_errors is missed (documented).
            done = extra["count"] - state.total_notfinite
            extra = {**extra, "count": done.astype(jnp.int32)}
        out, inner_state = inner.update(
            clean(updates), state.inner_state, params, **extras_for(inner, extra)
        )
        finite = jnp.logical_and(given, all_finite(out))
        notfinite_count = jnp.where(
            finite, 0, _numerics.safe_increment(state.notfinite_count)
        ).astype(jnp.int32)
        total = jnp.where(
            finite, state.total_notfinite, _numerics.safe_increment(state.total_notfinite)
        ).astype(jnp.int32)
        accept = jnp.logical_or(finite, notfinite_count > max_consecutive_errors)
        out = jax.tree.map(lambda u: jnp.where(accept, u, jnp.zeros_like(u)), out)
        inner_state = jax.tree.map(
            lambda new, old: jnp.where(accept, new, old), inner_state, state.inner_state
        )
        new_state = ApplyIfFiniteState(notfinite_count, finite, total, inner_state)
        return out, _tree.settled(new_state, (params, out))

    return kind_of(inner)(init, update)  # a wrapped gradient map is still one

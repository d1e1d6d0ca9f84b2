"""The context a factory's body is built and run in.

While a body is built (``BUILD``), a gradtx factory called inside it returns its
bare body: the outermost call owns the numbers and the step count.  While a
body's update runs (``run_body``), 16-bit updates are handed on in their compute
dtype and rounded once, and a factory that foreign code calls then is a call of
its own.  ``current_call`` names the public call for a member's errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gradtx import _dtypes
from gradtx import _tree


class Build:
    """What a body being built reports back: the call's name; whether it reads the step."""

    def __init__(self, call: str) -> None:
        self.call, self.counted = call, False


BUILD: _tree.ContextLocal[Build | None] = _tree.ContextLocal(__name__, "BUILD", None)
"""Set while a body is built: a gradtx factory called then returns its bare body (the
outer call owns the numbers and the count)."""


RUN: _tree.ContextLocal[Build | None] = _tree.ContextLocal(__name__, "RUN", None)
"""Set while a body's update runs (``run_body``), with ``BUILD`` unset: a factory that
foreign code calls then (``optax.inject_hyperparams`` builds its optimizer in its
``init`` and again in each ``update``) is a call of its own in both, one state layout."""


def run_body(
    call: str,
    run: Callable[[Any], tuple[Any, Any]],
    updates: Any,
    params: Any,
    state: Any,
    like: Any = None,
):
    """``run(updates)``, the body's update of ``state``, inside ``call``'s build.  The
    outermost gradtx call given the params hands its body 16-bit updates in float32 and
    rounds the result once (a stage's float16 output below 6e-5, Adam's ``(1 - b1) g``
    for gradients below ~6e-4, would lose its digits on the way to the next stage).
    Without params the stages could not tell the state's dtypes from the updates'
    (``probe_init``), so 16-bit updates are handed on as they are.  A 16-bit state leaf
    that the widened updates promoted is rounded back: an optax member
    (``mechanize(optax.adam(...))``) promotes its 16-bit moments to float32 when handed
    float32 updates.  ``like`` (default ``updates``): the gradients whose dtypes decide
    and receive the result, where ``updates`` are already wider (a mean that
    ``accumulate_gradients`` keeps in float32)."""
    like = updates if like is None else like
    wide = RUN.get() is None and params is not None
    wide = wide and any(_dtypes.compute_dtype(u.dtype) != u.dtype for u in jax.tree.leaves(like))
    handed = (
        jax.tree.map(lambda u: u.astype(_dtypes.compute_dtype(u.dtype)), updates)
        if wide
        else updates
    )
    with RUN.set_to(Build(call)), BUILD.set_to(None):
        out, new_state = run(handed)
    if not wide:
        return out, new_state
    if _tree.structure(new_state) == _tree.structure(state):
        # Only what the widening promoted (a 16-bit leaf now in its compute dtype): any
        # other change of dtype is the body's own and stays for the state check to see.
        def back(new: Any, old: Any) -> Any:
            widened = new.dtype != old.dtype and new.dtype == _dtypes.compute_dtype(old.dtype)
            return new.astype(old.dtype) if widened else new

        new_state = jax.tree.map(back, new_state, state)
    return jax.tree.map(lambda o, u: o.astype(u.dtype), out, like), new_state


def widened(update_dtype: Any, param_dtype: Any) -> bool:
    """Whether an enclosing gradtx call handed an update of a 16-bit param widened to its
    compute dtype (``run_body``): a wrapper that compares the updates' dtypes with the
    params' takes it as the param's own."""
    update_dtype, param_dtype = jnp.dtype(update_dtype), jnp.dtype(param_dtype)
    return (
        RUN.get() is not None
        and update_dtype != param_dtype
        and update_dtype == _dtypes.compute_dtype(param_dtype)
    )


def reads_count() -> None:
    """Called by a body whose transform will read ``step_count``: its owner keeps a counter."""
    build = BUILD.get()
    if build is not None:
        build.counted = True


def current_call(default: str) -> str:
    """The public call being built or updated (for errors raised by its members)."""
    build = BUILD.get() or RUN.get()  # a build inside a run resets BUILD on entry
    return default if build is None else build.call

"""Conditionals XLA keeps apart, and loop bodies kept between eager steps."""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def once(fn: Any, *operands: Any) -> Any:
    """``fn(*operands)`` for scalar operands, computed once per step.

    XLA on CPU copies a scalar computation into every fusion that reads it, once per
    leaf (RAdam's rectification, a few dozen scalar ops, was compiled 150 times on a
    150-leaf tree: 1.6x the compile time).  A conditional is never fused, so its
    results are computed once; both branches are ``fn``, the predicate only has to
    be data so that it is not folded away.  The conditional is jitted per ``fn``
    (which must be one object from call to call, a module-level function): called
    eagerly, or under ``jax.grad`` outside ``jit``, a bare conditional compiled its
    branches at every step (RAdam's eager step took 0.2 s, 60x its earlier time).
    """
    return _conditional(fn)(*(jnp.asarray(x) for x in operands))


@functools.cache
def _conditional(fn: Any) -> Any:
    def run(*operands: Any) -> Any:
        return jax.lax.cond(jnp.any(operands[0] == 0), fn, fn, *operands)

    return jax.jit(run)


def cond(pred: Any, true_fn: Callable, false_fn: Callable, *operands: Any) -> Any:
    """``lax.cond``, but for an eager call (no tracer among ``pred`` and ``operands``) the
    branch taken, called as it is.  An eager ``lax.cond`` traces and compiles both
    branches again for branches built afresh at each update, and one kept from update
    to update would hold the data a user's function read when it was first traced (an
    inner's value_fn, a schedule reading a global); a Python branch reads them now."""
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((pred, operands))):
        return jax.lax.cond(pred, true_fn, false_fn, *operands)
    return (true_fn if bool(pred) else false_fn)(*operands)


_LOOP_BODIES: dict[Any, tuple[Any, Any]] = {}


_LOOP_BODIES_KEPT = 16


_LOOP_BODIES_LOCK = threading.Lock()


def loop_body(
    build: Callable[..., Any],
    config: tuple,
    operands: Any,
    probes: tuple[tuple[Callable[..., Any], tuple], ...],
) -> Any:
    """``build(*config)``: a ``lax.while_loop`` body that reads everything that may
    change between updates from its ``operands`` (the carry), the configuration (a
    ``value_fn``, static sizes) from its closure.

    ``lax.while_loop`` finds its trace and compiled program again by the body's
    identity.  A body built afresh at each update is traced and compiled
    again on every eager call (L-BFGS's loop: about a second a step), so for an eager
    call (no tracer among ``operands``) the body built last time for the same
    ``build`` and ``config`` is returned, but only while the user's functions it calls
    still trace to the same program with the same constants: a ``value_fn`` that reads
    data changing between steps (a bound method reading ``self.batch``, a global)
    traces to new constants, and the kept body's trace holds the old data.  So each
    eager call traces ``probes``, ``(fn, fn_args)`` pairs: each user function as the
    body calls it (a loss: milliseconds; the body's other parts are gradtx's own).
    One that cannot be traced so makes the whole body be traced.  (A conditional whose
    branches hold arbitrary user code runs the branch taken instead: ``cond``.)  A
    traced update builds its own: a body kept here must not close over a
    tracer.  The oldest bodies go (and the ``value_fn`` each holds) past a few.
    """
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(operands)):
        return build(*config)
    key = (build, config)
    try:
        hash(key)
    except TypeError:  # a value_fn that cannot be hashed: nothing to key on
        return build(*config)
    fresh = build(*config)
    try:
        seen = [_traced(fn, fn_args) for fn, fn_args in probes]
    except Exception:  # e.g. a function of data keywords the probe does not pass
        seen = [_traced(fresh, (operands,))]
    with _LOOP_BODIES_LOCK:
        kept = _LOOP_BODIES.pop(key, None)  # re-inserted below: the newest
        if kept is not None and len(kept[1]) == len(seen) and all(map(_same, kept[1], seen)):
            fresh = kept[0]
        while len(_LOOP_BODIES) >= _LOOP_BODIES_KEPT:
            del _LOOP_BODIES[next(iter(_LOOP_BODIES))]
        _LOOP_BODIES[key] = (fresh, seen)
    return fresh


def _traced(fn: Callable[..., Any], args: tuple) -> tuple[str, list]:
    """``fn``'s program as text and its constants: JAX arrays as they are (immutable),
    NumPy ones as a digest of their bytes (one the caller changes in place would
    compare equal to itself; a copy would hold a dataset once per kept body)."""
    # a fresh function: make_jaxpr keeps traces by the function (a bound method is
    # equal to the last one), and the kept trace holds the old data
    closed = jax.make_jaxpr(lambda *a: fn(*a))(*args)
    consts = [_digest(c) if isinstance(c, np.ndarray) else c for c in closed.consts]
    return str(closed.jaxpr), consts


def _digest(x: np.ndarray) -> tuple:
    data = np.ascontiguousarray(x)
    return x.shape, x.dtype.str, hashlib.blake2b(data.view(np.uint8).data).digest()


def _same(a: tuple[str, list], b: tuple[str, list]) -> bool:
    """The same program and the same constants, bit for bit (a NaN equals itself, so data
    with one keeps its body; -0.0 differs from 0.0, as copysign tells them apart)."""

    def same(x: Any, y: Any) -> bool:
        if x is y:
            return True
        if isinstance(x, tuple) or isinstance(y, tuple):
            return x == y
        if any(isinstance(z, jax.Array) and z.is_deleted() for z in (x, y)):
            return False  # the old batch, donated or deleted since: traced afresh
        keys = [
            jax.dtypes.issubdtype(getattr(z, "dtype", None), jax.dtypes.prng_key) for z in (x, y)
        ]
        if any(keys):  # a typed key has no NumPy form: the same kind of key, the same bits
            if not all(keys) or x.dtype != y.dtype:
                return False
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        try:
            u, v = np.asarray(x), np.asarray(y)
        except TypeError:  # another type with no NumPy form: traced afresh
            return False
        return u.shape == v.shape and u.dtype == v.dtype and _digest(u) == _digest(v)

    return a[0] == b[0] and len(a[1]) == len(b[1]) and all(map(same, a[1], b[1]))


def split_data(extra: dict[str, Any]) -> tuple[dict[str, Any], tuple]:
    """``extra`` as ``(arrays, fixed)``: the keywords whose leaves are all arrays (loop
    operands) and the rest as name-value pairs (a ``value_fn``, a flag or a string a
    loss branches on in Python: part of ``loop_body``'s configuration)."""

    def arrays_only(value: Any) -> bool:
        leaves = jax.tree.leaves(value)
        kinds = (jax.Array, np.ndarray, np.generic)
        return bool(leaves) and all(isinstance(x, kinds) for x in leaves)

    arrays = {k: v for k, v in extra.items() if arrays_only(v)}
    return arrays, tuple((k, v) for k, v in extra.items() if k not in arrays)

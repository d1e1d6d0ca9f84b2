"""Eager argument checks: errors name the call and the argument."""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def check_hyperparam(
    call: str,
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    schedule: bool = False,
    finite: bool = True,
) -> None:
    """Eagerly check one numeric hyperparameter of a factory.

    Python and NumPy numbers are concrete, so they are range-checked (and must
    not be NaN, nor infinite unless ``finite=False``).  JAX arrays, possibly
    traced, are data and accepted as is, so jit and eager behave the same.
    Callables are accepted only where ``schedule`` is true.  Errors name the
    call and argument, e.g. ``gradtx.adam(b1=1.5): b1 must be in [0, 1)``.
    """
    if callable(value) and not isinstance(value, (jax.Array, np.ndarray)):
        if not schedule:
            raise TypeError(f"{call}({name}=...): {name} must be a number, not a schedule")
        return
    if isinstance(value, (jax.Array, np.ndarray, np.generic)):
        dtype = jnp.result_type(value)
        if jnp.ndim(value) != 0 or not (
            jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)
        ):
            raise TypeError(f"{call}({name}=...): {name} must be a real scalar, got {dtype}")
        if isinstance(value, jax.Array):
            return
        value = value.item()
    if not _is_number(value):
        raise TypeError(
            f"{call}({name}={value!r}): {name} must be a real number, got {type(value).__name__}"
        )
    value = float(value)
    if np.isnan(value):
        raise ValueError(f"{call}({name}=nan): {name} must not be NaN")
    if finite and np.isinf(value):
        raise ValueError(f"{call}({name}={value!r}): {name} must be finite")
    bad_low = low is not None and (value <= low if low_open else value < low)
    bad_high = high is not None and (value >= high if high_open else value > high)
    if bad_low or bad_high:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        raise ValueError(f"{call}({name}={value!r}): {name} must be in {interval}")


def check_dtype(call: str, name: str, value: Any) -> None:
    """``None`` or a floating dtype (a storage dtype such as ``mu_dtype``)."""
    if value is None:
        return
    try:
        dtype = jnp.dtype(value)
    except TypeError:
        raise TypeError(f"{call}({name}={value!r}): {name} must be a dtype or None") from None
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{call}({name}={dtype}): {name} must be a floating dtype")


def check_flag(call: str, name: str, value: Any, kind: type | tuple[type, ...]) -> None:
    """``TypeError`` naming the call unless ``value`` is of ``kind`` (static options)."""
    if kind is bool and not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{call}({name}={value!r}): {name} must be a bool")
    if kind is not bool and (not isinstance(value, kind) or isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise TypeError(f"{call}({name}={value!r}): {name} must be {names}")


def check_int(call: str, name: str, value: Any, low: int) -> None:
    """A static integer option (a period, a count): ``TypeError`` unless an int,
    ``ValueError`` below ``low``; both name the call and the argument."""
    check_flag(call, name, value, int)
    if value < low:
        raise ValueError(f"{call}({name}={value!r}): {name} must be >= {low}")


def check_choice(call: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    """``ValueError`` naming the call unless ``value`` is one of ``choices``."""
    if not isinstance(value, str):
        raise TypeError(f"{call}({name}={value!r}): {name} must be one of {choices}")
    if value not in choices:
        raise ValueError(f"{call}({name}={value!r}): {name} must be one of {choices}")


def is_zero(value: Any) -> bool:
    """True for a Python/NumPy zero: a stage with a zero weight is left out."""
    return (_is_number(value) or isinstance(value, np.generic)) and float(value) == 0.0


# --------------------------------------------------------------- update-time checks


def call_name(build: Any) -> str:
    """``gradtx.<factory>`` for a build function (``_adam.<locals>.build`` -> ``gradtx.adam``)."""
    fn = getattr(build, "func", build)
    return "gradtx." + getattr(fn, "__qualname__", "transform").split(".")[0].lstrip("_")


def _leaf(call: str, what: str):
    def one(path, x):
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.inexact):
            raise TypeError(
                f"{call}: {what} leaf {jax.tree_util.keystr(path) or '(root)'} has dtype "
                f"{x.dtype}; gradtx transforms act on floating or complex leaves only. Keep "
                "integer and boolean leaves out of the optimized tree (or make them None)."
            )
        return x

    return one


def check_tree(call: str, tree: Any, what: str) -> Any:
    """``tree`` with array leaves; a TypeError naming the leaf for non-float leaves."""
    return jax.tree_util.tree_map_with_path(_leaf(call, what), tree)


def check_updates(call: str, updates: Any, params: Any, seen: set) -> tuple[Any, Any]:
    """Trace-time checks of ``update``'s arguments: float leaves, matching trees.

    ``seen`` holds the tree structures ``init`` was called with.  An updates tree
    that does not match ``params``, or whose leaf count matches none of ``seen``,
    is a ValueError showing both.  Against ``init`` only leaf counts are compared:
    wrappers may init with annotated nodes (flax's ``nnx.Param``) and update
    with plain arrays in the same places.
    """
    updates = check_tree(call, updates, "updates")
    got = jax.tree.structure(updates)
    if params is not None and jax.tree.structure(params) != got:
        raise ValueError(
            f"{call}.update: the updates' tree does not match the params' tree.\n"
            f"  updates: {got}\n  params: {jax.tree.structure(params)}"
        )
    if seen and got not in seen and all(got.num_leaves != s.num_leaves for s in seen):
        raise ValueError(
            f"{call}.update: the updates' tree does not match the tree the state was "
            f"initialised with.\n  updates: {got}\n  init: {' or '.join(map(str, seen))}"
        )
    return updates, None if params is None else check_tree(call, params, "params")

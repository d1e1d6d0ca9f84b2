"""Small tree helpers shared by the transforms."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

INT32_MAX = jnp.iinfo(jnp.int32).max


def safe_increment(count: jax.Array) -> jax.Array:
    """``count + 1``, saturating at the int32 maximum instead of wrapping."""
    # min-then-add: two plain operations (jnp.where traces a nested jit).
    return (jnp.minimum(count, INT32_MAX - 1) + 1).astype(jnp.int32)


def zeros_like(params: Any, dtype: Any = None) -> Any:
    """Zeros shaped like ``params`` (in ``dtype`` if given), ``None`` leaves kept."""
    return jax.tree.map(lambda p: jnp.zeros_like(p, dtype=dtype), params)


def full_like(params: Any, value: Any, dtype: Any = None) -> Any:
    """``value`` broadcast like ``params``, each in its leaf's (or ``dtype``'s) dtype.

    ``full_like`` (not ``full(shape)``) so the result keeps the leaf's sharding:
    optimizer state follows the params' layout on a mesh.
    """

    def one(p):
        dt = dtype or jnp.result_type(p)
        return jnp.full_like(p, jnp.asarray(value).astype(dt), dtype=dt)

    return jax.tree.map(one, params)


def scalar_like(value: Any, leaf: jax.Array) -> jax.Array:
    """A hyperparameter cast to a leaf's dtype, so strict promotion holds."""
    dtype = getattr(leaf, "dtype", None)
    if isinstance(value, jax.Array) and dtype is not None and value.dtype == dtype:
        return value  # called per leaf: skip the no-op cast's Python cost
    return jnp.asarray(value).astype(jnp.result_type(leaf))


def abs_sq(x: jax.Array) -> jax.Array:
    """``|x|²`` in ``x``'s dtype: ``x * x`` for real leaves (bit-identical to
    ``jnp.square``), ``x * conj(x)`` (zero imaginary part) for complex ones."""
    return x * jnp.conj(x)


def wider(a: Any, b: Any) -> jnp.dtype:
    """The dtype both ``a`` and ``b`` convert to without loss (JAX's standard promotion).

    Used where low-precision statistics meet higher-precision updates; strict
    promotion forbids mixing them implicitly, so the choice is made here, once.
    """
    a, b = jnp.dtype(a), jnp.dtype(b)
    if a == b:
        return a
    with jax.numpy_dtype_promotion("standard"):
        return jnp.promote_types(a, b)


def ema(decay: Any, old: Any, new: Any) -> Any:
    """``decay * old + (1 - decay) * new`` leaf by leaf, stored in each ``old`` dtype.

    Computed in the wider of the two dtypes: with bfloat16 statistics of
    float32 gradients, ``1 - 0.999`` in bfloat16 is 0 and the EMA would never
    move.  With equal dtypes this is the plain formula.
    """

    coefs = {}  # dtype -> (d, 1 - d), computed once per dtype rather than per leaf

    def one(o, n):
        dtype = wider(o.dtype, jnp.result_type(n))
        if dtype not in coefs:
            d = jnp.asarray(decay).astype(dtype)
            coefs[dtype] = (d, 1 - d)
        d, rest = coefs[dtype]
        if o.dtype == dtype and n.dtype == dtype:
            return d * o + rest * n
        return (d * o.astype(dtype) + rest * n.astype(dtype)).astype(o.dtype)

    return jax.tree.map(one, old, new)


def bias_correction(decay: Any, t: jax.Array) -> jax.Array:
    """``1 - decay**t`` in ``decay``'s dtype (t is the 1-based step as an int)."""
    decay = jnp.asarray(decay)
    return 1 - decay ** t.astype(decay.dtype)


def cast_tree(tree: Any, like: Any) -> Any:
    """Cast each leaf of ``tree`` to the dtype of the matching leaf of ``like``."""
    return jax.tree.map(lambda x, y: x.astype(jnp.result_type(y)), tree, like)


def check_same_structure(call: str, updates: Any, state_tree: Any, what: str = "state") -> None:
    """Raise a ValueError showing both structures when they differ."""
    a, b = jax.tree.structure(updates), jax.tree.structure(state_tree)
    if a != b:
        raise ValueError(
            f"{call}: the updates' tree does not match the {what}'s tree.\n"
            f"  updates: {a}\n  {what}: {b}"
        )


def per_leaf(call: str, what: str, prefix: Any, fn: Callable | None, tree: Any) -> list:
    """One value per leaf of ``tree``, from a prefix tree or from ``fn(tree)``.

    ``prefix`` may stop above the leaves (``{"encoder": False, "head": True}``
    masks whole subtrees).  The choice between a tree and a function is the
    keyword used, never ``callable()``: Equinox modules and other callable
    pytrees are valid prefixes.
    """
    if prefix is not None and fn is not None:
        raise ValueError(f"{call}: give {what} or {what}_fn, not both")
    if fn is not None:
        prefix = fn(tree)
    prefix_leaves, prefix_def = jax.tree.flatten(prefix)
    try:
        subtrees = prefix_def.flatten_up_to(tree)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"{call}: the {what} tree does not match the params tree: it is not a prefix of it.\n"
            f"  params: {jax.tree.structure(tree)}\n  {what}: {prefix_def}"
        ) from err
    return [v for v, sub in zip(prefix_leaves, subtrees) for _ in jax.tree.leaves(sub)]


def static_bools(call: str, values: list) -> list[bool]:
    try:
        return [bool(v) for v in values]
    except jax.errors.ConcretizationTypeError as err:
        raise TypeError(
            f"{call}: mask values must be static Python bools (the mask chooses the "
            "program's structure), not arrays computed from traced params"
        ) from err


# The flat-buffer mode (``gradtx.flatten``) runs transforms on 1-D buffers, so a
# transform that needs each leaf's own shape (centralisation, per-leaf norms)
# would silently compute something else there.  Such transforms call
# ``check_per_leaf`` and fail loudly instead.
_FLAT = contextvars.ContextVar("gradtx_flat", default=False)


@contextlib.contextmanager
def flat_buffers():
    """Mark the transforms traced inside as running on flat buffers."""
    token = _FLAT.set(True)
    try:
        yield
    finally:
        _FLAT.reset(token)


def check_per_leaf(call: str) -> None:
    """Raise if called inside ``gradtx.flatten``: this transform needs leaf shapes."""
    if _FLAT.get():
        raise ValueError(
            f"{call} works per leaf (it needs each parameter's shape) and cannot run inside "
            "gradtx.flatten, which hands transforms flat 1-D buffers; apply it outside: "
            "gradtx.chain(<it>, gradtx.flatten(<the rest>))"
        )

"""Small tree helpers shared by the transforms."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

INT32_MAX = jnp.iinfo(jnp.int32).max


def safe_increment(count: jax.Array) -> jax.Array:
    """``count + 1``, saturating at the int32 maximum instead of wrapping."""
    return jnp.where(count < INT32_MAX, count + 1, INT32_MAX).astype(jnp.int32)


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
    return jnp.asarray(value).astype(jnp.result_type(leaf))


def abs_sq(x: jax.Array) -> jax.Array:
    """``|x|²`` in ``x``'s dtype: ``x * x`` for real leaves (bit-identical to
    ``jnp.square``), ``x * conj(x)`` (zero imaginary part) for complex ones."""
    return x * jnp.conj(x)


def ema(decay: Any, old: Any, new: Any) -> Any:
    """``decay * old + (1 - decay) * new`` leaf by leaf, in each ``old`` dtype."""

    def one(o, n):
        d = scalar_like(decay, o)
        return d * o + (1 - d) * n.astype(o.dtype)

    return jax.tree.map(one, old, new)


def count_float(count: jax.Array, like: Any) -> jax.Array:
    """The int32 step count as a float in ``like``'s dtype (t for bias corrections)."""
    return count.astype(jnp.result_type(like))


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

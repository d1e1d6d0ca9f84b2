"""Tree-wide sums (inner products, norms) for the transforms that estimate a step size.

Each sum runs in the dtype it is given (the state's scalar dtype, at least
float32), leaf by leaf in ``jax.tree.leaves`` order, with plain ``jnp.sum``
reductions (no ``ravel``: sharded leaves need no ``out_sharding``).  A complex
leaf counts as its real and imaginary parts: the inner product is the real one
of C^n as R^2n.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from gradtx import _control
from gradtx import _numerics


def _parts(x: jax.Array) -> list[jax.Array]:
    return [jnp.real(x), jnp.imag(x)] if jnp.iscomplexobj(x) else [x]


def tree_dot(a: Any, b: Any, dtype: Any, *, once: bool = False) -> jax.Array:
    """``Σ Re(conj(a) · b)`` over the leaves of two trees of one structure, in ``dtype``
    (``once``: see ``_total``)."""
    partials = []
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        for xp, yp in zip(_parts(x), _parts(y)):
            partials.append(jnp.sum(xp.astype(dtype) * yp.astype(dtype)))
    return _total(partials, dtype, once)


def tree_squared_norm(a: Any, dtype: Any, *, once: bool = False) -> jax.Array:
    """``Σ |a|²`` over the leaves, in ``dtype`` (``once``: see ``_total``)."""
    partials = []
    for x in jax.tree.leaves(a):
        for xp in _parts(x):
            xp = xp.astype(dtype)
            partials.append(jnp.sum(xp * xp))
    return _total(partials, dtype, once)


def _total(partials: list[jax.Array], dtype: Any, once: bool) -> jax.Array:
    """The per-leaf sums added in leaf order.

    XLA may copy that chain of scalar adds into every kernel that reads the total
    (each leaf's step: on a 161-leaf tree, 161 adds in each of 161 kernels); it turns
    a reduction over the stacked sums back into the chain.  ``once`` adds them in a
    conditional (``_control.once``), which XLA does not fuse: MoMo compiled in 1.85x
    optax's inject time without it, 0.57x with it.  Where the copies do not happen
    (DoG, DoWG, Prodigy, Mechanize) the conditional cost 15-25% more compile time,
    so it is not the default.  The numbers are the same.
    """
    if once and partials:
        return _control.once(_stacked_sum, jnp.stack(partials))
    return _chain_sum(partials, dtype)


def _chain_sum(partials: list[jax.Array], dtype: Any) -> jax.Array:
    total = jnp.zeros([], dtype)
    for x in partials:
        total = total + x
    return total


def _stacked_sum(stacked: jax.Array) -> jax.Array:
    """``_chain_sum`` of the rows of ``stacked`` (``_control.once`` takes arrays)."""
    return _chain_sum([stacked[i] for i in range(stacked.shape[0])], stacked.dtype)


def tree_norm(a: Any, dtype: Any) -> jax.Array:
    """The Euclidean norm of the whole tree, in ``dtype``."""
    return _numerics.safe_sqrt(tree_squared_norm(a, dtype))


def tree_l1_norm(a: Any, dtype: Any) -> jax.Array:
    """``Σ |a|`` over the leaves (the modulus for complex leaves), in ``dtype``."""
    total = jnp.zeros([], dtype)
    for x in jax.tree.leaves(a):
        total = total + jnp.sum(jnp.abs(x).astype(dtype))
    return total


def tree_difference_norm(a: Any, b: Any, dtype: Any, squared: bool = False) -> jax.Array:
    """``||a - b||`` (or its square) over the whole tree, each difference taken in ``dtype``."""

    def diff(x, y):
        if jnp.iscomplexobj(x):
            return x - y
        return x.astype(dtype) - y.astype(dtype)

    sq = tree_squared_norm(jax.tree.map(diff, a, b), dtype)
    return sq if squared else _numerics.safe_sqrt(sq)


def tree_norm_scaled(a: Any, dtype: Any) -> jax.Array:
    """The Euclidean norm of the whole tree, in ``dtype``, finite whenever the norm
    is.  Where the plain sum of squares overflows (or is so small that squares below
    the smallest normal number could matter) it is taken again with every entry
    scaled by a power of two, in a conditional that runs only then."""
    leaves = jax.tree.leaves(a)
    if not leaves:
        return jnp.zeros([], dtype)
    total = tree_squared_norm(leaves, dtype)
    info = jnp.finfo(dtype)
    size = _real_size(leaves)
    # Each square that underflows loses at most the smallest normal number; above
    # this floor their sum is below the rounding of the total.
    floor = jnp.asarray(size * float(info.tiny) / float(info.eps), dtype)
    plain = jnp.isfinite(total) & (total > floor)
    return jax.lax.cond(plain, _root, _root_scaled, total, floor, leaves)


# Branches are module-level functions of their operands: a conditional finds its
# compiled branches again by their identity, so an eager step compiles them once.


def _root(total: jax.Array, floor: jax.Array, leaves: list[jax.Array]) -> jax.Array:
    return _numerics.safe_sqrt(total)


def _root_scaled(total: jax.Array, floor: jax.Array, leaves: list[jax.Array]) -> jax.Array:
    """The norm as ``‖x·2^k‖ / 2^k``, one pass.  Where the sum overflowed, ``k < 0``
    so that ``size`` squares of the largest finite number sum to a finite number
    (the entries whose scaled squares then underflow weigh less than the rounding
    of a sum above the largest finite number).  Where it was below ``floor``,
    ``k`` is just large enough that every normal entry's scaled square is normal:
    larger, the derivative's intermediate ``1 / (2^2k ‖x‖)`` underflows.  A power
    of two scales exactly, and ``k`` is a constant: no derivative flows through it."""
    dtype = total.dtype
    info = jnp.finfo(dtype)
    bits = math.log2(max(_real_size(leaves), 2))
    down = -math.ceil((info.maxexp + 1 + bits) / 2)
    up = math.ceil(-info.minexp / 2) + 1
    scale = jnp.where(total > floor, jnp.asarray(2.0**down, dtype), jnp.asarray(2.0**up, dtype))
    # each part cast before it is scaled: a float16 leaf times 2^64 would overflow
    scaled = [xp.astype(dtype) * scale for x in leaves for xp in _parts(x)]
    # Without the barrier XLA folded this branch to NaN for leaves that are
    # compile-time constants (0, 1e-200, 1e200 in float64; float32 alike), where the
    # same program on arguments is right: its rewrites of the scaled products do not
    # keep the exact scaling.  The barrier keeps the scaled entries as computed.
    scaled = jax.lax.optimization_barrier(scaled)
    return _numerics.safe_sqrt(tree_squared_norm(scaled, dtype)) / scale


def _real_size(leaves: list[jax.Array]) -> int:
    """How many real numbers the leaves hold (a complex entry is two)."""
    return sum(int(jnp.size(x)) * len(_parts(x)) for x in leaves)

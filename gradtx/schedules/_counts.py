"""Step-count arithmetic of the schedules: the count as data, and whole steps and
periods computed exactly on integer counts."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._base import float_dtype
from gradtx._checks import is_known
from gradtx.schedules._common import as_float
from gradtx.schedules._common import safe_div


def count_array(count: Any) -> jax.Array:
    """The step count as an array.  A Python or NumPy integer outside the range of JAX's
    default int (int32 unless x64) is refused by name: JAX raised a raw OverflowError
    for the one and wrapped the other.  The step counters saturate at that int's
    maximum, so only a direct call can pass one."""
    if isinstance(count, int) and not isinstance(count, bool):
        (low, high), extremes = _int_range(np.int64), (count, count)
    elif isinstance(count, (np.ndarray, np.generic)) and count.dtype.kind in "iu" and count.size:
        # JAX would wrap a NumPy int64 count beyond int32 without a word.
        dtype = np.int64 if count.dtype.kind == "u" else count.dtype  # taken as signed below
        (low, high), extremes = _int_range(dtype), (int(np.min(count)), int(np.max(count)))
    elif isinstance(count, jax.Array) and count.dtype.kind == "u" and count.size:
        if not is_known(count):
            return _signed(count)  # data: a traced count is taken as it is
        # read on the host: under a trace a closed-over count is concrete, its max not
        (low, high), extremes = _int_range(np.int64), (0, int(np.max(np.asarray(count))))
    else:
        return _signed(jnp.asarray(count))
    outside = [v for v in extremes if not low <= v <= high]
    if outside:
        raise ValueError(
            f"gradtx.schedules: count {outside[0]} is outside [{low}, {high}], the range "
            f"of step counts in JAX's default int (jax_enable_x64 gives 64-bit counts)"
        )
    return _signed(jnp.asarray(count))


def _signed(count: jax.Array) -> jax.Array:
    """An unsigned count as JAX's default int: the steps before a start (``count -
    transition_begin``) wrapped round to huge ones in unsigned arithmetic."""
    if jnp.issubdtype(count.dtype, jnp.unsignedinteger):
        return count.astype(jax.dtypes.canonicalize_dtype(np.int64))
    return count


def _int_range(dtype: Any) -> tuple[int, int]:
    info = np.iinfo(jax.dtypes.canonicalize_dtype(dtype))
    return int(info.min), int(info.max)


def as_count(count: Any) -> jax.Array:
    """The 0-based step count (int32, or a float under ``jax.grad``) as a float.

    A float32 holds every whole number only up to 2^24: step boundaries and
    positions inside a period use ``count_ge``/``count_periods``, which work on
    an integer count as an integer.  What a float count feeds must be smooth in
    it (a ramp or a decay), where rounding the count is rounding the value.
    """
    return count_array(count).astype(float_dtype())


def is_integer(count: Any) -> bool:
    """Whether the count has an integer dtype (the optimizer's step counter)."""
    return bool(jnp.issubdtype(count_array(count).dtype, jnp.integer))


def ceil_to(value: Any, dtype: Any) -> tuple[jax.Array, jax.Array]:
    """``ceil(value)`` in the integer ``dtype``, clipped to its range, and where
    ``value`` lies above that range (or is NaN).

    A field given as numbers (a NumPy float64 vector) is converted in NumPy, so a
    boundary above 2^24 is not first rounded to float32; a JAX array (stored in
    state, or traced) is converted from its own dtype.
    """
    info = jnp.iinfo(dtype)
    # -2^(bits-1) and 2^(bits-1) are exact in any float dtype; the largest float
    # below the latter converts without overflow.
    if not isinstance(value, jax.Array):  # tracers are jax.Arrays too
        ceiled = np.ceil(np.asarray(value, np.float64))
        past = ~(ceiled < float(info.max) + 1)  # NaN too
        kept = np.where(past, 0.0, np.maximum(ceiled, float(info.min)))
        return jnp.asarray(kept.astype(dtype)), jnp.asarray(past)
    value = jnp.asarray(value)
    if jnp.issubdtype(value.dtype, jnp.integer):
        if jnp.iinfo(value.dtype).max <= info.max and jnp.iinfo(value.dtype).min >= info.min:
            return value.astype(dtype), jnp.zeros(value.shape, bool)
        above = value > info.max
        return jnp.clip(value, info.min, info.max).astype(dtype), above
    if not jnp.issubdtype(value.dtype, jnp.floating):
        value = value.astype(float_dtype())
    up = jnp.ceil(value)
    limit = np.asarray(float(info.max) + 1, value.dtype)
    above = ~(up < limit)
    top = np.nextafter(limit, np.asarray(0, value.dtype))
    inside = jnp.clip(jnp.where(above, 0, up), float(info.min), top)
    return inside.astype(dtype), above


def count_ge(count: Any, boundary: Any) -> jax.Array:
    """``count >= boundary``, exact at every integer count.

    For an integer count this is ``count >= ceil(boundary)`` in the count's own
    integer dtype; a float count (under ``jax.grad``) is compared as a float.
    """
    count = count_array(count)
    if not is_integer(count):
        return count.astype(float_dtype()) >= as_float(boundary)
    up, above = ceil_to(boundary, count.dtype)
    return ~above & (count >= up)


def count_shift(count: Any, start: Any) -> jax.Array:
    """``max(count − ceil(start), 0)`` for an integer count, in its integer dtype:
    the steps since ``start`` (``start >= 0``), exact at every count."""
    count = count_array(count)
    up, above = ceil_to(start, count.dtype)
    since = jnp.maximum(count - jnp.maximum(up, 0), 0)
    return jnp.where(above, jnp.zeros_like(since), since)


def steps_since(count: Any, start: Any) -> jax.Array:
    """``max(count − start, 0)`` as a float.  For an integer count and a whole
    ``start`` the difference is taken in integers, so it is exact at every count
    (a float32 count past 2^24 is a multiple of 2 or more: an 8-step ramp from
    2^25 would take 0, 0, 0, 0.5, ...); the float difference's derivative with
    respect to ``start`` is kept."""
    t = jnp.maximum(as_count(count) - as_float(start), 0)
    if not is_integer(count):
        return t
    exact = as_count(count_shift(count, start)) + (t - jax.lax.stop_gradient(t))
    return jnp.where(whole(as_float(start)), exact, t)


def steps_left(count: Any, length: Any, start: Any) -> jax.Array:
    """``T − t`` with ``t = clip(count − start, 0, T)`` (``T = length``), as a float.

    For an integer count and whole ``length`` and ``start`` it is formed in
    integers, so a ramp's last steps keep their digits however long it is (from a
    float32 count, ``T − t`` two steps before the end of ``2^31 − 1`` steps came out
    0); the float difference's derivatives with respect to the fields are kept.
    """
    steps = as_float(length)
    rest = steps - jnp.minimum(steps_since(count, start), steps)
    if not is_integer(count):
        return rest
    count = count_array(count)
    up, above = ceil_to(length, count.dtype)
    up = jnp.maximum(up, 0)
    # both in [0, int max]: no overflow
    left = up - jnp.minimum(count_shift(count, start), up)
    exact = as_count(left) + (rest - jax.lax.stop_gradient(rest))
    return jnp.where(whole(steps) & whole(as_float(start)) & ~above, exact, rest)


def whole(value: jax.Array) -> jax.Array:
    """Where a float field holds a whole number."""
    return jnp.ceil(value) == value


def count_periods(count: Any, period: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(q, r)`` with ``count = q · period + r`` and ``0 <= r < period``, as floats
    (``period > 0``, a float field).

    Exact at every count when the count is an integer (the optimizer's int32 step
    counter, up to 2^31 − 1) and ``period`` a whole number: the remainder is
    taken in the count's integer dtype, and only ``r`` (exact: ``r < period``)
    and ``q`` are converted to floats.  Otherwise (a fractional period, or a float
    count) ``periods`` of the count as a float: exact for whole numbers below
    2^24 in float32 (2^53 in float64), and beyond that off by the count's
    rounding, and more for a fractional period.  ``d r/d period = −q`` either way.
    """
    q, r = periods(as_count(count), period)
    count = count_array(count)
    if not is_integer(count):
        return q, r
    up, above = ceil_to(period, count.dtype)
    exact = whole(period) & ~above & (up >= 1)
    p = jnp.where(exact, up, jnp.ones_like(up))
    q_int = jnp.floor_divide(count, p)
    q_exact = q_int.astype(r.dtype)
    # (count - q·p) ∈ [0, p): no overflow.  The last term is 0, there for the gradient.
    r_exact = (count - q_int * p).astype(r.dtype) - q_exact * (
        period - jax.lax.stop_gradient(period)
    )
    return jnp.where(exact, q_exact, q), jnp.where(exact, r_exact, r)


def periods(t: jax.Array, period: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(q, r)`` with ``t = q · period + r`` and ``0 <= r < period`` (``period > 0``),
    all floats (``count_periods`` takes an integer count).

    ``t / period - floor(t / period)`` loses the fraction's low bits as ``t``
    grows (float32: 3e-4 of a cycle at 20k steps); ``t - q · period`` is exact for
    whole numbers below 2^24.  A quotient that rounded across a whole number is
    corrected by one, and ``r`` is computed from the final ``q`` by
    ``_sub_product``, whose rounding does not depend on whether XLA fuses a
    multiply and a subtract (it does under ``jit``, not eagerly).
    """
    q = jnp.floor(safe_div(t, period))
    r = _sub_product(t, q, period)
    q = jnp.where(r < 0, q - 1, jnp.where(r >= period, q + 1, q))
    return q, _sub_product(t, q, period)


def _split(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``x = hi + lo`` with ``hi`` the leading half of ``x``'s significand (bits
    masked off: no arithmetic to fuse) and ``lo`` the rest, which carries the
    gradient."""
    bits = {jnp.dtype(jnp.float32): (jnp.uint32, 0xFFFFF000)}
    bits[jnp.dtype(jnp.float64)] = (jnp.uint64, 0xFFFFFFFFF8000000)
    uint, mask = bits[jnp.dtype(x.dtype)]
    raw = jax.lax.bitcast_convert_type(jax.lax.stop_gradient(x), uint)
    hi = jax.lax.bitcast_convert_type(raw & jnp.asarray(mask, uint), x.dtype)
    return hi, x - hi


def _sub_product(t: jax.Array, q: jax.Array, p: jax.Array) -> jax.Array:
    """``t - q · p`` from partial products that are exact (halves of the
    significands), so that fused and unfused arithmetic round alike."""
    t, q, p = jnp.broadcast_arrays(t, q, p)
    q_hi, q_lo = _split(q)
    p_hi, p_lo = _split(p)
    return ((t - q_hi * p_hi) - (q_hi * p_lo + q_lo * p_hi)) - q_lo * p_lo

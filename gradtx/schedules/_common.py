"""Shared helpers: the schedule class decorator, argument checks, and casts of
every field to one float dtype before arithmetic."""

from __future__ import annotations

import dataclasses
import math
import numbers
import sys
from collections.abc import Sequence
from typing import Any
from typing import TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from typing_extensions import dataclass_transform

from gradtx._base import float_dtype
from gradtx._checks import INT32_MAX
from gradtx._checks import check_hyperparam
from gradtx._checks import check_rounded
from gradtx._checks import check_stored
from gradtx._dtypes import ints_as_floats
from gradtx._tree import Flag

_T = TypeVar("_T")


class Schedule:
    """Base of the schedule classes (see ``schedule_class``)."""

    # What gradtx._base.is_schedule recognises.
    _is_gradtx_schedule = True
    # Fields raised to the step count (``check_rate``), checked by set_hyperparams too.
    _rates: tuple[str, ...] = ()
    # 0/1 option fields: the only ones set_hyperparams lets a bool set.
    _flags: tuple[str, ...] = ()
    # Float vectors of steps compared with the count (``step_field``): a whole number
    # the stored dtype would round names another step.
    _steps: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _register_with_flax(type(self))

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Unpickling builds no instance through __init__: a state unpickled in a fresh
        # process that imported flax must still serialize with flax.
        _register_with_flax(type(self))
        self.__dict__.update(state)

    def _floats(self) -> tuple[jax.Array, ...]:
        """Every field, in order, as an array of JAX's default float dtype."""
        fields = dataclasses.fields(self)  # type: ignore[arg-type]
        return tuple(as_float(getattr(self, f.name)) for f in fields)


def step_field(schedule: Any, path: Sequence[Any]) -> bool:
    """Whether the leaf at ``path`` (``jax.tree_util`` keys) of ``schedule`` is a field of
    steps of its owner (``_steps``), nested schedules included.  Int fields are steps
    by their type; these are float vectors (``float_vector``), which scales are too."""
    owner = schedule
    for key in path[:-1]:
        if isinstance(key, jax.tree_util.GetAttrKey):
            owner = getattr(owner, key.name)
        elif isinstance(key, jax.tree_util.SequenceKey):
            owner = owner[key.idx]
        else:
            return False
    last = path[-1] if path else None
    return isinstance(last, jax.tree_util.GetAttrKey) and last.name in getattr(owner, "_steps", ())


def check_stored_steps(call: str, name: str, values: Any, dtype: Any) -> None:
    """Refuse a concrete field of steps (``step_field``) that ``dtype`` would move to
    another step: a schedule changes at the first count ``>= boundary``, so a boundary
    of 100000037 stored as 100000040 in float32 changes it 3 steps late (a fractional
    2.3, stored as 2.2999999523, still names step 3).  Beyond the count's reach
    (2**31 - 1) rounding is moot.  JAX arrays are data, taken as given."""
    if any(isinstance(x, jax.Array) for x in jax.tree.leaves(values)):
        return
    try:
        steps = np.asarray(values, np.float64)
    except (TypeError, ValueError, OverflowError):  # not numbers: the cast says what
        return
    dtype = jnp.dtype(dtype)
    for i, step in enumerate(steps.ravel()):
        stored = float(np.asarray(step, dtype))
        if not (np.isfinite(step) and np.isfinite(stored) and step <= INT32_MAX):
            continue  # an overflow is its own error; inf, nan and the unreachable are moot
        if math.ceil(stored) != math.ceil(step):
            where = f"{name}[{i}]" if steps.ndim else name
            shown = int(step) if step == math.floor(step) else float(step)
            raise ValueError(
                f"{call}({where}={shown}): {where} is stored in {dtype}, which rounds it to "
                f"{stored:.10g}, so the schedule would change at step {math.ceil(stored)}, "
                f"not {math.ceil(step)} (jax_enable_x64 stores float64)"
            )


@dataclass_transform(frozen_default=True)
def schedule_class(cls: type[_T]) -> type[_T]:
    """A frozen dataclass registered as a JAX pytree whose fields are all leaves.

    Being a pytree, a schedule is stored whole in optimizer state, swept by
    ``jax.vmap`` over its fields and addressed field by field by
    ``get_hyperparams``/``set_hyperparams``.  Being an ordinary object (not a
    tuple), it can be weakly referenced, which ``jax.jit(schedule)`` needs.
    Equality and hashing are by identity, as for functions (fields may be arrays).
    """
    cls = dataclasses.dataclass(frozen=True, eq=False)(cls)
    _register_with_flax(cls)  # gradtx imported after flax
    return jax.tree_util.register_dataclass(cls)


_FLAX_REGISTERED: set[type] = set()


def _register_with_flax(cls: type) -> None:
    """Teach ``flax.serialization`` the schedule classes, once flax is imported.

    flax serializes NamedTuples and its own registered types only; a state
    holding a schedule would otherwise fail in ``flax.serialization.to_bytes``.
    gradtx does not import flax: a class is registered when it is defined, or
    one of its instances built or unpickled, after flax has been imported.
    """
    if cls in _FLAX_REGISTERED:
        return
    serialization = sys.modules.get("flax.serialization")
    if serialization is None:
        return
    _FLAX_REGISTERED.add(cls)

    def to_state_dict(value):
        return {
            f.name: serialization.to_state_dict(getattr(value, f.name))
            for f in dataclasses.fields(value)
        }

    def from_state_dict(value, state):
        names = [f.name for f in dataclasses.fields(value)]
        if not isinstance(state, dict) or set(state) != set(names):
            # a checkpoint of another hyperparameter form (a number, another schedule)
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(
                f"flax.serialization: the target holds a {type(value).__name__} schedule "
                f"(fields {names}) where the state dict has {got}, at path "
                f"{serialization.current_path()}: restore into an optimizer built with the "
                "hyperparameter's form at saving"
            )
        restored = {
            name: serialization.from_state_dict(getattr(value, name), state[name], name)
            for name in names
        }
        return dataclasses.replace(value, **restored)

    serialization.register_serialization_state(cls, to_state_dict, from_state_dict, override=True)


def as_float(value: Any) -> jax.Array:
    """A field as an array of JAX's default float dtype (fields may be stored
    numbers, Python numbers or batched arrays under ``vmap``)."""
    return jnp.asarray(ints_as_floats(value)).astype(float_dtype())


def count_array(count: Any) -> jax.Array:
    """The step count as an array.  A Python or NumPy integer outside the range of JAX's
    default int (int32 unless x64) is refused by name: JAX raised a raw OverflowError
    for the one and wrapped the other.  The step counters saturate at that int's
    maximum, so only a direct call can pass one."""
    if isinstance(count, int) and not isinstance(count, bool):
        (low, high), extremes = _int_range(np.int64), (count, count)
    elif isinstance(count, (np.ndarray, np.generic)) and count.dtype.kind in "iu" and count.size:
        # JAX would wrap a NumPy int64 count beyond int32 without a word.
        (low, high), extremes = _int_range(count.dtype), (int(np.min(count)), int(np.max(count)))
    else:
        return jnp.asarray(count)
    outside = [v for v in extremes if not low <= v <= high]
    if outside:
        raise ValueError(
            f"gradtx.schedules: count {outside[0]} is outside [{low}, {high}], the range "
            f"of step counts in JAX's default int (jax_enable_x64 gives 64-bit counts)"
        )
    return jnp.asarray(count)


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


def safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
    """``num / den`` with a zero denominator replaced by 1, so a branch that a
    ``jnp.where`` discards never makes a NaN (``jax_debug_nans`` stays quiet)."""
    return num / jnp.where(den == 0, jnp.ones_like(den), den)


def concrete(value: Any) -> Any:
    """A NumPy scalar or 0-d array as the Python number it holds, so that it is
    checked (and stored) like one; anything else unchanged.  Only JAX arrays,
    possibly traced, are data that the factories cannot check."""
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return value.item()
    return value


def check_number(call: str, name: str, value: Any, **bounds: Any) -> Any:
    """A numeric schedule field: a real number or a scalar JAX array, range-checked.

    Returns the value, NumPy numbers as Python numbers.  The message shows the
    value as given (``first_period=0``, not ``0.0``).
    """
    value = concrete(value)
    try:
        check_hyperparam(call, name, value, **bounds)
    except ValueError as err:
        if not isinstance(value, numbers.Integral):
            raise
        try:
            shown = float(value)
        except OverflowError:  # an int beyond float's range: say where it overflows
            check_stored(call, name, value, float_dtype(), integer=False)
            raise
        raise ValueError(str(err).replace(f"={shown!r})", f"={value!r})", 1)) from None
    if is_number(value):
        # the fields are stored in the default float dtype: 1e39 would be inf in float32,
        # and a positive 1e-46 (0) or 1e-40 (subnormal: XLA on CPU flushes it) would be
        # 0, outside an open range such as one_cycle's div_factor's (a NaN or inf rate)
        check_stored(call, name, value, float_dtype(), integer=False)
        if bounds.get("low_open") and bounds.get("low") == 0:
            check_rounded(call, name, value, float_dtype(), (0.0, None, True, False))
    if isinstance(value, numbers.Real) and not isinstance(value, (int, float)):
        return float(value)  # a Fraction: JAX takes floats
    return value


def check_rate(call: str, name: str, value: Any) -> Any:
    """A rate raised to the step count (``r^k``) that is not 1 must not be stored as 1.0:
    ``decay_rate=0.99999999`` is 1.0 in float32 and the schedule would never change.
    (A rate that stays apart from 1 is still rounded, by up to 6e-8 relative in
    float32, and that compounds: ``r^k`` is then off by up to about ``k · 6e-8``;
    docs/schedules.md.)"""
    if is_number(value) and value != 1:
        dtype = float_dtype()
        if float(np.asarray(value, dtype)) == 1.0:
            raise ValueError(
                f"{call}({name}={value!r}): {name} rounds to 1.0 in {jnp.dtype(dtype)}, the "
                f"schedules' precision, so every power of {name} would be 1; enable "
                "jax_enable_x64 or use a value further from 1"
            )
    return value


# On while set_hyperparams checks a schedule's stored fields by its constructor: a
# step count there is data, as a JAX array's is, and only its sign is checked.  A
# fraction has a meaning (a boundary changes the rate at its ceiling, a warmup ramps
# over it), and so has a count the step counter never reaches.
steps_as_data = Flag(__name__, "steps_as_data")


def check_steps(call: str, name: str, value: Any, *, positive: bool = True) -> Any:
    """A step count: a non-negative (or positive) integer (a whole float taken as one,
    as torch's schedulers take it), or a scalar JAX array.

    Returns the value, NumPy integers and whole floats as Python ints.
    """
    value = concrete(value)
    if isinstance(value, (jax.Array, np.ndarray)):
        check_hyperparam(call, name, value)  # a real scalar; raises for an ndarray
        return value
    given = value  # shown in errors as the user wrote it
    if isinstance(value, (float, np.floating)) and value.is_integer():
        value = int(value)  # torch's schedulers take 10.0 steps as 10
    data = isinstance(given, (float, np.floating)) and steps_as_data.is_on()
    if not (isinstance(value, numbers.Integral) or data) or isinstance(value, bool):
        raise TypeError(f"{call}({name}={given!r}): {name} must be an int")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{call}({name}={given!r}): {name} must be {'>' if positive else '>='} 0")
    if data:
        return value
    counter = jax.dtypes.canonicalize_dtype(np.int64)  # int32, or int64 under x64
    if int(value) > np.iinfo(counter).max:
        raise ValueError(
            f"{call}({name}={given!r}): {name} must be at most {np.iinfo(counter).max}, "
            f"the largest step count an {counter} holds"
        )
    return value


def is_number(value: Any) -> bool:
    """A concrete real number (after ``concrete``), which cross-argument checks can compare."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def half_cosine(rest: jax.Array, length: jax.Array) -> jax.Array:
    """``½(1 + cos(π t/T))`` for ``rest = T − t`` as ``sin²(π rest/(2T))``; the caller
    forms ``rest``, exactly where it can (docs/schedules.md).

    Near the end ``1 + cos`` cancels: its float32 error of ~6e-8 is 21% of the
    value at step 9,999 of 10,000 (torch's doubles and this form: 1e-7).
    ``rest`` may be negative (a cycle's second half): the square is even.
    """
    # A period of length 0 (an array field) is at its start, as 1 + cos(0) gave.
    return jnp.where(length == 0, 1.0, jnp.sin(0.5 * jnp.pi * safe_div(rest, length)) ** 2)


def lerp(a: jax.Array, b: jax.Array, p: jax.Array, q: jax.Array) -> jax.Array:
    """``a + (b − a) p`` with ``q = 1 − p`` (formed exactly by the caller), written from
    the end of smaller magnitude, so a value near a small end keeps its relative
    precision (``b + (a − b) q`` cancelled to 4.8% off at step 1 of a float32 warm-up
    from 0 over 10^6 steps)."""
    return jnp.where(jnp.abs(a) <= jnp.abs(b), a + (b - a) * p, b + (a - b) * q)


def safe_pow(base: jax.Array, exponent: jax.Array) -> jax.Array:
    """``base ** exponent`` for ``base >= 0`` (``0 ** 0 = 1``) with a finite gradient at
    ``base = 0``.

    ``jnp.power``'s gradient there is infinite for ``exponent < 1``; where a
    schedule holds its final value the chain rule multiplies it by 0, which
    makes ``jax.grad(schedule)`` NaN.  Here the gradient at 0 is 0.
    """
    positive = base > 0
    safe = jnp.where(positive, base, jnp.ones_like(base))
    at_zero = jnp.where(exponent == 0, 1.0, 0.0)
    return jnp.where(positive, safe**exponent, at_zero)


def float_vector(call: str, name: str, values: Sequence[Any]) -> np.ndarray | jax.Array:
    """A variable-length numeric field, kept as one 1-D array leaf.

    Numbers (concrete JAX arrays included) give a float64 NumPy vector, checked
    for NaN.  With a traced value among them (under ``jit``, ``vmap`` or
    ``grad``) the vector is a JAX array of JAX's default float dtype,
    differentiable in those entries.
    """
    out: list[Any] = []
    for v in values:
        try:
            out.append(float(v))
        except jax.errors.ConcretizationTypeError:
            out.append(v)  # traced: data the factory cannot check
        except (TypeError, ValueError):
            raise TypeError(f"{call}({name}=...): {name} must hold real numbers") from None
    if any(isinstance(v, float) and np.isnan(v) for v in out):
        raise ValueError(f"{call}({name}=...): {name} must not hold NaN")
    if all(isinstance(v, float) for v in out):
        return np.asarray(out, dtype=np.float64)
    dtype = float_dtype()
    return jnp.stack([jnp.asarray(v).astype(dtype).reshape(()) for v in out])

"""Shared helpers: the schedule class decorator, argument checks, and casts of
every field to one float dtype before arithmetic."""

from __future__ import annotations

import dataclasses
import fractions
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
from gradtx._checks import check_hyperparam
from gradtx._checks import is_known
from gradtx._checks import known_value
from gradtx._checks import shown_array
from gradtx._dtypes import INT32_MAX
from gradtx._dtypes import ints_as_floats
from gradtx._stored import check_rounded
from gradtx._stored import check_stored
from gradtx._tree import Flag

_T = TypeVar("_T")


class Schedule:
    """Base of the schedule classes (see ``schedule_class``)."""

    # What gradtx._base.is_schedule recognises.
    _is_gradtx_schedule = True
    # Fields raised to the step count (``check_rate``), checked by set_hyperparams too.
    _rates: tuple[str, ...] = ()
    # 0/1 option fields: the only ones set_hyperparams lets a bool set, and that must
    # hold 0 or 1 (_remake: the formula reads any other number as 1).
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
    (2**31 - 1) rounding is moot.  Traced JAX arrays are data, taken as given."""
    if any(isinstance(x, jax.Array) and not is_known(x) for x in jax.tree.leaves(values)):
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


def safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
    """``num / den`` with a zero denominator replaced by 1, so a branch that a
    ``jnp.where`` discards never makes a NaN (``jax_debug_nans`` stays quiet)."""
    return num / jnp.where(den == 0, jnp.ones_like(den), den)


def concrete(value: Any) -> Any:
    """A NumPy scalar or 0-d array as the Python number it holds, so that it is
    checked (and stored) like one; anything else unchanged."""
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return value.item()
    return value


def check_number(call: str, name: str, value: Any, **bounds: Any) -> Any:
    """A numeric schedule field: a real number or a scalar JAX array, range-checked.

    Returns the value, NumPy numbers and known JAX arrays as Python numbers (exactly
    the array's value).  The message shows the value as given (``first_period=0``,
    not ``0.0``; ``-0.1 as a float32 array``).
    """
    value = concrete(value)
    if isinstance(value, jax.Array):
        check_hyperparam(call, name, value, **bounds)  # shown as the array it is
        value = known_value(value)  # compared with the other fields as a number
    else:
        try:
            check_hyperparam(call, name, value, **bounds)
        except ValueError:
            if isinstance(value, numbers.Integral) and abs(int(value)) > sys.float_info.max:
                # an int beyond float's range is "not finite" there: say where it overflows
                check_stored(call, name, value, float_dtype(), integer=False)
            raise
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
# step count there is data, as a traced JAX array's is, and only its sign is checked.  A
# fraction has a meaning (a boundary changes the rate at its ceiling, a warmup ramps
# over it), and so has a count the step counter never reaches.
steps_as_data = Flag(__name__, "steps_as_data")


def check_steps(call: str, name: str, value: Any, *, positive: bool = True) -> Any:
    """A step count: a non-negative (or positive) integer (a whole float taken as one,
    as torch's schedulers take it), or a scalar JAX array.  A known array is its
    number, a fraction of a step included (taken as data, as ``set_hyperparams``
    takes one: ``steps_as_data``); a traced one is data.

    Returns the value, NumPy integers, whole floats and known whole arrays as Python
    ints, a known fraction as a float.
    """
    if isinstance(value, jax.Array):
        check_hyperparam(call, name, value, low=0.0, low_open=positive)  # a real scalar
        number = known_value(value)
        if number is value:
            return value  # traced: data
        _check_counter(call, name, number, shown_array(value))
        # compared with the other fields as a number; a fraction is data
        return int(number) if float(number).is_integer() else float(number)
    value = concrete(value)
    if isinstance(value, np.ndarray):
        check_hyperparam(call, name, value)  # raises: not a scalar
        return value
    given = value  # shown in errors as the user wrote it
    if isinstance(value, (float, np.floating)) and value.is_integer():
        value = int(value)  # torch's schedulers take 10.0 steps as 10
    elif isinstance(value, fractions.Fraction) and value.denominator == 1:
        value = int(value.numerator)  # Fraction(10, 1), as 10.0 (not a bool: refused below)
    data = isinstance(given, (float, np.floating)) and steps_as_data.is_on()
    if not (isinstance(value, numbers.Integral) or data) or isinstance(value, bool):
        raise TypeError(f"{call}({name}={given!r}): {name} must be an int")
    if data and not math.isfinite(value):  # NaN passes the sign checks below
        raise ValueError(f"{call}({name}={given!r}): {name} must be finite")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{call}({name}={given!r}): {name} must be {'>' if positive else '>='} 0")
    if data:
        return value
    _check_counter(call, name, value, repr(given))
    return value


def _check_counter(call: str, name: str, steps: float, shown: str) -> None:
    """A step count the step counter can reach (int32, or int64 under x64)."""
    counter = jax.dtypes.canonicalize_dtype(np.int64)
    if steps > np.iinfo(counter).max:
        raise ValueError(
            f"{call}({name}={shown}): {name} must be at most {np.iinfo(counter).max}, "
            f"the largest step count an {counter} holds"
        )


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

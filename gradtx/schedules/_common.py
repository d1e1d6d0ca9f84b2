"""Shared helpers: the schedule class decorator, argument checks, and casts of
every field to one float dtype before arithmetic."""

from __future__ import annotations

import dataclasses
import numbers
import sys
from collections.abc import Sequence
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from typing_extensions import dataclass_transform

from gradtx._base import float_dtype
from gradtx._checks import check_hyperparam

_T = TypeVar("_T")


class Schedule:
    """Base of the schedule classes (see ``schedule_class``)."""

    # What gradtx._base.is_schedule recognises.
    _is_gradtx_schedule = True

    def __post_init__(self) -> None:
        _register_with_flax(type(self))

    def _floats(self) -> tuple[jax.Array, ...]:
        """Every field, in order, as an array of JAX's default float dtype."""
        fields = dataclasses.fields(self)  # type: ignore[arg-type]
        return tuple(as_float(getattr(self, f.name)) for f in fields)


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
    return jax.tree_util.register_dataclass(cls)


_FLAX_REGISTERED: set[type] = set()


def _register_with_flax(cls: type) -> None:
    """Teach ``flax.serialization`` the schedule classes, once flax is imported.

    flax serializes NamedTuples and its own registered types only; a state
    holding a schedule would otherwise fail in ``flax.serialization.to_bytes``.
    gradtx does not import flax: a class is registered when one of its
    instances is built after flax has been imported (the usual order).
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
        restored = {
            f.name: serialization.from_state_dict(getattr(value, f.name), state[f.name], f.name)
            for f in dataclasses.fields(value)
        }
        return dataclasses.replace(value, **restored)

    serialization.register_serialization_state(cls, to_state_dict, from_state_dict, override=True)


def as_float(value: Any) -> jax.Array:
    """A field as an array of JAX's default float dtype (fields may be stored
    numbers, Python numbers or batched arrays under ``vmap``)."""
    return jnp.asarray(value).astype(float_dtype())


def as_count(count: Any) -> jax.Array:
    """The 0-based step count (int32, or float inside ``join``) as a float."""
    return jnp.asarray(count).astype(float_dtype())


def periods(t: jax.Array, period: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(q, r)`` with ``t = q · period + r`` and ``0 <= r < period`` (``period > 0``).

    ``t / period - floor(t / period)`` loses the fraction's low bits as ``t``
    grows (float32: 3e-4 of a cycle at 20k steps); ``t - q · period`` is exact for
    whole numbers below 2^24, and one step of correction undoes a quotient that
    rounded across a whole number.
    """
    q = jnp.floor(safe_div(t, period))
    r = t - q * period
    low, high = r < 0, r >= period
    q = jnp.where(low, q - 1, jnp.where(high, q + 1, q))
    r = jnp.where(low, r + period, jnp.where(high, r - period, r))
    return q, r


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
        raise ValueError(str(err).replace(f"={float(value)!r})", f"={value!r})", 1)) from None
    return value


def check_steps(call: str, name: str, value: Any, *, positive: bool = True) -> Any:
    """A step count: a non-negative (or positive) integer, or a scalar JAX array.

    Returns the value, NumPy integers as Python ints.
    """
    value = concrete(value)
    if isinstance(value, (jax.Array, np.ndarray)):
        check_hyperparam(call, name, value)  # a real scalar; raises for an ndarray
        return value
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{call}({name}={value!r}): {name} must be an int")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{call}({name}={value!r}): {name} must be {'>' if positive else '>='} 0")
    return value


def is_number(value: Any) -> bool:
    """A concrete real number (after ``concrete``), which cross-argument checks can compare."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


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


def float_vector(call: str, name: str, values: Sequence[Any]) -> np.ndarray:
    """A variable-length numeric field, kept as one 1-D array leaf."""
    try:
        out = np.asarray([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{call}({name}=...): {name} must hold real numbers") from None
    if np.isnan(out).any():
        raise ValueError(f"{call}({name}=...): {name} must not hold NaN")
    return out

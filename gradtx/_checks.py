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
) -> None:
    """Eagerly check one numeric hyperparameter of a factory.

    Python numbers are range-checked; arrays (possibly traced) are accepted as is;
    callables only where ``schedule`` is true.  Errors name the call and argument,
    e.g. ``gradtx.adam(b1=1.5): b1 must be in [0, 1)``.
    """
    if callable(value) and not isinstance(value, (jax.Array, np.ndarray)):
        if not schedule:
            raise TypeError(f"{call}({name}=...): {name} must be a number, not a schedule")
        return
    if isinstance(value, (jax.Array, np.ndarray, np.generic)):
        if jnp.ndim(value) != 0 or not jnp.issubdtype(jnp.result_type(value), jnp.number):
            raise TypeError(f"{call}({name}=...): {name} must be a real scalar")
        # Arrays are data (possibly traced); only Python numbers are range-checked,
        # so jit and eager behave the same.
        return
    if not _is_number(value):
        raise TypeError(
            f"{call}({name}={value!r}): {name} must be a real number, got {type(value).__name__}"
        )
    value = float(value)
    if np.isnan(value):
        raise ValueError(f"{call}({name}=nan): {name} must not be NaN")
    bad_low = low is not None and (value <= low if low_open else value < low)
    bad_high = high is not None and (value >= high if high_open else value > high)
    if bad_low or bad_high:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        raise ValueError(f"{call}({name}={value!r}): {name} must be in {interval}")


def check_flag(call: str, name: str, value: Any, kind: type | tuple[type, ...]) -> None:
    """``TypeError`` naming the call unless ``value`` is of ``kind`` (static options)."""
    if kind is bool and not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{call}({name}={value!r}): {name} must be a bool")
    if kind is not bool and (not isinstance(value, kind) or isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise TypeError(f"{call}({name}={value!r}): {name} must be {names}")


def check_choice(call: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    """``ValueError`` naming the call unless ``value`` is one of ``choices``."""
    if not isinstance(value, str):
        raise TypeError(f"{call}({name}={value!r}): {name} must be one of {choices}")
    if value not in choices:
        raise ValueError(f"{call}({name}={value!r}): {name} must be one of {choices}")


def is_zero(value: Any) -> bool:
    """True for a Python/NumPy zero: a stage with a zero weight is left out."""
    return (_is_number(value) or isinstance(value, np.generic)) and float(value) == 0.0

"""Numbers as a dtype stores them: checks that a number keeps its meaning there, and
warnings of 16-bit arrays on which numbers collapse.

``optax.inject_hyperparams`` stores hyperparameters in the params' dtype, and every
state stores numbers in some dtype: a momentum of 0.999 is 1.0 in bfloat16, an
``eps`` of 1e-8 is 0 in float16, a step count of 2**24 + 1 is 2**24 in float32.
Messages name the public call and the argument, as in ``gradtx._checks``.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import types
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradtx import _dtypes
from gradtx._checks import is_concrete_number
from gradtx._checks import is_known
from gradtx._checks import is_number
from gradtx._checks import known_value
from gradtx._checks import shown
from gradtx._dtypes import INT32_MAX
from gradtx._ranges import interval
from gradtx._ranges import outside

_WARNED: set[tuple[str, str, str]] = set()


def outside_gradtx() -> int:
    """The ``stacklevel`` of the user's frame: the first outside gradtx, optax, JAX and Flax
    (the caller of the public call, not ``optax.inject_hyperparams``' init or JAX's
    tracing of a jitted step that called it); the outermost frame if there is none."""
    frame: types.FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_back is not None and _in_a_library(frame):
        frame, level = frame.f_back, level + 1
    return level


def _in_a_library(frame: types.FrameType) -> bool:
    return frame.f_code.co_filename.startswith(_LIBRARY_DIRS)


def _package_dir(name: str) -> str | None:
    spec = importlib.util.find_spec(name)
    return spec.origin if spec is not None else None


# Flax too: its TrainState.create and nnx.Optimizer call init for the user's line,
# found without importing Flax, which gradtx does not need.
_LIBRARY_DIRS = tuple(
    os.path.dirname(os.path.abspath(path)) + os.sep
    for path in (__file__, optax.__file__, jax.__file__, _package_dir("flax"))
    if path
)


_FLOAT32_HINT = (
    "it in float32 (optax.inject_hyperparams stores numbers in the params' dtype "
    "unless given hyperparam_dtype=jnp.float32).  Shown once per process"
)


def warn_narrow_rate(call: str, name: str, value: jax.Array) -> None:
    """Warn, once per process for each call, argument and dtype, of a 16-bit decay rate
    or momentum whose value is not known here (traced): bfloat16 holds no number between
    0.996 and 1 (float16 none between 0.9995 and 1), so a ``b2 = 0.999`` would be 1.0
    and ``1 - b2`` 0.  An eager ``init`` checks the value itself."""
    dtype = jnp.result_type(value)
    if not _dtypes.is_16_bit_float(dtype) or not _first_time(call, name, dtype):
        return
    warnings.warn(
        f"{call}({name}=...): {name} is a {dtype} array whose value is not known here "
        f"(traced, or held by other processes); {dtype} holds no number between "
        f"{_below_one(dtype):g} and 1, so if {name} is closer to 1 it is 1.0 and 1 - {name} "
        "is 0.  Give " + _FLOAT32_HINT,
        stacklevel=outside_gradtx(),
    )


def _first_time(call: str, name: str, dtype: Any) -> bool:
    """Whether ``call``'s ``name`` in ``dtype`` is warned of for the first time in this
    process (it is recorded now)."""
    key = (call, name, str(dtype))
    if key in _WARNED:
        return False
    _WARNED.add(key)
    return True


def _below_one(dtype: Any) -> float:
    """The largest number below 1 that ``dtype`` holds."""
    return 1.0 - float(jnp.finfo(dtype).epsneg)


def warn_collapsed(call: str, name: str, value: Any, *, one_allowed: bool, default: Any) -> None:
    """Warn, once per process for each call, argument and dtype, of a known 16-bit
    array that sits where its format collapses the numbers around it: on 1.0 where 1
    is allowed (bfloat16 holds nothing between 0.996 and 1, so a momentum of 0.999 is
    1.0, an undamped heavy ball) or on 0.0 where the factory's default is positive
    (float16 holds nothing below 6e-8, so an eps of 1e-8 is 0).  The caller's number
    is not known (optax.inject_hyperparams rounded it before gradtx saw it), so this
    is a warning, not a refusal."""
    if not (isinstance(value, jax.Array) and value.ndim == 0 and is_known(value)):
        return
    dtype = jnp.result_type(value)
    if not _dtypes.is_16_bit_float(dtype):
        return
    number = float(value)
    if number == 1.0 and one_allowed:
        below = _below_one(dtype)
        why = f"{dtype} holds no number between {below:g} and 1, so a {name} closer to 1 is 1.0"
    elif number == 0.0 and is_number(default) and not isinstance(default, bool) and default > 0:
        smallest = float(jnp.finfo(dtype).smallest_subnormal)
        why = (
            f"{dtype} holds no positive number below {smallest:g}, so a smaller {name} "
            f"(the default, {default:g}, is one) is 0"
        )
    else:
        return
    if not _first_time(call, name, dtype):
        return
    warnings.warn(
        f"{call}({name}={shown(value)}): {why}.  If that is not the number you gave, give "
        + _FLOAT32_HINT,
        stacklevel=outside_gradtx(),
    )


def check_below_one(
    call: str, name: str, value: float, dtype: Any, where: str, why: str = ""
) -> None:
    """A decay rate must stay below 1 once rounded to ``dtype``: stored there, ``1 - rate``
    is 0; where it only multiplies there, a statistic would not decay (``why``)."""
    rounded = np.asarray(value, dtype=jnp.dtype(dtype))
    if float(rounded) >= 1.0:
        why = why or f"so 1 - {name} is 0"
        raise ValueError(
            f"{call}({name}={value!r}): {name} rounds to 1.0 {where} {jnp.dtype(dtype)}, "
            f"{why}; use a smaller {name} (or float64 params under jax_enable_x64)"
        )


def as_stored(given: Any, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """``given`` (numbers, as float64) as ``dtype`` holds them for XLA on CPU, and which
    of them were subnormal there: those are 0, as XLA flushes them (not float16's: XLA
    on CPU computes float16 in float32, where they are normal)."""
    dtype = jnp.dtype(dtype)
    with np.errstate(over="ignore", under="ignore"):
        stored = np.asarray(given, np.float64).astype(dtype).astype(np.float64)
    flushed = (stored != 0) & (np.abs(stored) < float(jnp.finfo(dtype).tiny))
    flushed &= dtype != jnp.float16
    return np.where(flushed, 0.0, stored), flushed


def rounding_note(stored: float, flushed: bool, dtype: Any, why: str = "") -> str:
    """How a number changed once stored in ``dtype``, for a message that goes on
    ``outside (low, high)``."""
    if flushed:
        return f"is a subnormal number in {jnp.dtype(dtype)}, which XLA on CPU flushes to 0:"
    return f"rounds to {stored:g} stored in {jnp.dtype(dtype)}{why},"


def check_rounded(call: str, name: str, given: Any, dtype: Any, bounds: tuple) -> None:
    """A number in its range stays there once stored in ``dtype``: ``eta_plus=1.00000001``
    is 1.0 in float32, outside (1, inf); ``max_norm=1e-50`` is 0, outside (0, inf), and
    so is 1e-40, a subnormal number XLA on CPU flushes to 0."""
    kept, flushed = as_stored(float(given), dtype)
    stored = float(kept)
    if np.isfinite(stored) and outside(stored, bounds):
        raise ValueError(
            f"{call}({name}={given!r}): {name} {rounding_note(stored, bool(flushed), dtype)} "
            f"outside {interval(bounds)} (jax_enable_x64 stores float64)"
        )


def check_stored(call: str, name: str, given: Any, dtype: Any, *, integer: bool) -> None:
    """A number keeps its meaning once stored in ``dtype``: a finite one does not overflow
    to inf, and an integer (a count of steps) is not rounded to a neighbour."""
    dtype = jnp.dtype(dtype)
    try:
        value = float(given)
    except OverflowError:  # an int beyond float64's range
        value = np.inf if given > 0 else -np.inf
        raise ValueError(
            f"{call}({name}={shown(given)}): {name} overflows to {value} when stored in {dtype}"
        ) from None
    with np.errstate(over="ignore"):
        stored = float(np.asarray(value, dtype=dtype))
    if np.isfinite(value) and not np.isfinite(stored):
        raise ValueError(
            f"{call}({name}={shown(given)}): {name} overflows to inf when stored in {dtype} "
            f"(at most {float(jnp.finfo(dtype).max):g})"
        )
    if integer and np.isfinite(value) and stored != value:
        raise ValueError(
            f"{call}({name}={shown(given)}): {name} is stored in {dtype}, which rounds it to "
            f"{stored:.0f} (not every integer above 2**{jnp.finfo(dtype).nmant + 1} is "
            "exact there; jax_enable_x64 stores float64)"
        )


def check_step_number(call: str, name: str, given: Any, dtype: Any) -> None:
    """A step number the int32 step count can reach keeps its whole part once stored in
    ``dtype`` (16777217 or 16777217.5 would be 16777216 in float32: another step).
    Beyond the count's reach (a t0 of 1e12 that turns averaging off) rounding is moot."""
    value = float(given)
    stored = float(np.asarray(value, dtype=jnp.dtype(dtype)))
    if value <= INT32_MAX and math.floor(stored) != math.floor(value):
        raise ValueError(
            f"{call}({name}={given!r}): {name} is stored in {jnp.dtype(dtype)}, which rounds "
            f"it to {stored:.0f}, another step (jax_enable_x64 stores float64)"
        )


def check_stored_values(call: str, name: str, values: Any, dtype: Any) -> None:
    """``check_stored`` of the largest finite magnitude among ``values`` (a number or a
    NumPy array of them, as a schedule's fields are)."""
    values = np.asarray(values)
    if values.dtype.kind != "f":
        return
    finite = np.abs(values[np.isfinite(values)])
    if finite.size:
        check_stored(call, name, float(finite.max()), dtype, integer=False)


def check_rates(call: str, rates: dict[str, Any], params: Any) -> None:
    """Each decay rate whose value is known stays below 1 in the precision the params'
    statistics use."""
    dtypes = {_dtypes.real_dtype(_dtypes.compute_dtype(x.dtype)) for x in jax.tree.leaves(params)}
    for name, value in rates.items():
        if is_concrete_number(known_value(value)):
            for dtype in dtypes:
                # 1 - rate is formed where the rate is stored (_numerics.one_minus), so it
                # is not 0 here: the statistics' decay, the rate itself, is 1
                why = f"so the statistics, which decay by {name} in {jnp.dtype(dtype)}, would not decay"
                check_below_one(
                    call, name, float(value), dtype, "in the statistics' precision,", why
                )

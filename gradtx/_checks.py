"""Argument checks: eager ones at construction, structural ones while tracing.

Every message names the public call and the argument or leaf, e.g.
``gradtx.adam(b1=1.5): b1 must be in [0, 1)``.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _tree
from gradtx._base import is_schedule

INT32_MAX = int(np.iinfo(np.int32).max)


def is_number(v: Any) -> bool:
    """A Python or NumPy real number (not a bool)."""
    if isinstance(v, np.generic):  # np.str_ and np.datetime64 are np.generic too
        return v.dtype.kind != "b" and is_numeric_dtype(v.dtype)
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def is_numeric_dtype(dtype: Any) -> bool:
    """A bool, integer, floating or complex dtype, ml_dtypes' (bfloat16, whose NumPy
    kind is "V") included; not a string, date, duration or object dtype."""
    dtype = np.dtype(dtype)
    return dtype.kind in "biufc" or (dtype.kind == "V" and jnp.issubdtype(dtype, jnp.number))


def is_concrete_number(v: Any) -> bool:
    """A number whose value is known now: Python/NumPy scalars and 0-d NumPy arrays."""
    if isinstance(v, np.ndarray):
        return v.ndim == 0 and v.dtype.kind in "iuf"
    return is_number(v)


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

    Python and NumPy numbers (0-d NumPy arrays included) are concrete, so they
    are range-checked (and must not be NaN, nor infinite unless
    ``finite=False``).  JAX arrays, possibly traced, are data: only their
    shape and kind are checked, so jit and eager behave the same.  Callables
    are accepted only where ``schedule`` is true.
    """
    if callable(value) and not isinstance(value, (jax.Array, np.ndarray)):
        if not schedule:
            raise TypeError(f"{call}({name}=...): {name} must be a number, not a schedule")
        if low is not None or high is not None:
            bounds = (low, high, low_open, high_open)
            _check_schedule_range(call, name, value, bounds)
        return
    if isinstance(value, (jax.Array, np.ndarray, np.generic)):
        given = np.dtype(getattr(value, "dtype", float))  # a longdouble has no JAX dtype
        if (given.kind == "f" and given.itemsize > 8) or (
            given.kind == "c" and given.itemsize > 16
        ):
            raise TypeError(f"{call}({name}=...): {name} must be a real scalar, got {given}")
        if not is_numeric_dtype(given):
            # strings, dates and objects: JAX's own message would name neither call nor name
            kind = {"U": "str", "S": "bytes"}.get(given.kind, given.name)
            raise TypeError(f"{call}({name}={value!r}): {name} must be a real number, got {kind}")
        dtype = jnp.result_type(value)
        if jnp.ndim(value) != 0 or not (
            jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)
        ):
            shape = f"{given}{list(jnp.shape(value))}" if jnp.ndim(value) else str(dtype)
            raise TypeError(f"{call}({name}=...): {name} must be a real scalar, got {shape}")
        if isinstance(value, jax.Array):
            return
        value = value.item()
    if not is_number(value):
        raise TypeError(
            f"{call}({name}={value!r}): {name} must be a real number, got {type(value).__name__}"
        )
    given = value  # shown as the caller wrote it (patience=-1, not -1.0)
    try:
        value = float(value)
    except OverflowError:  # an int beyond float's range
        raise ValueError(f"{call}({name}={value!r}): {name} must be finite") from None
    if np.isnan(value):
        raise ValueError(f"{call}({name}=nan): {name} must not be NaN")
    if finite and np.isinf(value):
        raise ValueError(f"{call}({name}={given!r}): {name} must be finite")
    bounds = (low, high, low_open, high_open)
    if outside(value, bounds):
        raise ValueError(f"{call}({name}={given!r}): {name} must be in {interval(bounds)}")


def outside(value: float, bounds: tuple) -> bool:
    """``value`` lies outside ``(low, high, low_open, high_open)`` (``None``: unbounded)."""
    low, high, low_open, high_open = bounds
    bad_low = low is not None and (value <= low if low_open else value < low)
    bad_high = high is not None and (value >= high if high_open else value > high)
    return bool(bad_low or bad_high)


def interval(bounds: tuple) -> str:
    """``(low, high, low_open, high_open)`` written as an interval: ``[0, 1)``."""
    low, high, low_open, high_open = bounds
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    return f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"


_DENSE_STEPS = 2**16
_KNOTS = 64


def _check_schedule_range(call: str, name: str, schedule: Any, bounds: tuple) -> None:
    """Refuse a gradtx schedule whose values leave the hyperparameter's range.

    A range of [0, inf) is not checked here: gradtx's schedule constructors
    already keep their values there.  See ``schedule_values`` for what is
    evaluated and what is not checked.
    """
    low, high = bounds[0], bounds[1]
    if high is None and (low is None or low == 0):
        return
    probed = schedule_values(schedule)
    where = None if probed is None else first_outside(*probed, bounds)
    if where is not None:
        raise ValueError(
            f"{call}({name}={type(schedule).__name__}(...)): the schedule {where}; "
            f"{name} must be in {interval(bounds)}"
        )


@jax.jit
def _evaluate(schedule: Any, counts: jax.Array) -> jax.Array:
    # one compiled program per schedule form: an eager evaluation of 2**16 counts
    # costs up to 0.1 s a call (SGDR), and set_hyperparams may check one every step
    return schedule(counts)


def schedule_values(schedule: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """``(counts, values)``: a gradtx schedule evaluated where it may leave a range.

    The counts are every step below 2**16, the first 64 fields' values and their
    neighbours (boundaries, ends of phases) and the powers of 2 up to int32's
    maximum: that catches ``momentum=linear(0.5, 1.5, 10)``, while a value out of
    range between those steps of a longer schedule can pass.  A plain callable, a
    schedule holding traced fields or one that cannot take a vector of counts
    gives ``None`` (not checked).
    """
    if not is_schedule(schedule):
        return None
    fields = jax.tree.leaves(schedule)
    if any(isinstance(x, jax.core.Tracer) for x in fields):
        return None
    try:
        knots = np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in fields] + [[]])
    except (TypeError, ValueError):  # a non-numeric field: not a schedule this can read
        return None
    knots = knots[np.isfinite(knots) & (np.abs(knots) < INT32_MAX)][:_KNOTS]
    near = np.floor(knots)[:, None] + np.arange(-1.0, 2.0)
    powers = np.minimum(2.0 ** np.arange(32), INT32_MAX)
    counts = np.zeros(_DENSE_STEPS + 3 * _KNOTS + 32)  # one length: no recompiling per call
    picked = np.concatenate([np.arange(_DENSE_STEPS), near.ravel(), powers])
    counts[: picked.size] = np.clip(picked, 0, INT32_MAX)
    values = None
    with jax.ensure_compile_time_eval():  # concrete even where a factory runs under jit
        steps = jnp.asarray(counts, jnp.int32)
        for evaluate in (_evaluate, lambda s, c: s(c)):  # eagerly where it cannot be jitted
            try:
                values = np.asarray(evaluate(schedule, steps), np.float64)
                break
            except Exception:  # noqa: BLE001, S112  (unusual: unchecked, as a plain callable)
                continue
    if values is None or values.shape != counts.shape:
        return None
    return counts, values


def first_outside(
    counts: np.ndarray,
    values: np.ndarray,
    bounds: tuple,
    *,
    nan: bool = False,
    finite: bool = False,
) -> str | None:
    """Where ``values`` (at ``counts``) first leave ``bounds``: ``"reaches -1 at step 0"``.

    An open low end is taken as included (a decay that underflows to it far out
    is harmless); an open high end is not (a ``b1`` reaching 1 makes ``1 - b1^t``
    zero).  An infinite value is judged by its sign against the bounds, and is
    outside where ``finite`` is true; a NaN is outside only where ``nan`` is true.
    """
    low, high = bounds[0], bounds[1]
    above = False if high is None else (values >= high) if bounds[3] else (values > high)
    bad = ~np.isnan(values) & ((values < (-np.inf if low is None else low)) | above)
    bad |= (np.isnan(values) & nan) | (np.isinf(values) & finite)
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    return f"reaches {values[i]:g} at step {int(counts[i])}"


def check_below_one(call: str, name: str, value: float, dtype: Any, where: str) -> None:
    """A decay rate must stay below 1 once rounded to ``dtype`` (else ``1 - rate`` is 0)."""
    rounded = np.asarray(value, dtype=jnp.dtype(dtype))
    if float(rounded) >= 1.0:
        raise ValueError(
            f"{call}({name}={value!r}): {name} rounds to 1.0 {where} {jnp.dtype(dtype)}, "
            f"so 1 - {name} is 0; use a smaller {name} (or float64 params under jax_enable_x64)"
        )


def as_stored(given: Any, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """``given`` (numbers, as float64) as ``dtype`` holds them for XLA on CPU, and which
    of them were subnormal there: those are 0, as XLA flushes them."""
    with np.errstate(over="ignore", under="ignore"):
        stored = np.asarray(given, np.float64).astype(jnp.dtype(dtype)).astype(np.float64)
    flushed = (stored != 0) & (np.abs(stored) < float(jnp.finfo(jnp.dtype(dtype)).tiny))
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
            f"{call}({name}={given!r}): {name} overflows to {value} when stored in {dtype}"
        ) from None
    with np.errstate(over="ignore"):
        stored = float(np.asarray(value, dtype=dtype))
    if np.isfinite(value) and not np.isfinite(stored):
        raise ValueError(
            f"{call}({name}={given!r}): {name} overflows to inf when stored in {dtype} "
            f"(at most {float(jnp.finfo(dtype).max):g})"
        )
    if integer and np.isfinite(value) and stored != value:
        raise ValueError(
            f"{call}({name}={given!r}): {name} is stored in {dtype}, which rounds it to "
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


def check_takes_a_count(call: str, name: str, fn: Any) -> None:
    """A plain callable hyperparameter must take one argument, the step count."""
    try:
        inspect.signature(fn).bind(0)
    except TypeError:
        raise TypeError(
            f"{call}({name}=<function>): a schedule takes one argument, the step count"
        ) from None
    except ValueError:  # no signature to read (a builtin): its call will say
        pass


_TRACING_ERRORS = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerIntegerConversionError,
    jax.errors.TracerArrayConversionError,
)


def callable_value(call: str, name: str, fn: Any, count: Any) -> jax.Array:
    """A plain callable hyperparameter's value at ``count``: one real number, as the
    hyperparameter is.  Its shape and dtype are known while tracing, so this holds
    under jit too (a vector learning rate was broadcast over the leaves' last axis)."""
    try:
        value = fn(count)
    except _TRACING_ERRORS as err:
        raise TypeError(
            f"{call}({name}=<function>): the schedule is called with the step count as a "
            "traced JAX array (in every update, eager ones too: init's layout is traced to "
            "check the state), so Python control flow on it (or on another traced value) "
            f"fails; write it with jnp.minimum, jnp.where or jax.lax.cond ({type(err).__name__})"
        ) from err
    if isinstance(value, numbers.Rational) and not isinstance(value, (int, np.generic)):
        # a Fraction, as the factories take it; JAX has no array of them
        value = float(value)
    try:
        # a Python int beyond int32 raised, a NumPy int64 one was wrapped negative
        arr = jnp.asarray(_tree.ints_as_floats(value))
    except OverflowError:  # a Python int beyond float's range
        if not isinstance(value, int):
            raise TypeError(
                f"{call}({name}=<function>): it returned {type(value).__name__} holding an "
                "int beyond float's range, not one real number"
            ) from None
        raise ValueError(
            f"{call}({name}=<function>): it returned an int beyond float's range "
            f"({len(str(abs(value)))} digits), not a finite number"
        ) from None
    except (TypeError, ValueError):  # None is a ValueError
        arr = None
    if arr is None or not (
        jnp.issubdtype(arr.dtype, jnp.integer) or jnp.issubdtype(arr.dtype, jnp.floating)
    ):
        kind = type(value).__name__ if arr is None else str(arr.dtype)
        raise TypeError(f"{call}({name}=<function>): it returned {kind}, not a real number")
    if arr.shape != ():
        raise ValueError(
            f"{call}({name}=<function>): it returned shape {arr.shape}; a hyperparameter is "
            "one number (for one per parameter, use scale_by_multipliers or partition)"
        )
    return arr


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
    """Each concrete decay rate stays below 1 in the precision the params' statistics use."""
    dtypes = {_tree.real_dtype(_tree.compute_dtype(x.dtype)) for x in jax.tree.leaves(params)}
    for name, value in rates.items():
        if is_concrete_number(value):
            for dtype in dtypes:
                check_below_one(call, name, float(value), dtype, "in the statistics' precision,")


def inject_hint(name: str, value: Any, what: str) -> str:
    """The hint for a callable argument that ``optax.inject_hyperparams`` called as a
    schedule (it calls every callable argument not in ``static_args``): shown when the
    value is a JAX array, or when inject's frame holds ``name`` among the arguments it
    evaluates as schedules (its ``sched_hps``), whatever the call returned."""
    frame = inspect.currentframe()
    inside = False
    while frame is not None and not inside:
        inject = frame.f_code.co_filename.replace("\\", "/").endswith("optax/schedules/_inject.py")
        inside = inject and name in frame.f_locals.get("sched_hps", ())
        frame = frame.f_back
    if not (inside or isinstance(value, jax.Array)):
        return ""
    return f"; optax.inject_hyperparams calls {what} as a schedule: pass static_args=({name!r},)"


def check_dtype(call: str, name: str, value: Any) -> None:
    """``None`` or a floating or complex dtype (a storage dtype such as ``mu_dtype``)."""
    if value is None:
        return
    if isinstance(value, (jax.Array, np.ndarray)) or is_number(value):
        hint = inject_hint(name, value, "a dtype (a callable)")
        raise TypeError(f"{call}({name}=...): {name} must be a dtype or None, not a value{hint}")
    try:
        dtype = jnp.dtype(value)
    except TypeError:
        raise TypeError(f"{call}({name}={value!r}): {name} must be a dtype or None") from None
    if not jnp.issubdtype(dtype, jnp.inexact):
        raise ValueError(f"{call}({name}={dtype}): {name} must be a floating or complex dtype")
    # longdouble and complex256 are NumPy dtypes with no JAX array to hold them
    if (dtype.kind == "f" and dtype.itemsize > 8) or (dtype.kind == "c" and dtype.itemsize > 16):
        raise ValueError(
            f"{call}({name}={dtype}): {name} must be a dtype JAX holds "
            "(at most float64 or complex128)"
        )


def check_flag(call: str, name: str, value: Any, kind: type | tuple[type, ...]) -> None:
    """``TypeError`` naming the call unless ``value`` is of ``kind`` (static options)."""
    if kind is bool and not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{call}({name}={value!r}): {name} must be a bool")
    if kind is not bool and (not isinstance(value, kind) or isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        hint = ""
        if isinstance(value, jax.Array):  # optax.inject_hyperparams makes numbers arrays
            hint = f"; under optax.inject_hyperparams list {name!r} in static_args"
        raise TypeError(f"{call}({name}={value!r}): {name} must be {names}{hint}")


def check_int(call: str, name: str, value: Any, low: int) -> None:
    """A static integer option (a period, a count): ``TypeError`` unless an int,
    ``ValueError`` outside ``[low, 2**31 - 1]`` (it is compared with int32 counters)."""
    check_flag(call, name, value, (int, np.integer))
    if value < low or value > INT32_MAX:
        raise ValueError(f"{call}({name}={value!r}): {name} must be in [{low}, {INT32_MAX}]")


def check_choice(call: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    """``ValueError`` naming the call unless ``value`` is one of ``choices``."""
    if not isinstance(value, str):
        raise TypeError(f"{call}({name}={value!r}): {name} must be one of {choices}")
    if value not in choices:
        raise ValueError(f"{call}({name}={value!r}): {name} must be one of {choices}")


def refuse_function(call: str, name: str, tree: Any, what: str) -> None:
    """A function given for a pytree (optax takes one as a mask or labels) points to the
    ``{name}_fn`` argument; a callable pytree (an Equinox module) is a tree."""
    if callable(tree) and jax.tree.leaves(tree) in ([], [tree]):
        raise TypeError(
            f"{call}({name}=<function>): {name} must be a pytree of {what}; "
            f"pass a function of the params as {name}_fn"
        )


def check_static_tree(call: str, name: str, tree: Any, kinds: tuple, what: str) -> None:
    """``None`` or a pytree whose leaves are all of ``kinds`` (masks: static bools)."""
    if tree is None:
        return
    refuse_function(call, name, tree, what)
    bad = [leaf for leaf in jax.tree.leaves(tree) if not isinstance(leaf, kinds)]
    if bad:
        raise TypeError(
            f"{call}({name}=...): {name} must be a pytree of {what}, found a "
            f"{type(bad[0]).__name__} leaf"
        )


def is_zero(value: Any) -> bool:
    """True for a Python/NumPy zero: a stage with a zero weight is left out."""
    return is_concrete_number(value) and float(value) == 0.0


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


def no_more_positional(call: str, more: tuple) -> None:
    """``update`` takes three positional arguments; the rest are keywords (a loss passed
    fourth was a TypeError naming an inner function)."""
    if more:
        raise TypeError(
            f"{call}.update: takes (updates, state, params) and keywords, got "
            f"{3 + len(more)} positional arguments (a loss goes in value=)"
        )


def _real_scalar(call: str, subject: str, dtype: Any, shape: Any) -> None:
    """Refuse a loss of another kind than a real scalar: ``subject`` says whose, e.g.
    ``"value must be"`` or ``"value_fn must return"``."""
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise TypeError(f"{call}: {subject} the scalar loss, a real number, got {dtype}")
    if shape != ():
        raise ValueError(f"{call}: {subject} the scalar loss, got shape {shape}")


def scalar_loss(call: str, value: Any, what: str = "value") -> jax.Array:
    """``value`` (a loss passed to ``update``, or ``what`` returned it) as an array,
    refused unless a real scalar: per-example losses would give per-element steps."""
    try:
        value = jnp.asarray(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"{call}: {what} must be the scalar loss, a real number, got {type(value).__name__}"
        ) from None
    _real_scalar(call, f"{what} must be", value.dtype, value.shape)
    return value


def passed_function(call: str, params: Any, extra: Mapping[str, Any], name: str, usage: str) -> Any:
    """The function ``name`` that ``update`` was given next to the params; where either
    is missing, a ValueError naming ``call`` and showing the call (``usage``), as for
    every input ``update`` needs (the params, ``value``)."""
    fn = extra.get(name)
    if params is None or fn is None:
        raise ValueError(f"{call}: update needs the params and {name}, {usage}")
    return fn


def loss_function(call: str, name: str, fn: Any, *args: Any, **kwargs: Any) -> None:
    """Refuse ``fn``, a loss of the params passed to ``update`` (``value_fn``, ``obj_fn``),
    unless it is callable and returns a real scalar at ``args`` (its shape only is
    traced: the function itself goes on unwrapped, so eager loops keep their cache)."""
    if not callable(fn):
        raise TypeError(f"{call}: {name} must be a function of the params, got {type(fn).__name__}")
    out = jax.eval_shape(lambda *a: fn(*a, **kwargs), *args)  # data keywords: any type
    if getattr(out, "dtype", None) is None:
        raise TypeError(
            f"{call}: {name} must return the scalar loss, a real number, got {type(out).__name__}"
        )
    _real_scalar(call, f"{name} must return", out.dtype, out.shape)


def gradient_like(call: str, name: str, grads: Any, params: Any) -> Any:
    """``grads`` that ``name`` returned, refused unless a tree of the params' structure
    and shapes, each leaf of its param's dtype or that dtype's compute dtype (a 16-bit
    param's float32 gradient, as a mixed-precision loss gives, which the inner
    optimizer takes); a loss, or a gradient of other params, failed deep inside."""
    got, want = _tree.structure(grads), _tree.structure(params)
    if got != want:
        raise TypeError(
            f"{call}: {name} must return the gradient, a tree like the params; got {got}"
        )
    for path, g, p in zip(
        jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(grads), jax.tree.leaves(params)
    ):
        kind, want_kind = jnp.result_type(g), jnp.result_type(p)
        # the param's dtype, or its compute dtype (a 16-bit param's float32 gradient)
        taken = kind in (want_kind, _tree.compute_dtype(want_kind))
        if jnp.shape(g) != jnp.shape(p) or not taken:
            raise TypeError(
                f"{call}: {name} returned {kind}{list(jnp.shape(g))} at leaf "
                f"{jax.tree_util.keystr(path[0])}, where the param is {want_kind}{list(jnp.shape(p))}"
            )
    return grads


def check_real(call: str, tree: Any, why: str) -> None:
    """Refuse complex leaves, for a transform whose rule is for real numbers only."""
    if any(jnp.iscomplexobj(x) for x in jax.tree.leaves(tree)):
        raise TypeError(f"{call}: complex params are not supported ({why})")


def check_updates(
    call: str, updates: Any, params: Any, *, example_axis: bool = False, widened: bool = False
) -> tuple[Any, Any]:
    """Trace-time checks of ``update``'s arguments: float leaves, and updates
    shaped and typed like the params, leaf by leaf (shapes and dtypes are static).
    With ``example_axis`` (per-example gradients) each update leaf has one more
    leading axis, of one length for all leaves."""
    updates = check_tree(call, updates, "updates")
    if example_axis:
        lengths = {u.shape[:1] for u in jax.tree.leaves(updates)}
        if () in lengths or len(lengths) > 1:
            raise ValueError(
                f"{call}.update: expects per-example gradients, every leaf with one leading "
                "example axis of the same length (jax.vmap(jax.grad(loss), (None, 0))), got "
                f"{[_aval(u) for u in jax.tree.leaves(updates)]}"
            )
    if params is None:
        return updates, None
    params = check_tree(call, params, "params")
    got, want = _tree.structure(updates), _tree.structure(params)
    if got != want:
        raise ValueError(
            f"{call}.update: the updates' tree does not match the params' tree.\n"
            f"  updates: {got}\n  params: {want}"
        )
    for (path, u), p in zip(jax.tree_util.tree_leaves_with_path(updates), jax.tree.leaves(params)):
        # Inside a gradtx call, 16-bit params' updates arrive in float32 (_factory.run_body).
        same = u.dtype == p.dtype or (widened and u.dtype == _tree.compute_dtype(p.dtype))
        if u.shape[example_axis:] != p.shape or not same:
            where = jax.tree_util.keystr(path) or "(root)"
            if example_axis:
                raise ValueError(
                    f"{call}.update: updates leaf {where} is {_aval(u)}, which is not a "
                    f"leading example axis followed by the param's {_aval(p)}; per-example "
                    "updates must have shape (examples, *param.shape) and the param's dtype"
                )
            raise ValueError(
                f"{call}.update: updates leaf {where} is "
                f"{_aval(u)} but the param is {_aval(p)}; shapes and dtypes must match"
            )
    return updates, params


def one_example(updates: Any) -> Any:
    """Shapes and dtypes of one example of per-example updates: the params' layout."""
    return jax.tree.map(lambda u: jax.ShapeDtypeStruct(u.shape[1:], u.dtype), updates)


def _aval(x: Any) -> str:
    return f"{jnp.result_type(x).name}{list(jnp.shape(x))}"


def outline(tree: Any, limit: int = 400) -> str:
    """A short picture of a pytree: state types, dict keys, leaves as ``float32[3, 4]``."""

    def draw(node: Any) -> str:
        if isinstance(node, tuple) and hasattr(node, "_fields"):
            inner = ", ".join(f"{f}={draw(v)}" for f, v in zip(node._fields, node))
            return f"{type(node).__name__}({inner})"
        if isinstance(node, (tuple, list)):
            parts = ", ".join(draw(v) for v in node)
            return f"({parts},)" if isinstance(node, tuple) and len(node) == 1 else f"({parts})"
        if isinstance(node, dict):
            return "{" + ", ".join(f"{k!r}: {draw(v)}" for k, v in node.items()) + "}"
        if dataclasses.is_dataclass(node) and not isinstance(node, type):  # a schedule
            fields = dataclasses.fields(node)
            inner = ", ".join(f"{f.name}={draw(getattr(node, f.name))}" for f in fields)
            return f"{type(node).__name__}({inner})"
        if node is None:
            return "None"
        if hasattr(node, "shape") or isinstance(node, (int, float)):
            return _aval(node)
        return type(node).__name__

    text = draw(tree)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_difference(state: Any, expected: Any) -> str:
    got = jax.tree_util.tree_flatten_with_path(state)[0]
    want = jax.tree_util.tree_flatten_with_path(expected)[0]
    got_keys = [jax.tree_util.keystr(p) for p, _ in got]
    want_keys = [jax.tree_util.keystr(p) for p, _ in want]
    got_set, want_set = set(got_keys), set(want_keys)
    missing = [k for k in want_keys if k not in got_set]
    extra = [k for k in got_keys if k not in want_set]
    if missing and not extra:
        hint = _frozen(missing, state)
        return f"the state has no leaf at {missing[0]}{_more(missing)}{hint}"
    if extra and not missing:
        hint = _frozen(extra, expected)
        return f"the state has a leaf at {extra[0]}{_more(extra)}, which init does not make{hint}"
    for (gp, g), (wp, w) in zip(got, want):
        where, there = jax.tree_util.keystr(wp), jax.tree_util.keystr(gp)
        if where != there:
            return f"at {where} the state has {there}"
        if jnp.shape(g) != tuple(w.shape) or not same_dtype(g, w.dtype):
            return f"at {jax.tree_util.keystr(wp)}: expected {_aval(w)}, got {_aval(g)}"
    if len(want) == len(got):  # the same leaves under other nodes (a stage without arrays)
        got_empty, want_empty = _empty_nodes(state), _empty_nodes(expected)
        extra = [k for k in got_empty if k not in want_empty]
        missing = [k for k in want_empty if k not in got_empty]
        what = "a node without arrays (a masked-out or frozen param, a stage without state)"
        if extra and missing:
            return f"it has {what} at {extra[0]}, where init has one at {missing[0]}"
        if extra:
            return f"it has {what} at {extra[0]}{_more(extra)}, which init does not make"
        if missing:
            return f"init makes {what} at {missing[0]}{_more(missing)}, which the state lacks"
        return f"its tree is {_tree.structure(state)}, expected {_tree.structure(expected)}"
    return f"expected {len(want)} leaves, got {len(got)}"


def _empty_nodes(tree: Any) -> list[str]:
    """The key paths of the nodes that hold no arrays (``None``, ``MaskedNode()``, an
    empty state)."""

    def empty(x: Any) -> bool:
        return x is None or not jax.tree.leaves(x)

    found = jax.tree_util.tree_flatten_with_path(tree, is_leaf=empty)[0]
    return [jax.tree_util.keystr(p) for p, x in found if empty(x)]


def _frozen(paths: list[str], other: Any) -> str:
    """The likely cause where leaves stand in one tree only and the other tree holds a
    param's empty node (``None``, ``MaskedNode()``) there or above them: a param frozen
    or masked out in one tree only.  Only nodes under a key or index count: an option's
    field left ``None`` (``nu_max`` without AMSGrad) ends in an attribute."""
    empties = [e for e in _empty_nodes(other) if e.endswith("]")]
    if any(p == e or p.startswith((e + "[", e + ".")) for p in paths for e in empties):
        return (
            "; a param that is None (frozen) or masked out in one tree and not in the other "
            "leaves such a gap"
        )
    return ""


def _more(paths: list[str]) -> str:
    return f" (and {len(paths) - 1} more)" if len(paths) > 1 else ""


def _numbered(node: Any) -> bool:
    return isinstance(node, Mapping) and list(node) == list(range(len(node))) and len(node) > 0


def same_layout(got: Any, want: Any) -> bool:
    """The same tree of the same shapes, a list and a mapping ``{0: a, 1: b}`` alike.

    Flax NNX's optimizer state hands a list inside a leaf's slot (SM3's
    per-axis accumulators) back as such a mapping.
    """
    if _tree.structure(got) != _tree.structure(want):
        as_lists = jax.tree.map(
            lambda x: [x[i] for i in range(len(x))] if _numbered(x) else x, got, is_leaf=_numbered
        )
        if _tree.structure(as_lists) != _tree.structure(want):
            return False
    return all(
        jnp.shape(a) == tuple(b.shape) and same_dtype(a, b.dtype)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want))
    )


def same_dtype(x: Any, dtype: Any) -> bool:
    """``x`` holds ``dtype``: an array of exactly it, or a Python number that becomes it.

    A float32 state for float64 params (or the reverse) would keep its statistics
    in the wrong precision, and a real one for complex params would drop the
    imaginary part when written back, so a state's dtypes are part of its layout.
    """
    if isinstance(x, (bool, int, float, complex)):  # weak: takes the array's dtype
        return jnp.result_type(x, dtype) == dtype and not (
            isinstance(x, complex) and not jnp.issubdtype(dtype, jnp.complexfloating)
        )
    return jnp.result_type(x) == dtype


def check_state(call: str, state: Any, expected: Any) -> None:
    """``state`` has the structure and shapes ``init`` makes for these params.

    ``expected`` is ``jax.eval_shape`` of this transform's ``init``: a state
    made by another optimizer, for other params, or batched by mistake fails
    here while tracing, naming both structures, instead of running with the
    stages it happens to have.
    """

    def fail(reason: str) -> None:
        raise ValueError(
            f"{call}.update: the state does not match what {call}.init makes for these "
            f"params ({reason}).\n  expected: {outline(expected)}\n  got: {outline(state)}"
        )

    if type(state) is not type(expected):
        fail(f"it is a {type(state).__name__}, not a {type(expected).__name__}")
    if set(state.hyperparams) != set(expected.hyperparams):
        fail(
            f"hyperparameters {sorted(state.hyperparams)}, expected {sorted(expected.hyperparams)}"
        )
    for name, want in expected.hyperparams.items():
        got = state.hyperparams[name]
        if driven(got, want):
            continue
        if _tree.structure(got) != _tree.structure(want) or any(
            jnp.shape(g) != tuple(w.shape) or not same_dtype(g, w.dtype)
            for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want))
        ):
            fail(f"hyperparameter {name} is {outline(got)}, expected {outline(want)}")
    # int32 only: a narrower count wrapped the saturation bound (int8: NaN steps), and an
    # int64 one (tree_set under x64) came back int32, which a scan's carry refuses
    if "count" in expected._fields and not same_layout(state.count, expected.count):
        # a Python int reaches a jitted step as a weak int64 under x64: refused, where a
        # value past int32 would wrap (eagerly it is taken, and saturates)
        fail(
            f"its count is {outline(state.count)}, expected {outline(expected.count)}: set "
            "it as jnp.asarray(n, jnp.int32) (under x64 a Python int passed to a jitted "
            "step is an int64)"
        )
    if hasattr(expected, "python_schedules"):
        if set(state.python_schedules) != set(expected.python_schedules):
            fail("its Python-callable hyperparameters differ")
        for name, want in expected.python_schedules.items():
            got = state.python_schedules[name]
            # the value's dtype is the one the learning rate is computed in
            if not same_layout(got, want):
                fail(f"the shown value of {name} is {outline(got)}, expected {outline(want)}")
    got_tree = state.inner_state
    want_tree = as_driven(got_tree, expected.inner_state)  # a wrapped optimizer's, too
    if not same_layout(got_tree, want_tree):
        fail(_first_difference(got_tree, want_tree))


def driven(got: Any, want: Any) -> bool:
    """``got`` is a number where ``init`` made the schedule ``want``: a schedule replaced
    by a constant (what ``lr_range_test`` and optax's ``tree_set`` do), which is allowed."""
    leaves = jax.tree.leaves(got)
    return is_schedule(want) and len(leaves) == 1 and jnp.ndim(leaves[0]) == 0 and leaves[0] is got


def as_driven(got: Any, want: Any) -> Any:
    """``want`` with the scalar that ``got`` holds where it drives a schedule."""
    if driven(got, want):
        return jax.ShapeDtypeStruct((), jnp.result_type(got))
    if type(got) is not type(want) or is_schedule(want):
        return want
    if isinstance(want, (tuple, list)) and len(got) == len(want):
        parts = [as_driven(g, w) for g, w in zip(got, want)]
        return type(want)(*parts) if hasattr(want, "_fields") else type(want)(parts)
    if isinstance(want, dict) and set(got) == set(want):
        return _tree.with_entries(want, {k: as_driven(got[k], w) for k, w in want.items()})
    return want


def check_bare_state(call: str, state: Any, expected: Any) -> None:
    """``check_state`` for a transform that owns no hyperparameters (its state is its
    own, though it may hold another's: a driven schedule inside is allowed)."""
    expected = as_driven(state, expected)
    if not same_layout(state, expected):
        raise ValueError(
            f"{call}.update: the state does not match what {call}.init makes for these "
            f"params ({_first_difference(state, expected)}).\n  expected: {outline(expected)}\n"
            f"  got: {outline(state)}"
        )


# While a wrapper traces an ``init`` only to learn its state's layout, the
# inits traced inside must not take the tree they see for the user's.
probing = _tree.Flag(__name__, "probing")


def probe_init(init: Any, tree: Any) -> Any:
    """``jax.eval_shape(init, tree)``: the state's layout, learnt without recording ``tree``."""
    with probing():
        return jax.eval_shape(init, tree)


class LeafCounts:
    """The leaf counts of the trees ``init`` saw, to refuse updates of another tree.

    A state without params-shaped buffers (plain SGD) cannot show that the
    updates' tree changed; this can.  Counts, not structures: an
    ``flax.nnx.Optimizer`` inits with ``Param`` nodes and updates with arrays.
    Leafless trees are not recorded: optax's ``tree_map_params`` inits with one.
    """

    def __init__(self, call: str) -> None:
        self.call = call
        self.seen: set[int] = set()

    def record(self, params: Any) -> None:
        n = len(jax.tree.leaves(params))
        if n and not probing.is_on():
            self.seen.add(n)

    def check(self, updates: Any) -> None:
        n = len(jax.tree.leaves(updates))
        # no leaves: an empty group of a partition sharing this optimizer with others
        if n and self.seen and n not in self.seen:
            raise ValueError(
                f"{self.call}.update: the updates' tree does not match the tree the state was "
                f"initialised with: {n} leaves, init saw {sorted(self.seen)}.\n"
                f"  updates: {jax.tree.structure(updates)}"
            )

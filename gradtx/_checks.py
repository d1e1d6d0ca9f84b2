"""Argument checks at construction (and of values set later): ranges, kinds, options.

Every message names the public call and the argument or leaf, e.g.
``gradtx.adam(b1=1.5): b1 must be in [0, 1)``.
"""

from __future__ import annotations

import inspect
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _dtypes
from gradtx._dtypes import INT32_MAX
from gradtx._ranges import check_schedule_range
from gradtx._ranges import interval
from gradtx._ranges import outside


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
    ``finite=False``).  So are JAX arrays whose value is known (not traced); a
    traced one is data: only its shape and kind are checked, as jit and vmap show
    no value.  Callables are accepted only where ``schedule`` is true.
    """
    if callable(value) and not isinstance(value, (jax.Array, np.ndarray)):
        if not schedule:
            raise TypeError(f"{call}({name}=...): {name} must be a number, not a schedule")
        if low is not None or high is not None:
            bounds = (low, high, low_open, high_open)
            check_schedule_range(call, name, value, bounds)
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
            complex_scalar = jnp.ndim(value) == 0 and jnp.issubdtype(dtype, jnp.complexfloating)
            hint = (
                " (optax.inject_hyperparams stores numbers in the params' dtype, complex "
                "for complex params: give it hyperparam_dtype=jnp.float32)"
                if complex_scalar and _inject_frame()
                else ""
            )
            raise TypeError(f"{call}({name}=...): {name} must be a real scalar, got {shape}{hint}")
        bounds = (low, high, low_open, high_open)
        if isinstance(value, jax.Array):
            if is_known(value):  # checked as a number, shown as the array it is
                number = float(value)
                hint = _rounding_hint(number, dtype, bounds, finite)
                _refuse(call, name, number, shown_array(value), bounds, finite, hint)
            return
        value = value.item()
    if not is_number(value):
        raise TypeError(
            f"{call}({name}={value!r}): {name} must be a real number, got {type(value).__name__}"
        )
    try:
        number = float(value)
    except OverflowError:  # an int beyond float's range
        raise ValueError(f"{call}({name}={value!r}): {name} must be finite") from None
    # shown as the caller wrote it (patience=-1, not -1.0)
    _refuse(call, name, number, repr(value), (low, high, low_open, high_open), finite)


def _refuse(
    call: str, name: str, number: float, shown: str, bounds: tuple, finite: bool, hint: str = ""
) -> None:
    """Refuse a NaN, an infinity (where ``finite``) or a number outside ``bounds``."""
    if np.isnan(number):
        raise ValueError(f"{call}({name}={shown}): {name} must not be NaN")
    if finite and np.isinf(number):
        raise ValueError(f"{call}({name}={shown}): {name} must be finite{hint}")
    if outside(number, bounds):
        raise ValueError(f"{call}({name}={shown}): {name} must be in {interval(bounds)}{hint}")


def is_known(value: jax.Array) -> bool:
    """Whether a JAX array's value can be read here: not traced (under ``jit``,
    ``vmap`` or ``grad``), and whole on this process (not a multi-host array)."""
    return not isinstance(value, jax.core.Tracer) and value.is_fully_addressable


def known_value(value: Any) -> Any:
    """A 0-d real JAX array whose value is known as the Python number it holds (an int
    for an int array), checked like one; anything else unchanged."""
    if isinstance(value, jax.Array) and value.ndim == 0 and is_known(value):
        if jnp.issubdtype(value.dtype, jnp.integer) or jnp.issubdtype(value.dtype, jnp.floating):
            return value.item()
    return value


def shown_array(value: jax.Array) -> str:
    """``1.0 as a bfloat16 array``: a known 0-d array's value in the shortest digits
    of its precision (``-0.1``, not float32's ``-0.10000000149``) and its dtype."""
    dtype = np.dtype(jnp.result_type(value))
    number = str(np.asarray(value))  # NumPy's and ml_dtypes' shortest digits
    if jnp.issubdtype(dtype, jnp.floating) and number.lstrip("-").isdigit():
        number += ".0"  # bfloat16 prints 1.0 as "1"
    article = "an" if dtype.name.startswith("int") else "a"
    return f"{number} as {article} {dtype.name} array"


def shown(value: Any) -> str:
    """A value as a message shows it: a known 0-d JAX array as ``shown_array`` does,
    anything else by its repr (as the caller wrote it: ``patience=-1``)."""
    if isinstance(value, jax.Array) and value.ndim == 0 and is_known(value):
        return shown_array(value)
    return repr(value)


def _rounding_hint(number: float, dtype: Any, bounds: tuple, finite: bool) -> str:
    """Why a 16-bit array may hold a number the caller did not write, where a number
    it could have been rounded from is allowed (``b2 = 0.999`` is 1.0 in bfloat16,
    ``t0 = 1e6`` is inf in float16)."""
    if not _dtypes.is_16_bit_float(dtype):
        return ""
    info = jnp.finfo(dtype)
    if np.isinf(number):
        if not finite:
            return ""
        why = f"{jnp.dtype(dtype)} holds no finite number beyond {float(info.max):g}"
    elif np.isnan(number):
        return ""
    else:
        half = float(info.eps) * max(abs(number), float(info.tiny)) / 2
        near = [number - half, number + half]
        near += [b for b in bounds[:2] if b is not None and abs(b - number) <= half]
        if all(outside(x, bounds) for x in near):
            return ""
        why = f"a {jnp.dtype(dtype)} number this close to the bound may be one rounded across it"
    return (
        f" ({why}; optax.inject_hyperparams stores numbers in the params' dtype unless "
        "given hyperparam_dtype=jnp.float32)"
    )


def _takes_one(fn: Any) -> bool:
    """Whether ``fn`` can be called with one positional argument, as far as its signature
    tells: its own, or the one ``functools.wraps`` gave it (a wrapper of another arity
    shows the wrapped function's); no signature to read (a builtin): its call will say."""
    for follow in (False, True):
        try:
            inspect.signature(fn, follow_wrapped=follow).bind(None)
            return True
        except TypeError:
            continue
        except ValueError:
            return True
    return False


def check_takes_a_count(call: str, name: str, fn: Any) -> None:
    """A plain callable hyperparameter must take one argument, the step count."""
    if not _takes_one(fn):
        raise TypeError(f"{call}({name}=<function>): a schedule takes one argument, the step count")


def check_takes_one(call: str, name: str, fn: Any, what: str) -> None:
    """A function argument (``mask_fn``) must take one argument, ``what``: else its first
    call, at ``init``, raised Python's own error, not naming the gradtx call."""
    if not _takes_one(fn):
        raise TypeError(f"{call}({name}=<function>): {name} takes one argument, {what}")


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
        arr = jnp.asarray(_dtypes.ints_as_floats(value))
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


def _inject_frame(name: str | None = None) -> bool:
    """Whether ``optax.inject_hyperparams`` is on the stack (with ``name`` among the
    arguments it evaluates as schedules, its ``sched_hps``, where given)."""
    frame = inspect.currentframe()
    while frame is not None:
        if frame.f_code.co_filename.replace("\\", "/").endswith("optax/schedules/_inject.py"):
            if name is None or name in frame.f_locals.get("sched_hps", ()):
                return True
        frame = frame.f_back
    return False


def inject_hint(name: str, value: Any, what: str) -> str:
    """The hint for a callable argument that ``optax.inject_hyperparams`` called as a
    schedule (it calls every callable argument not in ``static_args``): shown when the
    value is a JAX array, or when inject's frame holds ``name`` among the arguments it
    evaluates as schedules (its ``sched_hps``), whatever the call returned."""
    inside = _inject_frame(name)
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
    """How errors name the factory of a build function: ``gradtx.<factory>`` for gradtx's
    own (``_adam.<locals>.build`` -> ``gradtx.adam``), the bare name for a user's
    (``my_rms``, ``<lambda>``), which does not live in gradtx."""
    fn = getattr(build, "func", build)  # a partial's function
    if (getattr(fn, "__module__", None) or "").split(".")[0] != "gradtx":
        return str(getattr(fn, "__name__", "transform"))
    return "gradtx." + getattr(fn, "__qualname__", "transform").split(".")[0].lstrip("_")


KEEP_OUT = (
    "Keep integer and boolean leaves out of the optimized tree (make them None), or mask "
    "them out with gradtx.masked around the whole optimizer, its wrappers included "
    "(gradtx.masked(gradtx.accumulate_gradients(opt, k), mask), not the other way round)."
)


def _leaf(call: str, what: str):
    def one(path, x):
        where = jax.tree_util.keystr(path) or "(root)"
        try:
            x = jnp.asarray(x)
        except TypeError:  # a string, an object: JAX's message names neither call nor leaf
            raise TypeError(
                f"{call}: {what} leaf {where} is not an array (a {type(x).__name__}); gradtx "
                "transforms act on floating or complex arrays only. Keep other leaves out of "
                "the optimized tree (or make them None)."
            ) from None
        if not jnp.issubdtype(x.dtype, jnp.inexact):
            kind = "float0" if x.dtype == jax.dtypes.float0 else x.dtype
            raise TypeError(
                f"{call}: {what} leaf {where} has dtype {kind}; gradtx transforms act on "
                f"floating or complex leaves only. {KEEP_OUT}"
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

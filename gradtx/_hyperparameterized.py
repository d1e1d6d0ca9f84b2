"""A transform whose hyperparameters live in its state: ``hyperparameterized``.

The runtime half of a factory (``gradtx._factory.factory`` is the declaring
half): ``init`` keeps the numbers and the step count in a ``HyperparamsState``,
and each ``update`` rebuilds the body from the stored numbers at the count, so
``set_hyperparams`` never recompiles.  Each ``init`` records its maker
(``MAKERS``), whose ranges ``set_hyperparams`` then checks a value with.
"""

from __future__ import annotations

import inspect
import numbers
import threading
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from typing import NoReturn

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradtx import _checks
from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _state_checks
from gradtx import _stored
from gradtx import _tree
from gradtx import _update_checks
from gradtx._base import GradientMap
from gradtx._base import GradientTransformation
from gradtx._base import _store
from gradtx._base import extras_taken
from gradtx._base import float_dtype
from gradtx._base import is_schedule
from gradtx._build import BUILD
from gradtx._build import RUN
from gradtx._build import Build
from gradtx._build import run_body
from gradtx._factory_state import HyperparamsState
from gradtx._factory_state import UncountedHyperparamsState
from gradtx._factory_state import shown_key
from gradtx._specs import Hyper


def _int32_count(count: Any) -> jax.Array:
    """The step count as a JAX int32; a NumPy or Python one (a checkpoint's, tree_set's)
    beyond int32 is held at its bounds, as the counter itself saturates, not wrapped."""
    if not isinstance(count, jax.Array):
        count = min(max(int(count), -_dtypes.INT32_MAX - 1), _dtypes.INT32_MAX)
    return jnp.asarray(count, jnp.int32)


def _check_undeclared(call: str, name: str, value: Any) -> None:
    """A number no spec declares: anything ``init`` can keep (a real number, an array or
    list of them, a schedule, a callable of the step count), passed on as given; a bool,
    a complex number, a string or ``None`` is refused, and NaN where the value is known,
    as ``set_hyperparams`` refuses it."""
    if callable(value) and not isinstance(value, (jax.Array, np.ndarray)):
        return

    def refuse(got: str) -> NoReturn:
        raise TypeError(
            f"{call}({name}={value!r}): {name} must be a real number, an array or list of "
            f"them, a schedule or a callable of the step count, got {got}"
        )

    leaves = jax.tree.leaves(value) if isinstance(value, (list, tuple)) else [value]
    for leaf in leaves:
        if isinstance(leaf, (bool, np.bool_)):
            refuse("bool")
        if isinstance(leaf, jax.Array) and not _checks.is_known(leaf):
            if np.dtype(leaf.dtype).kind not in "iuf":
                refuse(np.dtype(leaf.dtype).name)
    if any(isinstance(x, jax.Array) and not _checks.is_known(x) for x in leaves):
        return  # traced: its kind was all there is to check
    if isinstance(value, numbers.Real):  # a Python int beyond int64, a Fraction: stored as floats
        try:
            number = float(value)
        except OverflowError:
            refuse("an int beyond float64")
        if np.isnan(number):
            raise ValueError(f"{call}({name}={_checks.shown(value)}): {name} must not be NaN")
        return
    try:
        known = np.asarray(value)  # one rectangular array of numbers, as init stores it
    except Exception:  # noqa: BLE001 (a ragged list, a tensor that needs grad, ...)
        refuse(type(value).__name__ if not isinstance(value, list) else "a ragged list")
    if known.dtype.kind not in "iuf":
        kinds = {
            "b": "bool",
            "c": "a complex number",
            "U": "str",
            "S": "bytes",
            "O": type(value).__name__,
        }
        refuse(kinds.get(known.dtype.kind, known.dtype.name))
    if known.dtype.kind == "f" and np.isnan(known).any():
        raise ValueError(f"{call}({name}={_checks.shown(value)}): {name} must not be NaN")


def _check_direct(
    build: Any, values: Any, call: str, declared: Mapping[str, Hyper] | None
) -> tuple[dict[str, Any], dict[str, Hyper]]:
    """A direct call of ``hyperparameterized``: each of ``values`` checked under ``call``,
    by its ``declared`` spec (an optional stage's zero stays a number: nothing is left
    out here) or else as ``_check_undeclared``, and ``build`` built once as the user's
    own call, so that the gradtx primitives inside check their numbers (a negative
    learning rate) under their own names; inside the owner they trust it, which has
    none.  The values to keep, and the declared specs ``init`` records for
    ``set_hyperparams``."""
    named = getattr(getattr(build, "func", build), "__name__", "build")  # a partial's function
    shown = f"gradtx.hyperparameterized({call or named})"
    if not callable(build):
        raise TypeError(f"{shown}: build must be a function returning a transform")
    if not isinstance(values, Mapping) or not all(isinstance(k, str) for k in values):
        raise TypeError(f"{shown}: values must be a mapping of names to numbers")
    if declared is not None and not (
        isinstance(declared, Mapping) and all(isinstance(s, Hyper) for s in declared.values())
    ):
        raise TypeError(f"{shown}: declared must be a mapping of names to gradtx.Hyper specs")
    try:
        inspect.signature(build).bind(**values)
    except TypeError as err:
        raise TypeError(f"{shown}: build does not take these values: {err}") from None
    except ValueError:  # no signature to read (a builtin): the build itself tells
        pass
    who = call or _checks.call_name(build)
    specs = {k: spec for k, spec in (declared or {}).items() if k in values}
    checked = {}
    for k, v in values.items():
        if k in specs:
            if v is None:  # a factory's None leaves a stage out; here nothing is left out
                raise TypeError(
                    f"{who}({k}=None): {k} must be a number here (a factory, gradtx.factory, "
                    "leaves out the stage that None or a zero leaves out; a direct "
                    "hyperparameterized keeps every number it is given)"
                )
            kept = specs[k].check(who, k, v)
            checked[k] = v if kept is None else kept  # an optional stage's zero: kept
        else:
            _check_undeclared(who, k, v)
            checked[k] = v
    zero = jnp.zeros([], jnp.int32)
    built = build(**{k: _current(v, zero) for k, v in checked.items()})
    if not isinstance(built, optax.GradientTransformation):
        raise TypeError(f"{shown}: build returned {type(built).__name__}, not a transform")
    return checked, specs


def _is_bound(value: Any) -> bool:
    return isinstance(value, jax.Array)


def _current(value: Any, count: jax.Array) -> Any:
    return value(count) if callable(value) else value


def hyperparameterized(
    build: Callable[..., optax.GradientTransformation],
    values: Mapping[str, Any],
    call: str = "",
    *,
    kind: type[optax.GradientTransformationExtraArgs] = GradientTransformation,
    counted: bool = False,
    rates: tuple[str, ...] = (),
    example_axis: bool = False,
    declared: Mapping[str, Hyper] | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Keep ``values`` in state and build the transform from them at each call.

    ``factory`` is the declarative way to use this; call it directly to give
    an existing function of hyperparameters gradtx's behaviour.

    Args:
      build: keyword function of the hyperparameters returning a transform.
        Static options are bound into it (``functools.partial``).
      values: name -> number, JAX array, gradtx schedule or plain callable of
        the 0-based step count (see the module docstring for what each becomes).
      call: the public name used in error messages (default: ``build``'s name).
      kind: ``GradientMap`` if the result is still a gradient (a ``build`` that
        returns a ``GradientMap`` makes one whatever ``kind`` says).
      counted: the transform reads the step count (``gradtx.step_count``).
      rates: names of decay rates in [0, 1): checked at ``init`` to stay below
        1 in the precision the statistics are computed in.
      example_axis: ``update`` takes per-example gradients, each leaf with one
        leading example axis before the param's shape (DP-SGD).
      declared: name -> ``gradtx.Hyper``, the specs of the numbers kept in
        state: ``values`` are checked against them here, under ``call`` (an
        optional stage's zero is kept as a number, ``None`` refused), and
        ``init`` records them for ``set_hyperparams``' checks.  A name not
        declared takes, as given, any real number, array or list of them,
        schedule or callable of the step count (a bool, a complex number, a
        string, ``None`` or NaN refused); ``set_hyperparams`` then refuses only NaN for it,
        unless a factory whose state has the same structure declares the name.

    Returns:
      The transform.  Inside another factory's body it is simply
      ``build(**values)``: the outer transform already owns the numbers.
    """
    if BUILD.get() is None:
        values, declared = _check_direct(build, values, call, declared)
    return owning(
        build, values, call, kind=kind, counted=counted, rates=rates,
        example_axis=example_axis, declared=declared or {},  # {}: inside an owner, unused
    )  # fmt: skip


def owning(
    build: Callable[..., optax.GradientTransformation],
    values: Mapping[str, Any],
    call: str,
    *,
    kind: type[optax.GradientTransformationExtraArgs] = GradientTransformation,
    counted: bool = False,
    rates: tuple[str, ...] = (),
    example_axis: bool = False,
    declared: Mapping[str, Hyper],
) -> optax.GradientTransformationExtraArgs:
    """``hyperparameterized`` for values its caller checked against ``declared`` (a
    ``@factory``, ``scale_by_multipliers``)."""
    outer = BUILD.get()
    if outer is not None:
        outer.counted |= counted
        return build(**values)
    values = dict(values)
    call = call or _checks.call_name(build)
    python = {k: v for k, v in values.items() if callable(v) and not is_schedule(v)}
    bound = {k: v for k, v in values.items() if _is_bound(v)}
    stored = {k: v for k, v in values.items() if k not in python and k not in bound}

    # Build once now: the body checks how its options combine, and reports
    # whether one of its members reads the step count.
    probe = Build(call)
    with BUILD.set_to(probe):
        zero = jnp.zeros([], jnp.int32)
        built = build(**{k: _current(v, zero) for k, v in values.items()})
    if isinstance(built, GradientMap):
        # a body that is a map (a clip in a user's factory) makes one: otherwise the
        # statistics after it in a chain would read the unclipped gradient
        kind = GradientMap
    counted = counted or probe.counted or bool(python)
    counted = counted or any(is_schedule(v) for v in stored.values())

    def inner(current):
        with BUILD.set_to(Build(call)):
            return build(**current)

    counts = _update_checks.LeafCounts(call)
    layout = _update_checks.one_example if example_axis else (lambda updates: updates)

    if not values and not counted:
        # Nothing to own: the state is the body's own, with the update-time checks.
        tx = inner({})

        def init_bare(params):
            params = _checks.check_tree(call, params, "params")
            counts.record(params)
            return _tree.settled(tx.init(params), params)

        def update_bare(updates, state, params=None, **extra):
            updates, params = _update_checks.check_updates(
                call, updates, params, example_axis=example_axis, widened=RUN.get() is not None
            )
            counts.check(updates)
            expected = _update_checks.probe_init(
                init_bare, layout(updates) if params is None else params
            )
            state = _state_checks.check_bare_state(
                call, state, expected, from_updates=params is None
            )
            extra.pop("count", None)
            updates, state = run_body(
                call,
                lambda u: tx.update(u, state, params, **extras_taken(tx.update, extra)),
                updates,
                params,
                state,
            )
            return updates, _tree.settled(state, (params, updates))

        return kind(init_bare, update_bare)

    def init(params):
        params = _checks.check_tree(call, params, "params")
        counts.record(params)
        _stored.check_rates(call, {k: v for k, v in values.items() if k in rates}, params)
        for k, v in stored.items():  # checked at construction, maybe under another x64
            if _checks.is_concrete_number(v):
                spec = declared.get(k)
                integer = getattr(spec, "integer", False)
                _stored.check_stored(call, k, v, float_dtype(), integer=integer)
                if getattr(spec, "whole_exact", False):
                    _stored.check_step_number(call, k, v, float_dtype())
        hyperparams = {k: _store(v) for k, v in stored.items()}
        count = jnp.zeros([], jnp.int32)
        python_now = {
            k: _store(_checks.callable_value(call, k, fn, count)) for k, fn in python.items()
        }
        current = {k: _current(v, count) for k, v in hyperparams.items()}
        current |= python_now | bound
        inner_state = inner(current).init(params)
        state = (
            HyperparamsState(
                count, hyperparams, {shown_key(k): v for k, v in python_now.items()}, inner_state
            )
            if counted
            else UncountedHyperparamsState(hyperparams, inner_state)
        )
        # The body may keep a hyperparameter, a bound array or the params in its state.
        state = _tree.settled(state, (params, bound))
        _remember_maker(state, call, declared)
        return state

    def update(updates, state, params=None, *more, **extra):
        _checks.no_more_positional(call, more)
        updates, params = _update_checks.check_updates(
            call, updates, params, example_axis=example_axis, widened=RUN.get() is not None
        )
        counts.check(updates)
        state = _state_checks.check_state(
            call,
            state,
            _update_checks.probe_init(init, layout(updates) if params is None else params),
            from_updates=params is None,
        )
        # a JAX int32 also where a checkpoint gave a NumPy count or tree_set a Python int:
        # a Python callable evaluated on those computed in float64 (0.9 ** count), one
        # rounding apart from the uninterrupted run's float32
        count = _int32_count(state.count) if counted else None
        current = {k: _current(v, count) for k, v in state.hyperparams.items()}
        current |= bound
        extra.pop("count", None)  # an enclosing optimizer's count is not this one's
        if counted:
            # Evaluated at the state's count, not read from python_schedules (the values
            # shown for the next update): a count set back (tree_set) rewinds them too.
            current |= {
                k: jnp.asarray(
                    _checks.callable_value(call, k, fn, count),
                    dtype=jnp.result_type(state.python_schedules[shown_key(k)]),
                )
                for k, fn in python.items()
            }
            extra["count"] = count
        tx = inner(current)
        updates, inner_state = run_body(
            call,
            lambda u: tx.update(u, state.inner_state, params, **extras_taken(tx.update, extra)),
            updates,
            params,
            state.inner_state,
        )
        # An eager body may return a hyperparameter as a buffer (rprop's base rate, a
        # bound JAX array too), keep the params (optax's L-BFGS) or return its state as
        # the updates (a chain ending in momentum): one array twice cannot be donated,
        # nor one the caller still holds.
        if not counted:
            new_state = UncountedHyperparamsState(state.hyperparams, inner_state)
            return updates, _tree.settled(new_state, (params, bound, updates))
        new_count = _numerics.safe_increment(count)
        python_next = {
            shown_key(k): jnp.asarray(
                _checks.callable_value(call, k, fn, new_count),
                dtype=jnp.result_type(state.python_schedules[shown_key(k)]),
            )
            for k, fn in python.items()
        }
        new_state = HyperparamsState(new_count, state.hyperparams, python_next, inner_state)
        return updates, _tree.settled(new_state, (params, bound, updates))

    return kind(init, update)


MAKERS: dict[Any, dict[tuple[str, Any], Mapping[str, Hyper]]] = {}
"""The structure of each state a factory's ``init`` made in this process -> the factories
that made one of that structure, each as ``(call, its specs as a key) -> numbers kept in
state`` (two factories of one name with other ranges, a user's two ``opt``s, are two
entries; one defined again with the same ranges, or a direct call built anew, one):
``set_hyperparams`` checks a value with its makers' ranges.  The oldest structures go past
``_MAKERS_KEPT``, a structure's oldest makers past ``_MAKERS_PER_STRUCTURE``.  Read and
written under ``_MAKERS_LOCK``: threads init at once."""


_MAKERS_KEPT = 4096
_MAKERS_PER_STRUCTURE = 64
_MAKERS_LOCK = threading.Lock()


def _remember_maker(state: Any, call: str, declared: Mapping[str, Hyper]) -> None:
    structure = jax.tree.structure(state)
    key: tuple[str, Any] = (call, tuple(sorted(declared.items())))
    try:
        hash(key)
    except TypeError:  # a range given as an array: the specs' identity instead
        key = (call, id(declared))  # the entry keeps ``declared`` alive: no id reused
    with _MAKERS_LOCK:
        makers = MAKERS.pop(structure, {})  # put back last: the newest entry
        makers.pop(key, None)
        makers[key] = declared
        while len(makers) > _MAKERS_PER_STRUCTURE:
            del makers[next(iter(makers))]
        MAKERS[structure] = makers
        while len(MAKERS) > _MAKERS_KEPT:
            del MAKERS[next(iter(MAKERS))]


def makers_of(state: Any) -> list[tuple[str, Mapping[str, Hyper]]] | None:
    """``(call, specs)`` of each factory that made a state of ``state``'s structure in this
    process, oldest first; ``None`` where none did (or its record went)."""
    with _MAKERS_LOCK:
        makers = MAKERS.get(jax.tree.structure(state))
        return None if makers is None else [(call, specs) for (call, _), specs in makers.items()]

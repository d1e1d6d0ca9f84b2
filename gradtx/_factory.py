"""Factories: each hyperparameter declared once, checked eagerly, kept in state.

A gradtx factory is a function of its hyperparameters that returns a
transform, decorated with its arguments' specs::

    @factory(counted=True, learning_rate=LEARNING_RATE, b1=DECAY_RATE, ...)
    def adam(learning_rate=1e-3, b1=0.9, ...):
        return descent(add_momentum(b1, ema=True), ..., learning_rate=learning_rate)

The specs (``Hyper``, the ``Option`` kinds and the common ranges such as
``DECAY_RATE``) live in ``gradtx._specs``.

Called by a user, the factory checks every argument against its spec (errors
name the call and the argument, e.g. ``gradtx.adam(b1=1.5): b1 must be in
[0, 1)``), runs the body once to let it check how the options combine, and
returns a transform whose state keeps the numbers.  At each ``init`` and
``update`` that transform rebuilds the body from the stored numbers (the
Python cost is paid while tracing only).  Called inside another factory's
body, a factory skips all of that and returns the body's transform: the
outermost factory owns the numbers, so each one lives in state once, is
checked once, and errors name the call the user made.

What an argument of a ``Hyper`` spec becomes:

* a Python or NumPy number, or a gradtx schedule: stored in the state, as
  data (``get_hyperparams``, ``set_hyperparams`` without recompiling, vmap);
* a plain Python callable of the step count: called each step, its value
  kept in the state read-only;
* a JAX array: *bound*: used as given at every update and not stored.  The
  caller owns it: ``optax.inject_hyperparams(gradtx.adam)`` keeps it in its
  own state, and a factory called inside a traced function uses its argument;
* ``None``, or a Python zero where the spec is ``optional``: the stage it
  weighs is left out (the body receives ``None``).

The one step counter of an optimizer lives in its ``HyperparamsState`` and
reaches every member as the keyword ``count`` (``gradtx.step_count``).  A
transform that needs no step (a clip, a stateless decay) has no counter:
``UncountedHyperparamsState``.
"""

from __future__ import annotations

import functools
import inspect
import re
import types
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from typing import NamedTuple
from typing import ParamSpec
from typing import TypeVar

import jax
import jax.numpy as jnp
import optax

from gradtx import _checks
from gradtx import _dtypes
from gradtx import _numerics
from gradtx import _state_checks
from gradtx import _tree
from gradtx import _update_checks
from gradtx._base import GradientMap
from gradtx._base import GradientTransformation
from gradtx._base import OptState
from gradtx._base import _store
from gradtx._base import extras_taken
from gradtx._base import is_schedule
from gradtx._base import with_extra_args
from gradtx._specs import Hyper
from gradtx._specs import Option
from gradtx._specs import Transform

P = ParamSpec("P")
T = TypeVar("T")


def shown_key(name: str) -> str:
    """The key of a plain callable's shown value in ``python_schedules``.

    It is not the hyperparameter's name, so optax's ``tree_set`` of that name finds
    nothing to edit and raises (the update calls the callable, code, not this value),
    as it raises on a schedule inside ``optax.inject_hyperparams``.
    """
    return f"{name}()"


def shown_name(key: str) -> str:
    """The hyperparameter whose shown value is ``python_schedules[key]``."""
    return key.removesuffix("()")


class HyperparamsState(NamedTuple):
    """State of a transform that owns hyperparameters and the step count.

    Attributes:
      count: updates so far (int32, saturating): the optimizer's one step counter.
      hyperparams: name -> scalar array, or a gradtx schedule whose fields are
        arrays (evaluated at ``count``).  Data: ``set_hyperparams`` changes them
        without recompiling.
      python_schedules: ``name()`` -> the value a plain Python callable gives for
        the next update, for ``get_hyperparams``; the update calls the callable at
        ``count``.  Read-only: the callable is code, not data.
      inner_state: the state of the transform built from these values.
    """

    count: jax.Array  # type: ignore[assignment]  # the field shadows tuple.count, as in optax
    hyperparams: dict[str, Any]
    python_schedules: dict[str, jax.Array]
    inner_state: OptState


class UncountedHyperparamsState(NamedTuple):
    """State of a transform that owns hyperparameters but needs no step count."""

    hyperparams: dict[str, Any]
    inner_state: OptState


HYPERPARAMS_STATES = (HyperparamsState, UncountedHyperparamsState)


class FactoryCall(NamedTuple):
    """How a user's call made a transform: recorded on its ``init`` (``made_by`` reads it).

    What a transform *is* (``gradtx.adam(amsgrad=True)``, hence ``torch.optim.Adam``) is a
    property of the object, not of its state: the state holds numbers only, and two
    optimizers of the same structure share one state layout.

    Attributes:
      call: the public name, ``"gradtx.adam"``.
      factory: the public factory (its signature gives the defaults).
      arguments: every argument after the spec checks and ``derive`` (a pruned
        optional stage is ``None``; a JAX array given for a number is kept as given).
    """

    call: str
    factory: Callable[..., Any]
    arguments: Mapping[str, Any]


class Bound(NamedTuple):
    """What ``derive`` returns for a declared number that this configuration reads
    only in ``init`` (DoG's ``init_value`` unless it is the first step size): the
    body gets ``value`` as a constant and the state keeps none, so
    ``set_hyperparams`` refuses to set what would change nothing."""

    value: Any


class Unused(NamedTuple):
    """What ``derive`` returns for a declared number this configuration does not read
    (``average_params``' ``decay`` for ``method="swa"``): the body gets ``None``, the
    state keeps nothing, and ``set_hyperparams`` refusing the name gives ``why``."""

    why: str


def made_by(tx: Any) -> FactoryCall | None:
    """The ``FactoryCall`` that made ``tx``, or ``None`` (not made by a user's call of a
    gradtx factory: an optax transform, a ``chain``, a transform made inside another
    factory's body)."""
    return getattr(getattr(tx, "init", None), "gradtx_factory_call", None)


Specs = dict[str, Any]
"""A factory's specs by parameter name (``Hyper`` or ``Option`` values), shared by variants."""


# ------------------------------------------------------------------ building


class _Build:
    """What a body being built reports back: the call's name; whether it reads the step."""

    def __init__(self, call: str) -> None:
        self.call, self.counted = call, False


_BUILD: _tree.ContextLocal[_Build | None] = _tree.ContextLocal(__name__, "_BUILD", None)
"""Set while a body is built: a gradtx factory called then returns its bare body (the
outer call owns the numbers and the count)."""
_RUN: _tree.ContextLocal[_Build | None] = _tree.ContextLocal(__name__, "_RUN", None)
"""Set while a body's update runs (``run_body``), with ``_BUILD`` unset: a factory that
foreign code calls then (``optax.inject_hyperparams`` builds its optimizer in its
``init`` and again in each ``update``) is a call of its own in both, one state layout."""


def run_body(
    call: str,
    run: Callable[[Any], tuple[Any, Any]],
    updates: Any,
    params: Any,
    state: Any,
    like: Any = None,
):
    """``run(updates)``, the body's update of ``state``, inside ``call``'s build.  The
    outermost gradtx call given the params hands its body 16-bit updates in float32 and
    rounds the result once (a stage's float16 output below 6e-5, Adam's ``(1 - b1) g``
    for gradients below ~6e-4, would lose its digits on the way to the next stage).
    Without params the stages could not tell the state's dtypes from the updates'
    (``probe_init``), so 16-bit updates are handed on as they are.  A 16-bit state leaf
    that the widened updates promoted is rounded back: an optax member
    (``mechanize(optax.adam(...))``) promotes its 16-bit moments to float32 when handed
    float32 updates.  ``like`` (default ``updates``): the gradients whose dtypes decide
    and receive the result, where ``updates`` are already wider (a mean that
    ``accumulate_gradients`` keeps in float32)."""
    like = updates if like is None else like
    wide = _RUN.get() is None and params is not None
    wide = wide and any(_dtypes.compute_dtype(u.dtype) != u.dtype for u in jax.tree.leaves(like))
    handed = (
        jax.tree.map(lambda u: u.astype(_dtypes.compute_dtype(u.dtype)), updates)
        if wide
        else updates
    )
    with _RUN.set_to(_Build(call)), _BUILD.set_to(None):
        out, new_state = run(handed)
    if not wide:
        return out, new_state
    if _tree.structure(new_state) == _tree.structure(state):
        # Only what the widening promoted (a 16-bit leaf now in its compute dtype): any
        # other change of dtype is the body's own and stays for the state check to see.
        def back(new: Any, old: Any) -> Any:
            widened = new.dtype != old.dtype and new.dtype == _dtypes.compute_dtype(old.dtype)
            return new.astype(old.dtype) if widened else new

        new_state = jax.tree.map(back, new_state, state)
    return jax.tree.map(lambda o, u: o.astype(u.dtype), out, like), new_state


def widened(update_dtype: Any, param_dtype: Any) -> bool:
    """Whether an enclosing gradtx call handed an update of a 16-bit param widened to its
    compute dtype (``run_body``): a wrapper that compares the updates' dtypes with the
    params' takes it as the param's own."""
    update_dtype, param_dtype = jnp.dtype(update_dtype), jnp.dtype(param_dtype)
    return (
        _RUN.get() is not None
        and update_dtype != param_dtype
        and update_dtype == _dtypes.compute_dtype(param_dtype)
    )


# torch.optim's keywords that gradtx spells as optax does: (torch's, gradtx's, optimizers
# it applies to; None: any optimizer taking gradtx's names)
_TORCH_SPELLINGS: tuple[tuple[str, tuple[str, ...], tuple[str, ...] | None], ...] = (
    ("lr", ("learning_rate",), None),
    ("betas", ("b1", "b2"), None),
    ("alpha", ("decay",), ("rmsprop",)),  # torch's other alphas (ASGD's) mean other things
    ("etas", ("eta_minus", "eta_plus"), ("rprop",)),
    ("step_sizes", ("min_step_size", "max_step_size"), ("rprop",)),
)


def _int32_count(count: Any) -> jax.Array:
    """The step count as a JAX int32; a NumPy or Python one (a checkpoint's, tree_set's)
    beyond int32 is held at its bounds, as the counter itself saturates, not wrapped."""
    if not isinstance(count, jax.Array):
        count = min(max(int(count), -_dtypes.INT32_MAX - 1), _dtypes.INT32_MAX)
    return jnp.asarray(count, jnp.int32)


def _torch_spelling(fn: Callable[..., Any], given: Any) -> str:
    """A hint for a torch.optim keyword among ``given`` that ``fn`` takes under optax's
    name; whichever error binding raised (``lion(lr=1e-4)`` first misses learning_rate)."""
    taken = inspect.signature(fn).parameters
    for theirs, ours, only in _TORCH_SPELLINGS:
        if theirs in given and theirs not in taken and (only is None or fn.__name__ in only):
            if theirs == "betas" and "b3" in taken:
                ours = (*ours, "b3")  # torch's Adan and AdEMAMix take three
            if all(k in taken for k in ours):
                names = [f"{k}=" for k in ours]
                shown = " and ".join([", ".join(names[:-1]), names[-1]] if ours[1:] else names)
                return f" (torch's {theirs}=; gradtx.{fn.__name__} takes {shown})"
    return ""


def _optax_spelling(name: str, err: TypeError, kwargs: Mapping[str, Any], ours: Any) -> str:
    """A hint for a keyword that optax's function of the same name takes: the one the
    error names, or one gradtx does not take (a missing argument's error names only
    gradtx's own, ``lookahead(fast_optimizer=...)`` lacking ``inner``)."""
    found = re.search(r"unexpected keyword argument '(\w+)'", str(err))
    module = optax if callable(getattr(optax, name, None)) else optax.contrib
    theirs = getattr(module, name, None)
    if not callable(theirs):
        return ""
    try:
        taken = inspect.signature(theirs).parameters
    except (TypeError, ValueError):
        return ""
    strays = [found.group(1)] if found else [k for k in kwargs if k not in ours.parameters]
    stray = next((k for k in strays if k in taken), None)
    if stray is None:
        return ""
    said = "it" if found else f"{stray}="
    return (
        f" ({module.__name__}.{name} takes {said}; gradtx spells some of optax's arguments "
        "otherwise or not at all: docs/ecosystem.md, 'optax arguments spelled otherwise')"
    )


def reads_count() -> None:
    """Called by a body whose transform will read ``step_count``: its owner keeps a counter."""
    build = _BUILD.get()
    if build is not None:
        build.counted = True


def _check_direct(build: Any, values: Any, call: str) -> None:
    """A direct call of ``hyperparameterized`` (no declared specs): ``build`` a function
    taking ``values`` and returning a transform, built once as the user's own call, so
    that the gradtx primitives inside check their numbers (a negative learning rate)
    under their own names; inside the owner they trust it, which has none."""
    named = getattr(getattr(build, "func", build), "__name__", "build")  # a partial's function
    shown = f"gradtx.hyperparameterized({call or named})"
    if not callable(build):
        raise TypeError(f"{shown}: build must be a function returning a transform")
    if not isinstance(values, Mapping) or not all(isinstance(k, str) for k in values):
        raise TypeError(f"{shown}: values must be a mapping of names to numbers")
    try:
        inspect.signature(build).bind(**values)
    except TypeError as err:
        raise TypeError(f"{shown}: build does not take these values: {err}") from None
    except ValueError:  # no signature to read (a builtin): the build itself tells
        pass
    zero = jnp.zeros([], jnp.int32)
    built = build(**{k: _current(v, zero) for k, v in values.items()})
    if not isinstance(built, optax.GradientTransformation):
        raise TypeError(f"{shown}: build returned {type(built).__name__}, not a transform")


def current_call(default: str) -> str:
    """The public call being built or updated (for errors raised by its members)."""
    build = _BUILD.get() or _RUN.get()  # a build inside a run resets _BUILD on entry
    return default if build is None else build.call


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
      declared: the specs of the numbers kept in state (``factory`` passes them):
        ``init`` records them as the maker of its state's structure, for
        ``set_hyperparams``' checks.

    Returns:
      The transform.  Inside another factory's body it is simply
      ``build(**values)``: the outer transform already owns the numbers.
    """
    outer = _BUILD.get()
    if outer is not None:
        outer.counted |= counted
        return build(**values)
    if declared is None:  # a user's own call: no specs, so its primitives check the numbers
        _check_direct(build, values, call)
    values = dict(values)
    call = call or _checks.call_name(build)
    python = {k: v for k, v in values.items() if callable(v) and not is_schedule(v)}
    bound = {k: v for k, v in values.items() if _is_bound(v)}
    stored = {k: v for k, v in values.items() if k not in python and k not in bound}

    # Build once now: the body checks how its options combine, and reports
    # whether one of its members reads the step count.
    probe = _Build(call)
    with _BUILD.set_to(probe):
        zero = jnp.zeros([], jnp.int32)
        built = build(**{k: _current(v, zero) for k, v in values.items()})
    if isinstance(built, GradientMap):
        # a body that is a map (a clip in a user's factory) makes one: otherwise the
        # statistics after it in a chain would read the unclipped gradient
        kind = GradientMap
    counted = counted or probe.counted or bool(python)
    counted = counted or any(is_schedule(v) for v in stored.values())

    def inner(current):
        with _BUILD.set_to(_Build(call)):
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
                call, updates, params, example_axis=example_axis, widened=_RUN.get() is not None
            )
            counts.check(updates)
            expected = _update_checks.probe_init(
                init_bare, layout(updates) if params is None else params
            )
            state = _state_checks.check_bare_state(call, state, expected)
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
        _checks.check_rates(call, {k: stored[k] for k in rates if k in stored}, params)
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
        if declared is not None:
            _remember_maker(state, call, declared)
        return state

    def update(updates, state, params=None, *more, **extra):
        _checks.no_more_positional(call, more)
        updates, params = _update_checks.check_updates(
            call, updates, params, example_axis=example_axis, widened=_RUN.get() is not None
        )
        counts.check(updates)
        state = _state_checks.check_state(
            call,
            state,
            _update_checks.probe_init(init, layout(updates) if params is None else params),
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


def _owning_gradient(tx: Any, call: str) -> Any:
    """``tx`` with its input as the gradient its statistics estimate from.

    An enclosing ``chain`` passes ``grads`` frozen before its first member that
    is not a gradient map (an optax clip, say).  A named optimizer is a whole
    update rule of its input, as in ``optax.chain``; given that ``grads`` its
    momentum would see the clipped gradient and its second moment the raw one.
    """

    def update(updates, state, params=None, *more, **extra):
        _checks.no_more_positional(call, more)
        extra.pop("grads", None)
        return tx.update(updates, state, params, **extras_taken(tx.update, extra))

    return type(tx)(tx.init, update)


DECLARED: list[tuple[str, dict[str, Hyper]]] = []
"""Every ``@factory``'s call name and its numbers kept in state (name -> ``Hyper``), in
the order declared: gradtx's and a user's.  ``set_hyperparams`` infers a state's ranges
from them where it does not know the state's maker (``gradtx._set_checks``)."""

TAKES: dict[str, tuple[dict[str, Hyper], set[str]]] = {}
"""Every ``@factory``'s call name -> all its numbers (those ``init`` only reads too) and
the names its ``derive`` has bound (``Bound``) in this process: why a number is not in
a state."""

UNUSED: dict[str, dict[str, str]] = {}
"""Every ``@factory``'s call name -> the numbers its ``derive`` has returned as ``Unused``
in this process, with why."""

MAKERS: dict[Any, dict[str, Mapping[str, Hyper]]] = {}
"""The structure of each state a factory's ``init`` made in this process -> the factories
that made one of that structure (call -> numbers kept in state): ``set_hyperparams``
checks a value with its maker's ranges.  The oldest entries go past ``_MAKERS_KEPT``."""

_MAKERS_KEPT = 4096


def _remember_maker(state: Any, call: str, declared: Mapping[str, Hyper]) -> None:
    structure = jax.tree.structure(state)
    makers = MAKERS.pop(structure, {})  # put back last: the newest entry
    makers[call] = declared
    MAKERS[structure] = makers
    while len(MAKERS) > _MAKERS_KEPT:
        del MAKERS[next(iter(MAKERS))]


def factory(
    *,
    kind: type[optax.GradientTransformationExtraArgs] = GradientTransformation,
    counted: bool = False,
    derive: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None,
    own_gradient: bool = False,
    example_axis: bool = False,
    **specs: Hyper | Option,
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Declare a factory's arguments once: checked eagerly, numbers kept in state.

    Every parameter of the decorated function needs a spec: ``Hyper(...)``
    for numbers kept in state (``LEARNING_RATE``, ``DECAY_RATE``,
    ``MOMENTUM``, ``NON_NEGATIVE``, ``WEIGHT_DECAY`` are the common ones),
    an ``Option`` (``Flag()``, ``Choice(...)``, ``DType()``, ``Int(low)``,
    ``Mask()``, ``Function()``, ``Transform()``, ``Anything()``) for static
    ones.  The body receives checked values (``None`` for a left-out optional
    stage) and returns a transform built from gradtx primitives.

    Args:
      kind: ``GradientMap`` if the transform's output is still a gradient (a body
        that returns a ``GradientMap`` makes one without it).
      counted: the body reads the step count; every named optimizer is
        counted, so ``optax.tree_utils.tree_get(state, "count")`` finds its
        one counter.
      derive: ``derive(call, arguments) -> arguments``, run once on the checked
        arguments of a user's call: fills in defaults computed from other
        arguments (AdaBound's ``base_lr`` is the initial learning rate), or
        wraps in ``Bound`` a number this configuration reads only in ``init``.
      own_gradient: the transform's input is its gradient: a ``grads`` keyword
        from an enclosing ``chain`` is dropped (every named optimizer).
      example_axis: ``update`` takes per-example gradients (see
        ``hyperparameterized``).
      **specs: one spec per parameter.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> from gradtx import factory, LEARNING_RATE, DECAY_RATE, NON_NEGATIVE
      >>> @factory(counted=True, learning_rate=LEARNING_RATE, b1=DECAY_RATE,
      ...          b2=DECAY_RATE, eps=NON_NEGATIVE)
      ... def my_adam(learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8):
      ...     return gradtx.chain(
      ...         gradtx.add_momentum(b1, ema=True),
      ...         gradtx.bias_correct(b1),
      ...         gradtx.scale_by_rms(b2, eps, bias_correction=True),
      ...         gradtx.scale_by_learning_rate(learning_rate),
      ...     )
      >>> state = my_adam(1e-2).init({"w": jnp.zeros(2)})
      >>> sorted(gradtx.get_hyperparams(state))
      ['b1', 'b2', 'eps', 'learning_rate']
    """

    not_specs = {k: v for k, v in specs.items() if not isinstance(v, (Hyper, Option))}
    if not_specs:
        name, value = next(iter(not_specs.items()))
        raise TypeError(
            f"gradtx.factory({name}={value!r}): a spec is Hyper(...) or an Option "
            "(Flag(), Choice(...), ...), not a default value; defaults go in the signature"
        )

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        signature = inspect.signature(fn)
        unspecified = sorted(set(signature.parameters) - set(specs))
        stray = sorted(set(specs) - set(signature.parameters))
        if unspecified or stray:
            said = [f"parameters without a spec: {unspecified}"] if unspecified else []
            said += [f"specs without a parameter: {stray}"] if stray else []
            raise TypeError(f"the decorator of gradtx.{fn.__name__}: {'; '.join(said)}")
        call = f"gradtx.{fn.__name__}"
        rates = tuple(k for k, s in specs.items() if isinstance(s, Hyper) and s.is_rate)
        kept = {k: s for k, s in specs.items() if isinstance(s, Hyper) and not s.init_only}

        @functools.wraps(fn)
        def make(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as err:
                hint = _torch_spelling(fn, kwargs) or _optax_spelling(
                    fn.__name__, err, kwargs, signature
                )
                raise TypeError(f"{call}: {err}{hint}") from None
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            outer = _BUILD.get()
            if outer is not None:  # inside another factory's body: it owns the numbers
                for k, spec in specs.items():
                    if isinstance(spec, Hyper) and spec.optional and _checks.is_zero(arguments[k]):
                        arguments[k] = None
                    elif isinstance(spec, Transform) and arguments[k] is not None:
                        arguments[k] = with_extra_args(arguments[k], call)
                outer.counted |= counted
                inner = fn(**arguments)  # type: ignore[call-arg]
                return _owning_gradient(inner, call) if own_gradient else inner
            for k, spec in specs.items():
                arguments[k] = spec.check(call, k, arguments[k])
            if derive is not None:
                arguments = derive(call, arguments)
                TAKES[call][1].update(k for k, v in arguments.items() if isinstance(v, Bound))
                unused = {k: v.why for k, v in arguments.items() if isinstance(v, Unused)}
                UNUSED.setdefault(call, {}).update(unused)
                arguments |= dict.fromkeys(unused)
            stored = {
                k for k, spec in specs.items() if isinstance(spec, Hyper) and not spec.init_only
            }
            values = {
                k: v
                for k, v in arguments.items()
                if k in stored and v is not None and not isinstance(v, Bound)
            }
            arguments = {k: v.value if isinstance(v, Bound) else v for k, v in arguments.items()}
            static = {k: v for k, v in arguments.items() if k not in values}
            body = functools.partial(fn, **static)
            tx = hyperparameterized(
                body, values, call, kind=kind, counted=counted, rates=rates,
                example_axis=example_axis, declared=kept,
            )  # fmt: skip
            # The function object is this call's own (a fresh closure), so the record
            # cannot leak to another transform; the state stays numbers only.
            record = FactoryCall(call, make, types.MappingProxyType(arguments))
            setattr(tx.init, "gradtx_factory_call", record)  # noqa: B010
            return _owning_gradient(tx, call) if own_gradient else tx

        make.specs = dict(specs)  # type: ignore[attr-defined]  # read by tests and docs
        DECLARED.append((call, kept))
        TAKES[call] = ({k: s for k, s in specs.items() if isinstance(s, Hyper)}, set())
        return make

    return decorate

"""The transform contract and the hyperparameters-in-state machinery.

Two ideas live here.

1. ``chain`` threads the gradient.  A chain passes its input through its members
   in order.  While the members are *gradient maps* (their output is still a
   gradient: ``add_l2``, ``centralize``, clipping, ``scale``) the updates *are*
   the gradient.  After the first member that is not a map (momentum, a moment
   estimate, the learning rate) the chain freezes the gradient and hands it to
   every later member as the keyword ``grads``.  Statistic transforms
   (``scale_by_rms``, ``rectify``, ...) estimate from ``grads`` when they get it,
   else from their input.  This is how Adam's numerator (momentum of g) and its
   denominator (RMS of the same g) are two members of one sequential chain.

2. Hyperparameters are data.  ``hyperparameterized(build, values)`` stores every
   numeric hyperparameter in the state (``HyperparamsState.hyperparams``) and
   rebuilds the inner transform from those arrays at every ``init``/``update``.
   Factories called *inside* such a build do not store again: the outermost
   gradtx factory owns the numbers, so each number lives in state exactly once.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gradtx import _checks, _tree

GradientTransformation = optax.GradientTransformationExtraArgs


class GradientMap(optax.GradientTransformationExtraArgs):
    """A transform whose output is still a gradient (see the module docstring)."""


def kind_of(*transforms: Any) -> type[optax.GradientTransformationExtraArgs]:
    """What wraps or chains ``transforms`` is a ``GradientMap`` iff each of them is one."""
    maps = transforms and all(isinstance(t, GradientMap) for t in transforms)
    return GradientMap if maps else GradientTransformation


class EmptyState(NamedTuple):
    """State of a stateless transform."""


class HyperparamsState(NamedTuple):
    """State of a transform that owns hyperparameters.

    Attributes:
      count: number of updates so far (int32, saturating).
      hyperparams: name -> scalar array, or a gradtx schedule (a NamedTuple of
        arrays) evaluated at ``count``.  These are data: ``set_hyperparams``
        changes them without recompiling.
      python_schedules: name -> the value a plain Python callable gives for the
        next update.  Read-only: the callable is code, not data.
      inner_state: the state of the transform built from these values.
    """

    count: jax.Array
    hyperparams: dict[str, Any]
    python_schedules: dict[str, jax.Array]
    inner_state: Any


_BUILDING = contextvars.ContextVar("gradtx_building", default=False)


@contextlib.contextmanager
def _building():
    token = _BUILDING.set(True)
    try:
        yield
    finally:
        _BUILDING.reset(token)


def float_dtype() -> jnp.dtype:
    """JAX's default float dtype now: float64 under ``jax_enable_x64``."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def is_schedule(value: Any) -> bool:
    """A schedule whose numbers are data: an instance of a ``gradtx.schedules``
    class (a frozen dataclass registered as a pytree), or a callable NamedTuple
    of numbers (the earlier form, still accepted)."""
    if not callable(value) or isinstance(value, type):
        return False
    return getattr(value, "_is_gradtx_schedule", False) is True or isinstance(value, tuple)


def _store(value: Any) -> Any:
    dtype = float_dtype()
    if is_schedule(value):
        return jax.tree.map(lambda x: jnp.asarray(x, dtype=dtype), value)
    return jnp.asarray(value, dtype=dtype)


def _current(value: Any, count: jax.Array) -> Any:
    return value(count) if callable(value) else value


def hyperparameterized(
    build: Callable[..., optax.GradientTransformation], values: Mapping[str, Any], call: str = ""
) -> optax.GradientTransformationExtraArgs:
    """Store ``values`` in state and build the transform from them at each call.

    Args:
      build: keyword-only function of the hyperparameters returning a transform.
        Static options are bound into it (``functools.partial``) by the caller.
      values: name -> number, array, gradtx schedule or plain callable of the
        0-based step count.
      call: name used in error messages (default: from ``build``'s name).

    Returns:
      The transform.  Inside another ``hyperparameterized`` build it is simply
      ``build(**values)``: the outer transform already owns the numbers.
    """
    values = dict(values)
    if _BUILDING.get():
        return build(**values)
    plain = {k: v for k, v in values.items() if callable(v) and not is_schedule(v)}
    call, seen = call or _checks.call_name(build), set()  # init's tree structures

    def _inner(current):
        with _building():
            return build(**current)

    def init(params):
        params = _checks.check_tree(call, params, "params")
        seen.add(jax.tree.structure(params))
        count = jnp.zeros([], jnp.int32)
        stored = {k: _store(v) for k, v in values.items() if k not in plain}
        python = {k: _store(fn(count)) for k, fn in plain.items()}
        current = {k: _current(v, count) for k, v in stored.items()} | python
        return HyperparamsState(count, stored, python, _inner(current).init(params))

    def update(updates, state, params=None, **extra):
        updates, params = _checks.check_updates(call, updates, params, seen)
        current = {k: _current(v, state.count) for k, v in state.hyperparams.items()}
        current |= state.python_schedules
        updates, inner_state = _inner(current).update(updates, state.inner_state, params, **extra)
        new_count = _tree.safe_increment(state.count)
        python = {
            k: jnp.asarray(fn(new_count), dtype=state.python_schedules[k].dtype)
            for k, fn in plain.items()
        }
        return updates, HyperparamsState(new_count, state.hyperparams, python, inner_state)

    return GradientTransformation(init, update)


# --------------------------------------------------------------------------- chain


def _with_extra_args(tx: Any, call: str) -> optax.GradientTransformationExtraArgs:
    if isinstance(tx, optax.GradientTransformationExtraArgs):
        return tx
    if isinstance(tx, optax.GradientTransformation):
        return optax.with_extra_args_support(tx)
    raise TypeError(f"{call}: expected a GradientTransformation, got {type(tx).__name__}")


def chain(*transforms: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """Apply transforms in sequence, threading the gradient as ``grads``.

    Members before the first non-map see the gradient as their input; every
    later member also gets it as the keyword ``grads`` (module docstring).
    The state is a tuple of the members' states.  A chain of gradient maps is
    itself a gradient map.
    """
    txs = tuple(_with_extra_args(t, "gradtx.chain") for t in transforms)

    def init(params):
        return tuple(t.init(params) for t in txs)

    def update(updates, state, params=None, **extra):
        if len(state) != len(txs):
            raise ValueError(
                f"gradtx.chain.update: state has {len(state)} entries, chain has {len(txs)}"
            )
        grads = extra.pop("grads", None)
        new_states = []
        for tx, s in zip(txs, state):
            if grads is None:
                out, s = tx.update(updates, s, params, **extra)
                if not isinstance(tx, GradientMap):
                    grads = updates  # the gradient as it entered this member
            else:
                out, s = tx.update(updates, s, params, grads=grads, **extra)
            updates = out
            new_states.append(s)
        return updates, tuple(new_states)

    return kind_of(*txs)(init, update)


def named_chain(
    *transforms: tuple[str, optax.GradientTransformation],
) -> optax.GradientTransformationExtraArgs:
    """``chain`` whose state is a dict keyed by the given names.

    Names address hyperparameters: ``set_hyperparams(state, {"adam/learning_rate": 1e-4})``.
    """
    names = [n for n, _ in transforms]
    if len(set(names)) != len(names) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"gradtx.named_chain: names must be unique strings, got {names}")
    inner = chain(*(t for _, t in transforms))

    def init(params):
        return dict(zip(names, inner.init(params)))

    def update(updates, state, params=None, **extra):
        updates, states = inner.update(updates, tuple(state[n] for n in names), params, **extra)
        return updates, dict(zip(names, states))

    return type(inner)(init, update)


def identity() -> GradientMap:
    """The transform that returns its input."""
    return GradientMap(lambda params: EmptyState(), lambda u, s, params=None, **extra: (u, s))


def stateless(fn: Callable[[Any, Any], Any]) -> optax.GradientTransformationExtraArgs:
    """A transform from ``fn(updates, params) -> updates``, with no state."""

    def update(updates, state, params=None, **extra):
        return fn(updates, params), state

    return GradientTransformation(lambda params: EmptyState(), update)


def apply_updates(params: Any, updates: Any) -> Any:
    """``params + updates``, each result in its parameter's dtype.

    The sum is taken in the promoted dtype and rounded once, which keeps
    bfloat16 params as accurate as the update allows.
    """

    def add(p, u):
        if p is None:
            return None
        if getattr(p, "dtype", None) is not None and p.dtype == getattr(u, "dtype", None):
            return p + u  # the common case, without the casts' tracing cost
        p = jnp.asarray(p)
        dtype = jnp.promote_types(p.dtype, jnp.asarray(u).dtype)
        return (p.astype(dtype) + jnp.asarray(u).astype(dtype)).astype(p.dtype)

    return jax.tree.map(add, params, updates, is_leaf=lambda x: x is None)

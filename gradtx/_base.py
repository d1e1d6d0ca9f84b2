"""The transform contract: chains that thread the gradient, and the keywords they pass.

``chain`` threads the gradient.  A chain passes its input through its members
in order.  While the members are *gradient maps* (their output is still a
gradient: ``add_l2``, ``centralize``, clipping, ``scale``) the updates *are*
the gradient.  After the first member that is not a map (momentum, a moment
estimate, the learning rate) the chain freezes the gradient and hands it to
every later member as the keyword ``grads``.  Statistic transforms
(``scale_by_rms``, ``rectify``, ...) read it with ``gradient(updates, extra)``:
so Adam's numerator (momentum of g) and its denominator (RMS of the same g)
are two members of one sequential chain.

The step count is passed the same way: the factory that owns an optimizer's
numbers (see ``gradtx._factory``) keeps the one step counter and hands it to
every member as the keyword ``count``; members read it with
``step_count(extra)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any
from typing import NamedTuple
from typing import TypeAlias

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradtx import _tree

GradientTransformation: TypeAlias = optax.GradientTransformationExtraArgs

Params: TypeAlias = Any
"""A pytree of arrays: the parameters."""
Updates: TypeAlias = Any
"""A pytree shaped like the params: gradients or updates."""
OptState: TypeAlias = Any
"""A pytree of arrays: a transform's state."""
Schedule: TypeAlias = Callable[[jax.Array], jax.Array]
"""A function of the 0-based step count (a gradtx schedule, or any callable)."""
ScalarOrSchedule: TypeAlias = float | jax.Array | Schedule
"""A hyperparameter: a number (kept in state), a JAX array (bound) or a schedule."""
MaskTree: TypeAlias = Any
"""A pytree of bools shaped like the params (or a prefix of them): where a stage applies."""
MaskFn: TypeAlias = Callable[[Params], MaskTree]
"""A function of the params returning their ``MaskTree``."""


class GradientMap(optax.GradientTransformationExtraArgs):
    """A transform whose output is still a gradient (see the module docstring)."""


def kind_of(*transforms: Any) -> type[optax.GradientTransformationExtraArgs]:
    """What wraps or chains ``transforms`` is a ``GradientMap`` iff each of them is one
    (so an empty chain, the identity, is one)."""
    maps = all(isinstance(t, GradientMap) for t in transforms)
    return GradientMap if maps else GradientTransformation


class EmptyState(NamedTuple):
    """State of a stateless transform."""


REPORTED: dict[type, tuple[str, ...]] = {}
"""State class -> fields ``get_hyperparams`` reports next to the hyperparameters
(read-only: computed by the transform, e.g. ``reduce_on_plateau``'s ``scale``)."""


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
    # A copy, never the caller's array: the state may be donated to a jitted step.
    if is_schedule(value):
        return jax.tree.map(lambda x: jnp.array(x, dtype=dtype, copy=True), value)
    return jnp.array(value, dtype=dtype, copy=True)


def gradient(updates: Updates, extra: dict[str, Any]) -> Updates:
    """The gradient a statistic estimates from: the chain's ``grads`` keyword, else its input.

    Every transform that keeps a statistic of the gradient (a second moment, a
    sign, a norm) reads it through this one line, so that placed after momentum
    in a ``chain`` it still sees the gradient, not the momentum.
    """
    grads = extra.get("grads")
    return updates if grads is None else grads


def step_count(extra: dict[str, Any], call: str) -> jax.Array:
    """The number of updates before this one (int32, 0 at the first update).

    The factory that owns the optimizer passes it as the keyword ``count``;
    transforms that need the step (bias corrections, warm-up terms) read it
    here.  Their factories are declared with ``counted=True``.
    """
    count = extra.get("count")
    if count is None:
        raise RuntimeError(
            f"{call}: reads the step count, which the enclosing gradtx factory passes; "
            "declare the factory that builds it with gradtx.factory(counted=True) (a "
            "direct gradtx.hyperparameterized: pass counted=True), and "
            "do not put an optax transform between them inside a gradtx.chain (gradtx "
            "keeps its count from optax's, which may hand keywords on), nor a wrapper "
            "that hands its inner no count (sam, mechanize): build that wrapper and "
            "its inner outside the factory's body"
        )
    return count


INTERNAL_EXTRAS = ("grads", "count")
"""Keywords gradtx passes between its own transforms: the chain's gradient, the step."""


def extras_for(tx: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """The keyword extras ``tx.update`` gets.  One of optax's (its update defined in
    optax) gets all but gradtx's ``grads`` and ``count``: optax does not know them and
    may hand them on (its line searches pass unknown keywords to ``value_fn``, its
    schedule-free takes a ``grads`` of its own).  Any other gets them where its update
    takes ``**kwargs`` or names them (``gradient``, ``step_count`` read them), and the
    caller's keywords in any case."""
    module = getattr(tx.update, "__module__", None) or ""
    if module == "optax" or module.startswith("optax."):
        return {k: v for k, v in extra.items() if k not in INTERNAL_EXTRAS}
    return extras_taken(tx.update, extra)


def extras_taken(update: Callable[..., Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` for ``update``: gradtx's own keywords only where it takes ``**kwargs``
    or names them (an optax combinator takes them and hands them to gradtx members
    inside); what the caller passed reaches it as given."""
    named = keywords_taken(update)
    if named is None:
        return extra
    return {k: v for k, v in extra.items() if k not in INTERNAL_EXTRAS or k in named}


def keywords_taken(fn: Callable[..., Any]) -> frozenset[str] | None:
    """The keywords ``fn`` takes after ``(updates, state, params)``; ``None`` where it
    takes any (``**extra``, or a signature that cannot be read)."""
    code = getattr(fn, "__code__", None)
    if code is not None and code.co_flags & inspect.CO_VARKEYWORDS:
        return None  # the common case, read without building a signature
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(p.name for p in parameters[3:] if p.kind in named) | frozenset(
        p.name for p in parameters[:3] if p.kind is inspect.Parameter.KEYWORD_ONLY
    )


def with_extra_args(tx: Any, call: str) -> optax.GradientTransformationExtraArgs:
    """``tx`` as a transform whose ``update`` accepts (and may ignore) keyword extras."""
    if isinstance(tx, optax.GradientTransformationExtraArgs):
        return tx
    if isinstance(tx, optax.GradientTransformation):
        return optax.with_extra_args_support(tx)
    shown = type(tx).__name__
    raise TypeError(f"{call}: expected a GradientTransformation, got {shown}{multisteps_hint(tx)}")


def multisteps_hint(value: Any) -> str:
    """What to pass instead of an ``optax.MultiSteps``, a wrapper object whose transform
    is a method's result; ``""`` for anything else."""
    if callable(getattr(value, "gradient_transformation", None)):
        return "; pass its .gradient_transformation()"
    return ""


def transform(
    init: Callable[[Params], OptState],
    update: Callable[..., tuple[Updates, OptState]],
    *,
    gradient_map: bool = False,
) -> optax.GradientTransformationExtraArgs:
    """Wrap a plain ``(init, update)`` pair as a transform gradtx can chain.

    ``update(updates, state, params=None, **extra)``; an ``update`` without
    ``**extra`` gets the extras it names (``grads``, ``count``, ``value``, ...)
    and no others.  With ``gradient_map=True`` the
    result is a ``GradientMap``: its output is still a gradient, so statistics
    after it in a ``chain`` see that output (as after ``clip``).

    Example:
      >>> import gradtx, jax, jax.numpy as jnp
      >>> halve = gradtx.transform(
      ...     lambda params: gradtx.EmptyState(),
      ...     lambda u, s, params=None: (jax.tree.map(lambda x: x / 2, u), s),
      ...     gradient_map=True,
      ... )
      >>> halve.update(jnp.ones(2), halve.init(jnp.ones(2)))[0]
      Array([0.5, 0.5], dtype=float32)
    """
    for name, fn in (("init", init), ("update", update)):
        if not callable(fn):
            raise TypeError(f"gradtx.transform({name}={fn!r}): {name} must be a function")
    if not isinstance(gradient_map, (bool, np.bool_)):
        raise TypeError(f"gradtx.transform(gradient_map={gradient_map!r}): must be a bool")
    kind = GradientMap if gradient_map else GradientTransformation
    named = keywords_taken(update)
    if named is None:
        return kind(init, update)

    def update_with_its_extras(updates, state, params=None, **extra):
        return update(updates, state, params, **{k: v for k, v in extra.items() if k in named})

    return kind(init, update_with_its_extras)


# --------------------------------------------------------------------------- chain


def chain(*transforms: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """Apply transforms in sequence, threading the gradient as ``grads``.

    Members before the first non-map see the gradient as their input; every
    later member also gets it as the keyword ``grads`` (module docstring).
    The state is a tuple of the members' states.  A chain of gradient maps is
    itself a gradient map.
    """
    txs = tuple(with_extra_args(t, "gradtx.chain") for t in transforms)

    def init(params):
        return _tree.settled(tuple(t.init(params) for t in txs), params)

    def update(updates, state, params=None, **extra):
        if not isinstance(state, tuple) or len(state) != len(txs):
            raise ValueError(
                f"gradtx.chain.update: the state is not a tuple of {len(txs)} member states"
            )
        grads = extra.pop("grads", None)
        new_states = []
        for i, (tx, s) in enumerate(zip(txs, state)):
            if grads is None:
                result = tx.update(updates, s, params, **extras_for(tx, extra))
                if not isinstance(tx, GradientMap):
                    grads = updates  # the gradient as it entered this member
            else:
                result = tx.update(updates, s, params, **extras_for(tx, {**extra, "grads": grads}))
            if not isinstance(result, tuple) or len(result) != 2:
                raise TypeError(
                    f"gradtx.chain.update: member {i} returned {type(result).__name__}, "
                    "not the pair (updates, state)"
                )
            updates, s = result
            new_states.append(s)
        # a last member may return its state as the updates (momentum): not one buffer
        return updates, _tree.settled(tuple(new_states), (params, updates))

    return kind_of(*txs)(init, update)


def named_chain(
    *transforms: tuple[str, optax.GradientTransformation],
) -> optax.GradientTransformationExtraArgs:
    """``chain`` whose state is a dict keyed by the given names.

    Names address hyperparameters: ``set_hyperparams(state, {"adam/learning_rate": 1e-4})``.
    """
    for pair in transforms:
        bare = isinstance(pair, optax.GradientTransformation)  # itself a 2-tuple
        sequence = isinstance(pair, (tuple, list)) and not bare  # a list: from a config file
        if not sequence or len(pair) != 2 or not isinstance(pair[0], str):
            kinds = ", ".join(type(x).__name__ for x in pair) if sequence else ""
            shown = f"({kinds})" if sequence else type(pair).__name__
            raise TypeError(
                "gradtx.named_chain: each argument is a (name, transform) pair, as "
                f"named_chain(('adam', gradtx.adam(1e-3))), got {shown}"
            )
        if not isinstance(pair[1], optax.GradientTransformation):
            raise TypeError(
                f"gradtx.named_chain(({pair[0]!r}, ...)): the transform must be a "
                f"GradientTransformation, got {type(pair[1]).__name__}{multisteps_hint(pair[1])}"
            )
    names = [n for n, _ in transforms]
    if len(set(names)) != len(names):
        raise ValueError(f"gradtx.named_chain: names must be unique, got {names}")
    _tree.refuse_reserved("gradtx.named_chain", "the name", names)
    inner = chain(*(t for _, t in transforms))

    def init(params):
        return dict(zip(names, inner.init(params)))

    def update(updates, state, params=None, **extra):
        if not isinstance(state, dict) or set(state) != set(names):
            raise ValueError(f"gradtx.named_chain.update: the state is not a dict of {names}")
        updates, states = inner.update(updates, tuple(state[n] for n in names), params, **extra)
        return updates, dict(zip(names, states))

    return type(inner)(init, update)


def identity() -> GradientMap:
    """The transform that returns its input."""
    return GradientMap(lambda params: EmptyState(), lambda u, s, params=None, **extra: (u, s))


def stateless(fn: Callable[[Updates, Params], Updates]) -> optax.GradientTransformationExtraArgs:
    """A transform from ``fn(updates, params) -> updates``, with no state.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> tx = gradtx.stateless(lambda u, p: u * 3)
      >>> tx.update(jnp.ones(2), tx.init(jnp.ones(2)))[0]
      Array([3., 3.], dtype=float32)
    """
    if not callable(fn):
        raise TypeError(f"gradtx.stateless(fn={fn!r}): fn must be a function")

    def update(updates, state, params=None, **extra):
        return fn(updates, params), state

    return GradientTransformation(lambda params: EmptyState(), update)


def apply_updates(params: Params, updates: Updates) -> Params:
    """``params + updates``, each result in its parameter's dtype.

    The sum is taken in the promoted dtype and rounded once, which keeps
    bfloat16 params as accurate as the update allows.  An update must have its
    param's shape (nothing is broadcast), and a complex update is refused for
    a real param, an inexact one for an integer param (the cast back would
    drop the imaginary part, or truncate), and a bool one for any other param.
    A ``float0`` update (the gradient of an int or bool leaf under
    ``jax.grad(..., allow_int=True)``, passed through ``masked`` or
    ``partition``) carries no value and leaves its param as it is.
    """

    def add(path, p, u):
        if p is None:
            return None
        if u is None:
            raise ValueError(
                f"gradtx.apply_updates: updates leaf {jax.tree_util.keystr(path) or '(root)'} "
                "is None, its param an array"
            )
        if jnp.shape(p) != jnp.shape(u):
            raise ValueError(
                f"gradtx.apply_updates: updates leaf {jax.tree_util.keystr(path) or '(root)'} "
                f"has shape {jnp.shape(u)}, its param {jnp.shape(p)}; nothing is broadcast"
            )
        if getattr(p, "dtype", None) is not None and p.dtype == getattr(u, "dtype", None):
            return p + u  # the common case, without the casts' tracing cost
        if getattr(u, "dtype", None) == jax.dtypes.float0:
            # JAX's zero tangent of an int or bool leaf (grad with allow_int); for an
            # inexact param it means the trees were mixed up
            param = jnp.result_type(p)
            if jnp.issubdtype(param, jnp.inexact):
                raise TypeError(
                    f"gradtx.apply_updates: updates leaf {jax.tree_util.keystr(path) or '(root)'}"
                    f" is float0 (the gradient of an int or bool leaf), its param {param}"
                )
            return p
        p, u = jnp.asarray(p), jnp.asarray(u)
        if u.dtype == jnp.bool_:  # a mask handed over as a step: True would add 1
            raise TypeError(
                f"gradtx.apply_updates: updates leaf {jax.tree_util.keystr(path) or '(root)'} "
                f"is bool, its param {p.dtype}: an update is a number"
            )
        with jax.numpy_dtype_promotion("standard"):  # an explicit choice, also under strict mode
            dtype = jnp.promote_types(p.dtype, u.dtype)
        truncated = jnp.issubdtype(u.dtype, jnp.inexact) and not jnp.issubdtype(
            p.dtype, jnp.inexact
        )
        if truncated or (
            jnp.issubdtype(u.dtype, jnp.complexfloating)
            and not jnp.issubdtype(p.dtype, jnp.complexfloating)
        ):
            raise TypeError(
                f"gradtx.apply_updates: updates leaf {jax.tree_util.keystr(path) or '(root)'} "
                f"is {u.dtype}, its param {p.dtype}: the sum cast back to {p.dtype} would "
                "lose part of the update"
            )
        return (p.astype(dtype) + u.astype(dtype)).astype(p.dtype)

    none = lambda x: x is None  # noqa: E731
    trees: tuple[Any, Any] = (
        jax.tree.structure(params, is_leaf=none),
        jax.tree.structure(updates, is_leaf=none),
    )
    if trees[0] != trees[1]:
        raise ValueError(
            "gradtx.apply_updates: the updates' tree does not match the params' tree.\n"
            f"  params:  {trees[0]}\n  updates: {trees[1]}"
        )
    return jax.tree_util.tree_map_with_path(add, params, updates, is_leaf=none)

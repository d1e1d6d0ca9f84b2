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

This module is the declaring half (``factory``, the specs' registries, the
hints for torch's and optax's spellings).  The runtime half is
``gradtx._hyperparameterized``; the states and the record of a call are
``gradtx._factory_state``; the context a body is built and run in is
``gradtx._build``.
"""

from __future__ import annotations

import functools
import inspect
import re
import types
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from typing import ParamSpec
from typing import TypeVar

import optax

from gradtx import _checks
from gradtx import _stored
from gradtx._base import GradientTransformation
from gradtx._base import extras_taken
from gradtx._base import with_extra_args
from gradtx._build import BUILD
from gradtx._factory_state import Bound
from gradtx._factory_state import FactoryCall

# States pickled before 2026-12-05 name this module as these classes' home (they moved
# to _factory_state then): importable here, such a pickle still loads.
from gradtx._factory_state import HyperparamsState  # noqa: F401
from gradtx._factory_state import UncountedHyperparamsState  # noqa: F401
from gradtx._factory_state import Unused
from gradtx._hyperparameterized import owning
from gradtx._specs import Hyper
from gradtx._specs import Option
from gradtx._specs import Transform

P = ParamSpec("P")
T = TypeVar("T")


# ------------------------------------------------------------------ building


# torch.optim's keywords that gradtx spells as optax does: (torch's, gradtx's, optimizers
# it applies to (None: any optimizer taking gradtx's names), what else to know)
_TORCH_SPELLINGS: tuple[tuple[str, tuple[str, ...], tuple[str, ...] | None, str], ...] = (
    ("lr", ("learning_rate",), None, ""),
    ("betas", ("b1", "b2"), None, ""),
    ("alpha", ("decay",), ("rmsprop",), ""),  # torch's other alphas (ASGD's) mean other things
    ("etas", ("eta_minus", "eta_plus"), ("rprop",), ""),
    ("step_sizes", ("min_step_size", "max_step_size"), ("rprop",), ""),
    # ReduceLROnPlateau's: the plateau scales the updates, so its floor is relative
    ("min_lr", ("min_scale",), ("reduce_on_plateau",), "min_lr / lr, a fraction of the rate"),
    ("eps", (), ("reduce_on_plateau",), "gradtx applies every reduction, as torch with eps=0"),
)


def _torch_spelling(fn: Callable[..., Any], given: Any) -> str:
    """A hint for a torch.optim keyword among ``given`` that ``fn`` takes under optax's
    name (or not at all); whichever error binding raised (``lion(lr=1e-4)`` first misses
    learning_rate)."""
    taken = inspect.signature(fn).parameters
    for theirs, ours, only, note in _TORCH_SPELLINGS:
        if theirs in given and theirs not in taken and (only is None or fn.__name__ in only):
            if theirs == "betas" and "b3" in taken:
                ours = (*ours, "b3")  # torch's Adan and AdEMAMix take three
            if not ours:
                return f" (torch's {theirs}=: {note})"
            if all(k in taken for k in ours):
                names = [f"{k}=" for k in ours]
                shown = " and ".join([", ".join(names[:-1]), names[-1]] if ours[1:] else names)
                also = f": {note}" if note else ""
                return f" (torch's {theirs}=; gradtx.{fn.__name__} takes {shown}{also})"
    return ""


def _optax_spelling(
    name: str, err: TypeError, kwargs: Mapping[str, Any], ours: Any, nargs: int
) -> str:
    """A hint for a keyword that optax's function of the same name takes: the one the
    error names, or one gradtx does not take (a missing argument's error names only
    gradtx's own, ``lookahead(fast_optimizer=...)`` lacking ``inner``); or, for more
    positional arguments than gradtx takes, the names optax gives those positions."""
    found = re.search(r"unexpected keyword argument '(\w+)'", str(err))
    module = optax if callable(getattr(optax, name, None)) else optax.contrib
    theirs = getattr(module, name, None)
    if not callable(theirs):
        return ""
    try:
        taken = inspect.signature(theirs).parameters
    except (TypeError, ValueError):
        return ""
    if "too many positional arguments" in str(err):
        by_place = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        mine = [k for k, v in ours.parameters.items() if v.kind in by_place]
        placed = [k for k, v in taken.items() if v.kind in by_place]
        if nargs > len(placed):  # optax's function takes no more either
            return ""
        # a position where optax takes an argument gradtx takes elsewhere (adamw's fifth:
        # optax's eps_root, gradtx's weight_decay); not a name alone (lookahead's inner)
        moved = [
            (i, optaxs, own)
            for i, (optaxs, own) in enumerate(zip(placed, mine))
            if optaxs != own and optaxs in ours.parameters
        ]
        if moved:
            i, optaxs, own = moved[0]
            return (
                f" (argument {i + 1} is {module.__name__}.{name}'s {optaxs} but "
                f"gradtx.{name}'s {own}: docs/ecosystem.md, 'optax arguments spelled otherwise')"
            )
        extra = placed[len(mine) : nargs]
        if not extra or not all(k in ours.parameters for k in extra):
            return ""
        said = ", ".join(f"{k}=" for k in extra)
        return (
            f" ({module.__name__}.{name} takes {', '.join(extra)} there by position; "
            f"gradtx.{name} by keyword: {said})"
        )
    strays = [found.group(1)] if found else [k for k in kwargs if k not in ours.parameters]
    stray = next((k for k in strays if k in taken), None)
    if stray is None:
        return ""
    said = "it" if found else f"{stray}="
    return (
        f" ({module.__name__}.{name} takes {said}; gradtx spells some of optax's arguments "
        "otherwise or not at all: docs/ecosystem.md, 'optax arguments spelled otherwise')"
    )


def optax_spelled(fn: Callable[P, T]) -> Callable[P, T]:
    """``fn``, a public function that is not a factory (a wrapper), whose argument errors
    name the call and, for a keyword optax's function of the same name takes
    (``partition(param_labels=...)``), say where gradtx has it, as a factory's do."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            signature.bind(*args, **kwargs)
        except TypeError as err:
            hint = _optax_spelling(fn.__name__, err, kwargs, signature, len(args))
            raise TypeError(f"gradtx.{fn.__name__}: {err}{hint}") from None
        return fn(*args, **kwargs)

    return call


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

OPTIONS: dict[str, dict[str, Option]] = {}
"""Every ``@factory``'s call name -> its arguments that are not numbers kept under their
own name: options (flags, choices, dtypes, functions, masks, transforms), which decide
the chain, so no state keeps them, and optax's names for numbers kept under torch's."""

UNUSED: dict[str, dict[str, str]] = {}
"""Every ``@factory``'s call name -> the numbers its ``derive`` has returned as ``Unused``
in this process, with why."""


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
    stage) and returns a transform built from gradtx primitives.  Errors name
    the factory by its function's name (``my_adam(b1=1.5): ...``; gradtx's own
    as ``gradtx.adam``).

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
        call = _checks.call_name(fn)
        if unspecified or stray:
            said = [f"parameters without a spec: {unspecified}"] if unspecified else []
            said += [f"specs without a parameter: {stray}"] if stray else []
            raise TypeError(f"the decorator of {call}: {'; '.join(said)}")
        rates = tuple(k for k, s in specs.items() if isinstance(s, Hyper) and s.is_rate)
        kept = {k: s for k, s in specs.items() if isinstance(s, Hyper) and not s.init_only}

        @functools.wraps(fn)
        def make(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as err:
                hint = _torch_spelling(fn, kwargs) or _optax_spelling(
                    fn.__name__, err, kwargs, signature, len(args)
                )
                raise TypeError(f"{call}: {err}{hint}") from None
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            outer = BUILD.get()
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
                given = arguments[k]
                arguments[k] = spec.check(call, k, given)
                if isinstance(spec, Hyper):
                    default = signature.parameters[k].default
                    one_allowed = spec.decays  # a rate's 1.0 was refused by check
                    _stored.warn_collapsed(call, k, given, one_allowed=one_allowed, default=default)
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
            tx = owning(
                body, values, call, kind=kind, counted=counted, rates=rates,
                example_axis=example_axis, declared=kept,
            )  # fmt: skip
            # The function object is this call's own (a fresh closure), so the record
            # cannot leak to another transform; the state stays numbers only.
            record = FactoryCall(call, make, types.MappingProxyType(arguments))
            setattr(tx.init, "gradtx_factory_call", record)  # noqa: B010
            return _owning_gradient(tx, call) if own_gradient else tx

        make.specs = dict(specs)  # type: ignore[attr-defined]  # read by tests and docs
        if (call, kept) not in DECLARED:  # a factory defined anew in each trial of a sweep
            DECLARED.append((call, kept))
        TAKES[call] = ({k: s for k, s in specs.items() if isinstance(s, Hyper)}, set())
        OPTIONS[call] = {k: s for k, s in specs.items() if isinstance(s, Option)}
        return make

    return decorate

"""Reading and changing the hyperparameters that live in optimizer state.

``get_hyperparams`` lists them by name, ``set_hyperparams`` writes new values
(cast to the stored dtype, checked with their maker's ranges, a schedule's
fields as one schedule), and ``keep_hyperparams`` carries them from an old
state into a fresh one.  How the names are formed and resolved is
``gradtx._hyperparam_paths``.
"""

from __future__ import annotations

import dataclasses
import fractions
import numbers
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _checks
from gradtx import _dtypes
from gradtx import _set_checks
from gradtx import _stored
from gradtx import _tree
from gradtx._base import OptState
from gradtx._base import is_schedule
from gradtx._factory_state import HYPERPARAMS_STATES
from gradtx._factory_state import shown_key
from gradtx._hyperparam_paths import LOCATIONS
from gradtx._hyperparam_paths import NONE_FOUND
from gradtx._hyperparam_paths import find_entry
from gradtx._hyperparam_paths import get_field
from gradtx._hyperparam_paths import locations
from gradtx._hyperparam_paths import named_entries
from gradtx._hyperparam_paths import schedule_fields
from gradtx._hyperparam_paths import set_field
from gradtx._hyperparam_paths import short_names
from gradtx._hyperparam_paths import unreadable
from gradtx.schedules._common import check_rate
from gradtx.schedules._common import check_stored_steps
from gradtx.schedules._common import concrete
from gradtx.schedules._common import step_field


def get_hyperparams(state: OptState) -> dict[str, jax.Array]:
    """The hyperparameters in ``state``, as the next update will apply them.

    A scheduled hyperparameter is reported at the current step, next to its
    schedule's fields (``learning_rate.peak_value``).  One exception: a schedule
    given to ``optax.inject_hyperparams`` is not in its state, only the value
    its last update computed, so that is what is reported there (the last
    update's rate, not the next one's; the initial value before the first
    update).  Names are the shortest
    unambiguous suffixes (see the module docstring).  The values are copies, which
    a later step that donates the state leaves alone.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> state = gradtx.adam(1e-3).init({"w": jnp.zeros(3)})
      >>> round(float(gradtx.get_hyperparams(state)["learning_rate"]), 6)
      0.001
    """
    entries = named_entries(state, "gradtx.get_hyperparams")
    if unreadable(state):  # {} would hide a state passed from the wrong place
        raise ValueError(f"gradtx.get_hyperparams: found no hyperparameters: {NONE_FOUND}")
    short = short_names([e[0] for e in entries])
    locs = dict(locations(state))
    out = {}
    for full, path, name, field in entries:
        if field == "<python>":
            out[short[full]] = locs[path].python_schedules[shown_key(name)]
            continue
        if field == "<reported>":
            out[short[full]] = getattr(locs[path], name)
            continue
        value = locs[path].hyperparams[name]
        if field == "<injected schedule>":
            out[short[full]] = value
            continue
        if field is not None:
            out[short[full]] = get_field(value, field)
        elif is_schedule(value):
            out[short[full]] = value(locs[path].count)
        else:
            out[short[full]] = value
    # copies: the state's own arrays are deleted by the next step that donates the state
    # (a logged learning rate raised "Array has been deleted" one step later)
    return {k: jax.tree.map(_tree.own_copy, _tree.bare(v)) for k, v in out.items()}


def replace_at(state: Any, path: tuple[str, ...], fn) -> Any:
    """Rebuild ``state`` with ``fn`` applied to the HyperparamsState at ``path``."""
    if not path:
        return fn(state)
    head, rest = path[0], path[1:]
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        named: Any = state
        return named._replace(**{head: replace_at(getattr(state, head), rest, fn)})
    if isinstance(state, (tuple, list)):
        items = list(state)
        items[int(head)] = replace_at(items[int(head)], rest, fn)
        return type(state)(items)
    key = next(k for k in state if str(k) == head)
    return _tree.with_entries(state, {key: replace_at(state[key], rest, fn)})


def _check_whole(key: str, new: Any, dtype: Any) -> None:
    """An integer slot (a count, a step) takes whole numbers its dtype holds: the cast
    would truncate 2.5 to 2 and wrap 2**40 to 0."""
    if isinstance(new, (bool, np.bool_)):
        return
    info = jnp.iinfo(dtype)
    try:
        number = np.asarray(new, np.float64)
    except OverflowError:  # a Python int beyond float's range: whole, but out of range
        number = None
    if number is not None and not np.all(np.isfinite(number) & (number == np.round(number))):
        shown = _checks.shown(new)
        raise TypeError(f"gradtx.set_hyperparams({key}={shown}): {key} must be an int")
    if number is None or not np.all((number >= info.min) & (number <= info.max)):
        raise ValueError(
            f"gradtx.set_hyperparams({key}={_checks.shown(new)}): {key} is stored in "
            f"{jnp.dtype(dtype)}, which holds [{info.min}, {info.max}]"
        )


def _is_complex(value: Any) -> bool:
    """A complex number or an array of them (data too: its dtype is known)."""
    if isinstance(value, (complex, np.complexfloating)):
        return True
    dtype = getattr(value, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jnp.complexfloating)


def _cast_to(old: jax.Array, new: Any, key: str, schedule_field: bool = False) -> jax.Array:
    """``new`` in ``old``'s dtype and shape; a bool or complex value only where the
    construction takes one (a bool slot; ``schedule_field``: a schedule's 0/1 option
    field, or a whole schedule, whose constructor checked its fields)."""
    if _tree.bare(old) is not old and not is_schedule(old):
        # a wrapped leaf (an nnx.Optimizer's OptArray): replace the array, keep the
        # wrapper, so the state's structure and a jitted step's trace stay the same
        return jax.tree.map(lambda leaf: _cast_to(leaf, new, key, schedule_field), old)
    old_dtype = jnp.result_type(old)
    number = _checks.known_value(new)  # a known 0-d JAX array is checked as its number
    if _is_complex(new) and not jnp.issubdtype(old_dtype, jnp.complexfloating):
        kind = type(new).__name__ if np.isscalar(new) else f"an array of {new.dtype}"
        raise TypeError(f"gradtx.set_hyperparams({key}=...): expected a real number, got {kind}")
    if _checks.is_concrete_number(number) and jnp.issubdtype(old_dtype, jnp.floating):
        # an int given is taken as a count of steps: it must not be rounded
        integer = isinstance(number, (int, np.integer)) and not isinstance(number, bool)
        _stored.check_stored("gradtx.set_hyperparams", key, new, old_dtype, integer=integer)
    if _checks.is_concrete_number(number) and jnp.issubdtype(old_dtype, jnp.integer):
        _check_whole(key, new, old_dtype)
    try:
        if (
            isinstance(new, numbers.Real)
            and not isinstance(new, (bool, float, np.generic))
            and jnp.issubdtype(old_dtype, jnp.inexact)
        ):
            # a Python int beyond int32 or a Fraction is still a number for a float
            # slot, as the factories take it
            new = float(new)
        if isinstance(new, fractions.Fraction) and jnp.issubdtype(old_dtype, jnp.integer):
            new = new.numerator if new.denominator == 1 else float(new)  # as 5.0, 5.5
        if jnp.issubdtype(old_dtype, jnp.inexact):
            new = _dtypes.ints_as_floats(new)  # JAX would wrap a NumPy int64 beyond int32
        arr = jnp.asarray(new)
    except (TypeError, ValueError, OverflowError):  # strings, None, ints beyond floats
        arr = None
    allowed = jnp.complexfloating if jnp.issubdtype(old_dtype, jnp.complexfloating) else None
    ok = arr is not None and (
        (schedule_field or (arr.dtype == jnp.bool_) == (old_dtype == jnp.bool_))
        and (jnp.issubdtype(arr.dtype, jnp.number) or arr.dtype == jnp.bool_)
        and (allowed is not None or not jnp.issubdtype(arr.dtype, jnp.complexfloating))
    )
    if arr is None or not ok:
        kind = type(new).__name__ if arr is None else str(arr.dtype)
        want = "a bool" if old_dtype == jnp.bool_ else "a number"
        raise TypeError(f"gradtx.set_hyperparams({key}=...): expected {want}, got {kind}")
    if arr.shape != jnp.shape(old):
        # exactly: a number broadcast over a pair would set b2 to b1, say
        raise ValueError(
            f"gradtx.set_hyperparams({key}=...): value of shape {arr.shape} does not fit "
            f"the stored shape {jnp.shape(old)}, and nothing is broadcast: give it in the form "
            "get_hyperparams shows (a pair for a pair; a pair's None entries are not "
            "stored); for a state batched "
            "by jax.vmap or replicated by jax.pmap, set it under vmap: "
            "jax.vmap(lambda s: gradtx.set_hyperparams(s, ...))(states), with one value "
            "or one per member"
        )
    out = arr.astype(old.dtype)
    # Keep the stored value's placement (replicated over a mesh, say), and an unplaced
    # (uncommitted) one unplaced: either way a changed placement is another jit input,
    # and the step would compile again (no retrace).
    placed = isinstance(old, jax.Array) and not isinstance(old, jax.core.Tracer) and old.committed
    if isinstance(out, jax.Array) and not isinstance(out, jax.core.Tracer):
        # A copy: the caller's array (or one value given for two names) would otherwise
        # be the state's buffer too, and donating the state would delete it or donate it
        # twice.  A placed one is copied through the host, which unplaces it.
        out = jnp.copy(out) if placed or not out.committed else jnp.asarray(np.asarray(out))
    if placed:
        out = jax.device_put(out, old.sharding)
    return out


def set_hyperparams(
    state: OptState, values: Mapping[str, Any] | None = None, /, **kwargs: Any
) -> OptState:
    """Return ``state`` with some hyperparameters replaced.

    Values keep the stored dtype and shape, so a jitted step taking the state
    does not recompile.  Keys are names as ``get_hyperparams`` reports them, or
    any unique suffix; pass keys that are not identifiers in ``values``.  A
    Python or NumPy number must be in the range the factory that made the state
    allows, once stored (``b1=1.0`` is refused for Adam, a NaN anywhere), and a
    schedule's fields must be ones its constructor takes (step counts may be
    fractions); a JAX array is checked so too where its value is known and the
    maker is, and a traced one is data, taken as it is (docs/errors.md).

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.adam(1e-3)
      >>> state = gradtx.set_hyperparams(opt.init({"w": jnp.zeros(3)}), learning_rate=1e-4)
      >>> round(float(gradtx.get_hyperparams(state)["learning_rate"]), 6)
      0.0001
    """
    if values is not None and not isinstance(values, Mapping):
        raise TypeError(
            "gradtx.set_hyperparams(state, values): values must be a dict of name -> value "
            f"(or pass keywords: learning_rate=...), got {type(values).__name__}"
        )
    call = "gradtx.set_hyperparams"
    twice = sorted(set(values or {}) & set(kwargs))
    if twice:
        raise TypeError(f"{call}: {twice[0]!r} is given both in values and as a keyword")
    changes = {**(dict(values) if values is not None else {}), **kwargs}
    for key in changes:
        if not isinstance(key, str):  # keys are matched as names and suffixes of names
            raise TypeError(
                f"{call}(values={{{key!r}: ...}}): a key must be a str naming a "
                f"hyperparameter, got {type(key).__name__}"
            )
    entries = named_entries(state, call)
    if changes and unreadable(state):
        raise KeyError(f"{call}: unknown hyperparameter {next(iter(changes))!r}: {NONE_FOUND}")
    named: dict[str, list[tuple[Any, str]]] = {}  # two keys for one number would race
    # A schedule is checked once all of its keys are in (warmup_steps and decay_steps
    # moved together): see _PendingSchedule.
    schedules: dict[str, _PendingSchedule] = {}
    for key, value in changes.items():
        _, path, name, field = find_entry(entries, key, call, state)
        slot = named.setdefault(repr((path, name)), [])
        for other_field, other in slot:  # the same field, or a whole schedule and its field
            if None in (field, other_field) or field == other_field:
                raise ValueError(
                    f"{call}: {other!r} and {key!r} name the same hyperparameter; give one"
                )
        slot.append((field, key))
        if field == "<python>":
            raise ValueError(
                f"gradtx.set_hyperparams({key}=...): {name} follows a plain Python callable, "
                "which is code, not data; use a gradtx.schedules schedule to change it in state"
            )
        if field == "<injected schedule>":
            raise ValueError(
                f"gradtx.set_hyperparams({key}=...): optax.inject_hyperparams recomputes {name} "
                "from its schedule at every update, so a value set here would be overwritten; "
                "pass a gradtx schedule to the optimizer itself (its fields are settable), or "
                "inject a number"
            )
        if field == "<reported>":
            raise ValueError(
                f"gradtx.set_hyperparams({key}=...): {name} is computed by the transform "
                "(reported for reading), not a hyperparameter"
            )

        def replace(loc, name=name, field=field, value=value, key=key):
            old = loc.hyperparams[name]
            location = loc if isinstance(loc, HYPERPARAMS_STATES) else None  # not optax's
            if field is not None:
                parent, _, last = field.rpartition(".")
                owner = get_field(old, parent) if parent else old
                if last in getattr(owner, "_rates", ()):
                    check_rate(call, key, concrete(value))  # raised to the step count
                if last in getattr(owner, "_steps", ()):  # boundaries, compared with the count
                    stored = jnp.result_type(_tree.bare(get_field(old, field)))
                    check_stored_steps(call, key, value, stored)
                flag = last in getattr(owner, "_flags", ())

                def cast(o, value=value, key=key, flag=flag):
                    _set_checks.check_field(key, value)
                    return _cast_to(o, value, key, flag)

                new = set_field(old, field, cast)
                pending = schedules.setdefault(
                    repr((path, name)), _PendingSchedule(path, name, old)
                )
                data = _set_checks.is_data(value)
                pending.note(key, None if data else set_field(pending.numbers, field, cast))
            elif is_schedule(old):
                if not is_schedule(value) or type(value) is not type(old):
                    kind = type(old).__name__
                    # the fields under the key as given: a group's prefix addresses them
                    fields = ", ".join(f"{key}.{f}" for f in schedule_fields(old))
                    raise ValueError(
                        f"gradtx.set_hyperparams({key}=...): {name} follows the schedule "
                        f"{kind}; set its fields ({fields}) or pass another {kind} of the "
                        "same form"
                    )
                try:  # the same members (a Join's), so that a jitted step keeps its program
                    jax.tree.structure(value).flatten_up_to(old)
                except (ValueError, TypeError) as err:
                    raise ValueError(
                        f"gradtx.set_hyperparams({key}=...): {name} follows a schedule "
                        f"({type(old).__name__}) of another form (members or fields); "
                        f"pass one of the same form, or build a new optimizer for this one"
                    ) from err
                # the new schedule's leaves lead: where an nnx.Optimizer wraps the stored
                # fields (OptArray), each wrapper is one subtree under a leaf of the value
                _set_checks.check_field(key, value)
                stored = jnp.result_type(jax.tree.leaves(old)[0])  # every field's dtype
                for at, leaf in jax.tree_util.tree_leaves_with_path(value):
                    if step_field(value, at):  # boundaries, compared with the count
                        where = f"{key}{jax.tree_util.keystr(at)}"
                        check_stored_steps(call, where, leaf, stored)
                new = jax.tree.map(lambda v, o: _cast_to(o, v, key, True), value, old)
                pending = schedules.setdefault(
                    repr((path, name)), _PendingSchedule(path, name, old)
                )
                pending.note(key, None if _set_checks.is_data(value) else new)
            else:
                value = _set_checks.in_stored_form(key, name, value, old, location)
                new = _cast_to(old, value, key)
                _set_checks.check_number(key, name, value, old, location)
            return loc._replace(hyperparams={**loc.hyperparams, name: new})

        state = replace_at(state, path, replace)
        entries = named_entries(state, call)
    for pending in schedules.values():
        replace_at(state, pending.path, pending.check)
    return state


@dataclasses.dataclass
class _PendingSchedule:
    """A schedule ``set_hyperparams`` changes, checked once all its keys are in: its
    location, its form before the call, the keys given, and that form with only the
    numbers set (a traced JAX array is data, which its constructor does not judge)."""

    path: tuple[str, ...]
    name: str
    first: Any
    keys: list[str] = dataclasses.field(default_factory=list)
    numbers: Any = None

    def __post_init__(self) -> None:
        self.numbers = self.first

    def note(self, key: str, numbers: Any) -> None:
        """``key`` given; ``numbers``: the schedule with its number set (None for data)."""
        self.keys.append(key)
        if numbers is not None:
            self.numbers = numbers

    def check(self, loc: Any) -> Any:
        shown = "=..., ".join(self.keys)  # the message's ``set_hyperparams(<shown>=...)``
        location = loc if isinstance(loc, HYPERPARAMS_STATES) else None  # not optax's
        _set_checks.check_schedule(shown, self.name, loc.hyperparams[self.name], location)
        _set_checks.check_remade(shown, self.numbers, self.first)
        return loc


def keep_hyperparams(fresh: OptState, old: OptState) -> OptState:
    """``fresh`` (a new ``init`` of the transform that made ``old``) with the values of
    ``old``'s hyperparameters: a state reset keeps what ``set_hyperparams`` set, as a
    constant of optax's own closures survives its re-initialisation.  Step counts and
    the transforms' statistics stay fresh."""

    def take(new: Any, was: Any) -> Any:
        if not isinstance(new, LOCATIONS):
            return new
        inner = keep_hyperparams(new.inner_state, was.inner_state)
        return new._replace(hyperparams=dict(was.hyperparams), inner_state=inner)

    located = lambda x: isinstance(x, LOCATIONS)  # noqa: E731
    return jax.tree.map(take, fresh, old, is_leaf=located)

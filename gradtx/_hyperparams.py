"""Reading and changing the hyperparameters that live in optimizer state.

Every ``HyperparamsState`` in a state tree is a *location*.  Its hyperparameters
are named ``path/name`` where ``path`` joins the dict keys (``named_chain``
names, ``partition`` labels), tuple indices and NamedTuple fields above it,
except fields named ``inner_state``: that is where wrappers (``masked``,
``apply_if_finite``, ...) keep the state they wrap, and wrapping an optimizer
must not rename its hyperparameters.  (Should two locations then get the same
name, those keep their ``inner_state`` segments below the wrappers around both.)  A gradtx schedule's fields
are ``path/name.field``.  A full name always addresses its own entry; any
other unique suffix of a full name addresses it too (``learning_rate``,
``adam/learning_rate``, ``learning_rate.peak_value``); a key that matches
none or several is an error listing the candidates.  Two locations whose names
print alike (a '/' inside a ``named_chain`` name or ``partition`` label:
``"a/b"`` and ``"a"`` > ``"b"``) are an error naming both, not one value lost.

optax's ``inject_hyperparams`` states are locations too (their injected
numbers), and a state field a transform reports (``reduce_on_plateau``'s
``scale``, listed in ``gradtx._base.REPORTED``) is a read-only entry.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Iterator
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradtx import _checks
from gradtx import _dtypes
from gradtx import _set_checks
from gradtx import _tree
from gradtx._base import REPORTED
from gradtx._base import OptState
from gradtx._base import is_schedule
from gradtx._factory import HYPERPARAMS_STATES
from gradtx._factory import MAKERS
from gradtx._factory import TAKES
from gradtx._factory import UNUSED
from gradtx._factory import shown_key
from gradtx._factory import shown_name
from gradtx.schedules._common import check_rate
from gradtx.schedules._common import check_stored_steps
from gradtx.schedules._common import concrete
from gradtx.schedules._common import step_field

_LOCATIONS = HYPERPARAMS_STATES + (
    optax.InjectStatefulHyperparamsState,
    optax.InjectHyperparamsState,
)


def _locations(state: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(state, _LOCATIONS):
        yield path, state
        yield from _locations(state.inner_state, path + ("inner_state",))
    elif isinstance(state, tuple) and hasattr(state, "_fields"):
        if type(state) in REPORTED:
            yield path, state
        for field, child in zip(state._fields, state):
            yield from _locations(child, path + (field,))
    elif isinstance(state, (tuple, list)):
        for i, child in enumerate(state):
            yield from _locations(child, path + (str(i),))
    elif isinstance(state, Mapping):
        for key, child in state.items():
            yield from _locations(child, path + (str(key),))


def _schedule_fields(value: Any, prefix: str = "") -> Iterator[str]:
    """Dotted names of a schedule's numeric leaves, through nested schedules and
    tuples of them (``schedules.1.peak_value``); an array field is one leaf.
    Schedules are dataclasses (``gradtx.schedules``) or NamedTuples."""

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            child = getattr(value, f.name)
            yield from _schedule_fields(child, f"{prefix}.{f.name}" if prefix else f.name)
    elif isinstance(value, tuple):
        keys = value._fields if hasattr(value, "_fields") else [str(i) for i in range(len(value))]
        for key, child in zip(keys, value):
            yield from _schedule_fields(child, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix


def _get_field(value: Any, field: str) -> Any:

    for key in field.split("."):
        named = dataclasses.is_dataclass(value) or hasattr(value, "_fields")
        value = getattr(value, key) if named else value[int(key)]
    return value


def _set_field(value: Any, field: str, fn) -> Any:

    key, _, rest = field.partition(".")
    if dataclasses.is_dataclass(value):
        child = getattr(value, key)
        return dataclasses.replace(
            value,  # type: ignore[type-var]
            **{key: _set_field(child, rest, fn) if rest else fn(child)},
        )
    if hasattr(value, "_fields"):
        child = getattr(value, key)
        return value._replace(**{key: _set_field(child, rest, fn) if rest else fn(child)})
    items = list(value)
    items[int(key)] = _set_field(items[int(key)], rest, fn) if rest else fn(items[int(key)])
    return type(value)(items)


def _entries(state: Any, call: str) -> list[tuple[str, tuple[str, ...], str, str | None]]:
    """(full name, location path, hyperparameter, dotted schedule field or None).

    Raises ``ValueError`` (naming ``call``) where two locations print the same full
    name: a '/' inside a key (``named_chain(("a/b", ...), ("a", named_chain(("b",
    ...))))``) reads as a path separator, and one of the two values would be lost.
    """

    def collect(shown):
        out = []
        for path, loc in _locations(state):
            prefix = shown(path)
            if not isinstance(loc, _LOCATIONS):  # a state that reports some of its fields
                for name in REPORTED[type(loc)]:
                    out.append(("/".join(prefix + (name,)), path, name, "<reported>"))
                continue
            for key in getattr(loc, "python_schedules", {}):
                name = shown_name(key)
                out.append(("/".join(prefix + (name,)), path, name, "<python>"))
            # optax.inject_hyperparams recomputes a scheduled value from its own count at
            # every update: setting it would be shown by get_hyperparams, then overwritten
            recomputed = getattr(loc, "hyperparams_states", {})
            for name, value in loc.hyperparams.items():
                field = "<injected schedule>" if name in recomputed else None
                out.append(("/".join(prefix + (name,)), path, name, field))
                if is_schedule(value):
                    for field in _schedule_fields(value):
                        out.append(("/".join(prefix + (f"{name}.{field}",)), path, name, field))
        return out

    raw = collect(lambda path: path)
    if not raw:
        _refuse_non_state(state, call)
    short = collect(_without_wrappers)
    clashes: dict[str, list[tuple[str, ...]]] = {}
    for s, r in zip(short, raw):
        clashes.setdefault(s[0], []).append(r[1])
    entries = []
    for s, r in zip(short, raw):
        paths = clashes[s[0]]
        if len(paths) == 1:
            entries.append(s)
            continue
        # The clashing names keep their inner_state segments, but not those of the
        # wrappers around all of them: apply_if_finite(mechanize(adam)) names Adam's eps
        # inner_state/eps, as mechanize(adam) does, not inner_state/inner_state/eps.
        common = len(_common_prefix(paths))
        path = r[1]
        kept = tuple(p for i, p in enumerate(path) if i >= common or p != "inner_state")
        tail = r[0][len("/".join(path)) + 1 :] if path else r[0]
        entries.append(("/".join(kept + (tail,)), *r[1:]))
    located: dict[str, tuple[str, ...]] = {}
    for full, path, _, _ in entries:
        other = located.setdefault(full, path)
        if other != path:
            raise ValueError(
                f"{call}: the hyperparameters at state paths {_shown_path(other)} and "
                f"{_shown_path(path)} are both named {full!r} (a '/' inside a named_chain "
                "name, partition label or dict key reads as a path separator); rename one"
            )
    return entries


def _refuse_non_state(state: Any, call: str) -> None:
    """A tree with a function or a string among its leaves is no optimizer state (no
    state holds either); the likely mistake is passing the optimizer itself, whose
    ``init`` and ``update`` are leaves of its NamedTuple."""
    for leaf in jax.tree.leaves(state):
        if callable(leaf) or isinstance(leaf, (str, bytes)):
            raise TypeError(
                f"{call}: expected an optimizer state, got a tree holding "
                f"a {type(leaf).__name__}; pass the state, opt.init(params) or "
                "the one update returned, not the optimizer"
            )


def _common_prefix(paths: list[tuple[str, ...]]) -> tuple[str, ...]:
    first = paths[0]
    n = 0
    while n < len(first) and all(len(p) > n and p[n] == first[n] for p in paths):
        n += 1
    return first[:n]


def _without_wrappers(path: tuple[str, ...]) -> tuple[str, ...]:
    """A state path as names show it: a wrapper's ``inner_state`` step left out."""
    return tuple(p for p in path if p != "inner_state")


def _shown_path(path: tuple[str, ...]) -> str:
    return "".join(f"[{key!r}]" for key in path) or "[]"


NONE_FOUND = (
    "this tree holds an optimizer state where it is not read. An nnx.Optimizer keeps it "
    "as optimizer.opt_state and a flax TrainState as state.opt_state: pass that "
    "(nnx.split and nnx.state turn it into plain State dicts, which this does not read; "
    "so does a checkpoint restored without a target: restore into "
    "jax.eval_shape(optimizer.init, params))"
)


def _unreadable(state: Any) -> bool:
    """``state`` holds a location that ``_locations`` cannot reach: inside a node it does
    not walk (a dataclass such as a TrainState), or turned into a dict (nnx.split)."""
    if next(_locations(state), None) is not None:
        return False
    hidden = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, _LOCATIONS))
    if any(isinstance(x, _LOCATIONS) for x in hidden):
        return True

    def as_dict(node: Any) -> bool:
        if isinstance(node, Mapping):
            if {"hyperparams", "inner_state"} <= {str(k) for k in node}:
                return True
            return any(as_dict(v) for v in node.values())
        if isinstance(node, (tuple, list)):
            return any(as_dict(v) for v in node)
        return False

    return as_dict(state)


def _find(
    entries: list, key: str, call: str, state: Any = None
) -> tuple[str, tuple[str, ...], str, str | None]:
    """The one entry ``key`` addresses: its full name, else its only '/'-suffix match."""
    hits = [e for e in entries if e[0] == key] or [e for e in entries if _matches(e[0], key)]
    if not hits:
        known = sorted(_short_names([e[0] for e in entries]).values())
        raise KeyError(
            f"{call}: unknown hyperparameter {key!r}; known: {known}{_why(key, entries, state)}"
        )
    if len(hits) > 1:
        raise KeyError(f"{call}: {key!r} is ambiguous; use one of {[h[0] for h in hits]}")
    return hits[0]


def _why(key: str, entries: list, state: Any) -> str:
    """Why ``key`` may be missing: a name kept at other paths only, or a number that the
    factory that made the addressed state takes but did not keep, for the reasons its
    declaration allows (a JAX array is bound; a zero or ``None`` leaves a stage out; a
    number read by ``init`` only is not kept)."""
    last = key.rsplit("/", 1)[-1]
    name = last.split(".", 1)[0]
    prefix = key[: len(key) - len(last)].rstrip("/")
    elsewhere = [e[0] for e in entries if e[0].rsplit("/", 1)[-1].split(".", 1)[0] == name]
    why = f". {name} is kept at {elsewhere} only" if elsewhere else ""
    here = [
        loc
        for path, loc in _locations(state)
        if isinstance(loc, HYPERPARAMS_STATES)
        and (
            not prefix
            or any(_matches("/".join(p), prefix) for p in (_without_wrappers(path), path))
        )
    ]
    if not here or any(name in loc.hyperparams or name in _shown_schedules(loc) for loc in here):
        return why  # not gradtx's state, or kept there: the field, not the number, is unknown
    makers = {call for loc in here for call in MAKERS.get(jax.tree.structure(loc), {})}
    if makers:
        takes = [(c, *TAKES[c]) for c in sorted(makers) if name in TAKES.get(c, ({},))[0]]
        calls = " or ".join(f"{c}()" for c, _, _ in takes)
        verb = "takes" if len(takes) == 1 else "take"
        where = repr(prefix) if prefix else "this state"
        lead = f"{calls} {verb} {name} but {where} does not keep it"
    else:  # a state this process did not make: any factory's declaration
        takes = [(c, specs, bound) for c, (specs, bound) in TAKES.items() if name in specs]
        lead = f"a state may lack a number its optimizer takes, as {name}"
    if not takes:
        return why
    specs = [s[name] for _, s, _ in takes]
    reasons = sorted({UNUSED[c][name] for c, _, _ in takes if name in UNUSED.get(c, {})})
    if not all(s.init_only for s in specs):
        reasons.append(
            "a JAX array given for it at construction is bound, not stored (a Python "
            "number is kept and settable)"
        )
    if any(s.optional for s in specs):
        value = key[: len(key) - len(last)] + name + ".value"
        reasons.append(
            "None or a Python zero given at construction leaves its stage out; to set it "
            "later, construct it with a nonzero number"
            + (
                f", or with gradtx.schedules.constant(0.0) and set {value!r}"
                if any(s.schedule for s in specs)
                else ""
            )
        )
    elif any(s.nullable for s in specs):
        reasons.append(
            "None given at construction leaves its stage out; to set it later, construct "
            "it with a number"
        )
    if any(s.init_only for s in specs) or any(name in bound for _, _, bound in takes):
        reasons.append(
            "a number read by init only is not kept (a later value would change nothing): "
            f"build and init an optimizer with the new {name}"
        )
    return f"{why}. {lead}: " + "; ".join(reasons)


def _shown_schedules(loc: Any) -> set[str]:
    return {shown_name(k) for k in getattr(loc, "python_schedules", {})}


def _short_names(full_names: list[str]) -> dict[str, str]:
    """The shortest '/'-suffix of each full name that no other full name shares."""
    short = {}
    for full in full_names:
        parts = full.split("/")
        for k in range(1, len(parts) + 1):
            cand = "/".join(parts[-k:])
            if sum(1 for f in full_names if _matches(f, cand)) == 1:
                short[full] = cand
                break
        else:
            short[full] = full
    return short


def _matches(full: str, key: str) -> bool:
    return full == key or full.endswith("/" + key)


def get_hyperparams(state: OptState) -> dict[str, jax.Array]:
    """The hyperparameters in ``state``, as the next update will apply them.

    A scheduled hyperparameter is reported at the current step, next to its
    schedule's fields (``learning_rate.peak_value``).  Names are the shortest
    unambiguous suffixes (see the module docstring).  The values are copies, which
    a later step that donates the state leaves alone.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> state = gradtx.adam(1e-3).init({"w": jnp.zeros(3)})
      >>> round(float(gradtx.get_hyperparams(state)["learning_rate"]), 6)
      0.001
    """
    entries = _entries(state, "gradtx.get_hyperparams")
    if _unreadable(state):  # {} would hide a state passed from the wrong place
        raise ValueError(f"gradtx.get_hyperparams: found no hyperparameters: {NONE_FOUND}")
    short = _short_names([e[0] for e in entries])
    locs = dict(_locations(state))
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
            out[short[full]] = _get_field(value, field)
        elif is_schedule(value):
            out[short[full]] = value(locs[path].count)
        else:
            out[short[full]] = value
    # copies: the state's own arrays are deleted by the next step that donates the state
    # (a logged learning rate raised "Array has been deleted" one step later)
    return {k: jax.tree.map(_tree.own_copy, _tree.bare(v)) for k, v in out.items()}


def _replace_at(state: Any, path: tuple[str, ...], fn) -> Any:
    """Rebuild ``state`` with ``fn`` applied to the HyperparamsState at ``path``."""
    if not path:
        return fn(state)
    head, rest = path[0], path[1:]
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        named: Any = state
        return named._replace(**{head: _replace_at(getattr(state, head), rest, fn)})
    if isinstance(state, (tuple, list)):
        items = list(state)
        items[int(head)] = _replace_at(items[int(head)], rest, fn)
        return type(state)(items)
    key = next(k for k in state if str(k) == head)
    return _tree.with_entries(state, {key: _replace_at(state[key], rest, fn)})


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
        raise TypeError(f"gradtx.set_hyperparams({key}={new!r}): {key} must be an int")
    if number is None or not np.all((number >= info.min) & (number <= info.max)):
        raise ValueError(
            f"gradtx.set_hyperparams({key}={new!r}): {key} is stored in {jnp.dtype(dtype)}, "
            f"which holds [{info.min}, {info.max}]"
        )


def _cast_to(old: jax.Array, new: Any, key: str, schedule_field: bool = False) -> jax.Array:
    """``new`` in ``old``'s dtype and shape; a bool or complex value only where the
    construction takes one (a bool slot; ``schedule_field``: a schedule's 0/1 option
    field, or a whole schedule, whose constructor checked its fields)."""
    if _tree.bare(old) is not old and not is_schedule(old):
        # a wrapped leaf (an nnx.Optimizer's OptArray): replace the array, keep the
        # wrapper, so the state's structure and a jitted step's trace stay the same
        return jax.tree.map(lambda leaf: _cast_to(leaf, new, key, schedule_field), old)
    old_dtype = jnp.result_type(old)
    if _checks.is_concrete_number(new) and jnp.issubdtype(old_dtype, jnp.floating):
        # an int given is taken as a count of steps: it must not be rounded
        integer = isinstance(new, (int, np.integer)) and not isinstance(new, bool)
        _checks.check_stored("gradtx.set_hyperparams", key, new, old_dtype, integer=integer)
    if _checks.is_concrete_number(new) and jnp.issubdtype(old_dtype, jnp.integer):
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
            "the optimizer was built with (a pair for a pair); for a state batched "
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
    fractions); a JAX array is data, possibly traced, and is taken as it is
    (docs/errors.md).

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
    entries = _entries(state, call)
    if changes and _unreadable(state):
        raise KeyError(f"{call}: unknown hyperparameter {next(iter(changes))!r}: {NONE_FOUND}")
    named: dict[str, list[tuple[Any, str]]] = {}  # two keys for one number would race
    # A schedule is checked once all of its keys are in (warmup_steps and decay_steps
    # moved together): see _PendingSchedule.
    schedules: dict[str, _PendingSchedule] = {}
    for key, value in changes.items():
        _, path, name, field = _find(entries, key, call, state)
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
                owner = _get_field(old, parent) if parent else old
                if last in getattr(owner, "_rates", ()):
                    check_rate(call, key, concrete(value))  # raised to the step count
                if last in getattr(owner, "_steps", ()):  # boundaries, compared with the count
                    stored = jnp.result_type(_tree.bare(_get_field(old, field)))
                    check_stored_steps(call, key, value, stored)
                flag = last in getattr(owner, "_flags", ())

                def cast(o, value=value, key=key, flag=flag):
                    _set_checks.check_field(key, value)
                    return _cast_to(o, value, key, flag)

                new = _set_field(old, field, cast)
                pending = schedules.setdefault(
                    repr((path, name)), _PendingSchedule(path, name, old)
                )
                data = _set_checks.is_data(value)
                pending.note(key, None if data else _set_field(pending.numbers, field, cast))
            elif is_schedule(old):
                if not is_schedule(value) or type(value) is not type(old):
                    kind = type(old).__name__
                    # the fields under the key as given: a group's prefix addresses them
                    fields = ", ".join(f"{key}.{f}" for f in _schedule_fields(old))
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

        state = _replace_at(state, path, replace)
        entries = _entries(state, call)
    for pending in schedules.values():
        _replace_at(state, pending.path, pending.check)
    return state


@dataclasses.dataclass
class _PendingSchedule:
    """A schedule ``set_hyperparams`` changes, checked once all its keys are in: its
    location, its form before the call, the keys given, and that form with only the
    numbers set (a JAX array is data, which its constructor does not judge)."""

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
        if not isinstance(new, _LOCATIONS):
            return new
        inner = keep_hyperparams(new.inner_state, was.inner_state)
        return new._replace(hyperparams=dict(was.hyperparams), inner_state=inner)

    located = lambda x: isinstance(x, _LOCATIONS)  # noqa: E731
    return jax.tree.map(take, fresh, old, is_leaf=located)

"""How the hyperparameters in optimizer state are named and found.

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
from collections.abc import Iterator
from collections.abc import Mapping
from typing import Any

import jax
import optax

from gradtx._base import REPORTED
from gradtx._base import is_schedule
from gradtx._factory import OPTIONS
from gradtx._factory import TAKES
from gradtx._factory import UNUSED
from gradtx._factory_state import HYPERPARAMS_STATES
from gradtx._factory_state import shown_name
from gradtx._hyperparameterized import makers_of

LOCATIONS = HYPERPARAMS_STATES + (
    optax.InjectStatefulHyperparamsState,
    optax.InjectHyperparamsState,
)


def locations(state: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(state, LOCATIONS):
        yield path, state
        yield from locations(state.inner_state, path + ("inner_state",))
    elif isinstance(state, tuple) and hasattr(state, "_fields"):
        if type(state) in REPORTED:
            yield path, state
        for field, child in zip(state._fields, state):
            yield from locations(child, path + (field,))
    elif isinstance(state, (tuple, list)):
        for i, child in enumerate(state):
            yield from locations(child, path + (str(i),))
    elif isinstance(state, Mapping):
        for key, child in state.items():
            yield from locations(child, path + (str(key),))


def schedule_fields(value: Any, prefix: str = "") -> Iterator[str]:
    """Dotted names of a schedule's numeric leaves, through nested schedules and
    tuples of them (``schedules.1.peak_value``); an array field is one leaf.
    Schedules are dataclasses (``gradtx.schedules``) or NamedTuples."""

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            child = getattr(value, f.name)
            yield from schedule_fields(child, f"{prefix}.{f.name}" if prefix else f.name)
    elif isinstance(value, tuple):
        keys = value._fields if hasattr(value, "_fields") else [str(i) for i in range(len(value))]
        for key, child in zip(keys, value):
            yield from schedule_fields(child, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix


def get_field(value: Any, field: str) -> Any:

    for key in field.split("."):
        named = dataclasses.is_dataclass(value) or hasattr(value, "_fields")
        value = getattr(value, key) if named else value[int(key)]
    return value


def set_field(value: Any, field: str, fn) -> Any:

    key, _, rest = field.partition(".")
    if dataclasses.is_dataclass(value):
        child = getattr(value, key)
        return dataclasses.replace(
            value,  # type: ignore[type-var]
            **{key: set_field(child, rest, fn) if rest else fn(child)},
        )
    if hasattr(value, "_fields"):
        child = getattr(value, key)
        return value._replace(**{key: set_field(child, rest, fn) if rest else fn(child)})
    items = list(value)
    items[int(key)] = set_field(items[int(key)], rest, fn) if rest else fn(items[int(key)])
    return type(value)(items)


def named_entries(state: Any, call: str) -> list[tuple[str, tuple[str, ...], str, str | None]]:
    """(full name, location path, hyperparameter, dotted schedule field or None).

    Raises ``ValueError`` (naming ``call``) where two locations print the same full
    name: a '/' inside a key (``named_chain(("a/b", ...), ("a", named_chain(("b",
    ...))))``) reads as a path separator, and one of the two values would be lost.
    """

    def collect(shown):
        out = []
        for path, loc in locations(state):
            prefix = shown(path)
            if not isinstance(loc, LOCATIONS):  # a state that reports some of its fields
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
                    for field in schedule_fields(value):
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


def unreadable(state: Any) -> bool:
    """``state`` holds a location that ``locations`` cannot reach: inside a node it does
    not walk (a dataclass such as a TrainState), or turned into a dict (nnx.split)."""
    if next(locations(state), None) is not None:
        return False
    hidden = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, LOCATIONS))
    if any(isinstance(x, LOCATIONS) for x in hidden):
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


def find_entry(
    entries: list, key: str, call: str, state: Any = None
) -> tuple[str, tuple[str, ...], str, str | None]:
    """The one entry ``key`` addresses: its full name, else its only '/'-suffix match."""
    hits = [e for e in entries if e[0] == key] or [e for e in entries if _matches(e[0], key)]
    if not hits:
        known = sorted(short_names([e[0] for e in entries]).values())
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
    prefix_of = key[: len(key) - len(last)]
    prefix = prefix_of.rstrip("/")
    elsewhere = [e[0] for e in entries if e[0].rsplit("/", 1)[-1].split(".", 1)[0] == name]
    why = f". {name} is kept at {elsewhere} only" if elsewhere else ""
    here = [
        loc
        for path, loc in locations(state)
        if isinstance(loc, HYPERPARAMS_STATES)
        and (
            not prefix
            or any(_matches("/".join(p), prefix) for p in (_without_wrappers(path), path))
        )
    ]
    if not here or any(name in loc.hyperparams or name in _shown_schedules(loc) for loc in here):
        return why  # not gradtx's state, or kept there: the field, not the number, is unknown
    makers = {call for loc in here for call, _ in makers_of(loc) or ()}
    specs_here = {c: OPTIONS[c][name] for c in sorted(makers) if name in OPTIONS.get(c, {})}
    targets = {spec.target for spec in specs_here.values()}
    if len(targets) == 1 and None not in targets:
        target = str(next(iter(targets)))
        if not any(target in loc.hyperparams or target in _shown_schedules(loc) for loc in here):
            # not kept under torch's name either: that name's reasons are the reasons
            return f". {name} is optax's name for {target}" + _why(
                prefix_of + target, entries, state
            )
        kept = repr(target)
        # an alias's to_target maps its value onto the target's (Adafactor: a sign)
        same = lambda v: v  # noqa: E731
        units = any(getattr(spec, "to_target", same)(2.0) != 2.0 for spec in specs_here.values())
        return f"{why}. {name} is optax's name for a number this state keeps as {kept}: set " + (
            "that in its own units (the factory converts one to the other)" if units else "that"
        )
    options = [f"{c}()" for c, spec in specs_here.items() if spec.target is None]
    if options:
        verb = "takes" if len(options) == 1 else "take"
        return (
            f"{why}. {' or '.join(options)} {verb} {name} as a construction option, not "
            f"a number kept in the state: it decides the chain, so build and init an "
            f"optimizer with the new {name} (a state made with another {name} fits it only "
            "where its layout is the same)"
        )
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


def short_names(full_names: list[str]) -> dict[str, str]:
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

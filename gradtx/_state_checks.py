"""The state an update is given, against what ``init`` makes for these params: structure,
shapes and dtypes, with the kinds optax's wrappers and ``tree_set`` change taken back.

Every message names the public call and the leaf that differs."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _tree
from gradtx._base import is_schedule
from gradtx._factory_state import HYPERPARAMS_STATES


def aval(x: Any) -> str:
    """A leaf as its dtype and shape: ``float32[3, 4]``."""
    return f"{jnp.result_type(x).name}{list(jnp.shape(x))}"


def outline(tree: Any, limit: int = 400) -> str:
    """A short picture of a pytree: state types, dict keys, leaves as ``float32[3, 4]``."""

    def draw(node: Any) -> str:
        if isinstance(node, tuple) and hasattr(node, "_fields"):
            inner = ", ".join(f"{f}={draw(v)}" for f, v in zip(node._fields, node))
            return f"{type(node).__name__}({inner})"
        if isinstance(node, list):  # drawn apart from a tuple: a list for a tuple is a mismatch
            return "[" + ", ".join(draw(v) for v in node) + "]"
        if isinstance(node, tuple):
            parts = ", ".join(draw(v) for v in node)
            return f"({parts},)" if len(node) == 1 else f"({parts})"
        if isinstance(node, dict):
            return "{" + ", ".join(f"{k!r}: {draw(v)}" for k, v in node.items()) + "}"
        if dataclasses.is_dataclass(node) and not isinstance(node, type):  # a schedule
            fields = dataclasses.fields(node)
            inner = ", ".join(f"{f.name}={draw(getattr(node, f.name))}" for f in fields)
            return f"{type(node).__name__}({inner})"
        if node is None:
            return "None"
        if hasattr(node, "shape") or isinstance(node, (int, float)):
            return aval(node)
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
            return f"at {jax.tree_util.keystr(wp)}: expected {aval(w)}, got {aval(g)}"
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
        # under strict promotion a bool or complex number may not join the dtype at all
        try:
            joined = jnp.result_type(x, dtype)
        except jax.dtypes.TypePromotionError:
            return False
        return joined == dtype and not (
            isinstance(x, complex) and not jnp.issubdtype(dtype, jnp.complexfloating)
        )
    return jnp.result_type(x) == dtype


def _made_for(from_updates: bool) -> str:
    """What ``expected`` was made from: the params, or the updates where none were given
    (then updates of another tree than the params' fail here too)."""
    if not from_updates:
        return "these params"
    return (
        "params shaped like these updates (no params given: a state made for other params, "
        "or updates whose tree is not the params', fail alike; pass params to tell which)"
    )


def check_state(call: str, state: Any, expected: Any, *, from_updates: bool = False) -> Any:
    """``state`` has the structure and shapes ``init`` makes for these params; returns
    it with its leaves of another kind taken back (``restore_kinds``).

    ``expected`` is ``jax.eval_shape`` of this transform's ``init``: a state
    made by another optimizer, for other params, or batched by mistake fails
    here while tracing, naming both structures, instead of running with the
    stages it happens to have.
    """
    refuse_abstract(call, state)
    state = restore_kinds(f"{call}.update", state, expected)

    def fail(reason: str) -> None:
        raise ValueError(
            f"{call}.update: the state does not match what {call}.init makes for "
            f"{_made_for(from_updates)} ({reason}).{_x64_hint(state, expected)}\n"
            f"  expected: {outline(expected)}\n"
            f"  got: {outline(state)}"
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
    return state


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


def restore_kinds(call: str, got: Any, want: Any) -> Any:
    """``got`` with a leaf of another kind than ``init`` makes taken back as that kind.

    An integer where ``init`` keeps a bool flag (SGD's dampening pause, SWATS's
    switch, Mechanize's start, ``apply_if_finite``'s last step) is the flag
    (``!= 0``): optax's ``lookahead(reset_state=True)`` and ``contrib.sam`` (which
    resets by default) mix a state with a fresh one as ``(1 - sync) * state + sync *
    init``, which makes the flag an integer 0 or 1; optax's own states carry on so.
    In a buffer (not a factory's count or hyperparameters, whose numbers are taken
    as given), a Python number (``optax.tree_utils.tree_set`` writes one) becomes
    the weak array a jitted step would receive and is judged as one: eagerly the
    transforms read its ``dtype``.  Any other difference is left for the checks.
    """
    want = as_driven(got, want)
    if _tree.structure(got) != _tree.structure(want):
        return got
    return _restored(call, got, want, numbers=True)


def _owns_hyperparams(node: Any) -> bool:
    """A gradtx factory's state (not optax's inject state, whose update widens a
    Python count under x64 where gradtx's takes it as int32)."""
    return isinstance(node, HYPERPARAMS_STATES)


def _restored(call: str, got: Any, want: Any, numbers: bool, at: tuple = ()) -> Any:
    if _owns_hyperparams(got):  # a factory's count and hyperparameters, then its buffers
        return type(got)(
            *(
                _restored(
                    call, getattr(got, f), getattr(want, f), f == "inner_state",
                    (*at, jax.tree_util.GetAttrKey(f)),
                )
                for f in got._fields
            )
        )  # fmt: skip

    def back(path: tuple, g: Any, w: Any) -> Any:
        if _owns_hyperparams(g):
            return _restored(call, g, w, numbers, (*at, *path))
        if isinstance(g, (bool, int, float, complex)) and (numbers or w.dtype == jnp.bool_):
            try:
                g = jnp.asarray(g)  # a weak array, as a jitted step receives the number
            except OverflowError:
                where = jax.tree_util.keystr((*at, *path))
                raise ValueError(
                    f"{call}: the state holds the Python int {g} at {where}, outside JAX's "
                    "default int (int32 unless jax_enable_x64); set it as an array of its dtype"
                ) from None
        if isinstance(g, (jax.Array, np.ndarray, np.generic)):
            flag = w.dtype == jnp.bool_ and jnp.issubdtype(g.dtype, jnp.integer)
            return g != 0 if flag else g
        return g

    return jax.tree_util.tree_map_with_path(
        back, got, want, is_leaf=lambda x: x is not got and _owns_hyperparams(x)
    )


def refuse_abstract(call: str, state: Any) -> None:
    """A state of ``jax.ShapeDtypeStruct`` leaves (``jax.eval_shape`` of ``init``, a
    checkpoint's restore target) given to an eager update, where it has no values."""
    if any(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(state)):
        raise ValueError(
            f"{call}.update: the state holds jax.ShapeDtypeStruct leaves, shapes without "
            "values (jax.eval_shape of init, or a checkpoint's restore target): restore the "
            "checkpoint into it, or make the state with init"
        )


def check_bare_state(call: str, state: Any, expected: Any, *, from_updates: bool = False) -> Any:
    """``check_state`` for a transform that owns no hyperparameters (its state is its
    own, though it may hold another's: a driven schedule inside is allowed)."""
    refuse_abstract(call, state)
    state = restore_kinds(f"{call}.update", state, expected)
    expected = as_driven(state, expected)
    if not same_layout(state, expected):
        raise ValueError(
            f"{call}.update: the state does not match what {call}.init makes for "
            f"{_made_for(from_updates)} ({_first_difference(state, expected)})."
            f"{_x64_hint(state, expected)}\n"
            f"  expected: {outline(expected)}\n  got: {outline(state)}"
        )
    return state


# floats only: an int64 count has its own message (the count is int32 in both modes)
_WIDER = {"float32": "float64", "complex64": "complex128"}


def _x64_hint(state: Any, expected: Any) -> str:
    """Where the state differs from ``init``'s only in 32- against 64-bit float leaves:
    most often a state saved with ``jax_enable_x64`` off and restored with it on, as
    ``flax.serialization.from_bytes`` restores it, keeping the saved dtypes (the other
    way round, JAX casts the float64 leaves to float32 and nothing is refused); or
    params given in another precision than those the state was made for."""
    if _tree.structure(state) != _tree.structure(expected):
        return ""
    pairs = list(zip(jax.tree.leaves(state), jax.tree.leaves(expected)))
    names = [(jnp.result_type(g).name, jnp.result_type(w).name) for g, w in pairs]
    differ = [(a, b) for a, b in names if a != b]
    if not differ or any(jnp.shape(g) != jnp.shape(w) for g, w in pairs):
        return ""
    if not all(_WIDER.get(a) == b or _WIDER.get(b) == a for a, b in differ):
        return ""
    return (
        "  Only 32- against 64-bit leaves differ: was the state saved with jax_enable_x64 "
        "off and restored with it on, or made for params of the other precision?  For a "
        "checkpoint, cast it to init's dtypes: jax.tree.map(lambda t, x: jnp.asarray(x, "
        "t.dtype), tx.init(params), state) (orbax's restore with a target does that)."
    )

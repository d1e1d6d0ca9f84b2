"""Checks while an update traces: its inputs (updates, loss, functions) and the trees
``init`` saw.  The state itself is checked in ``_state_checks``.

Every message names the public call and the leaf or argument, as the construction checks do."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from gradtx import _dtypes
from gradtx import _tree
from gradtx._checks import check_tree
from gradtx._state_checks import aval

# While a wrapper traces an ``init`` only to learn its state's layout, the
# inits traced inside must not take the tree they see for the user's.
probing = _tree.Flag(__name__, "probing")


# The wrapper calling an update without the caller's keywords (``sam`` calls its
# optimizers so, as optax's does): an update that needs one says where it went.
withheld: _tree.ContextLocal[str | None] = _tree.ContextLocal(__name__, "withheld", None)


def missing_keyword(message: str) -> ValueError:
    """The error of an update called without a keyword it needs (``value``,
    ``value_fn``, ...), naming the wrapper that withheld it, if one did."""
    by = withheld.get()
    if by is not None:
        message += (
            f" ({by} calls its optimizers with the gradient alone, as optax.contrib.sam "
            "does: one that needs more cannot run inside it)"
        )
    return ValueError(message)


def _real_scalar(call: str, subject: str, dtype: Any, shape: Any) -> None:
    """Refuse a loss of another kind than a real scalar: ``subject`` says whose, e.g.
    ``"value must be"`` or ``"value_fn must return"``."""
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise TypeError(f"{call}: {subject} the scalar loss, a real number, got {dtype}")
    if shape != ():
        raise ValueError(f"{call}: {subject} the scalar loss, got shape {shape}")


def scalar_loss(call: str, value: Any, what: str = "value") -> jax.Array:
    """``value`` (a loss passed to ``update``, or ``what`` returned it) as an array,
    refused unless a real scalar: per-example losses would give per-element steps."""
    try:
        value = jnp.asarray(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"{call}: {what} must be the scalar loss, a real number, got {type(value).__name__}"
        ) from None
    _real_scalar(call, f"{what} must be", value.dtype, value.shape)
    return value


def passed_function(call: str, params: Any, extra: Mapping[str, Any], name: str, usage: str) -> Any:
    """The function ``name`` that ``update`` was given next to the params; where either
    is missing, a ValueError naming ``call`` and showing the call (``usage``), as for
    every input ``update`` needs (the params, ``value``)."""
    fn = extra.get(name)
    if params is None or fn is None:
        raise missing_keyword(f"{call}: update needs the params and {name}, {usage}")
    return _tree.users_code(fn)


def loss_function(call: str, name: str, fn: Any, *args: Any, **kwargs: Any) -> None:
    """Refuse ``fn``, a loss of the params passed to ``update`` (``value_fn``, ``obj_fn``),
    unless it is callable and returns a real scalar at ``args`` (its shape only is
    traced: the function itself goes on unwrapped, so eager loops keep their cache)."""
    if not callable(fn):
        raise TypeError(f"{call}: {name} must be a function of the params, got {type(fn).__name__}")
    out = jax.eval_shape(lambda *a: fn(*a, **kwargs), *args)  # data keywords: any type
    if getattr(out, "dtype", None) is None:
        raise TypeError(
            f"{call}: {name} must return the scalar loss, a real number, got {type(out).__name__}"
        )
    _real_scalar(call, f"{name} must return", out.dtype, out.shape)
    if not jnp.issubdtype(out.dtype, jnp.floating):  # differentiated: JAX refuses an int
        raise TypeError(
            f"{call}: {name} must return the scalar loss as a float (it is differentiated), "
            f"got {out.dtype}"
        )


def gradient_like(call: str, name: str, grads: Any, params: Any) -> Any:
    """``grads`` that ``name`` returned, refused unless a tree of the params' structure
    and shapes, each leaf of its param's dtype or that dtype's compute dtype (a 16-bit
    param's float32 gradient, as a mixed-precision loss gives, which the inner
    optimizer takes); a loss, or a gradient of other params, failed deep inside."""
    got, want = _tree.structure(grads), _tree.structure(params)
    if got != want:
        raise TypeError(
            f"{call}: {name} must return the gradient, a tree like the params; got {got}"
        )
    for path, g, p in zip(
        jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(grads), jax.tree.leaves(params)
    ):
        kind, want_kind = jnp.result_type(g), jnp.result_type(p)
        # the param's dtype, or its compute dtype (a 16-bit param's float32 gradient)
        taken = kind in (want_kind, _dtypes.compute_dtype(want_kind))
        if jnp.shape(g) != jnp.shape(p) or not taken:
            raise TypeError(
                f"{call}: {name} returned {kind}{list(jnp.shape(g))} at leaf "
                f"{jax.tree_util.keystr(path[0])}, where the param is {want_kind}{list(jnp.shape(p))}"
            )
    return grads


def check_real(call: str, tree: Any, why: str) -> None:
    """Refuse complex leaves, for a transform whose rule is for real numbers only."""
    if any(jnp.iscomplexobj(x) for x in jax.tree.leaves(tree)):
        raise TypeError(f"{call}: complex params are not supported ({why})")


def check_updates(
    call: str, updates: Any, params: Any, *, example_axis: bool = False, widened: bool = False
) -> tuple[Any, Any]:
    """Trace-time checks of ``update``'s arguments: float leaves, and updates
    shaped and typed like the params, leaf by leaf (shapes and dtypes are static).
    With ``example_axis`` (per-example gradients) each update leaf has one more
    leading axis, of one length for all leaves."""
    updates = check_tree(call, updates, "updates")
    if example_axis:
        lengths = {u.shape[:1] for u in jax.tree.leaves(updates)}
        if () in lengths or len(lengths) > 1:
            raise ValueError(
                f"{call}.update: expects per-example gradients, every leaf with one leading "
                "example axis of the same length (jax.vmap(jax.grad(loss), (None, 0))), got "
                f"{[aval(u) for u in jax.tree.leaves(updates)]}"
            )
    if params is None:
        return updates, None
    params = check_tree(call, params, "params")
    got, want = _tree.structure(updates), _tree.structure(params)
    if got != want:
        raise ValueError(
            f"{call}.update: the updates' tree does not match the params' tree.\n"
            f"  updates: {got}\n  params: {want}"
        )
    for (path, u), p in zip(jax.tree_util.tree_leaves_with_path(updates), jax.tree.leaves(params)):
        # Inside a gradtx call, 16-bit params' updates arrive in float32 (_build.run_body).
        same = u.dtype == p.dtype or (widened and u.dtype == _dtypes.compute_dtype(p.dtype))
        if u.shape[example_axis:] != p.shape or not same:
            where = jax.tree_util.keystr(path) or "(root)"
            if example_axis:
                raise ValueError(
                    f"{call}.update: updates leaf {where} is {aval(u)}, which is not a "
                    f"leading example axis followed by the param's {aval(p)}; per-example "
                    "updates must have shape (examples, *param.shape) and the param's dtype"
                )
            raise ValueError(
                f"{call}.update: updates leaf {where} is "
                f"{aval(u)} but the param is {aval(p)}; shapes and dtypes must match"
            )
    return updates, params


def one_example(updates: Any) -> Any:
    """Shapes and dtypes of one example of per-example updates: the params' layout."""
    return jax.tree.map(lambda u: jax.ShapeDtypeStruct(u.shape[1:], u.dtype), updates)


def probe_init(init: Any, tree: Any) -> Any:
    """``jax.eval_shape(init, tree)``: the state's layout, learnt without recording ``tree``."""
    with probing():
        return jax.eval_shape(init, tree)


class LeafCounts:
    """The leaf counts of the trees ``init`` saw, to refuse updates of another tree.

    A state without params-shaped buffers (plain SGD) cannot show that the
    updates' tree changed; this can.  Counts, not structures: an
    ``flax.nnx.Optimizer`` inits with ``Param`` nodes and updates with arrays.
    Leafless trees are not recorded: optax's ``tree_map_params`` inits with one.
    """

    def __init__(self, call: str) -> None:
        self.call = call
        self.seen: set[int] = set()

    def record(self, params: Any) -> None:
        n = len(jax.tree.leaves(params))
        if n and not probing.is_on():
            self.seen.add(n)

    def check(self, updates: Any) -> None:
        n = len(jax.tree.leaves(updates))
        # no leaves: an empty group of a partition sharing this optimizer with others
        if n and self.seen and n not in self.seen:
            raise ValueError(
                f"{self.call}.update: the updates' tree does not match the tree the state was "
                f"initialised with: {n} leaves, init saw {sorted(self.seen)}.\n"
                f"  updates: {jax.tree.structure(updates)}"
            )


class FnValues:
    """What a ``mask_fn``/``labels_fn`` gave at ``init``, by the params' structure and
    shapes: ``update`` must get the same, or a group's state meets other leaves and a
    mask flips.  ``nnx.Optimizer`` gives ``init`` the Variables and ``update`` their
    arrays, so a function of the Variables' types (or of key paths ending in
    ``value``) differs there.  Kept per Variable types too: one transform inited for
    two models that differ only in them holds both.  A later ``init`` replaces what
    an earlier one left for its tree; probing inits record nothing."""

    def __init__(self, call: str, what: str, fn: Any) -> None:
        self.call, self.what, self.fn = call, what, fn
        self.seen: dict[Any, dict[Any, list]] = {}

    @staticmethod
    def _keys(tree: Any) -> tuple[Any, Any]:
        plain = _tree.variables_unwrapped(tree)
        shapes = tuple((jnp.shape(x), str(getattr(x, "dtype", ""))) for x in jax.tree.leaves(plain))
        kinds = None
        if plain is not tree:  # the Variables' types, leaf by leaf
            wrapped = jax.tree.leaves(tree, is_leaf=_tree.is_variable)
            kinds = tuple(type(x).__name__ for x in wrapped)
        return (_tree.structure(plain), shapes), kinds

    def saw(self, tree: Any, values: list, at_init: bool) -> list:
        """``values``, remembered at ``init`` and checked at ``update``."""
        if at_init:
            self.remember(tree, values)
        else:
            self.check(tree, values)
        return values

    def remember(self, tree: Any, values: list) -> None:
        if self.fn is None or probing.is_on():
            return
        key, kinds = self._keys(tree)
        if len(self.seen) >= 64:
            self.seen.clear()
        self.seen.setdefault(key, {})[kinds] = list(values)

    def check(self, tree: Any, values: list) -> None:
        if self.fn is None:
            return
        key, kinds = self._keys(tree)
        records = self.seen.get(key, {})
        if kinds in records:
            old, was_wrapped = records[kinds], kinds is not None
        else:  # another form: arrays after Variables (nnx.Optimizer), or the reverse
            others = [v for k, v in records.items() if (k is None) != (kinds is None)]
            if not others or any(o != others[0] for o in others):
                return  # nothing to compare with, or no one answer to expect
            old, was_wrapped = others[0], kinds is None
        if old == list(values):
            return
        i = next(i for i, (a, b) in enumerate(zip(old, values)) if not a == b)
        plain = _tree.variables_unwrapped(tree)
        path = jax.tree_util.keystr(jax.tree_util.tree_flatten_with_path(plain)[0][i][0])
        why = f" {_tree.NNX_FN}" if was_wrapped != (kinds is not None) else ""
        raise ValueError(
            f"{self.call}: {self.what}_fn gives {values[i]!r} for the leaf {path} at update "
            f"where it gave {old[i]!r} at init: the {self.what} must not change between "
            f"them (init again after changing it).{why}"
        )


_SHARED: dict[tuple[str, str, int], FnValues] = {}
_SHARED_LOCK = threading.Lock()


def shared_fn_values(call: str, what: str, fn: Any) -> FnValues:
    """The one ``FnValues`` of ``fn`` for ``call``: a stage inside a factory is built
    again at every update (its hyperparameters are data), so what its ``init`` saw
    is kept here, by the function (held, so its id is not reused)."""
    key = (call, what, id(fn))
    with _SHARED_LOCK:
        found = _SHARED.get(key)
        if found is None or found.fn is not fn:
            if len(_SHARED) >= 1024:
                _SHARED.clear()
            found = _SHARED[key] = FnValues(call, what, fn)
        return found

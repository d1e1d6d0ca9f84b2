"""Parameter groups: ``masked`` (a transform on some leaves) and ``partition``.

Both hide leaves from an inner transform by replacing them with ``MaskedNode()``,
an empty pytree node: the inner transform sees a tree with the same structure
but no leaves there, so it allocates no state for them and never computes on
them (global norms, for instance, run over the visible leaves only).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from collections.abc import Hashable
from collections.abc import Mapping
from typing import Any
from typing import NamedTuple

import jax
import numpy as np
import optax

from gradtx import _checks
from gradtx import _tree
from gradtx import _update_checks
from gradtx._base import MaskFn
from gradtx._base import MaskTree
from gradtx._base import OptState
from gradtx._base import extras_for
from gradtx._base import kind_of
from gradtx._factory import optax_spelled
from gradtx._specs import Function
from gradtx._specs import Transform
from gradtx.wrappers._state import StateCheck


class MaskedNode(NamedTuple):
    """Stands where a leaf is hidden from an inner transform (no leaves, no state)."""


class MaskedState(NamedTuple):
    """``inner_state``: the inner transform's state over the unmasked leaves."""

    inner_state: OptState


def hide(tree: Any, keep: list[bool]) -> Any:
    """``tree`` with the leaves where ``keep`` is false replaced by ``MaskedNode()``."""
    leaves = jax.tree.leaves(tree)
    return _tree.structure(tree).unflatten([x if k else MaskedNode() for x, k in zip(leaves, keep)])


def unhide(out: Any, like: Any) -> list:
    """``out`` cut at the leaf positions of ``like``: one entry per leaf of ``like``.

    ``out`` is an inner transform's result for ``hide(like, keep)``: kept
    positions hold arrays, hidden ones ``MaskedNode()``.  Cutting at ``like``'s
    leaves (rather than flattening ``out`` with ``MaskedNode`` as a leaf) keeps
    nodes hidden by an outer wrapper out of the count.
    """
    return _tree.structure(like).flatten_up_to(out)


def fill(out: Any, like: Any, keep: list[bool]) -> Any:
    """``like`` with the kept leaves taken from ``out`` (a result for ``hide(like, keep)``)."""
    return _tree.structure(like).unflatten(
        [o if k else x for o, x, k in zip(unhide(out, like), jax.tree.leaves(like), keep)]
    )


def _check_leaves(call: str, updates: Any, n: int) -> list:
    leaves = jax.tree.leaves(updates)
    if len(leaves) != n:
        raise ValueError(
            f"{call}.update: the updates have {len(leaves)} leaves, the mask covers {n}; "
            f"updates: {jax.tree.structure(updates)}"
        )
    return leaves


def _hidden_extra(extra: dict, keep: list[bool], params: Any) -> dict:
    """Extras for an inner transform, as it sees the tree: the chain's ``grads`` and a
    line search's ``grad`` hidden like the updates; a function of the params
    (``value_fn``, ``obj_fn``, ``grad_fn``) called on the whole tree, its hidden leaves
    held at ``params``, since the user wrote it for the whole model."""
    out = dict(extra)
    for key in ("grads", "grad"):
        if out.get(key) is not None:
            out[key] = hide(out[key], keep)
    if params is None:
        return out

    def on_whole(fn: Callable, hide_result: bool) -> Callable:
        @functools.wraps(fn)  # so its signature (read to pick data keywords) stays the user's
        def wrapped(seen, *args, **data):
            result = fn(fill(seen, params, keep), *args, **data)
            return hide(result, keep) if hide_result else result

        return wrapped

    for key in ("value_fn", "obj_fn", "grad_fn"):
        if out.get(key) is not None:  # grad_fn's gradient is of the whole tree: hidden
            out[key] = on_whole(out[key], hide_result=key == "grad_fn")
    return out


@optax_spelled
def masked(
    inner: optax.GradientTransformation,
    mask: MaskTree | None = None,
    *,
    mask_fn: MaskFn | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Apply ``inner`` to the leaves where the mask is true; pass the others through.

    Masked-out leaves hold no state in ``inner`` and leave unchanged and
    unchecked, as in optax (integer leaves, per-example gradients for a later
    group's aggregation; one of another shape than its param is refused by
    ``gradtx.apply_updates``, and broadcast by ``optax.apply_updates``).  The
    chain's ``grads`` keyword reaches ``inner`` masked the same way.  A masked
    gradient map is a gradient map.

    Args:
      inner: the transform to apply (gradtx or optax).
      mask: pytree of bools, a prefix of the params tree (``True``: apply).
      mask_fn: function of the params (or, in ``update`` without params, of
        the updates) returning such a tree.  Its values must be Python bools.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
      >>> no_bias = lambda p: {"w": True, "b": False}
      >>> opt = gradtx.chain(
      ...     gradtx.masked(gradtx.add_l2(1e-4), mask_fn=no_bias), gradtx.sgd(0.1))
    """
    call = "gradtx.masked"
    inner = Transform().check(call, "inner", inner)
    if mask is None and mask_fn is None:
        raise ValueError(f"{call}: give mask (a pytree of bools) or mask_fn (a function)")
    _tree.refuse_both(call, "mask", mask, mask_fn)  # at construction, not first at init
    _checks.check_static_tree(call, "mask", mask, (bool, np.bool_), "Python bools")
    Function().check(call, "mask_fn", mask_fn)

    def keep_of(tree, at_init=False):
        keep = _tree.static_bools(call, _tree.per_leaf(call, "mask", mask, mask_fn, tree), tree)
        return given.saw(tree, keep, at_init)

    given = _update_checks.FnValues(call, "mask", mask_fn)

    def init(params):
        checked.record(params)
        keep = keep_of(params, at_init=True)
        return _tree.settled(MaskedState(inner.init(hide(params, keep))), params)

    checked = StateCheck(call, init)

    def update(updates, state, params=None, **extra):
        state = checked.check(state, updates, params)  # first: a changed tree, named as such
        keep = keep_of(params if params is not None else updates)
        _check_leaves(call, updates, len(keep))
        out, inner_state = inner.update(
            hide(updates, keep),
            state.inner_state,
            None if params is None else hide(params, keep),
            **extras_for(inner, _hidden_extra(extra, keep, params)),
        )
        out = fill(out, updates, keep)
        return out, _tree.settled(MaskedState(inner_state), (params, out))

    return kind_of(inner)(init, update)


@optax_spelled
def partition(
    transforms: Mapping[Hashable, optax.GradientTransformation],
    labels: Any = None,
    *,
    labels_fn: Callable | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Parameter groups: each leaf is updated by the transform of its label.

    The state is a dict ``label -> that transform's state`` over its own leaves,
    so hyperparameters are addressed as ``"label/learning_rate"``
    (``gradtx.set_hyperparams(state, {"head/learning_rate": 1e-3})``), or by
    the bare name where only one group has it.  Each group's transform gets its
    own subtree of the updates, params and the chain's ``grads``; it is as if
    it ran alone on those leaves (a group's ``clip_by_global_norm`` sees its
    group's norm).

    Args:
      transforms: label -> transform.  Every label used must be a key.
      labels: pytree of labels, a prefix of the params tree.
      labels_fn: function of the params (or of the updates) returning it.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> params = {"embed": jnp.ones((4, 2)), "w": jnp.ones((2, 2))}
      >>> opt = gradtx.partition(
      ...     {"sparse": gradtx.sgd(0.1), "dense": gradtx.adam(1e-3)},
      ...     {"embed": "sparse", "w": "dense"})
      >>> state = gradtx.set_hyperparams(opt.init(params), {"dense/learning_rate": 3e-4})
    """
    call = "gradtx.partition"
    if not isinstance(transforms, Mapping) or not transforms:
        raise TypeError(f"{call}: transforms must be a non-empty dict label -> transform")
    txs = {k: Transform().check(call, f"transforms[{k!r}]", t) for k, t in transforms.items()}
    labels_given: list[Any] = list(txs)
    try:
        sorted(labels_given)  # the state keeps them in a dict, whose keys JAX sorts
    except TypeError:
        raise TypeError(
            f"{call}: the transforms' labels {', '.join(sorted(map(repr, txs)))} cannot be sorted "
            "together (JAX sorts a dict's keys); use labels of one type, e.g. all strings"
        ) from None
    _tree.refuse_reserved(call, "the label", labels_given)
    if labels is None and labels_fn is None:
        raise ValueError(f"{call}: give labels (a pytree of labels) or labels_fn (a function)")
    _tree.refuse_both(call, "labels", labels, labels_fn)  # at construction, not first at init
    _checks.refuse_function(call, "labels", labels, "labels")
    Function().check(call, "labels_fn", labels_fn)

    def refuse_unknown(values):
        unknown = sorted({repr(v) for v in values if not _known(v)})
        if unknown:
            raise ValueError(
                f"{call}: labels {', '.join(unknown)} have no transform; "
                f"transforms are given for {', '.join(sorted(map(repr, txs)))}"
            )

    def labels_of(tree, at_init=False):
        values = _tree.per_leaf(call, "labels", labels, labels_fn, tree)
        refuse_unknown(values)
        return given.saw(tree, values, at_init)

    def _known(v):
        try:
            return v in txs
        except TypeError:  # unhashable label
            return False

    if labels is not None and all(jax.tree.leaves(k) == [k] for k in labels_given):
        # a label tree's leaves are its labels (unless a label is itself a pytree, a
        # tuple say): one missing from transforms is refused now, not first at init
        refuse_unknown(jax.tree.leaves(labels))

    given = _update_checks.FnValues(call, "labels", labels_fn)

    def init(params):
        checked.record(params)
        values = labels_of(params, at_init=True)
        state = {k: tx.init(hide(params, [v == k for v in values])) for k, tx in txs.items()}
        return _tree.settled(state, params)

    checked = StateCheck(call, init)

    def update(updates, state, params=None, **extra):
        state = checked.check(state, updates, params)  # first: a changed tree, named as such
        values = labels_of(params if params is not None else updates)
        leaves = _check_leaves(call, updates, len(values))
        merged = list(leaves)
        new_state = {}
        for k, tx in txs.items():
            keep = [v == k for v in values]
            out, new_state[k] = tx.update(
                hide(updates, keep),
                state[k],
                None if params is None else hide(params, keep),
                **extras_for(tx, _hidden_extra(extra, keep, params)),
            )
            for i, (o, kept) in enumerate(zip(unhide(out, updates), keep)):
                if kept:
                    merged[i] = o
        out = jax.tree.unflatten(jax.tree.structure(updates), merged)
        return out, _tree.settled(new_state, (params, out))

    return kind_of(*txs.values())(init, update)

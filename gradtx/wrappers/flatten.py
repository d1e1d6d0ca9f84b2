"""The flat-buffer mode: run a transform on one 1-D buffer per dtype.

Why: XLA compiles (and the CPU runs) one kernel per fused group of
operations, and an elementwise optimizer on a tree of N leaves makes about
three per leaf (new m, new v, new params).  On trees of many small leaves the
compile time and the per-step launch overhead grow with N, not with the
number of floats.  ``flatten(tx)`` keeps the state of ``tx``'s small leaves
as one flat buffer per dtype across steps, so the optimizer's arithmetic on
them is a handful of kernels whatever N is.  Per step it concatenates their
gradients (one operation per dtype) and splits the update back into leaves
(one ``lax.split`` per dtype, whose pieces XLA fuses into the caller's
``apply_updates``).  Big leaves (over ``max_leaf_size``) and leaves whose
dtype and shape four or more leaves share keep buffers of their own: copying
the first in and out costs more than it saves, and the second already share
XLA kernels that concatenation would make distinct.

Elementwise transforms compute exactly the same numbers on the flat buffers:
each element sees the same scalars and the same operations.  Transforms that
need each leaf's shape (``centralize``) refuse to run inside (see
``_tree.check_per_leaf``); masks given as param-shaped trees must be applied
outside: ``gradtx.masked(gradtx.flatten(tx), mask)``.  optax's masks, labels and
per-leaf transforms cannot be detected and would read each buffer as one leaf: they
belong outside too (docs/performance.md).
"""

from __future__ import annotations

import collections
import functools
import math
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _checks
from gradtx import _state_checks
from gradtx import _tree
from gradtx import _update_checks
from gradtx._base import GradientTransformation
from gradtx._base import OptState
from gradtx._base import extras_for
from gradtx._base import kind_of
from gradtx._build import widened
from gradtx._factory import optax_spelled
from gradtx._specs import Transform


class FlattenState(NamedTuple):
    """``inner_state``: the wrapped transform's state over ``{dtype name: 1-D buffer}``,
    plus ``"<dtype>_leaf<i>"`` entries for the leaves that keep their own buffer."""

    inner_state: OptState


class _Layout(NamedTuple):
    treedef: Any
    shapes: tuple
    groups: dict  # dtype name -> indices of the leaves of that dtype, in tree order


# A (dtype, shape) shared by this many leaves keeps per-leaf buffers: XLA
# compiles one kernel per distinct fusion, so such leaves share the default
# path's few kernels, where each concatenated leaf needs a slice kernel of its
# own (benchmarks/NOTES.md, section 8).
_SHARED_SHAPE = 4


def _layout(tree: Any, max_size: int) -> _Layout:
    leaves, treedef = jax.tree.flatten(tree)
    kinds = [(jnp.result_type(x).name, jnp.shape(x)) for x in leaves]
    repeats = collections.Counter(kinds)
    groups: dict[str, list[int]] = {}
    for i, (name, shape) in enumerate(kinds):
        if math.prod(shape) > max_size or repeats[name, shape] >= _SHARED_SHAPE:
            name = f"{name}_leaf{i}"  # its own buffer, in its own shape: no copy in or out
        groups.setdefault(name, []).append(i)
    return _Layout(treedef, tuple(shape for _, shape in kinds), groups)


def _is_widened(updates: Any, params: Any) -> bool:
    """Updates of the params' tree, some widened by an enclosing call, the rest as the
    params (``widened``)."""
    if _tree.structure(updates) != _tree.structure(params):
        return False
    pairs = zip(jax.tree.leaves(updates), jax.tree.leaves(params))
    dtypes = [(jnp.result_type(u), jnp.result_type(p)) for u, p in pairs]
    return any(widened(u, p) for u, p in dtypes) and all(u == p or widened(u, p) for u, p in dtypes)


def _signature(layout: _Layout) -> tuple:
    """What init's params fixed: each leaf's shape and which buffer (dtype) holds it."""
    return layout.shapes, tuple((k, tuple(v)) for k, v in layout.groups.items())


def _leaves_of(groups: dict) -> dict:
    return {name: list(idx) for name, idx in groups.items()}


def _pack(call: str, tree: Any, layout: _Layout) -> dict[str, jax.Array]:
    leaves, treedef = jax.tree.flatten(tree)
    if treedef != layout.treedef:
        raise ValueError(
            f"{call}: tree does not match the updates' tree.\n"
            f"  expected: {layout.treedef}\n  got: {treedef}"
        )
    for i, (leaf, shape) in enumerate(zip(leaves, layout.shapes)):
        if jnp.shape(leaf) != shape:
            raise ValueError(
                f"{call}: leaf {i} has shape {jnp.shape(leaf)}, the updates' has {shape}"
            )
    flat = {}
    for name, idx in layout.groups.items():
        if "_leaf" in name:  # a leaf with its own buffer (big, or of a shared shape)
            flat[name] = leaves[idx[0]]
            continue
        parts = _ravelled([leaves[i] for i in idx])
        flat[name] = parts[0] if len(parts) == 1 else jnp.concatenate(parts)
    return flat


def _ravelled(leaves: list[jax.Array]) -> list[jax.Array]:
    """The leaves of one shared buffer, each as a vector.  On an explicit mesh, leaves
    split along their first axis alike ravel and concatenate as they are (the buffer
    stays split); otherwise they are gathered whole first: a leaf split past its first
    axis cannot be raveled, nor leaves of different shardings concatenated."""
    firsts, split_later = set(), False
    for leaf in leaves:
        sharding = _tree.explicit_sharding(leaf)
        spec = () if sharding is None else tuple(sharding.spec)
        firsts.add(spec[0] if spec else None)
        split_later = split_later or any(axis is not None for axis in spec[1:])
    whole = split_later or len(firsts) > 1
    return [jnp.ravel(_tree.replicated(x) if whole else x) for x in leaves]


def _unpack(flat: dict[str, jax.Array], layout: _Layout, like: Any) -> Any:
    """The buffers cut back into leaves, each on the explicit sharding of ``like``'s
    leaf (the updates, whose tree ``layout`` was read from)."""
    likes = jax.tree.leaves(like)
    out: list[Any] = [None] * len(layout.shapes)
    for name, idx in layout.groups.items():
        if "_leaf" in name:  # its own buffer, in the leaf's shape and sharding
            out[idx[0]] = flat[name]
            continue
        sizes = [math.prod(layout.shapes[i]) for i in idx]
        pieces = [flat[name]] if len(idx) == 1 else jax.lax.split(flat[name], sizes)
        for i, piece in zip(idx, pieces):
            if piece.shape != layout.shapes[i]:
                piece = piece.reshape(layout.shapes[i])
            out[i] = _tree.sharded_like(piece, likes[i])
    return layout.treedef.unflatten(out)


def _fits(tree: Any, treedef: Any) -> bool:
    """``tree`` has ``treedef``'s nodes, where a leaf may stand for a one-leaf node.

    ``flax.nnx.Optimizer`` inits with ``nnx.Param`` nodes and updates with plain
    arrays in their places; other keys or nesting do not fit.
    """
    if _tree.structure(tree) == treedef:
        return True
    try:
        parts = _tree.structure(tree).flatten_up_to(treedef.unflatten([0] * treedef.num_leaves))
    except (ValueError, TypeError):
        return False
    return all(len(jax.tree.leaves(part)) == 1 for part in parts)


@optax_spelled
def flatten(tx: Any, *, max_leaf_size: int = 2**16) -> GradientTransformation:
    """Run ``tx`` on flat buffers, one per dtype, kept flat across steps.

    Leaves with more than ``max_leaf_size`` elements are not concatenated:
    each keeps a buffer of its own, in its own shape.  Copying a
    big leaf into and out of a flat buffer costs more memory traffic than
    its own kernels cost to launch (the ResNet-like tree in
    benchmarks/RESULTS.md ran 3.5x slower with everything concatenated), so
    only the many small leaves (biases, norms, small layers) are fused.
    Leaves whose dtype and shape are shared by four or more leaves (the
    repeated blocks of a transformer) keep their own buffers too: XLA
    compiles their kernels once for all of them, while each concatenated
    leaf costs a kernel of its own to compile.

    ``flatten(tx)`` computes the same updates as ``tx`` for every elementwise
    transform (all of gradtx's optimizers except those that need each
    leaf's shape or the params' own tree, which raise inside: Ranger's
    gradient centralisation, LAMB's and LARS's trust ratio, SM3, Sophia's
    Hutchinson estimate, SAM's opaque mode), with far fewer XLA operations on
    trees of many leaves: faster to compile and to run (benchmarks/RESULTS.md).
    Its state is ``FlattenState(inner_state)`` where ``inner_state`` is
    ``tx``'s state over ``{"float32": buffer, "bfloat16": buffer, ...}`` (and
    ``"float32_leaf7"``-style entries, in the leaf's shape, for leaf 7 when it
    keeps its own buffer); the hyperparameters stay readable and settable with ``get_hyperparams`` /
    ``set_hyperparams`` as before.

    The updates (and params, a chain's ``grads`` and a ``grad`` keyword) must
    have the dtypes of the params given to ``init``.  A ``value_fn`` keyword
    (the loss as a function of the params, which ``gradtx.lbfgs`` and optax's
    line searches evaluate) is wrapped to receive the params' tree, not the
    buffers, and its data keywords.  The flat buffers do not keep the params'
    shardings in general: on an explicit mesh (``AxisType.Explicit``) leaves that
    share a buffer and are all split along their first axis alike keep that split
    in it; other shared leaves are gathered whole into it (replicated), and the
    updates go back on each leaf's sharding.  Leaves with a buffer of their own keep
    theirs.  Sharded params work, but every device may then hold a shared buffer's
    whole state: it is meant for replicated or single-device params.

    Args:
      tx: any gradient transformation whose math is elementwise (or reduces
        over all leaves, like ``clip_by_global_norm``: same value up to the
        order of the summation).
      max_leaf_size: leaves larger than this keep their own buffer.

    Example:
      >>> import gradtx, jax.numpy as jnp
      >>> opt = gradtx.flatten(gradtx.adam(1e-3))
      >>> params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
      >>> state = opt.init(params)
      >>> updates, state = opt.update(params, state, params)
      >>> updates["w"].shape
      (2, 3)
    """
    call = "gradtx.flatten"
    inner = Transform().check(call, "tx", tx)
    _checks.check_int(call, "max_leaf_size", max_leaf_size, 0)

    # Leaf shapes init saw, in order: leaves of swapped sizes under renamed keys fill
    # the same buffers and would pass every check on the state alone.
    seen: set[tuple] = set()
    trees: list[Any] = []  # and their trees: leaves under other keys fill the same buffers

    def fresh_state(params):
        layout = _layout(params, max_leaf_size)
        with _tree.flat_buffers():
            state = FlattenState(inner.init(_pack(f"{call}.init", params, layout)))
            return _tree.settled(state, params)  # big leaves' buffers are the params

    def init(params):
        if type(params).__name__ == "_ParamsPlaceholder" and "optax" in type(params).__module__:
            raise ValueError(
                f"{call}: the state is flat buffers (one per dtype), not trees shaped like "
                "the params, so optax.tree_utils.tree_map_params cannot map it (nor do the "
                "buffers keep the params' shardings: flatten is for replicated or "
                "single-device params)"
            )
        params = _checks.check_tree(call, params, "params")  # named by the user's path
        layout = _layout(params, max_leaf_size)
        # Not the leafless tree optax's tree_map_params inits with, nor an outer
        # wrapper's probe of the state's layout (its updates are not yet checked).
        if layout.shapes and not _update_checks.probing.is_on():
            seen.add(_signature(layout))
            if layout.treedef not in trees:
                trees.append(layout.treedef)
        return fresh_state(params)

    def update(updates, state, params=None, **extra):
        updates = _checks.check_tree(call, updates, "updates")
        like = updates
        if params is not None and _is_widened(updates, params):
            # an enclosing gradtx call handed 16-bit updates in float32: the buffers
            # stay named by the params' dtypes, as init made them, and hold the wider
            # values for the inner optimizer
            like = params
        layout = _layout(like, max_leaf_size)
        if seen and layout.shapes not in {shapes for shapes, _ in seen}:
            got, want = list(layout.shapes), list(next(iter(seen))[0])
            paths = [
                jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(updates)
            ]
            first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
            where = (
                f"{len(got)} leaves, init saw {len(want)}" if first is None
                else f"leaf {paths[first] or '(root)'} is {got[first]}, init saw {want[first]}"
            )  # fmt: skip
            raise ValueError(
                f"{call}.update: the updates' tree does not match the params init saw: {where}"
            )
        if trees and not any(_fits(updates, tree) for tree in trees):
            raise ValueError(
                f"{call}.update: the updates' tree does not match the params init saw.\n"
                f"  updates: {layout.treedef}\n  init saw: {trees[0]}"
            )
        # The buffers are named by dtype: updates of another dtype than init's params
        # (or another tree) would meet a state of other names, so say which.
        expected = _update_checks.probe_init(fresh_state, updates if params is None else params)
        expected = _state_checks.as_driven(state, expected)  # a schedule may be a number now
        if jax.tree.structure(expected) != jax.tree.structure(state) or any(
            jnp.shape(a) != tuple(b.shape)
            for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(expected))
        ):
            got = sorted({jnp.result_type(x).name for x in jax.tree.leaves(updates)})
            raise ValueError(
                f"{call}.update: the state does not match these updates (dtypes {got}, "
                f"{len(jax.tree.leaves(updates))} leaves); flatten keeps one buffer per dtype of "
                "the params given to init, so the updates need the same tree, shapes and dtypes"
            )
        if seen and _signature(layout) not in seen:
            # Leaves of two dtypes swapped between equal-sized buffers would pass the
            # check above and meet each other's state.
            groups = dict(next(iter(seen))[1])
            raise ValueError(
                f"{call}.update: these updates' dtypes put the leaves in buffers "
                f"{_leaves_of(layout.groups)}, init's params in {_leaves_of(groups)}; the "
                "updates need the params' dtypes"
            )
        flat_params = None if params is None else _pack(f"{call}.update(params)", params, layout)
        for key in ("grads", "grad"):  # the chain's gradient, and optax's line searches' one
            if extra.get(key) is not None:
                extra[key] = _pack(f"{call}.update({key})", extra[key], layout)
        value_fn = extra.get("value_fn")
        if value_fn is not None:  # a function of the params: it gets their tree back
            # Wrapped, so its signature (read to pick data keywords) stays value_fn's.
            @functools.wraps(value_fn)
            def flat_value_fn(flat, *args, **data):
                return value_fn(_unpack(flat, layout, updates), *args, **data)

            extra["value_fn"] = flat_value_fn
        with _tree.flat_buffers():
            flat, inner_state = inner.update(
                _pack(f"{call}.update", updates, layout),
                state.inner_state,
                flat_params,
                **extras_for(inner, extra),
            )
        out = _unpack(flat, layout, updates)
        return out, _tree.settled(FlattenState(inner_state), (params, out))

    return kind_of(tx)(init, update)

"""Small tree helpers shared by the transforms."""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import importlib
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any
from typing import Generic
from typing import TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._dtypes import compute_dtype
from gradtx._dtypes import square_dtype
from gradtx._dtypes import state_dtype


def structure(tree: Any) -> Any:
    """``jax.tree.structure`` typed as ``Any`` (jaxlib ships no stub for ``PyTreeDef``)."""
    return jax.tree.structure(tree)


def nodes(tree: Any, kinds: type | tuple[type, ...]) -> list[Any]:
    """The nodes of ``tree`` that are instances of ``kinds``, outermost first (the walk
    does not look inside one it found)."""
    found = lambda x: isinstance(x, kinds)  # noqa: E731
    return [x for x in jax.tree.leaves(tree, is_leaf=found) if found(x)]


def refuse_reserved(call: str, what: str, names: Any) -> None:
    """A group label or chain name of ``inner_state``, which hyperparameter names skip
    (the field wrappers keep their inner optimizer in), so its own could not be named."""
    if "inner_state" in names:
        raise ValueError(
            f"{call}: {what} 'inner_state' is reserved (hyperparameter names skip path "
            "parts of that name, so this one's could not be addressed); choose another"
        )


def zeros_like(params: Any, dtype: Any = None) -> Any:
    """Zero state buffers shaped like ``params``, each in ``state_dtype``; ``None``
    leaves kept.  Built from the leaf, so each keeps the leaf's sharding."""
    return jax.tree.map(lambda p: jnp.zeros_like(p, dtype=state_dtype(p.dtype, dtype)), params)


def full_like(params: Any, value: Any, dtype: Any = None) -> Any:
    """State buffers of ``value`` shaped like ``params``, each in ``state_dtype``.

    ``full_like`` (not ``full(shape)``) so the result keeps the leaf's sharding:
    optimizer state follows the params' layout on a mesh.
    """

    return jax.tree.map(lambda p: _filled(p, value, state_dtype(jnp.result_type(p), dtype)), params)


def _filled(p: Any, value: Any, dtype: Any) -> jax.Array:
    return jnp.full_like(p, jnp.asarray(value).astype(dtype), dtype=dtype)


def scalar_like(value: Any, leaf: jax.Array) -> jax.Array:
    """A hyperparameter cast to a leaf's dtype, so strict promotion holds."""
    dtype = getattr(leaf, "dtype", None)
    if isinstance(value, jax.Array) and dtype is not None and value.dtype == dtype:
        return value  # called per leaf: skip the no-op cast's Python cost
    return jnp.asarray(value).astype(jnp.result_type(leaf))


def real_vdot(a: Any, b: Any, dtype: Any) -> jax.Array:
    """``Re Σ vdot(a, b)`` over the leaves of two trees (``a`` conjugated), summed in
    leaves order in ``dtype``; each leaf's product in at least float32 (a 16-bit dot
    product is noise).  optax's ``tree.vdot`` in the same order of operations."""
    total = jnp.zeros([], dtype)
    for x, z in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        wide = compute_dtype(x.dtype, z.dtype)
        x, z = jnp.conj(x.astype(wide)), z.astype(wide)
        # A contraction over every axis, not vdot's ravel: on an explicit mesh the
        # sharded axes are summed into a replicated scalar (optax's order too).
        sharding = explicit_sharding(x)
        out = None if sharding is None else jax.sharding.NamedSharding(
            sharding.mesh, jax.sharding.PartitionSpec())  # fmt: skip
        dot = jnp.tensordot(x, z, x.ndim, precision=jax.lax.Precision.HIGHEST, out_sharding=out)
        total = total + jnp.real(dot).astype(dtype)
    return total


def sum_of_squares(tree: Any, dtype: Any) -> jax.Array:
    """``Σ |x|²`` over every element of every leaf (optax's squared ``tree.norm``), each
    leaf's sum in at least float32 (a float16 sum overflows past 65504), cast to
    ``dtype`` and added in leaves order."""
    total = jnp.zeros([], dtype)
    for leaf in jax.tree.leaves(tree):
        wide = leaf.astype(compute_dtype(leaf.dtype))
        total = total + jnp.sum(jnp.real(abs_sq(wide))).astype(dtype)
    return total


def abs_sq(x: jax.Array) -> jax.Array:
    """``|x|²``, real: ``x * x`` for real leaves (bit-identical to ``jnp.square``),
    ``re² + im²`` in the real dtype for complex ones (``x * conj(x)`` made
    ``inf - inf = NaN`` in the imaginary part for ``|x|`` beyond ~1.8e19)."""
    if jnp.iscomplexobj(x):
        return jnp.square(jnp.real(x)) + jnp.square(jnp.imag(x))
    return x * x


def squared(g: jax.Array, like: jax.Array) -> jax.Array:
    """``|g|²`` for a statistic stored like ``like``: computed in ``compute_dtype``
    of both, returned in its real dtype."""
    return abs_sq(g.astype(compute_dtype(g.dtype, like.dtype)))


def squares_like(params: Any, value: Any = 0.0, dtype: Any = None) -> Any:
    """``value`` shaped like ``params`` in each leaf's ``square_dtype`` (second moments)."""
    return jax.tree.map(
        lambda p: _filled(p, value, square_dtype(jnp.result_type(p), dtype)), params
    )


def stored_like(tree: Any, like: Any) -> Any:
    """Each leaf of ``tree`` in the dtype of ``like``'s leaf: a statistic computed wide,
    rounded for the state.  The step reads the unrounded one (optax's ``trace`` and
    ``scale_by_adam`` cast ``accumulator_dtype``/``mu_dtype`` for storage only)."""
    return jax.tree.map(lambda x, s: x if x.dtype == s.dtype else x.astype(s.dtype), tree, like)


def own_copy(x: Any) -> Any:
    """A copy of a state's array, for a reader to keep: the next step that donates the
    state deletes the state's own (and a NumPy one, from a restored checkpoint, would
    be the state's to change)."""
    if isinstance(x, np.ndarray):
        return x.copy()
    return jnp.array(x, copy=True) if isinstance(x, jax.Array) else x


def with_entries(mapping: Any, entries: Any) -> Any:
    """``mapping`` with ``entries`` in place of its own, of its own type: a plain dict
    is another pytree than optax.named_chain's OrderedDict (or a defaultdict, flax's
    FrozenDict), which a scan's carry or a state check refuses.  A dict subclass is
    copied and updated; another mapping is rebuilt from a dict where its type takes
    one, else it becomes that dict."""
    if isinstance(mapping, dict):
        copied = copy.copy(mapping)
        copied.update(entries)
        return copied
    rebuilt = {**mapping, **entries}
    try:
        return type(mapping)(rebuilt)
    except TypeError:
        return rebuilt


def bare(x: Any) -> Any:
    """The array inside a one-leaf wrapper (Flax NNX's ``OptArray`` around each state
    leaf of ``nnx.Optimizer``); anything else as it is."""
    if isinstance(x, jax.Array):
        return x
    leaves = jax.tree.leaves(x)
    return leaves[0] if len(leaves) == 1 and leaves[0] is not x else x


def settled(state: Any, params: Any = None) -> Any:
    """``state`` as ``init`` and ``update`` return it: strongly typed, no buffer twice.

    - A leaf made from weak-typed params (``jnp.asarray(0.5)``, a Python float
      leaf) is weak at ``init`` but strong once an update mixes in a stored
      number, so the state's type would change after one step (a retrace of a
      jitted step, a promoted ``lax.scan`` carry).  Weak leaves are made strong,
      of the same dtype.
    - An ``init`` that stores one array twice (a zero for two counters, a
      hyperparameter's value also kept as a buffer, the params themselves)
      makes a state that cannot be donated to a jitted step: XLA refuses a
      buffer donated twice or also passed as params.  Each array that is also
      an earlier leaf, or a leaf of ``params`` (the caller passes there what
      else it returns or holds: the updates, bound arrays), is copied.  Traced values
      (``jax.jit(opt.init)``) need no copy: jit's outputs are separate buffers.
    """
    seen = {id(x) for x in jax.tree.leaves(params) if isinstance(x, jax.Array)}

    def fresh(x: Any) -> Any:
        if not isinstance(x, jax.Array):
            return x
        # A typed PRNG key array has no weak_type (it is never weak).
        if getattr(x, "weak_type", False):
            return jnp.asarray(x, x.dtype)  # a new buffer
        if isinstance(x, jax.core.Tracer):
            return x
        if id(x) in seen:
            return jnp.copy(x)
        seen.add(id(x))
        return x

    return jax.tree.map(fresh, state)


def cast_tree(tree: Any, like: Any) -> Any:
    """Cast each leaf of ``tree`` to the dtype of the matching leaf of ``like``."""
    return jax.tree.map(lambda x, y: x.astype(jnp.result_type(y)), tree, like)


def check_same_structure(call: str, updates: Any, state_tree: Any, what: str = "state") -> None:
    """Raise a ValueError showing both structures when they differ."""
    a, b = structure(updates), structure(state_tree)
    if a != b:
        raise ValueError(
            f"{call}: the updates' tree does not match the {what}'s tree.\n"
            f"  updates: {a}\n  {what}: {b}"
        )


def key_name(key: Any) -> str:
    """A key path entry's name: a dict key, attribute name or sequence index."""
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def is_variable(x: Any) -> bool:
    """A Flax NNX ``Variable`` (``nnx.Param``, ...), known without importing flax."""
    return any(
        c.__name__ == "Variable" and c.__module__.startswith("flax.nnx") for c in type(x).__mro__
    )


def variables_unwrapped(tree: Any) -> Any:
    """``tree`` with each Flax NNX ``Variable`` replaced by what it holds, as
    ``nnx.Optimizer`` passes the params to ``update`` (it passes them to ``init``
    wrapped); any other tree as it is."""
    if not any(is_variable(x) for x in jax.tree.leaves(tree, is_leaf=is_variable)):
        return tree
    return jax.tree.map(lambda x: bare(x) if is_variable(x) else x, tree, is_leaf=is_variable)


def leafless(node: Any) -> bool:
    """A node without leaves: ``None``, a ``MaskedNode`` (a leaf partition or a mask hides),
    an empty container."""
    return not jax.tree.leaves(node)


def refuse_both(call: str, what: str, prefix: Any, fn: Callable | None) -> None:
    """``what`` is given as a tree or as ``what_fn``, a function of the params: not both."""
    if prefix is not None and fn is not None:
        raise ValueError(f"{call}: give {what} or {what}_fn, not both")


def per_leaf(call: str, what: str, prefix: Any, fn: Callable | None, tree: Any) -> list:
    """One value per leaf of ``tree``, from a prefix tree or from ``fn(tree)``.

    ``prefix`` may stop above the leaves (``{"encoder": False, "head": True}``
    masks whole subtrees).  Where its node types differ from the tree's (a
    dict prefix of a ``flax.nnx.State``, whose leaves also sit under
    ``Variable.value``), leaves are matched by their key path instead.  The
    choice between a tree and a function is the keyword used, never
    ``callable()``: Equinox modules and other callable pytrees are valid prefixes.
    """
    refuse_both(call, what, prefix, fn)
    if flat_buffers.is_on() and (
        fn is not None or not jax.tree_util.treedef_is_leaf(structure(prefix))
    ):
        # Inside gradtx.flatten the tree is {dtype: 1-D buffer}: a function of it sees
        # no parameter's shape, and a prefix of the params matches nothing.
        raise ValueError(
            f"{call}: {what} (given per parameter) cannot apply inside gradtx.flatten, whose "
            "flat buffers do not keep the parameters apart; give it outside, around "
            "flattened optimizers: gradtx.partition({label: gradtx.flatten(...)}, labels) "
            "or gradtx.masked(gradtx.flatten(...), mask)"
        )
    if fn is None:
        return _matched(call, what, prefix, tree)
    # as given: a function may read the Variables' types (nnx.LoRAParam) where init and
    # update both get Variables (nnx.split by hand); under nnx.Optimizer it must give
    # the same for a Variable and its array (docs/ecosystem.md), which is checked here
    try:
        prefix = fn(tree)
    except Exception as err:
        note = getattr(err, "add_note", None)  # Python 3.11 on
        if note is not None and variables_unwrapped(tree) is not tree:
            note(f"{call}: {what}_fn was given flax.nnx Variables; {NNX_FN}")
        raise
    return _matched(call, what, prefix, tree)


NNX_FN = (
    "nnx.Optimizer gives init the Variables (key paths end in a GetAttrKey 'value') and "
    "update their arrays, so the function must give the same for both: by key path, skip "
    "a trailing 'value' key; a Variable's type is not seen at update"
)


def _matched(call: str, what: str, prefix: Any, tree: Any) -> list:
    """One value per leaf of ``tree`` from the prefix tree ``prefix``."""
    prefix_leaves = jax.tree.leaves(prefix)
    prefix_def = structure(prefix)
    try:
        subtrees = prefix_def.flatten_up_to(tree)
        return [v for v, sub in zip(prefix_leaves, subtrees) for _ in jax.tree.leaves(sub)]
    except (ValueError, TypeError):
        pass
    # matched by key path, a Variable and its array are one leaf (``.value`` dropped):
    # labels made from one form of an nnx.State fit the other
    prefix, tree = variables_unwrapped(prefix), variables_unwrapped(tree)
    keyed = [
        (tuple(key_name(k) for k in path), v)
        for path, v in jax.tree_util.tree_flatten_with_path(prefix)[0]
    ]
    out: list = []
    used: set[tuple[str, ...]] = set()
    for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
        names = tuple(key_name(k) for k in path)
        matching = [(p, v) for p, v in keyed if names[: len(p)] == p]
        hits = [v for _, v in matching]
        if len(hits) != 1:
            covered = sorted({"/".join(p) for p, _ in keyed})[:8]
            # JAX reads a None in the prefix as an empty subtree, not as a value
            nones = jax.tree_util.tree_flatten_with_path(prefix, is_leaf=lambda x: x is None)
            where = ["/".join(key_name(k) for k in p) for p, v in nones[0] if v is None]
            hint = f"; {where[:4]} hold None, which JAX reads as no subtree" if where else ""
            raise ValueError(
                f"{call}: the {what} tree does not match the params: it is not a prefix of "
                f"them (it gives {len(hits)} values for the leaf {'/'.join(names) or '(root)'}; "
                f"its entries are {covered}{hint}). Give one {what} per params subtree, by "
                "the params' keys."
            )
        out.append(hits[0])
        used.update(p for p, _ in matching)
    # An entry at or below a leafless node (a group's leaf hidden by partition, an empty
    # subtree) names a part of the params too.
    empty = [
        tuple(key_name(k) for k in path)
        for path, node in jax.tree_util.tree_flatten_with_path(tree, is_leaf=leafless)[0]
        if leafless(node)
    ]
    used.update(p for p, _ in keyed if any(p[: len(q)] == q for q in empty))
    unused = sorted("/".join(p) or "(root)" for p, _ in keyed if p not in used)
    if unused:  # e.g. a module since renamed or removed: its setting would apply to nothing
        raise ValueError(
            f"{call}: the {what} tree does not match the params: it is not a prefix of them "
            f"(its entries {unused[:8]} name no parameter). Give one {what} per params "
            "subtree, by the params' keys."
        )
    return out


def static_bools(call: str, values: list, tree: Any) -> list[bool]:
    """A mask's values, one per leaf of ``tree`` (``mask_fn``'s, say), as bools: Python
    or NumPy bools only, as ``mask=`` takes them; strings and numbers would be taken by
    truthiness ("no_decay" is True)."""
    for i, v in enumerate(values):
        if isinstance(v, jax.core.Tracer):
            raise TypeError(
                f"{call}: mask values must be static Python bools (the mask chooses the "
                "program's structure), not arrays computed from traced params"
            )
        if not isinstance(v, (bool, np.bool_)):
            is_array = isinstance(v, (jax.Array, np.ndarray))
            kind = f"{v.dtype}{list(v.shape)}" if is_array else repr(v)
            path = jax.tree_util.keystr(jax.tree_util.tree_flatten_with_path(tree)[0][i][0])
            raise TypeError(
                f"{call}: mask values must be static Python bools, one per parameter "
                f"(or subtree), got {kind} for {path or '(root)'}"
            )
    return [bool(v) for v in values]


T = TypeVar("T")


class ContextLocal(Generic[T]):
    """A context-local value (a ``ContextVar``) held by the module global ``name``.

    It pickles as a reference to that global: ``cloudpickle`` pickles a transform's
    closures by value, with the globals they read, and a ``ContextVar`` does not pickle.
    """

    def __init__(self, module: str, name: str, default: T) -> None:
        self._where, self._default = (module, name), default
        self._var: contextvars.ContextVar[T] = contextvars.ContextVar(
            f"{module}.{name}", default=default
        )
        _LOCALS.append(self)

    def get(self) -> T:
        return self._var.get()

    @contextlib.contextmanager
    def set_to(self, value: T) -> Iterator[None]:
        token = self._var.set(value)
        try:
            yield
        finally:
            self._var.reset(token)

    def __reduce__(self) -> tuple[Callable[[str, str], Any], tuple[str, str]]:
        return _module_global, self._where


def _module_global(module: str, name: str) -> Any:
    return getattr(importlib.import_module(module), name)


_LOCALS: list[ContextLocal[Any]] = []
"""Every context-local gradtx keeps (``ContextLocal.__init__`` adds itself)."""


def users_code(fn: Any) -> Any:
    """``fn``, a user's function that an update calls (a ``value_fn``, ``obj_fn``,
    ``grad_fn``), run with every gradtx context-local at its default: an optimizer the
    user steps inside it is a call of its own, as at top level, not a member of the
    update running it (it saw that update's 16-bit widening, or ``flatten``'s flat mode).
    The wrapper equals and hashes as ``fn`` (``_control.loop_body`` finds an eager
    loop's body again by it) and holds nothing else: no cache keeps ``fn`` alive."""
    return _UsersCode(fn) if callable(fn) and not isinstance(fn, _UsersCode) else fn


class _UsersCode:
    def __init__(self, fn: Callable[..., Any]) -> None:
        functools.update_wrapper(self, fn)  # its signature: data keywords are read from it
        self.fn = fn  # after: update_wrapper copies fn's own attributes in

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with contextlib.ExitStack() as stack:
            for local in _LOCALS:
                stack.enter_context(local.set_to(local._default))
            return self.fn(*args, **kwargs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _UsersCode) and self.fn == other.fn

    def __hash__(self) -> int:
        return hash(self.fn)  # an unhashable fn raises, as it did unwrapped


class Flag(ContextLocal[bool]):
    """A context-local switch, on for the code run (and traced) inside ``with flag():``."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(module, name, False)

    def __call__(self) -> contextlib.AbstractContextManager[None]:
        return self.set_to(True)

    def is_on(self) -> bool:
        return self.get()


# The flat-buffer mode (``gradtx.flatten``) runs transforms on 1-D buffers, so a
# transform that needs each leaf's own shape (centralisation, per-leaf norms)
# would silently compute something else there.  Such transforms call
# ``check_per_leaf`` and fail loudly instead.
flat_buffers = Flag(__name__, "flat_buffers")


def check_per_leaf(call: str, what: str, need: str = "", fix: str = "") -> None:
    """Raise if called inside ``gradtx.flatten``: ``what`` (built by ``call``) needs leaf
    shapes (or ``need``, said so), and ``fix`` says how to place it (default: outside,
    before the flattened rest)."""
    if flat_buffers.is_on():
        who = what if call == what else f"{call}: {what}"
        need = need or "works per leaf (it needs each parameter's shape)"
        fix = fix or "apply it outside: gradtx.chain(<it>, gradtx.flatten(<the rest>))"
        raise ValueError(
            f"{who} {need} and cannot run inside gradtx.flatten, which hands transforms "
            f"flat 1-D buffers; {fix}"
        )


def explicit_sharding(x: jax.Array) -> Any:
    """``x``'s sharding if its type names mesh axes (an explicit mesh), else None; ``x``
    an array or its type."""
    typeof = getattr(jax, "typeof", None)  # older JAX has no explicit meshes
    aval = x if isinstance(x, jax.core.ShapedArray) else None if typeof is None else typeof(x)
    sharding = getattr(aval, "sharding", None)
    spec = getattr(sharding, "spec", None)
    return sharding if spec is not None and any(axis is not None for axis in spec) else None


def replicated(x: jax.Array) -> jax.Array:
    """``x`` off its explicit mesh axes (concatenating leaves needs one sharding; an SVD
    needs its matrix whole)."""
    sharding = explicit_sharding(x)
    if sharding is None:
        return x
    # on x's own mesh: a bare PartitionSpec needs a `jax.set_mesh` context
    return jax.sharding.reshard(x, sharding.update(spec=jax.sharding.PartitionSpec()))


def sharded_like(x: jax.Array, like: jax.Array) -> jax.Array:
    """``x`` (replicated) on ``like``'s explicit sharding, if it has one."""
    sharding = explicit_sharding(like)
    return x if sharding is None else jax.sharding.reshard(x, sharding)

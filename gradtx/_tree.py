"""Small tree helpers shared by the transforms."""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import hashlib
import importlib
import operator
import threading
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any
from typing import Generic
from typing import TypeVar

import jax
import jax.numpy as jnp
import numpy as np

INT32_MAX = jnp.iinfo(jnp.int32).max


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


def safe_increment(count: jax.Array) -> jax.Array:
    """``count + 1``, saturating at the int32 maximum instead of wrapping."""
    # min-then-add: two plain operations (jnp.where traces a nested jit).
    return (jnp.minimum(count, INT32_MAX - 1) + 1).astype(jnp.int32)


def state_dtype(leaf_dtype: Any, requested: Any = None) -> jnp.dtype:
    """Storage dtype of an optimizer statistic for one leaf: ``requested`` if given,
    else the leaf's dtype, except float16's and bfloat16's, which are float32.
    ``requested`` names a precision where its kind is not the leaf's: a real one
    for a complex leaf gives the complex dtype (float64: complex128, others
    complex64), a complex one for a real leaf the real dtype of its parts.

    float16 cannot hold a statistic's small values: below 6.1e-5 its numbers are
    subnormal, and XLA on CPU flushes those to zero, so ``(1 - b2) g²``, a
    learning-rate-free method's first ``1e-6 · g`` or a small momentum vanish.
    bfloat16 has the range but 8 significant bits: a stored EMA whose step
    changes it by less than half an ulp (``0.999 ν`` rounds back to ``ν``)
    stops moving, so after a spike Adam's ``ν`` never decays, and a sum of
    squares stops growing after about 2⁸ terms.
    """
    dtype = jnp.dtype(leaf_dtype)
    if requested is not None:
        requested = jnp.dtype(requested)
        complex_leaf = jnp.issubdtype(dtype, jnp.complexfloating)
        if complex_leaf and not jnp.issubdtype(requested, jnp.complexfloating):
            # A real storage dtype for a complex leaf is a precision: its complex
            # counterpart (a real buffer would drop the imaginary part).
            return jnp.dtype(jnp.complex128 if requested == jnp.float64 else jnp.complex64)
        if not complex_leaf and jnp.issubdtype(requested, jnp.complexfloating):
            # and the mirror: a complex buffer for a real leaf doubles the memory, and
            # each update would cast it back to the leaf's real dtype
            return real_dtype(requested)
        return requested
    return jnp.dtype(jnp.float32) if dtype in (jnp.float16, jnp.bfloat16) else dtype


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


def wider(a: Any, b: Any) -> jnp.dtype:
    """The dtype both ``a`` and ``b`` convert to without loss (JAX's standard promotion).

    Used where low-precision statistics meet higher-precision updates; strict
    promotion forbids mixing them implicitly, so the choice is made here, once.
    """
    a, b = jnp.dtype(a), jnp.dtype(b)
    if a == b:
        return a
    with jax.numpy_dtype_promotion("standard"):
        return jnp.promote_types(a, b)


def compute_dtype(*dtypes: Any) -> jnp.dtype:
    """The dtype statistics are computed in: the widest of ``dtypes``, at least float32.

    bfloat16 rounds ``0.999`` to 1.0 and float16 flushes ``(1 - b2) g²`` to 0
    for gradients below ~1e-2, so low-precision leaves are computed in float32
    and only the stored result is rounded.  float32, float64 and complex
    leaves compute in their own dtype (bit-identical to the plain formulas).
    """
    out = jnp.dtype(jnp.float32)
    for d in dtypes:
        d = jnp.dtype(d)
        if d.itemsize >= 4 or jnp.issubdtype(d, jnp.complexfloating):
            out = wider(out, d)
    return out


def ints_as_floats(value: Any) -> Any:
    """A Python or NumPy integer value as a float64 NumPy value, before JAX sees it:
    JAX's default int refuses a Python int beyond int32 and wraps a NumPy int64 one
    without a word.  Anything else (a bool included) is returned as it is."""
    if isinstance(value, int) and not isinstance(value, bool):
        return np.float64(value)
    if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in "iu":
        return value.astype(np.float64)
    return value


def as_float(value: Any) -> jax.Array:
    """A hyperparameter as the step computes with it: in JAX's default float dtype or
    wider.  A learning rate given as an int or 16-bit array must not narrow the numbers
    formed with it (an int32 one truncated b2 to 0; a bfloat16 one rounded it)."""
    x = jnp.asarray(ints_as_floats(value))
    default = jax.dtypes.canonicalize_dtype(jnp.float64)
    dtype = wider(x.dtype, default) if jnp.issubdtype(x.dtype, jnp.floating) else default
    return x.astype(dtype)


def real_dtype(dtype: Any) -> jnp.dtype:
    """The real dtype of a (possibly complex) dtype."""
    return jnp.finfo(jnp.dtype(dtype)).dtype


def square_dtype(leaf_dtype: Any, requested: Any = None) -> jnp.dtype:
    """Storage dtype of a statistic of squares (second moments) for one leaf.

    Squares are real: a complex leaf's are stored in its real dtype, otherwise
    ``state_dtype`` (float16's squares in float32: ``(1 - b2) g²`` flushes to 0
    in float16 for gradients below ~1e-2, and the step becomes ``m / eps``).
    """
    return real_dtype(state_dtype(leaf_dtype, requested))


def squares_like(params: Any, value: Any = 0.0, dtype: Any = None) -> Any:
    """``value`` shaped like ``params`` in each leaf's ``square_dtype`` (second moments)."""
    return jax.tree.map(
        lambda p: _filled(p, value, square_dtype(jnp.result_type(p), dtype)), params
    )


def _root_with_zero_derivative_at_zero(root: Callable, n: int, doc: str) -> Callable:
    """``root`` (the n-th root) with a custom JVP whose derivative at 0 is 0."""

    @jax.custom_jvp
    def fn(x: jax.Array) -> jax.Array:
        return root(x)

    @fn.defjvp
    def _jvp(primals: tuple, tangents: tuple) -> tuple[jax.Array, jax.Array]:
        (x,), (t,) = primals, tangents
        y = fn(x)  # itself, so that the rule's own derivative is safe at 0 too
        zero = x == 0
        slope = n * jnp.where(zero, jnp.ones_like(y), y) ** (n - 1)  # d x / d y
        return y, jnp.where(zero, jnp.zeros_like(t), t / slope)

    fn.__doc__ = doc
    return fn


safe_sqrt = _root_with_zero_derivative_at_zero(
    jnp.sqrt,
    2,
    """``sqrt(x)`` with derivative 0 at ``x = 0``, for norms and the roots of statistics.

    ``jnp.sqrt``'s derivative at 0 is inf, and inf times the 0 that follows
    (a clamp, a zero leaf, the zero tangent of a sum of squares that is 0) is
    NaN: ``jax.grad`` through the norm of a zero leaf (a zero-initialised
    bias), or through Adam's denominator for a coordinate whose gradient is
    always 0, would be NaN where the true derivative is finite.  Values are
    ``jnp.sqrt``'s, bit for bit (the rule changes derivatives only, so the
    compiled step is the same).
    """,
)
safe_cbrt = _root_with_zero_derivative_at_zero(
    jnp.cbrt,
    3,
    """``cbrt(x)`` with derivative 0 at ``x = 0`` (``safe_sqrt``'s reason), values bit
    for bit ``jnp.cbrt``'s.""",
)


def div0(num: jax.Array, den: jax.Array) -> jax.Array:
    """``num / den`` with ``0 / 0 = 0``: a coordinate whose gradient has always been
    zero takes no step, also with ``eps = 0``.  NaN and ``x / 0`` stay visible."""
    # The guard goes into the denominator: selecting on the quotient instead costs
    # about 5% of a memory-bound step on CPU (measured on schedule_free_adamw).
    return num / jnp.where((num == 0) & (den == 0), jnp.ones_like(den), den)


def at_least_tiny(x: jax.Array) -> jax.Array:
    """``max(x, tiny)``: a denominator floored at its dtype's smallest normal number, so
    that ``0 / 0`` is 0 with one ``max`` (where ``div0``'s compare-and-select cost a
    compile-time goal its margin: benchmarks/NOTES.md sections 26 and 31).  Divide by it
    with ``quotient``."""
    return jnp.maximum(x, jnp.finfo(x.dtype).tiny)


@jax.custom_jvp
def quotient(num: jax.Array, den: jax.Array) -> jax.Array:
    """``num / den`` (``den`` cast to ``num``'s dtype: give both in one precision) for a
    ``den`` floored away from 0 (``at_least_tiny``), with derivatives of every order that
    never form ``1 / den²``.  JAX's rule multiplies ``num · dden`` by ``den⁻²``, which
    overflows at the floor: a zero tangent times it was NaN."""
    return num / den.astype(num.dtype)


@quotient.defjvp
def _quotient_jvp(primals: tuple, tangents: tuple) -> tuple[jax.Array, jax.Array]:
    (num, den), (t_num, t_den) = primals, tangents
    q = quotient(num, den)
    # times a reciprocal with the same care, so that reverse mode (which transposes
    # this product) and its derivatives stay off JAX's division rule too
    return q, (t_num - q * t_den.astype(q.dtype)) * _reciprocal(den).astype(q.dtype)


@jax.custom_jvp
def _reciprocal(den: jax.Array) -> jax.Array:
    return 1 / den


@_reciprocal.defjvp
def _reciprocal_jvp(primals: tuple, tangents: tuple) -> tuple[jax.Array, jax.Array]:
    (den,), (t_den,) = primals, tangents
    r = _reciprocal(den)
    return r, -(r * (t_den * r))  # t·r first: r² overflows at the floor, 0 · r does not


def ema(decay: Any, old: Any, new: Any, *, wide: bool = False) -> Any:
    """``decay * old + (1 - decay) * new`` leaf by leaf, stored in each ``old`` dtype
    (``wide``: left in the dtype it was computed in; ``stored_like`` rounds it).

    Computed in ``compute_dtype`` of both (at least float32): in bfloat16
    ``1 - 0.999`` is 0 and the EMA would never move.  With equal float32 or
    float64 dtypes this is the plain formula.
    """
    return _weighted_average(decay, old, new, wide, operator.mul, real_weights=False)


def ema_of_square(decay: Any, old: Any, grads: Any, *, wide: bool = False) -> Any:
    """``ema(decay, old, |g|²)``, the weight applied before the second factor:
    ``decay * v + ((1 - decay) g) g``, torch's ``addcmul`` order.

    ``g²`` alone overflows float32 beyond about 1.8e19; weighted first, the term
    stays finite up to about 1.8e19 / sqrt(1 - decay) (5.8e20 at 0.999), as in
    torch, whose Adam, RMSprop and Adadelta still step there.  A complex ``g``
    weighs its real and imaginary parts alike.  Elsewhere it differs from
    weighting the square by an ulp at most.
    """
    return _weighted_average(decay, old, grads, wide, _weighted_square, real_weights=True)


def _weighted_square(rest: jax.Array, g: jax.Array) -> jax.Array:
    if jnp.iscomplexobj(g):
        re, im = jnp.real(g), jnp.imag(g)
        return (rest * re) * re + (rest * im) * im
    return (rest * g) * g


def _weighted_average(
    decay: Any, old: Any, new: Any, wide: bool, term: Callable, *, real_weights: bool
) -> Any:
    """``decay * old + term(1 - decay, new)`` leaf by leaf, in ``compute_dtype`` of
    both; the statistic and its weights are real where ``real_weights`` (a second
    moment of a complex gradient), else in that dtype."""
    coefs = {}  # dtype -> (d, 1 - d), computed once per dtype rather than per leaf

    def one(o, n):
        dtype = compute_dtype(o.dtype, jnp.result_type(n))
        stat = real_dtype(dtype) if real_weights else dtype
        if stat not in coefs:
            coefs[stat] = (jnp.asarray(decay).astype(stat), one_minus(decay, stat))
        d, rest = coefs[stat]
        if o.dtype == stat and n.dtype == dtype:
            return d * o + term(rest, n)
        out = d * o.astype(stat) + term(rest, n.astype(dtype))
        return out if wide else out.astype(o.dtype)

    return jax.tree.map(one, old, new)


def stored_like(tree: Any, like: Any) -> Any:
    """Each leaf of ``tree`` in the dtype of ``like``'s leaf: a statistic computed wide,
    rounded for the state.  The step reads the unrounded one (optax's ``trace`` and
    ``scale_by_adam`` cast ``accumulator_dtype``/``mu_dtype`` for storage only)."""
    return jax.tree.map(lambda x, s: x if x.dtype == s.dtype else x.astype(s.dtype), tree, like)


def one_minus(rate: Any, dtype: Any) -> jax.Array:
    """``1 - rate`` in ``dtype``, formed in the wider of the rate's stored dtype and
    ``dtype`` and rounded once.

    torch and optax's functions form ``1 - b`` in double: a float64 rate (x64)
    gives float32 params their weight, not ``1 - f32(b)``; a 16-bit rate (as
    ``optax.inject_hyperparams`` stores it for 16-bit params) is widened first.
    """
    rate = jnp.asarray(rate)
    real = real_dtype(dtype)  # a complex statistic's weight is real
    floating = jnp.issubdtype(rate.dtype, jnp.floating)
    wide = rate.dtype if floating and jnp.finfo(rate.dtype).bits > jnp.finfo(real).bits else real
    return (1 - rate.astype(wide)).astype(dtype)


def neg_log(decay: jax.Array) -> jax.Array:
    """``-ln(decay)`` for a decay rate in [0, 1), from ``1 - decay`` (exact for decay >= 1/2),
    so a rate near 1 keeps its digits; ``inf`` at 0."""
    return -jnp.log1p(-(1 - decay))


def once(fn: Any, *operands: Any) -> Any:
    """``fn(*operands)`` for scalar operands, computed once per step.

    XLA on CPU copies a scalar computation into every fusion that reads it, once per
    leaf (RAdam's rectification, a few dozen scalar ops, was compiled 150 times on a
    150-leaf tree: 1.6x the compile time).  A conditional is never fused, so its
    results are computed once; both branches are ``fn``, the predicate only has to
    be data so that it is not folded away.  The conditional is jitted per ``fn``
    (which must be one object from call to call, a module-level function): called
    eagerly, or under ``jax.grad`` outside ``jit``, a bare conditional compiled its
    branches at every step (RAdam's eager step took 0.2 s, 60x its earlier time).
    """
    return _conditional(fn)(*(jnp.asarray(x) for x in operands))


@functools.cache
def _conditional(fn: Any) -> Any:
    def run(*operands: Any) -> Any:
        return jax.lax.cond(jnp.any(operands[0] == 0), fn, fn, *operands)

    return jax.jit(run)


def bias_correction(decay: Any, t: jax.Array) -> jax.Array:
    """``1 - decay**t`` in ``decay``'s dtype or JAX's default float, the wider (t is the
    1-based step as an int), for a decay in [0, 1].

    Formed as ``(1 - decay) / (expm1(ln decay) / expm1(t ln decay))``, to a few
    units in the last place whatever the decay (``ln decay`` as ``log1p(decay - 1)``,
    ``decay - 1`` exact), and ``1 - decay`` to the last bit at t = 1.  optax forms
    ``1 - decay**t``, whose relative error is up to ~eps / (1 - decay**t) from t = 2
    (float32: 1.5e-4 at b2 = 0.9999, 1.5e-2 at 0.999999); torch forms it in Python
    floats.  Adam's float32 error against a float64 run was 5-23x torch's float32
    error with b2 >= 0.9999 that way, and is torch's this way (benchmarks/NOTES.md
    section 20).  The compiled step is no larger: XLA keeps the expensive scalar
    ops (logarithm, expm1, divisions) out of the per-leaf fusions, as it did the
    power.
    """
    decay = as_float(decay)
    return _one_minus_power(decay, t.astype(decay.dtype))


@jax.custom_jvp
def _one_minus_power(decay: jax.Array, t: jax.Array) -> jax.Array:
    # (1 - b) (1 - b^t) / (1 - b): the quotient is 1 exactly at t = 1, so the first
    # step's correction is 1 - b to the last bit, as a difference forms it (Adam's
    # first step is then exactly -lr sign(g)).
    log_decay = jnp.log1p(decay - 1)
    return (1 - decay) / (jnp.expm1(log_decay) / jnp.expm1(t * log_decay))


@_one_minus_power.defjvp
def _one_minus_power_jvp(primals: tuple, tangents: tuple) -> tuple:
    # -t decay^(t-1): the log form's own derivative is 0 * inf = NaN at decay = 0
    # (Adam with b1 = 0).  t is a step count, never differentiated.
    decay, t = primals
    return _one_minus_power(decay, t), -t * decay ** (t - 1) * tangents[0]


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
    if fn is not None:
        prefix = fn(tree)
    prefix_leaves = jax.tree.leaves(prefix)
    prefix_def = structure(prefix)
    try:
        subtrees = prefix_def.flatten_up_to(tree)
        return [v for v, sub in zip(prefix_leaves, subtrees) for _ in jax.tree.leaves(sub)]
    except (ValueError, TypeError):
        pass
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
        self._where = (module, name)
        self._var: contextvars.ContextVar[T] = contextvars.ContextVar(
            f"{module}.{name}", default=default
        )

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


def check_per_leaf(call: str, what: str) -> None:
    """Raise if called inside ``gradtx.flatten``: ``what`` (built by ``call``) needs leaf shapes."""
    if flat_buffers.is_on():
        who = what if call == what else f"{call}: {what}"
        raise ValueError(
            f"{who} works per leaf (it needs each parameter's shape) and cannot run inside "
            "gradtx.flatten, which hands transforms flat 1-D buffers; apply it outside: "
            "gradtx.chain(<it>, gradtx.flatten(<the rest>))"
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


def cond(pred: Any, true_fn: Callable, false_fn: Callable, *operands: Any) -> Any:
    """``lax.cond``, but for an eager call (no tracer among ``pred`` and ``operands``) the
    branch taken, called as it is.  An eager ``lax.cond`` traces and compiles both
    branches again for branches built afresh at each update, and one kept from update
    to update would hold the data a user's function read when it was first traced (an
    inner's value_fn, a schedule reading a global); a Python branch reads them now."""
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((pred, operands))):
        return jax.lax.cond(pred, true_fn, false_fn, *operands)
    return (true_fn if bool(pred) else false_fn)(*operands)


_LOOP_BODIES: dict[Any, tuple[Any, Any]] = {}
_LOOP_BODIES_KEPT = 16
_LOOP_BODIES_LOCK = threading.Lock()


def loop_body(
    build: Callable[..., Any],
    config: tuple,
    operands: Any,
    probes: tuple[tuple[Callable[..., Any], tuple], ...],
) -> Any:
    """``build(*config)``: a ``lax.while_loop`` body that reads everything that may
    change between updates from its ``operands`` (the carry), the configuration (a
    ``value_fn``, static sizes) from its closure.

    ``lax.while_loop`` finds its trace and compiled program again by the body's
    identity.  A body built afresh at each update is traced and compiled
    again on every eager call (L-BFGS's loop: about a second a step), so for an eager
    call (no tracer among ``operands``) the body built last time for the same
    ``build`` and ``config`` is returned, but only while the user's functions it calls
    still trace to the same program with the same constants: a ``value_fn`` that reads
    data changing between steps (a bound method reading ``self.batch``, a global)
    traces to new constants, and the kept body's trace holds the old data.  So each
    eager call traces ``probes``, ``(fn, fn_args)`` pairs: each user function as the
    body calls it (a loss: milliseconds; the body's other parts are gradtx's own).
    One that cannot be traced so makes the whole body be traced.  (A conditional whose
    branches hold arbitrary user code runs the branch taken instead: ``cond``.)  A
    traced update builds its own: a body kept here must not close over a
    tracer.  The oldest bodies go (and the ``value_fn`` each holds) past a few.
    """
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(operands)):
        return build(*config)
    key = (build, config)
    try:
        hash(key)
    except TypeError:  # a value_fn that cannot be hashed: nothing to key on
        return build(*config)
    fresh = build(*config)
    try:
        seen = [_traced(fn, fn_args) for fn, fn_args in probes]
    except Exception:  # e.g. a function of data keywords the probe does not pass
        seen = [_traced(fresh, (operands,))]
    with _LOOP_BODIES_LOCK:
        kept = _LOOP_BODIES.pop(key, None)  # re-inserted below: the newest
        if kept is not None and len(kept[1]) == len(seen) and all(map(_same, kept[1], seen)):
            fresh = kept[0]
        while len(_LOOP_BODIES) >= _LOOP_BODIES_KEPT:
            del _LOOP_BODIES[next(iter(_LOOP_BODIES))]
        _LOOP_BODIES[key] = (fresh, seen)
    return fresh


def _traced(fn: Callable[..., Any], args: tuple) -> tuple[str, list]:
    """``fn``'s program as text and its constants: JAX arrays as they are (immutable),
    NumPy ones as a digest of their bytes (one the caller changes in place would
    compare equal to itself; a copy would hold a dataset once per kept body)."""
    # a fresh function: make_jaxpr keeps traces by the function (a bound method is
    # equal to the last one), and the kept trace holds the old data
    closed = jax.make_jaxpr(lambda *a: fn(*a))(*args)
    consts = [_digest(c) if isinstance(c, np.ndarray) else c for c in closed.consts]
    return str(closed.jaxpr), consts


def _digest(x: np.ndarray) -> tuple:
    data = np.ascontiguousarray(x)
    return x.shape, x.dtype.str, hashlib.blake2b(data.view(np.uint8).data).digest()


def _same(a: tuple[str, list], b: tuple[str, list]) -> bool:
    """The same program and the same constants, bit for bit (a NaN equals itself, so data
    with one keeps its body; -0.0 differs from 0.0, as copysign tells them apart)."""

    def same(x: Any, y: Any) -> bool:
        if x is y:
            return True
        if isinstance(x, tuple) or isinstance(y, tuple):
            return x == y
        if any(isinstance(z, jax.Array) and z.is_deleted() for z in (x, y)):
            return False  # the old batch, donated or deleted since: traced afresh
        keys = [
            jax.dtypes.issubdtype(getattr(z, "dtype", None), jax.dtypes.prng_key) for z in (x, y)
        ]
        if any(keys):  # a typed key has no NumPy form: the same kind of key, the same bits
            if not all(keys) or x.dtype != y.dtype:
                return False
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        try:
            u, v = np.asarray(x), np.asarray(y)
        except TypeError:  # another type with no NumPy form: traced afresh
            return False
        return u.shape == v.shape and u.dtype == v.dtype and _digest(u) == _digest(v)

    return a[0] == b[0] and len(a[1]) == len(b[1]) and all(map(same, a[1], b[1]))


def split_data(extra: dict[str, Any]) -> tuple[dict[str, Any], tuple]:
    """``extra`` as ``(arrays, fixed)``: the keywords whose leaves are all arrays (loop
    operands) and the rest as name-value pairs (a ``value_fn``, a flag or a string a
    loss branches on in Python: part of ``loop_body``'s configuration)."""

    def arrays_only(value: Any) -> bool:
        leaves = jax.tree.leaves(value)
        kinds = (jax.Array, np.ndarray, np.generic)
        return bool(leaves) and all(isinstance(x, kinds) for x in leaves)

    arrays = {k: v for k, v in extra.items() if arrays_only(v)}
    return arrays, tuple((k, v) for k, v in extra.items() if k not in arrays)

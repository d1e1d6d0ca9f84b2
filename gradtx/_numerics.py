"""Elementwise numerics with safe derivatives: roots, guarded quotients, moving averages, bias corrections."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gradtx._dtypes import INT32_MAX
from gradtx._dtypes import as_float
from gradtx._dtypes import compute_dtype
from gradtx._dtypes import real_dtype


def safe_increment(count: jax.Array) -> jax.Array:
    """``count + 1``, saturating at the int32 maximum instead of wrapping."""
    # min-then-add: two plain operations (jnp.where traces a nested jit).
    return (jnp.minimum(count, INT32_MAX - 1) + 1).astype(jnp.int32)


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


def at_least_tiny_over_epsneg(x: jax.Array) -> jax.Array:
    """``max(x, tiny / epsneg)`` (2^-102 in float32, 2^-969 in float64): a floor that
    stays normal when XLA multiplies it by a factor in [epsneg, 1].  XLA rewrites
    ``(m / c) / den`` into ``m / (c · den)``; with ``c`` a bias correction ``1 - b^t``
    and ``den`` floored at ``tiny``, ``c · tiny`` flushed to 0 on CPU, and the floor's
    ``0 / 0 = 0`` became NaN (Adamax, jitted).  ``c`` is at least epsneg for a ``b``
    below 1 in ``den``'s precision (a float64 ``b`` closer to 1 over float32 leaves,
    under x64, can still flush)."""
    info = jnp.finfo(x.dtype)
    return jnp.maximum(x, info.tiny / info.epsneg)


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

"""Which dtype each buffer is stored in and each computation runs in."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

INT32_MAX = int(np.iinfo(np.int32).max)
"""The largest step count: counts are int32 (a scan's carry keeps one dtype)."""


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


def is_16_bit_float(dtype: Any) -> bool:
    """bfloat16 or float16 (ml_dtypes' 8-bit floats too): a float narrower than float32."""
    return jnp.issubdtype(dtype, jnp.floating) and jnp.dtype(dtype).itemsize < 4


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

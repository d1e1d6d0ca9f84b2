"""Tree-wide sums: the overflow-proof norm (``tree_norm_scaled``) against an exact one."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradtx.transforms._sums import tree_norm_scaled


def _exact(leaves):
    """The Euclidean norm in Python floats, by ``math.hypot`` (no overflow, no underflow
    of the squares), of the values as stored."""
    return math.hypot(*(float(v) for x in leaves for v in np.asarray(x, np.float64).ravel()))


F32_CASES = {
    # the plain sum of squares overflows float32; the small entries must not vanish
    # from a norm they still count in, nor the sum turn inf
    "huge": [np.array([3e30, -4e30], np.float32), np.array([[1e25], [2.0]], np.float32)],
    "huge, many": [np.full(1000, 1e20, np.float32), np.array([7e19], np.float32)],
    # each square below float32's smallest normal number flushes to 0
    "tiny": [np.array([3e-25, -4e-25], np.float32), np.array([[1e-30]], np.float32)],
    "tiny and one normal": [np.array([3e-20, 4e-20], np.float32), np.array([1e-19], np.float32)],
    "zero": [np.zeros(3, np.float32), np.zeros((2, 2), np.float32)],
    "ordinary": [np.array([3.0, -4.0], np.float32), np.array([[12.0]], np.float32)],
}


@pytest.mark.parametrize("case", sorted(F32_CASES))
def test_float32_norm_is_the_exact_norm_rounded(case):
    leaves = [jnp.asarray(x) for x in F32_CASES[case]]
    got = float(jax.jit(lambda x: tree_norm_scaled(x, jnp.float32))(leaves))
    want = _exact(leaves)
    assert math.isfinite(got)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=0)


@pytest.mark.parametrize("case", sorted(F32_CASES))
def test_float32_norm_of_constants_under_jit(case):
    """Leaves closed over by a jitted function are constants that XLA folds (as params
    closed over in a jitted training loop are); the folded norm is the same number."""
    leaves = [jnp.asarray(x) for x in F32_CASES[case]]
    got = float(jax.jit(lambda: tree_norm_scaled(leaves, jnp.float32))())
    np.testing.assert_allclose(got, _exact(leaves), rtol=2e-6, atol=0)


@pytest.mark.parametrize("scale", [1e-160, 1.0, 1e160, 1e300])
def test_float64_norm_at_the_ends_of_the_range(x64, scale):
    leaves = [jnp.array([3.0, -4.0]) * scale, jnp.array([[12.0], [0.5]]) * scale]
    got = float(tree_norm_scaled(leaves, jnp.float64))
    np.testing.assert_allclose(got, _exact(leaves), rtol=1e-15, atol=0)


def test_an_infinite_entry_gives_inf_and_a_nan_entry_nan():
    inf = [jnp.array([1.0, jnp.inf]), jnp.array([2.0])]
    nan = [jnp.array([1e30, jnp.nan]), jnp.array([2.0])]
    assert float(tree_norm_scaled(inf, jnp.float32)) == math.inf
    assert math.isnan(float(tree_norm_scaled(nan, jnp.float32)))


@pytest.mark.parametrize("scale", [1e-25, 1.0, 1e25])
def test_float32_derivative_at_the_ends_of_the_range(scale):
    # the derivative x / ‖x‖ through the scaled branch: its intermediates must not
    # under- or overflow where the norm itself does not
    x = [jnp.array([3.0, -4.0], jnp.float32) * scale, jnp.array([[12.0]], jnp.float32) * scale]
    got = jax.grad(lambda x: tree_norm_scaled(x, jnp.float32))(x)
    for g, leaf in zip(got, x):
        np.testing.assert_allclose(g, np.asarray(leaf, np.float64) / (13 * scale), rtol=2e-6)

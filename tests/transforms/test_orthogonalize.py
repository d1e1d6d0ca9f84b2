"""orthogonalize (Newton-Schulz) against torch's own helper; scale_by_shape; interpolate_gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from optax.contrib._muon import orthogonalize_via_newton_schulz
from torch.optim._muon import _zeropower_via_newtonschulz

import gradtx


@pytest.fixture
def torch_in_float64(monkeypatch):
    """torch's helper with its bfloat16 cast removed: its arithmetic in the input's float64."""
    monkeypatch.setattr(torch.Tensor, "bfloat16", lambda self, *a, **k: self.clone())


def _ours(m, **kwargs):
    tx = gradtx.orthogonalize(**kwargs)
    return np.asarray(tx.update(jnp.asarray(m), tx.init(jnp.asarray(m)))[0])


@pytest.mark.parametrize("shape", [(3, 7), (7, 3), (5, 5), (1, 4), (6, 1)])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_torch_helper_in_float64(x64, torch_in_float64, shape, seed):
    rng = np.random.default_rng(seed)
    m = rng.normal(size=shape) * rng.uniform(1e-3, 10)
    coefficients = (3.4445, -4.7750, 2.0315) if seed == 0 else tuple(rng.uniform(-3, 3, 3))
    steps, eps = int(rng.integers(1, 8)), float(rng.uniform(1e-8, 1e-2))
    theirs = _zeropower_via_newtonschulz(torch.tensor(m), coefficients, steps, eps).numpy()
    assert theirs.dtype == np.float64  # the cast is really gone
    ours = _ours(m, ns_coefficients=coefficients, ns_steps=steps, eps=eps)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_eps_is_a_floor_of_the_norm(x64, torch_in_float64):
    m = np.full((2, 3), 1e-6)  # ‖M‖ = 2.4e-6 < eps: M / eps
    theirs = _zeropower_via_newtonschulz(torch.tensor(m), (3.4445, -4.7750, 2.0315), 5, 1e-3)
    np.testing.assert_allclose(_ours(m, eps=1e-3), theirs.numpy(), rtol=1e-10)


@pytest.mark.parametrize("shape", [(16, 8), (8, 32), (64, 32)])
def test_bfloat16_like_torch(shape):
    # torch runs the iteration in bfloat16, each matrix product accumulated in float32
    # and rounded once; so does dtype=bfloat16.  Up to the order of the float32
    # sums, the results are the same bfloat16 numbers.
    m = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    theirs = _zeropower_via_newtonschulz(torch.tensor(m), (3.4445, -4.7750, 2.0315), 5, 1e-7)
    theirs = theirs.float().numpy()
    ours = _ours(m, dtype=jnp.bfloat16)
    assert ours.dtype == np.float32  # the leaf's dtype; the values are bfloat16 numbers
    differ = ours != theirs
    assert np.mean(differ) < 0.05
    # by a bfloat16 ulp of the iteration's terms (entries ~0.1: 2^-11), before they cancel
    assert np.max(np.abs(ours - theirs)) <= 2**-10


@settings(max_examples=12, deadline=None)
@given(
    rows=st.integers(1, 12),
    cols=st.integers(1, 12),
    seed=st.integers(0, 2**31 - 1),
)
def test_singular_values_land_near_one(rows, cols, seed):
    with jax.enable_x64(True):
        m = np.random.default_rng(seed).normal(size=(rows, cols))
        s = np.linalg.svd(m, compute_uv=False)
        if s[-1] < 1e-3 * np.sqrt(np.sum(s**2)):
            return  # nearly singular: the iteration needs more steps than given here
        # Jordan's quintic, enough steps: every singular value in its band around 1
        sv = np.linalg.svd(_ours(m, ns_steps=12), compute_uv=False)
        assert np.all((sv > 0.6) & (sv < 1.25)), sv
        # the cubic (1.5, -0.5, 0) converges to the polar factor: singular values 1
        polar = _ours(m, ns_coefficients=(1.5, -0.5, 0.0), ns_steps=60)
        np.testing.assert_allclose(np.linalg.svd(polar, compute_uv=False), 1.0, atol=1e-8)
        u, _, vt = np.linalg.svd(m, full_matrices=False)
        np.testing.assert_allclose(polar, u @ vt, atol=1e-7)


def test_table_of_coefficients_runs_one_iteration_per_row(x64):
    # optax's form (its "dion" preset): one row per iteration, eps added to the norm
    rng = np.random.default_rng(5)
    m = rng.normal(size=(6, 4))
    table = ((4.0848, -6.8946, 2.9270), (3.9505, -6.3029, 2.6377), (3.7418, -5.5913, 2.3037))
    with jax.numpy_dtype_promotion("standard"):
        theirs = orthogonalize_via_newton_schulz(jnp.asarray(m), jnp.asarray(table), 3, eps=1e-8)
    ours = _ours(m, ns_coefficients=table, ns_steps=3, eps=1e-8, eps_mode="add")
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match=r"gradtx.orthogonalize\(ns_coefficients=.*ns_steps >= 3"):
        gradtx.orthogonalize(table, ns_steps=2)


def test_adaptive_scales_by_the_inner_product(x64):
    m = np.random.default_rng(6).normal(size=(3, 5))
    o = _ours(m, eps_mode="add")
    np.testing.assert_allclose(_ours(m, eps_mode="add", adaptive=True), np.sum(m * o) * o)


def test_other_leaves_are_an_error_naming_them():
    tx = gradtx.orthogonalize()
    with pytest.raises(ValueError, match=r"leaf \['b'\] has shape \(3,\).*gradtx.partition"):
        tx.init({"w": jnp.ones((2, 3)), "b": jnp.ones(3)})
    with pytest.raises(ValueError, match=r"orthogonalize.* works per leaf"):
        flat = gradtx.flatten(tx)
        flat.update({"w": jnp.ones((2, 3))}, flat.init({"w": jnp.ones((2, 3))}))


@pytest.mark.parametrize(
    "bad, exc",
    [((1.0, 2.0), TypeError), (((1.0, 2.0, 3.0), (1.0,)), TypeError), ((1.0, 2.0, np.nan), ValueError),
     (3.0, TypeError), (jnp.ones(2), TypeError)],
)  # fmt: skip
def test_bad_coefficients(bad, exc):
    with pytest.raises(exc, match=r"^gradtx.orthogonalize\(ns_coefficients(\[2\])?="):
        gradtx.orthogonalize(bad)


def test_scale_by_shape_layouts():
    u = jnp.ones((2, 8))
    for layout, factor in (("in_out", 2.0), ("out_in", 1.0)):
        tx = gradtx.scale_by_shape(layout=layout)
        np.testing.assert_allclose(tx.update(u, tx.init(u))[0], factor * u)
    tx = gradtx.scale_by_shape(0.2, layout="out_in")
    np.testing.assert_allclose(tx.update(u, tx.init(u))[0], 0.2 * np.sqrt(8) * u, rtol=1e-6)


def test_interpolate_gradient_reads_the_chains_gradient():
    g = jnp.array([1.0, -2.0])
    tx = gradtx.chain(gradtx.scale(3.0), gradtx.add_momentum(0.5, ema=True),
                      gradtx.interpolate_gradient(0.25))  # fmt: skip
    u, _ = tx.update(g, tx.init(g))
    np.testing.assert_allclose(u, 0.25 * (0.5 * 3 * g) + 0.75 * 3 * g)


@pytest.mark.parametrize("adaptive", [False, True])
def test_a_real_dtype_names_the_precision_of_a_complex_leaf(x64, adaptive):
    rng = np.random.default_rng(8)
    m = rng.normal(size=(4, 3)) + 1j * rng.normal(size=(4, 3))
    cubic = dict(ns_coefficients=(1.5, -0.5, 0.0), ns_steps=60, adaptive=adaptive)
    # float64 for a complex128 leaf: the iteration in complex128, whose polar factor is U Vᴴ
    u, _, vh = np.linalg.svd(m, full_matrices=False)
    polar = u @ vh
    expected = np.vdot(polar, m).conjugate() * polar if adaptive else polar
    np.testing.assert_allclose(_ours(m, dtype=jnp.float64, **cubic), expected, rtol=1e-10)
    # float32 and bfloat16 for a complex64 leaf: complex64, the imaginary part kept
    m64 = m.astype(np.complex64)
    plain = _ours(m64, **cubic)
    for dtype in (jnp.float32, jnp.bfloat16):
        np.testing.assert_array_equal(_ours(m64, dtype=dtype, **cubic), plain)

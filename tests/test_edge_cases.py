"""Edge cases never produce NaN; dtypes never drift; counts saturate; odd trees work.

Every test runs over the whole registry (``tests/registry.py``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from gradtx._tree import INT32_MAX
from tests.registry import IDS, REGISTRY, update_fn

COMPLEX = [c for c in REGISTRY if c.complex_ok]


def _params(dtype=jnp.float32):
    return {"w": jnp.asarray([[1.0, -2.0, 0.5], [0.25, 3.0, -1.0]], dtype), "b": jnp.ones(2, dtype)}


def _steps(opt, params, grads, n, update=None):
    """``n`` steps in one jitted scan with gradients ``grads(i)``; returns the last outputs."""
    update = update or opt.update

    @jax.jit
    def run(params):
        def body(carry, i):
            _, state, params = carry
            u, state = update(grads(i), state, params)
            return (u, state, gradtx.apply_updates(params, u)), None

        state = opt.init(params)
        u0 = jax.tree.map(jnp.zeros_like, params)
        return jax.lax.scan(body, (u0, state, params), jnp.arange(n))[0]

    return run(params)


def _no_nan(tree):
    for leaf in jax.tree.leaves(tree):
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            assert not bool(jnp.any(jnp.isnan(leaf))), tree


def _finite(tree):
    for leaf in jax.tree.leaves(tree):
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            assert bool(jnp.all(jnp.isfinite(leaf))), tree


# ------------------------------------------------------------ NaN never appears


@pytest.mark.parametrize("case", REGISTRY, ids=IDS)
def test_zero_huge_and_tiny_gradients(case):
    # One leaf per regime (the optimizers act leaf by leaf), 50 steps.
    params = {"zero": jnp.ones(3), "huge": jnp.ones(3), "tiny": jnp.ones(3)}
    signs = jnp.asarray([1.0, -1.0, 0.5], jnp.float32)

    def grads(i):
        s = signs[i % 3]
        return {"zero": jnp.zeros(3), "huge": jnp.full(3, 1e30) * s, "tiny": jnp.full(3, 1e-30) * s}

    opt = case.make(case.lr)
    u, state, out = _steps(opt, params, grads, 50, update_fn(case, opt))
    _no_nan((u, state, out))
    _finite(out)
    _finite((u["zero"], u["tiny"], out["zero"], out["tiny"]))
    # g² overflows float32 for |g| > ~1.8e19 (as in PyTorch and optax): an
    # adaptive optimizer's second moment for the "huge" leaf may be inf and its
    # step 0, but never NaN.


@pytest.mark.parametrize("case", REGISTRY, ids=IDS)
def test_counts_saturate_at_int32_max(case):
    opt = case.make(case.lr)
    params = _params()
    state = opt.init(params)

    def is_count(path):
        return jax.tree_util.keystr(path).endswith(".count")

    def counts(state):
        flat = jax.tree_util.tree_leaves_with_path(state)
        return [int(x) for path, x in flat if is_count(path)]

    assert counts(state), "every optimizer counts its steps"
    # Tree surgery: every step counter two steps away from the int32 maximum.
    state = jax.tree_util.tree_map_with_path(
        lambda path, x: x + (INT32_MAX - 2) if is_count(path) else x, state
    )
    update = jax.jit(update_fn(case, opt))
    grads = jax.tree.map(lambda p: p * 0.5 - 0.1, params)
    for _ in range(5):
        u, state = update(grads, state, params)
        _finite((u, state))
        assert any(bool(jnp.any(u != 0)) for u in jax.tree.leaves(u))
    assert all(c == INT32_MAX for c in counts(state)), counts(state)


# ------------------------------------------------------------------- complex


def _conj_grad(f):
    # JAX's grad of a real loss of complex z is conj(∂f/∂Re + i ∂f/∂Im); descent
    # uses its conjugate (the convention optax documents).
    return lambda p: jax.tree.map(jnp.conj, jax.grad(f)(p))


@pytest.mark.parametrize("case", COMPLEX, ids=[c.id for c in COMPLEX])
def test_complex_params_converge(case):
    target = jnp.asarray([1.0 + 2.0j, -0.5 + 0.25j], jnp.complex64)

    def loss(p):
        return jnp.sum(jnp.abs(p["z"] - target) ** 2)

    opt = case.make(case.lr)
    params = {"z": jnp.zeros(2, jnp.complex64)}
    kinds = jax.tree.map(lambda x: x.dtype, opt.init(params))
    grad = _conj_grad(loss)

    @jax.jit
    def run(params):
        def body(carry, _):
            params, state = carry
            u, state = opt.update(grad(params), state, params)
            return (gradtx.apply_updates(params, u), state), None

        return jax.lax.scan(body, (params, opt.init(params)), None, length=case.steps)[0]

    params, state = run(params)
    assert params["z"].dtype == jnp.complex64
    assert jax.tree.map(lambda x: x.dtype, state) == kinds
    # Weight decay shifts the optimum by O(weight_decay).
    np.testing.assert_allclose(params["z"], target, atol=2e-3)


@pytest.mark.parametrize(
    ("ours", "theirs", "tol"),
    [
        (gradtx.sgd(0.1, 0.9, nesterov=True), optax.sgd(0.1, 0.9, nesterov=True), 2e-5),
        (gradtx.adam(0.1), optax.adam(0.1), 2e-5),
        (gradtx.adamw(0.1, weight_decay=0.1), optax.adamw(0.1, weight_decay=0.1), 2e-5),
        (gradtx.amsgrad(0.1, max_of="v_hat"), optax.amsgrad(0.1), 2e-5),
        (
            gradtx.adagrad(0.1, eps=1e-7, eps_in_sqrt=True),
            optax.adagrad(0.1, initial_accumulator_value=0.0, eps=1e-7),
            2e-5,
        ),
        (gradtx.rmsprop(0.1, 0.9, eps_in_sqrt=True), optax.rmsprop(0.1, decay=0.9), 2e-5),
        # The rectifier's float32 rounding differs from optax's by ~1e-4 for
        # real params too (checked); the complex run is no worse.
        (gradtx.radam(0.1, compare=">=", eps_on="v_hat"), optax.radam(0.1), 2e-4),
    ],
    ids=["sgd", "adam", "adamw", "amsgrad", "adagrad", "rmsprop", "radam"],
)
def test_complex_matches_optax(ours, theirs, tol):
    rng = np.random.default_rng(0)

    def cplx(*shape):
        return jnp.asarray(rng.normal(size=shape) + 1j * rng.normal(size=shape), jnp.complex64)

    params = {"z": cplx(3, 2)}
    grads = [{"z": cplx(3, 2)} for _ in range(10)]
    a, b = params, params
    sa, sb = ours.init(a), None
    with jax.numpy_dtype_promotion("standard"):  # optax is not strict-promotion clean
        sb = theirs.init(b)
    for g in grads:
        ua, sa = ours.update(g, sa, a)
        a = gradtx.apply_updates(a, ua)
        with jax.numpy_dtype_promotion("standard"):
            ub, sb = theirs.update(g, sb, b)
            b = optax.apply_updates(b, ub)
        np.testing.assert_allclose(a["z"], b["z"], rtol=tol, atol=tol / 10)


def test_sgd_on_complex_equals_sgd_on_real_pairs():
    rng = np.random.default_rng(1)
    z = rng.normal(size=4) + 1j * rng.normal(size=4)
    gs = [rng.normal(size=4) + 1j * rng.normal(size=4) for _ in range(8)]
    opt = gradtx.sgd(0.1, 0.9, nesterov=True, weight_decay=0.01)
    pc = {"z": jnp.asarray(z, jnp.complex64)}
    pr = {"re": jnp.asarray(z.real, jnp.float32), "im": jnp.asarray(z.imag, jnp.float32)}
    sc, sr = opt.init(pc), opt.init(pr)
    for g in gs:
        uc, sc = opt.update({"z": jnp.asarray(g, jnp.complex64)}, sc, pc)
        gr = {"re": jnp.asarray(g.real, jnp.float32), "im": jnp.asarray(g.imag, jnp.float32)}
        ur, sr = opt.update(gr, sr, pr)
        pc, pr = gradtx.apply_updates(pc, uc), gradtx.apply_updates(pr, ur)
        np.testing.assert_allclose(pc["z"].real, pr["re"], rtol=1e-6)
        np.testing.assert_allclose(pc["z"].imag, pr["im"], rtol=1e-6)


# ------------------------------------------------------------------ odd trees


@pytest.mark.parametrize("case", REGISTRY, ids=IDS)
def test_none_empty_and_scalar_leaves(case):
    opt = case.make(case.lr)
    params = {
        "w": jnp.ones(3),
        "frozen": None,
        "b": (jnp.ones(2), None),
        "empty": {},
        "s": jnp.float32(1.0),
        "py": 1.0,  # Python floats are leaves too
    }
    grads = {
        "w": jnp.full(3, 0.5),
        "frozen": None,
        "b": (jnp.full(2, -0.5), None),
        "empty": {},
        "s": jnp.float32(0.5),
        "py": 0.5,
    }
    u, _, out = _steps(opt, params, lambda i: grads, 3, update_fn(case, opt))
    assert u["frozen"] is None and u["b"][1] is None and u["empty"] == {}
    assert out["frozen"] is None and out["b"][1] is None and out["empty"] == {}
    _finite(out)
    assert bool(jnp.all(out["w"] < 1)) and bool(jnp.all(out["b"][0] > 1))
    # A scalar leaf, a Python float and an element of a vector all move alike.
    assert out["s"].shape == () and out["s"].dtype == jnp.float32
    np.testing.assert_allclose(out["s"], out["w"][0], rtol=1e-6)
    np.testing.assert_allclose(out["py"], out["s"], rtol=1e-6)


@pytest.mark.parametrize("case", REGISTRY, ids=IDS)
def test_empty_tree(case):
    opt = case.make(case.lr)
    u, state, out = _steps(opt, {}, lambda i: {}, 2, update_fn(case, opt))
    assert u == {} and out == {}
    _finite(state)

"""Edge cases never produce NaN; dtypes never drift; counts saturate; odd trees work.

Every test runs over the whole registry (``tests/registry.py``).
"""

from __future__ import annotations

import inspect
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import gradtx
from gradtx._dtypes import INT32_MAX
from tests.registry import IDS
from tests.registry import REGISTRY
from tests.registry import local_objective
from tests.registry import signature

COMPLEX = [c for c in REGISTRY if c.complex_ok]
# One leaf per regime below only keeps the regimes apart for optimizers that act
# leaf by leaf.  L-BFGS takes inner products over all leaves: |g|² of a 1e30
# gradient overflows float32 and torch.optim.LBFGS turns NaN there too;
# tests/optimizers/test_lbfgs.py checks each regime on its own, and that NaN.
LEAFWISE = [c for c in REGISTRY if c.leafwise]
TREEWIDE = [c for c in REGISTRY if not c.leafwise and not c.id.startswith("lbfgs")]


def _params(dtype=jnp.float32):
    return {"w": jnp.asarray([[1.0, -2.0, 0.5], [0.25, 3.0, -1.0]], dtype), "b": jnp.ones(2, dtype)}


def _steps(opt, params, grads, n, update=None):
    """``n`` steps in one jitted scan with gradients ``grads(i)``; returns the last outputs.

    ``update``: ``case.update(opt)`` for a case whose update needs the loss."""
    return jax.jit(lambda params: _scan(opt, params, grads, n, update))(params)


def _scan(opt, params, grads, n, update=None):
    """``_steps``' scan, unjitted: to put several runs in one program (one compile)."""
    update = update or opt.update

    def body(carry, i):
        _, state, params = carry
        u, state = update(grads(i), state, params)
        return (u, state, gradtx.apply_updates(params, u)), None

    u0 = jax.tree.map(jnp.zeros_like, params)
    return jax.lax.scan(body, (u0, opt.init(params), params), jnp.arange(n))[0]


def _no_nan(tree):
    for leaf in jax.tree.leaves(tree):
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            assert not bool(jnp.any(jnp.isnan(leaf))), tree


def _finite(tree):
    for leaf in jax.tree.leaves(tree):
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            assert bool(jnp.all(jnp.isfinite(leaf))), tree


# ------------------------------------------------------------ NaN never appears


@pytest.mark.parametrize("case", LEAFWISE, ids=[c.id for c in LEAFWISE])
def test_zero_huge_and_tiny_gradients(case):
    # One leaf per regime (the optimizers act leaf by leaf), 50 steps.
    params = {"zero": jnp.ones(3), "huge": jnp.ones(3), "tiny": jnp.ones(3)}
    signs = jnp.asarray([1.0, -1.0, 0.5], jnp.float32)

    def grads(i):
        s = signs[i % 3]
        return {"zero": jnp.zeros(3), "huge": jnp.full(3, 1e30) * s, "tiny": jnp.full(3, 1e-30) * s}

    opt = case.make(case.lr)
    u, state, out = _steps(opt, params, grads, 50, case.update(opt))
    _no_nan((u, state, out))
    _finite(out)
    _finite((u["zero"], u["tiny"], out["zero"], out["tiny"]))
    # (1 - b2) g² overflows float32 for |g| beyond ~1e21: an adaptive optimizer's
    # second moment for the "huge" leaf may be inf and its step 0, but never NaN.


@pytest.mark.parametrize("case", TREEWIDE, ids=[c.id for c in TREEWIDE])
def test_zero_huge_and_tiny_gradients_one_tree_each(case):
    # A tree-wide quantity (a norm, a distance, a loss ratio) would let one leaf's regime
    # mask another's, so each regime runs as its own tree (three runs, one program).
    signs = jnp.asarray([1.0, -1.0, 0.5], jnp.float32)
    values = {"zero": 0.0, "huge": 1e30, "tiny": 1e-30}
    opt = case.make(case.lr)

    def runs():
        return {
            name: _scan(
                opt,
                {name: jnp.ones(3)},
                lambda i, n=name, v=v: {n: jnp.full(3, v) * signs[i % 3]},
                50,
                case.update(opt),
            )
            for name, v in values.items()
        }

    out = jax.jit(runs)()
    for name, (u, state, params) in out.items():
        if case.id.startswith("sam") and name == "tiny":
            # The direction's norm: Σ g² underflows float32 below ~1e-19, so g / 0 is inf
            # and the params NaN, as optax's normalize gives (docs/errors.md, "Numbers").
            assert bool(jnp.all(jnp.isnan(params[name])))
            continue
        _no_nan((u, state, params))
        if name != "huge":
            _finite((u, params))


T = torch.optim
HUGE_VS_TORCH = {
    "adam": (lambda: gradtx.adam(1e-3), lambda ps: T.Adam(ps, 1e-3)),
    "adamw": (lambda: gradtx.adamw(1e-3), lambda ps: T.AdamW(ps, 1e-3)),
    "amsgrad": (lambda: gradtx.amsgrad(1e-3), lambda ps: T.Adam(ps, 1e-3, amsgrad=True)),
    "radam": (lambda: gradtx.radam(1e-3), lambda ps: T.RAdam(ps, 1e-3)),
    "rmsprop": (lambda: gradtx.rmsprop(1e-3), lambda ps: T.RMSprop(ps, 1e-3)),
    "adadelta": (lambda: gradtx.adadelta(1.0), lambda ps: T.Adadelta(ps, 1.0)),
}


@pytest.mark.parametrize("name", sorted(HUGE_VS_TORCH))
def test_huge_float32_gradients_step_as_torch(name):
    """Between ~1.8e19 (where g² overflows float32) and ~5.8e20 (where (1 - b2) g²
    does), torch's Adam, RMSprop and Adadelta still step: they weight before squaring
    and bias-correct after the root.  gradtx's step was 0 there (NaN-free, but not
    torch's numbers).  Float32 on both sides, 6 steps."""
    ours, theirs = HUGE_VS_TORCH[name]
    g = np.asarray([1e20, -3e19, 1e19, 2.0], np.float32)
    opt = ours()
    params = {"w": jnp.zeros(4, jnp.float32)}
    state = opt.init(params)
    w = torch.zeros(4, dtype=torch.float32, requires_grad=True)
    ref = theirs([w])
    for i in range(6):
        grad = g * np.float32(1.0 if i % 3 else 0.5)
        u, state = opt.update({"w": jnp.asarray(grad)}, state, params)
        params = gradtx.apply_updates(params, u)
        w.grad = torch.from_numpy(grad.copy())
        ref.step()
        np.testing.assert_allclose(params["w"], w.detach().numpy(), rtol=2e-6, atol=0)
    assert bool(jnp.all(params["w"] != 0))


def test_rprop_reads_the_sign_of_gradients_whose_product_is_subnormal():
    """g · prev below float32's smallest normal number is flushed to 0 by XLA on CPU,
    and the step size stopped growing for gradients below ~1e-19; torch's product
    keeps them.  Float32, 5 steps, against torch."""
    g = np.asarray([1e-20, -1e-19, 3e-21, 1e-10], np.float32)
    opt = gradtx.rprop(0.01)
    params = {"w": jnp.zeros(4, jnp.float32)}
    state = opt.init(params)
    w = torch.zeros(4, dtype=torch.float32, requires_grad=True)
    ref = T.Rprop([w], 0.01)
    for _ in range(5):
        u, state = opt.update({"w": jnp.asarray(g)}, state, params)
        params = gradtx.apply_updates(params, u)
        w.grad = torch.from_numpy(g.copy())
        ref.step()
    np.testing.assert_allclose(params["w"], w.detach().numpy(), rtol=1e-6, atol=0)
    np.testing.assert_allclose(np.abs(params["w"]), 0.074416, rtol=1e-6)  # Δ grew 4 times


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
    update = jax.jit(case.update(opt))
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
    # Structure, shapes and dtypes compared leaf by leaf: a gradtx schedule in the state
    # compares by identity (its fields may be arrays), so == on mapped trees cannot.
    before = signature(opt.init(params))
    grad = _conj_grad(loss)

    @jax.jit
    def run(params):
        def body(carry, _):
            params, state = carry
            u, state = opt.update(grad(params), state, params, **case.keywords(loss, params))
            return (gradtx.apply_updates(params, u), state), None

        return jax.lax.scan(body, (params, opt.init(params)), None, length=case.steps)[0]

    params, state = run(params)
    assert params["z"].dtype == jnp.complex64
    assert signature(state) == before
    # Weight decay shifts the optimum by O(weight_decay).
    np.testing.assert_allclose(params["z"], target, atol=2e-3)


REAL_ONLY = {
    "lbfgs": lambda: gradtx.lbfgs(),
    "prodigy": lambda: gradtx.prodigy(),
    "dadapt_adamw": lambda: gradtx.dadapt_adamw(),
    "cocob": lambda: gradtx.cocob(),
    "adopt": lambda: gradtx.adopt(1e-3),
    "sophia": lambda: gradtx.sophia(1e-3),
    "galore": lambda: gradtx.galore(1e-3),
    "mechanize": lambda: gradtx.mechanize(gradtx.sgd(0.1)),
}


# Their trust ratio holds them short of the test's target in real arithmetic too.
SHORT_OF_THE_TARGET = {"lamb", "lars"}


def test_every_optimizer_is_run_on_complex_params_or_refuses_them():
    """A new optimizer whose rule is for real numbers only must refuse complex params
    (``_update_checks.check_real``) and join REAL_ONLY; any other is run on them above."""
    unchecked = {c.name for c in REGISTRY if not c.complex_ok}
    assert unchecked <= set(REAL_ONLY) | SHORT_OF_THE_TARGET, (
        f"{sorted(unchecked - set(REAL_ONLY) - SHORT_OF_THE_TARGET)}: give the case "
        "complex_ok=True in tests/registry.py, or refuse complex params and add it to REAL_ONLY"
    )


@pytest.mark.parametrize("name", sorted(REAL_ONLY))
def test_real_only_rules_refuse_complex_params_naming_the_call(name):
    """Their arithmetic is for real numbers (prodigy's and cocob's ran silently to a wrong
    point, adopt's clip crashed inside JAX): refused at init, or at the first update."""
    opt = REAL_ONLY[name]()
    params = {"z": jnp.zeros(2, jnp.complex64)}
    grads = {"z": jnp.ones(2, jnp.complex64)}
    with pytest.raises(TypeError, match=rf"^gradtx.{name}: complex params are not supported"):
        state = opt.init(params)
        extra = {"obj_fn": lambda p: jnp.sum(jnp.abs(p["z"]) ** 2)} if name == "sophia" else {}
        extra |= {"value": 0.0, "value_fn": lambda p: 0.0} if name == "lbfgs" else {}
        opt.update(grads, state, params, **extra)


def test_a_real_storage_dtype_for_a_complex_leaf_names_the_precision():
    """adam(mu_dtype=float32) on complex64 params stores the momentum as complex64 (a
    float32 buffer dropped the imaginary part: the imaginary coordinate never moved)."""
    params = {"z": jnp.zeros(2, jnp.complex64)}
    grads = {"z": jnp.asarray([1.0 + 1.0j, -2.0j], jnp.complex64)}
    plain, stored = gradtx.adam(0.1), gradtx.adam(0.1, mu_dtype=jnp.float32)
    state = stored.init(params)
    assert state.inner_state[0].mu["z"].dtype == jnp.complex64
    got, _ = stored.update(grads, state, params)
    want, _ = plain.update(grads, plain.init(params), params)
    chex.assert_trees_all_close(got, want, rtol=1e-6)
    assert float(jnp.abs(jnp.imag(got["z"][1]))) > 0.05


@pytest.mark.parametrize(
    "make",
    [
        lambda dtype: gradtx.adam(0.1, mu_dtype=dtype, nu_dtype=dtype),
        lambda dtype: gradtx.sgd(0.1, 0.9, accumulator_dtype=dtype),
        lambda dtype: gradtx.muon(0.1, ns_dtype=dtype, mu_dtype=dtype),
        lambda dtype: gradtx.galore(0.1, rank=1, svd_dtype=dtype),
        lambda dtype: gradtx.schedule_free_sgd(0.1, state_dtype=dtype),
    ],
    ids=["adam", "sgd", "muon", "galore", "schedule_free_sgd"],
)
def test_a_complex_storage_dtype_for_a_real_leaf_names_the_precision(make):
    """The mirror rule: complex64 for float32 params stores float32.  A complex buffer
    took twice the memory and each update cast it back to real, which JAX deprecates
    (a DeprecationWarning now, an error later): under ``-W error`` the step failed."""
    params = {"w": jnp.linspace(-1.0, 1.0, 6, dtype=jnp.float32).reshape(2, 3)}
    grads = {"w": jnp.asarray([[0.5, -1.0, 2.0], [0.25, 1.5, -0.75]], jnp.float32)}
    stored, plain = make(jnp.complex64), make(jnp.float32)
    state = stored.init(params)
    assert not any(jnp.iscomplexobj(x) for x in jax.tree.leaves(state))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got, state = stored.update(grads, state, params)
        got, _ = stored.update(grads, state, params)
    want, want_state = plain.update(grads, plain.init(params), params)
    want, _ = plain.update(grads, want_state, params)
    chex.assert_trees_all_equal(got, want)


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
def test_none_empty_scalar_and_zero_size_leaves_and_an_empty_tree(case):
    """Odd trees, three steps each, in one program (one compile: CI time):

    * ``None`` leaves, empty subtrees, a scalar leaf and a Python float: the
      structure kept, and a scalar or a float moving as an element of a vector;
    * a (0, n), (n, 0) or (0,) leaf (an empty embedding table, say): an empty
      update, and the other leaves' steps as without it (optax's sm3 and muon fail
      on it);
    * an empty tree: empty updates and a finite state.
    """
    # one optimizer per tree: an optimizer refuses a tree of another size than its init's
    opts = [case.make(case.lr) for _ in range(4)]
    odd = {
        "w": jnp.ones(3),
        "frozen": None,
        "b": (jnp.ones(2), None),
        "empty": {},
        "s": jnp.float32(1.0),
        "py": 1.0,  # Python floats are leaves too
    }
    odd_grads = {
        "w": jnp.full(3, 0.5),
        "frozen": None,
        "b": (jnp.full(2, -0.5), None),
        "empty": {},
        "s": jnp.float32(0.5),
        "py": 0.5,
    }
    w = jnp.asarray([[1.0, -0.5], [0.25, 2.0], [-1.0, 0.5]])
    empty = {"e": jnp.zeros((0, 2)), "f": jnp.zeros((2, 0)), "v": jnp.zeros((0,))}
    sized_grads = {"w": 0.5 * w - 0.1, **empty}

    @jax.jit
    def runs(odd, sized, alone):
        trees = (odd, sized, alone, {})
        grads = (odd_grads, sized_grads, {"w": sized_grads["w"]}, {})
        return [
            _scan(opt, tree, lambda i, g=g: g, 3, case.update(opt))
            for opt, tree, g in zip(opts, trees, grads)
        ]

    (u, _, out), (u_sized, state_sized, out_sized), (_, _, alone), nothing = runs(
        odd, {"w": w, **empty}, {"w": w}
    )
    assert u["frozen"] is None and u["b"][1] is None and u["empty"] == {}
    assert out["frozen"] is None and out["b"][1] is None and out["empty"] == {}
    _finite(out)
    assert bool(jnp.all(out["w"] < 1)) and bool(jnp.all(out["b"][0] > 1))
    assert out["s"].shape == () and out["s"].dtype == jnp.float32

    assert {k: u_sized[k].shape for k in empty} == {k: v.shape for k, v in empty.items()}
    _finite(state_sized)

    u_nothing, state_nothing, out_nothing = nothing
    assert u_nothing == {} and out_nothing == {}
    _finite(state_nothing)

    if case.per_leaf:
        # a norm or a noise draw per leaf: the leaves' sizes matter, and the other
        # leaves change the draws
        assert bool(out["s"] < 1) and float(out["py"]) < 1
        return
    # A scalar leaf, a Python float and an element of a vector all move alike.
    np.testing.assert_allclose(out["s"], out["w"][0], rtol=1e-6)
    np.testing.assert_allclose(out["py"], out["s"], rtol=1e-6)
    np.testing.assert_allclose(out_sized["w"], alone["w"], rtol=1e-6)


# ----------------------------------------------- eps = 0 and zero-gradient elements


def _factories_with_eps():
    names = [n for n in gradtx.__all__ if "eps" in getattr(getattr(gradtx, n), "specs", {})]
    return sorted(names)


# Updates that cannot run without the loss (they raise for a missing keyword) get
# the stand-in objective's, as the registry's cases do (Case.needs).
LOSS_KEYWORD = {
    "momo_adam": "value", "scale_by_momo_adam": "value",
    "polyak_sgd": "value", "scale_by_polyak": "value",
    "sophia": "obj_fn", "scale_by_hessian_diagonal": "obj_fn",
}  # fmt: skip


@pytest.mark.parametrize("name", _factories_with_eps())
def test_eps_zero_gives_no_nan_where_the_gradient_was_always_zero(name):
    # Adam, RMSProp, AdaDelta, ... divided 0 by 0 there; Adagrad guarded.  Now
    # every denominator that can be 0 is guarded the same way: no step, no NaN.
    factory = getattr(gradtx, name)
    specs = factory.specs
    required = {
        k: (gradtx.sgd(0.1) if isinstance(s, gradtx.Transform) else 0.1)
        for k, s in specs.items()
        if k != "eps" and inspect.signature(factory).parameters[k].default is inspect._empty
    }
    opt = factory(**required, eps=0.0)
    keyword = LOSS_KEYWORD.get(name)

    @jax.jit
    def update(g, state, params):
        loss = local_objective(g, params)
        extra = {} if keyword is None else {keyword: loss if keyword == "obj_fn" else loss(params)}
        return opt.update(g, state, params, **extra)

    # Matrices (Muon's orthogonalisation takes only those); two leaves, since XLA
    # rewrote (m / c) / max(u, tiny) into m / (c · max(u, tiny)) only in that
    # program, and c · tiny flushed to 0 (Adamax's 0/0).
    params = {"v": jnp.ones((2, 4)), "w": jnp.ones((2, 4))}
    state = opt.init(params)
    for i in range(3):
        g = jnp.asarray([[0.0, 1.0, -2.0, 0.0], [0.0, 3.0, 1.0, 0.0]]) * (i + 1)
        g = {"v": g, "w": g}
        u, state = update(g, state, params)
        _no_nan((u, state))


def test_complex_gradients_beyond_the_square_of_the_float_range_give_no_nan():
    # g * conj(g) made inf - inf = NaN in the imaginary part for |g| > ~1.8e19.
    params = {"z": jnp.ones(2, jnp.complex64)}
    g = {"z": jnp.asarray([1e20 + 1e20j, 3.0 - 1e20j], jnp.complex64)}
    for opt in (gradtx.adam(1e-2), gradtx.rmsprop(1e-2), gradtx.adagrad(), gradtx.radam()):
        u, state = opt.update(g, opt.init(params), params)
        _no_nan((u, state))


@pytest.mark.parametrize("case", REGISTRY, ids=IDS)
def test_a_learning_rate_array_of_another_dtype_narrows_nothing(case):
    """A learning rate given as an int or bfloat16 JAX array (data, taken as given)
    steps as the same number given as a float: step sizes formed from it once cast
    b2, lambd, alpha and eps to its dtype (an int truncated them to 0)."""
    w = jnp.asarray([[1.0, -0.5], [0.25, 2.0], [-1.0, 0.5]])
    grads = {"w": 0.5 * w - 0.1, "b": jnp.asarray([0.3, -0.2])}
    params = {"w": w, "b": jnp.asarray([0.5, 1.5])}
    rates = (1.0, jnp.asarray(1, jnp.int32), jnp.asarray(1.0, jnp.bfloat16))
    opts = [case.make(lr) for lr in rates]

    @jax.jit  # the three runs in one program: one compile
    def runs(params):
        return [_scan(opt, params, lambda i: grads, 3, case.update(opt))[2] for opt in opts]

    want, *got = runs(params)
    for lr, params_after in zip(("int32", "bfloat16"), got):
        chex.assert_trees_all_equal(params_after, want, custom_message=f"learning rate {lr}")

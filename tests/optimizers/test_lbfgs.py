"""gradtx.lbfgs beyond the torch comparison: gradient regimes, counting, errors.

The step-by-step comparison with torch.optim.LBFGS is
tests/reference/test_lbfgs.py; the contract tests run lbfgs through
``case.update`` (tests/registry.py).
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import gradtx
from tests.conftest import xla_compiles
from tests.registry import local_objective

OPTIONS = {
    "fixed": dict(max_iter=5),
    "strong_wolfe": dict(history_size=4, line_search_fn="strong_wolfe"),
}
KEYS = ("huge", "tiny", "zero")  # jax.tree.leaves order: torch gets its params in it


def _run(opt, params, grads, steps):
    """``steps`` jitted updates on the local objectives of ``grads(i)``: outputs per step."""

    @jax.jit
    def step(params, state, g):
        value_fn = local_objective(g, params)
        u, state = opt.update(g, state, params, value=value_fn(params), value_fn=value_fn)
        return gradtx.apply_updates(params, u), state, u

    state, out = opt.init(params), []
    for i in range(steps):
        params, state, u = step(params, state, grads(i))
        out.append((params, state, u))
    return out


def _regimes(scale):
    signs = [1.0, -1.0, 0.5]
    return lambda i: {"x": jnp.full(3, scale * signs[i % 3], jnp.float32)}


@pytest.mark.parametrize("mode", OPTIONS)
def test_zero_tiny_and_large_gradients_one_regime_at_a_time(mode):
    """test_edge_cases' regimes, each in a tree of its own (L-BFGS couples leaves)."""
    params = {"x": jnp.ones(3, jnp.float32)}
    # 1e8: the inner products (~|g|²) and the line search's cubic (~|g|⁴) fit in float32.
    for scale in (0.0, 1e-30, 1e8):
        out = _run(gradtx.lbfgs(**OPTIONS[mode]), params, _regimes(scale), 20)
        for p, state, u in out:
            for leaf in jax.tree.leaves((p, state, u)):
                if jnp.issubdtype(leaf.dtype, jnp.inexact):
                    assert bool(jnp.all(jnp.isfinite(leaf))), (scale, leaf)
        if scale < 1e-7:  # below tolerance_grad: torch returns before moving
            np.testing.assert_array_equal(out[-1][0]["x"], params["x"])
        else:
            assert not np.allclose(out[-1][0]["x"], params["x"])


def _first_nan_torch(options, grads, steps):
    kw = {"lr": 1.0, **options}
    p = torch.ones(9, dtype=torch.float32, requires_grad=True)
    opt = torch.optim.LBFGS([p], **kw)
    for i in range(steps):
        g = torch.cat([torch.tensor(np.asarray(grads(i)[k])) for k in KEYS])
        start = p.detach().clone()

        def closure(g=g, start=start):
            opt.zero_grad()
            loss = 0.5 * ((p - start + g) ** 2).sum()  # tests/registry.py's local objective
            loss.backward()
            return loss

        opt.step(closure)
        if torch.isnan(p).any():
            return i
    return None


@pytest.mark.parametrize(
    "mode,scale",
    [("fixed", 1e30), ("fixed", 1e19), ("strong_wolfe", 1e30), ("strong_wolfe", 1e20)]
    + [("strong_wolfe", 1e19)],
)
def test_overflowing_inner_products_turn_nan_where_torch_does(mode, scale):
    """Overflow in float32 (the loss ½|q - p + g|² and |g|² pass 3.4e38 from |g| ~ 1e20
    on): the params turn NaN at the same step as torch's, and at 1e19 in neither."""
    signs = [1.0, -1.0, 0.5]

    def grads(i):
        s = signs[i % 3]
        return {
            "huge": jnp.full(3, scale * s),
            "tiny": jnp.full(3, 1e-30 * s),
            "zero": jnp.zeros(3),
        }

    params = {k: jnp.ones(3, jnp.float32) for k in KEYS}
    out = _run(gradtx.lbfgs(**OPTIONS[mode]), params, grads, 6)
    ours = next((i for i, (p, _, _) in enumerate(out) if np.isnan(p["huge"]).any()), None)
    assert ours == _first_nan_torch(OPTIONS[mode], grads, 6)
    assert (ours is None) == (scale < 1e20)


@pytest.mark.parametrize("mode", OPTIONS)
def test_state_counts_the_evaluations(mode):
    calls = []

    def loss(p):
        jax.debug.callback(lambda: calls.append(1))
        x = p["x"]
        return jnp.sum((1 - x) ** 2) + 10 * jnp.sum((x[1:] - x[:-1] ** 2) ** 2)

    opt = gradtx.lbfgs(**OPTIONS[mode])

    @jax.jit
    def step(params, state):
        value, grads = jax.value_and_grad(loss)(params)
        u, state = opt.update(grads, state, params, value=value, value_fn=loss)
        return gradtx.apply_updates(params, u), state

    params, state = {"x": jnp.asarray([-1.0, 0.5, 2.0])}, opt.init({"x": jnp.zeros(3)})
    total = 0
    for _ in range(3):
        calls.clear()
        params, state = step(params, state)
        jax.effects_barrier()
        evals = int(optax.tree_utils.tree_get(state, "evals"))
        assert evals == len(calls) > 1  # the given value counts as the first
        total += evals
    assert int(optax.tree_utils.tree_get(state, "func_evals")) == total


def test_tolerances_are_data():
    opt = gradtx.lbfgs()
    params = {"x": jnp.asarray([2.0, -1.0])}
    value_fn = local_objective({"x": jnp.asarray([0.5, 0.5])}, params)
    grads = jax.grad(value_fn)(params)
    traces = []

    @jax.jit
    def step(state):
        traces.append(1)
        return opt.update(grads, state, params, value=value_fn(params), value_fn=value_fn)

    u, _ = step(opt.init(params))
    assert np.any(np.asarray(u["x"]) != 0)
    state = gradtx.set_hyperparams(opt.init(params), tolerance_grad=1.0)  # max|g| = 0.5
    u, state = step(state)
    np.testing.assert_array_equal(u["x"], [0.0, 0.0])
    assert int(optax.tree_utils.tree_get(state, "evals")) == 1 and len(traces) == 1
    assert sorted(gradtx.get_hyperparams(state)) == [
        "learning_rate",
        "tolerance_change",
        "tolerance_grad",
    ]


EAGER = {
    "torch": dict(),
    "torch-strong-wolfe": dict(line_search_fn="strong_wolfe"),
    "optax": dict(convention="optax"),
    "optax-zoom": dict(convention="optax", line_search_fn="strong_wolfe"),
}


def _eager_steps(opt, params, loss, steps):
    state = opt.init(params)
    for _ in range(steps):
        value, grads = jax.value_and_grad(loss)(params)
        u, state = opt.update(grads, state, params, value=value, value_fn=loss, grad=grads)
        params = gradtx.apply_updates(params, u)
    return params, state


def _rosenbrock(p):
    return (1 - p["x"]) ** 2 + 100 * (p["y"] - p["x"] ** 2) ** 2


@pytest.mark.parametrize("options", EAGER.values(), ids=EAGER)
def test_eager_updates_compile_their_loops_once(options, x64):
    """torch's habit, an eager step per batch: the loops (the iterations, the line
    search, the two-loop recursion) were traced and compiled again at every update,
    about a second each.  Two steps settle the inputs' placement; the next compile
    nothing.  Another learning rate after that (bodies are shared by configuration)
    still steps as the same optimizer jitted."""
    params = {"x": jnp.asarray(-1.5, jnp.float64), "y": jnp.asarray(2.0, jnp.float64)}
    opt = gradtx.lbfgs(**options)
    params, state = _eager_steps(opt, params, _rosenbrock, 2)
    with xla_compiles() as compiles:
        _eager_steps(opt, params, _rosenbrock, 2)
    assert compiles == []
    other = gradtx.lbfgs(0.25, **options)
    got = _eager_steps(other, params, _rosenbrock, 2)
    want = _eager_steps(other, params, jax.jit(lambda p: _rosenbrock(p)), 2)  # fresh bodies
    chex.assert_trees_all_close(got, want, rtol=1e-10)
    if "line_search_fn" not in options:  # (a search may accept the same point from either)
        assert not np.allclose(got[0]["x"], _eager_steps(opt, params, _rosenbrock, 2)[0]["x"])


def test_update_needs_the_loss_and_real_params():
    opt = gradtx.lbfgs()
    params = {"x": jnp.ones(2)}
    state = opt.init(params)

    def loss(p):
        return jnp.sum(p["x"] ** 2)

    for kwargs in (dict(value=1.0), dict(value_fn=loss)):
        with pytest.raises(ValueError, match=r"^gradtx\.lbfgs: update needs params, value="):
            opt.update(params, state, params, **kwargs)
    with pytest.raises(ValueError, match=r"^gradtx\.lbfgs: update needs params"):
        opt.update(params, state, value=1.0, value_fn=loss)
    with pytest.raises(TypeError, match=r"^gradtx\.lbfgs: complex params"):
        opt.init({"z": jnp.ones(2, jnp.complex64)})


def test_bfloat16_trial_points_are_not_rounded_back_onto_the_params():
    # Gradients far below a bfloat16 ulp of the params: trial points rounded to
    # bfloat16 fell on the params themselves (η = 1 and 2 alike), the search saw a
    # flat loss and L-BFGS never moved (L/L0 = 1 after every step).  Kept in float32,
    # as optax's promotion keeps them, the run converges as the float32 run does.
    scale = jnp.linspace(1.0, 3.0, 16)

    def loss(p):
        return 1e-4 * 0.5 * jnp.sum(scale * (p["x"].astype(jnp.float32) - 0.3) ** 2)

    def run(dtype):
        opt = gradtx.lbfgs(1.0, history_size=10, line_search_fn="strong_wolfe", convention="optax")
        p = {"x": jnp.linspace(-1.0, 1.0, 16).astype(dtype)}
        state = opt.init(p)
        step = jax.jit(
            lambda p, s: opt.update(jax.grad(loss)(p), s, p, value=loss(p), value_fn=loss)
        )
        for _ in range(10):
            u, state = step(p, state)
            p = gradtx.apply_updates(p, u)
        return p["x"]

    wide, narrow = run(jnp.float32), run(jnp.bfloat16)
    np.testing.assert_allclose(wide, 0.3, rtol=1e-4)
    # the bfloat16 run ends at the bfloat16 number nearest the minimum (0.30078125)
    np.testing.assert_allclose(np.asarray(narrow, np.float32), 0.3, atol=2**-8)


@pytest.mark.parametrize("flag", [True, False])
def test_a_numpy_bool_scale_init_precond_is_taken_as_the_python_bool(flag):
    # np.False_ is not False: the option was tested with ``is not False`` and so
    # np.False_ scaled the first preconditioner as True does.
    scales = jnp.array([1.0, 10.0, 100.0])

    def loss(p):
        return 0.5 * jnp.sum(scales * p["w"] ** 2)

    def run(value):
        opt = gradtx.lbfgs(0.5, convention="optax", scale_init_precond=value)
        params = {"w": jnp.ones(3)}
        state = opt.init(params)
        for _ in range(3):
            grads = jax.grad(loss)(params)
            updates, state = opt.update(grads, state, params, value=loss(params), value_fn=loss)
            params = gradtx.apply_updates(params, updates)
        return params

    chex.assert_trees_all_equal(run(np.bool_(flag)), run(flag))
    assert not np.array_equal(run(np.bool_(flag))["w"], run(not flag)["w"])


class _Batches:
    """A loss that reads its data from an attribute: one function object whose data
    changes between steps (a bound method reading ``self.target``)."""

    def __init__(self):
        self.target = None

    def loss(self, q):
        return jnp.sum((q - self.target) ** 2)


def _moving_target_run(opt, fresh):
    data, p, out = _Batches(), jnp.zeros(2), []
    state = opt.init(p)
    for k in range(4):
        data.target = jnp.asarray([1.0, 2.0]) * (k + 1)
        fn = (lambda q, t=data.target: jnp.sum((q - t) ** 2)) if fresh else data.loss
        value, grads = jax.value_and_grad(fn)(p)
        updates, state = opt.update(grads, state, p, value=value, value_fn=fn)
        p = p + updates
        out.append(p)
    return out


@pytest.mark.parametrize("options", EAGER.values(), ids=EAGER)
def test_an_eager_loss_reading_new_data_each_step_is_traced_again(options, x64):
    """The loop body kept for eager steps (per value_fn) was traced once, with the data
    of then: one bound method over a new batch each step stepped towards the old
    target ([2.33, 4.67] at the third step where torch reaches [3, 6])."""
    opt = gradtx.lbfgs(1.0, **options)
    kept = _moving_target_run(opt, fresh=False)
    chex.assert_trees_all_close(kept, _moving_target_run(opt, fresh=True), rtol=1e-12)
    if "line_search_fn" not in options and options.get("convention") != "optax":
        # a quadratic's minimum in one step, as torch.optim.LBFGS reaches it
        chex.assert_trees_all_close(kept[2], jnp.asarray([3.0, 6.0]), rtol=1e-12)


def test_kept_bodies_survive_nan_data_and_a_deleted_old_batch(x64):
    """Constants compare bit for bit: data holding a NaN (a masked target) kept its body
    (NaN != NaN had rebuilt and recompiled it every step, 15x slower); an old batch
    deleted since (donated elsewhere) is traced afresh, not read ("Array has been
    deleted" from inside update)."""
    target = jnp.asarray([1.0, jnp.nan, 2.0])

    def masked(q):
        return jnp.nansum((q - target) ** 2)

    opt = gradtx.lbfgs(1.0, max_iter=3)
    params, state = _eager_steps(opt, jnp.zeros(3), masked, 2)
    with xla_compiles() as compiles:
        _eager_steps(opt, params, masked, 2)
    assert compiles == []

    data = {"target": jnp.asarray([1.0, 2.0])}

    def moving(q):
        return jnp.sum((q - data["target"]) ** 2)

    p, state = jnp.zeros(2), opt.init(jnp.zeros(2))
    for k in range(3):
        value, grads = jax.value_and_grad(moving)(p)
        updates, state = opt.update(grads, state, p, value=value, value_fn=moving)
        p = p + updates
        chex.assert_trees_all_close(p, data["target"], rtol=1e-12)
        old, data["target"] = data["target"], jnp.asarray([1.0, 2.0]) * (k + 2)
        old.delete()


def test_a_typed_key_made_anew_with_the_same_bits_keeps_the_body(x64):
    # a typed key has no NumPy form: compared as "different", it recompiled every step
    held = {}

    def loss(q):
        return jnp.sum((q - jax.random.normal(held["key"], (2,))) ** 2)

    opt = gradtx.lbfgs(1.0, max_iter=3)
    params, state = jnp.zeros(2), opt.init(jnp.zeros(2))
    for k in range(4):
        held["key"] = jax.random.key(0)  # a new object, the same key
        with xla_compiles() as compiles:
            value, grads = jax.value_and_grad(loss)(params)
            updates, state = opt.update(grads, state, params, value=value, value_fn=loss)
        params = params + updates
        assert k < 2 or compiles == []


@pytest.mark.parametrize("wrap", [lambda t: t, gradtx.flatten], ids=["lbfgs", "flatten"])
def test_an_optimizer_stepped_inside_value_fn_is_a_call_of_its_own(wrap):
    """The update's context (its 16-bit widening, flatten's flat mode) stayed set while
    value_fn ran: an Adam step on float16 params inside it differed from the same step
    at top level by 0.6%, and a LAMB step there was refused as if flattened."""
    w16 = jnp.asarray([1.0, -0.5, 0.25], jnp.float16)
    g16 = (3e-5 * jnp.asarray([1.0, 2.0, 3.0])).astype(jnp.float16)
    inner = {"adam": gradtx.adam(1e-3), "lamb": gradtx.lamb(1e-3)}
    seen = {}

    def loss(p):
        for name, tx in inner.items():
            u, _ = tx.update(g16, tx.init(w16), w16)
            jax.debug.callback(lambda x, name=name: seen.setdefault(name, np.asarray(x)), u)
        return jnp.sum(p["a"] ** 2)

    loss({"a": jnp.ones(1)})
    top, seen = seen, {}
    tx = wrap(gradtx.lbfgs(1e-3, max_iter=2))
    params = {"a": jnp.asarray([0.3])}
    value, grads = jax.value_and_grad(loss)(params)
    seen.clear()
    tx.update(grads, tx.init(params), params, value=value, value_fn=loss)
    for name in inner:
        np.testing.assert_array_equal(seen[name], top[name])


def test_a_value_fn_closing_over_traced_data_is_not_kept_past_its_trace():
    """A cache of wrapped user functions kept a jitted step's value_fn, and the tracer
    it closes over, alive: jax.checking_leaks failed."""
    w = jnp.ones(3)
    for tx in (gradtx.lbfgs(0.5), gradtx.scale_by_zoom_linesearch(5)):
        state = tx.init(w)

        @jax.jit
        def step(w, state, x, tx=tx):
            def f(p):
                return jnp.sum((p - x) ** 2)

            value, grads = jax.value_and_grad(f)(w)
            return tx.update(grads, state, w, value=value, value_fn=f)

        with jax.checking_leaks():
            step(w, state, jnp.zeros(3))


def test_checkify_sees_no_division_by_zero_on_a_normal_run():
    """The first iteration's pair (ys = 0) was divided by before being thrown away, and
    torch's first step size divided by the gradient's sum: checkify's division checks
    reported "division by zero" on a well-behaved quadratic (optax.lbfgs does too)."""
    from jax.experimental import checkify

    f = lambda q: jnp.sum((q["w"] - 2.0) ** 2) + 0.1 * jnp.sum(q["w"] ** 4)  # noqa: E731
    for opt in (gradtx.lbfgs(1.0), gradtx.lbfgs(line_search_fn="strong_wolfe")):

        def step(q, s, opt=opt):
            v, g = jax.value_and_grad(f)(q)
            u, s = opt.update(g, s, q, value=v, value_fn=f)
            return gradtx.apply_updates(q, u), s

        checked = checkify.checkify(jax.jit(step), errors=checkify.float_checks)
        p = {"w": jnp.asarray([1.0, -2.0, 0.5])}
        s = opt.init(p)
        for _ in range(2):
            err, (p, s) = checked(p, s)
            assert err.get() is None, err.get()
        zero = {"w": jnp.full(3, 2.0)}  # a zero gradient at the first step: sum |g| = 0
        err, _ = checked(zero, opt.init(zero))
        assert err.get() is None, err.get()

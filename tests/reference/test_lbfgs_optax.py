"""gradtx.lbfgs(convention="optax") against optax.lbfgs: params after every update.

Each case runs 25 updates in float64 on a non-quadratic objective over a tree
of 1-D, 2-D and 3-D leaves, the loss and its gradient taken at the same
params, with the memory size, learning rate, scaling and line-search length
drawn at random.  The line search's own decisions are compared one by one in
``tests/transforms/test_zoom.py``.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx

pytestmark = pytest.mark.usefixtures("x64")

STEPS = 25


def _vector(p):
    return jnp.concatenate([p[k].reshape(-1) for k in sorted(p)])


def rosenbrock(p):
    x = _vector(p)
    return jnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def wiggly(p):
    x = _vector(p)
    return 0.5 * jnp.sum(x**2) + 2.0 * jnp.sum(jnp.sin(3 * x)) + jnp.sum(jnp.cos(x[1:] * x[:-1]))


_RNG = np.random.default_rng(11)
_DATA = {"features": _RNG.normal(size=(30, 5)), "labels": np.sign(_RNG.normal(size=30))}


def logistic(p, features, labels):
    """Mean logistic loss of a model with a hidden layer, on data passed as keywords."""
    hidden = jnp.tanh(features @ p["a"].reshape(5, 2) + p["b"])
    margin = -labels * (hidden @ p["c"][:, 0, 0])
    return jnp.mean(jnp.logaddexp(0.0, margin)) + 1e-3 * jnp.sum(p["a"] ** 2)


def _params(seed, name=None):
    rng = np.random.default_rng(seed)
    shapes = {"a": (10,), "b": (2,), "c": (2, 1, 1)}
    params = {k: rng.normal(size=s) * 0.8 for k, s in shapes.items()}
    if name == "rosenbrock":  # near the valley: far out, fixed-length searches overflow
        params = {k: 1.0 + 0.3 * v for k, v in params.items()}
    return {k: jnp.asarray(v) for k, v in params.items()}


def _run(build, f, params, data, numbers=None, *, optax_keywords):
    """Params after each update of ``build(numbers)``.

    optax's side is built inside the compiled step, its numbers traced: with
    a learning rate that is a compile-time constant, XLA folds ``η_search ·
    (-lr · d)`` differently than with the rate as data (one ulp), and the
    zoom's interpolation amplifies an ulp of its inputs to ~1e-9 within a
    few updates.  As data (gradtx keeps it in the state) the two programs
    round alike.
    """
    numbers = {k: jnp.asarray(v) for k, v in (numbers or {}).items()}
    if optax_keywords:  # optax is not strict-promotion clean
        with jax.numpy_dtype_promotion("standard"):
            return _steps(build, f, params, data, numbers, optax_keywords)
    return _steps(build, f, params, data, numbers, optax_keywords)


def _steps(build, f, params, data, numbers, optax_keywords):
    state = build(numbers).init(params)

    @jax.jit
    def step(params, state, numbers):
        opt = build(numbers) if optax_keywords else gradtx_opt
        value, grad = jax.value_and_grad(f)(params, **data)
        extra = {"grad": grad} if optax_keywords else {}
        updates, state = opt.update(grad, state, params, value=value, value_fn=f, **extra, **data)
        return optax.apply_updates(params, updates), state

    gradtx_opt = None if optax_keywords else build(numbers)
    out = []
    for _ in range(STEPS):
        params, state = step(params, state, numbers)
        out.append(params)
    return out, state


def _assert_same(want, got):
    for i, (w, g) in enumerate(zip(want, got)):
        for k in w:
            np.testing.assert_allclose(g[k], w[k], rtol=1e-10, atol=1e-14, err_msg=f"update {i}")


def _draw(seed):
    rng = np.random.default_rng(seed)
    return {
        "memory_size": int(rng.integers(1, 6)),
        "learning_rate": float(rng.uniform(0.3, 1.0)),
        "scale_init_precond": bool(rng.integers(2)),
        "max_linesearch_steps": int(rng.integers(8, 25)),
    }


FUNCTIONS = {"rosenbrock": rosenbrock, "wiggly": wiggly, "logistic": logistic}


# Six draws, two per function (each draw its own memory, step, scaling and search
# length; both scalings on Rosenbrock and the logistic loss).
@pytest.mark.parametrize(
    ("name", "seed"),
    [("rosenbrock", 0), ("wiggly", 1), ("logistic", 2), ("rosenbrock", 3), ("wiggly", 4),
     ("logistic", 5)],
)  # fmt: skip
def test_lbfgs_with_zoom_matches_optax(name, seed):
    h = _draw(seed)
    f, data = FUNCTIONS[name], (_DATA if name == "logistic" else {})
    params = _params(seed, name)
    search = optax.scale_by_zoom_linesearch(h["max_linesearch_steps"], initial_guess_strategy="one")
    want, _ = _run(
        lambda n: optax.lbfgs(n["lr"], h["memory_size"], h["scale_init_precond"], search),
        f, params, data, {"lr": h["learning_rate"]}, optax_keywords=True,
    )  # fmt: skip
    got, _ = _run(
        lambda n: gradtx.lbfgs(
            h["learning_rate"], history_size=h["memory_size"], line_search_fn="strong_wolfe",
            max_eval=h["max_linesearch_steps"], convention="optax",
            scale_init_precond=h["scale_init_precond"],
        ),
        f, params, data, optax_keywords=False,
    )  # fmt: skip
    _assert_same(want, got)
    assert float(f(got[-1], **data)) < float(f(params, **data))


def test_optax_defaults():
    params = _params(5)
    want, _ = _run(lambda n: optax.lbfgs(), rosenbrock, params, {}, optax_keywords=True)
    opt = gradtx.lbfgs(history_size=10, line_search_fn="strong_wolfe", convention="optax")
    got, state = _run(lambda n: opt, rosenbrock, params, {}, optax_keywords=False)
    _assert_same(want, got)
    # The search's outcome is in the state, under optax's field names.
    assert float(optax.tree_utils.tree_get(state, "value")) == pytest.approx(
        float(rosenbrock(got[-1])), rel=1e-12
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_lbfgs_without_line_search_matches_optax(seed):
    h = _draw(seed)
    lr = h["learning_rate"] * 0.5  # fixed steps: short enough to descend
    params, data = _params(seed), _DATA
    want, _ = _run(
        lambda n: optax.lbfgs(n["lr"], h["memory_size"], h["scale_init_precond"], linesearch=None),
        logistic, params, data, {"lr": lr}, optax_keywords=True,
    )  # fmt: skip
    opt = gradtx.lbfgs(
        lr, history_size=h["memory_size"], convention="optax",
        scale_init_precond=h["scale_init_precond"],
    )  # fmt: skip
    got, _ = _run(lambda n: opt, logistic, params, data, optax_keywords=False)
    _assert_same(want, got)
    assert float(logistic(got[-1], **data)) < float(logistic(params, **data))


def test_a_learning_rate_schedule_matches_optax():
    # optax's schedule on both sides: gradtx evaluates a plain callable at its count.
    # (Given the int32 step count, optax's linear_schedule computes in float32 even
    # under x64: 5e-8 from gradtx.schedules.linear's float64 values, which the search
    # would amplify.)
    schedule = optax.linear_schedule(1.0, 0.4, 10)
    params = _params(7)
    want, _ = _run(lambda n: optax.lbfgs(schedule, 4), wiggly, params, {}, optax_keywords=True)
    opt = gradtx.lbfgs(schedule, history_size=4, line_search_fn="strong_wolfe", convention="optax")
    got, state = _run(lambda n: opt, wiggly, params, {}, optax_keywords=False)
    _assert_same(want, got)
    assert float(gradtx.get_hyperparams(state)["learning_rate"]) == pytest.approx(0.4)


def test_complex_params_match_optax():
    target = jnp.asarray([1.0 + 2.0j, -0.5 + 0.25j, 0.3 - 1.0j])

    def f(p):
        z, w = p["z"], p["w"]
        return jnp.sum(jnp.abs(z - target) ** 4) + jnp.sum(jnp.abs(w * z[0] - 0.5j) ** 2)

    rng = np.random.default_rng(3)
    params = {
        "z": jnp.asarray(rng.normal(size=3) + 1j * rng.normal(size=3)),
        "w": jnp.asarray(rng.normal(size=(2, 2)) + 1j * rng.normal(size=(2, 2))),
    }

    def run(opt, optax_keywords):
        @jax.jit
        def step(p, state):
            value, grad = jax.value_and_grad(f)(p)
            grad = jax.tree.map(jnp.conj, grad)  # optax's convention for complex params
            extra = {"grad": grad} if optax_keywords else {}
            updates, state = opt.update(grad, state, p, value=value, value_fn=f, **extra)
            return optax.apply_updates(p, updates), state

        state, out, p = opt.init(params), [], params
        for _ in range(STEPS):
            p, state = step(p, state)
            out.append(p)
        return out

    with jax.numpy_dtype_promotion("standard"):
        want = run(optax.lbfgs(memory_size=5), True)
    got = run(
        gradtx.lbfgs(history_size=5, line_search_fn="strong_wolfe", convention="optax"), False
    )
    _assert_same(want, got)
    assert float(f(got[-1])) < 1e-3 * float(f(params))


def test_value_and_grad_from_state_reuses_the_search():
    opt = gradtx.lbfgs(history_size=10, line_search_fn="strong_wolfe", convention="optax")
    params = _params(2)
    value_and_grad = optax.value_and_grad_from_state(wiggly)
    state, p, calls = opt.init(params), params, []

    @jax.jit
    def step(p, state):
        value, grad = value_and_grad(p, state=state)
        updates, state = opt.update(grad, state, p, value=value, value_fn=wiggly)
        return optax.apply_updates(p, updates), state, value

    for _ in range(5):
        p, state, value = step(p, state)
        calls.append(value)
    want, _ = _run(lambda n: optax.lbfgs(), wiggly, params, {}, optax_keywords=True)
    np.testing.assert_allclose(p["a"], want[4]["a"], rtol=1e-10)
    # After the first update the value is the search's, which is the loss at the params.
    np.testing.assert_allclose(calls[1:], [wiggly(q) for q in want[:4]], rtol=1e-12)


def test_inside_a_chain_after_clipping_it_matches_optax_given_grad():
    # The clipped input drives the memory; the search needs the true gradient (grad=).
    params = _params(4, "rosenbrock")

    def run(opt, p):
        state, out = opt.init(p), []

        @jax.jit
        def step(p, state):
            value, grad = jax.value_and_grad(rosenbrock)(p)
            u, state = opt.update(grad, state, p, value=value, grad=grad, value_fn=rosenbrock)
            return optax.apply_updates(p, u), state

        for _ in range(STEPS):
            p, state = step(p, state)
            out.append(p)
        return out

    with jax.numpy_dtype_promotion("standard"):
        want = run(optax.chain(optax.clip_by_global_norm(1.0), optax.lbfgs()), params)
    ours = gradtx.lbfgs(history_size=10, line_search_fn="strong_wolfe", convention="optax")
    _assert_same(want, run(gradtx.chain(gradtx.clip_by_global_norm(1.0), ours), params))


def test_keywords_that_would_not_reach_value_fn_are_refused():
    w = {"x": jnp.array([1.0, 2.0])}

    def f(p, batch=0.0):
        return jnp.sum((p["x"] - batch) ** 2)

    value, g = jax.value_and_grad(f)(w)
    opt = gradtx.lbfgs(line_search_fn="strong_wolfe", convention="optax")
    with pytest.raises(TypeError, match=r"gradtx\.lbfgs\.update: unexpected keywords \['btach'\]"):
        opt.update(g, opt.init(w), w, value=value, value_fn=f, btach=1.0)
    opt.update(g, opt.init(w), w, value=value, value_fn=f, batch=1.0)
    torch_rule = gradtx.lbfgs()
    with pytest.raises(TypeError, match=r"\['batch'\]; torch's rule calls value_fn\(params\)"):
        torch_rule.update(g, torch_rule.init(w), w, value=value, value_fn=f, batch=1.0)


def test_the_optax_rule_refuses_torch_loop_controls():
    for name, value in [("max_iter", 5), ("tolerance_grad", 1e-3), ("tolerance_change", 0.0)]:
        with pytest.raises(ValueError, match=rf"gradtx\.lbfgs\({name}=.*convention='optax'"):
            gradtx.lbfgs(convention="optax", **{name: value})
    with pytest.raises(ValueError, match=r"gradtx\.lbfgs\(scale_init_precond=.*optax"):
        gradtx.lbfgs(scale_init_precond=False)
    with pytest.raises(ValueError, match=r"gradtx\.lbfgs\(max_eval=.*line_search_fn=None"):
        gradtx.lbfgs(max_eval=5, convention="optax")
    # Not stored where they have no meaning.
    state = gradtx.lbfgs(convention="optax").init({"x": jnp.zeros(2)})
    assert sorted(gradtx.get_hyperparams(state)) == ["learning_rate"]


def test_a_state_restored_as_numpy_arrays_continues_eagerly(x64):
    # flax.serialization restores NumPy arrays; the eager update called .at on them.
    opt = gradtx.lbfgs(convention="optax")
    params = jnp.asarray([1.0, -2.0, 0.5])

    def f(w):
        return jnp.sum(w**4) + jnp.sum(w**2)

    def step(state, params):
        value, grad = jax.value_and_grad(f)(params)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=f)
        return state, optax.apply_updates(params, updates)

    with jax.numpy_dtype_promotion("standard"):
        state, params = step(opt.init(params), params)
        restored = jax.tree.map(np.asarray, state)
        a = step(state, params)
        b = step(restored, params)
    chex.assert_trees_all_close(a, b, rtol=0, atol=0)

"""scale_by_zoom_linesearch against optax.scale_by_zoom_linesearch, search by search.

Each configuration runs one search from each of 40 random points and
directions (float64), optax's and gradtx's in separate compiled programs,
and compares the step taken, the loss and gradient kept, the number of
evaluations and both errors.  The points are drawn so that every outcome
occurs: the first guess accepted, expansion past it, zooms, failures that
fall back to a safe step, and searches leaving the loss's domain.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx

pytestmark = pytest.mark.usefixtures("x64")

SHAPES = {"a": (4,), "b": (2, 3), "c": (1, 2, 2)}


def _vector(p):
    return jnp.concatenate([p[k].reshape(-1) for k in sorted(p)])


def wiggly(p):
    x = _vector(p)
    return 0.5 * jnp.sum(x**2) + 2.0 * jnp.sum(jnp.sin(3 * x)) + jnp.sum(jnp.cos(x[1:] * x[:-1]))


def barrier(p):
    """Finite only inside the unit cube: a search that overshoots gets NaN."""
    x = _vector(p)
    return jnp.sum(x**4) - jnp.sum(jnp.log1p(-(x**2))) + jnp.sum(x)


CONFIGS = {
    "defaults": dict(max_linesearch_steps=15),
    "keep-capped": dict(max_linesearch_steps=12, initial_guess_strategy="keep",
                        max_learning_rate=0.7),
    "armijo-only": dict(max_linesearch_steps=10, approx_dec_rtol=None, curv_rtol=float("inf")),
    "strict": dict(max_linesearch_steps=20, tol=1e-9, increase_factor=3.0, slope_rtol=0.3,
                   curv_rtol=0.2, approx_dec_rtol=1e-3, stepsize_precision=1e-3),
    "short": dict(max_linesearch_steps=2, curv_rtol=0.05),
}  # fmt: skip


def _searches(tx, f, points, *, optax_keywords):
    @jax.jit
    def search(p, d, state):
        value, grad = jax.value_and_grad(f)(p)
        extra = {"grad": grad}
        updates, state = tx.update(d, state, p, value=value, value_fn=f, **extra)
        return updates, state

    state, out = tx.init(points[0][0]), []
    for p, d in points:
        updates, state = search(p, d, state)
        get = lambda name, s=state: optax.tree_utils.tree_get(s, name)  # noqa: E731
        stepsize = get("learning_rate") if optax_keywords else get("stepsize")
        out.append(
            (updates, stepsize, get("value"), get("grad"), get("num_linesearch_steps"),
             get("decrease_error"), get("curvature_error"))
        )  # fmt: skip
    return out


def _points(f, seed, n=40):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        p = {k: jnp.asarray(rng.uniform(-0.9, 0.9, size=s)) for k, s in SHAPES.items()}
        g = jax.grad(f)(p)
        scale = 10.0 ** rng.uniform(-3, 1)
        sign = -1.0 if rng.uniform() < 0.9 else 1.0  # now and then not a descent direction
        out.append((p, jax.tree.map(lambda x, s=scale * sign: s * x, g)))
    return out


@pytest.mark.parametrize("function", ["wiggly", "barrier"])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_each_search_matches_optax(config, function):
    kw, f = CONFIGS[config], {"wiggly": wiggly, "barrier": barrier}[function]
    points = _points(f, seed=len(config) + len(function))
    with jax.numpy_dtype_promotion("standard"):  # optax is not strict-promotion clean
        want = _searches(optax.scale_by_zoom_linesearch(**kw), f, points, optax_keywords=True)
    got = _searches(gradtx.scale_by_zoom_linesearch(**kw), f, points, optax_keywords=False)
    for i, (w, g) in enumerate(zip(want, got)):
        np.testing.assert_allclose(g[1], w[1], rtol=1e-10, err_msg=f"stepsize, search {i}")
        assert int(g[4]) == int(w[4]), f"evaluations, search {i}"
        for name, a, b in [("updates", g[0], w[0]), ("value", g[2], w[2]), ("grad", g[3], w[3]),
                           ("errors", g[5:], w[5:])]:  # fmt: skip
            jax.tree.map(
                lambda x, y, name=name: np.testing.assert_allclose(
                    x, y, rtol=1e-10, atol=1e-13, err_msg=f"{name}, search {i}"
                ),
                a, b,
            )  # fmt: skip


def test_the_searches_reach_every_outcome():
    """The random points above take each road; checked here on the default search."""
    outcomes = set()
    for function, f in [("wiggly", wiggly), ("barrier", barrier)]:
        for config in ["defaults", "short"]:
            for _, stepsize, _, _, evals, decrease, curvature in _searches(
                gradtx.scale_by_zoom_linesearch(**CONFIGS[config]), f,
                _points(f, seed=len(config) + len(function)), optax_keywords=False,
            ):  # fmt: skip
                met = float(decrease) == 0 and float(curvature) == 0
                outcomes.add("first guess" if met and int(evals) == 1 else "")
                outcomes.add("expanded" if met and float(stepsize) > 1 else "")
                outcomes.add("zoomed" if met and float(stepsize) < 1 and int(evals) > 2 else "")
                outcomes.add("safe fallback" if not met and float(stepsize) > 0 else "")
                outcomes.add("no step" if float(stepsize) == 0 else "")
                outcomes.add("left the domain" if not np.isfinite(float(decrease)) else "")
    assert outcomes - {""} == {
        "first guess", "expanded", "zoomed", "safe fallback", "no step", "left the domain",
    }  # fmt: skip


def test_without_grad_the_search_takes_the_gradient_of_value_fn():
    # After a gradient map the chain's gradient is the map's output (here -2 g): the
    # search must not take it for ∇f, or its first slope has the wrong sign.
    def f(w):
        return jnp.sum((w**2 - 1.0) ** 2) + 0.3 * jnp.sum(w)

    w = jnp.array([-2.0, 0.5, 1.7])
    value, g = jax.value_and_grad(f)(w)
    ours = gradtx.chain(gradtx.scale(-2.0), gradtx.scale_by_zoom_linesearch(20))
    ref = optax.chain(optax.scale(-2.0), optax.scale_by_zoom_linesearch(20))
    got, _ = ours.update(g, ours.init(w), w, value=value, value_fn=f)
    with jax.numpy_dtype_promotion("standard"):
        want, _ = ref.update(g, ref.init(w), w, value=value, grad=g, value_fn=f)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert float(f(w + got)) < float(value)


def test_without_grad_on_complex_params_the_search_conjugates_jaxs_gradient():
    # It took jax.grad's gradient as given: the first slope had the wrong sign (+98
    # against -280 here), and the step taken was another than with grad= given.
    target = jnp.asarray([1 + 2j, -0.5 + 1j, 2 - 1j])

    def f(w):
        return jnp.sum(jnp.abs(w - target) ** 4)

    w = jnp.asarray([0.3 + 0.1j, 0.2 - 0.4j, 0.5 + 0.5j])
    value, g = jax.value_and_grad(f)(w)
    g = jnp.conj(g)  # the updates' convention
    tx = gradtx.chain(gradtx.scale(-0.1), gradtx.scale_by_zoom_linesearch(30))
    without, s = tx.update(g, tx.init(w), w, value=value, value_fn=f)
    given, t = tx.update(g, tx.init(w), w, value=value, value_fn=f, grad=g)
    np.testing.assert_allclose(without, given, rtol=1e-12)
    assert float(s[1].inner_state.stepsize) == float(t[1].inner_state.stepsize)
    assert float(f(w + without)) < 0.5 * float(value)


def test_data_keywords_reach_value_fn():
    """Arrays as data, and a keyword that is not an array (a flag the loss branches
    on in Python) as given."""

    def f(p, target, norm):
        assert norm in ("l2", "l1")
        return jnp.sum((p - target) ** 2) if norm == "l2" else jnp.sum(jnp.abs(p - target))

    target = jnp.array([1.0, -2.0])
    tx = gradtx.chain(gradtx.scale(-1.0), gradtx.scale_by_zoom_linesearch(10))
    w = jnp.zeros(2)
    value, g = jax.value_and_grad(f)(w, target, "l2")
    updates, state = tx.update(g, tx.init(w), w, value=value, value_fn=f, target=target, norm="l2")
    np.testing.assert_allclose(gradtx.apply_updates(w, updates), target)
    assert float(optax.tree_utils.tree_get(state, "value")) == 0.0


def test_a_data_keyword_under_a_name_update_keeps_is_refused_by_name():
    """``count`` and ``grads`` are gradtx's own keywords of update, never data: a
    value_fn needing one failed in the user's lambda ("missing 1 required positional
    argument"), naming no gradtx call; optax forwards them."""
    f = lambda p, count: count * jnp.sum(p**2)  # noqa: E731
    w = jnp.ones(2)
    for tx in (
        gradtx.chain(gradtx.scale(-1.0), gradtx.scale_by_zoom_linesearch(10)),
        gradtx.lbfgs(convention="optax", line_search_fn="strong_wolfe"),
    ):
        with pytest.raises(TypeError, match=r"value_fn needs the data keyword 'count', a name"):
            tx.update(2 * w, tx.init(w), w, value=f(w, 1.0), value_fn=f, count=1.0)
    g = lambda p, scale, count=1.0: scale * jnp.sum(p**2)  # noqa: E731  (optional: fine)
    tx = gradtx.lbfgs(convention="optax", line_search_fn="strong_wolfe")
    tx.update(2 * w, tx.init(w), w, value=g(w, 1.0), value_fn=g, scale=1.0)


def test_bad_arguments_name_the_call():
    with pytest.raises(ValueError, match=r"gradtx\.scale_by_zoom_linesearch\(max_linesearch_steps"):
        gradtx.scale_by_zoom_linesearch(0)
    with pytest.raises(ValueError, match=r"gradtx\.scale_by_zoom_linesearch\(slope_rtol"):
        gradtx.scale_by_zoom_linesearch(5, slope_rtol=2.0)
    with pytest.raises(ValueError, match=r"gradtx\.scale_by_zoom_linesearch\(increase_factor"):
        gradtx.scale_by_zoom_linesearch(5, increase_factor=0.5)
    tx = gradtx.scale_by_zoom_linesearch(5)
    w = jnp.ones(2)
    with pytest.raises(ValueError, match=r"gradtx\.scale_by_zoom_linesearch: update needs"):
        tx.update(w, tx.init(w), w, value=1.0)


def test_an_eager_loss_reading_a_changing_global_is_traced_again(x64):
    """The search body kept for eager steps was traced once with value_fn's data of
    then: a global target moving each step was searched towards the old one."""
    data = {}

    def loss(q):
        return jnp.sum((q - data["target"]) ** 2)

    def run(opt):
        p, out = jnp.zeros(2), []
        state = opt.init(p)
        for k in range(4):
            data["target"] = jnp.asarray([1.0, 2.0]) * (k + 1)
            value, grads = jax.value_and_grad(loss)(p)
            updates, state = opt.update(grads, state, p, value=value, value_fn=loss, grad=grads)
            p = p + updates
            out.append(np.asarray(p))
        return out

    ours = run(gradtx.chain(gradtx.sgd(0.5), gradtx.scale_by_zoom_linesearch(10)))
    with jax.numpy_dtype_promotion("standard"):  # optax is not clean under strict
        theirs = run(optax.chain(optax.sgd(0.5), optax.scale_by_zoom_linesearch(10)))
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    np.testing.assert_allclose(ours[-1], [4.0, 8.0], rtol=1e-12)  # each step the minimum


def test_a_value_fn_returning_an_int_is_refused_by_name():
    """It is differentiated: an int loss passed the check and failed in jax.grad."""
    w = jnp.ones(2)
    for tx, call in (
        (gradtx.chain(gradtx.scale(-1.0), gradtx.scale_by_zoom_linesearch(10)),
         r"gradtx\.scale_by_zoom_linesearch\.update"),
        (gradtx.lbfgs(), r"gradtx\.lbfgs"),
        (gradtx.lbfgs(convention="optax", line_search_fn="strong_wolfe"), r"gradtx\.lbfgs\.update"),
    ):  # fmt: skip
        with pytest.raises(TypeError, match=call + r": value_fn must return the scalar loss as a"):
            tx.update(w, tx.init(w), w, value=3, value_fn=lambda q: jnp.int32(3))

"""hutchinson_hessian_diagonal and scale_by_hessian_diagonal (Sophia's preconditioner)."""

import chex
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax.contrib
import pytest

import gradtx
from tests.conftest import xla_compiles


def _loss(p):
    return jnp.sum(p["a"] ** 2 * p["b"][0]) + jnp.sum(jnp.sin(p["b"])) + jnp.sum(p["a"]) ** 2


def _params():
    return {"a": jnp.asarray([[0.5, -1.0], [2.0, 0.3]]), "b": jnp.asarray([1.5, -0.7, 0.2])}


@pytest.mark.parametrize("make_key", [jax.random.PRNGKey, jax.random.key], ids=["raw", "typed"])
def test_hutchinson_draws_equal_optax(x64, make_key):
    key = make_key(7)
    ours, theirs = (
        gradtx.hutchinson_hessian_diagonal(key),
        optax.contrib.hutchinson_estimator_diag_hessian(key),
    )
    p = _params()
    s_ours, s_theirs = ours.init(p), theirs.init(p)
    step_ours = jax.jit(lambda s: ours.update(p, s, p, obj_fn=_loss))
    with jax.numpy_dtype_promotion("standard"):
        step_theirs = jax.jit(lambda s: theirs.update(p, s, p, obj_fn=_loss))
    for _ in range(3):
        a, s_ours = step_ours(s_ours)
        with jax.numpy_dtype_promotion("standard"):
            b, s_theirs = step_theirs(s_theirs)
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-14), a, b)
    # a typed key is kept as its data, which flax's to_bytes can write
    theirs = s_theirs.key if make_key is jax.random.PRNGKey else jax.random.key_data(s_theirs.key)
    chex.assert_trees_all_equal(s_ours.key, theirs)
    restored = flax.serialization.from_bytes(s_ours, flax.serialization.to_bytes(s_ours))
    chex.assert_trees_all_equal(step_ours(restored), step_ours(s_ours))


def test_hutchinson_is_exact_for_a_diagonal_hessian_and_unbiased(x64):
    c = jnp.asarray([1.0, 2.0, 3.0])
    tx = gradtx.hutchinson_hessian_diagonal()
    w = jnp.ones(3)
    est, _ = tx.update(w, tx.init(w), w, obj_fn=lambda w: jnp.sum(c * w**2))
    np.testing.assert_allclose(est, 2 * c)
    # Non-diagonal: the mean over probes converges to the diagonal.
    p = _params()
    diag = jax.hessian(lambda a: _loss({"a": a, "b": p["b"]}))(p["a"]).reshape(4, 4).diagonal()
    step = jax.jit(lambda state: tx.update(p, state, p, obj_fn=_loss))
    state, total = tx.init(p), 0.0
    for _ in range(400):
        est, state = step(state)
        total = total + est["a"]
    np.testing.assert_allclose(np.ravel(total / 400), diag, atol=0.3)


def test_hutchinson_arguments():
    with pytest.raises(TypeError, match=r"gradtx\.hutchinson_hessian_diagonal\(random_seed=3\)"):
        gradtx.hutchinson_hessian_diagonal(3)
    tx = gradtx.hutchinson_hessian_diagonal()
    with pytest.raises(
        ValueError, match="update needs the params and obj_fn, the loss as a function of them"
    ):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)), jnp.ones(2))


def _counting():
    """A diagonal estimate that counts its calls: ĥ = its call number (1, 2, ...)."""

    def init(params):
        return jnp.zeros([], jnp.int32)

    def update(updates, state, params=None, **extra):
        assert extra == {"note": "given"}, extra  # the caller's keywords only
        n = state + 1
        return jax.tree.map(lambda u: jnp.full_like(u, n), updates), n

    return gradtx.transform(init, update)


def test_refresh_schedule_and_scaling(x64):
    tx = gradtx.scale_by_hessian_diagonal(b2=0.5, gamma=0.5, eps=0.1, update_interval=3,
                                          hessian_diagonal_fn=_counting())  # fmt: skip
    g = jnp.ones(2)
    state = tx.init(g)
    h, calls = 0.0, 0
    for k in range(7):
        out, state = tx.update(g, state, g, note="given")
        np.testing.assert_allclose(out, g / max(0.5 * h, 0.1))  # the estimate from before
        if k % 3 == 0:
            calls += 1
            h = 0.5 * h + 0.5 * calls
    assert int(state.inner_state.estimator_state) == calls == 3
    np.testing.assert_allclose(state.inner_state.hessian, h)


@pytest.mark.parametrize("make", [gradtx.scale_by_hessian_diagonal, lambda: gradtx.sophia(0.1)])
def test_optimizers_built_with_the_default_estimator_share_nothing(make):
    # The default is one module-level object; it used to remember every tree any
    # optimizer had initialised it with, so an empty tree after a non-empty one raised.
    other = make()
    other.init({"a": jnp.ones(2), "b": jnp.ones(3)})
    tx = make()
    u, state = tx.update({}, tx.init({}), {}, obj_fn=lambda p: jnp.zeros([]))
    assert u == {}
    params = {"w": jnp.ones(3)}
    u, _ = tx.update(params, tx.init(params), params, obj_fn=lambda p: jnp.sum(p["w"] ** 2))
    assert u["w"].shape == (3,)


def _sophia_steps(opt, params, state, steps, jit=False):
    def step(params, state):
        u, state = opt.update(jax.grad(_loss)(params), state, params, obj_fn=_loss)
        return gradtx.apply_updates(params, u), state

    step = jax.jit(step) if jit else step
    for _ in range(steps):
        params, state = step(params, state)
    return params, state


def test_eager_refreshes_compile_once(x64):
    """The refresh conditional's branch closed over the update's arrays, so an eager
    Sophia step (torch's habit) traced and compiled it again every time: 0.6 s a step
    on a 7-parameter problem.  Two steps settle the inputs' placement; the next compile
    nothing.  The kept branch reads b2 from its operands: another optimizer's b2 after
    it still steps as that optimizer jitted."""
    opt = gradtx.sophia(0.1, update_interval=1)
    params, state = _sophia_steps(opt, _params(), opt.init(_params()), 2)
    with xla_compiles() as compiles:
        _sophia_steps(opt, params, state, 2)
    assert compiles == []
    other = gradtx.sophia(0.1, b2=0.5, gamma=0.3, update_interval=1)
    got = _sophia_steps(other, params, other.init(params), 3)
    want = _sophia_steps(other, params, other.init(params), 3, jit=True)
    chex.assert_trees_all_close(got, want, rtol=1e-10)
    assert not np.allclose(got[0]["a"], _sophia_steps(opt, params, opt.init(params), 3)[0]["a"])


def test_random_seed_must_be_a_key():
    # Any JAX array passed construction, then failed in update with a raw PRNG error.
    with pytest.raises(
        TypeError, match=r"hutchinson_hessian_diagonal\(random_seed=.*must be a JAX PRNG"
    ):
        gradtx.hutchinson_hessian_diagonal(random_seed=jnp.ones(3))
    gradtx.hutchinson_hessian_diagonal(random_seed=jax.random.PRNGKey(0))
    gradtx.hutchinson_hessian_diagonal(random_seed=jax.random.key(0))


def test_an_eager_objective_reading_new_data_each_step_is_traced_again(x64):
    """The refresh branch kept for eager steps was traced once with obj_fn's data of
    then: a global changing between steps gave optax's numbers for two steps only."""
    state_of = {}

    def loss(q):
        return jnp.sum(state_of["target"] * q**2)

    def run(opt, fresh):
        p, out = jnp.asarray([0.3, -0.2]), []
        state = opt.init(p)
        for k in range(4):
            state_of["target"] = jnp.asarray([1.0, 2.0]) * (k + 1)
            fn = (lambda q, t=state_of["target"]: jnp.sum(t * q**2)) if fresh else loss
            updates, state = opt.update(jax.grad(fn)(p), state, p, obj_fn=fn)
            p = p + updates
            out.append(p)
        return out

    ours = gradtx.sophia(0.01, update_interval=1, weight_decay=None, clip_threshold=None)
    theirs = optax.contrib.sophia(0.01, update_interval=1, weight_decay=0.0, clip_threshold=None)
    with jax.numpy_dtype_promotion("standard"):  # optax is not clean under strict
        want = run(theirs, fresh=False)
    chex.assert_trees_all_close(run(ours, fresh=False), want, rtol=1e-12)

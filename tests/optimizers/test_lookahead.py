"""Lookahead composition, hyperparameters, jit/vmap; radam and ranger contract checks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx


def _problem(seed=0, steps=11):
    rng = np.random.default_rng(seed)
    params = {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=3)}
    grads = [{k: rng.normal(size=v.shape) for k, v in params.items()} for _ in range(steps)]
    return params, grads


def _run(tx, params, grads, jit=True):
    p = jax.tree.map(jnp.asarray, params)
    state = tx.init(p)
    update = jax.jit(tx.update) if jit else tx.update
    out = []
    for g in grads:
        u, state = update(jax.tree.map(jnp.asarray, g), state, p)
        p = gradtx.apply_updates(p, u)
        out.append(p)
    return out, state


def _np_lookahead_sgd(params, grads, lr, k, alpha, post_scale=1.0):
    """Plain-SGD Lookahead in NumPy; ``post_scale`` scales the emitted update."""
    theta = {n: v.copy() for n, v in params.items()}
    slow = {n: v.copy() for n, v in params.items()}
    out = []
    for t, g in enumerate(grads, start=1):
        for n in theta:
            u = -lr * g[n]
            if t % k == 0:
                slow[n] = slow[n] + alpha * (theta[n] + u - slow[n])
                u = slow[n] - theta[n]
            theta[n] = theta[n] + post_scale * u
        out.append({n: v.copy() for n, v in theta.items()})
    return out


def test_lookahead_sync_lands_on_slow_weights(x64):
    params, grads = _problem()
    ours, state = _run(gradtx.lookahead(gradtx.sgd(0.1), 3, 0.5), params, grads)
    ref = _np_lookahead_sgd(params, grads, 0.1, 3, 0.5)
    for a, b in zip(ours, ref):
        for n in b:
            np.testing.assert_allclose(a[n], b[n], rtol=1e-12)
    # After the sync at step 9 the params are the slow weights.
    slow = state.inner_state.slow
    np.testing.assert_allclose(ours[8]["w"], slow["w"], rtol=1e-14)


def test_lookahead_followed_by_another_transform(x64):
    params, grads = _problem(1)
    tx = gradtx.chain(gradtx.lookahead(gradtx.sgd(0.1), 4, 0.6), gradtx.scale(0.5))
    ours, _ = _run(tx, params, grads)
    ref = _np_lookahead_sgd(params, grads, 0.1, 4, 0.6, post_scale=0.5)
    for a, b in zip(ours, ref):
        for n in b:
            np.testing.assert_allclose(a[n], b[n], rtol=1e-12)


def test_lookahead_around_optax_inner_equals_gradtx_inner(x64):
    params, grads = _problem(2)
    ours, _ = _run(gradtx.lookahead(gradtx.adam(0.05), 3, 0.5), params, grads)
    with jax.numpy_dtype_promotion("standard"):
        theirs, _ = _run(gradtx.lookahead(optax.adam(0.05), 3, 0.5), params, grads)
    for a, b in zip(ours, theirs):
        for n in b:
            np.testing.assert_allclose(a[n], b[n], rtol=1e-12)


def test_lookahead_hyperparams_at_both_levels_and_no_retrace():
    params = {"w": jnp.ones(3)}
    tx = gradtx.lookahead(gradtx.sgd(0.1, momentum=0.9), 2, 0.5)
    state = tx.init(params)
    hp = gradtx.get_hyperparams(state)
    assert set(hp) == {"slow_step_size", "learning_rate", "momentum"}
    assert float(hp["slow_step_size"]) == 0.5 and float(hp["learning_rate"]) == pytest.approx(0.1)
    traces = []

    @jax.jit
    def step(state, params):
        traces.append(1)
        u, state = tx.update({"w": jnp.ones(3)}, state, params)
        return state, gradtx.apply_updates(params, u)

    state, p1 = step(state, params)
    state, p2 = step(state, p1)  # sync: p2 = 1 + 0.5 * (fast - 1)
    state = gradtx.set_hyperparams(state, slow_step_size=1.0, learning_rate=0.2)
    state, p3 = step(state, p2)
    state, p4 = step(state, p3)
    assert len(traces) == 1
    # Steps 1-2: fast = 1 - 0.1, 1 - 0.1 - 0.19 = 0.71; slow = 1 + 0.5 (0.71 - 1) = 0.855.
    np.testing.assert_allclose(p2["w"], 0.855, rtol=1e-6)
    # alpha = 1 makes the sync a no-op: plain SGD-momentum with lr 0.2 (buffer 2.71).
    np.testing.assert_allclose(p4["w"], 0.855 - 0.2 * 2.71 - 0.2 * 3.439, rtol=1e-6)


def test_lookahead_vmap_over_slow_step_size(x64):
    params, grads = _problem(3, steps=6)
    tx = gradtx.lookahead(gradtx.sgd(0.1), 2, 0.5)
    p = jax.tree.map(jnp.asarray, params)
    alphas = jnp.array([0.2, 0.9])
    states = jax.vmap(lambda a: gradtx.set_hyperparams(tx.init(p), slow_step_size=a))(alphas)

    def run(state):
        q = p
        for g in grads:
            u, state = tx.update(jax.tree.map(jnp.asarray, g), state, q)
            q = gradtx.apply_updates(q, u)
        return q

    batched = jax.jit(jax.vmap(run))(states)
    for i, a in enumerate([0.2, 0.9]):
        ref = _np_lookahead_sgd(params, grads, 0.1, 2, a)[-1]
        np.testing.assert_allclose(batched["w"][i], ref["w"], rtol=1e-12)


def test_a_state_saved_with_a_longer_sync_period_syncs_at_once(x64):
    """Resumed with sync_period lowered from 6 to 3 after 4 fast steps, the next step
    syncs (it compared steps_since_sync == k - 1 and never synced again), then every 3."""
    params, grads = _problem(steps=10)
    six = gradtx.lookahead(gradtx.sgd(0.1), sync_period=6, slow_step_size=0.5)
    three = gradtx.lookahead(gradtx.sgd(0.1), sync_period=3, slow_step_size=0.5)
    p = jax.tree.map(jnp.asarray, params)
    state = six.init(p)
    for g in grads[:4]:
        u, state = six.update(jax.tree.map(jnp.asarray, g), state, p)
        p = gradtx.apply_updates(p, u)
    counts = []
    for g in grads[4:]:
        slow = state.inner_state.slow
        u, state = three.update(jax.tree.map(jnp.asarray, g), state, p)
        p = gradtx.apply_updates(p, u)
        counts.append(int(state.inner_state.steps_since_sync))
        # a sync lands the fast weights on the new slow ones; between syncs slow stays
        synced = counts[-1] == 0
        np.testing.assert_equal(
            bool(np.allclose(p["w"], state.inner_state.slow["w"], rtol=1e-12)), synced
        )
        np.testing.assert_equal(bool(np.all(state.inner_state.slow["w"] == slow["w"])), not synced)
    assert counts == [0, 1, 2, 0, 1, 2]


def test_lookahead_errors():
    with pytest.raises(ValueError, match=r"gradtx.lookahead\(sync_period=0\)"):
        gradtx.lookahead(gradtx.sgd(0.1), 0)
    with pytest.raises(TypeError, match="sync_period"):
        gradtx.lookahead(gradtx.sgd(0.1), 2.0)
    with pytest.raises(ValueError, match="slow_step_size"):
        gradtx.lookahead(gradtx.sgd(0.1), 2, 1.5)
    tx = gradtx.lookahead(gradtx.sgd(0.1))
    with pytest.raises(ValueError, match="needs params"):
        tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))


def test_ranger_stores_each_number_once():
    state = gradtx.ranger(weight_decay=0.01).init({"w": jnp.ones((2, 2))})
    hp = {k: float(v) for k, v in gradtx.get_hyperparams(state).items()}
    assert hp == pytest.approx(
        dict(
            learning_rate=1e-3,
            b1=0.95,
            b2=0.999,
            eps=1e-5,
            threshold=5.0,
            slow_step_size=0.5,
            weight_decay=0.01,
        )
    )
    radam_hp = gradtx.get_hyperparams(gradtx.radam().init({"w": jnp.ones(2)}))
    assert set(radam_hp) == {"learning_rate", "b1", "b2", "eps", "threshold"}


def test_radam_and_ranger_option_errors():
    with pytest.raises(ValueError, match=r"gradtx.radam\(b2=1.0\)"):
        gradtx.radam(b2=1.0)
    with pytest.raises(ValueError, match=r"gradtx.radam\(untractable='x'\)"):
        gradtx.radam(untractable="x")
    with pytest.raises(TypeError, match=r"gradtx.ranger\(gradient_centralization=1\)"):
        gradtx.ranger(gradient_centralization=1)
    with pytest.raises(ValueError, match=r"gradtx.ranger\(sync_period=0\)"):
        gradtx.ranger(sync_period=0)


OPTIMIZERS = {
    "radam": lambda: gradtx.radam(0.05),
    "radam_skip_wd": lambda: gradtx.radam(
        0.1, weight_decay=1e-5, decoupled_weight_decay=True, untractable="skip"
    ),
    "ranger": lambda: gradtx.ranger(0.05),
    "lookahead_adam": lambda: gradtx.lookahead(gradtx.adam(0.05)),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_converges_and_keeps_dtypes(name):
    target = jnp.array([[1.0, -2.0], [0.5, 3.0]])
    loss = lambda p: jnp.sum((p["w"] - target) ** 2)  # noqa: E731
    tx = OPTIMIZERS[name]()
    params = {"w": jnp.zeros((2, 2))}
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        u, state = tx.update(jax.grad(loss)(params), state, params)
        return gradtx.apply_updates(params, u), state

    for _ in range(400):
        params, state = step(params, state)
    # Centralisation removes each row's mean from the gradient: Ranger reaches
    # the target up to the row means it cannot move (both rows start at 0).
    goal = target - target.mean(axis=1, keepdims=True) if name == "ranger" else target
    np.testing.assert_allclose(params["w"], goal, atol=0.05)
    for dtype in (jnp.bfloat16, jnp.float32):
        p = {"w": jnp.ones((2, 2), dtype)}
        s0 = tx.init(p)
        u, s1 = jax.jit(tx.update)({"w": jnp.ones((2, 2), dtype)}, s0, p)
        assert u["w"].dtype == dtype
        dt = lambda s: jax.tree.map(lambda x: (x.shape, x.dtype), s)  # noqa: E731
        assert dt(s0) == dt(s1)


@pytest.mark.parametrize("name", ["radam_skip_wd", "ranger"])
def test_jit_and_eager_agree(x64, name):
    params, grads = _problem(4, steps=8)
    params["w3"] = np.ones((2, 2, 2))
    for g in grads:
        g["w3"] = np.arange(8.0).reshape(2, 2, 2)
    jitted, _ = _run(OPTIMIZERS[name](), params, grads, jit=True)
    eager, _ = _run(OPTIMIZERS[name](), params, grads, jit=False)
    for a, b in zip(jitted, eager):
        for n in a:
            np.testing.assert_allclose(a[n], b[n], rtol=1e-13)


def test_optaxs_lookahead_params_are_refused_at_init_with_the_plain_form():
    """optax's lookahead example passes LookaheadParams; gradtx's init took them, and
    update then failed on a tree mismatch that did not say why."""
    la = gradtx.lookahead(gradtx.sgd(1e-2), sync_period=5, slow_step_size=0.5)
    with pytest.raises(TypeError, match=r"got optax.LookaheadParams; .* init\(params.fast\)"):
        la.init(optax.LookaheadParams.init_synced(jnp.ones(2)))

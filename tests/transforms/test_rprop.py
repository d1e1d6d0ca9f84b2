"""scale_by_rprop: the rule by hand, the learning rate as initial step size
(set before the first step, rescaling after), bounds, complex leaves, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx


def _steps(tx, grads, state=None, params=None):
    params = jnp.zeros(len(grads[0])) if params is None else params
    state = tx.init(params) if state is None else state
    outs = []
    for g in grads:
        u, state = tx.update(jnp.asarray(g), state)
        outs.append(np.asarray(u))
    return outs, state


def test_rule_by_hand():
    tx = gradtx.scale_by_rprop(1.0, 0.5, 2.0, 0.1, 3.0)
    outs, state = _steps(tx, [[1.0, 1.0, 1.0], [1.0, -1.0, 0.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    np.testing.assert_allclose(outs[0], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(outs[1], [2.0, 0.0, 0.0])  # grow; flip: no step; zero: no step
    np.testing.assert_allclose(outs[2], [3.0, 0.5, 1.0])  # clipped at 3; after the flip: Δ kept
    np.testing.assert_allclose(outs[3], [3.0, 1.0, 2.0])
    np.testing.assert_allclose(optax.tree_utils.tree_get(state, "step_size"), [3.0, 1.0, 2.0])


def test_optax_rule_lags_one_step_like_optax():
    grads = [[1.0, -1.0, 2.0], [1.0, 1.0, 2.0], [-1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]
    ours, _ = _steps(gradtx.scale_by_rprop(0.1, convention="optax"), grads)
    ref, _ = _steps(optax.scale_by_rprop(0.1), grads)
    np.testing.assert_allclose(ours, ref, rtol=1e-6)
    np.testing.assert_array_equal(ours[0], 0.0)


def test_learning_rate_set_before_the_first_step_is_the_initial_step_size():
    tx = gradtx.scale_by_rprop(0.0)
    state = gradtx.set_hyperparams(tx.init(jnp.zeros(2)), {"learning_rate": 0.25})
    outs, _ = _steps(tx, [[1.0, -1.0]], state)
    np.testing.assert_array_equal(outs[0], [0.25, -0.25])  # torch's clip(lr), exactly
    tx = gradtx.scale_by_rprop(0.0, convention="optax")  # optax reads the rate at init only
    state = gradtx.set_hyperparams(tx.init(jnp.zeros(2)), {"learning_rate": 0.25})
    outs, _ = _steps(tx, [[1.0, -1.0]] * 3, state)
    np.testing.assert_array_equal(outs, 0.0)


def test_learning_rate_set_mid_run_rescales_every_step_size():
    tx = gradtx.scale_by_rprop(0.1, 0.5, 1.2, 1e-6, 50.0)
    _, state = _steps(tx, [[1.0, 1.0], [1.0, -1.0]])  # Δ = [0.12, 0.05]
    state = gradtx.set_hyperparams(state, {"learning_rate": 0.2})  # x2
    outs, state = _steps(tx, [[1.0, 1.0]], state)  # Δ = [0.24 * 1.2, 0.1 (after a flip: x1)]
    np.testing.assert_allclose(outs[0], [0.288, 0.1], rtol=1e-6)
    outs, _ = _steps(tx, [[1.0, 1.0]], state)  # no further rescale
    np.testing.assert_allclose(outs[0], [0.3456, 0.12], rtol=1e-6)


def test_a_constant_schedule_changes_nothing_and_a_decaying_one_rescales():
    grads = [[1.0, -1.0]] * 4
    plain, _ = _steps(gradtx.scale_by_rprop(0.1), grads)
    same, _ = _steps(gradtx.scale_by_rprop(gradtx.schedules.constant(0.1)), grads)
    np.testing.assert_array_equal(plain, same)
    halving, _ = _steps(gradtx.scale_by_rprop(lambda k: 0.1 * 0.5 ** k.astype(jnp.float32)), grads)
    np.testing.assert_allclose(halving, np.asarray(plain) * 0.5 ** np.arange(4)[:, None], rtol=1e-6)


def test_complex_leaf_is_two_real_leaves():
    g = [[1.0 + 2.0j, -1.0 + 0.5j], [2.0 - 1.0j, -3.0 + 1.0j], [1.0 - 1.0j, 1.0 + 1.0j]]
    tx = gradtx.scale_by_rprop(0.1)
    ours, _ = _steps(tx, g, params=jnp.zeros(2, jnp.complex64))
    re, _ = _steps(tx, [np.real(x) for x in g])
    im, _ = _steps(tx, [np.imag(x) for x in g])
    np.testing.assert_allclose(np.real(ours), re)
    np.testing.assert_allclose(np.imag(ours), im)


def test_jit_and_dtypes():
    tx = gradtx.scale_by_rprop(0.1)
    params = {"a": jnp.zeros(3, jnp.bfloat16), "b": jnp.zeros(2)}
    state = tx.init(params)
    u, state = jax.jit(tx.update)({"a": jnp.ones(3, jnp.bfloat16), "b": -jnp.ones(2)}, state)
    assert u["a"].dtype == jnp.bfloat16 and state.inner_state.step_size["a"].dtype == jnp.bfloat16
    np.testing.assert_allclose(u["b"], [-0.1, -0.1])


def test_bounds_must_be_ordered():
    with pytest.raises(ValueError, match=r"gradtx.rprop\(min_step_size=1.0, max_step_size=0.5"):
        gradtx.rprop(min_step_size=1.0, max_step_size=0.5)
    with pytest.raises(ValueError, match=r"eta_minus must be in \(0, 1\)"):
        gradtx.rprop(eta_minus=1.0)
    with pytest.raises(ValueError, match=r"eta_plus must be in \(1, inf\)"):
        gradtx.rprop(eta_plus=1.0)


def test_torchs_and_optaxs_rules_keep_states_of_their_own():
    """torch's rule keeps the last gradient, optax's the last update: one read as the
    other emitted a stored gradient as a step."""
    params = jnp.ones(3)
    torch_rule, optax_rule = gradtx.rprop(0.1), gradtx.rprop(0.1, convention="optax")
    assert isinstance(optax_rule.init(params).inner_state[0], gradtx.ScaleByRpropOptaxState)
    for a, b in [(torch_rule, optax_rule), (optax_rule, torch_rule)]:
        with pytest.raises(ValueError, match=r"state does not match .*prev"):
            a.update(params, b.init(params), params)


@pytest.mark.parametrize("convention", ["torch", "optax"])
def test_the_first_step_size_is_the_learning_rate_to_the_bit(convention):
    """Δ and base start at the learning rate: the first update's ratio is 1 exactly."""
    tx = gradtx.scale_by_rprop(0.1, min_step_size=0.0, convention=convention)
    state = tx.init(jnp.zeros(3))
    np.testing.assert_array_equal(optax.tree_utils.tree_get(state, "step_size"), np.float32(0.1))
    _, state = _steps(tx, [[1.0, -2.0, 0.0]], state)
    np.testing.assert_array_equal(optax.tree_utils.tree_get(state, "step_size"), np.float32(0.1))


@pytest.mark.parametrize("convention", ["torch", "optax"])
def test_a_state_whose_step_sizes_start_at_the_learning_rate_steps_the_same(convention):
    """States made before Δ was kept in units of base (Δ = lr, base = lr at init, as in
    older checkpoints) give the same steps: lr / base is 1 exactly."""
    tx = gradtx.scale_by_rprop(0.1, convention=convention)
    grads = [[1.0, -1.0, 2.0], [1.0, 1.0, -2.0], [-1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]
    new = tx.init(jnp.zeros(3))
    lr = jnp.asarray(0.1, jnp.float32)
    old = jax.tree.map(lambda x: x, new)
    inner = old.inner_state._replace(step_size=jnp.full(3, lr), base=lr)
    old = old._replace(inner_state=inner)
    ours, _ = _steps(tx, grads, new)
    theirs, _ = _steps(tx, grads, old)
    np.testing.assert_array_equal(ours, theirs)


def test_under_optax_rule_a_new_rate_shows_one_step_later():
    """The update a step emits under optax's rule was computed the step before."""
    tx = gradtx.scale_by_rprop(0.1, 0.5, 1.2, 1e-6, 50.0, convention="optax")
    outs, state = _steps(tx, [[1.0, 1.0], [1.0, 1.0]])  # emits 0, then Δ_0 = 0.1
    np.testing.assert_allclose(outs[1], [0.1, 0.1], rtol=1e-6)
    state = gradtx.set_hyperparams(state, {"learning_rate": 0.2})  # x2
    outs, _ = _steps(tx, [[1.0, 1.0], [1.0, 1.0]], state)
    np.testing.assert_allclose(outs[0], [0.12, 0.12], rtol=1e-6)  # computed before the change
    np.testing.assert_allclose(outs[1], [0.288, 0.288], rtol=1e-6)  # 0.12 · 2 · 1.2


@pytest.mark.parametrize("convention", ["torch", "optax"])
def test_a_new_rate_rescales_the_step_sizes_that_shrink_grow_or_hold(convention):
    """The ratio reaches all three factors: a flip (eta_minus), a held sign (eta_plus)
    and a zero gradient (1), at the step right after the rate changes."""
    tx = gradtx.scale_by_rprop(0.1, 0.5, 1.2, 1e-6, 50.0, convention=convention)
    _, state = _steps(tx, [[1.0, 1.0, 1.0]])  # Δ = 0.1 each
    state = gradtx.set_hyperparams(state, {"learning_rate": 0.3})  # x3
    _, state = _steps(tx, [[-1.0, 1.0, 0.0]], state)
    np.testing.assert_allclose(
        optax.tree_utils.tree_get(state, "step_size"), [0.15, 0.36, 0.3], rtol=1e-6
    )


@pytest.mark.parametrize("convention", ["torch", "optax"])
def test_under_lazy_an_element_without_an_entry_keeps_the_initial_step_size(convention):
    """An element first touched at the second update starts from lr, not from 1 (review
    R3: Δ = base = 1 at init left it at 1 while base became lr)."""
    tx = gradtx.lazy(gradtx.rprop(0.01, convention=convention))
    params = jnp.zeros(2)
    state = tx.init(params)
    outs = []
    for g in ([1.0, 0.0], [1.0, 1.0], [1.0, 1.0]):
        u, state = tx.update(jnp.array(g), state, params)
        outs.append(np.asarray(u))
    want = [[-0.01, 0.0], [-0.012, -0.01], [-0.0144, -0.012]]
    if convention == "optax":  # one step late: the first update is 0
        want = [[0.0, 0.0], [-0.01, 0.0], [-0.012, -0.01]]
    np.testing.assert_allclose(outs, want, rtol=1e-6)


def test_the_derivative_by_the_learning_rate_flows_at_every_rate():
    """d/dlr through unrolled steps, against central differences, at the rate the
    optimizer was built with too (review R4: a select on lr = base made it 0 there)."""

    def loss(lr, built=None):
        tx = gradtx.rprop(lr if built is None else built)
        p = jnp.array([1.0, -2.0])
        state = tx.init(p)
        if built is not None:
            state = gradtx.set_hyperparams(state, learning_rate=lr)
        for _ in range(3):  # ascent: no sign flips, so the loss is smooth in lr
            u, state = tx.update(p, state, p)
            p = p - u
        return jnp.sum(p**2)

    for lr, built in ((0.3, None), (1.0, None), (0.01, 0.01), (1.0, 0.0)):
        h = 1e-3
        numeric = (loss(lr + h, built) - loss(lr - h, built)) / (2 * h)
        np.testing.assert_allclose(jax.grad(loss)(lr, built), numeric, rtol=1e-3)


@pytest.mark.parametrize("convention", ["torch", "optax"])
def test_under_lazy_a_warmup_from_zero_grows_every_element_from_the_floor(convention):
    """A schedule from 0: Δ_0 = 0 (torch's rule clips it to min_step_size) for every
    element, touched at the first update or later (review R4: with Δ = base = 1 for a
    rate of 0, a later-touched element stepped by 1)."""
    lr = optax.linear_schedule(0.0, 0.1, 4)
    grads = [[1.0, 0.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    lazy, _ = _steps(gradtx.lazy(gradtx.rprop(lr, convention=convention)), grads)
    dense, _ = _steps(gradtx.rprop(lr, convention=convention), [[1.0, 1.0]] * 4)
    assert np.abs(np.asarray(lazy)).max() <= np.abs(np.asarray(dense)).max() < 1e-5

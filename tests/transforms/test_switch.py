"""switch_to_sgd and swats: the switch as data in state."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


def test_adaptive_phase_is_the_inner_transform(x64):
    """Before the switch the output is the inner transform's, whatever it is."""
    inner = gradtx.adam(0.01)
    tx = gradtx.switch_to_sgd(gradtx.adam(0.01), 0.9, 0.999, 0.0)  # tolerance 0: never switch
    params = {"a": jnp.asarray([1.0, -2.0]), "b": jnp.asarray(3.0)}
    s_in, s_tx = inner.init(params), tx.init(params)
    rng = np.random.default_rng(0)
    for _ in range(4):
        g = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=jnp.shape(p))), params)
        want, s_in = inner.update(g, s_in, params)
        got, s_tx = tx.update(g, s_tx, params)
        jax.tree.map(np.testing.assert_array_equal, got, want)
    hp = gradtx.get_hyperparams(s_tx)
    assert {
        "momentum",
        "decay",
        "tolerance",
        "switched",
        "switch_step",
        "sgd_learning_rate",
    } <= set(hp)
    assert not bool(hp["switched"])


def test_forced_switch_in_jit_without_retrace(x64):
    b1 = 0.8
    tx = gradtx.swats(0.01, b1)
    params = {"w": jnp.asarray([1.0, -2.0, 0.5])}
    traces = []

    @jax.jit
    def update(g, state):
        traces.append(1)
        return tx.update(g, state, params)

    state = tx.init(params)
    g = {"w": jnp.asarray([0.3, -0.1, 2.0])}
    _, state = update(g, state)
    state = gradtx.set_hyperparams(state, switched=True, sgd_learning_rate=0.5)
    u1, state = update(g, state)  # v_1 = g
    u2, state = update(g, state)  # v_2 = b1 g + g
    assert len(traces) == 1
    np.testing.assert_allclose(u1["w"], -(1 - b1) * 0.5 * g["w"], rtol=1e-12)
    np.testing.assert_allclose(u2["w"], -(1 - b1) * 0.5 * (1 + b1) * g["w"], rtol=1e-12)
    hp = gradtx.get_hyperparams(state)
    assert bool(hp["switched"]) and int(hp["switch_step"]) == 0  # forced, not detected


def test_the_int32_switch_step_takes_whole_numbers_it_holds():
    """Cast as given, 2.5 would be stored as 2 and 2**40 wrap to 0."""
    state = gradtx.swats().init({"w": jnp.ones(2)})
    assert (
        int(gradtx.get_hyperparams(gradtx.set_hyperparams(state, switch_step=7))["switch_step"])
        == 7
    )
    with pytest.raises(
        TypeError, match=r"set_hyperparams\(switch_step=2.5\): switch_step must be an int"
    ):
        gradtx.set_hyperparams(state, switch_step=2.5)
    with pytest.raises(ValueError, match=r"switch_step is stored in int32, which holds"):
        gradtx.set_hyperparams(state, switch_step=2**40)


def test_per_leaf_state_has_one_entry_per_leaf():
    tx = gradtx.swats(per_leaf=True)
    state = tx.init({"a": jnp.ones(2), "b": jnp.ones(3), "c": jnp.ones(())})
    hp = gradtx.get_hyperparams(state)
    assert hp["switched"].shape == hp["switch_step"].shape == hp["sgd_learning_rate"].shape == (3,)


def test_swats_vmaps_over_learning_rates(x64):
    tx = gradtx.swats(0.01)
    params = jnp.asarray([1.0, -2.0])
    lrs = jnp.asarray([0.01, 0.1])
    states = jax.vmap(lambda lr: gradtx.set_hyperparams(tx.init(params), learning_rate=lr))(lrs)
    u, states = jax.vmap(lambda s: tx.update(params, s, params))(states)
    np.testing.assert_allclose(u[1], 10 * u[0], rtol=1e-12)


@pytest.mark.parametrize(
    "call, err, match",
    [
        (lambda: gradtx.swats(b2=1.0), ValueError, r"gradtx.swats\(b2=1.0\)"),
        (lambda: gradtx.swats(eps=-1.0), ValueError, "eps must be in"),
        (lambda: gradtx.swats(per_leaf=1), TypeError, "per_leaf must be a bool"),
        (lambda: gradtx.swats(nesterov=None), TypeError, "nesterov must be a bool"),
        (lambda: gradtx.switch_to_sgd(lambda g: g), TypeError, "adaptive must be"),
        (lambda: gradtx.switch_to_sgd(gradtx.adam(), momentum=1.0), ValueError, "momentum"),
    ],
)
def test_bad_arguments(call, err, match):
    with pytest.raises(err, match=match):
        call()


@pytest.mark.parametrize("per_leaf", [False, True])
def test_swats_keeps_dtypes_and_state_structure(per_leaf):
    tx = gradtx.swats(0.01, eps=1e-2, per_leaf=per_leaf)
    params = {"a": jnp.ones(3, jnp.bfloat16), "b": jnp.ones(2, jnp.float32)}
    state = tx.init(params)
    update = jax.jit(tx.update)
    for _ in range(3):
        u, new = update(params, state, params)
        assert jax.tree.structure(new) == jax.tree.structure(state)
        assert [x.dtype for x in jax.tree.leaves(new)] == [x.dtype for x in jax.tree.leaves(state)]
        state = new
    assert u["a"].dtype == jnp.bfloat16 and u["b"].dtype == jnp.float32


def test_empty_params_still_advance_the_adaptive_state():
    """With no leaves there is nothing to project, but both step counters still step."""
    tx = gradtx.switch_to_sgd(gradtx.adam(1e-3))
    state = tx.init({})
    for _ in range(2):
        _, state = tx.update({}, state, {})
    leaves = jax.tree_util.tree_leaves_with_path(state)
    counts = {
        jax.tree_util.keystr(k): int(x)
        for k, x in leaves
        if getattr(k[-1], "name", None) == "count"
    }
    # one counter per optimizer: the switch's and the inner adam's
    assert counts == {".count": 2, ".inner_state.adaptive.count": 2}
    assert int(state.inner_state.switch.hyperparams["switch_step"]) == 0

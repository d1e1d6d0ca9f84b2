"""schedule_free_averaging and schedule_free_eval_params."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx


def _run(tx, y, steps):
    state, out = tx.init(y), []
    for u_base in steps:
        u, state = tx.update(u_base, state, y)
        y = y + u
        out.append((y, state))
    return out


def test_two_steps_by_hand(x64):
    tx = gradtx.schedule_free_averaging(0.5, b1=0.75, weight_lr_power=2.0)
    y0 = jnp.array([1.0, 2.0])
    (y1, s1), (y2, s2) = _run(tx, y0, [jnp.array([-1.0, 0.0]), jnp.array([0.0, -1.0])])
    # step 1: c = 1, so x = z = y0 + u
    np.testing.assert_allclose(y1, [0.0, 2.0], rtol=1e-14)
    # step 2: equal weights, c = 1/2: x = (x1 + z2) / 2, y = b1 x + (1 - b1) z2
    z2, x2 = np.array([0.0, 1.0]), (np.array([0.0, 2.0]) + np.array([0.0, 1.0])) / 2
    np.testing.assert_allclose(y2, 0.75 * x2 + 0.25 * z2, rtol=1e-14)
    np.testing.assert_allclose(s2.inner_state.z, z2, rtol=1e-14)
    np.testing.assert_allclose(gradtx.schedule_free_eval_params(s2, y2), x2, rtol=1e-14)
    assert float(s2.inner_state.weight_sum) == 0.5


def test_warmup_weights_follow_the_running_max(x64):
    tx = gradtx.schedule_free_averaging(1.0, weight_lr_power=1.0, warmup_steps=4)
    runs = _run(tx, jnp.zeros(1), [jnp.zeros(1)] * 6)
    # η_t = t / 4 read at the 1-based step, capped at 1
    np.testing.assert_allclose([float(s.inner_state.max_learning_rate) for _, s in runs],
                               [0.25, 0.5, 0.75, 1.0, 1.0, 1.0])  # fmt: skip
    np.testing.assert_allclose(float(runs[-1][1].inner_state.weight_sum), 4.5)


def test_a_zero_learning_rate_moves_nothing():
    tx = gradtx.schedule_free_averaging(0.0)
    y = jnp.array([0.1, 0.2, 0.3])
    for y_next, _ in _run(tx, y, [jnp.zeros(3)] * 3):
        np.testing.assert_array_equal(y_next, y)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_z_in_its_own_dtype(dtype):
    params = {"a": jnp.ones((2, 3), jnp.bfloat16)}
    tx = gradtx.schedule_free_averaging(0.1, dtype=dtype)
    state = tx.init(params)
    u, new = jax.jit(tx.update)({"a": jnp.full((2, 3), -0.1, jnp.bfloat16)}, state, params)
    assert new.inner_state.z["a"].dtype == dtype and u["a"].dtype == jnp.bfloat16
    assert jax.tree.structure(new) == jax.tree.structure(state)
    with pytest.raises(ValueError, match="update needs params"):
        tx.update(params, state)


@pytest.mark.parametrize("shape", [(1,), (2, 3)])
def test_eval_params_of_another_shape_are_refused(shape):
    # They were broadcast against z: eval params of a shape the model does not have.
    opt = gradtx.schedule_free_adamw(0.1)
    state = opt.init({"w": jnp.ones(3)})
    with pytest.raises(
        ValueError, match=r"params leaf \['w'\] has shape .*, the optimizer's \(3,\)"
    ):
        gradtx.schedule_free_eval_params(state, {"w": jnp.ones(shape)})


def test_eval_params_of_one_partition_group_leave_the_others_as_given(x64):
    """A partition's schedule-free group was refused (its z holds MaskedNodes where the
    other groups' leaves are)."""
    params = {"enc": jnp.ones((3, 2)), "head": jnp.ones(2)}
    grads = {"enc": jnp.full((3, 2), 0.5), "head": jnp.full(2, -0.3)}
    sf = gradtx.schedule_free_adamw(1e-2, warmup_steps=2)
    opt = gradtx.partition({"a": sf, "b": gradtx.sgd(0.1)}, {"enc": "a", "head": "b"})
    state, p = opt.init(params), params
    alone_state, alone = sf.init(params["enc"]), params["enc"]
    for _ in range(3):
        u, state = opt.update(grads, state, p)
        p = gradtx.apply_updates(p, u)
        v, alone_state = sf.update(grads["enc"], alone_state, alone)
        alone = gradtx.apply_updates(alone, v)
    x = gradtx.schedule_free_eval_params(state, p)
    np.testing.assert_array_equal(x["enc"], gradtx.schedule_free_eval_params(alone_state, alone))
    np.testing.assert_array_equal(x["head"], p["head"])


def test_eval_params_pass_a_frozen_none_leaf_through_under_optaxs_mask(x64):
    """optax.masked hides a None leaf as a MaskedNode: the structures differed."""
    params = {"enc": jnp.ones((3, 2)), "frozen": None}
    opt = optax.masked(gradtx.schedule_free_adamw(1e-2), {"enc": True, "frozen": False})
    state = opt.init(params)
    updates, state = opt.update({"enc": jnp.full((3, 2), 0.5), "frozen": None}, state, params)
    params = gradtx.apply_updates(params, updates)
    x = gradtx.schedule_free_eval_params(state, params)
    assert x["frozen"] is None and x["enc"].shape == (3, 2)


def test_eval_params_of_a_schedule_free_optimizer_inside_flatten_names_flatten():
    # it said only that the params' tree did not match the state's {'float32': *}
    opt = gradtx.flatten(gradtx.schedule_free_adamw(0.1))
    params = {"w": jnp.ones(2), "b": jnp.ones(3)}
    updates, state = opt.update(params, opt.init(params), params)
    with pytest.raises(
        ValueError, match=r"^gradtx\.schedule_free_eval_params: .* inside gradtx\.flatten"
    ):
        gradtx.schedule_free_eval_params(state, gradtx.apply_updates(params, updates))

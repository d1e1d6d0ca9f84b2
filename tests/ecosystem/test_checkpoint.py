"""Optimizer state through orbax and flax.serialization: hyperparameters come back, and
training resumed from a checkpoint continues bitwise as if never interrupted."""

import pickle

import chex
import cloudpickle
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import serialization

import gradtx
from tests.registry import REGISTRY

STEPS, SAVE_AT = 12, 5


def _problem():
    keys = jax.random.split(jax.random.PRNGKey(7), 3)
    x = jax.random.normal(keys[0], (32, 4))
    y = x @ jax.random.normal(keys[1], (4, 2))
    params = {"dense": {"w": 0.1 * jax.random.normal(keys[2], (4, 2)), "b": jnp.zeros(2)}}
    return x, y, params


def _optimizer():
    # AMSGrad + decoupled decay: several statistics, a running max and six hyperparameters.
    return gradtx.adamw(1e-2, weight_decay=1e-3, amsgrad=True)


def _make_step(opt, x, y):
    @jax.jit
    def step(params, state):
        loss_fn = lambda p: jnp.mean((x @ p["dense"]["w"] + p["dense"]["b"] - y) ** 2)  # noqa: E731
        grads = jax.grad(loss_fn)(params)
        updates, state = opt.update(grads, state, params)
        return gradtx.apply_updates(params, updates), state

    return step


def _train(step, params, state, n):
    for _ in range(n):
        params, state = step(params, state)
    return params, state


def _assert_bitwise(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert u.dtype == v.dtype and u.shape == v.shape
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def _save_restore_orbax(tmp_path, kind, tree):
    path = tmp_path / kind
    if kind == "standard":
        with ocp.StandardCheckpointer() as ckpt:
            ckpt.save(path, tree)
            ckpt.wait_until_finished()
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
            return ckpt.restore(path, abstract)
    ckpt = ocp.PyTreeCheckpointer()
    ckpt.save(path, tree)
    restore_args = ocp.checkpoint_utils.construct_restore_args(tree)
    return ckpt.restore(path, item=tree, restore_args=restore_args)


def _save_restore_flax(tmp_path, kind, tree):
    data = serialization.to_bytes(tree)
    (tmp_path / "state.msgpack").write_bytes(data)
    template = jax.tree.map(jnp.zeros_like, tree)  # a fresh init would do as well
    return serialization.from_bytes(template, (tmp_path / "state.msgpack").read_bytes())


BACKENDS = {
    "orbax-standard": lambda t, tree: _save_restore_orbax(t, "standard", tree),
    "orbax-pytree": lambda t, tree: _save_restore_orbax(t, "pytree", tree),
    "flax-serialization": lambda t, tree: _save_restore_flax(t, "msgpack", tree),
}


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_resume_is_bitwise_and_hyperparams_come_back(backend, tmp_path):
    x, y, params0 = _problem()
    opt = _optimizer()
    step = _make_step(opt, x, y)
    uninterrupted = _train(step, params0, opt.init(params0), STEPS)

    params, state = _train(step, params0, opt.init(params0), SAVE_AT)
    # A hyperparameter changed mid-run must be saved and restored with the state.
    state = gradtx.set_hyperparams(state, learning_rate=5e-3)
    reference = _train(step, params, state, STEPS - SAVE_AT)

    restored = BACKENDS[backend](tmp_path, {"params": params, "opt_state": state})
    assert isinstance(restored["opt_state"], gradtx.HyperparamsState)
    _assert_bitwise(restored, {"params": params, "opt_state": state})
    hp = gradtx.get_hyperparams(restored["opt_state"])
    assert float(hp["learning_rate"]) == np.float32(5e-3) and float(
        hp["weight_decay"]
    ) == np.float32(1e-3)
    assert int(restored["opt_state"].count) == SAVE_AT

    resumed = _train(step, restored["params"], restored["opt_state"], STEPS - SAVE_AT)
    _assert_bitwise(resumed, reference)  # continues exactly as if never interrupted
    assert not np.array_equal(reference[0]["dense"]["w"], uninterrupted[0]["dense"]["w"])


def test_every_optimizers_state_saves_with_orbax(tmp_path):
    """Every registry optimizer's state, fresh and after one step, through orbax's
    StandardCheckpointer (which refuses zero-size arrays) and back, bitwise."""
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(3, 2), "b": jnp.array([0.5, -0.25])}
    grads = jax.tree.map(lambda p: 0.1 * p + 0.01, params)
    states = {}
    for case in REGISTRY:
        opt = case.make(case.lr)
        state = opt.init(params)
        states[case.id] = (state, case.update(opt)(grads, state, params)[1])
    restored = _save_restore_orbax(tmp_path, "standard", states)
    _assert_bitwise(restored, states)


def test_a_state_pickled_before_the_factory_module_split_loads():
    """``HyperparamsState`` lived in ``gradtx._factory`` until 2026-12-05: a state pickled
    then names that module (protocol 0 spells it as a line, so the old pickle is made
    by renaming it back)."""
    params = {"w": jnp.ones(3), "b": jnp.zeros(2)}
    opt = gradtx.chain(gradtx.adam(1e-2), gradtx.clip(1.0))  # counted and uncounted
    state = opt.init(params)
    state = opt.update(jax.tree.map(jnp.ones_like, params), state, params)[1]
    now = pickle.dumps(jax.device_get(state), protocol=0)
    assert b"gradtx._factory_state\nHyperparamsState" in now
    assert b"gradtx._factory_state\nUncountedHyperparamsState" in now
    old = now.replace(b"gradtx._factory_state\n", b"gradtx._factory\n")
    restored = pickle.loads(old)
    assert type(restored[0]) is type(state[0])
    assert type(restored[1]) is type(state[1])
    chex.assert_trees_all_equal(restored, jax.device_get(state))
    u, _ = opt.update(jax.tree.map(jnp.ones_like, params), restored, params)
    chex.assert_trees_all_equal(
        u, opt.update(jax.tree.map(jnp.ones_like, params), state, params)[0]
    )


def test_every_optimizer_and_state_cloudpickle_and_step_alike():
    """cloudpickle (what Ray, Dask and joblib use to ship a training function) carries
    every registry optimizer and its state; the copies' next step is bitwise the
    original's.  A closure is pickled with the globals it reads, so a context-local
    switch read inside one must pickle too (``_tree.ContextLocal``), as itself."""
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(3, 2), "b": jnp.array([0.5, -0.25])}
    grads = jax.tree.map(lambda p: 0.1 * p + 0.01, params)
    for case in REGISTRY:
        opt = case.make(case.lr)
        state = case.update(opt)(grads, opt.init(params), params)[1]
        copied, copied_state = cloudpickle.loads(cloudpickle.dumps((opt, state)))
        _assert_bitwise(copied_state, state)
        _assert_bitwise(
            case.update(copied)(grads, copied_state, params),
            case.update(opt)(grads, state, params),
        )
    for switch in (
        gradtx._build.BUILD,
        gradtx._tree.flat_buffers,
        gradtx._update_checks.probing,
    ):
        assert cloudpickle.loads(cloudpickle.dumps(switch)) is switch


def test_resume_without_changes_equals_uninterrupted(tmp_path):
    x, y, params0 = _problem()
    opt = _optimizer()
    step = _make_step(opt, x, y)
    uninterrupted = _train(step, params0, opt.init(params0), STEPS)
    params, state = _train(step, params0, opt.init(params0), SAVE_AT)
    restored = _save_restore_orbax(tmp_path, "standard", {"params": params, "opt_state": state})
    resumed = _train(step, restored["params"], restored["opt_state"], STEPS - SAVE_AT)
    _assert_bitwise(resumed, uninterrupted)


def test_state_dict_has_named_fields_and_hyperparams(x64):
    params = {"w": jnp.ones(3)}
    state = gradtx.adam(1e-3, b1=0.8).init(params)
    sd = serialization.to_state_dict(state)
    assert set(sd) == {"count", "hyperparams", "python_schedules", "inner_state"}
    assert float(sd["hyperparams"]["b1"]) == 0.8 and sd["hyperparams"]["b1"].dtype == jnp.float64
    back = serialization.from_state_dict(state, sd)
    _assert_bitwise(back, state)


def test_a_state_restored_without_a_target_is_named_with_the_fix(tmp_path):
    """orbax without a target gives plain dicts; the refusal spoke of nnx only."""
    state = gradtx.adam(1e-3).init({"w": jnp.ones(3)})
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(tmp_path / "state", state)
    ckpt.wait_until_finished()
    plain = ckpt.restore(tmp_path / "state")
    with pytest.raises(ValueError, match=r"restored without a target: restore into jax.eval_shape"):
        gradtx.get_hyperparams(plain)


@pytest.mark.parametrize(
    "saved",
    [lambda: gradtx.sgd(0.1), lambda: gradtx.sgd(gradtx.schedules.cosine_decay(0.1, 4))],
    ids=["number", "other schedule"],
)
def test_flax_refuses_a_schedule_target_of_another_form_by_path(saved):
    """A checkpoint of a number, or of another schedule class, restored into a target
    built with a schedule raised a bare IndexError or KeyError from inside gradtx."""
    params = {"w": jnp.ones(3)}
    target = gradtx.sgd(gradtx.schedules.linear(0.1, 0.0, 4)).init(params)
    data = serialization.to_bytes(saved().init(params))
    with pytest.raises(
        ValueError,
        match=r"^flax.serialization: the target holds a Linear schedule .* at path "
        r"\./hyperparams/learning_rate:",
    ):
        serialization.from_bytes(target, data)


def test_an_abstract_state_given_to_an_eager_update_is_named():
    # jax.eval_shape's state (a checkpoint's restore target) reached int(count) and
    # raised a TypeError about ShapeDtypeStruct from inside the factory
    params = {"w": jnp.ones(3)}
    opt = gradtx.adam(0.1)
    abstract = jax.eval_shape(opt.init, params)
    with pytest.raises(ValueError, match=r"gradtx.adam.update: the state holds jax.ShapeDtypeStruct"):  # fmt: skip
        opt.update(params, abstract, params)
    wrapped = gradtx.apply_if_finite(opt, 3)
    with pytest.raises(ValueError, match=r"apply_if_finite.update: the state holds jax.Shape"):
        wrapped.update(params, jax.eval_shape(wrapped.init, params), params)


def test_a_flax_checkpoint_saved_without_x64_and_restored_with_it_is_named_and_casts():
    """flax.serialization keeps the saved dtypes: float32 hyperparameters where an init
    under x64 makes float64 ones.  The refusal says why and how to cast (orbax casts)."""
    opt = gradtx.adam(0.1)
    params = {"w": jnp.full(3, 2.0)}
    state = opt.init(params)
    _, state = opt.update(params, state, params)
    blob = serialization.to_bytes(state)
    with jax.enable_x64(True):
        template = opt.init(params)
        restored = serialization.from_bytes(template, blob)
        with pytest.raises(ValueError, match=r"b1 is float32\[\], expected float64\[\]\)\.  Only "
                           r"32- against 64-bit leaves differ: was the state saved with "
                           r"jax_enable_x64 off and restored with it on"):  # fmt: skip
            opt.update(params, restored, params)
        cast = jax.tree.map(lambda t, x: jnp.asarray(x, t.dtype), template, restored)
        updates, _ = opt.update(params, cast, params)
        assert int(cast.count) == 1 and updates["w"].dtype == jnp.float32

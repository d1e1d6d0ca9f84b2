"""The wrappers not built by ``factory`` check their arguments and states as factories do."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx

PARAMS = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}

WRAPPERS = {
    "masked": lambda inner: gradtx.masked(inner, {"w": True, "b": False}),
    "partition": lambda inner: gradtx.partition({"x": inner}, {"w": "x", "b": "x"}),
    "apply_if_finite": lambda inner: gradtx.apply_if_finite(inner, 2),
    "track_norms": lambda inner: gradtx.track_norms(inner),
    "accumulate_gradients": lambda inner: gradtx.accumulate_gradients(inner, 2),
}
FOREIGN = {
    "adam": lambda: gradtx.adam(0.1),
    "sgd": lambda: gradtx.sgd(0.1),
    "chain(sgd, adam)": lambda: gradtx.chain(gradtx.sgd(0.1), gradtx.adam(0.1)),
}


@pytest.mark.parametrize("foreign", sorted(FOREIGN))
@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_a_foreign_state_is_refused_under_the_wrappers_name(name, foreign):
    """They raised AttributeError or TypeError from reading a field the state lacked."""
    opt = WRAPPERS[name](gradtx.adam(0.1))
    state = FOREIGN[foreign]().init(PARAMS)
    pattern = rf"^gradtx\.{name}\.update: the state does not match what gradtx\.{name}\.init"
    with pytest.raises(ValueError, match=pattern):
        opt.update(PARAMS, state, PARAMS)
    with pytest.raises(ValueError, match=pattern):
        jax.jit(opt.update)(PARAMS, state, PARAMS)


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_a_state_made_for_other_params_is_refused(name):
    opt = WRAPPERS[name](gradtx.adam(0.1))
    state = opt.init({"w": jnp.ones((3, 2)), "b": jnp.ones(3)})
    with pytest.raises(ValueError, match=rf"^gradtx\.{name}\.update: the state does not match"):
        opt.update(PARAMS, state, PARAMS)


@pytest.mark.parametrize("name", sorted(set(WRAPPERS) - {"track_norms"}))  # it needs params
def test_fewer_leaves_than_init_saw_are_refused_around_a_stateless_inner(name):
    """Checking the state probes the inner init with the updates; that must not teach the
    inner sgd (whose state has no params-shaped buffer) the smaller tree."""
    opt = WRAPPERS[name](gradtx.sgd(0.1))
    state = opt.init(PARAMS)
    # refused against the tree init saw, before masked and partition read their masks
    with pytest.raises(ValueError, match=r"^gradtx\.\w+\.update: the (updates|state)"):
        opt.update({"w": jnp.ones((2, 3))}, state)
    opt.update(PARAMS, state)  # the right tree still works


def test_the_states_the_wrappers_make_are_accepted_nested_and_jitted():
    masked = gradtx.masked(
        gradtx.accumulate_gradients(gradtx.adam(0.1), 2), {"w": True, "b": False}
    )
    opt = gradtx.apply_if_finite(gradtx.track_norms(masked), 3)
    state = opt.init(PARAMS)
    update = jax.jit(opt.update)
    for _ in range(3):
        updates, state = update(PARAMS, state, PARAMS)
    np.testing.assert_array_equal(updates["b"], PARAMS["b"])  # masked out: passed through
    assert int(state.inner_state.inner_state.inner_state.micro_step) == 1


@pytest.mark.parametrize(
    "make, call, name",
    [
        (lambda t: gradtx.track_norms(t), "track_norms", "inner"),
        (lambda t: gradtx.masked(t, {"w": True}), "masked", "inner"),
        (lambda t: gradtx.apply_if_finite(t, 1), "apply_if_finite", "inner"),
        (lambda t: gradtx.accumulate_gradients(t, 2), "accumulate_gradients", "inner"),
        (lambda t: gradtx.flatten(t), "flatten", "tx"),
        (lambda t: gradtx.partition({"a": t}, {"w": "a"}), "partition", "transforms['a']"),
    ],
)
def test_a_non_transform_is_named_by_its_argument(make, call, name):
    """track_norms("adam") said 'gradtx.track_norms: expected a GradientTransformation'."""
    message = f"gradtx.{call}({name}=...): {name} must be a GradientTransformation, got str"
    with pytest.raises(TypeError) as info:
        make("adam")
    assert str(info.value) == message
    # optax.MultiSteps is an object whose transform is a method's result
    with pytest.raises(TypeError) as info:
        make(optax.MultiSteps(gradtx.sgd(0.1), 2))
    assert str(info.value).endswith("got MultiSteps; pass its .gradient_transformation()")


@pytest.mark.parametrize(
    "args, shown",
    [
        ((gradtx.sgd(0.1),), "got GradientTransformationExtraArgs"),  # was: init fns as names
        ((("a",),), r"got \(str\)"),
        (((1, gradtx.sgd(0.1)),), r"got \(int, GradientTransformationExtraArgs\)"),
        (("adam",), "got str"),
    ],
)
def test_named_chain_names_a_missing_pair(args, shown):
    """named_chain(adam) reported 'names must be unique strings, got [<function ...>]'."""
    with pytest.raises(TypeError, match=r"gradtx.named_chain: each argument is a \(name, "):
        gradtx.named_chain(*args)
    with pytest.raises(TypeError, match=shown):
        gradtx.named_chain(*args)


def test_named_chain_takes_pairs_as_lists():
    """As optax.named_chain does: pairs read from a config file are lists."""
    opt = gradtx.named_chain(["adam", gradtx.adam(1e-3)], ["sgd", gradtx.sgd(0.1)])
    assert set(opt.init(PARAMS)) == {"adam", "sgd"}


def test_named_chain_names_its_own_non_transform():
    """named_chain(("a", 3)) said 'gradtx.chain: expected a GradientTransformation'."""
    message = "gradtx.named_chain(('a', ...)): the transform must be a GradientTransformation"
    with pytest.raises(TypeError, match=re.escape(message) + ", got int"):
        gradtx.named_chain(("a", 3))
    with pytest.raises(TypeError, match=r"got MultiSteps; pass its \.gradient_transformation"):
        gradtx.named_chain(("a", optax.MultiSteps(gradtx.sgd(0.1), 2)))


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_a_schedule_replaced_by_a_python_number_is_accepted(name):
    """optax's tree_set may put a Python float where a schedule was (the bare optimizer
    takes it); the wrappers' check crashed on it with AttributeError."""
    import optax

    opt = WRAPPERS[name](gradtx.sgd(gradtx.schedules.cosine_decay(0.1, 10)))
    state = optax.tree_utils.tree_set(opt.init(PARAMS), learning_rate=0.5)
    grads = jax.tree.map(jnp.ones_like, PARAMS)
    for update in (opt.update, jax.jit(opt.update)):
        s = state
        for _ in range(2):  # accumulate_gradients steps every second call
            u, s = update(grads, s, PARAMS)
        np.testing.assert_allclose(u["w"], -0.5)


def test_a_masked_state_for_other_params_names_the_masked_out_leaf():
    # Masked-out leaves hold no arrays: the leaves agree and only the empty nodes differ.
    params, other = {"a": jnp.ones(2), "b": jnp.ones(3)}, {"a": jnp.ones(2), "c": jnp.ones(3)}
    opt = gradtx.masked(gradtx.adam(0.1), {"a": True, "b": False})
    state = gradtx.masked(gradtx.adam(0.1), {"a": True, "c": False}).init(other)
    with pytest.raises(
        ValueError,
        match=r"node without arrays .* at \S+mu\['c'\], where init has one at \S+mu\['b'\]\)",
    ):
        opt.update(params, state, params)

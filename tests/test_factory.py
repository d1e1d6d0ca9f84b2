"""The core's update-time checks and eager checks (gradtx/_factory.py,
gradtx/_hyperparameterized.py, gradtx/_update_checks.py, gradtx/_checks.py).

Each test here is a misuse that used to run without an error (or with an
error that did not say what went wrong).
"""

from __future__ import annotations

import fractions
import inspect
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from tests.registry import REGISTRY


def _params():
    return {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}


# ---------------------------------------------------------------- foreign states


@pytest.mark.parametrize(
    ("opt", "other"),
    [
        (gradtx.sgd(0.1, momentum=0.9), gradtx.sgd(0.1)),  # ran without momentum
        (gradtx.adamw(weight_decay=0.5), gradtx.adam()),  # ran without the decay
        (gradtx.sgd(0.1), gradtx.sgd(0.1, momentum=0.9)),
        (gradtx.adam(), gradtx.radam()),
        (gradtx.nadam(), gradtx.adam()),
        (gradtx.rmsprop(centered=True), gradtx.rmsprop()),
        (gradtx.adam(amsgrad=True), gradtx.adam()),
    ],
    ids=["momentum", "decay", "extra-momentum", "radam", "nadam", "centered", "amsgrad"],
)
def test_a_state_from_another_optimizer_is_an_error_naming_both(opt, other):
    params = _params()
    with pytest.raises(ValueError) as info:
        jax.jit(opt.update)(params, other.init(params), params)
    msg = str(info.value)
    assert "does not match" in msg and "expected:" in msg and "got:" in msg, msg


def test_every_case_rejects_the_next_cases_state():
    params = _params()
    for case, other in zip(REGISTRY, REGISTRY[1:] + REGISTRY[:1]):
        opt, foreign = case.make(case.lr), other.make(other.lr)
        state = foreign.init(params)
        same = jax.tree.structure(state) == jax.tree.structure(opt.init(params))
        if same:  # e.g. two variants that differ only in numbers: not foreign
            continue
        with pytest.raises(ValueError, match="does not match"):
            jax.jit(case.update(opt))(params, state, params)


@pytest.mark.parametrize("state", [None, (), {}, [1.0]], ids=["None", "tuple", "dict", "list"])
def test_a_missing_state_is_an_error_naming_the_call(state):
    opt = gradtx.adam(1e-3)
    with pytest.raises(ValueError, match=r"^gradtx\.adam\.update: the state does not match"):
        opt.update(_params(), state, _params())


def test_updates_of_another_container_without_params_are_named_and_drawn_apart():
    # Without params the state is compared with init of the updates: the message said
    # "for these params" and drew a list and a tuple alike, expected == got on screen.
    a, b = jnp.ones((2, 3)), jnp.ones(3)
    for opt in (gradtx.adam(0.1), gradtx.apply_if_finite(gradtx.adam(0.1), 2)):
        with pytest.raises(ValueError) as info:
            opt.update((a, b), opt.init([a, b]))
        message = str(info.value)
        assert "makes for params shaped like these updates (no params given" in message
        assert "expected: " in message and "[float32[2, 3], float32[3]]" in message
        assert "(float32[2, 3], float32[3])" in message


def test_a_state_of_other_dtypes_is_refused(x64):
    """A state's dtypes are part of its layout: a float32 state ran float64 params with
    float32 statistics, a real one dropped complex params' imaginary part, and a bool b1
    put in by tree_set gave NaN steps."""
    opt = gradtx.adam(0.1)
    p32, p64 = {"w": jnp.ones(3, jnp.float32)}, {"w": jnp.ones(3, jnp.float64)}
    pc = {"w": jnp.ones(3, jnp.complex64)}
    for state, params in [(opt.init(p32), p64), (opt.init(p64), p32), (opt.init(p32), pc)]:
        with pytest.raises(ValueError, match=r"state does not match .* expected \w+\[3\], got"):
            opt.update(params, state, params)
    bad = optax.tree_utils.tree_set(opt.init(p32), b1=jnp.asarray(True))
    with pytest.raises(ValueError, match="hyperparameter b1 is bool"):
        opt.update(p32, bad, p32)
    opt.update(p32, optax.tree_utils.tree_set(opt.init(p32), b1=0.5), p32)  # a Python number


def test_a_state_whose_count_or_shown_schedule_value_is_off_is_refused():
    """The count and a Python callable's shown value are part of the layout: a count of
    shape (4,) failed deep inside with a broadcasting error, a float count ran, and an
    int32 shown value made the learning rate an int (every update 0)."""
    opt = gradtx.adam(lambda count: 0.5 / (1 + count.astype(jnp.float32)))
    params = {"w": jnp.ones(3)}
    state = opt.init(params)
    bad = [
        (state._replace(count=jnp.zeros(4, jnp.int32)), r"its count is int32\[4\]"),
        (state._replace(count=jnp.float32(0)), r"its count is float32\[\]"),
        (state._replace(count=jnp.asarray(5, jnp.int8)), r"its count is int8\[\]"),
        (
            state._replace(python_schedules={"learning_rate()": jnp.int32(0)}),
            r"shown value of learning_rate\(\) is int32\[\], expected float32\[\]",
        ),
        (
            state._replace(python_schedules={"learning_rate()": jnp.zeros(5)}),
            r"shown value of learning_rate\(\) is float32\[5\]",
        ),
    ]
    for wrong, match in bad:
        for update in (opt.update, jax.jit(opt.update)):
            with pytest.raises(ValueError, match=r"state does not match.*" + match):
                update(params, wrong, params)
    opt.update(params, state, params)


# ---------------------------------------------------------------- shapes and dtypes


def test_a_gradient_of_another_shape_is_not_broadcast():
    opt = gradtx.adam(1e-2)
    params = {"w": jnp.ones(3)}
    state = opt.init(params)
    with pytest.raises(ValueError, match=r"updates leaf \['w'\] is float32\[3, 1\].*float32\[3\]"):
        opt.update({"w": jnp.ones((3, 1))}, state, params)
    with pytest.raises(ValueError, match=r"updates leaf \['w'\] is float32\[4\]"):
        opt.update({"w": jnp.ones(4)}, state, params)
    # Without params the state's buffers show it, naming the leaf.
    with pytest.raises(ValueError, match=r"\['w'\]: expected float32\[3, 1\], got float32\[3\]"):
        jax.jit(opt.update)({"w": jnp.ones((3, 1))}, state)


def test_a_gradient_of_another_dtype_is_an_error():
    opt = gradtx.sgd(0.1, momentum=0.9)
    params = {"w": jnp.ones(3, jnp.bfloat16)}
    with pytest.raises(ValueError, match=r"\['w'\] is float32\[3\] but the param is bfloat16\[3\]"):
        opt.update({"w": jnp.ones(3)}, opt.init(params), params)


def test_renamed_keys_with_the_same_leaf_count_say_what_differs():
    opt = gradtx.adam()
    state = opt.init({"a": jnp.ones(2), "b": jnp.ones(3)})
    with pytest.raises(ValueError, match="does not match") as info:
        opt.update({"x": jnp.ones(2), "y": jnp.ones(3)}, state)
    assert "'a'" in str(info.value) and "'x'" in str(info.value)


def _lists_to_dicts(node):
    if isinstance(node, list):
        return {i: _lists_to_dicts(v) for i, v in enumerate(node)}
    if isinstance(node, tuple):
        items = [_lists_to_dicts(v) for v in node]
        return type(node)(*items) if hasattr(node, "_fields") else tuple(items)
    if isinstance(node, dict):
        return {k: _lists_to_dicts(v) for k, v in node.items()}
    return node


def test_a_list_handed_back_as_a_mapping_with_the_same_keys_is_the_same_state():
    # Flax NNX's optimizer state returns SM3's per-axis lists as {0: ..., 1: ...}:
    # the same leaves at the same key paths, accepted and read the same.
    opt = gradtx.sm3(0.1)
    params = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
    grads = {"w": jnp.arange(6.0).reshape(3, 2), "b": jnp.asarray([1.0, -2.0])}
    state = opt.init(params)
    _, state = opt.update(grads, state, params)
    want = opt.update(grads, state, params)
    got = opt.update(grads, _lists_to_dicts(state), params)
    chex.assert_trees_all_equal(got[0], want[0])
    # Another key at the same place is still another state.
    moved = _lists_to_dicts(state)
    inner = moved.inner_state[0].accumulators["w"]
    inner[5] = inner.pop(1)
    with pytest.raises(ValueError, match=r"accumulators\['w'\]\[1\] the state has .*\['w'\]\[5\]"):
        opt.update(grads, moved, params)


def test_a_param_frozen_in_one_tree_only_is_named_as_a_gap():
    # the states come from another object, as a checkpoint restored in a new process
    opt, made = gradtx.adam(0.1), gradtx.adam(0.1)
    full, frozen = {"a": jnp.ones(2), "b": jnp.ones(3)}, {"a": jnp.ones(2), "b": None}
    with pytest.raises(ValueError, match=r"has no leaf at \[0\]\.mu\['b'\] .*None \(frozen\)"):
        opt.update(full, made.init(frozen), full)
    with pytest.raises(ValueError, match=r"has a leaf at \[0\]\.mu\['b'\] .*None \(frozen\)"):
        gradtx.adam(0.1).update(frozen, made.init(full), frozen)
    # a field of one option only (centered's mean) is not a frozen param
    with pytest.raises(ValueError, match=r"leaf at \[0\]\.mean\['a'\] \(and 1 more\)[^;]*$"):
        gradtx.rmsprop(0.1).update(full, gradtx.rmsprop(0.1, centered=True).init(full), full)
    # a None only in the state: no leaf differs, the empty node is named
    with pytest.raises(
        ValueError, match=r"node without arrays .* at \[0\]\.mu\['b'\] \(and 1 more\)"
    ):
        gradtx.adam(0.1).update({"a": full["a"]}, made.init(frozen), {"a": full["a"]})
    # a gap at the end of the tree is named too
    sgd = gradtx.sgd(0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"no leaf at \[0\]\.mu\['b'\]; .*None \(frozen\)"):
        sgd.update(full, gradtx.sgd(0.1, momentum=0.9).init(frozen), full)


def test_flatten_rejects_swapped_sizes_and_says_when_the_dtype_differs():
    opt = gradtx.flatten(gradtx.adam())
    state = opt.init({"a": jnp.ones(2), "b": jnp.ones(3)})
    with pytest.raises(ValueError, match="does not match"):
        opt.update({"x": jnp.ones(3), "y": jnp.ones(2)}, state)
    with pytest.raises(ValueError, match=r"dtypes \['bfloat16'\]"):
        opt.update({"a": jnp.ones(2, jnp.bfloat16), "b": jnp.ones(3, jnp.bfloat16)}, state)


# ---------------------------------------------------------------- eager checks


def test_ranger_errors_name_ranger():
    opt = gradtx.ranger()
    params = _params()
    with pytest.raises(ValueError, match=r"^gradtx\.ranger: update needs params"):
        opt.update(params, opt.init(params))


def test_jax_arrays_are_bound_to_the_transform_not_stored():
    # A factory called inside a traced function uses its arguments (and does not
    # hide them behind values stored at init): here the learning rate is traced.
    params = {"w": jnp.ones(2)}

    @jax.jit
    def step(lr, state):
        return gradtx.sgd(lr).update({"w": jnp.ones(2)}, state, params)[0]

    state = gradtx.sgd(jnp.asarray(0.1)).init(params)
    np.testing.assert_allclose(step(0.5, state)["w"], [-0.5, -0.5])
    np.testing.assert_allclose(step(0.25, state)["w"], [-0.25, -0.25])
    assert "learning_rate" not in gradtx.get_hyperparams(state)


def _steps(opt, n=3):
    p, g = {"w": jnp.array([1.0, -2.0, 3.0])}, {"w": jnp.array([0.5, 0.25, -1.0])}
    state, out = opt.init(p), []
    for _ in range(n):
        u, state = opt.update(g, state, p)
        out.append(np.asarray(u["w"]))
    return np.stack(out)


@pytest.mark.parametrize(
    ("make", "array"),
    [
        (lambda v: gradtx.clip_by_global_norm(v), jnp.asarray(1)),  # an int norm truncated
        (lambda v: gradtx.clip_by_global_norm(v), jnp.asarray(1.0, jnp.float16)),
        (lambda v: gradtx.add_noise(v, 0.55, key=1), jnp.asarray(1)),  # gamma cast to 0
        (lambda v: gradtx.nadam(0.1, b1=v), jnp.asarray(0)),  # crashed at step 2
        (lambda v: gradtx.nadam(0.1, b1=v), jnp.asarray(0.9, jnp.bfloat16)),
        (lambda v: gradtx.add_nesterov_momentum(v), jnp.asarray(0.9, jnp.bfloat16)),
        (lambda v: gradtx.adafactor(0.1, decay_rate=v), jnp.asarray(1)),  # int ** -1
    ],
)
def test_an_int_or_16_bit_array_hyperparameter_computes_as_its_value(make, array):
    """A JAX array is bound as it is given, but at least in JAX's default float dtype:
    its int or 16-bit dtype must not become the dtype the step computes in."""
    exact = float(np.asarray(array, np.float64))  # the value the array holds
    np.testing.assert_allclose(_steps(make(array)), _steps(make(exact)), rtol=1e-6)


def test_a_float32_array_of_a_default_is_still_the_default_under_x64(x64):
    """Only int and 16-bit arrays are widened: a float32 array holding a default (as
    optax.inject_hyperparams passes every number) must not read as a value given."""
    f32 = jnp.float32
    optax.inject_hyperparams(gradtx.nadam, hyperparam_dtype=f32)(1e-3, convention="optax")
    gradtx.lbfgs(convention="optax", tolerance_grad=jnp.asarray(1e-7, f32))
    optax.inject_hyperparams(gradtx.muon, static_args=("ns_steps",), hyperparam_dtype=f32)(
        0.02, convention="torch"
    )


def test_a_python_int_beyond_int32_is_taken_as_a_float():
    p = {"w": jnp.ones(2)}
    state = gradtx.adagrad(0.1, initial_accumulator_value=2**31).init(p)
    np.testing.assert_array_equal(state.inner_state[0].sum_of_squares["w"], [2.0**31, 2.0**31])
    assert np.isfinite(_steps(gradtx.fromage(2**31))).all()


def test_the_one_step_count_is_what_optax_tree_utils_find():
    opt = gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adamw(1e-3))
    params = _params()
    state = opt.init(params)
    for _ in range(3):
        _, state = opt.update(params, state, params)
    assert int(optax.tree_utils.tree_get(state, "count")) == 3


def test_a_users_call_is_recorded_on_init_not_in_the_state():
    """What a transform is (``gradtx.to_torch_state_dict`` needs the torch class)
    is read from the object; the state stays numbers only."""
    from gradtx._factory_state import made_by

    opt = gradtx.adamw(0.1, amsgrad=True)
    made = made_by(opt)
    assert made.call == "gradtx.adamw" and made.factory is gradtx.adamw
    assert made.arguments["amsgrad"] is True and made.arguments["learning_rate"] == 0.1
    assert made_by(gradtx.adamw(0.1)).arguments["amsgrad"] is False  # each call its own record
    assert made_by(gradtx.chain(opt)) is None and made_by(optax.adam(0.1)) is None
    leaves = jax.tree.leaves(opt.init(_params()))
    assert all(isinstance(x, jax.Array) for x in leaves)

    @gradtx.factory(counted=True, learning_rate=gradtx.LEARNING_RATE)
    def wrapped(learning_rate=0.1):
        inner = gradtx.adam(learning_rate)
        assert made_by(inner) is None  # built inside a body: the outer call owns it
        return inner

    assert made_by(wrapped()).call == "wrapped"  # a user's factory: not in gradtx


@pytest.mark.parametrize(
    ("factory", "name", "others"),
    [
        (gradtx.rprop, "learning_rate", {}),
        (gradtx.schedule_free_adamw, "b1", {"learning_rate": 1e-3}),
        (gradtx.schedule_free_sgd, "b1", {"learning_rate": 1e-3}),
    ],
)
def test_a_bound_array_is_never_a_buffer_of_the_state(factory, name, others):
    # An eager update returned the caller's array as a state buffer (rprop's base rate,
    # schedule-free's b1 of y): donating that state deleted the caller's array, and
    # through optax.inject_hyperparams the step donated one buffer twice.
    value = jnp.asarray(0.5, jnp.float32)
    opt, params = factory(**others, **{name: value}), {"w": jnp.ones(3)}
    grads = {"w": jnp.asarray([1.0, -2.0, 0.5])}

    def step(p, s):
        u, s = opt.update(grads, s, p)
        return gradtx.apply_updates(p, u), s

    _, state = opt.update(grads, opt.init(params), params)  # eager
    pointer = value.unsafe_buffer_pointer()
    assert all(x.unsafe_buffer_pointer() != pointer for x in jax.tree.leaves(state))
    jax.jit(step, donate_argnums=(0, 1))({"w": jnp.ones(3)}, state)
    assert float(value) == 0.5  # the caller's array is still alive
    injected = optax.inject_hyperparams(factory)(**others, **{name: value})
    _, s = injected.update(grads, injected.init(params), params)
    jax.jit(lambda p, s: injected.update(grads, s, p), donate_argnums=(1,))(params, s)


@pytest.mark.parametrize(
    ("fn", "error", "message"),
    [
        (lambda c: jnp.asarray([0.1, 0.2, 0.3]), ValueError, r"returned shape \(3,\); a hyper"),
        (lambda c: 0.1j, TypeError, "returned complex64, not a real number"),
        (lambda c: "0.1", TypeError, "returned str, not a real number"),
        (lambda c: None, TypeError, "returned NoneType, not a real number"),
        # float() raised OverflowError, naming neither the call nor the argument
        (lambda c: 10**400, ValueError, r"returned an int beyond float's range \(401 digits\)"),
        (lambda c: -(10**400), ValueError, r"returned an int beyond float's range \(401 digits\)"),
    ],
)
def test_a_plain_callable_must_return_one_real_number(fn, error, message):
    # A vector learning rate was broadcast over the leaves' last axis (one rate per
    # column, no error); a complex or string one failed inside float().
    params = {"w": jnp.ones((2, 3))}
    match = r"^gradtx.sgd\(learning_rate=<function>\): it " + message
    with pytest.raises(error, match=match):
        gradtx.sgd(fn).init(params)
    state = gradtx.sgd(0.1).init(params)
    with pytest.raises(error, match=match):  # while tracing, as eagerly
        jax.jit(lambda p, s: gradtx.sgd(fn).update(p, s, p))(params, state)
    with pytest.raises(error, match=r"^gradtx.adabound\(learning_rate=<function>\): it "):
        gradtx.adabound(fn)


@pytest.mark.parametrize(
    "fn",
    [lambda c: 1e-3 * min(1.0, (c + 1) / 10), lambda c: 1e-3 * float(c), lambda c: [1e-3][c]],
    ids=["bool", "float", "index"],
)
def test_a_callable_with_python_control_flow_on_the_count_is_named(fn):
    """The count is traced in every update (init's layout is traced to check the state):
    Python's min, float() or an index on it raised JAX's own error, naming neither
    the call nor the argument, and speaking of jit in an eager update."""
    params = {"w": jnp.ones(3)}
    opt = gradtx.adam(fn)
    state = opt.init(params)
    with pytest.raises(TypeError, match=r"^gradtx.adam\(learning_rate=<function>\): the schedule is called with the step count as a traced JAX array.*jnp.where"):  # fmt: skip
        opt.update(params, state, params)


def test_a_plain_callable_may_return_a_fraction_as_a_number_given_may_be():
    params = {"w": jnp.ones(2)}
    grads = {"w": jnp.asarray([1.0, -2.0])}
    # it was refused: "it returned Fraction, not a real number"
    opt = gradtx.sgd(lambda c: fractions.Fraction(1, 10))
    updates, _ = opt.update(grads, opt.init(params), params)
    chex.assert_trees_all_equal(updates, {"w": jnp.asarray([-0.1, 0.2])})


@pytest.mark.parametrize(
    ("make", "hint"),
    [
        (lambda: gradtx.adam(lr=1e-3), r"adam: got an unexpected keyword argument 'lr' \(torch's "
         r"lr=; gradtx\.adam takes learning_rate=\)$"),
        (lambda: gradtx.adam(1e-3, betas=(0.9, 0.99)), r"adam: got an unexpected keyword "
         r"argument 'betas' \(torch's betas=; gradtx\.adam takes b1= and b2=\)$"),
        # binding reports the missing learning_rate first: the hint is still the point
        (lambda: gradtx.lion(lr=1e-4), r"lion: missing a required argument: 'learning_rate' "
         r"\(torch's lr=; gradtx\.lion takes learning_rate=\)$"),
        (lambda: gradtx.lion(1e-4, betas=(0.9, 0.99)), r"lion: got an unexpected keyword "
         r"argument 'betas' \(torch's betas=; gradtx\.lion takes b1= and b2=\)$"),
        (lambda: gradtx.rmsprop(1e-3, alpha=0.9), r"rmsprop: got an unexpected keyword "
         r"argument 'alpha' \(torch's alpha=; gradtx\.rmsprop takes decay=\)$"),
        (lambda: gradtx.adan(1e-3, betas=(0.98, 0.92, 0.99)), r"adan: got an unexpected "
         r"keyword argument 'betas' \(torch's betas=; gradtx\.adan takes b1=, b2= and b3=\)$"),
        (lambda: gradtx.rprop(1e-3, etas=(0.5, 1.2)), r"rprop: got an unexpected keyword "
         r"argument 'etas' \(torch's etas=; gradtx\.rprop takes eta_minus= and eta_plus=\)$"),
        (lambda: gradtx.rprop(1e-3, step_sizes=(1e-6, 50)), r"rprop: got an unexpected keyword "
         r"argument 'step_sizes' \(torch's step_sizes=; gradtx\.rprop takes min_step_size= and "
         r"max_step_size=\)$"),
        (lambda: gradtx.reduce_on_plateau(0.5, min_lr=1e-5), r"reduce_on_plateau: got an "
         r"unexpected keyword argument 'min_lr' \(torch's min_lr=; gradtx\.reduce_on_plateau "
         r"takes min_scale=: min_lr / lr, a fraction of the rate\)$"),
        (lambda: gradtx.reduce_on_plateau(0.5, eps=1e-8), r"reduce_on_plateau: got an "
         r"unexpected keyword argument 'eps' \(torch's eps=: gradtx applies every reduction, "
         r"as torch with eps=0\)$"),
        # schedules: torch's scheduler keywords
        (lambda: gradtx.schedules.cosine_decay(0.1, 10, eta_min=1e-3), r"schedules\.cosine_decay:"
         r" got an unexpected keyword argument 'eta_min' \(torch's eta_min=: alpha=eta_min / "
         r"init_value, a fraction of the initial value; past_end=\"cycle\" for torch's cosine "
         r"past T_max\)$"),
        (lambda: gradtx.schedules.sgdr(0.1, T_0=10), r"schedules\.sgdr: missing a required "
         r"argument: 'first_period' \(torch's T_0=: first_period=T_0\)$"),
        (lambda: gradtx.schedules.one_cycle(100, max_lr=0.1), r"schedules\.one_cycle: missing a "
         r"required argument: 'peak_value' \(torch's max_lr=: peak_value=max_lr\)$"),
        (lambda: gradtx.schedules.join([gradtx.schedules.constant(0.1)], milestones=[]),
         r"schedules\.join: missing a required argument: 'boundaries' \(torch's milestones=: "
         r"boundaries=milestones\)$"),
        (lambda: gradtx.schedules.swa_lr(0.1, swa_lr=0.05), r"schedules\.swa_lr: missing a "
         r"required argument: 'swa_value' \(torch's swa_lr=: swa_value=swa_lr\)$"),
        (lambda: gradtx.schedules.constant(0.1, last_epoch=5), r"schedules\.constant: got an "
         r"unexpected keyword argument 'last_epoch' \(torch's last_epoch=: none: a gradtx "
         r"schedule is a function of the optimizer's step count"),
    ],
)  # fmt: skip
def test_a_torch_keyword_points_to_gradtxs_spelling(make, hint):
    with pytest.raises(TypeError, match=r"^gradtx\." + hint):
        make()


def test_every_schedule_names_itself_in_a_keyword_error():
    for name in gradtx.schedules.__all__:
        fn = getattr(gradtx.schedules, name)
        if not inspect.isfunction(fn):
            continue
        with pytest.raises(TypeError, match=rf"^gradtx\.schedules\.{name}: "):
            fn(no_such=1)


def test_a_torch_keyword_gradtx_takes_as_it_is_or_means_otherwise_gets_no_hint():
    # prodigy takes betas itself; alpha is rmsprop's decay only in torch's RMSprop
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'alpha'$"):
        gradtx.adam(1e-3, alpha=0.9)
    assert gradtx.prodigy(betas=(0.9, 0.99)) is not None


def test_optaxs_extra_positional_arguments_are_named():
    # gradtx's positional parameters are a prefix of optax's; the rest go by keyword
    with pytest.raises(TypeError, match=r"^gradtx\.adam: too many positional arguments "
                       r"\(optax\.adam takes eps_root there by position; gradtx\.adam by "
                       r"keyword: eps_root=\)$"):  # fmt: skip
        gradtx.adam(1e-3, 0.9, 0.999, 1e-8, 1e-9)
    with pytest.raises(TypeError, match=r"optax\.adagrad takes initial_accumulator_value, eps "
                       r"there by position; gradtx\.adagrad by keyword: "
                       r"initial_accumulator_value=, eps=\)$"):  # fmt: skip
        gradtx.adagrad(0.1, 0.1, 1e-7)
    with pytest.raises(TypeError, match=r"\(argument 5 is optax\.adamw's eps_root but "
                       r"gradtx\.adamw's weight_decay: docs/ecosystem\.md"):  # fmt: skip
        gradtx.adamw(1e-3, 0.9, 0.999, 1e-8, 1e-4, None, 1e-4)
    # more than optax takes too, or a position that differs by its name only: no hint
    with pytest.raises(TypeError, match=r"^gradtx\.lbfgs: too many positional arguments$"):
        gradtx.lbfgs(*[0.1] * 8)
    with pytest.raises(TypeError, match=r"^gradtx\.lookahead: too many positional arguments$"):
        gradtx.lookahead(gradtx.sgd(0.1), 5, 0.5, True)


def test_an_optax_keyword_gradtx_does_not_take_points_to_the_spellings():
    with pytest.raises(TypeError, match=r"'nesterov' \(optax\.adam takes it; .*docs/ecosystem\.md"):
        gradtx.adam(0.1, nesterov=True)
    with pytest.raises(TypeError, match=r"'weight_decay_mask' \(optax\.adadelta takes it"):
        gradtx.adadelta(0.1, weight_decay_mask={"w": True})
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'foo'$"):
        gradtx.adam(0.1, foo=1)


def test_a_decorator_says_which_names_lack_a_spec_and_which_lack_a_parameter():
    """It said 'gradtx.factory(f): specs and parameters differ: {...}', one set for a
    missing spec and a stray one alike, under @optimizer too."""

    def make(b1: float = 0.9, eps: float = 1e-8) -> optax.GradientTransformation:
        return gradtx.scale(-b1)

    with pytest.raises(TypeError) as info:
        gradtx.factory(beta1=gradtx.DECAY_RATE, eps=gradtx.NON_NEGATIVE)(make)
    assert str(info.value) == (
        "the decorator of make: parameters without a spec: ['b1']; "
        "specs without a parameter: ['beta1']"
    )


def test_every_public_function_annotates_what_it_returns():
    """Without it a user's type checker sees Any (mypy does not ask for it)."""
    bare = [
        name
        for name in gradtx.__all__
        if inspect.isfunction(getattr(gradtx, name))
        and inspect.signature(getattr(gradtx, name)).return_annotation is inspect.Signature.empty
    ]
    assert not bare, f"annotate what these return: {bare}"


def test_the_arguments_typed_scalar_or_schedule_are_those_that_take_a_schedule():
    """The docs say a schedule goes where the signature says ScalarOrSchedule: nadam's b1
    and dpsgd's momentum took one while typed float."""
    from gradtx._factory import DECLARED

    differ = []
    for call, specs in DECLARED:
        factory = getattr(gradtx, call.removeprefix("gradtx."), None)
        if factory is None:
            continue
        parameters = inspect.signature(factory).parameters
        for name, spec in specs.items():
            if isinstance(spec, gradtx.Hyper) and name in parameters:
                typed = "Schedule" in str(parameters[name].annotation)
                if typed != bool(spec.schedule):
                    differ.append(f"{call}({name})")
    assert not differ, f"annotation and spec disagree on taking a schedule: {differ}"


def test_a_default_given_as_a_spec_and_a_non_bool_gradient_map_are_refused():
    # each was accepted, then failed at the call: 'int' object has no attribute 'check'
    with pytest.raises(TypeError, match=r"gradtx.factory\(learning_rate=3\): a spec is Hyper"):
        gradtx.factory(learning_rate=3)
    with pytest.raises(TypeError, match=r"gradtx.transform\(gradient_map=1\): must be a bool"):
        gradtx.transform(lambda p: (), lambda u, s, p=None: (u, s), gradient_map=1)


@pytest.mark.parametrize("make", [lambda: gradtx.adam(0.1), lambda: gradtx.scale_by_rms()])
def test_a_fourth_positional_argument_of_update_names_the_call(make):
    opt, p = make(), {"w": jnp.ones(2)}
    with pytest.raises(TypeError, match=r"\.update: takes \(updates, state, params\) and keywords"):
        opt.update(p, opt.init(p), p, 1.0)  # named an inner function before


def test_a_restored_schedule_of_other_field_shapes_is_named_with_its_fields():
    # the message said "learning_rate is PiecewiseConstant, expected PiecewiseConstant"
    params = {"w": jnp.ones(3)}
    saved = gradtx.adam(gradtx.schedules.piecewise_constant(0.1, {3: 0.5, 6: 0.5})).init(params)
    opt = gradtx.adam(gradtx.schedules.piecewise_constant(0.1, {3: 0.5}))
    with pytest.raises(
        ValueError,
        match=r"learning_rate is PiecewiseConstant\(init_value=float32\[\], "
        r"boundaries=float32\[2\], scales=float32\[2\]\), expected PiecewiseConstant\("
        r"init_value=float32\[\], boundaries=float32\[1\], scales=float32\[1\]\)",
    ):
        opt.update(params, saved, params)


@pytest.mark.parametrize(
    "make, where",
    [
        (lambda: gradtx.adam(nesterov=True), "optax.adam"),
        # optax has muon in optax.contrib only: the hint said optax.muon
        (lambda: gradtx.muon(preconditioning="schatten"), "optax.contrib.muon"),
    ],
)
def test_an_argument_only_optax_spells_so_is_pointed_to_optax(make, where):
    with pytest.raises(TypeError, match=rf"unexpected keyword argument '\w+' \({where} takes it;"):
        make()
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'bogus'$"):
        gradtx.adam(bogus=1)


def test_optaxs_keyword_for_a_missing_argument_is_named():
    # the error named only gradtx's missing 'inner', not the fast_optimizer= given
    with pytest.raises(TypeError, match=r"'inner' \(optax.lookahead takes fast_optimizer=; "):
        gradtx.lookahead(fast_optimizer=gradtx.sgd(0.1), sync_period=5, slow_step_size=0.5)


def test_a_factory_whose_body_is_a_gradient_map_is_one():
    # without kind=GradientMap a user's clip factory was a non-map: momentum after it
    # saw the clipped gradient and scale_by_rms the raw one
    @gradtx.factory(max_delta=gradtx.Hyper(low=0.0))
    def my_clip(max_delta=0.7):
        return gradtx.clip(max_delta)

    assert isinstance(my_clip(0.7), gradtx.GradientMap)
    params = jnp.zeros(2)
    ours = gradtx.chain(my_clip(0.7), gradtx.add_momentum(0.5), gradtx.scale_by_rms(0.9))
    theirs = gradtx.chain(gradtx.clip(0.7), gradtx.add_momentum(0.5), gradtx.scale_by_rms(0.9))
    s, t = ours.init(params), theirs.init(params)
    for g in ([3.0, -0.2], [0.1, 5.0]):
        got, s = ours.update(jnp.array(g), s, params)
        want, t = theirs.update(jnp.array(g), t, params)
        chex.assert_trees_all_equal(got, want)


@pytest.mark.parametrize(
    "build, values, error, message",
    [
        # the primitives inside trusted the owner, which had no specs: an ascent, NaN steps
        (lambda lr: gradtx.scale_by_learning_rate(lr), {"lr": -1.0}, ValueError,
         r"^gradtx\.scale_by_learning_rate\(learning_rate=-1.0\): learning_rate must be in"),
        (lambda lr: gradtx.scale_by_learning_rate(lr), {"lr": math.nan}, ValueError,
         r"^<lambda>\(lr=nan\): lr must not be NaN"),
        # a number no spec declares is still a number: it failed at init with NumPy's words
        (lambda d: gradtx.scale(d), {"d": "x"}, TypeError, r"^<lambda>\(d='x'\): d must be a real number"),
        (lambda d: gradtx.scale(d), {"d": None}, TypeError, r"^<lambda>\(d=None\): d must be a"),
        (lambda d: gradtx.scale(d), {"d": True}, TypeError, r"step count, got bool$"),
        # a list init cannot store: refused here, not at init with NumPy's words
        (lambda d: gradtx.scale(1.0), {"d": [None, 0.5]}, TypeError, r"d=\[None, 0.5\]\): d must"),
        (lambda d: gradtx.scale(1.0), {"d": [[0.5], [0.2, 0.3]]}, TypeError, r"got a ragged list$"),
        (lambda d: gradtx.scale(1.0), {"d": 10**400}, TypeError, r"got an int beyond float64$"),
        (lambda d: gradtx.scale(d), {"d": 0.1 + 0j}, TypeError, r"got a complex number$"),
        (3, {"lr": 1.0}, TypeError, r"^gradtx\.hyperparameterized\(build\): build must be a"),
        (lambda lr, mom: gradtx.sgd(lr, momentum=mom), {"lr": 1.0}, TypeError,
         r"^gradtx\.hyperparameterized\(<lambda>\): build does not take these values: .*'mom'"),
        (lambda lr: 3, {"lr": 1.0}, TypeError, r"build returned int, not a transform$"),
    ],
)  # fmt: skip
def test_a_direct_hyperparameterized_call_is_checked(build, values, error, message):
    with pytest.raises(error, match=message):
        gradtx.hyperparameterized(build, values)
    good = gradtx.hyperparameterized(lambda lr: gradtx.scale_by_learning_rate(lr), {"lr": 0.1})
    chex.assert_trees_all_close(
        good.update(jnp.ones(2), good.init(jnp.ones(2)))[0], -0.1 * jnp.ones(2)
    )


def test_a_direct_call_checks_its_declared_numbers_and_set_hyperparams_takes_the_rest():
    """A direct call's numbers were checked by nobody (a declared range only by
    set_hyperparams), and set_hyperparams refused its own stored 1.5 by the ranges of
    gradtx's factories that use the name (add_momentum's decay in [0, 1])."""
    scaled = lambda decay: gradtx.scale(decay)  # noqa: E731
    with pytest.raises(ValueError, match=r"^mine\(decay=-1.5\): decay must be in \[0, inf\)$"):
        gradtx.hyperparameterized(
            scaled, {"decay": -1.5}, "mine", declared={"decay": gradtx.Hyper(low=0)}
        )
    with pytest.raises(TypeError, match=r"declared must be a mapping of names to gradtx.Hyper"):
        gradtx.hyperparameterized(scaled, {"decay": 1.0}, declared={"decay": (0, 1)})
    undeclared = gradtx.hyperparameterized(scaled, {"decay": 1.5})
    state = undeclared.init(jnp.ones(2))
    for value in (1.5, -0.25, math.inf):  # the user's own number: any real number
        state = gradtx.set_hyperparams(state, {"decay": value})
        assert float(gradtx.get_hyperparams(state)["decay"]) == value
    with pytest.raises(ValueError, match=r"^gradtx.set_hyperparams\(decay=nan\): decay must not"):
        gradtx.set_hyperparams(state, {"decay": math.nan})
    # (another name: states of one structure share their makers' ranges, the widest wins)
    declared = gradtx.hyperparameterized(
        lambda rate: gradtx.scale(rate),
        {"rate": 1.5},
        "mine",
        declared={"rate": gradtx.Hyper(low=0)},
    )
    with pytest.raises(ValueError, match=r"rate must be in \[0, inf\), as mine, which made this"):
        gradtx.set_hyperparams(declared.init(jnp.ones(2)), {"rate": -1.0})


def test_a_direct_call_keeps_what_it_does_not_declare_as_given_and_others_ranges():
    """Review: the first form checked undeclared numbers as real scalars (an array, a
    list refused), dropped a declared optional zero, and recorded them
    with no range, which then let set_hyperparams take a negative rate for every sgd."""

    def times(m):
        return gradtx.transform(
            lambda p: gradtx.EmptyState(), lambda u, s, p=None: (u * jnp.asarray(m), s)
        )

    for m in (jnp.asarray([1.0, 2.0, 3.0]), [1.0, 2.0, 3.0], np.asarray([1.0, 2.0, 3.0])):
        tx = gradtx.hyperparameterized(times, {"m": m})
        np.testing.assert_array_equal(tx.update(jnp.ones(3), tx.init(jnp.ones(3)))[0], m)
    decay = gradtx.hyperparameterized(
        lambda weight_decay: gradtx.adamw(0.1, weight_decay=weight_decay),
        {"weight_decay": 0.0},
        declared={"weight_decay": gradtx.WEIGHT_DECAY},
    )
    assert float(gradtx.get_hyperparams(decay.init(jnp.ones(2)))["weight_decay"]) == 0.0
    with pytest.raises(TypeError, match=r"weight_decay=None\): weight_decay must be a number here"):
        gradtx.hyperparameterized(
            lambda weight_decay: gradtx.adamw(0.1, weight_decay=weight_decay),
            {"weight_decay": None},
            declared={"weight_decay": gradtx.Hyper(low=0.0, nullable=True)},
        )
    state = gradtx.sgd(0.1).init(jnp.ones(2))
    for _ in range(70):  # one record, not one per construction (past 64 sgd's went: R2)
        gradtx.hyperparameterized(
            lambda learning_rate: gradtx.sgd(learning_rate), {"learning_rate": 0.1}
        ).init(jnp.ones(2))
    gradtx.hyperparameterized(gradtx.sgd, {"learning_rate": 0.1}).init(
        jnp.ones(2)
    )  # named gradtx.sgd
    with pytest.raises(ValueError, match=r"must be in \[0, inf\), as gradtx.sgd, which made"):
        gradtx.set_hyperparams(state, {"learning_rate": -1.0})


def test_a_range_given_as_an_array_is_recorded_as_its_states_maker():
    """Makers keyed by their ranges: an array bound could not be hashed, and init raised
    'unhashable type' for a factory construction had taken."""

    @gradtx.factory(arrayed_rate=gradtx.Hyper(low=np.array(0.0), low_open=True))
    def arrayed(arrayed_rate=0.1):
        return gradtx.scale_by_learning_rate(arrayed_rate)

    state = arrayed(0.1).init(jnp.ones(2))
    with pytest.raises(ValueError, match=r"arrayed_rate must be in \(0, inf\), as arrayed,"):
        gradtx.set_hyperparams(state, arrayed_rate=-1.0)


def test_a_users_factory_is_named_without_gradtxs_prefix():
    @gradtx.factory(decay=gradtx.DECAY_RATE)
    def my_rms(decay=0.5):
        return gradtx.scale_by_rms(decay)

    with pytest.raises(ValueError, match=r"^my_rms\(decay=1.5\): decay must be in \[0, 1\)$"):
        my_rms(1.5)
    counting = gradtx.hyperparameterized(
        lambda d: gradtx.transform(
            lambda p: gradtx.EmptyState(),
            lambda u, s, p=None, **e: (gradtx.step_count(e, "mine") * u, s),
        ),
        {"d": 1.0},
    )
    # the message named only gradtx.factory(counted=True)
    with pytest.raises(RuntimeError, match=r"direct gradtx.hyperparameterized: pass counted=True"):
        counting.update(jnp.ones(2), counting.init(jnp.ones(2)))


def test_a_counted_factory_over_an_optax_style_body_without_kwargs_runs():
    # the owner passed count (and grads) to a body that names neither: "unexpected
    # keyword argument 'count'" with a schedule as the learning rate
    @gradtx.factory(learning_rate=gradtx.Hyper(low=0.0, schedule=True), counted=True)
    def mine(learning_rate=0.1):
        def update(updates, state, params=None):
            return jax.tree.map(lambda u: -learning_rate * u, updates), state

        return optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), update)

    tx = mine(gradtx.schedules.exponential_decay(0.1, 1, 0.5))
    state = tx.init(jnp.ones(2))
    for want in (-0.1, -0.05):
        u, state = tx.update(jnp.ones(2), state)
        chex.assert_trees_all_close(u, jnp.full(2, want))


def test_a_counted_body_that_is_an_optax_combinator_hands_the_count_on():
    # filtering the owner's keywords by module dropped count for optax.chain, which
    # takes **kwargs and hands it to the gradtx members inside (bias_correct reads it)
    tx = gradtx.hyperparameterized(
        lambda b1: optax.chain(gradtx.add_momentum(b1, ema=True), gradtx.bias_correct(b1)),
        {"b1": 0.9},
        counted=True,
    )
    state = tx.init(jnp.ones(2))
    for _ in range(3):
        u, state = tx.update(jnp.ones(2), state)
        chex.assert_trees_all_close(u, jnp.ones(2), rtol=1e-6)  # a constant input, debiased


NAN = float("nan")


@pytest.mark.parametrize(
    ("wrap", "grads"),
    [
        (lambda tx: gradtx.accumulate_gradients(tx, 2), [1.0, 3.0, -1.0, 0.0, 0.5, 2.5]),
        (lambda tx: gradtx.accumulate_gradients(tx, 3), [1.0, 3.0, -1.0, 0.0, 0.5, 2.5]),
        (lambda tx: gradtx.apply_if_finite(tx, 3), [2.0, NAN, -0.5, NAN, NAN, 1.5]),
        (
            lambda tx: gradtx.apply_if_finite(gradtx.accumulate_gradients(tx, 2), 3),
            [2.0, 1.0, NAN, -0.5, 0.25, 1.5],
        ),
    ],
    ids=["accumulate-2", "accumulate-3", "apply_if_finite", "finite-over-accumulate"],
)
def test_a_wrapper_in_a_factory_body_hands_its_inner_the_inners_own_count(x64, wrap, grads):
    """Built in a user's factory body, adam reads the factory's count, one per call.
    accumulate_gradients and apply_if_finite call it on some calls only, and handed
    that count on: Adam's bias corrections ran ahead (-0.111 against -0.147 after two
    accumulated steps), and a skipped NaN step still moved them."""

    @gradtx.factory(learning_rate=gradtx.LEARNING_RATE)
    def wrapped_adam(learning_rate=0.1):
        return wrap(gradtx.adam(learning_rate))

    def run(opt):
        params = {"w": jnp.zeros(1)}
        state = opt.init(params)
        for g in grads:
            u, state = opt.update({"w": jnp.asarray([g])}, state, params)
            params = gradtx.apply_updates(params, u)
        return params

    chex.assert_trees_all_close(run(wrapped_adam()), run(wrap(gradtx.adam(0.1))), rtol=1e-14)


def test_a_callable_is_evaluated_on_a_jax_count_whatever_the_state_holds():
    """A checkpoint restores the count as a NumPy array, tree_set may put a Python int:
    evaluated on those, 0.9 ** count was computed in float64 and rounded, one ulp from
    the uninterrupted run's float32 (0.00729 against 0.007289999)."""
    opt = gradtx.sgd(lambda c: 1e-2 * 0.9**c)  # a float times an int32: standard promotion
    params = {"w": jnp.ones(2)}
    state = optax.tree_utils.tree_set(opt.init(params), count=jnp.asarray(3, jnp.int32))
    with jax.numpy_dtype_promotion("standard"):
        want = opt.update(params, state, params)[0]
        for count in (np.asarray(3, np.int32), np.int32(3), 3):
            restored = optax.tree_utils.tree_set(state, count=count)
            chex.assert_trees_all_equal(opt.update(params, restored, params)[0], want)


def test_a_count_beyond_int32_from_a_checkpoint_is_held_at_the_counters_bound():
    """Converted to int32, a NumPy int64 count past 2**31 - 1 wrapped negative (an inf
    step from 0.9 ** count) and a Python int raised a bare OverflowError."""
    opt = gradtx.sgd(lambda c: 1e-2 * 0.5 ** (c % 7).astype(jnp.float32))
    params = {"w": jnp.ones(2)}
    state = optax.tree_utils.tree_set(opt.init(params), count=jnp.asarray(2**31 - 1, jnp.int32))
    want = opt.update(params, state, params)[0]
    for count in (np.int64(2**31 + 5), 2**31 + 5, 10**30):
        restored = optax.tree_utils.tree_set(state, count=count)
        chex.assert_trees_all_equal(opt.update(params, restored, params)[0], want)


def test_a_callable_returning_a_list_of_a_huge_int_is_refused_by_name():
    # float() of it raised a bare OverflowError
    opt = gradtx.sgd(lambda c: [10**400])
    params = {"w": jnp.ones(2)}
    with pytest.raises(
        TypeError, match=r"^gradtx\.sgd\(learning_rate=<function>\): it returned list"
    ):
        opt.update(params, opt.init(params), params)


def test_threads_initialising_at_once_keep_the_record_of_makers_whole(monkeypatch):
    """Past its cap the record of makers dropped its oldest entries while another thread
    walked it: 'dictionary changed size during iteration' or a KeyError from init."""
    import sys
    import threading

    from gradtx import _hyperparameterized

    monkeypatch.setattr(_hyperparameterized, "_MAKERS_KEPT", 4)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch often: the race shows within 450 inits
    errors = []

    def worker(t):
        tx = gradtx.sgd(0.1, momentum=0.9)
        for i in range(150):
            try:
                tx.init({f"t{t}_{i}": jnp.zeros(1)})
            except Exception as err:  # noqa: BLE001 (any failure is the finding)
                errors.append(repr(err))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(3)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors[:3]


def test_two_factories_of_one_name_are_two_makers_whatever_ran_last():
    """Recorded by name, the factory that stepped last decided for both: a value was
    refused or taken by the other's range depending on the order of unrelated steps."""

    def model(high):
        @gradtx.factory(lr=gradtx.Hyper(low=0.0, high=high))
        def opt(lr=0.1):
            return gradtx.scale_by_learning_rate(lr)

        return opt(0.1)

    narrow, wide = model(1.0), model(None)
    p = jnp.ones(2)
    a, b = narrow.init(p), wide.init(p)
    for last in (narrow, wide, narrow):
        last.init(p)
        # one structure, two makers: a value passes if either takes it (docs/errors.md)
        assert float(gradtx.get_hyperparams(gradtx.set_hyperparams(a, lr=5.0))["lr"]) == 5.0
        assert float(gradtx.get_hyperparams(gradtx.set_hyperparams(b, lr=5.0))["lr"]) == 5.0


def test_a_factory_defined_again_is_declared_once():
    """A sweep that defines its factory inside each trial added one declaration per
    trial (20,000 trials: 11 MB, and name-inferred checks 10x slower)."""
    from gradtx._factory import DECLARED

    before = len(DECLARED)
    try:
        for _ in range(3):

            @gradtx.factory(rate=gradtx.Hyper(low=0.0))
            def trial_opt(rate=0.1):
                return gradtx.scale(rate)

        assert [c for c, _ in DECLARED[before:]] == ["trial_opt"]
    finally:
        del DECLARED[before:]


def test_a_number_checked_under_x64_is_checked_again_where_init_stores_it():
    """Built with x64 on and initialised with it off, a learning rate of 6e38 was stored
    as inf in float32 (steps of NaN) and asgd's t0 = 2**24 + 1 rounded to another step,
    with no error: construction had checked them for float64."""
    with jax.enable_x64(True):
        big, late = gradtx.sgd(6e38), gradtx.asgd(1e-2, t0=2**24 + 1)
    with pytest.raises(ValueError, match=r"learning_rate overflows to inf when stored in float32"):
        big.init(jnp.ones(2))
    with pytest.raises(ValueError, match=r"t0 is stored in float32, which rounds it to 16777216"):
        late.init(jnp.ones(2))

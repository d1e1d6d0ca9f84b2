"""optax's own wrappers and tree utilities on gradtx optimizers.

``optax.inject_hyperparams`` follows the injected values on every step,
``optax.tree_utils.tree_get``/``tree_set`` find one ``count`` and one value
per hyperparameter name, and ``optax.tree_utils.tree_map_params`` builds
optimizer-state sharding specs for every optimizer.
"""

from __future__ import annotations

import functools
import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

import gradtx
from tests.registry import REGISTRY


def _params():
    return {"w": jnp.ones((4, 2)), "b": jnp.ones(3)}


def _run(opt, steps=3, params=None, update=None):
    params = _params() if params is None else params
    update = update or opt.update
    state = opt.init(params)
    out = []
    for _ in range(steps):
        u, state = update(jax.tree.map(jnp.ones_like, params), state, params)
        out.append(u)
    return out, state


# ------------------------------------------------------------- inject_hyperparams


def test_inject_hyperparams_follows_an_injected_schedule():
    opt = optax.inject_hyperparams(gradtx.sgd)(learning_rate=lambda c: 1.0 / (c + 1))
    with jax.numpy_dtype_promotion("standard"):  # the int count in a float lambda
        updates, _ = _run(opt)
    steps = [float(u["b"][0]) for u in updates]
    np.testing.assert_allclose(steps, [-1.0, -0.5, -1 / 3], rtol=1e-6)  # optax.sgd's


def test_get_hyperparams_of_an_injected_schedule_is_the_last_updates_value(x64):
    """As documented: optax keeps the value its last update computed, not the schedule,
    so there get_hyperparams is one step behind a schedule given to gradtx itself."""
    schedule = optax.linear_schedule(1.0, 0.0, 10)
    injected = optax.inject_hyperparams(gradtx.sgd)(learning_rate=schedule)
    direct = gradtx.sgd(schedule)
    params = grads = {"w": jnp.ones(2)}
    a, b = injected.init(params), direct.init(params)
    shown = []
    for _ in range(3):
        shown.append(
            (gradtx.get_hyperparams(a)["learning_rate"], gradtx.get_hyperparams(b)["learning_rate"])
        )
        _, a = injected.update(grads, a, params)
        _, b = direct.update(grads, b, params)
    # which step's value, not its digits: optax's linear schedule computes in float32
    np.testing.assert_allclose(shown, [(1.0, 1.0), (1.0, 0.9), (0.9, 0.8)], rtol=1e-6)


def test_inject_hyperparams_follows_edits_of_its_state(x64):
    # float64: in float32 optax's 1 - b^t loses digits that gradtx's bias correction keeps
    opt = optax.inject_hyperparams(gradtx.adam)(learning_rate=0.1)
    params = _params()
    state = opt.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    ours, theirs = [], []
    ref = optax.inject_hyperparams(optax.adam)(learning_rate=0.1)
    ref_state = ref.init(params)
    for lr in (0.1, 0.01, 0.3):
        state.hyperparams["learning_rate"] = jnp.asarray(lr)
        ref_state.hyperparams["learning_rate"] = jnp.asarray(lr)
        with jax.numpy_dtype_promotion("standard"):  # optax is not strict-promotion clean
            u, state = jax.jit(opt.update)(grads, state, params)
            v, ref_state = jax.jit(ref.update)(grads, ref_state, params)
        ours.append(u["w"])
        theirs.append(v["w"])
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_inject_hyperparams_of_a_function_argument_says_to_keep_it_static():
    # inject_hyperparams evaluates every callable argument as a schedule of the count.
    with pytest.raises(TypeError, match=r"pass static_args=\('clip_value_fn',\)"):
        optax.inject_hyperparams(gradtx.adopt)(1e-3).init(_params())
    opt = optax.inject_hyperparams(gradtx.adopt, static_args=("clip_value_fn",))(1e-3)
    state = opt.init(_params())
    with jax.numpy_dtype_promotion("standard"):
        updates, _ = opt.update(_params(), state, _params())
    assert all(bool(jnp.all(u == 0)) for u in jax.tree.leaves(updates))  # ADOPT's first step


def test_inject_hyperparams_of_a_mask_fn_returning_python_bools_says_to_keep_it_static():
    # The function's value at the count is Python bools, not an array: the hint stands.
    mask_fn = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)  # noqa: E731
    with pytest.raises(TypeError, match=r"mask_fn=False\).*pass static_args=\('mask_fn',\)"):
        optax.inject_hyperparams(gradtx.adamw)(0.05, weight_decay=0.3, mask_fn=mask_fn).init(
            _params()
        )
    with pytest.raises(TypeError, match=r"must be a function or None$"):
        gradtx.adamw(mask_fn=True)  # outside inject, no hint


def test_inject_hyperparams_over_a_complex_leaf_says_to_give_hyperparam_dtype():
    # inject stores its numbers in the params' dtype, complex here: the refusal gave
    # no way out
    params = {"w": jnp.ones(3), "z": jnp.ones(2, jnp.complex64)}
    with (
        jax.numpy_dtype_promotion("standard"),  # optax's own dtype of the tree needs it
        pytest.raises(TypeError, match=r"got complex64 \(optax.inject_hyperparams .* "
                      r"give it hyperparam_dtype=jnp.float32\)$"),
    ):  # fmt: skip
        optax.inject_hyperparams(gradtx.adam)(learning_rate=0.1).init(params)
    opt = optax.inject_hyperparams(gradtx.adam, hyperparam_dtype=jnp.float32)(learning_rate=0.1)
    plain = gradtx.adam(0.1)
    grads = {"w": params["w"], "z": params["z"] * jnp.asarray(1 + 0.5j, jnp.complex64)}
    got, _ = opt.update(grads, opt.init(params), params)
    want, _ = plain.update(grads, plain.init(params), params)
    chex.assert_trees_all_close(got, want, rtol=1e-6)


@pytest.mark.parametrize("name", ["sgd", "adam", "adagrad", "rmsprop", "nadam", "radam"])
def test_inject_hyperparams_adds_no_stage_for_zero_defaults(name):
    factory = getattr(gradtx, name)
    injected = optax.inject_hyperparams(factory)(learning_rate=0.1)
    params = _params()
    state = injected.init(params)
    # the same stages (chain members and buffers) as the plain optimizer
    plain = factory(0.1).init(params)
    assert jax.tree.structure(state.inner_state.inner_state) == jax.tree.structure(
        plain.inner_state
    )
    # no decay stage: no params needed
    u, _ = injected.update(jax.tree.map(jnp.ones_like, params), state)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(u))
    # the injected numbers live in optax's state only: one value per name
    assert float(optax.tree_utils.tree_get(state, "learning_rate")) == pytest.approx(0.1)


def test_get_and_set_hyperparams_read_inject_hyperparams_states():
    opt = optax.inject_hyperparams(gradtx.adam)(learning_rate=0.1, b1=0.8)
    state = opt.init(_params())
    assert float(gradtx.get_hyperparams(state)["b1"]) == pytest.approx(0.8)
    state = gradtx.set_hyperparams(state, learning_rate=0.02)
    assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.02)


# -------------------------------------------------------------- tree_get, tree_set


def _same(a, b):
    """The same tree of equal leaves (a schedule compares by its fields)."""
    same_tree = jax.tree.structure(a) == jax.tree.structure(b)
    return same_tree and all(
        np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


@pytest.mark.parametrize("case", REGISTRY, ids=[c.id for c in REGISTRY])
def test_tree_get_finds_one_count_and_one_value_per_hyperparameter(case):
    opt = case.make(case.lr)
    _, state = _run(opt, steps=2, update=case.update(opt))
    assert int(optax.tree_utils.tree_get(state, "count")) == 2
    hyper = gradtx.get_hyperparams(state)
    for name, value in hyper.items():
        if "/" in name or "." in name:
            continue  # groups and schedule fields: addressed by gradtx's full names
        found = optax.tree_utils.tree_get_all_with_path(state, name)
        # A wrapper's base optimizer (Mechanic's Adam) may own the same name: one
        # value per owner, as gradtx's full names ("eps", "adam/eps") show.
        owners = [n for n in hyper if n.split("/")[-1] == name]
        assert len(found) == len(owners), (name, found)
        # A schedule is found as itself; get_hyperparams gives its current value.
        current = [v(state.count) if callable(v) else v for _, v in found]
        assert any(_same(v, value) for v in current), (name, found, value)


def test_tree_set_of_count_and_of_a_hyperparameter_is_consistent(x64):
    opt = gradtx.chain(gradtx.clip_by_global_norm(10.0), gradtx.adamw(1e-2, weight_decay=0.1))
    params = {"w": jnp.asarray([1.0, -2.0])}
    grads = {"w": jnp.asarray([0.3, -0.1])}
    state = opt.init(params)
    for _ in range(4):
        _, state = opt.update(grads, state, params)
    # Rewind the one counter: every stage's bias correction follows it.
    rewound = optax.tree_utils.tree_set(state, count=jnp.asarray(1, jnp.int32))
    fresh = opt.init(params)
    _, fresh = opt.update(grads, fresh, params)
    fresh = jax.tree.map(lambda f, s: s if f.shape else f, fresh, state)  # same moments
    fresh = optax.tree_utils.tree_set(fresh, count=jnp.asarray(1, jnp.int32))
    u1, _ = opt.update(grads, rewound, params)
    u2, _ = opt.update(grads, fresh, params)
    np.testing.assert_array_equal(u1["w"], u2["w"])
    # tree_set of a hyperparameter is what set_hyperparams does
    a = optax.tree_utils.tree_set(state, learning_rate=jnp.asarray(3e-3))
    b = gradtx.set_hyperparams(state, learning_rate=3e-3)
    np.testing.assert_array_equal(
        opt.update(grads, a, params)[0]["w"], opt.update(grads, b, params)[0]["w"]
    )


def test_tree_set_of_count_rewinds_a_plain_python_schedule():
    """A plain callable is evaluated at the state's count (it was read from the value
    kept for the next step, so a rewound run kept the later learning rate)."""
    opt = gradtx.sgd(optax.linear_schedule(1.0, 0.0, 10))
    params, grads = {"w": jnp.zeros(2)}, {"w": jnp.ones(2)}
    state = opt.init(params)
    first, _ = opt.update(grads, state, params)
    for _ in range(5):
        _, state = opt.update(grads, state, params)
    rewound = optax.tree_utils.tree_set(state, count=jnp.asarray(0, jnp.int32))
    chex.assert_trees_all_equal(opt.update(grads, rewound, params)[0], first)
    chex.assert_trees_all_equal(jax.jit(opt.update)(grads, rewound, params)[0], first)
    # a state restored with Python scalars (a JSON checkpoint) still updates
    restored = jax.tree.map(lambda x: x.item() if jnp.ndim(x) == 0 else x, rewound)
    chex.assert_trees_all_equal(opt.update(grads, restored, params)[0], first)


def test_a_count_set_to_an_int64_names_the_fix_under_x64(x64):
    """A NumPy int64, or a Python int reaching a jitted step (a weak int64 under x64,
    where a value past int32 would wrap), is refused with the int32 spelling to use;
    eagerly a Python int is taken."""
    opt = gradtx.chain(gradtx.clip_by_global_norm(10.0), gradtx.adam(1e-2))
    params, grads = {"w": jnp.ones(3)}, {"w": jnp.full(3, 0.1)}
    _, state = opt.update(grads, opt.init(params), params)
    fix = r"set it as jnp\.asarray\(n, jnp\.int32\)"
    with pytest.raises(ValueError, match=fix):
        opt.update(grads, optax.tree_utils.tree_set(state, count=np.int64(0)), params)
    rewound = optax.tree_utils.tree_set(state, count=0)
    with pytest.raises(ValueError, match=fix):
        jax.jit(opt.update)(grads, rewound, params)
    eager, _ = opt.update(grads, rewound, params)
    right = optax.tree_utils.tree_set(state, count=jnp.asarray(0, jnp.int32))
    chex.assert_trees_all_close(jax.jit(opt.update)(grads, right, params)[0], eager, rtol=1e-14)


def test_tree_set_of_a_scheduled_hyperparameter():
    """A plain callable is code: tree_set finds no value of that name to edit, and raises
    (as on optax's injected schedules), where it edited a shown value that the update
    ignored.  A gradtx schedule is replaced by the constant, which the update follows."""
    params, grads = {"w": jnp.zeros(2)}, {"w": jnp.ones(2)}
    opt = gradtx.sgd(lambda count: 0.1 / (1.0 + count.astype(jnp.float32)))
    state = opt.init(params)
    assert float(gradtx.get_hyperparams(state)["learning_rate"]) == np.float32(0.1)
    with pytest.raises(KeyError, match="learning_rate"):
        optax.tree_utils.tree_set(state, learning_rate=jnp.asarray(0.5))
    assert optax.tree_utils.tree_get(state, "learning_rate") is None  # its default
    opt = gradtx.sgd(gradtx.schedules.cosine_decay(0.1, 10))
    state = optax.tree_utils.tree_set(opt.init(params), learning_rate=jnp.asarray(0.5))
    chex.assert_trees_all_close(opt.update(grads, state, params)[0], {"w": -0.5 * jnp.ones(2)})
    assert float(gradtx.get_hyperparams(state)["learning_rate"]) == 0.5


# ---------------------------------------------------------------- tree_map_params


def _spec_for(buffer, spec, param):
    """docs/ecosystem.md's function: the param's spec for a buffer of its shape."""
    if isinstance(buffer, list):  # SM3: one vector per axis of the param
        return [P() for _ in buffer]
    if isinstance(buffer, gradtx.MaskedNode):  # a leaf a masked stage does not see
        return buffer
    return spec if jnp.shape(buffer) == jnp.shape(param) else P()


@pytest.mark.parametrize("case", REGISTRY, ids=[c.id for c in REGISTRY])
def test_tree_map_params_gives_optimizer_state_sharding_specs(case):
    opt = case.make(case.lr)
    params = {"w": jnp.ones((4, 2)), "b": jnp.ones(3)}
    specs = {"w": P("data", None), "b": P()}
    _, state = _run(opt, steps=1, params=params, update=case.update(opt))
    state_specs = optax.tree_utils.tree_map_params(
        opt,
        _spec_for,
        state,
        specs,
        params,
        transform_non_params=lambda _: P(),
        is_leaf=lambda x: isinstance(x, (P, list, gradtx.MaskedNode)),
    )
    leaves = jax.tree.leaves(state)
    spec_leaves = jax.tree.leaves(state_specs, is_leaf=lambda x: isinstance(x, P))
    assert len(leaves) == len(spec_leaves)
    for leaf, spec in zip(leaves, spec_leaves):
        want = {(4, 2): P("data", None), (3,): P()}.get(jnp.shape(leaf), P())
        assert spec == want, (jnp.shape(leaf), spec)
    assert any(spec == P("data", None) for spec in spec_leaves) or not any(
        jnp.shape(leaf) == (4, 2) for leaf in leaves
    )


@pytest.mark.parametrize(
    ("make", "alias", "value", "static"),
    [
        (gradtx.adafactor, "decay_rate", 0.5, ("min_dim_size_to_factor", "decay_offset")),
        (gradtx.adafactor, "clipping_threshold", 2.0, ("min_dim_size_to_factor", "decay_offset")),
        (functools.partial(gradtx.muon, convention="optax"), "beta", 0.5, ("ns_steps",)),
        # the torch-named partner edited instead
        (gradtx.adafactor, "beta2_decay", -0.5, ("min_dim_size_to_factor", "decay_offset")),
        (functools.partial(gradtx.muon, convention="optax"), "momentum", 0.5, ("ns_steps",)),
    ],
    ids=[
        "adafactor-decay_rate",
        "adafactor-clipping_threshold",
        "muon-beta",
        "adafactor-beta2_decay",
        "muon-momentum",
    ],
)
def test_inject_hyperparams_with_optax_names_of_torch_numbers(x64, make, alias, value, static):
    """inject passes both names of an alias pair as arrays: at their shared default they
    are not 'both given', and an edit of optax's name in inject's state takes effect."""
    params = {"w": jnp.asarray(np.random.default_rng(0).normal(size=(4, 3))), "b": jnp.ones(3)}
    grads = jax.tree.map(lambda p: 0.1 * p + 0.05, params)
    if alias in ("beta", "momentum"):  # muon: the matrix leaf only
        params, grads = {"w": params["w"]}, {"w": grads["w"]}
    for edit, ref in [(None, make(0.01)), (value, make(0.01, **{alias: value}))]:
        injected = optax.inject_hyperparams(make, static_args=static)(learning_rate=0.01)
        state, ref_state = injected.init(params), ref.init(params)
        if edit is not None:
            state.hyperparams[alias] = jnp.asarray(edit)
        for _ in range(3):
            with jax.numpy_dtype_promotion("standard"):  # optax's inject is not strict-clean
                u, state = jax.jit(injected.update)(grads, state, params)
            v, ref_state = ref.update(grads, ref_state, params)
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), u, v)


def test_inject_hyperparams_names_static_args_for_an_int_option():
    with pytest.raises(TypeError, match=r"list 'min_dim_size_to_factor' in static_args"):
        optax.inject_hyperparams(gradtx.adafactor)(learning_rate=0.01).init({"w": jnp.ones(2)})


def test_set_hyperparams_refuses_what_inject_hyperparams_recomputes():
    # It was accepted and shown by get_hyperparams, then overwritten by inject's schedule
    # at the next update: the step ran at the schedule's rate, not the value set.
    opt = optax.inject_hyperparams(gradtx.adam)(
        learning_rate=lambda c: 0.1 / (jnp.asarray(c, jnp.float32) + 1.0), b1=0.9
    )
    params = {"w": jnp.ones(3)}
    state = opt.init(params)
    with pytest.raises(ValueError, match=r"set_hyperparams\(learning_rate=...\): optax.inject"):
        gradtx.set_hyperparams(state, learning_rate=0.0)
    state = gradtx.set_hyperparams(state, b1=0.5)  # an injected number stays settable
    assert float(gradtx.get_hyperparams(state)["b1"]) == 0.5
    assert float(gradtx.get_hyperparams(state)["learning_rate"]) == pytest.approx(0.1)


def _injectable():
    """Registry optimizers whose only required argument is the learning rate."""
    out, seen = [], set()
    for case in REGISTRY:
        params = inspect.signature(getattr(gradtx, case.name)).parameters
        required = [n for n, p in params.items() if p.default is inspect.Parameter.empty]
        if case.name not in seen and not case.needs and required in ([], ["learning_rate"]):
            seen.add(case.name)
            out.append(case)
    return out


@pytest.mark.parametrize("case", _injectable(), ids=lambda c: c.name)
def test_inject_hyperparams_of_every_optimizer_under_jit_equals_the_optimizer(x64, case):
    # every optimizer, jitted under inject, equals itself (AdaBound's base_lr given:
    # test_inject_hyperparams_of_adabound_asks_for_base_lr says why)
    factory = getattr(gradtx, case.name)
    params = inspect.signature(factory).parameters
    # options inject_hyperparams would otherwise turn into arrays (ints, flags, names)
    static = tuple(
        n for n, p in params.items()
        if n != "learning_rate" and (isinstance(p.default, (int, str)) or callable(p.default))
    )  # fmt: skip
    kwargs = {"base_lr": case.lr} if "base_lr" in params else {}
    injected = optax.inject_hyperparams(factory, static_args=static)(case.lr, **kwargs)
    plain = factory(case.lr)
    params = {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "v": jnp.array([[0.3, -0.7, 0.2]])}
    state, plain_state = injected.init(params), plain.init(params)
    update = jax.jit(injected.update)
    for k in range(3):
        grads = jax.tree.map(lambda x, k=k: jnp.sin((k + 1) * x), params)
        with jax.numpy_dtype_promotion("standard"):  # optax's own state arithmetic
            got, state = update(grads, state, params)
        want, plain_state = plain.update(grads, plain_state, params)
        chex.assert_trees_all_close(got, want, rtol=1e-12, atol=1e-300)
        params = gradtx.apply_updates(params, want)


@pytest.mark.parametrize("name", ["adabound", "amsbound"])
def test_inject_hyperparams_of_adabound_asks_for_base_lr(x64, name):
    # the injected learning rate is the current one at each update, so the initial one
    # (the bounds' reference) must be given; a schedule then moves the bounds as torch's
    # Without it, base_lr was stored at an eager init and bound at a jitted update (the
    # states differed, and update refused its own), or bound at both under jit, where
    # an injected schedule left the bounds where they started.
    factory = getattr(gradtx, name)
    refused = rf"gradtx\.{name}\(learning_rate=<array>\): base_lr"
    with pytest.raises(ValueError, match=refused):
        optax.inject_hyperparams(factory)(learning_rate=0.05).init(_params())
    with pytest.raises(ValueError, match=refused):
        jax.jit(optax.inject_hyperparams(factory)(learning_rate=0.05).init)(_params())
    with pytest.raises(ValueError, match=refused):
        factory(jnp.asarray(0.05))
    schedule = gradtx.schedules.exponential_decay(0.05, 1, 0.5)
    injected = optax.inject_hyperparams(factory)(learning_rate=schedule, base_lr=0.05)
    with jax.numpy_dtype_promotion("standard"):
        got, _ = _run(injected, update=jax.jit(injected.update))
    want, _ = _run(factory(schedule))
    chex.assert_trees_all_close(got, want, rtol=1e-12)


def test_tree_set_of_a_scalar_buffer_to_a_python_number_steps_eagerly_as_jitted(x64):
    # tree_set writes the Python number as given; jitted it became an array, eagerly the
    # update read its dtype (AttributeError: 'float' object has no attribute 'dtype')
    opt = gradtx.dog()
    params = {"w": jnp.arange(3.0), "b": jnp.ones(2)}
    grads = jax.tree.map(lambda p: 0.5 - p, params)
    state = optax.tree_utils.tree_set(opt.init(params), max_distance=0.25)
    assert isinstance(optax.tree_utils.tree_get(state, "max_distance"), float)
    eager = opt.update(grads, state, params)
    jitted = jax.jit(opt.update)(grads, state, params)
    chex.assert_trees_all_equal(eager, jitted)
    assert float(optax.tree_utils.tree_get(eager[1], "max_distance")) >= 0.25


@pytest.mark.parametrize("value", [1, np.int64(1), jnp.asarray(1)], ids=["python", "numpy", "jax"])
def test_a_flag_set_as_an_integer_is_taken_alike_eagerly_and_jitted(x64, value):
    # eagerly a Python or NumPy integer was refused where jit took it as an array
    opt = gradtx.sgd(0.1, momentum=0.9, dampening=0.5)
    params = {"w": jnp.arange(3.0)}
    grads = {"w": jnp.ones(3)}
    _, state = opt.update(grads, opt.init(params), params)
    as_set = optax.tree_utils.tree_set(state, started=value)
    eager, jitted = opt.update(grads, as_set, params), jax.jit(opt.update)(grads, as_set, params)
    chex.assert_trees_all_equal(eager, jitted, opt.update(grads, state, params))


def test_a_bool_set_into_a_float_buffer_is_refused_alike_eagerly_and_jitted():
    # eagerly True was taken as 1.0 where jit refused the bool array
    opt = gradtx.dog()
    params = {"w": jnp.arange(3.0)}
    state = optax.tree_utils.tree_set(opt.init(params), max_distance=True)
    for update in (opt.update, jax.jit(opt.update)):
        with pytest.raises(ValueError, match=r"at \[0\].max_distance"):
            update(params, state, params)


def test_a_python_int_beyond_int32_set_into_a_buffer_is_named():
    # an eager update raised AttributeError ('int' object has no attribute 'dtype')
    opt = gradtx.dog()
    params = {"w": jnp.arange(3.0)}
    state = optax.tree_utils.tree_set(opt.init(params), max_distance=2**40)
    with pytest.raises(ValueError, match=r"Python int \d+ at .inner_state\[0\].max_distance"):
        opt.update(params, state, params)


def test_a_python_count_in_optax_injected_state_under_a_gradtx_wrapper_is_refused_at_once(x64):
    # optax's update widens a Python count to int64 under x64: taken as given (as a gradtx
    # factory's count is), the state it returned was refused at the next update instead
    opt = gradtx.masked(optax.inject_hyperparams(optax.adam)(0.05), {"w": True})
    params = {"w": jnp.arange(3.0)}
    with jax.numpy_dtype_promotion("standard"):  # optax's inject mixes int32 and float64
        _, state = opt.update(params, opt.init(params), params)
        as_set = state._replace(inner_state=state.inner_state._replace(count=1))
        for update in (opt.update, jax.jit(opt.update)):
            with pytest.raises(ValueError, match=r"at .inner_state.count: expected int32"):
                update(params, as_set, params)

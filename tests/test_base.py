"""The contract's small pieces: identity, stateless, transform, chain's keywords, apply_updates."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest

import gradtx


def test_identity_and_stateless():
    g = {"w": jnp.asarray([1.0, 2.0])}
    tx = gradtx.identity()
    assert isinstance(tx, gradtx.GradientMap)
    np.testing.assert_array_equal(tx.update(g, tx.init(g))[0]["w"], g["w"])
    tx = gradtx.stateless(lambda u, p: jax.tree.map(lambda a, b: a + b, u, p))
    u, state = tx.update(g, tx.init(g), g)
    np.testing.assert_array_equal(u["w"], [2.0, 4.0])
    assert state == gradtx.EmptyState()


def test_transform_wraps_a_plain_pair_and_drops_extras_it_does_not_take():
    tx = gradtx.transform(lambda p: (), lambda u, s, params=None: (u * 2, s))
    u, _ = tx.update(jnp.ones(2), (), None, value=1.0, anything="ignored")
    np.testing.assert_array_equal(u, [2.0, 2.0])
    assert not isinstance(tx, gradtx.GradientMap)
    assert isinstance(gradtx.transform(lambda p: (), lambda u, s, **k: (u, s), gradient_map=True),
                      gradtx.GradientMap)  # fmt: skip


def test_chain_hands_the_gradient_and_the_count_to_its_members():
    seen = []

    def record(u, s, params=None, **extra):
        seen.append((extra.get("grads"), extra.get("count")))
        return u, s

    probe = gradtx.transform(lambda p: (), record)
    opt = gradtx.chain(gradtx.add_momentum(0.5), probe)
    g = jnp.asarray([1.0, -1.0])
    state = opt.init(g)
    _, state = opt.update(g, state)
    np.testing.assert_array_equal(seen[-1][0], g)  # the gradient as it entered momentum
    assert seen[-1][1] is None  # a plain chain owns no counter


def test_step_count_says_which_factory_to_declare():
    with pytest.raises(RuntimeError, match=r"declare the factory .*counted=True"):
        gradtx.step_count({}, "my_transform")


def test_apply_updates_refuses_what_it_would_broadcast_or_cast_away():
    # optax broadcasts a (3,) update over (2, 3) params, truncates a float update on an
    # int param and drops a complex update's imaginary part on a real one
    p = {"w": jnp.ones((2, 3)), "n": jnp.asarray([2, 3]), "r": jnp.zeros(2)}
    ok = {"w": jnp.zeros((2, 3)), "n": jnp.asarray([1, 1]), "r": jnp.zeros(2, jnp.float16)}
    out = gradtx.apply_updates(p, ok)
    np.testing.assert_array_equal(out["n"], [3, 4])
    assert out["r"].dtype == jnp.float32
    with pytest.raises(ValueError, match=r"leaf \['w'\] has shape \(3,\), its param \(2, 3\)"):
        gradtx.apply_updates(p, {**ok, "w": jnp.zeros(3)})
    with pytest.raises(TypeError, match=r"leaf \['n'\] is float32, its param int32"):
        gradtx.apply_updates(p, {**ok, "n": jnp.asarray([0.6, -0.4])})
    with pytest.raises(TypeError, match=r"leaf \['r'\] is complex64, its param float32"):
        gradtx.apply_updates(p, {**ok, "r": jnp.ones(2, jnp.complex64)})
    with pytest.raises(TypeError, match=r"leaf \['r'\] is bool, its param float32"):
        gradtx.apply_updates(p, {**ok, "r": jnp.array([True, False])})  # was added as 1.0
    # integers onto integers are exact, as in optax: a wider or Python int is taken
    small = {"n": jnp.asarray([1, 2], jnp.int8), "k": jnp.asarray(3, jnp.int8)}
    out = gradtx.apply_updates(small, {"n": jnp.asarray([1, 1], jnp.int32), "k": 2})
    chex.assert_trees_all_equal(
        out, {"n": jnp.asarray([2, 3], jnp.int8), "k": jnp.asarray(5, jnp.int8)}
    )


def test_apply_updates_rounds_once_and_keeps_none_leaves():
    p = {"w": jnp.asarray([1.0], jnp.bfloat16), "frozen": None}
    u = {"w": jnp.asarray([1e-3], jnp.float32), "frozen": None}
    out = gradtx.apply_updates(p, u)
    assert out["frozen"] is None and out["w"].dtype == jnp.bfloat16
    assert float(out["w"][0]) == float(jnp.asarray(1.001, jnp.bfloat16))


def test_an_int_leaf_masked_out_keeps_its_value_under_jit():
    # jax.grad(..., allow_int=True) gives an int leaf a float0 gradient; masked and
    # partition pass it on, and apply_updates leaves the leaf as it is (optax's
    # apply_updates raises on float0).
    params = {"w": jnp.ones(2), "n": jnp.asarray(5, jnp.int32), "on": jnp.asarray(True)}
    labels = {"w": "a", "n": "f", "on": "f"}
    for opt in (
        gradtx.masked(gradtx.adam(0.1), {"w": True, "n": False, "on": False}),
        gradtx.partition({"a": gradtx.adam(0.1), "f": optax.set_to_zero()}, labels),
    ):

        @jax.jit
        def step(p, s, opt=opt):
            g = jax.grad(lambda q: jnp.sum(q["w"] ** 2), allow_int=True)(p)
            u, s = opt.update(g, s, p)
            return gradtx.apply_updates(p, u), s

        out, _ = step(params, opt.init(params))
        assert out["n"].dtype == jnp.int32 and int(out["n"]) == 5 and bool(out["on"])
        np.testing.assert_allclose(out["w"], 0.9, rtol=1e-6)
    float0 = np.zeros(2, jax.dtypes.float0)
    with pytest.raises(TypeError, match=r"^gradtx.apply_updates: updates leaf \['w'\] is float0"):
        gradtx.apply_updates({"w": jnp.ones(2)}, {"w": float0})


def test_int_leaves_masked_around_a_wrapper_pass_and_inside_it_are_refused_with_the_fix():
    """A wrapper around a masked optimizer sees the int leaf itself: accumulate_gradients
    told the user to give zeros of the param's dtype, whose float mean apply_updates then
    refused.  The messages now say to mask around the whole optimizer, which works."""
    params = {"w": jnp.ones(2), "n": jnp.asarray(5, jnp.int32)}
    mask = {"w": True, "n": False}
    g = jax.grad(lambda q: jnp.sum(q["w"] ** 2), allow_int=True)(params)
    wrappers = {
        "accumulate_gradients": lambda o: gradtx.accumulate_gradients(o, 1),
        "lookahead": lambda o: gradtx.lookahead(o, 1, 1.0),
        "average_params": gradtx.average_params,
        "flatten": gradtx.flatten,
        "lazy": gradtx.lazy,
        "track_norms": gradtx.track_norms,
    }
    for name, wrap in wrappers.items():
        outside = gradtx.masked(wrap(gradtx.sgd(0.1)), mask)
        u, _ = outside.update(g, outside.init(params), params)
        out = gradtx.apply_updates(params, u)
        assert out["n"].dtype == jnp.int32 and int(out["n"]) == 5, name
        np.testing.assert_allclose(out["w"], 0.8, rtol=1e-6, err_msg=name)
        inside = wrap(gradtx.masked(gradtx.sgd(0.1), mask))
        with pytest.raises(
            TypeError,
            match=rf"gradtx.{name}: .* leaf \['n'\] has dtype .*"
            r"mask them out with gradtx.masked around the whole optimizer",
        ):
            inside.update(g, inside.init(params), params)


def test_apply_updates_names_a_tree_mismatch_and_a_missing_update():
    # A raw pytree error from tree_map, and a None update reported as "shape ()".
    with pytest.raises(
        ValueError, match=r"^gradtx.apply_updates: the updates' tree does not match"
    ):
        gradtx.apply_updates({"w": jnp.ones(2), "b": jnp.ones(1)}, {"w": jnp.ones(2)})
    with pytest.raises(ValueError, match=r"updates leaf \['w'\] is None, its param an array"):
        gradtx.apply_updates({"w": jnp.ones(2)}, {"w": None})
    assert gradtx.apply_updates({"w": None}, {"w": None}) == {"w": None}  # a frozen leaf


def test_transform_and_stateless_take_functions():
    # Each was accepted, then failed at update with "'int' object is not callable".
    with pytest.raises(TypeError, match=r"^gradtx.stateless\(fn=3\): fn must be a function"):
        gradtx.stateless(3)
    with pytest.raises(TypeError, match=r"^gradtx.transform\(update=4\): update must be a"):
        gradtx.transform(lambda p: gradtx.EmptyState(), 4)
    with pytest.raises(TypeError, match=r"^gradtx.transform\(init=3\): init must be a function"):
        gradtx.transform(3, lambda u, s, p=None: (u, s))


def test_optax_members_do_not_get_gradtxs_internal_keywords(x64):
    # gradtx.chain passed its `grads` (and a factory's `count`) to every member after a
    # non-map: optax's line searches hand unknown keywords to value_fn (TypeError), and
    # optax's schedule-free got `grads` twice.  optax.chain is the reference.
    def f(w):
        return jnp.sum((w - jnp.arange(3.0)) ** 2 * jnp.asarray([1.0, 3.0, 10.0]))

    w = jnp.asarray([1.0, -1.0, 2.0])
    for members in (
        (gradtx.sgd(0.05), optax.scale_by_backtracking_linesearch(max_backtracking_steps=10)),
        (optax.clip_by_global_norm(1.0), optax.contrib.schedule_free_adamw(0.1)),
    ):
        ours, theirs = gradtx.chain(*members), optax.chain(*members)
        runs = []
        for tx in (ours, theirs):
            params, state = w, tx.init(w)
            with jax.numpy_dtype_promotion("standard"):  # optax is not strict-clean
                for _ in range(3):
                    value, grad = jax.value_and_grad(f)(params)
                    updates, state = tx.update(
                        grad, state, params, value=value, grad=grad, value_fn=f
                    )
                    params = optax.apply_updates(params, updates)
            runs.append(params)
        np.testing.assert_allclose(runs[0], runs[1], rtol=1e-14)


def test_a_users_own_transform_still_reads_the_chains_gradient():
    # Only optax's transforms are kept from gradtx's keywords: a user's own, however
    # built, reads the chain's grads (gradtx.gradient) as before.
    seen = []

    def update(updates, state, params=None, **extra):
        seen.append(gradtx.gradient(updates, extra))
        return updates, state

    g = jnp.asarray([1.0, 2.0])
    for spy in (
        gradtx.transform(lambda p: gradtx.EmptyState(), update),
        optax.GradientTransformationExtraArgs(lambda p: gradtx.EmptyState(), update),
    ):
        tx = gradtx.chain(gradtx.add_momentum(0.9, ema=True), spy)
        tx.update(g, tx.init(g))
        np.testing.assert_array_equal(seen[-1], g)  # not the momentum 0.1 g


def test_a_users_update_gets_the_extras_it_names_and_no_others():
    # an update naming grads (without **extra) got grads=None, so it read the momentum
    def update(updates, state, params=None, *, grads=None, value=None):
        assert value is None  # passed nowhere here
        g = updates if grads is None else grads
        return jax.tree.map(lambda u, g: u / jnp.abs(g), updates, g), state

    for spy in (
        gradtx.transform(lambda p: gradtx.EmptyState(), update),
        # optax's own kind of transform, not wrapped by gradtx.transform: it raised
        # "unexpected keyword argument 'count'" from inside gradtx.chain
        optax.GradientTransformationExtraArgs(
            lambda p: gradtx.EmptyState(),
            lambda u, s, params=None, *, grads=None: update(u, s, grads=grads),
        ),
    ):
        tx = gradtx.chain(gradtx.add_momentum(0.9), spy)
        params = jnp.zeros(1)
        state = tx.init(params)
        for g in (2.0, 4.0):
            u, state = tx.update(jnp.array([g]), state, params)
        np.testing.assert_allclose(u, [(0.9 * 2.0 + 4.0) / 4.0], rtol=1e-6)
    counted = gradtx.chain(
        gradtx.adam(0.1), gradtx.transform(lambda p: (), lambda u, s, p=None: (u, s))
    )
    counted.update(jnp.ones(1), counted.init(jnp.ones(1)), jnp.ones(1))  # count not passed on


@pytest.mark.parametrize("make", [lambda: gradtx.chain(), lambda: gradtx.named_chain()])
def test_an_empty_chain_is_a_gradient_map(make):
    # it is the identity; as a non-map it froze the gradient for the statistics after it
    # (an empty list of clips before L2 made scale_by_rms miss the L2 term)
    empty = make()
    assert isinstance(empty, gradtx.GradientMap)
    flat = gradtx.chain(gradtx.add_l2(0.3), gradtx.add_momentum(0.5), gradtx.scale_by_rms(0.9))
    nested = gradtx.chain(
        empty, *[gradtx.add_l2(0.3), gradtx.add_momentum(0.5), gradtx.scale_by_rms(0.9)]
    )
    params = jnp.array([1.0, -2.0])
    fs, ns = flat.init(params), nested.init(params)
    for g in ([0.1, 0.2], [-0.3, 0.05]):
        want, fs = flat.update(jnp.array(g), fs, params)
        got, ns = nested.update(jnp.array(g), ns, params)
        chex.assert_trees_all_equal(got, want)


def test_a_chain_member_that_returns_no_pair_is_named():
    # it was unpacked anyway, and the next member was blamed for the shape it got
    bad = gradtx.transform(lambda p: gradtx.EmptyState(), lambda u, s, params=None: u)
    opt = gradtx.chain(gradtx.clip(1.0), bad, gradtx.sgd(0.1))
    params = jnp.ones(2)
    with pytest.raises(TypeError, match=r"^gradtx\.chain\.update: member 1 returned ArrayImpl, "):
        opt.update(params, opt.init(params), params)


def test_optax_multisteps_is_named_with_its_transform():
    with pytest.raises(TypeError, match=r"got MultiSteps; pass its .gradient_transformation\(\)"):
        gradtx.chain(optax.MultiSteps(optax.sgd(0.1), 2))
    gradtx.chain(optax.MultiSteps(optax.sgd(0.1), 2).gradient_transformation())


def test_a_chain_ending_in_momentum_returns_no_state_buffer_as_the_updates():
    # eagerly, optax.trace returns its new buffer as the updates: the chain copies it
    opt = gradtx.chain(gradtx.scale(0.5), optax.trace(0.9))
    p = {"w": jnp.ones(3)}
    state = opt.init(p)
    apply = jax.jit(gradtx.apply_updates, donate_argnums=(1,))
    for _ in range(2):
        updates, state = opt.update({"w": jnp.ones(3)}, state, p)
        assert updates["w"] is not state[1].trace["w"]
        p = apply(p, updates)
    np.testing.assert_allclose(state[1].trace["w"], [0.95, 0.95, 0.95], rtol=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        lambda: gradtx.partition(
            {"x": optax.trace(0.9), "y": optax.trace(0.5)}, {"a": "x", "b": "y"}
        ),
        lambda: gradtx.masked(optax.trace(0.9), {"a": True, "b": False}),
        lambda: gradtx.track_norms(optax.trace(0.9)),
        lambda: gradtx.apply_if_finite(optax.trace(0.9), 3),
    ],
    ids=["partition", "masked", "track_norms", "apply_if_finite"],
)
def test_a_wrapper_of_a_member_returning_its_state_copies_it(make):
    # eagerly, optax.trace returns its new buffer as the updates; the wrapper's state
    # must not hold that buffer, or donating the updates deletes it
    opt, p = make(), {"a": jnp.ones(3), "b": jnp.ones(2)}
    state = opt.init(p)
    apply = jax.jit(gradtx.apply_updates, donate_argnums=(1,))
    for _ in range(2):
        updates, state = opt.update({"a": jnp.ones(3), "b": jnp.ones(2)}, state, p)
        held = {id(x) for x in jax.tree.leaves(updates)}
        assert not [x for x in jax.tree.leaves(state) if id(x) in held]
        p = apply(p, updates)

"""masked and partition: parameter groups."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from tests.reference.harness import assert_trajectories_close
from tests.reference.harness import make_problem
from tests.reference.harness import run_gradtx
from tests.registry import REGISTRY


def _jnp(tree):
    return {k: jnp.asarray(v, jnp.float64) for k, v in tree.items()}


def test_partition_equals_two_optimizers_on_the_two_halves(x64):
    params, grads = make_problem(0, steps=20)
    opt = gradtx.partition(
        {"a": gradtx.adam(0.05, b1=0.8), "s": gradtx.sgd(0.1, momentum=0.9, nesterov=True)},
        {"w": "a", "b": "s"},
    )
    ours = run_gradtx(opt, params, grads)
    w_alone = run_gradtx(
        gradtx.adam(0.05, b1=0.8), {"w": params["w"]}, [{"w": g["w"]} for g in grads]
    )
    b_alone = run_gradtx(
        gradtx.sgd(0.1, momentum=0.9, nesterov=True),
        {"b": params["b"]},
        [{"b": g["b"]} for g in grads],
    )
    assert_trajectories_close(ours, [w | b for w, b in zip(w_alone, b_alone)], rtol=1e-14)


@pytest.mark.parametrize("case", [c for c in REGISTRY if not c.needs], ids=lambda c: c.id)
def test_every_optimizer_in_a_group_steps_as_alone_on_its_leaves(case, x64):
    # masked and partition give a group's optimizer only its leaves: its tree-wide sums
    # (norms, inner products, a noise key per leaf) are those of the group alone.
    # Cases that need a loss are left out (their objective would see the whole tree).
    params, grads = make_problem(2, steps=6, shapes={"w": (3, 2), "b": (4,), "k": (2, 2, 3)})
    alone = run_gradtx(case.make(case.lr), {n: params[n] for n in "wk"},
                       [{n: g[n] for n in "wk"} for g in grads])  # fmt: skip
    labels = {"w": "x", "b": "y", "k": "x"}
    passed = np.cumsum([g["b"] for g in grads], axis=0) + params["b"]  # masked: as given
    for opt, hidden in (
        (gradtx.masked(case.make(case.lr), {"w": True, "b": False, "k": True}), passed),
        (gradtx.partition({"x": case.make(case.lr), "y": gradtx.sgd(0.0)}, labels),
         [params["b"]] * len(grads)),
    ):  # fmt: skip
        ours = run_gradtx(opt, params, grads)
        for a, b, h in zip(ours, alone, hidden):
            np.testing.assert_allclose(a["b"], h, rtol=1e-14)
            for n in "wk":
                np.testing.assert_allclose(a[n], b[n], rtol=1e-12, atol=1e-14)


def test_partition_state_is_keyed_by_label_and_addressable(x64):
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2), "e": jnp.ones(3)}
    opt = gradtx.partition(
        {"dense": gradtx.adam(1e-3), "embed": gradtx.adam(1e-2)},
        labels_fn=lambda p: {"w": "dense", "b": "dense", "e": "embed"},
    )
    state = opt.init(params)
    assert set(state) == {"dense", "embed"}
    hp = gradtx.get_hyperparams(state)
    assert float(hp["dense/learning_rate"]) == 1e-3
    assert float(hp["embed/learning_rate"]) == 1e-2
    with pytest.raises(KeyError, match="ambiguous"):
        gradtx.set_hyperparams(state, learning_rate=0.1)
    with pytest.raises(KeyError, match="unknown"):
        gradtx.set_hyperparams(state, {"head/learning_rate": 0.1})
    state = gradtx.set_hyperparams(state, {"embed/learning_rate": 0.5})
    g = jax.tree.map(jnp.ones_like, params)
    u, _ = opt.update(g, state, params)
    # Adam's first step is -lr * sign(g) (to eps)
    np.testing.assert_allclose(u["e"], -0.5, rtol=1e-6)
    np.testing.assert_allclose(u["w"], -1e-3, rtol=1e-6)


def test_partition_labels_may_be_a_prefix_and_groups_hold_only_their_leaves(x64):
    params = {"enc": {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}, "head": jnp.ones(4)}
    opt = gradtx.partition(
        {"frozen": gradtx.scale(0.0), "train": gradtx.adam()}, {"enc": "frozen", "head": "train"}
    )
    state = opt.init(params)
    mu = state["train"].inner_state[0].mu  # adam's momentum buffer
    assert [x.shape for x in jax.tree.leaves(mu)] == [(4,)]
    u, _ = opt.update(jax.tree.map(jnp.ones_like, params), state, params)
    assert float(jnp.abs(u["enc"]["w"]).sum()) == 0.0 and float(u["head"][0]) < 0


def test_partition_errors():
    params = {"w": jnp.ones(2), "b": jnp.ones(2)}
    with pytest.raises(ValueError, match="'c' have no transform; transforms are given for 'a'$"):
        gradtx.partition({"a": gradtx.sgd(0.1)}, {"w": "a", "b": "c"})  # at construction
    opt = gradtx.partition({"a": gradtx.sgd(0.1)}, labels_fn=lambda p: {"w": "a", "b": "c"})
    with pytest.raises(ValueError, match="'c' have no transform; transforms are given for 'a'$"):
        opt.init(params)
    with pytest.raises(ValueError, match="not a prefix"):
        gradtx.partition({"a": gradtx.sgd(0.1)}, {"w": "a"}).init(params)
    with pytest.raises(ValueError, match=r"\['w'\] hold None, which JAX reads as no subtree"):
        gradtx.partition({"a": gradtx.sgd(0.1)}, {"w": None, "b": "a"}).init(params)
    with pytest.raises(ValueError, match="not both"):  # at construction: it was at init
        gradtx.partition({"a": gradtx.sgd()}, "a", labels_fn=lambda p: "a")
    with pytest.raises(ValueError, match="not both"):
        gradtx.masked(gradtx.sgd(), True, mask_fn=lambda p: True)
    with pytest.raises(ValueError, match="give labels"):
        gradtx.partition({"a": gradtx.sgd()})
    with pytest.raises(TypeError, match="non-empty dict"):
        gradtx.partition([gradtx.sgd()], "a")


def test_masked_weight_decay_leaves_biases_untouched(x64):
    params, grads = make_problem(1, steps=20)
    mask = {"w": True, "b": False}
    runs = {
        "adamw": run_gradtx(gradtx.adamw(0.05, weight_decay=0.1, mask=mask), params, grads),
        "adam": run_gradtx(gradtx.adam(0.05), params, grads),
        "adamw_all": run_gradtx(gradtx.adamw(0.05, weight_decay=0.1), params, grads),
        "l2": run_gradtx(
            gradtx.chain(gradtx.masked(gradtx.add_l2(0.1), mask), gradtx.sgd(0.1, 0.9)),
            params,
            grads,
        ),
        "sgd": run_gradtx(gradtx.sgd(0.1, 0.9), params, grads),
        "sgd_l2": run_gradtx(gradtx.sgd(0.1, 0.9, weight_decay=0.1), params, grads),
    }
    for decayed, plain, everything in [("adamw", "adam", "adamw_all"), ("l2", "sgd", "sgd_l2")]:
        assert_trajectories_close(
            [{"b": s["b"]} for s in runs[decayed]], [{"b": s["b"]} for s in runs[plain]], 1e-14
        )
        assert_trajectories_close(
            [{"w": s["w"]} for s in runs[decayed]],
            [{"w": s["w"]} for s in runs[everything]],
            1e-14,
        )
        assert not np.allclose(runs[decayed][-1]["w"], runs[plain][-1]["w"])


def test_decay_mask_may_be_a_prefix_of_the_params_like_masked():
    params = {"enc": {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}, "head": {"w": -jnp.ones(3)}}
    grads = jax.tree.map(lambda p: 0.5 * p, params)
    full = {"enc": {"w": False, "b": False}, "head": {"w": True}}
    prefix = {"enc": False, "head": True}

    def step(tx):
        return tx.update(grads, tx.init(params), params)[0]

    for make in (
        lambda m: gradtx.adamw(0.1, weight_decay=0.5, mask=m),
        lambda m: gradtx.chain(gradtx.add_l2(0.5, mask=m), gradtx.sgd(0.1)),
    ):
        by_prefix, by_full = step(make(prefix)), step(make(full))
        jax.tree.map(np.testing.assert_array_equal, by_prefix, by_full)
        assert not np.allclose(by_prefix["head"]["w"], step(make(False))["head"]["w"])
    with pytest.raises(ValueError, match="not a prefix"):
        step(gradtx.adamw(0.1, mask={"enc": True}))


def test_an_entry_that_names_no_parameter_is_refused():
    # A module since renamed or removed: its setting would silently apply to nothing
    # (optax.masked refuses such a mask too).
    params = {"enc": jnp.ones(2), "head": jnp.ones(2)}
    stale = {"enc": True, "dec": False, "head": True}
    for tx in (
        gradtx.masked(gradtx.add_l2(0.1), stale),
        gradtx.adamw(0.1, weight_decay=0.1, mask=stale),
        gradtx.partition({True: gradtx.sgd(0.1), False: gradtx.adam()}, stale),
        gradtx.scale_by_multipliers({"enc": 1.0, "dec": 0.1, "head": 1.0}),
    ):
        with pytest.raises(ValueError, match=r"its entries \['dec'\] name no parameter"):
            tx.update(params, tx.init(params), params)


def test_masked_out_leaves_hold_no_state_and_pass_through():
    params = {"w": jnp.ones((3, 3)), "b": jnp.ones(3)}
    opt = gradtx.masked(gradtx.adam(0.1), {"w": True, "b": False})
    state = opt.init(params)
    shapes = sorted(x.shape for x in jax.tree.leaves(state) if x.ndim)
    assert shapes == [(3, 3), (3, 3)]  # mu and nu for w only
    g = {"w": jnp.ones((3, 3)), "b": jnp.full(3, 7.0)}
    u, state = opt.update(g, state, params)
    np.testing.assert_array_equal(u["b"], g["b"])
    np.testing.assert_allclose(u["w"], -0.1, rtol=1e-5)
    assert jax.tree.structure(state) == jax.tree.structure(opt.init(params))


def test_masked_out_leaves_of_any_dtype_or_an_example_axis_pass_through():
    """Hidden leaves pass unchanged and unchecked, as in optax: integer leaves, and
    per-example gradients on their way to a later aggregation by another group."""
    params = {"w": jnp.ones((3, 3)), "b": jnp.ones(2)}
    examples = {"w": jnp.ones((8, 3, 3)), "b": jnp.ones((8, 2))}
    private = gradtx.differentially_private_aggregate(1.0, 0.0, seed=0)
    dp = gradtx.masked(private, {"w": True, "b": False})
    u, _ = dp.update(examples, dp.init(params), params)
    assert u["w"].shape == (3, 3) and u["b"].shape == (8, 2)
    params = {"w": jnp.ones(3), "step": jnp.zeros((), jnp.int32)}
    opt = gradtx.masked(gradtx.adam(0.1), {"w": True, "step": False})
    u, _ = opt.update(params, opt.init(params), params)
    assert u["step"].dtype == jnp.int32


@jax.tree_util.register_pytree_node_class
class Module:
    """A callable pytree, like an Equinox module."""

    def __init__(self, w, b):
        self.w, self.b = w, b

    def __call__(self, x):
        return self.w @ x + self.b

    def tree_flatten(self):
        return (self.w, self.b), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children)


def test_callable_pytree_is_a_mask_not_a_function():
    params = Module(jnp.ones((2, 2)), jnp.ones(2))
    mask = jax.tree.map(lambda x: x.ndim > 1, params)  # a callable Module of bools
    assert callable(mask)
    opt = gradtx.masked(gradtx.scale(-1.0), mask)
    u, _ = opt.update(jax.tree.map(jnp.ones_like, params), opt.init(params), params)
    np.testing.assert_array_equal(u.w, -np.ones((2, 2)))
    np.testing.assert_array_equal(u.b, np.ones(2))
    by_fn = gradtx.masked(
        gradtx.scale(-1.0), mask_fn=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)
    )
    u2, _ = by_fn.update(jax.tree.map(jnp.ones_like, params), by_fn.init(params), params)
    np.testing.assert_array_equal(u2.b, np.ones(2))


def test_masked_passes_the_masked_grads_subtree(x64):
    """After a non-map member, the masked statistic reads the chain's grads."""
    params, grads = make_problem(2, steps=10)
    mask = {"w": True, "b": False}
    opt = gradtx.chain(
        gradtx.add_momentum(0.9, ema=True),
        gradtx.masked(gradtx.scale_by_rms(0.99, 1e-8), mask),
        gradtx.scale_by_learning_rate(0.01),
    )
    ours = run_gradtx(opt, params, grads)
    full = gradtx.chain(
        gradtx.add_momentum(0.9, ema=True),
        gradtx.scale_by_rms(0.99, 1e-8),
        gradtx.scale_by_learning_rate(0.01),
    )
    plain = gradtx.chain(gradtx.add_momentum(0.9, ema=True), gradtx.scale_by_learning_rate(0.01))
    ref_w = run_gradtx(full, params, grads)
    ref_b = run_gradtx(plain, params, grads)
    assert_trajectories_close(ours, [{"w": a["w"], "b": b["b"]} for a, b in zip(ref_w, ref_b)])


def test_partition_passes_each_group_its_grads_subtree(x64):
    params, grads = make_problem(3, steps=10)
    rms = gradtx.scale_by_rms(0.99, 1e-8)
    opt = gradtx.chain(
        gradtx.add_momentum(0.9, ema=True),
        gradtx.partition({"r": rms, "c": gradtx.clip_by_global_norm(0.5)}, {"w": "r", "b": "c"}),
        gradtx.scale_by_learning_rate(0.01),
    )
    ref_w = run_gradtx(
        gradtx.chain(gradtx.add_momentum(0.9, ema=True), rms, gradtx.scale_by_learning_rate(0.01)),
        params,
        grads,
    )
    ref_b = run_gradtx(
        gradtx.chain(
            gradtx.add_momentum(0.9, ema=True),
            gradtx.clip_by_global_norm(0.5),
            gradtx.scale_by_learning_rate(0.01),
        ),
        {"b": params["b"]},
        [{"b": g["b"]} for g in grads],
    )
    ours = run_gradtx(opt, params, grads)
    assert_trajectories_close(ours, [{"w": a["w"], "b": b["b"]} for a, b in zip(ref_w, ref_b)])


def test_kind_and_extras():
    assert isinstance(gradtx.masked(gradtx.add_l2(0.1), {"w": True}), gradtx.GradientMap)
    assert not isinstance(gradtx.masked(gradtx.adam(), {"w": True}), gradtx.GradientMap)
    part = gradtx.partition({"a": gradtx.clip(1.0), "b": gradtx.scale(2.0)}, {"w": "a", "v": "b"})
    assert isinstance(part, gradtx.GradientMap)
    params = {"w": jnp.ones(2), "v": jnp.ones(2)}
    u, _ = part.update(params, part.init(params), params, value=1.0, unknown="x")
    np.testing.assert_array_equal(u["v"], 2 * np.ones(2))
    with pytest.raises(ValueError, match="give mask"):
        gradtx.masked(gradtx.sgd())
    with pytest.raises(TypeError, match="static Python bools"):
        opt = gradtx.masked(gradtx.sgd(), mask_fn=lambda p: {"w": p["w"][0] > 0})
        jax.jit(opt.init)({"w": jnp.ones(2)})


def test_masked_inside_a_group():
    """A mask inside a group sees the group's hidden leaves as empty nodes."""
    params = {"w": jnp.ones(2), "e": jnp.ones(3), "b": jnp.ones(4)}
    inner = gradtx.masked(gradtx.scale(-1.0), {"w": True, "e": False, "b": False})
    opt = gradtx.partition({"a": inner, "z": gradtx.scale(0.0)}, {"w": "a", "e": "a", "b": "z"})
    g = {"w": jnp.full(2, 2.0), "e": jnp.full(3, 3.0), "b": jnp.full(4, 4.0)}
    u, _ = opt.update(g, opt.init(params), params)
    np.testing.assert_array_equal(u["w"], -2.0 * np.ones(2))
    np.testing.assert_array_equal(u["e"], 3.0 * np.ones(3))
    np.testing.assert_array_equal(u["b"], np.zeros(4))


def test_partition_refuses_labels_that_cannot_be_sorted_together():
    """JAX sorts the state's dict keys: 0 and "0" would fail later, inside init."""
    with pytest.raises(
        TypeError, match=r"^gradtx\.partition: the transforms' labels '0', 0 cannot"
    ):
        gradtx.partition({0: gradtx.sgd(0.1), "0": gradtx.adam(0.1)}, {"a": 0, "b": "0"})
    tx = gradtx.partition({0: gradtx.sgd(0.1), 1: gradtx.adam(0.1)}, {"a": 0, "b": 1})
    tx.init({"a": jnp.ones(2), "b": jnp.ones(2)})  # one kind of label is fine


def test_a_function_given_as_labels_points_to_labels_fn():
    # optax.multi_transform takes a function as its labels; here it read as a label
    # ("labels <function ...> have no transform").
    with pytest.raises(TypeError, match=r"partition\(labels=<function>\): .* as labels_fn"):
        gradtx.partition({"a": gradtx.sgd(0.1)}, lambda p: {"w": "a"})


@pytest.mark.parametrize("wrap", ["partition", "masked"])
def test_a_function_of_the_params_gets_the_whole_tree(x64, wrap):
    # value_fn reached the inner L-BFGS with the other group's leaves hidden, and the
    # user's loss failed on a MaskedNode; it now sees them held at the params.
    b = jnp.array([0.3, -0.2])
    w0 = jnp.array([1.5, -0.5, 0.25])

    def loss(p):
        return jnp.sum(jnp.cosh(p["w"] - 0.5) * (1.0 + p["b"][0] ** 2)) + jnp.sum(p["b"] ** 3)

    lbfgs = gradtx.lbfgs(0.5, max_iter=4)
    if wrap == "partition":
        tx = gradtx.partition({"q": lbfgs, "s": gradtx.sgd(0.1)}, {"w": "q", "b": "s"})
    else:
        tx = gradtx.masked(lbfgs, {"w": True, "b": False})
    params = {"w": w0, "b": b}
    state = tx.init(params)
    alone, alone_state = {"w": w0}, lbfgs.init({"w": w0})
    for _ in range(3):
        held = params["b"]  # the other leaves, as value_fn sees them in this step

        def loss_w(p, held=held):
            return loss({"w": p["w"], "b": held})

        value, grads = jax.value_and_grad(loss)(params)
        updates, state = tx.update(grads, state, params, value=value, value_fn=loss)
        params = gradtx.apply_updates(params, updates)

        value, grads = jax.value_and_grad(loss_w)(alone)
        updates, alone_state = lbfgs.update(grads, alone_state, alone, value=value, value_fn=loss_w)
        alone = gradtx.apply_updates(alone, updates)
        np.testing.assert_allclose(params["w"], alone["w"], rtol=1e-12)


def test_a_gradient_function_gets_the_whole_tree_and_its_gradient_is_hidden(x64):
    # SAM's opaque mode calls grad_fn(params, i): the user's function of the whole model.
    def loss(p):
        return jnp.sum(jnp.sin(p["w"]) * (1 + p["b"][0] ** 2)) + jnp.sum(p["b"] ** 2)

    def make():
        return gradtx.sam(gradtx.sgd(0.1), gradtx.sgd(0.05), sync_period=2, opaque_mode=True)

    b = jnp.array([0.3, 0.2])
    tx = gradtx.partition({"q": make(), "s": gradtx.sgd(0.0)}, {"w": "q", "b": "s"})
    params = {"w": jnp.array([0.5, 1.0, -1.0]), "b": b}
    state = tx.init(params)
    alone, inner = {"w": params["w"]}, make()
    alone_state = inner.init(alone)

    def loss_w(p):
        return loss({"w": p["w"], "b": b})

    for _ in range(4):
        updates, state = tx.update(
            jax.grad(loss)(params), state, params, grad_fn=lambda p, i: jax.grad(loss)(p)
        )
        params = gradtx.apply_updates(params, updates)
        updates, alone_state = inner.update(
            jax.grad(loss_w)(alone), alone_state, alone, grad_fn=lambda p, i: jax.grad(loss_w)(p)
        )
        alone = gradtx.apply_updates(alone, updates)
        np.testing.assert_allclose(params["w"], alone["w"], rtol=1e-12)


@pytest.mark.parametrize("wrap", ["masked", "partition"])
def test_galore_inside_a_masked_or_partition_steps_as_alone_on_its_leaves(wrap, x64):
    """The enclosing wrapper's hidden leaves are not GaLore's own bases (it paired a
    projected leaf with one of them and crashed)."""
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(6, 4))), "v": jnp.asarray(rng.normal(size=(5, 3)))}
    galore = gradtx.galore(0.1, rank=2)
    if wrap == "masked":
        opt = gradtx.masked(galore, {"w": True, "v": False})
    else:
        opt = gradtx.partition({"g": galore, "s": gradtx.sgd(0.1)}, {"w": "g", "v": "s"})
    alone = gradtx.galore(0.1, rank=2)
    state, solo = opt.init(params), alone.init({"w": params["w"]})
    for _ in range(3):
        grads = jax.tree.map(lambda p: jnp.sin(p) + p, params)
        u, state = opt.update(grads, state, params)
        want, solo = alone.update({"w": grads["w"]}, solo, {"w": params["w"]})
        np.testing.assert_allclose(u["w"], want["w"], rtol=1e-12)
        params = gradtx.apply_updates(params, u)


def test_a_mask_fn_or_labels_fn_that_changes_after_init_is_refused_until_init_again():
    """The values are static: a mask_fn reading a changed global gave a stateless inner
    another mask silently (a stateful one met a state made for the other).  A new init
    takes the new values."""
    frozen: set = set()
    p = {"a": jnp.ones(2), "b": jnp.ones(2)}
    masked = gradtx.masked(gradtx.sgd(0.1), mask_fn=lambda t: {k: k not in frozen for k in t})
    labels = gradtx.partition(
        {"on": gradtx.sgd(0.1), "off": gradtx.scale(0.0)},
        labels_fn=lambda t: {k: "off" if k in frozen else "on" for k in t},
    )
    for tx, what in ((masked, "mask_fn gives False"), (labels, "labels_fn gives 'off'")):
        frozen.clear()
        state = tx.init(p)
        tx.update(p, state, p)
        frozen.add("a")
        with pytest.raises(ValueError, match=rf"{what} for the leaf \['a'\] at update where"):
            tx.update(p, state, p)
        u, _ = tx.update(p, tx.init(p), p)
        np.testing.assert_allclose(u["b"], -0.1, rtol=1e-6)
        assert not np.allclose(u["a"], -0.1)


def test_one_transform_inited_for_two_trees_of_one_layout_keeps_both():
    """What init saw is kept per form of the tree: a second init for params of the same
    structure and shapes but other flax Variable types made the first one's update fail."""
    from flax import nnx

    is_var = lambda x: isinstance(x, nnx.Variable)  # noqa: E731
    lora = lambda t: jax.tree.map(lambda v: isinstance(v, nnx.LoRAParam), t, is_leaf=is_var)  # noqa: E731
    a = nnx.State({"w": nnx.LoRAParam(jnp.ones(2)), "b": nnx.Param(jnp.ones(2))})
    b = nnx.State({"w": nnx.Param(jnp.ones(2)), "b": nnx.Param(jnp.ones(2))})
    tx = gradtx.masked(gradtx.sgd(0.1), mask_fn=lora)
    state_a = tx.init(a)
    tx.init(b)
    u, _ = tx.update(a, state_a, a)
    np.testing.assert_allclose(u["w"][...], -0.1, rtol=1e-6)

"""Flax: ``nnx.Optimizer`` and linen ``TrainState`` take gradtx optimizers unchanged.

The loss curve of a small model trained with ``gradtx.adamw`` must equal the one
trained with ``optax.adamw`` (same data, same init).  Those comparisons run in
float64 (the ``x64`` fixture, float64 params), so the tolerance is rounding-tight.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen
from flax import nnx
from flax.training import train_state

import gradtx
from gradtx._base import float_dtype
from tests.registry import REGISTRY

STEPS = 20


def _data():
    kx, kw = jax.random.split(jax.random.PRNGKey(0))
    dtype = float_dtype()  # float64 under the x64 fixture
    x = jax.random.normal(kx, (64, 6), dtype)
    y = jnp.tanh(x @ jax.random.normal(kw, (6, 2), dtype))
    return x, y


class NnxMLP(nnx.Module):
    def __init__(self, rngs):
        dtype = float_dtype()
        self.hidden = nnx.Linear(6, 16, rngs=rngs, param_dtype=dtype, dtype=dtype)
        self.out = nnx.Linear(16, 2, rngs=rngs, param_dtype=dtype, dtype=dtype)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


def _nnx_curve(tx, steps=STEPS, case=None):
    x, y = _data()
    model = NnxMLP(nnx.Rngs(1))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
        extra = {}
        if case is not None and case.needs:  # L-BFGS: the loss as a function of the params
            graphdef, params, rest = nnx.split(model, nnx.Param, ...)

            def loss_of(p):
                return jnp.mean((nnx.merge(graphdef, p, rest)(x) - y) ** 2)

            extra = case.keywords(loss_of, nnx.as_pure(params))
        optimizer.update(model, grads, **extra)
        return loss

    return np.array([step(model, optimizer) for _ in range(steps)]), optimizer


def test_nnx_optimizer_adamw_matches_optax(x64):
    ours, optimizer = _nnx_curve(gradtx.adamw(1e-2, weight_decay=1e-2))
    with jax.numpy_dtype_promotion("standard"):  # optax is not strict-promotion clean
        theirs, _ = _nnx_curve(optax.adamw(1e-2, weight_decay=1e-2))
    assert ours[-1] < 0.5 * ours[0]  # it trains
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    # The hyperparameters live in nnx's optimizer state and can be read from it.
    state = nnx.to_pure_dict(nnx.state(optimizer, nnx.optimizer.OptState))
    assert any("learning_rate" in "/".join(map(str, path)) for path, _ in _flat(state))


def _flat(tree):
    return jax.tree_util.tree_flatten_with_path(tree)[0]


@pytest.mark.parametrize("case", REGISTRY, ids=[c.id for c in REGISTRY])
def test_nnx_optimizer_takes_every_gradtx_optimizer(case):
    curve, _ = _nnx_curve(case.make(case.lr), steps=4, case=case)
    assert np.all(np.isfinite(curve)) and curve[-1] < curve[0], curve


def test_nnx_parameter_groups_by_dict_prefix(x64):
    """docs/ecosystem.md's NNX recipe: no decay on biases, another learning rate for
    the head, with masks and labels given as dict prefixes of the nnx.State."""
    labels = {"hidden": "body", "out": "head"}
    no_bias = {"hidden": {"bias": False, "kernel": True}, "out": {"bias": False, "kernel": True}}

    def make():
        return gradtx.partition(
            {
                # each group sees the whole tree (the other group's leaves hidden)
                "body": gradtx.adamw(1e-2, weight_decay=0.1, mask=no_bias),
                "head": gradtx.adamw(1e-3, weight_decay=0.1, mask=no_bias),
            },
            labels,
        )

    curve, optimizer = _nnx_curve(make(), steps=5)
    assert np.all(np.isfinite(curve)) and curve[-1] < curve[0]
    # The same groups on the plain dict of the same params give the same numbers.
    x, y = _data()
    model = NnxMLP(nnx.Rngs(1))
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    tx = make()
    state = tx.init(params)

    def loss_fn(p):  # NnxMLP on the plain dict
        h = jax.nn.relu(x @ p["hidden"]["kernel"] + p["hidden"]["bias"])
        return jnp.mean((h @ p["out"]["kernel"] + p["out"]["bias"] - y) ** 2)

    losses = []
    for _ in range(5):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        u, state = tx.update(grads, state, params)
        params = gradtx.apply_updates(params, u)
        losses.append(loss)
    np.testing.assert_allclose(curve, losses, rtol=1e-12)
    # From a fresh state, zero gradients: only the kernels decay, at each group's rate.
    zero = jax.tree.map(jnp.zeros_like, params)
    u, _ = tx.update(zero, tx.init(params), params)
    assert not np.any(np.asarray(u["hidden"]["bias"])) and not np.any(np.asarray(u["out"]["bias"]))
    np.testing.assert_allclose(u["hidden"]["kernel"], -1e-2 * 0.1 * params["hidden"]["kernel"])
    np.testing.assert_allclose(u["out"]["kernel"], -1e-3 * 0.1 * params["out"]["kernel"])


def test_nnx_labels_by_key_path_and_from_the_state_itself(x64):
    """nnx.Optimizer gives ``init`` the Variables and ``update`` their arrays.  Labels
    mapped over ``nnx.state(model, nnx.Param)`` were refused at update; now a Variable
    and its array are one leaf when matched.  A ``labels_fn``/``mask_fn`` is called with
    the tree as given: one of key paths that skips the Variables' trailing ``value``
    works under nnx.Optimizer, and one of Variable types works where update gets the
    Variables too (a first form of the fix called it with the arrays, and such a mask
    then silently masked nothing)."""

    def last(path):
        return [k for k in path if getattr(k, "name", None) != "value"][-1].key

    by_path = lambda p: jax.tree_util.tree_map_with_path(  # noqa: E731
        lambda path, v: "head" if last(path) == "kernel" else "body", p
    )
    kernels = lambda p: jax.tree_util.tree_map_with_path(  # noqa: E731
        lambda path, v: last(path) == "kernel", p
    )
    from_state = jax.tree.map(
        lambda v: "head" if v.ndim == 2 else "body", nnx.state(NnxMLP(nnx.Rngs(1)), nnx.Param)
    )
    groups = {"head": gradtx.sgd(0.1, 0.9), "body": gradtx.adam(1e-2)}
    dicts = {
        "hidden": {"kernel": "head", "bias": "body"},
        "out": {"kernel": "head", "bias": "body"},
    }
    want, _ = _nnx_curve(gradtx.partition(groups, dicts), steps=3)
    for labels in ({"labels_fn": by_path}, {"labels": from_state}):
        got, _ = _nnx_curve(gradtx.partition(groups, **labels), steps=3)
        np.testing.assert_array_equal(got, want)
    masked = {"hidden": {"kernel": True, "bias": False}, "out": {"kernel": True, "bias": False}}
    want, _ = _nnx_curve(gradtx.adamw(1e-2, weight_decay=0.5, mask=masked), steps=3)
    got, _ = _nnx_curve(gradtx.adamw(1e-2, weight_decay=0.5, mask_fn=kernels), steps=3)
    np.testing.assert_array_equal(got, want)

    # by hand, Variables at init and at update: a mask of Variable types works (the first
    # form of the fix gave the function arrays, and this mask then masked nothing) ...
    class Lora(nnx.Module):
        def __init__(self, rngs):
            self.lin = nnx.Linear(2, 2, rngs=rngs)
            self.scale = nnx.LoRAParam(jnp.ones(2, jnp.float32))

        def __call__(self, x):
            return self.lin(x) * self.scale[...]

    is_var = lambda x: isinstance(x, nnx.Variable)  # noqa: E731
    lora = lambda s: jax.tree.map(lambda v: isinstance(v, nnx.LoRAParam), s, is_leaf=is_var)  # noqa: E731
    graphdef, state = nnx.split(Lora(nnx.Rngs(0)), nnx.Param)
    grads = jax.grad(
        lambda st: jnp.sum(nnx.merge(graphdef, st)(jnp.ones((1, 2), jnp.float32)) ** 2)
    )(state)
    tx = gradtx.masked(gradtx.sgd(0.1), mask_fn=lora)
    u, _ = tx.update(grads, tx.init(state), state)
    np.testing.assert_allclose(u["scale"][...], -0.1 * grads["scale"][...])
    np.testing.assert_array_equal(u["lin"]["kernel"][...], grads["lin"]["kernel"][...])
    # ... and under nnx.Optimizer, whose update sees no Variable types, it is refused (it
    # masked every leaf at init and none at update: the raw gradient went in as a step)
    model = Lora(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, gradtx.masked(gradtx.sgd(0.1), mask_fn=lora), wrt=nnx.Param)
    g = nnx.grad(lambda m: jnp.sum(m(jnp.ones((1, 2), jnp.float32)) ** 2))(model)
    with pytest.raises(ValueError, match=r"mask_fn gives False for the leaf \['scale'\] at update"):
        optimizer.update(model, g)
    # the same for a weight decay's mask_fn, which is read at update only (it decayed none)
    decayed = gradtx.adamw(1e-2, weight_decay=0.5, mask_fn=lora)
    optimizer = nnx.Optimizer(Lora(nnx.Rngs(0)), decayed, wrt=nnx.Param)
    with pytest.raises(ValueError, match=r"gradtx.adamw: mask_fn gives False for the leaf"):
        optimizer.update(model, g)
    # a function of key paths that reads the last key gets a note on what init was given
    fn = lambda p: jax.tree_util.tree_map_with_path(lambda path, v: path[-1].key, p)  # noqa: E731
    with pytest.raises(AttributeError) as info:
        nnx.Optimizer(model, gradtx.partition({"a": gradtx.sgd(0.1)}, labels_fn=fn), wrt=nnx.Param)
    assert "labels_fn was given flax.nnx Variables" in "".join(
        getattr(info.value, "__notes__", [""])
    )


def test_a_mask_that_does_not_fit_the_nnx_state_says_what_to_pass():
    model = NnxMLP(nnx.Rngs(1))
    optimizer = nnx.Optimizer(model, gradtx.adamw(1e-2, mask={"hidden": True}), wrt=nnx.Param)
    grads = jax.tree.map(jnp.ones_like, nnx.state(model, nnx.Param))
    with pytest.raises(ValueError) as info:
        optimizer.update(model, grads)
    msg = str(info.value)
    assert msg.startswith("gradtx.adamw: the mask tree does not match the params"), msg
    assert "out/bias" in msg and len(msg) < 600, msg


def test_nnx_optimizer_takes_a_composed_optimizer():
    tx = gradtx.lookahead(gradtx.sgd(0.05, momentum=0.9, nesterov=True), sync_period=2)
    curve, _ = _nnx_curve(tx, steps=4)
    assert np.all(np.isfinite(curve)) and curve[-1] < curve[0], curve


def test_nnx_set_hyperparams_keeps_the_state_and_the_trace():
    """nnx.Optimizer wraps each state leaf (OptArray): set_hyperparams returned a bare array
    there, which changed the state's structure (a retrace, and an orbax checkpoint that no
    longer restored into a fresh optimizer); get_hyperparams returned the wrappers."""
    x = jnp.ones((4, 2))
    traces = []

    @nnx.jit
    def step(model, opt):
        traces.append(1)
        grads = nnx.grad(lambda m: jnp.mean(m(x) ** 2))(model)
        opt.update(model, grads)

    model = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(model, gradtx.adamw(gradtx.schedules.linear(1e-2, 0.0, 10)), wrt=nnx.Param)
    step(model, opt)
    before = jax.tree.structure(nnx.state(opt))
    opt.opt_state = gradtx.set_hyperparams(
        opt.opt_state, {"weight_decay": 0.5, "learning_rate.end_value": 1e-3}
    )
    assert jax.tree.structure(nnx.state(opt)) == before
    step(model, opt)
    assert len(traces) == 1
    values = gradtx.get_hyperparams(opt.opt_state)
    assert all(isinstance(v, jax.Array) for v in values.values()), values
    assert float(values["weight_decay"]) == 0.5
    np.testing.assert_allclose(float(values["learning_rate.end_value"]), 1e-3)
    # a whole schedule of the same form: its fields sit under the value's leaves
    # (this raised a pytree structure error)
    opt.opt_state = gradtx.set_hyperparams(
        opt.opt_state, learning_rate=gradtx.schedules.linear(2e-2, 4e-3, 10)
    )
    assert jax.tree.structure(nnx.state(opt)) == before
    step(model, opt)
    assert len(traces) == 1
    values = gradtx.get_hyperparams(opt.opt_state)
    np.testing.assert_allclose(float(values["learning_rate.init_value"]), 2e-2)
    np.testing.assert_allclose(float(values["learning_rate.end_value"]), 4e-3)


class LinenMLP(linen.Module):
    @linen.compact
    def __call__(self, x):
        dtype = float_dtype()
        hidden = linen.Dense(16, param_dtype=dtype, dtype=dtype)(x)
        return linen.Dense(2, param_dtype=dtype, dtype=dtype)(jax.nn.relu(hidden))


def _linen_curve(tx):
    x, y = _data()
    model = LinenMLP()
    state = train_state.TrainState.create(
        apply_fn=model.apply, params=model.init(jax.random.PRNGKey(1), x)["params"], tx=tx
    )

    @jax.jit
    def step(state):
        loss_fn = lambda p: jnp.mean((state.apply_fn({"params": p}, x) - y) ** 2)  # noqa: E731
        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads), loss

    losses = []
    for _ in range(STEPS):
        state, loss = step(state)
        losses.append(loss)
    return np.array(losses), state


def test_linen_train_state_adamw_matches_optax(x64):
    ours, state = _linen_curve(gradtx.adamw(1e-2, weight_decay=1e-2))
    with jax.numpy_dtype_promotion("standard"):
        theirs, _ = _linen_curve(optax.adamw(1e-2, weight_decay=1e-2))
    assert ours[-1] < 0.5 * ours[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    assert int(state.step) == STEPS
    np.testing.assert_allclose(gradtx.get_hyperparams(state.opt_state)["learning_rate"], 1e-2)


def test_linen_train_state_learning_rate_change_without_retrace():
    x, y = _data()
    model = LinenMLP()
    params = model.init(jax.random.PRNGKey(1), x)["params"]
    state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=gradtx.adam(1e-2))
    traces = []

    @jax.jit
    def step(state):
        traces.append(1)
        grads = jax.grad(lambda p: jnp.mean((state.apply_fn({"params": p}, x) - y) ** 2))(
            state.params
        )
        return state.apply_gradients(grads=grads)

    state = step(state)
    state = state.replace(opt_state=gradtx.set_hyperparams(state.opt_state, learning_rate=0.0))
    frozen = step(state)
    assert len(traces) == 1
    jax.tree.map(np.testing.assert_array_equal, frozen.params, state.params)  # lr 0: no move


def test_hyperparams_of_a_container_name_where_the_optimizer_state_is():
    # nnx.split / nnx.state and a whole TrainState gave {} (and set_hyperparams "known:
    # []"): their optimizer state is not where the functions look.
    model = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(model, gradtx.adam(1e-2), wrt=nnx.Param)
    _, split_state = nnx.split((model, opt))
    for wrong in (split_state, nnx.state(opt)):
        with pytest.raises(ValueError, match=r"found no hyperparameters: .*optimizer.opt_state"):
            gradtx.get_hyperparams(wrong)
        with pytest.raises(
            KeyError, match=r"unknown hyperparameter 'learning_rate': this tree holds"
        ):
            gradtx.set_hyperparams(wrong, learning_rate=1e-3)
    assert float(gradtx.get_hyperparams(opt.opt_state)["learning_rate"]) == pytest.approx(1e-2)
    params = {"w": jnp.ones(2)}
    ts = train_state.TrainState.create(apply_fn=None, params=params, tx=gradtx.adam(1e-2))
    with pytest.raises(ValueError, match=r"a flax TrainState as state.opt_state"):
        gradtx.get_hyperparams(ts)
    assert float(gradtx.get_hyperparams(ts.opt_state)["learning_rate"]) == pytest.approx(1e-2)
    # a state with no hyperparameters at all is an empty answer, not an error
    assert gradtx.get_hyperparams(optax.adam(0.1).init(params)) == {}
    assert gradtx.get_hyperparams(gradtx.centralize().init(params)) == {}


def test_schedule_free_eval_params_takes_nnx_states_as_they_are():
    # It refused optimizer.opt_state with nnx.state(model, nnx.Param) (the wrappers made
    # the trees differ); only both through nnx.as_pure worked.
    x = jnp.ones((4, 3))
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(model, gradtx.schedule_free_adamw(1e-2), wrt=nnx.Param)
    for _ in range(3):
        opt.update(model, nnx.grad(lambda m: jnp.mean(m(x) ** 2))(model))
    params = nnx.state(model, nnx.Param)
    pure = gradtx.schedule_free_eval_params(nnx.as_pure(opt.opt_state), nnx.as_pure(params))
    wrapped = gradtx.schedule_free_eval_params(opt.opt_state, params)
    assert jax.tree.structure(wrapped) == jax.tree.structure(params)  # Params, for nnx.update
    for a, b in zip(jax.tree.leaves(nnx.as_pure(wrapped)), jax.tree.leaves(pure)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(pure["kernel"], nnx.as_pure(params)["kernel"])  # x is not y


@pytest.mark.parametrize("axis_type", ["Auto", "Explicit"])
def test_galore_takes_nnx_sharding_annotations(axis_type):
    """nnx gives every state entry its param's sharding annotation: GaLore's placeholder
    for the bias (it was 0-D, which P("model") cannot shard) and its basis (replicated
    by the SVD, where the kept one carried the kernel's annotation) now take it, and the
    steps are those of the same model without annotations."""
    types = (getattr(jax.sharding.AxisType, axis_type),)
    mesh = jax.make_mesh((1,), ("model",), axis_types=types)

    def run(annotated):
        def init(base, names):
            return nnx.with_partitioning(base, names) if annotated else base

        model = nnx.Linear(
            4, 6,
            kernel_init=init(nnx.initializers.lecun_normal(), (None, "model")),
            bias_init=init(nnx.initializers.normal(), ("model",)),
            rngs=nnx.Rngs(0),
        )  # fmt: skip
        opt = nnx.Optimizer(model, gradtx.galore(0.05, rank=1, update_proj_gap=2), wrt=nnx.Param)

        @nnx.jit
        def step(model, opt):
            loss = lambda m: jnp.sum(m(jnp.ones((2, 4))) ** 2)  # noqa: E731
            opt.update(model, nnx.grad(loss)(model))

        for _ in range(3):
            step(model, opt)
        return np.asarray(model.kernel[...]), np.asarray(model.bias[...])

    with jax.set_mesh(mesh):
        got = run(annotated=True)
    want = run(annotated=False)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_a_16_bit_warning_at_train_state_create_points_at_the_caller(monkeypatch):
    monkeypatch.setattr(gradtx._stored, "_WARNED", set())
    params = {"w": jnp.ones(3, jnp.float16)}
    tx = optax.inject_hyperparams(gradtx.adam)(learning_rate=1e-3)  # eps=1e-8 is 0 in float16
    with pytest.warns(UserWarning, match=r"gradtx.adam\(eps=0.0 as a float16 array\)") as caught:
        train_state.TrainState.create(apply_fn=None, params=params, tx=tx)
    assert caught[0].filename == __file__  # not Flax's create

"""gradtx.flatten(tx) computes what tx computes, on flat per-dtype buffers."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import gradtx
from tests.registry import OPTIMIZER_NAMES
from tests.registry import REGISTRY

# Keyword arguments that switch on each optimizer's optional stages, so the
# comparison covers them.  An optimizer exported later and not listed here is
# still compared, with its defaults (see ``_optimizers``).
OPTIONS = {
    "sgd": [
        dict(learning_rate=0.1, momentum=0.9, weight_decay=0.01),
        dict(nesterov=True, momentum=0.5),
    ],
    "sgdw": [dict(learning_rate=0.1, momentum=0.9)],
    "adam": [dict(learning_rate=0.01, weight_decay=0.1), dict(amsgrad=True)],
    "adamw": [dict(learning_rate=0.01)],
    "amsgrad": [dict(learning_rate=0.01)],
    "radam": [dict(learning_rate=0.01, weight_decay=0.1)],
    "nadam": [dict(learning_rate=0.01)],
    "adagrad": [dict(learning_rate=0.1, weight_decay=0.1)],
    "rmsprop": [dict(learning_rate=0.01, momentum=0.9, centered=True)],
    "adadelta": [dict(weight_decay=0.1)],
    # Gradient centralisation needs leaf shapes (it raises inside flatten, tested below).
    "ranger": [dict(learning_rate=0.01, gradient_centralization=False)],
    "lookahead": [dict(inner=None, sync_period=3)],
    # The projection is summed over the tree: flat buffers sum the same terms.
    "swats": [dict(learning_rate=0.01)],
    # flatten hands lbfgs {dtype: buffer} params and wraps value_fn to unpack them.
    "lbfgs": [
        dict(max_iter=5, history_size=3),
        dict(max_iter=5, history_size=3, line_search_fn="strong_wolfe"),
        dict(history_size=3, line_search_fn="strong_wolfe", convention="optax"),
    ],
    # The trust ratio is per leaf (the registry's LARS refuses, tested below); masked
    # off, LARS is elementwise.
    "lars": [dict(learning_rate=0.1, weight_decay=0.01, trust_ratio_mask=False, nesterov=True)],
    # Transparent mode: normalize()'s global norm sums the same terms over flat buffers.
    "sam": [dict(optimizer=None, adv_optimizer=None, sync_period=3)],
    # Its factored moment, clipping and parameter scale need leaf shapes (they raise inside
    # flatten, tested below); without them every stage is elementwise.
    "adafactor": [
        dict(
            learning_rate=0.1,
            factored=False,
            d=None,
            multiply_by_parameter_scale=False,
            momentum=0.9,
            weight_decay=0.1,
            weight_decay_rate=0.01,
        )
    ],
}
# Optimizers whose every step needs the leaves' shapes (a norm per leaf, a noise
# draw per leaf; ``per_leaf`` in tests/registry.py) refuse to run inside flatten
# (tested below) instead of being compared with it.
PER_LEAF = sorted({c.name for c in REGISTRY if c.per_leaf})
SHAPES = {"w": (3, 4), "b": (4,), "k": (2, 3, 2), "s": ()}
STEPS = 13  # past RAdam's threshold (t = 6) and several Lookahead syncs


FIRST_CASE = {c.name: c for c in reversed(REGISTRY)}


def _optimizers():
    cases = []
    for name in OPTIMIZER_NAMES:
        for kw in OPTIONS.get(name, [None]):
            if kw is None and name in PER_LEAF:
                continue  # test_per_leaf_transform_refuses_to_run_flat
            label = "registry" if kw is None else "-".join(kw) or "defaults"
            cases.append(pytest.param(name, kw, id=f"{name}-{label}"))
    return cases


def _build(name, kw):
    if kw is None:  # the registry's settings
        return FIRST_CASE[name].make(FIRST_CASE[name].lr)
    kw = dict(kw)
    if name == "lookahead":
        kw["inner"] = gradtx.adam(0.01)
    if name == "sam":
        kw["optimizer"] = gradtx.adam(0.01)
        kw["adv_optimizer"] = gradtx.chain(gradtx.normalize(), gradtx.scale(-0.05))
    return getattr(gradtx, name)(**kw)


def _problem(dtypes, seed=0):
    rng = np.random.default_rng(seed)
    params = {k: jnp.asarray(rng.normal(size=s), dtypes[k]) for k, s in SHAPES.items()}
    grads = [
        {k: jnp.asarray(rng.normal(size=s), dtypes[k]) for k, s in SHAPES.items()}
        for _ in range(STEPS)
    ]
    return params, grads


def _run(tx, params, grads, case=None, **extra):
    """``case``: a registry case whose update needs the loss (``case.update``)."""
    state = tx.init(params)
    step = jax.jit(tx.update if case is None else case.update(tx))
    out = []
    for g in grads:
        updates, state = step(g, state, params, **extra)
        params = gradtx.apply_updates(params, updates)
        out.append(params)
    return out, state


def _assert_same(a, b, rtol=0.0):
    # Params are O(1): an absolute floor of rtol keeps a value that crosses
    # zero (params + update cancel) from turning one ulp into a large ratio.
    for step, (x, y) in enumerate(zip(a, b)):
        for k in y:
            np.testing.assert_allclose(
                np.asarray(x[k], np.float64),
                np.asarray(y[k], np.float64),
                rtol=rtol,
                atol=rtol,
                err_msg=f"leaf {k!r} at step {step + 1}",
            )


@pytest.mark.parametrize("name,kw", _optimizers())
def test_flatten_equals_default_path_float64(x64, name, kw):
    params, grads = _problem({k: jnp.float64 for k in SHAPES})
    case = FIRST_CASE[name]
    ours, state = _run(gradtx.flatten(_build(name, kw)), params, grads, case)
    ref, ref_state = _run(_build(name, kw), params, grads, case)
    # Same elementwise operations on the same values; XLA may fuse the two
    # programs differently, which can move a rounding by one ulp.
    _assert_same(ours, ref, rtol=1e-14)
    assert gradtx.get_hyperparams(state).keys() == gradtx.get_hyperparams(ref_state).keys()


def test_line_search_data_keywords_and_grad_pass_through(x64):
    """value_fn keeps its data keywords and a grad= keyword is flattened too."""
    params, grads = _problem({k: jnp.float64 for k in SHAPES})
    target = jax.tree.map(lambda g: 0.3 * g, grads[0])

    def loss(p, target):
        return sum(jnp.sum((a - b) ** 2 + 0.1 * a**4) for a, b in zip(
            jax.tree.leaves(p), jax.tree.leaves(target)))  # fmt: skip

    def run(tx):
        state, p, out = tx.init(params), params, []
        # jitted: an eager line search compiles its loop at every call
        step = jax.jit(tx.update, static_argnames="value_fn")
        for _ in range(6):
            value, g = jax.value_and_grad(loss)(p, target)
            u, state = step(g, state, p, value=value, grad=g, value_fn=loss, target=target)
            p = gradtx.apply_updates(p, u)
            out.append(p)
        return out

    for make in [
        lambda: gradtx.lbfgs(history_size=3, line_search_fn="strong_wolfe", convention="optax"),
        lambda: gradtx.chain(gradtx.scale(-0.1), gradtx.scale_by_zoom_linesearch(10)),
    ]:
        _assert_same(run(gradtx.flatten(make())), run(make()), rtol=1e-12)


def test_mixed_float32_bfloat16_leaves():
    dtypes = {"w": jnp.float32, "b": jnp.bfloat16, "k": jnp.float32, "s": jnp.bfloat16}
    params, grads = _problem(dtypes, seed=1)
    for tx in [lambda: gradtx.adamw(0.01), lambda: gradtx.sgd(0.1, momentum=0.9)]:
        ours, state = _run(gradtx.flatten(tx()), params, grads)
        ref, _ = _run(tx(), params, grads)
        _assert_same(ours, ref, rtol=1e-6)  # float32 rounding of fusion order at most
        assert {k: v.dtype for k, v in ours[-1].items()} == dtypes
    mu = state.inner_state.inner_state[0].mu
    # one buffer per params dtype; bfloat16 params' statistics are stored in float32
    assert {k: v.dtype for k, v in mu.items()} == {"bfloat16": jnp.float32, "float32": jnp.float32}
    assert {k: v.shape for k, v in mu.items()} == {"bfloat16": (5,), "float32": (24,)}


def test_bfloat16_moments_through_flatten():
    params, grads = _problem({k: jnp.float32 for k in SHAPES}, seed=2)
    make = lambda: gradtx.adam(0.01, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)  # noqa: E731
    ours, state = _run(gradtx.flatten(make()), params, grads)
    ref, _ = _run(make(), params, grads)
    _assert_same(ours, ref, rtol=1e-6)
    moments = jax.tree.leaves(state.inner_state.inner_state)
    assert {x.dtype for x in moments if x.ndim} == {jnp.dtype(jnp.bfloat16)}


def _masks():
    mask = {"w": True, "b": False, "k": True, "s": False}
    out = [pytest.param(lambda tx: optax.masked(tx, mask), id="optax.masked")]
    if hasattr(gradtx, "masked"):
        out.append(pytest.param(lambda tx: gradtx.masked(tx, mask), id="gradtx.masked"))
    return out


@pytest.mark.parametrize("wrap", _masks())
def test_masked_groups(x64, wrap):
    params, grads = _problem({k: jnp.float64 for k in SHAPES}, seed=3)
    ours, _ = _run(wrap(gradtx.flatten(gradtx.adamw(0.01))), params, grads)
    ref, _ = _run(wrap(gradtx.adamw(0.01)), params, grads)
    _assert_same(ours, ref, rtol=1e-14)
    # Masked-out leaves pass the gradient through, with no AdamW step.
    np.testing.assert_allclose(ours[-1]["b"], params["b"] + sum(g["b"] for g in grads))


@pytest.mark.parametrize(
    "inner",
    [
        lambda: gradtx.adamw(0.01, mask={"w": True, "b": False, "k": True, "s": False}),
        # A function of the params saw the flat buffers: every "leaf" 1-D, no decay at all.
        lambda: gradtx.adamw(0.01, mask_fn=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)),
        lambda: gradtx.partition(
            {"a": gradtx.sgd(0.1), "b": gradtx.adam(0.1)},
            labels_fn=lambda p: jax.tree.map(lambda x: "a" if x.ndim > 1 else "b", p),
        ),
    ],
    ids=["mask", "mask_fn", "labels_fn"],
)
def test_a_mask_or_labels_inside_flatten_is_a_clear_error(inner):
    params, _ = _problem({k: jnp.float32 for k in SHAPES})
    tx = gradtx.flatten(inner())
    with pytest.raises(ValueError, match=r"cannot apply inside gradtx.flatten.*outside"):
        tx.update(params, tx.init(params), params)


def test_schedule_as_plain_callable(x64):
    params, grads = _problem({k: jnp.float64 for k in SHAPES}, seed=4)
    lr = lambda t: 0.1 / (1.0 + t.astype(jnp.float64))  # noqa: E731
    ours, state = _run(gradtx.flatten(gradtx.adam(lr)), params, grads)
    ref, _ = _run(gradtx.adam(lr), params, grads)
    _assert_same(ours, ref, rtol=1e-14)
    assert float(gradtx.get_hyperparams(state)["learning_rate"]) == pytest.approx(0.1 / 14)


def test_hyperparams_get_and_set_without_retrace(x64):
    params, grads = _problem({k: jnp.float64 for k in SHAPES}, seed=5)
    tx, ref_tx = gradtx.flatten(gradtx.adam(0.01)), gradtx.adam(0.01)
    state, ref_state = tx.init(params), ref_tx.init(params)
    traces = []

    def step(g, s, p):
        traces.append(1)
        return tx.update(g, s, p)

    step = jax.jit(step)
    for i, g in enumerate(grads[:4]):
        if i == 2:
            state = gradtx.set_hyperparams(state, learning_rate=0.5, b1=0.5)
            ref_state = gradtx.set_hyperparams(ref_state, learning_rate=0.5, b1=0.5)
        u, state = step(g, state, params)
        ref_u, ref_state = ref_tx.update(g, ref_state, params)
        _assert_same([u], [ref_u], rtol=1e-14)
    assert len(traces) == 1
    assert float(gradtx.get_hyperparams(state)["learning_rate"]) == 0.5


def test_inside_a_chain_gets_the_frozen_gradient(x64):
    params, grads = _problem({k: jnp.float64 for k in SHAPES}, seed=6)

    def make(wrap):
        return gradtx.chain(
            gradtx.add_momentum(0.9), wrap(gradtx.scale_by_rms(0.99)), gradtx.scale(-0.1)
        )

    ours, _ = _run(make(gradtx.flatten), params, grads)
    ref, _ = _run(make(lambda t: t), params, grads)
    _assert_same(ours, ref, rtol=1e-14)


@pytest.mark.parametrize(
    "make,who,name",
    [
        (lambda: gradtx.ranger(), "centralize", None),
        (lambda: gradtx.swats(per_leaf=True), "switch_to_sgd", None),
        (lambda: gradtx.adafactor(), "scale_by_factored_rms", None),
        (lambda: gradtx.muon(), "orthogonalize", None),
        (lambda: gradtx.muon(convention="optax"), "muon", None),
    ]
    + [pytest.param(lambda name=name: _build(name, None), "", name, id=name) for name in PER_LEAF],
)
def test_per_leaf_transform_refuses_to_run_flat(make, who, name):
    params, _ = _problem({k: jnp.float32 for k in SHAPES})
    tx = gradtx.flatten(make())
    update = tx.update if name is None else FIRST_CASE[name].update(tx)  # Sophia's obj_fn, ...
    # SAM's opaque mode needs the params tree, not leaf shapes: its fix is another
    with pytest.raises(ValueError, match=f"{who}.* (works per leaf|needs the params tree)"):
        update(params, tx.init(params), params)


def test_big_leaves_keep_their_own_buffer(x64):
    params, grads = _problem({k: jnp.float64 for k in SHAPES}, seed=7)
    ours, state = _run(gradtx.flatten(gradtx.adam(0.01), max_leaf_size=10), params, grads)
    ref, _ = _run(gradtx.adam(0.01), params, grads)
    _assert_same(ours, ref, rtol=1e-14)
    mu = state.inner_state.inner_state[0].mu  # leaves in key order: b, k, s, w
    assert jax.tree.map(jnp.shape, mu) == {
        "float64": (5,),  # b (4) and s (1)
        "float64_leaf1": (2, 3, 2),  # k, as it is
        "float64_leaf3": (3, 4),  # w
    }
    with pytest.raises(ValueError, match=r"gradtx.flatten\(max_leaf_size=-1\)"):
        gradtx.flatten(gradtx.adam(), max_leaf_size=-1)
    for wrong in (True, 2.0, "8"):
        with pytest.raises(TypeError, match="gradtx.flatten.*max_leaf_size must be int"):
            gradtx.flatten(gradtx.adam(), max_leaf_size=wrong)


def test_shapes_shared_by_four_leaves_keep_their_own_buffers(x64):
    # Four (3,)-leaves share a shape: XLA compiles their per-leaf kernels once,
    # so they stay apart; the three (2,)-leaves and the odd ones are concatenated.
    rng = np.random.default_rng(3)
    shapes = {f"r{i}": (3,) for i in range(4)} | {f"t{i}": (2,) for i in range(3)}
    shapes |= {"u": (5,)}
    params = {k: jnp.asarray(rng.normal(size=s)) for k, s in shapes.items()}
    grads = [{k: jnp.asarray(rng.normal(size=s)) for k, s in shapes.items()} for _ in range(3)]
    ours, state = _run(gradtx.flatten(gradtx.adam(0.01)), params, grads)
    ref, _ = _run(gradtx.adam(0.01), params, grads)
    _assert_same(ours, ref, rtol=1e-14)
    mu = state.inner_state.inner_state[0].mu  # leaves in key order: r0-r3, t0-t2, u
    assert jax.tree.map(jnp.shape, mu) == {
        "float64": (11,),  # t0, t1, t2 and u
        **{f"float64_leaf{i}": (3,) for i in range(4)},
    }


def test_state_is_one_buffer_per_dtype_and_tree_mismatch_is_an_error():
    params, _ = _problem({k: jnp.float32 for k in SHAPES})
    tx = gradtx.flatten(gradtx.sgd(0.1, momentum=0.9))
    state = tx.init(params)
    mu = state.inner_state.inner_state[0].mu
    assert jax.tree.map(jnp.shape, mu) == {"float32": (29,)}
    with pytest.raises(ValueError, match="does not match"):
        tx.update(params, state, {"w": params["w"]})
    wrong = {**params, "k": jnp.zeros((2, 2, 3), jnp.float32)}
    with pytest.raises(
        ValueError, match=r"params init saw: leaf \['k'\] is \(2, 2, 3\), init saw \(2, 3, 2\)$"
    ):
        tx.update(wrong, state)


def test_updates_with_dtypes_swapped_between_equal_buffers_are_refused():
    """Without params, swapped dtypes of equal-sized groups met each other's moments."""
    params = {"a": jnp.ones(3, jnp.float32), "b": jnp.ones(3, jnp.bfloat16)}
    tx = gradtx.flatten(gradtx.adam(0.1))
    state = tx.init(params)
    swapped = {"a": jnp.ones(3, jnp.bfloat16), "b": jnp.ones(3, jnp.float32)}
    for _ in range(2):  # (a refused call does not teach it the swapped layout)
        with pytest.raises(ValueError, match=r"in buffers \{'bfloat16': \[0\], 'float32': \[1\]\}"):
            tx.update(swapped, state)
    tx.update(jax.tree.map(jnp.ones_like, params), state)  # the params' dtypes are fine


def test_updates_under_other_keys_are_refused():
    """Leaves of the same shapes under other keys fill the same buffers: they were taken."""
    tx = gradtx.flatten(gradtx.adam(0.1))
    state = tx.init({"a": jnp.ones(3), "b": jnp.ones(2)})
    other = {"x": jnp.ones(3), "y": jnp.ones(2)}
    match = r"^gradtx\.flatten\.update: the updates' tree does not match the params init saw"
    with pytest.raises(ValueError, match=match):
        tx.update(other, state)
    with pytest.raises(ValueError, match=match):
        tx.update(other, state, other)
    tx.update({"a": jnp.ones(3), "b": jnp.ones(2)}, state)


def test_an_outer_factorys_state_probe_does_not_teach_flatten_other_keys():
    """A factory checks its state by tracing its init on the updates; the flatten inside
    must not record that tree as one init saw, or updates under other keys get through."""
    flat = gradtx.flatten(gradtx.sgd(0.1))
    outer = gradtx.hyperparameterized(
        lambda scale: optax.chain(flat, optax.scale(scale)), {"scale": 2.0}, "outer"
    )
    state = outer.init({"a": jnp.ones(3), "b": jnp.ones(2)})
    match = r"^gradtx\.flatten\.update: the updates' tree does not match the params init saw"
    for _ in range(2):
        with pytest.raises(ValueError, match=match):
            outer.update({"c": jnp.ones(3), "d": jnp.ones(2)}, state)
    outer.update({"a": jnp.ones(3), "b": jnp.ones(2)}, state)


def test_nnx_params_nodes_at_init_and_arrays_at_update_fit():
    """flax.nnx.Optimizer inits with nnx.Param nodes and updates with arrays in their place."""
    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    ref_model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(model, gradtx.flatten(gradtx.adam(0.1)), wrt=nnx.Param)
    ref_opt = nnx.Optimizer(ref_model, gradtx.adam(0.1), wrt=nnx.Param)
    for _ in range(2):
        for m, o in ((model, opt), (ref_model, ref_opt)):
            o.update(m, nnx.grad(lambda m: jnp.sum(m(jnp.ones((1, 2))) ** 2))(m))
    np.testing.assert_array_equal(model.kernel[...], ref_model.kernel[...])
    np.testing.assert_array_equal(model.bias[...], ref_model.bias[...])


def test_an_integer_leaf_is_named_by_its_path():
    """It was named by the flat buffer: 'gradtx.adam: params leaf ['int32']'."""
    tx = gradtx.flatten(gradtx.adam(0.1))
    with pytest.raises(
        TypeError, match=r"^gradtx\.flatten: params leaf \['step'\] has dtype int32"
    ):
        tx.init({"w": jnp.ones(3), "step": jnp.zeros((), jnp.int32)})
    state = tx.init({"w": jnp.ones(3), "n": jnp.ones(())})
    with pytest.raises(TypeError, match=r"^gradtx\.flatten: updates leaf \['n'\] has dtype int32"):
        tx.update({"w": jnp.ones(3), "n": jnp.zeros((), jnp.int32)}, state)


def test_tree_map_params_on_a_flat_state_says_why_not():
    # optax inits on a leafless placeholder: flatten would pack nothing, and optax's
    # mapping then failed with a pytree structure error.
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    opt = gradtx.flatten(gradtx.adam(0.1))
    state = opt.init(params)
    with pytest.raises(ValueError, match="flatten: the state is flat buffers.*tree_map_params"):
        optax.tree_utils.tree_map_params(opt, lambda p: "p", state, transform_non_params=str)

"""accumulate_gradients: k micro-steps make one step on the mean gradient."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from tests.conftest import xla_compiles
from tests.reference.harness import assert_trajectories_close
from tests.reference.harness import make_problem
from tests.registry import REGISTRY


def _jnp(tree):
    return {k: jnp.asarray(v, jnp.float64) for k, v in tree.items()}


def test_adam_over_4k_micro_batches_equals_adam_over_k_means(x64):
    k, steps = 4, 6
    params, micro = make_problem(0, steps=k * steps)
    opt = gradtx.accumulate_gradients(gradtx.adam(0.05, b1=0.8), every_k=k)
    ref_opt = gradtx.adam(0.05, b1=0.8)
    update, ref_update = jax.jit(opt.update), jax.jit(ref_opt.update)
    p, state = _jnp(params), opt.init(_jnp(params))
    q, ref_state = _jnp(params), ref_opt.init(_jnp(params))
    ours, ref = [], []
    for i, g in enumerate(micro):
        before = p
        u, state = update(_jnp(g), state, p)
        p = gradtx.apply_updates(p, u)
        if (i + 1) % k:
            for leaf in jax.tree.leaves(u):  # in between: zero updates, params unmoved
                np.testing.assert_array_equal(leaf, np.zeros_like(leaf))
            jax.tree.map(np.testing.assert_array_equal, p, before)
            continue
        mean = {n: np.mean([m[n] for m in micro[i + 1 - k : i + 1]], axis=0) for n in params}
        v, ref_state = ref_update(_jnp(mean), ref_state, q)
        q = gradtx.apply_updates(q, v)
        ours.append({n: np.asarray(x) for n, x in p.items()})
        ref.append({n: np.asarray(x) for n, x in q.items()})
    assert len(ours) == steps
    assert_trajectories_close(ours, ref, rtol=1e-12)
    # the inner adam took exactly `steps` steps
    assert int(state.inner_state.count) == steps
    assert int(state.micro_step) == 0


@pytest.mark.parametrize("case", [c for c in REGISTRY if not c.needs], ids=lambda c: c.id)
def test_every_optimizer_over_k_micro_steps_steps_on_their_mean(case, x64):
    # Cases that need a loss are left out: which loss a step on a mean gradient should
    # see (the last micro-batch's?) is the caller's choice, not accumulate's.
    k = 3
    params, micro = make_problem(1, steps=3 * k, shapes={"w": (3, 2), "b": (4,)})
    opt = gradtx.accumulate_gradients(case.make(case.lr), every_k=k)
    ref_opt = case.make(case.lr)
    update, ref_update = jax.jit(opt.update), jax.jit(ref_opt.update)
    p, state = _jnp(params), opt.init(_jnp(params))
    q, ref_state = _jnp(params), ref_opt.init(_jnp(params))
    for i, g in enumerate(micro):
        u, state = update(_jnp(g), state, p)
        p = gradtx.apply_updates(p, u)
        if (i + 1) % k == 0:
            mean = {n: np.mean([m[n] for m in micro[i + 1 - k : i + 1]], axis=0) for n in params}
            v, ref_state = ref_update(_jnp(mean), ref_state, q)
            q = gradtx.apply_updates(q, v)
            chex.assert_trees_all_close(p, q, rtol=1e-12, atol=1e-14)


def test_memory_is_one_extra_buffer():
    params = {"w": jnp.ones((3, 4)), "b": jnp.ones(5)}
    inner = gradtx.adam()
    state = gradtx.accumulate_gradients(inner, 4).init(params)

    def size(tree):
        return sum(np.size(x) for x in jax.tree.leaves(tree))

    extra = size(state) - size(inner.init(params))
    assert extra == size(params) + 1  # grad_sum, plus the int32 micro-step counter
    assert jax.tree.structure(state.grad_sum) == jax.tree.structure(params)
    assert state.micro_step.dtype == jnp.int32


def test_sum_buffer_dtype_option():
    params = {"w": jnp.ones(3, jnp.bfloat16)}
    opt = gradtx.accumulate_gradients(gradtx.sgd(0.1), 2, dtype=jnp.float32)
    state = opt.init(params)
    assert state.grad_sum["w"].dtype == jnp.float32
    u, state = opt.update({"w": jnp.ones(3, jnp.bfloat16)}, state, params)
    u, state = opt.update({"w": jnp.ones(3, jnp.bfloat16)}, state, params)
    assert u["w"].dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(u["w"], np.float32), -0.1, rtol=1e-2)


def test_one_trace_for_all_micro_steps():
    traces = []
    opt = gradtx.accumulate_gradients(gradtx.sgd(0.1, 0.9), 3)

    @jax.jit
    def step(params, state, g):
        traces.append(1)
        u, state = opt.update(g, state, params)
        return gradtx.apply_updates(params, u), state

    params = {"w": jnp.ones(2)}
    state = opt.init(params)
    for i in range(7):
        params, state = step(params, state, {"w": jnp.full(2, float(i))})
    assert len(traces) == 1
    # cycles: (0,1,2) -> mean 1 -> w = 1 - 0.1; (3,4,5) -> mean 4, heavy ball 0.9*1 + 4
    np.testing.assert_allclose(params["w"], 1 - 0.1 * 1 - 0.1 * (0.9 * 1 + 4), rtol=1e-6)
    assert int(state.micro_step) == 1


def test_eager_micro_steps_compile_nothing_after_the_first_cycle(x64):
    """torch's habit, eager steps: the conditional's branches were new functions at
    each update, so both were traced and compiled again at every micro-step (68 ms a
    step on a two-leaf tree).  An inner that takes the loss gets its value_fn through
    (a non-array extra); its steps equal the same run jitted."""

    def loss(p):
        return jnp.sum((p["w"] - 1.0) ** 2) + jnp.sum(p["b"] ** 4)

    def run(opt, steps, params, state=None, update=None):
        state = opt.init(params) if state is None else state
        for _ in range(steps):
            value, grads = jax.value_and_grad(loss)(params)
            u, state = (update or opt.update)(grads, state, params, value=value, value_fn=loss)
            params = gradtx.apply_updates(params, u)
        return params, state

    params = {"w": jnp.zeros((3, 2)), "b": jnp.ones(2)}
    for inner in (gradtx.adam(0.1), gradtx.lbfgs(0.5, max_iter=4)):
        opt = gradtx.accumulate_gradients(inner, every_k=2)
        p, state = run(opt, 2, params)
        with xla_compiles() as compiles:
            p, state = run(opt, 4, p, state)
        assert compiles == [], f"{len(compiles)} compiles in four eager micro-steps"
        jitted = jax.jit(opt.update, static_argnames="value_fn")
        want = run(opt, 6, params, update=jitted)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), (p, state), want)


def test_grads_keyword_is_refused_and_extras_pass():
    params = {"w": jnp.ones(2)}
    opt = gradtx.chain(gradtx.add_momentum(0.9), gradtx.accumulate_gradients(gradtx.sgd(), 2))
    with pytest.raises(ValueError, match="not the gradient"):
        opt.update(params, opt.init(params), params)
    ok = gradtx.chain(gradtx.clip(1.0), gradtx.accumulate_gradients(gradtx.sgd(), 2))
    ok.update(params, ok.init(params), params, value=1.0, unknown="x")


@pytest.mark.parametrize("k, exc", [(0, ValueError), (2.0, TypeError), (True, TypeError)])
def test_bad_every_k(k, exc):
    with pytest.raises(exc, match="every_k"):
        gradtx.accumulate_gradients(gradtx.sgd(), k)


def test_python_float_leaves_work_like_scalar_arrays():
    """init raised AttributeError: 'float' object has no attribute 'dtype'."""
    opt = gradtx.accumulate_gradients(gradtx.sgd(0.1), 2)
    state = opt.init({"a": 1.0})
    ref_state = opt.init({"a": jnp.asarray(1.0)})
    for g in (0.5, 1.5):
        u, state = opt.update({"a": g}, state)
        v, ref_state = opt.update({"a": jnp.asarray(g)}, ref_state)
    np.testing.assert_allclose(u["a"], -0.1)
    np.testing.assert_array_equal(u["a"], v["a"])


def test_bad_updates_are_named():
    """A float0 leaf and an update of another shape gave raw JAX errors."""
    opt = gradtx.accumulate_gradients(gradtx.sgd(0.1), 2)
    params = {"w": jnp.ones(2), "n": jnp.ones(2)}
    state = opt.init(params)
    float0 = {"w": jnp.ones(2), "n": np.zeros(2, jax.dtypes.float0)}
    with pytest.raises(
        TypeError, match=r"^gradtx\.accumulate_gradients: updates leaf \['n'\] has dtype float0"
    ):
        opt.update(float0, state, params)
    short = {"w": jnp.ones(2), "n": jnp.ones(1)}
    with pytest.raises(
        ValueError,
        match=r"^gradtx\.accumulate_gradients\.update: updates leaf \['n'\] is float32\[1\] but "
        r"the param is float32\[2\]",
    ):
        opt.update(short, state, params)
    with pytest.raises(  # without params, the state holds a sum of the params' shape
        ValueError, match=r"^gradtx\.accumulate_gradients\.update: the state does not match"
    ):
        jax.jit(opt.update)(short, state)


def test_what_an_optax_inner_takes_passes_through():
    """The wrapper leaves dtype rules to its inner optimizer: optax's Adam takes bfloat16
    gradients for float32 params, and optax.masked an int leaf it leaves alone."""
    params = {"w": jnp.ones(2), "n": jnp.asarray([3, 4])}
    inner = optax.masked(optax.sgd(0.1), {"w": True, "n": False})
    opt = gradtx.accumulate_gradients(inner, 2)
    state = opt.init(params)
    grads = {"w": jnp.ones(2), "n": jnp.zeros(2, jnp.int32)}
    _, state = opt.update(grads, state, params)
    u, _ = opt.update(grads, state, params)
    np.testing.assert_allclose(u["w"], -0.1)
    with jax.numpy_dtype_promotion("standard"):
        opt = gradtx.accumulate_gradients(optax.adam(0.1), 2, dtype=jnp.float32)
        w = {"w": jnp.ones(2)}
        state = opt.init(w)
        g = {"w": jnp.ones(2, jnp.bfloat16)}
        _, state = opt.update(g, state, w)
        u, _ = opt.update(g, state, w)
    assert u["w"].dtype == jnp.bfloat16


def test_integer_gradients_are_averaged_and_stepped_as_the_inner_does(x64):
    # They were cast back to int: the mean of 1 and 2 was 1, optax.sgd(0.1)'s step 0.
    params = {"w": jnp.zeros(2), "n": jnp.asarray(0, jnp.int32)}
    grads = [
        {"w": jnp.full(2, 1.0), "n": jnp.asarray(1, jnp.int32)},
        {"w": jnp.full(2, 2.0), "n": jnp.asarray(2, jnp.int32)},
    ]
    for inner, want in ((optax.scale(1.0), 1.5), (optax.sgd(0.1), -0.15)):
        opt = gradtx.accumulate_gradients(inner, 2)
        state = opt.init(params)
        with jax.numpy_dtype_promotion("standard"):  # optax's sgd mixes weak types
            u, state = jax.jit(opt.update)(grads[0], state, params)
            assert u["n"].dtype == jnp.float64 and float(u["n"]) == 0.0
            u, state = opt.update(grads[1], state, params)
        np.testing.assert_allclose(u["n"], want, rtol=1e-15)
        np.testing.assert_allclose(u["w"], [want, want], rtol=1e-15)


def test_a_state_for_other_params_is_not_broadcast():
    """A () sum met (4,) gradients and was broadcast: the step ran on the wrong sum."""
    opt = gradtx.accumulate_gradients(gradtx.sgd(0.1), 1)
    state = opt.init({"w": jnp.ones(())})
    with pytest.raises(ValueError, match=r"expected float32\[4\], got float32\[\]"):
        opt.update({"w": jnp.ones(4)}, state, {"w": jnp.ones(4)})


@pytest.mark.parametrize(
    "dtype, grads, want",
    [
        (jnp.bfloat16, [1.0, 0.003], -0.5015),  # the 0.003 was lost in a bfloat16 sum
        (jnp.float16, [6e4, 6e4], -6e4),  # a float16 sum overflowed, though never stored
    ],
)
def test_a_narrower_dtype_rounds_the_stored_sum_not_the_mean(dtype, grads, want):
    params = {"w": jnp.zeros(3, jnp.float32)}
    opt = gradtx.accumulate_gradients(gradtx.sgd(1.0), every_k=2, dtype=dtype)
    state = opt.init(params)
    _, state = opt.update({"w": jnp.full(3, grads[0])}, state, params)
    assert state.grad_sum["w"].dtype == dtype
    u, state = opt.update({"w": jnp.full(3, grads[1])}, state, params)
    np.testing.assert_allclose(u["w"], want, rtol=1e-6)
    assert state.grad_sum["w"].dtype == dtype


def test_integer_gradients_are_summed_in_float32_too():
    # 1000 + 3 in bfloat16 is 1004: the sum the step averages is formed in float32.
    opt = gradtx.accumulate_gradients(optax.sgd(1.0), every_k=2, dtype=jnp.bfloat16)
    p = jnp.zeros(1, jnp.int32)
    state = opt.init(p)
    _, state = opt.update(jnp.array([1000]), state, p)
    u, _ = opt.update(jnp.array([3]), state, p)
    np.testing.assert_allclose(u, [-501.5])


@pytest.mark.parametrize(
    "make",
    [lambda: gradtx.sgd(100.0, momentum=0.9), lambda: gradtx.adam(1e-3)],
    ids=["sgd", "adam"],
)
def test_the_mean_of_float16_gradients_is_stepped_in_float32_and_rounded_once(make):
    """The float32 mean was rounded to float16 before the inner optimizer: a step from
    gradients of 1e-7 came out a fifth short."""
    params = {"w": jnp.ones(4, jnp.float16)}
    micro = [
        jnp.asarray([1e-7, 2e-7, 3e-7, 1e-6], jnp.float16),
        jnp.asarray([2e-7, 1e-7, 1e-7, 2e-6], jnp.float16),
    ]
    opt = gradtx.accumulate_gradients(make(), 2)
    state = opt.init(params)
    step = jax.jit(opt.update)
    for g in micro * 2:
        u, state = step({"w": g}, state, params)
    chex.assert_trees_all_equal_dtypes(state, opt.init(params))
    ref = make()
    wide = {"w": jnp.ones(4, jnp.float32)}
    mean = {"w": (micro[0].astype(jnp.float32) + micro[1].astype(jnp.float32)) / 2}
    ref_state = ref.init(wide)
    for _ in range(2):
        want, ref_state = ref.update(mean, ref_state, wide)
    assert u["w"].dtype == jnp.float16
    np.testing.assert_array_equal(u["w"], want["w"].astype(jnp.float16))


@pytest.mark.parametrize(
    "make",
    [
        lambda spy: optax.chain(spy, optax.sgd(0.1, momentum=0.9)),
        lambda spy: gradtx.chain(spy, optax.sgd(0.1, momentum=0.9)),
        lambda spy: gradtx.flatten(gradtx.chain(spy, gradtx.adam(1e-3))),
    ],
    ids=["optax", "gradtx-chain", "flatten"],
)
def test_an_inner_no_gradtx_factory_made_gets_the_mean_in_the_gradients_dtype(make):
    """optax's keep 16-bit state (a float32 mean would promote it, an error under strict
    promotion), and flatten's buffers follow the gradients' dtypes."""
    seen = []
    spy = optax.GradientTransformation(
        lambda p: optax.EmptyState(), lambda u, s, p=None: (seen.append(u) or u, s)
    )
    params = {"w": jnp.ones(3, jnp.float16)}
    opt = gradtx.accumulate_gradients(make(spy), 2)
    state = opt.init(params)
    for _ in range(2):
        u, state = opt.update({"w": jnp.full(3, 0.5, jnp.float16)}, state, params)
    assert seen and all(x.dtype == jnp.float16 for x in jax.tree.leaves(seen))
    assert u["w"].dtype == jnp.float16 and bool(jnp.all(jnp.isfinite(u["w"])))


def test_gradients_of_another_float_width_than_the_params_are_refused():
    # bfloat16 gradients for float32 params came back as bfloat16 updates; every other
    # transform refuses them
    opt, p = gradtx.accumulate_gradients(gradtx.adam(0.1), 2), {"w": jnp.ones(3)}
    with pytest.raises(ValueError, match=r"updates leaf \['w'\] is bfloat16\[3\] but the param"):
        opt.update({"w": jnp.ones(3, jnp.bfloat16)}, opt.init(p), p)


def test_a_state_saved_with_a_larger_every_k_steps_on_the_mean_of_what_it_holds(x64):
    """Resumed with every_k lowered from 4 to 2 after 3 micro-steps, the next call
    steps on the mean of the 4 gradients held (it compared micro_step == every_k and
    never stepped again), then every 2 calls."""
    params = {"w": jnp.zeros(2)}
    grads = [{"w": jnp.array([1.0, 2.0]) * (i + 1)} for i in range(8)]
    four = gradtx.accumulate_gradients(gradtx.sgd(0.1), every_k=4)
    two = gradtx.accumulate_gradients(gradtx.sgd(0.1), every_k=2)
    state = four.init(params)
    for g in grads[:3]:
        _, state = four.update(g, state, params)
    update = jax.jit(two.update)
    outs = []
    for g in grads[3:]:
        u, state = update(g, state, params)
        outs.append(np.asarray(u["w"]))
    np.testing.assert_allclose(
        outs[0], -0.1 * np.mean([g["w"] for g in grads[:4]], axis=0), rtol=1e-12
    )
    np.testing.assert_array_equal(outs[1], 0.0)
    np.testing.assert_allclose(
        outs[2], -0.1 * np.mean([g["w"] for g in grads[4:6]], axis=0), rtol=1e-12
    )
    np.testing.assert_array_equal(outs[3], 0.0)
    np.testing.assert_allclose(
        outs[4], -0.1 * np.mean([g["w"] for g in grads[6:8]], axis=0), rtol=1e-12
    )


def test_an_eager_inner_loss_reading_new_data_each_step_is_traced_again(x64):
    """The branches kept for eager steps held value_fn (a keyword that is not an array)
    and were traced once: L-BFGS inside stepped towards the first step's target."""
    data = {}

    def loss(q):
        return jnp.sum((q - data["target"]) ** 2)

    opt = gradtx.accumulate_gradients(gradtx.lbfgs(1.0, max_iter=3), every_k=1)
    p = jnp.zeros(2)
    state = opt.init(p)
    for k in range(3):
        data["target"] = jnp.asarray([1.0, 2.0]) * (k + 1)
        value, grads = jax.value_and_grad(loss)(p)
        updates, state = opt.update(grads, state, p, value=value, value_fn=loss)
        p = p + updates
        chex.assert_trees_all_close(p, data["target"], rtol=1e-12)  # a quadratic's minimum


def test_an_eager_inner_reads_a_schedule_of_a_changing_global_each_step():
    """An eager micro-step runs the branch taken: branches kept from step to step held
    a plain-callable learning rate's value from their first trace (-0.1 thrice where
    the global went 0.1, 0.2, 0.3)."""
    rate = {"now": 0.1}
    opt = gradtx.accumulate_gradients(gradtx.sgd(lambda c: rate["now"]), every_k=1)
    params = {"w": jnp.ones(2)}
    state = opt.init(params)
    for now in (0.1, 0.2, 0.3):
        rate["now"] = now
        updates, state = opt.update(params, state, params)
        np.testing.assert_allclose(updates["w"], -now, rtol=1e-6)

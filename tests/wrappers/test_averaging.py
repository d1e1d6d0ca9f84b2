"""average_params against torch.optim.swa_utils.AveragedModel, float64, step by step."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from torch.optim.swa_utils import AveragedModel
from torch.optim.swa_utils import get_ema_avg_fn
from torch.optim.swa_utils import get_ema_multi_avg_fn
from torch.optim.swa_utils import get_swa_avg_fn
from torch.optim.swa_utils import get_swa_multi_avg_fn

import gradtx
from tests.reference.harness import MIXED_SHAPES
from tests.reference.harness import make_problem


@pytest.fixture
def torch64():
    """get_swa_multi_avg_fn's weight 1/(n + 1) divides torch's integer counter, so it is
    in torch's default dtype: float64 here, else rounded to float32 (~1e-8 relative)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


# How AveragedModel is told to average -> gradtx's method.  The default (no function)
# and both SWA functions are the running mean, both EMA functions the same EMA.
AVERAGING = {
    "default": ("swa", lambda decay: {}),
    "get_swa_avg_fn": ("swa", lambda decay: {"avg_fn": get_swa_avg_fn()}),
    "get_swa_multi_avg_fn": ("swa", lambda decay: {"multi_avg_fn": get_swa_multi_avg_fn()}),
    "get_ema_avg_fn": ("ema", lambda decay: {"avg_fn": get_ema_avg_fn(decay)}),
    "get_ema_multi_avg_fn": ("ema", lambda decay: {"multi_avg_fn": get_ema_multi_avg_fn(decay)}),
}


def _torch_run(averaging, decay, start, every, params, grads, lr):
    model = torch.nn.ParameterList(
        [torch.nn.Parameter(torch.tensor(v, dtype=torch.float64)) for v in params.values()]
    )
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    swa = AveragedModel(model, **AVERAGING[averaging][1](decay))
    out = []
    for t, g in enumerate(grads, start=1):
        for p, v in zip(model.parameters(), g.values()):
            p.grad = torch.tensor(v, dtype=torch.float64)
        opt.step()
        if t > start and (t - start - 1) % every == 0:
            swa.update_parameters(model)
        out.append([p.detach().numpy().copy() for p in swa.module.parameters()])
    return out


@pytest.mark.parametrize("averaging", sorted(AVERAGING))
@pytest.mark.parametrize(("start", "every"), [(0, 1), (4, 3)])
def test_average_params_matches_torch_averaged_model(x64, torch64, averaging, start, every):
    params, grads = make_problem(7, 20, MIXED_SHAPES)
    # torch's parameter order = the jax tree's leaf order (sorted dict keys)
    params = dict(sorted(params.items()))
    grads = [dict(sorted(g.items())) for g in grads]
    rng = np.random.default_rng(11)
    lr, decay = float(rng.uniform(0.01, 0.1)), float(rng.uniform(0.5, 0.99))
    ref = _torch_run(averaging, decay, start, every, params, grads, lr)
    method = AVERAGING[averaging][0]
    opt = gradtx.average_params(
        gradtx.sgd(lr, momentum=0.9), method=method, decay=decay, start=start, every=every
    )
    p = {k: jnp.asarray(v) for k, v in params.items()}
    state = opt.init(p)
    update = jax.jit(opt.update)
    for step, (g, want) in enumerate(zip(grads, ref), start=1):
        u, state = update({k: jnp.asarray(v) for k, v in g.items()}, state, p)
        p = gradtx.apply_updates(p, u)
        got = gradtx.averaged_params(state)
        if int(state.inner_state.n_averaged) == 0:
            continue  # nothing averaged yet: torch's module still holds the initial copy
        for (k, a), b in zip(got.items(), want):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14, err_msg=f"{k} step {step}")


def test_the_updates_pass_through_and_the_average_is_hyperparameterized():
    inner = gradtx.adam(1e-2)
    opt = gradtx.average_params(inner, decay=0.9)
    params = {"w": jnp.ones(3)}
    g = {"w": jnp.asarray([0.1, -0.2, 0.3])}
    u, state = opt.update(g, opt.init(params), params)
    v, _ = inner.update(g, inner.init(params), params)
    np.testing.assert_array_equal(u["w"], v["w"])
    state = gradtx.set_hyperparams(state, {"decay": 0.5, "every": 2})
    assert float(gradtx.get_hyperparams(state)["decay"]) == 0.5
    assert int(optax.tree_utils.tree_get(state, "count")) == 1  # adam's, the only counter
    assert "decay" not in gradtx.get_hyperparams(
        gradtx.average_params(gradtx.sgd(0.1), method="swa").init(params)
    )


def test_averaged_params_reads_asgd_and_refuses_ambiguity():
    params = {"w": jnp.ones(2)}
    opt = gradtx.asgd(0.1, t0=0.0)
    state = opt.init(params)
    _, state = opt.update({"w": jnp.ones(2)}, state, params)
    assert gradtx.averaged_params(state)["w"].shape == (2,)
    with pytest.raises(ValueError, match="holds 0 averages"):
        gradtx.averaged_params(gradtx.adam().init(params))
    both = gradtx.average_params(gradtx.asgd(0.1))
    with pytest.raises(ValueError, match="holds 2 averages"):
        gradtx.averaged_params(both.init(params))


def test_an_average_inside_flatten_is_refused_and_outside_it_is_a_params_tree():
    params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
    for inner in (gradtx.average_params(gradtx.sgd(0.1), method="swa"), gradtx.asgd(0.1)):
        opt = gradtx.flatten(inner)  # the average would be {"float32": a (9,) buffer}
        _, state = opt.update(params, opt.init(params), params)
        with pytest.raises(
            ValueError, match=r"averaged_params: the average is inside gradtx.flatten"
        ):
            gradtx.averaged_params(state)
    opt = gradtx.average_params(gradtx.flatten(gradtx.sgd(0.1)), method="swa")
    _, state = opt.update(params, opt.init(params), params)
    assert jax.tree.map(jnp.shape, gradtx.averaged_params(state)) == {"w": (2, 3), "b": (3,)}


@pytest.mark.parametrize(
    "hide",
    [
        lambda avg: gradtx.partition({"x": avg, "y": gradtx.sgd(0.1)}, {"w": "x", "b": "y"}),
        lambda avg: gradtx.masked(avg, {"w": True, "b": False}),
        lambda avg: optax.masked(avg, {"w": True, "b": False}),
    ],
    ids=["partition", "masked", "optax.masked"],
)
def test_an_average_of_some_leaves_is_refused_and_of_all_is_a_params_tree(hide):
    params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
    opt = hide(gradtx.average_params(gradtx.sgd(0.1), method="swa"))
    _, state = opt.update(params, opt.init(params), params)
    with pytest.raises(ValueError, match=r"averaged_params: the average is inside gradtx.masked"):
        gradtx.averaged_params(state)  # was {"w": ..., "b": MaskedNode()}, no error
    opt = gradtx.average_params(hide(gradtx.sgd(0.1)), method="swa")
    _, state = opt.update(params, opt.init(params), params)
    assert jax.tree.map(jnp.shape, gradtx.averaged_params(state)) == {"w": (2, 3), "b": (3,)}


def test_the_averages_of_every_group_of_a_partition_are_one_params_tree():
    params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3), "c": jnp.ones(2)}
    labels = {"w": "x", "b": "y", "c": "x"}
    grads = [jax.tree.map(lambda p, i=i: (i + 1.0) * p, params) for i in range(5)]

    def run(opt):
        p, state = params, opt.init(params)
        for g in grads:
            u, state = opt.update(g, state, p)
            p = gradtx.apply_updates(p, u)
        return state

    def avg(lr):
        return gradtx.average_params(gradtx.sgd(lr), method="swa", start=1)

    joined = gradtx.averaged_params(run(gradtx.partition({"x": avg(0.1), "y": avg(0.2)}, labels)))
    whole = gradtx.averaged_params(run(avg(0.1)))
    chex.assert_trees_all_equal(joined["w"], whole["w"])  # the same rule, leaf by leaf
    chex.assert_trees_all_equal(joined["c"], whole["c"])
    chex.assert_trees_all_close(joined["b"], 2 * whole["b"] - 1, rtol=1e-6)  # twice the rate
    half = run(gradtx.partition({"x": avg(0.1), "y": gradtx.sgd(0.2)}, labels))
    with pytest.raises(ValueError, match=r"no average of \['b'\]\); average outside it"):
        gradtx.averaged_params(half)
    nested = run(gradtx.average_params(gradtx.partition({"x": avg(0.1), "y": avg(0.2)}, labels)))
    with pytest.raises(ValueError, match=r"holds 3 averages, several of \['b'\], \['c'\], \['w'\]"):
        gradtx.averaged_params(nested)
    in_a_group = run(
        gradtx.partition({"x": gradtx.average_params(avg(0.1)), "y": avg(0.2)}, labels)
    )
    with pytest.raises(ValueError, match=r"holds 3 averages, several of \['c'\], \['w'\];"):
        gradtx.averaged_params(in_a_group)  # was one of the two averages of w, silently
    # a group that holds no leaf (a label no param has) averages nothing, and is no obstacle
    empty = run(gradtx.partition({"x": avg(0.1), "y": avg(0.2)}, dict.fromkeys(params, "x")))
    chex.assert_trees_all_equal(gradtx.averaged_params(empty), whole)


def test_a_bfloat16_ema_keeps_moving():
    """Kept in bfloat16, avg += 0.001 (p - avg) is below half an ulp and the average
    stood still; it is kept (and returned) in float32 for 16-bit params."""

    def average_after(dtype, steps=500):
        opt = gradtx.average_params(gradtx.sgd(1.0), method="ema", decay=0.999)
        params = jnp.ones(3, dtype)
        state = opt.init(params)
        for i in range(steps):  # the first call copies 1; the params jump to 2, then stay
            grads = jnp.full(3, -1.0 if i == 1 else 0.0, dtype)
            updates, state = opt.update(grads, state, params)
            params = gradtx.apply_updates(params, updates)
        return gradtx.averaged_params(state)

    ours = average_after(jnp.bfloat16)
    assert ours.dtype == jnp.float32
    np.testing.assert_allclose(ours, average_after(jnp.float32), rtol=1e-3)
    np.testing.assert_allclose(ours, 2 - 0.999**499, rtol=1e-3)


def test_a_float32_ema_under_x64_takes_its_weight_from_the_float64_decay(x64):
    """1 - decay is formed in float64 and rounded once (torch forms it in double):
    1 - float32(0.9999999) is 1.19e-7."""
    opt = gradtx.average_params(gradtx.sgd(1.0), method="ema", decay=0.9999999)
    params = jnp.zeros(3, jnp.float32)
    state = opt.init(params)
    for grads in (jnp.zeros(3, jnp.float32), jnp.full(3, -1.0, jnp.float32)):
        updates, state = opt.update(grads, state, params)  # copies 0, then moves toward 1
        params = gradtx.apply_updates(params, updates)
    np.testing.assert_array_equal(gradtx.averaged_params(state), np.float32(1e-7))


def test_n_averaged_saturates_at_the_int32_maximum():
    """It wrapped to -2**31, and SWA's weight 1/(n + 1) became inf two updates later."""
    opt = gradtx.average_params(gradtx.sgd(0.1), method="swa")
    params = jnp.ones(2)
    state = opt.init(params)
    top = jnp.iinfo(jnp.int32).max
    resumed = state.inner_state._replace(
        step=jnp.asarray(top - 5, jnp.int32), n_averaged=jnp.asarray(top, jnp.int32)
    )
    state = state._replace(inner_state=resumed)
    for _ in range(2):
        _, state = opt.update(jnp.ones(2), state, params)
        assert int(state.inner_state.n_averaged) == top
    # the average (still 1) moves by 1/2**31 of the step towards 0.9: still 1 in float32
    np.testing.assert_array_equal(gradtx.averaged_params(state), np.ones(2, np.float32))


def _fixed_float32_updates(values):
    """An inner optimizer whose updates are float32 whatever the params' dtype (as
    optax.adam(mu_dtype=jnp.float32) gives for bfloat16 params)."""
    return gradtx.transform(lambda p: gradtx.EmptyState(), lambda u, s, p=None: (values, s))


@pytest.mark.parametrize("jit", [False, True])
def test_the_average_is_of_the_params_apply_updates_gives(jit):
    """bfloat16 params, an inner whose updates are float32: average_params returns them
    rounded once to bfloat16 (as every gradtx call given 16-bit params does), and the
    average is of params + that returned update (it was of params + the float32 one:
    1 + 0.0039138 gave 1.0078125 there, 1.0 in the params the user holds)."""
    params = jnp.asarray(np.random.RandomState(0).uniform(0.5, 2.0, 256), jnp.bfloat16)
    updates = jnp.asarray(np.random.RandomState(1).uniform(-0.02, 0.02, 256), jnp.float32)
    updates = updates.at[0].set(0.0039138175)
    params = params.at[0].set(1.0)
    opt = gradtx.average_params(_fixed_float32_updates(updates), decay=0.5)
    update = jax.jit(opt.update) if jit else opt.update
    u, state = update(jnp.zeros(256, jnp.bfloat16), opt.init(params), params)
    assert u.dtype == jnp.bfloat16
    held = gradtx.apply_updates(params, u)  # the first average is a copy of them
    assert float(held[0]) == 1.0
    np.testing.assert_array_equal(gradtx.averaged_params(state), held.astype(jnp.float32))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_jit_equals_eager_for_16_bit_params(dtype):
    """XLA dropped the rounding of params + updates to bfloat16 under jit (excess
    precision), so the jitted average was of params apply_updates never gave."""

    def run(jit):
        opt = gradtx.average_params(gradtx.adam(0.1), decay=0.5)
        params = jnp.asarray([0.5, -1.0, 1.5, 0.3, 1e-5, 3e-7], dtype)
        state = opt.init(params)
        update = jax.jit(opt.update) if jit else opt.update
        for k in range(6):
            grads = (jnp.cos(jnp.arange(6.0) + k) * 0.3).astype(dtype)
            updates, state = update(grads, state, params)
            params = gradtx.apply_updates(params, updates)
        return params, gradtx.averaged_params(state)

    (p_eager, avg_eager), (p_jit, avg_jit) = run(False), run(True)
    np.testing.assert_array_equal(p_jit, p_eager)
    np.testing.assert_array_equal(avg_jit, avg_eager)


@pytest.mark.parametrize("name", ["start", "every"])
def test_a_step_count_float32_would_round_is_refused(name):
    """Stored in float32, start=2**24 + 1 became 2**24: the averaging began a step early."""
    gradtx.average_params(gradtx.sgd(0.1), **{name: 2**24})  # exact in float32
    with pytest.raises(ValueError, match=rf"^gradtx\.average_params\({name}=16777217\): {name} is"):
        gradtx.average_params(gradtx.sgd(0.1), **{name: 2**24 + 1})


def test_a_step_count_above_2_to_the_24_is_exact_under_x64(x64):
    opt = gradtx.average_params(gradtx.sgd(0.1), method="swa", start=2**24 + 1)
    params = jnp.ones(1)
    state = opt.init(params)
    resumed = state.inner_state._replace(step=jnp.asarray(2**24, jnp.int32))
    _, state = opt.update(jnp.ones(1), state._replace(inner_state=resumed), params)
    assert int(state.inner_state.n_averaged) == 0  # update 2**24 + 1 is not after start
    _, state = opt.update(jnp.ones(1), state, params)
    assert int(state.inner_state.n_averaged) == 1


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_sixteen_bit_averages_are_of_the_params_the_user_holds(dtype, jit):
    """Inside the call the inner optimizer's update is float32 (rounded once on the way
    out); the average was formed from params + that unrounded update, one ulp off the
    params apply_updates gives in ~2-7% of the entries."""
    rng = np.random.default_rng(0)
    params = jnp.asarray(rng.normal(size=500), dtype)
    opts = {
        "swa": gradtx.average_params(gradtx.adam(0.05), method="swa"),
        "asgd": gradtx.asgd(0.05),  # t0 = 1e6: ax is a copy of the params
    }
    for name, opt in opts.items():
        update = jax.jit(opt.update) if jit else opt.update
        p, state, held = params, opt.init(params), []
        for _ in range(4):
            g = jnp.asarray(rng.normal(size=500), dtype)
            u, state = update(g, state, p)
            p = gradtx.apply_updates(p, u)
            held.append(np.asarray(p, np.float64))
        if name == "swa":
            want = np.mean(held, axis=0)
            got = np.asarray(gradtx.averaged_params(state), np.float64)
            # the running mean is kept in float32: within its rounding, not a 16-bit ulp
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
        else:
            got = np.asarray(gradtx.averaged_params(state), np.float64)
            np.testing.assert_array_equal(got, held[-1])


def test_setting_decay_on_a_running_mean_says_swa_has_none():
    """The refusal named only a JAX array or None given at construction, neither given;
    the reasons a configuration keeps no decay now come first."""
    state = gradtx.average_params(gradtx.sgd(0.1), method="swa").init({"w": jnp.zeros(2)})
    with pytest.raises(KeyError, match=r"does not keep it: method='swa' \(a running mean\) keeps"):
        gradtx.set_hyperparams(state, decay=0.9)


def test_an_ema_without_a_decay_is_refused_at_construction():
    with pytest.raises(TypeError, match=r"average_params\(decay=None\): method='ema' needs"):
        gradtx.average_params(gradtx.sgd(0.1), decay=None)
    gradtx.average_params(gradtx.sgd(0.1), method="swa", decay=None)  # swa keeps no decay


def test_what_the_readers_return_outlives_the_next_donated_step():
    """get_hyperparams and averaged_params returned the state's own arrays: the next
    step that donates the state deleted them ("Array has been deleted")."""
    opt = gradtx.average_params(gradtx.adam(gradtx.schedules.cosine_decay(0.01, 10)), decay=0.9)
    params = {"w": jnp.ones(3)}
    step = jax.jit(lambda p, s: opt.update(p, s, p), donate_argnums=(1,))
    _, state = step(params, opt.init(params))
    hyperparams, average = gradtx.get_hyperparams(state), gradtx.averaged_params(state)
    step(params, state)
    assert all(not x.is_deleted() for x in jax.tree.leaves((hyperparams, average)))
    assert float(hyperparams["learning_rate"]) == pytest.approx(
        float(gradtx.schedules.cosine_decay(0.01, 10)(1))
    )

"""Schedules as hyperparameters: scheduled momentum / b1 / weight decay against
torch, numbers in state (get/set without retracing, vmap sweeps), nesting,
plain callables and eager argument checks."""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import gradtx
from gradtx import schedules as S
from tests.conftest import xla_compiles
from tests.reference.harness import assert_trajectories_close
from tests.reference.harness import make_problem
from tests.reference.harness import run_gradtx
from tests.reference.harness import run_torch

L = torch.optim.lr_scheduler
T = 30


def _with_scheduler(make_opt, make_sched):
    """``run_torch`` arguments stepping a torch scheduler after each step."""
    holder = {}

    def make(ps):
        opt = make_opt(ps)
        holder["sched"] = make_sched(opt)
        return opt

    return make, lambda opt, i: holder["sched"].step()


@pytest.mark.parametrize("anneal", ["cos", "linear"])
@pytest.mark.parametrize("three_phase", [False, True])
def test_sgd_one_cycle_momentum_matches_torch(x64, anneal, three_phase):
    params, grads = make_problem(0, steps=T)
    kw = dict(pct_start=0.3, anneal=anneal, three_phase=three_phase)
    ours = gradtx.sgd(S.one_cycle(T, 0.1, **kw), momentum=S.one_cycle_momentum(T, 0.8, 0.95, **kw))
    make, after = _with_scheduler(
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
        lambda o: L.OneCycleLR(
            o,
            0.1,
            total_steps=T,
            pct_start=0.3,
            anneal_strategy=anneal,
            three_phase=three_phase,
            base_momentum=0.8,
            max_momentum=0.95,
        ),
    )
    assert_trajectories_close(
        run_gradtx(ours, params, grads), run_torch(make, params, grads, after)
    )


def test_adam_one_cycle_b1_matches_torch(x64):
    params, grads = make_problem(1, steps=T)
    ours = gradtx.adam(S.one_cycle(T, 0.05), b1=S.one_cycle_momentum(T), b2=0.99)
    make, after = _with_scheduler(
        lambda ps: torch.optim.Adam(ps, lr=0.05, betas=(0.9, 0.99)),
        lambda o: L.OneCycleLR(o, 0.05, total_steps=T),
    )
    assert_trajectories_close(
        run_gradtx(ours, params, grads), run_torch(make, params, grads, after)
    )


def test_sgd_cyclic_momentum_matches_torch(x64):
    params, grads = make_problem(2, steps=T)
    # torch cycles momentum from max down to base while the lr rises: swap the ends.
    ours = gradtx.sgd(
        S.cyclical(0.01, 0.1, 4, mode="triangular2"),
        momentum=S.cyclical(0.9, 0.8, 4, mode="triangular2"),
    )
    make, after = _with_scheduler(
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.5),
        lambda o: L.CyclicLR(
            o, 0.01, 0.1, 4, mode="triangular2", base_momentum=0.8, max_momentum=0.9
        ),
    )
    assert_trajectories_close(
        run_gradtx(ours, params, grads), run_torch(make, params, grads, after)
    )


def test_scheduled_weight_decay_matches_torch(x64):
    params, grads = make_problem(3, steps=T)
    wd = S.linear(0.1, 0.001, 20)
    ours = gradtx.sgd(0.05, momentum=0.9, weight_decay=wd)

    def make(ps):
        return torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=float(wd(0)))

    def after(opt, i):
        opt.param_groups[0]["weight_decay"] = float(wd(i + 1))

    with jax.enable_x64(True):
        assert_trajectories_close(
            run_gradtx(ours, params, grads), run_torch(make, params, grads, after)
        )


def _step_fn(opt, counter):
    @jax.jit
    def step(params, state, grads):
        counter.append(1)  # runs once per trace
        updates, state = opt.update(grads, state, params)
        return gradtx.apply_updates(params, updates), state

    return step


def test_get_hyperparams_reports_current_value(x64):
    schedule = S.warmup_cosine_decay(0.0, 0.2, 5, 20)
    opt = gradtx.sgd(schedule, momentum=S.linear(0.5, 0.9, 10))
    params = {"w": jnp.ones(3, jnp.float64)}
    state, traces = opt.init(params), []
    step = _step_fn(opt, traces)
    for k in range(12):
        hp = gradtx.get_hyperparams(state)
        np.testing.assert_allclose(hp["learning_rate"], schedule(k), rtol=1e-12)
        np.testing.assert_allclose(hp["momentum"], 0.5 + 0.4 * min(k, 10) / 10, rtol=1e-12)
        assert float(hp["learning_rate.peak_value"]) == 0.2
        params, state = step(params, state, {"w": jnp.ones(3, jnp.float64)})
    assert len(traces) == 1


def test_set_hyperparams_changes_schedule_without_retrace(x64):
    opt = gradtx.sgd(S.one_cycle(50, 0.1), momentum=0.9)
    params = {"w": jnp.ones(3, jnp.float64)}
    grads = {"w": jnp.ones(3, jnp.float64)}
    state, traces = opt.init(params), []
    step = _step_fn(opt, traces)
    params, state = step(params, state, grads)
    state = gradtx.set_hyperparams(
        state, {"learning_rate.peak_value": 0.3, "learning_rate.pct_start": 0.5}
    )
    np.testing.assert_allclose(
        gradtx.get_hyperparams(state)["learning_rate"], S.one_cycle(50, 0.3, pct_start=0.5)(1)
    )
    params, state = step(params, state, grads)
    # A whole schedule of the same form replaces the stored one, still no retrace.
    state = gradtx.set_hyperparams(state, learning_rate=S.one_cycle(80, 1.0, anneal="linear"))
    np.testing.assert_allclose(
        gradtx.get_hyperparams(state)["learning_rate"],
        S.one_cycle(80, 1.0, anneal="linear")(2),
    )
    params, state = step(params, state, grads)
    # Another optimizer of the same structure runs through the same compiled step.
    other = gradtx.sgd(S.one_cycle(10, 0.5, three_phase=True), momentum=0.5).init(params)
    step(params, other, grads)
    assert len(traces) == 1


def test_nested_join_in_state(x64):
    warm_sgdr = S.join([S.linear(0.0, 0.1, 5), S.sgdr(0.1, 10, period_mult=2)], [5])
    opt = gradtx.sgd(warm_sgdr)
    params = {"w": jnp.ones(2, jnp.float64)}
    state, traces = opt.init(params), []
    step = _step_fn(opt, traces)
    for _ in range(7):
        params, state = step(params, state, {"w": jnp.ones(2, jnp.float64)})
    hp = gradtx.get_hyperparams(state)
    np.testing.assert_allclose(hp["learning_rate"], warm_sgdr(7), rtol=1e-12)
    assert float(hp["learning_rate.schedules.1.first_period"]) == 10
    state = gradtx.set_hyperparams(state, {"learning_rate.schedules.1.peak_value": 0.4})
    expected = S.join([S.linear(0.0, 0.1, 5), S.sgdr(0.4, 10, period_mult=2)], [5])(7)
    np.testing.assert_allclose(gradtx.get_hyperparams(state)["learning_rate"], expected)
    step(params, state, {"w": jnp.ones(2, jnp.float64)})
    assert len(traces) == 1


def test_a_join_of_other_members_is_refused_by_name():
    """It raised jax's pytree structure error, naming neither the call nor the name."""
    state = gradtx.sgd(S.join([S.linear(0.0, 0.1, 3), S.constant(0.1)], [3])).init(jnp.ones(2))
    longer = S.join([S.linear(0.0, 0.1, 3), S.constant(0.1), S.constant(0.01)], [3, 6])
    with pytest.raises(ValueError, match=r"set_hyperparams\(learning_rate=...\): learning_rate "
                       r"follows a schedule \(Join\) of another form"):  # fmt: skip
        gradtx.set_hyperparams(state, learning_rate=longer)


def test_vmap_over_peak_equals_separate_runs(x64):
    peaks = jnp.asarray([0.01, 0.05, 0.2], jnp.float64)
    params, grads = make_problem(4, steps=12)
    params = jax.tree.map(jnp.asarray, params)
    grads = jax.tree.map(lambda *g: jnp.stack(g), *grads)

    def run(opt, state):
        def body(carry, g):
            p, s = carry
            u, s = opt.update(g, s, p)
            return (gradtx.apply_updates(p, u), s), None

        return jax.lax.scan(body, (params, state), grads)[0][0]

    opt = gradtx.adam(S.warmup_cosine_decay(0.0, 1.0, 3, 12), b1=S.one_cycle_momentum(12))
    base = opt.init(params)
    states = jax.vmap(lambda v: gradtx.set_hyperparams(base, {"learning_rate.peak_value": v}))(
        peaks
    )
    swept = jax.jit(jax.vmap(lambda s: run(opt, s)))(states)
    for i, peak in enumerate(peaks.tolist()):
        alone = gradtx.adam(S.warmup_cosine_decay(0.0, peak, 3, 12), b1=S.one_cycle_momentum(12))
        ref = jax.jit(lambda s, alone=alone: run(alone, s))(alone.init(params))
        for k in ref:
            np.testing.assert_allclose(swept[k][i], ref[k], rtol=1e-12, atol=1e-15)
    assert not np.allclose(swept["w"][0], swept["w"][2])


def test_plain_callable_still_accepted(x64):
    opt = gradtx.sgd(lambda k: 0.1 / (k.astype(jnp.float64) + 1), momentum=0.9)
    params = {"w": jnp.ones(2, jnp.float64)}
    state = opt.init(params)
    for _ in range(3):
        _, state = opt.update({"w": jnp.ones(2, jnp.float64)}, state, params)
    np.testing.assert_allclose(gradtx.get_hyperparams(state)["learning_rate"], 0.1 / 4)


def test_state_with_schedules_round_trips_through_flax_serialization(x64):
    """Schedules in state (nested ones too) are saved and restored by flax.serialization,
    and training resumed from the restored state is bitwise the uninterrupted run."""
    from flax import serialization

    def make():
        lr = S.join([S.linear(0.0, 0.1, 5), S.sgdr(0.1, 10, period_mult=2)], [5])
        return gradtx.adam(lr, b1=S.one_cycle_momentum(20))

    opt = make()
    params = {"w": jnp.ones(3, jnp.float64)}
    grads = {"w": jnp.asarray([0.1, -0.2, 0.3], jnp.float64)}
    state = gradtx.set_hyperparams(opt.init(params), {"learning_rate.schedules.1.peak_value": 0.4})
    for _ in range(3):
        _, state = opt.update(grads, state, params)
    restored = serialization.from_bytes(make().init(params), serialization.to_bytes(state))
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    before, after = gradtx.get_hyperparams(state), gradtx.get_hyperparams(restored)
    assert float(after["learning_rate.schedules.1.peak_value"]) == 0.4
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])
    u1, _ = opt.update(grads, state, params)
    u2, _ = opt.update(grads, jax.tree.map(jnp.asarray, restored), params)
    np.testing.assert_array_equal(u1["w"], u2["w"])


def test_new_schedules_in_state(x64):
    """product, swa_lr, constant_warmup and cosine_decay(past_end="cycle") live in
    state: their fields are reported, set without retracing, and swept by vmap."""
    lr = S.product([S.constant_warmup(0.1, 0.5, 3), S.exponential_decay(1.0, 1, 0.9)])
    opt = gradtx.sgd(lr, momentum=S.cosine_decay(0.9, 4, alpha=0.5, past_end="cycle"))
    params = {"w": jnp.ones(2, jnp.float64)}
    grads = {"w": jnp.ones(2, jnp.float64)}
    state, traces = opt.init(params), []
    step = _step_fn(opt, traces)
    for _ in range(5):
        params, state = step(params, state, grads)
    hp = gradtx.get_hyperparams(state)
    np.testing.assert_allclose(hp["learning_rate"], 0.1 * 0.9**5, rtol=1e-12)
    np.testing.assert_allclose(
        hp["momentum"], 0.9 * (0.5 * 0.5 * (1 + np.cos(np.pi * 5 / 4)) + 0.5)
    )
    assert float(hp["learning_rate.schedules.0.warmup_steps"]) == 3
    assert float(hp["momentum.cycle"]) == 1
    state = gradtx.set_hyperparams(
        state, {"learning_rate.schedules.1.decay_rate": 0.5, "momentum.cycle": 0}
    )
    hp = gradtx.get_hyperparams(state)
    np.testing.assert_allclose(hp["learning_rate"], 0.1 * 0.5**5, rtol=1e-12)
    np.testing.assert_allclose(hp["momentum"], 0.45, rtol=1e-12)  # held at alpha·init
    params, state = step(params, state, grads)
    # a whole SWA schedule of the same form, swept over swa values by vmap
    opt = gradtx.sgd(S.swa_lr(0.2, 0.05, 4))
    base = opt.init(params)
    states = jax.vmap(lambda v: gradtx.set_hyperparams(base, {"learning_rate.swa_value": v}))(
        jnp.asarray([0.01, 0.05], jnp.float64)
    )

    def run(s):
        for _ in range(6):
            _, s = opt.update(grads, s, params)
        return gradtx.get_hyperparams(s)["learning_rate"]

    np.testing.assert_allclose(jax.jit(jax.vmap(run))(states), [0.01, 0.05], rtol=1e-12)
    assert len(traces) == 1


@pytest.mark.parametrize(
    "make, name, reason, not_said",
    [
        (  # bound, not stored: the message named only a Python zero, which was not given
            lambda: gradtx.adamw(1e-3, weight_decay=jnp.asarray(0.1)),
            "weight_decay",
            r"gradtx.adamw\(\) takes weight_decay but this state does not keep it: a JAX array",
            "read by init only",
        ),
        (  # init-only: the message advised a constant schedule, which cocob(eps=) refuses
            lambda: gradtx.cocob(1.0, eps=1e-3),
            "eps",
            r"gradtx.cocob\(\) takes eps .*: a number read by init only is not kept",
            "schedules.constant",
        ),
        (  # init-only, and the message gave no reason at all
            lambda: gradtx.adagrad(0.1, initial_accumulator_value=0.5),
            "initial_accumulator_value",
            r"gradtx.adagrad\(\) takes initial_accumulator_value .*read by init only",
            "Python zero",
        ),
        (  # a number whose stage no zero leaves out
            lambda: gradtx.adam(b2=jnp.asarray(0.99)),
            "b2",
            r"gradtx.adam\(\) takes b2 but this state does not keep it: a JAX array",
            "Python zero",
        ),
    ],
    ids=["array", "init-only", "init-only-no-reason", "array-not-optional"],
)
def test_a_number_not_in_the_state_is_explained_by_its_own_reason(make, name, reason, not_said):
    state = make().init({"w": jnp.ones(2)})
    with pytest.raises(KeyError, match=reason) as info:
        gradtx.set_hyperparams(state, {name: 0.5})
    assert not_said not in str(info.value)


@pytest.mark.parametrize(
    ("make", "key"),
    [
        (lambda: gradtx.adam(1e-3), "maximize"),  # torch edits param_groups[g]["maximize"]
        (lambda: gradtx.rmsprop(1e-3), "centered"),
        (lambda: gradtx.partition({"a": gradtx.sgd(0.1), "b": gradtx.adam()}, ("a", "b")),
         "a/nesterov"),
    ],
    ids=["flag", "flag-rmsprop", "flag-in-a-group"],
)  # fmt: skip
def test_a_construction_option_is_named_as_one(make, key):
    """A flag was refused as an unknown hyperparameter with no reason."""
    state = make().init((jnp.ones(2), jnp.ones(2)))
    name = key.rsplit("/", 1)[-1]
    with pytest.raises(KeyError, match=rf"takes {name} as a construction option, not a number "
                       rf"kept in the state: .* build and init an optimizer with the new {name}"):  # fmt: skip
        gradtx.set_hyperparams(state, {key: True})


@pytest.mark.parametrize(
    ("make", "key", "says"),
    [
        (gradtx.muon, "beta", r"keeps as 'momentum': set that\""),
        (gradtx.adafactor, "decay_rate", r"keeps as 'beta2_decay': set that in its own units"),
    ],
)
def test_an_optax_name_points_at_the_number_the_state_keeps(make, key, says):
    """optax's names (aliases) were called construction options, which they are not."""
    state = make().init({"w": jnp.ones((3, 3))})
    with pytest.raises(KeyError, match=rf"{key} is optax's name for a number this state {says}"):
        gradtx.set_hyperparams(state, {key: 0.5})


@pytest.mark.parametrize(
    ("make", "key", "says"),
    [
        (lambda: gradtx.adafactor(clipping_threshold=None), "clipping_threshold",
         r"for d\. gradtx.adafactor\(\) takes d but this state does not keep it: .*None given"),
        (lambda: gradtx.muon(beta=jnp.asarray(0.9)), "beta",
         r"for momentum\. gradtx.muon\(\) takes momentum but this state does not keep it: a JAX "
         r"array given for it at construction is bound"),
    ],
    ids=["none", "array"],
)  # fmt: skip
def test_an_optax_name_whose_number_is_not_kept_gives_that_numbers_reasons(make, key, says):
    """It said "keeps as 'd': set that", and setting d then failed."""
    state = make().init({"w": jnp.ones((3, 3))})
    with pytest.raises(KeyError, match=rf"{key} is optax's name {says}"):
        gradtx.set_hyperparams(state, {key: 0.5})


@pytest.mark.parametrize(
    "make, key",
    [
        (lambda: gradtx.adam(1e-3), "momentum"),  # a typo: adam takes no momentum
        (lambda: gradtx.adam(gradtx.schedules.constant(1e-3)), "learning_rate.foo"),  # a field
        (lambda: optax.inject_hyperparams(optax.sgd)(0.1), "eps"),  # optax's state
    ],
    ids=["not-taken", "field", "optax-inject"],
)
def test_no_reason_is_given_where_none_applies(make, key):
    """The reasons were added for every name some factory takes, here all false."""
    with pytest.raises(KeyError) as info:
        gradtx.set_hyperparams(make().init({"w": jnp.ones(2)}), {key: 0.5})
    assert "does not keep it" not in str(info.value)
    assert "may lack" not in str(info.value)


def test_the_reason_names_the_group_the_key_addresses():
    opt = gradtx.partition(
        {"enc": gradtx.adamw(1e-2, weight_decay=0.1), "dec": gradtx.sgd(0.1)},
        {"w": "enc", "b": "dec"},
    )
    state = opt.init({"w": jnp.ones(2), "b": jnp.ones(2)})
    with pytest.raises(KeyError, match=r"gradtx.sgd\(\) takes weight_decay but 'dec' does not"):
        gradtx.set_hyperparams(state, {"dec/weight_decay": 0.5})


def test_the_reason_is_found_for_a_key_written_as_the_raw_state_path():
    # Nested wrappers: get_hyperparams names the outer averages' numbers by their raw
    # paths ('inner_state/decay'), so a key may be written that way too.
    opt = gradtx.average_params(gradtx.average_params(gradtx.sgd(0.1)))
    state = opt.init(jnp.ones(2))
    with pytest.raises(KeyError, match=r"gradtx.sgd\(\) takes momentum but 'inner_state/inner"):
        gradtx.set_hyperparams(state, {"inner_state/inner_state/momentum": 0.9})


def test_a_stage_left_out_by_a_python_zero_is_explained_and_a_constant_keeps_it(x64):
    """torch lets a group built with weight_decay=0 get a decay later; in gradtx a Python
    zero leaves the stage out, the KeyError says so, and the way it names (a constant
    schedule, its ``.value`` set later) equals torch changing the group's weight_decay."""
    labels = ["enc", "head"]
    left_out = gradtx.partition(
        {"enc": gradtx.adamw(1e-2, weight_decay=0.0), "head": gradtx.adamw(3e-2, weight_decay=0.1)},
        labels,
    )
    params = [jnp.ones(3), jnp.ones(2)]
    with pytest.raises(KeyError, match=r"Python zero given at construction leaves its stage out.*'enc/weight_decay.value'"):  # fmt: skip
        gradtx.set_hyperparams(left_out.init(params), {"enc/weight_decay": 0.05})
    kept = gradtx.partition(
        {"enc": gradtx.adamw(1e-2, weight_decay=gradtx.schedules.constant(0.0)),
         "head": gradtx.adamw(3e-2, weight_decay=0.1)},
        labels,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    init = [rng.normal(size=3), rng.normal(size=2)]
    grads = [[rng.normal(size=3), rng.normal(size=2)] for _ in range(8)]
    tensors = [torch.tensor(x, requires_grad=True) for x in init]
    opt = torch.optim.AdamW(
        [{"params": tensors[:1], "lr": 1e-2, "weight_decay": 0.0},
         {"params": tensors[1:], "lr": 3e-2, "weight_decay": 0.1}]
    )  # fmt: skip
    params = [jnp.asarray(x) for x in init]
    state = kept.init(params)
    for k, g in enumerate(grads):
        if k == 4:
            opt.param_groups[0]["weight_decay"] = 0.05
            state = gradtx.set_hyperparams(state, {"enc/weight_decay.value": 0.05})
        for t, x in zip(tensors, g):
            t.grad = torch.tensor(x)
        opt.step()
        updates, state = kept.update([jnp.asarray(x) for x in g], state, params)
        params = gradtx.apply_updates(params, updates)
        for ours, t in zip(params, tensors):
            np.testing.assert_allclose(ours, t.detach().numpy(), rtol=1e-10, atol=0)


def test_a_set_array_is_copied_into_the_state():
    # The caller's array became the state's buffer: donating the state deleted it, one
    # array set for two names (or into two states) was donated twice.
    opt, params = gradtx.adam(1e-3), {"w": jnp.ones(3)}
    step = jax.jit(
        lambda p, s: opt.update(jax.tree.map(jnp.ones_like, p), s, p), donate_argnums=(1,)
    )
    x = jnp.asarray(0.9, jnp.float32)
    shared = gradtx.set_hyperparams(opt.init(params), b1=x, b2=x)
    other = gradtx.set_hyperparams(opt.init(params), b1=x)
    pointers = {v.unsafe_buffer_pointer() for v in jax.tree.leaves((shared, other))}
    assert x.unsafe_buffer_pointer() not in pointers
    step(params, shared)
    step(params, other)
    assert float(x) == np.float32(0.9)


def test_set_hyperparams_does_not_recompile_the_step():
    # A set value placed on a device (committed) where the stored one was not is another
    # input to jit: no retrace, but a second compile of the whole step.
    opt, params = gradtx.adam(1e-3), {"w": jnp.ones(3)}
    step = jax.jit(lambda p, s: opt.update(jax.tree.map(jnp.ones_like, p), s, p)[1])
    state = step(params, opt.init(params))
    placed = jax.device_put(jnp.asarray(0.5, jnp.float32), jax.devices()[0])
    assert placed.committed
    states = [
        gradtx.set_hyperparams(state, learning_rate=1e-4),
        gradtx.set_hyperparams(state, learning_rate=placed),
        jax.vmap(lambda lr: gradtx.set_hyperparams(state, learning_rate=lr))(jnp.ones(2)),
    ]
    assert not any(x.committed for x in jax.tree.leaves(states))
    with xla_compiles() as compiles:
        step(params, states[0])
        step(params, states[1])
    assert compiles == []


def test_a_schedule_unpickled_without_being_built_is_known_to_flax(monkeypatch):
    """Registration with flax.serialization happened when an instance was built: a state
    unpickled in a fresh process that imported flax (no schedule built there) could not
    be saved ('can not serialize WarmupCosineDecay')."""
    import pickle

    from gradtx.schedules import _common

    seen = []
    monkeypatch.setattr(_common, "_register_with_flax", seen.append)
    schedule = S.warmup_cosine_decay(0.0, 0.1, 5, 50)
    seen.clear()
    again = pickle.loads(pickle.dumps(schedule))
    assert seen == [type(schedule)]
    assert float(again(7)) == float(schedule(7))


def test_a_bool_sets_only_a_schedules_option_fields():
    """set_hyperparams took True for any field (a learning rate of 1.0); construction
    refuses a bool where a number goes."""
    state = gradtx.sgd(S.cosine_decay(0.1, 100)).init({"w": jnp.ones(3)})
    with pytest.raises(TypeError, match=r"learning_rate.init_value=...\): expected a number"):
        gradtx.set_hyperparams(state, {"learning_rate.init_value": True})
    cycled = gradtx.set_hyperparams(state, {"learning_rate.cycle": True})
    assert float(gradtx.get_hyperparams(cycled)["learning_rate.cycle"]) == 1.0


def test_replacing_a_groups_schedule_by_a_number_names_its_fields_under_the_group():
    """The advice dropped the group: 'learning_rate.init_value' was ambiguous where another
    group follows the same kind of schedule."""
    opt = gradtx.partition(
        {
            "a": gradtx.sgd(S.exponential_decay(0.1, 5, 0.5)),
            "c": gradtx.sgd(S.exponential_decay(0.2, 5, 0.5)),
        },
        {"w": "a", "b": "c"},
    )
    state = opt.init({"w": jnp.ones(2), "b": jnp.ones(2)})
    with pytest.raises(ValueError, match=r"follows the schedule ExponentialDecay; set its fields "
                       r"\(a/learning_rate.init_value, "):  # fmt: skip
        gradtx.set_hyperparams(state, {"a/learning_rate": 0.2})
    gradtx.set_hyperparams(state, {"a/learning_rate.init_value": 0.2})


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("learning_rate.boundaries", [10**8 + 37], r"learning_rate.boundaries\[0\]"),
        ("learning_rate.boundaries", np.asarray([10**8 + 37.0]), r"learning_rate.boundaries\[0\]"),
        (
            "learning_rate",
            S.piecewise_constant(1.0, {10**8 + 37: 0.1}),
            r"learning_rate.boundaries\[0\]",
        ),
    ],
)
def test_set_hyperparams_refuses_a_boundary_float32_would_round(key, value, shown):
    """As at construction: 10^8 + 37 was stored as 100000040 and moved the step."""
    opt = gradtx.sgd(S.piecewise_constant(1.0, {10: 0.1}))
    state = opt.init({"w": jnp.zeros(1)})
    with pytest.raises(
        ValueError,
        match=rf"^gradtx.set_hyperparams\({shown}=100000037\): {shown} is stored in "
        r"float32, which rounds it to 100000040",
    ):
        gradtx.set_hyperparams(state, {key: value})
    new = gradtx.set_hyperparams(state, {"learning_rate.boundaries": [10**8 + 40]})
    chex.assert_trees_all_equal(
        gradtx.get_hyperparams(new)["learning_rate.boundaries"], jnp.asarray([1.0000004e8])
    )
    joined = gradtx.sgd(S.join([S.constant(1.0), S.piecewise_constant(1.0, {3: 0.5})], [5]))
    with pytest.raises(ValueError, match=r"schedules.1.boundaries\[0\]=100000037\): "):
        gradtx.set_hyperparams(
            joined.init({"w": jnp.zeros(1)}), {"learning_rate.schedules.1.boundaries": [10**8 + 37]}
        )
    # Taken: a fraction float32 rounds within its step (2.3 stored as 2.2999999523 still
    # changes the rate at step 3), and a boundary the int32 count never reaches.
    for taken in (2.3, 1e12):
        new = gradtx.set_hyperparams(state, {"learning_rate.boundaries": [taken]})
        chex.assert_trees_all_equal(
            gradtx.get_hyperparams(new)["learning_rate.boundaries"], jnp.asarray([taken])
        )


@pytest.mark.parametrize("key", [1, None, b"learning_rate", ("learning_rate",)])
def test_set_hyperparams_refuses_a_key_that_is_no_string_by_name(key):
    # it raised "can only concatenate str (not "int") to str" from the suffix match
    state = gradtx.adam(1e-3).init({"w": jnp.ones(2)})
    with pytest.raises(
        TypeError,
        match=rf"^gradtx\.set_hyperparams\(values=\{{{re.escape(repr(key))}: \.\.\.\}}\): a key "
        rf"must be a str naming a hyperparameter, got {type(key).__name__}$",
    ):
        gradtx.set_hyperparams(state, {key: 0.1})


@pytest.mark.parametrize("sign", [1, -1])
def test_set_hyperparams_refuses_an_int_beyond_floats_range_for_an_int_slot(sign):
    # float(10**400) raised OverflowError, naming neither the call nor the key
    state = gradtx.swats(1e-3).init({"w": jnp.ones(3)})
    with pytest.raises(
        ValueError,
        match=r"^gradtx\.set_hyperparams\(switch_step=-?10{400}\): switch_step is stored in "
        r"int32, which holds \[-2147483648, 2147483647\]$",
    ):
        gradtx.set_hyperparams(state, switch_step=sign * 10**400)


@pytest.mark.parametrize(
    ("schedule", "key", "value", "message"),
    [
        (
            S.cosine_decay(1.0, 100),
            "decay_steps",
            0,
            r"cosine_decay\(decay_steps=0.0\): decay_steps must be > 0",
        ),
        (S.cosine_decay(1.0, 100), "decay_steps", -5, "decay_steps must be > 0"),
        (S.warmup_cosine_decay(0.0, 1.0, 10, 100), "warmup_steps", 100, "must exceed warmup_steps"),
        (S.warmup_cosine_decay(0.0, 1.0, 10, 100), "decay_steps", 5, "must exceed warmup_steps"),
        (S.linear(1.0, 0.0, 10), "transition_steps", 0, "transition_steps must be > 0"),
        (S.one_cycle(100, 1.0), "pct_start", 0.005, "a phase would be empty"),
        (
            S.join([S.constant(1.0), S.linear(1.0, 0.0, 10)], [5]),
            "schedules.1.transition_steps",
            -1,
            "must be > 0",
        ),
    ],
)
def test_set_hyperparams_refuses_what_the_schedules_constructor_refuses(
    schedule, key, value, message
):
    # The fields were checked only by the values they give: these give finite values in
    # range, from a schedule no constructor would make (a cosine of 0 steps, a warmup
    # as long as the whole decay).
    state = gradtx.sgd(schedule).init({"w": jnp.zeros(1)})
    with pytest.raises(
        ValueError,
        match=rf"^gradtx.set_hyperparams\(learning_rate.{re.escape(key)}=...\): the "
        rf"{type(schedule).__name__} schedule it makes is one its constructor refuses: .*{message}",
    ):
        gradtx.set_hyperparams(state, {f"learning_rate.{key}": value})


def test_set_hyperparams_takes_step_counts_as_data():
    # A fraction of a step and a count the counter never reaches are data (as a JAX
    # array's value is): the constructor's int check does not apply.
    state = gradtx.sgd(S.warmup_cosine_decay(0.0, 1.0, 10, 100)).init({"w": jnp.zeros(1)})
    new = gradtx.set_hyperparams(state, {"learning_rate.warmup_steps": 5.5})
    new = gradtx.set_hyperparams(new, {"learning_rate.decay_steps": 1e12})
    got = gradtx.get_hyperparams(new)
    chex.assert_trees_all_equal(got["learning_rate.warmup_steps"], jnp.asarray(5.5))
    chex.assert_trees_all_equal(got["learning_rate.decay_steps"], jnp.asarray(1e12))
    # A stored field its constructor would refuse (set traced, under jit: data,
    # unchecked) does not block changing another one.
    odd = jax.jit(lambda s, v: gradtx.set_hyperparams(s, {"learning_rate.decay_steps": v}))(
        state, 5.0
    )
    odd = gradtx.set_hyperparams(odd, {"learning_rate.peak_value": 0.5})
    chex.assert_trees_all_equal(
        gradtx.get_hyperparams(odd)["learning_rate.peak_value"], jnp.asarray(0.5)
    )


def test_set_hyperparams_checks_a_schedules_fields_together_once_all_are_set():
    # Lengthening a warm-up and its decay in one call was refused in one key order (the
    # warm-up checked against the old decay), taken in the other.
    state = gradtx.sgd(S.warmup_cosine_decay(0.0, 1.0, 10, 100)).init({"w": jnp.zeros(1)})
    for keys in (("warmup_steps", "decay_steps"), ("decay_steps", "warmup_steps")):
        values = {"warmup_steps": 150, "decay_steps": 300}
        new = gradtx.set_hyperparams(state, {f"learning_rate.{k}": values[k] for k in keys})
        got = gradtx.get_hyperparams(new)
        assert (
            float(got["learning_rate.warmup_steps"]),
            float(got["learning_rate.decay_steps"]),
        ) == (150, 300)
    shrunk = {"learning_rate.decay_steps": 8, "learning_rate.warmup_steps": 4}
    gradtx.set_hyperparams(state, shrunk)
    joined = gradtx.sgd(S.join([S.constant(1.0), S.warmup_cosine_decay(0.0, 1.0, 10, 100)], [5]))
    gradtx.set_hyperparams(
        joined.init({"w": jnp.zeros(1)}),
        {
            "learning_rate.schedules.1.warmup_steps": 150,
            "learning_rate.schedules.1.decay_steps": 300,
        },
    )
    with pytest.raises(
        ValueError,
        match=r"^gradtx.set_hyperparams\(learning_rate.warmup_steps=..., "
        r"learning_rate.decay_steps=...\): the WarmupCosineDecay schedule .* must exceed",
    ):
        gradtx.set_hyperparams(
            state, {"learning_rate.warmup_steps": 150, "learning_rate.decay_steps": 120}
        )


def test_a_known_jax_array_set_in_a_schedule_is_checked_as_a_number_is():
    # Its value is known, so the constructor judges it, as the number beside it in the
    # same call (which was once let through with an array); traced, it is data.
    state = gradtx.sgd(S.warmup_cosine_decay(0.0, 1.0, 10, 100)).init({"w": jnp.zeros(1)})
    both = {"learning_rate.init_value": jnp.asarray(0.0), "learning_rate.decay_steps": 5}
    with pytest.raises(ValueError, match="must exceed warmup_steps"):
        gradtx.set_hyperparams(state, both)
    with pytest.raises(ValueError, match="must exceed warmup_steps"):
        gradtx.set_hyperparams(state, {"learning_rate.decay_steps": jnp.asarray(5.0)})
    with pytest.raises(ValueError, match=r"peak_value=...\): the WarmupCosineDecay schedule "
                       r"reaches -0.1 at step 1; learning_rate must be in \[0, inf\)"):  # fmt: skip
        gradtx.set_hyperparams(state, {"learning_rate.peak_value": jnp.asarray(-1.0)})
    traced = jax.jit(lambda s, v: gradtx.set_hyperparams(s, {"learning_rate.decay_steps": v}))
    got = gradtx.get_hyperparams(traced(state, 5.0))["learning_rate.decay_steps"]
    assert float(got) == 5.0


def test_get_hyperparams_reads_a_join_in_a_state_made_under_vmap():
    # Its boundaries are one row per run there: the join indexed the runs instead of the
    # boundaries, and a concrete row was refused by a scalar conversion (TypeError).
    opt = gradtx.sgd(S.join([S.constant(1.0), S.linear(1.0, 0.0, 10)], [5]))
    states = jax.vmap(opt.init)({"w": jnp.zeros((3, 2))})
    states = jax.vmap(lambda s, b: gradtx.set_hyperparams(s, {"learning_rate.boundaries": b}))(
        states, jnp.asarray([[5.0], [2.0], [7.0]])
    )
    states = states._replace(count=jnp.asarray([6, 6, 6]))
    got = gradtx.get_hyperparams(states)["learning_rate"]
    chex.assert_trees_all_close(got, jax.vmap(gradtx.get_hyperparams)(states)["learning_rate"])
    chex.assert_trees_all_close(got, jnp.asarray([0.9, 0.6, 1.0]))

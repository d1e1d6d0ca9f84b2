"""Every wrapper with schedules, under jax.vmap, and without retracing."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from tests.reference.harness import assert_trajectories_close
from tests.reference.harness import make_problem
from tests.reference.harness import run_gradtx

# name -> (wrap(opt) configured to act like opt on finite data, calls per inner step).
# accumulate_gradients gets each gradient twice, so its mean is that gradient.
WRAPPERS = {
    "masked": (lambda opt: gradtx.masked(opt, {"w": True, "b": True}), 1),
    "partition": (lambda opt: gradtx.partition({"all": opt}, "all"), 1),
    "partition_groups": (
        lambda opt: gradtx.partition({"w": opt, "b": opt}, {"w": "w", "b": "b"}),
        1,
    ),
    "apply_if_finite": (lambda opt: gradtx.apply_if_finite(opt, 3), 1),
    "accumulate_gradients": (lambda opt: gradtx.accumulate_gradients(opt, 2), 2),
    "track_norms": (lambda opt: gradtx.track_norms(opt), 1),
    "track_norms_member": (lambda opt: gradtx.chain(opt, gradtx.track_norms()), 1),
}


def _repeat(grads, times):
    return [g for g in grads for _ in range(times)]


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_around_lookahead_with_a_plain_callable_schedule(x64, name):
    """wrap(lookahead(sgd(schedule))) steps like the bare lookahead(sgd(schedule))."""
    wrap, times = WRAPPERS[name]

    def make():
        lr = lambda t: 0.1 / (1 + t.astype(jnp.float64))  # noqa: E731
        return gradtx.lookahead(gradtx.sgd(lr, momentum=0.9), sync_period=2)

    params, grads = make_problem(0, steps=6)
    ours = run_gradtx(wrap(make()), params, _repeat(grads, times))[times - 1 :: times]
    assert_trajectories_close(ours, run_gradtx(make(), params, grads), rtol=1e-14)


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_vmap_over_states_is_a_sweep(x64, name):
    wrap, times = WRAPPERS[name]
    opt = wrap(gradtx.adam(0.1))
    params, grads = make_problem(1, steps=3)
    params = {k: jnp.asarray(v) for k, v in params.items()}
    grads = _repeat([{k: jnp.asarray(v) for k, v in g.items()} for g in grads], times)
    rates = [0.01, 0.1, 0.3]
    states = [_set_lr(opt.init(params), lr) for lr in rates]
    batched = jax.tree.map(lambda *xs: jnp.stack(xs), *states)

    @jax.jit
    @jax.vmap
    def step(p, s, g):
        u, s = opt.update(g, s, p)
        return gradtx.apply_updates(p, u), s

    p = jax.tree.map(lambda x: jnp.stack([x] * len(rates)), params)
    for g in grads:
        p, batched = step(p, batched, jax.tree.map(lambda x: jnp.stack([x] * len(rates)), g))
    bare = gradtx.adam(0.1)
    bare_update = jax.jit(bare.update)
    for i, lr in enumerate(rates):
        q, s = params, gradtx.set_hyperparams(bare.init(params), learning_rate=lr)
        for g in grads[times - 1 :: times]:
            u, s = bare_update(g, s, q)
            q = gradtx.apply_updates(q, u)
        for k in params:
            np.testing.assert_allclose(p[k][i], q[k], rtol=1e-13)


def _set_lr(state, lr):
    names = [n for n in gradtx.get_hyperparams(state) if n.endswith("learning_rate")]
    return gradtx.set_hyperparams(state, {n: lr for n in names})


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_changing_a_hyperparameter_does_not_retrace(name):
    wrap, _ = WRAPPERS[name]
    opt = wrap(gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adam(0.1)))
    traces = []

    @jax.jit
    def step(p, s, g):
        traces.append(1)
        u, s = opt.update(g, s, p)
        return gradtx.apply_updates(p, u), s

    params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
    state = opt.init(params)
    g = jax.tree.map(jnp.ones_like, params)
    for i in range(3):
        params, state = step(params, state, g)
        state = _set_lr(state, 0.1 / (i + 2))
        names = [n for n in gradtx.get_hyperparams(state) if n.endswith("max_norm")]
        state = gradtx.set_hyperparams(state, {n: 0.5 * (i + 1) for n in names})
    assert len(traces) == 1
    lrs = [v for n, v in gradtx.get_hyperparams(state).items() if n.endswith("learning_rate")]
    assert lrs and all(float(v) == pytest.approx(0.1 / 4) for v in lrs)


def test_lookahead_around_a_masked_optimizer(x64):
    """Masked-in leaves follow lookahead(adam), masked-out ones lookahead of the raw gradient."""
    params, grads = make_problem(2, steps=6)
    opt = gradtx.lookahead(gradtx.masked(gradtx.adam(0.1), {"w": True, "b": False}), 3)
    ours = run_gradtx(opt, params, grads)
    ref = run_gradtx(gradtx.lookahead(gradtx.adam(0.1), 3), params, grads)
    assert_trajectories_close([{"w": s["w"]} for s in ours], [{"w": s["w"]} for s in ref], 1e-14)
    # masked-out leaves pass the gradient through as their update (scale(1.0))
    ref_b = run_gradtx(gradtx.lookahead(gradtx.scale(1.0), 3), params, grads)
    assert_trajectories_close([{"b": s["b"]} for s in ours], [{"b": s["b"]} for s in ref_b], 1e-14)


@pytest.mark.parametrize(
    "wrap",
    [lambda m: gradtx.apply_if_finite(m, 3), lambda m: gradtx.accumulate_gradients(m, 1)],
    ids=["apply_if_finite", "accumulate_gradients"],
)
def test_a_wrapped_gradient_map_is_still_one(x64, wrap):
    """Else the chain froze the raw gradient for the statistics after it: momentum saw
    the clipped gradient and the second moment the raw one."""
    clip = gradtx.clip_by_global_norm(0.5)
    assert isinstance(wrap(clip), gradtx.GradientMap)

    def adam_after(first):
        return gradtx.chain(
            first,
            gradtx.add_momentum(0.9, ema=True),
            gradtx.bias_correct(0.9),
            gradtx.scale_by_rms(0.999, bias_correction=True),
            gradtx.scale_by_learning_rate(0.1),
        )

    params, grads = make_problem(0, 10, scale=3.0)
    assert_trajectories_close(
        run_gradtx(adam_after(wrap(clip)), params, grads),
        run_gradtx(adam_after(clip), params, grads),
    )


def test_one_optimizer_shared_by_a_group_with_no_leaves(x64):
    # The empty group's update (no leaves) was refused as a tree that does not match
    # the other group's init; optax.multi_transform runs a shared optax.adam the same way.
    params = {"w": jnp.ones((3, 2)), "b": jnp.arange(2.0)}
    grads = jax.tree.map(lambda p: p + 0.5, params)
    opt = gradtx.adam(1e-2)
    tx = gradtx.partition({"a": opt, "b": opt}, {"w": "a", "b": "a"})
    updates, _ = tx.update(grads, tx.init(params), params)
    expected, _ = opt.update(grads, opt.init(params), params)
    jax.tree.map(lambda u, e: np.testing.assert_array_equal(u, e), updates, expected)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize(
    "inner",
    [
        lambda: gradtx.flatten(gradtx.adam(0.1)),
        lambda: gradtx.accumulate_gradients(gradtx.adam(0.1), 2),
    ],
    ids=["flatten", "accumulate_gradients"],
)
@pytest.mark.parametrize(
    "outer",
    [gradtx.average_params, lambda t: gradtx.lookahead(t, sync_period=10)],
    ids=["average_params", "lookahead"],
)
def test_16_bit_updates_widened_by_an_outer_wrapper_reach_flatten_and_accumulation(
    dtype, inner, outer
):
    """average_params and lookahead hand 16-bit updates to their inner optimizer in
    float32; flatten and accumulate_gradients compared those with the params' dtypes and
    refused the user's own gradients.  The inner's steps are unchanged, bit for bit."""
    params = {
        "w": jnp.linspace(-1, 1, 6, dtype=dtype).reshape(2, 3),
        "b": jnp.asarray([0.5, -0.25], dtype),
    }
    wrapped, alone = outer(inner()), inner()
    s_wrapped, s_alone = wrapped.init(params), alone.init(params)
    for _ in range(4):
        grads = jax.tree.map(lambda x: (0.3 * x + 0.01).astype(x.dtype), params)
        u_wrapped, s_wrapped = wrapped.update(grads, s_wrapped, params)
        u_alone, s_alone = alone.update(grads, s_alone, params)
        chex.assert_trees_all_equal(u_wrapped, u_alone)
        params = gradtx.apply_updates(params, u_wrapped)

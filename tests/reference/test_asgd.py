"""ASGD against torch.optim.ASGD, step by step in float64: the params and the
averaged iterate ``ax`` after every step, with averaging started within the run."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import gradtx
from tests.reference.harness import MIXED_SHAPES
from tests.reference.harness import assert_trajectories_close
from tests.reference.harness import make_problem


def _h(seed):
    rng = np.random.default_rng(1700 + seed)
    return dict(
        lr=float(rng.uniform(0.01, 0.1)),
        lambd=float(rng.uniform(1e-3, 0.5)),  # large enough that eta and the decay move
        alpha=float(rng.uniform(0.5, 1.0)),
        t0=[5.0, 7.5][seed],  # the first averaging step is step 8 / 10 of 25
        wd=float(rng.uniform(1e-3, 0.1)),
    )


def _torch_run(make, params, grads):
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = make(list(tensors.values()))
    ps, axs = [], []
    for g in grads:
        for k, t in tensors.items():
            t.grad = torch.tensor(g[k])
        opt.step()
        ps.append({k: t.detach().numpy().copy() for k, t in tensors.items()})
        axs.append({k: opt.state[t]["ax"].numpy().copy() for k, t in tensors.items()})
    return ps, axs


def _ours_run(tx, params, grads, averaged=lambda state: optax.tree_utils.tree_get(state, "ax")):
    p = {k: jnp.asarray(v) for k, v in params.items()}
    state, update = tx.init(p), jax.jit(tx.update)
    ps, axs = [], []
    for g in grads:
        u, state = update({k: jnp.asarray(v) for k, v in g.items()}, state, p)
        p = gradtx.apply_updates(p, u)
        ps.append({k: np.asarray(v) for k, v in p.items()})
        axs.append({k: np.asarray(v) for k, v in averaged(state).items()})
    return ps, axs


def _compare(ours, make_torch, params, grads):
    ps, axs = _ours_run(ours, params, grads)
    ref_ps, ref_axs = _torch_run(make_torch, params, grads)
    assert_trajectories_close(ps, ref_ps)
    assert_trajectories_close(axs, ref_axs)


@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("l2", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_asgd_matches_torch(x64, torch64, l2, maximize, seed):
    h = _h(seed)
    wd = h["wd"] if l2 else 0.0
    params, grads = make_problem(seed, 25, MIXED_SHAPES)
    _compare(
        gradtx.asgd(h["lr"], h["lambd"], h["alpha"], h["t0"], weight_decay=wd, maximize=maximize),
        lambda ps: torch.optim.ASGD(
            ps, lr=h["lr"], lambd=h["lambd"], alpha=h["alpha"], t0=h["t0"], weight_decay=wd,
            maximize=maximize,
        ),
        params,
        grads,
    )  # fmt: skip


def test_asgd_defaults_match_torch(x64, torch64):
    params, grads = make_problem(2, 25, MIXED_SHAPES)
    _compare(gradtx.asgd(), lambda ps: torch.optim.ASGD(ps), params, grads)


def test_asgd_complex_matches_torch(x64, torch64):
    rng = np.random.default_rng(9)
    z = lambda s: rng.normal(size=s) + 1j * rng.normal(size=s)  # noqa: E731
    params = {k: z(s) for k, s in MIXED_SHAPES.items()}
    grads = [{k: z(s) for k, s in MIXED_SHAPES.items()} for _ in range(25)]
    h = _h(0)
    _compare(
        gradtx.asgd(h["lr"], h["lambd"], h["alpha"], h["t0"], weight_decay=h["wd"]),
        lambda ps: torch.optim.ASGD(
            ps, lr=h["lr"], lambd=h["lambd"], alpha=h["alpha"], t0=h["t0"], weight_decay=h["wd"]
        ),
        params,
        grads,
    )


def test_asgd_average_is_the_mean_of_the_iterates_since_t0(x64):
    """Independent of torch: from step t0 + 2 on, ax is the plain mean of the iterates."""
    params, grads = make_problem(4, 12, {"w": (2, 3)})
    ps, axs = _ours_run(gradtx.asgd(0.05, lambd=0.1, t0=3), params, grads)
    for k in range(5):  # k <= t0 + 1 (steps 1..5): ax = θ, up to XLA's fusion of θ + u
        np.testing.assert_allclose(axs[k]["w"], ps[k]["w"], rtol=1e-15)
    for k in range(5, 12):  # then the mean of θ after steps t0 + 2 = 5, ..., k + 1
        mean = np.mean([p["w"] for p in ps[4 : k + 1]], axis=0)
        np.testing.assert_allclose(axs[k]["w"], mean, rtol=1e-12)


def test_ax_is_the_last_members_state_too():
    opt = gradtx.asgd(0.1, t0=0)
    params = {"ax": jnp.ones(2), "w": jnp.zeros(3)}  # a params key named ax
    state = opt.init(params)
    _, state = opt.update(jax.tree.map(jnp.ones_like, params), state, params)
    assert isinstance(state.inner_state[-1], gradtx.PolyakAverageState)
    np.testing.assert_allclose(state.inner_state[-1].ax["ax"], 1 - 0.1 * (1 + 1e-4), rtol=1e-6)


def test_a_torch_scheduler_is_followed_by_the_schedule_one_step_later(x64, torch64):
    """torch computes ASGD's eta at the end of a step, from the lr of then: under a
    scheduler each step uses the rate of the step before.  The schedule read one step
    late (docs/porting_from_pytorch.md's recipe) gives torch's numbers."""
    params, grads = make_problem(0, 20, MIXED_SHAPES, 1.0)
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = torch.optim.ASGD(list(tensors.values()), lr=0.1, lambd=0.05, t0=3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
    ref = []
    for g in grads:
        for k, t in tensors.items():
            t.grad = torch.tensor(g[k])
        opt.step()
        sched.step()
        ref.append({k: t.detach().numpy().copy() for k, t in tensors.items()})
    decay = gradtx.schedules.exponential_decay(0.1, 5, 0.5, staircase=True)
    late = gradtx.asgd(lambda k: decay(jnp.maximum(k - 1, 0)), lambd=0.05, t0=3)
    assert_trajectories_close(_ours_run(late, params, grads)[0], ref)
    with pytest.raises(AssertionError):  # read at its own step, it is a step ahead
        assert_trajectories_close(
            _ours_run(gradtx.asgd(decay, lambd=0.05, t0=3), params, grads)[0], ref
        )


def test_param_groups_average_like_torch_and_read_as_one_params_tree(x64, torch64):
    # torch's ASGD with two param groups of their own numbers is a partition of two
    # asgd; averaged_params joins the groups' ax into one params tree (each group's
    # state holds its own leaves only).
    params, grads = make_problem(3, 25, MIXED_SHAPES)
    keys = sorted(params)
    one, two = _h(0), _h(1)
    labels = {k: "one" if i % 2 == 0 else "two" for i, k in enumerate(keys)}
    groups = {
        name: gradtx.asgd(h["lr"], h["lambd"], h["alpha"], h["t0"], weight_decay=h["wd"])
        for name, h in (("one", one), ("two", two))
    }
    ps, axs = _ours_run(gradtx.partition(groups, labels), params, grads, gradtx.averaged_params)

    def make_torch(tensors):
        return torch.optim.ASGD(
            [
                dict(
                    params=[t for k, t in zip(keys, tensors) if labels[k] == name],
                    lr=h["lr"], lambd=h["lambd"], alpha=h["alpha"], t0=h["t0"],
                    weight_decay=h["wd"],
                )
                for name, h in (("one", one), ("two", two))
            ]
        )  # fmt: skip

    ref_ps, ref_axs = _torch_run(make_torch, {k: params[k] for k in keys}, grads)
    assert_trajectories_close(ps, ref_ps)
    assert_trajectories_close(axs, ref_axs)
    assert not np.allclose(axs[-1][keys[0]], ps[-1][keys[0]])  # averaging has started

"""torch's parameter groups that differ only in ``lr`` against
``chain(opt, scale_by_multipliers(...))`` (docs/porting_from_pytorch.md,
"Parameter groups"): equal where the step is proportional to the lr, not for
ASGD, Adafactor and Rprop, where ``partition`` with one optimizer per group is."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import gradtx

T = torch.optim
PROPORTIONAL = [
    (T.SGD, dict(momentum=0.9, nesterov=True, weight_decay=0.01), lambda lr: gradtx.sgd(lr, 0.9, nesterov=True, weight_decay=0.01)),
    (T.Adam, dict(weight_decay=0.1, amsgrad=True), lambda lr: gradtx.adam(lr, weight_decay=0.1, amsgrad=True)),
    (T.AdamW, dict(weight_decay=0.1), lambda lr: gradtx.adamw(lr, weight_decay=0.1)),
    (T.NAdam, dict(weight_decay=0.1), lambda lr: gradtx.nadam(lr, weight_decay=0.1)),
    (T.RAdam, dict(weight_decay=0.1), lambda lr: gradtx.radam(lr, weight_decay=0.1)),
    (T.Adamax, dict(weight_decay=0.1), lambda lr: gradtx.adamax(lr, weight_decay=0.1)),
    (T.Adagrad, dict(lr_decay=0.05, weight_decay=0.1), lambda lr: gradtx.adagrad(lr, lr_decay=0.05, weight_decay=0.1)),
    (T.Adadelta, dict(weight_decay=0.1), lambda lr: gradtx.adadelta(lr, weight_decay=0.1)),
    (T.RMSprop, dict(momentum=0.5, centered=True), lambda lr: gradtx.rmsprop(lr, momentum=0.5, centered=True)),
]  # fmt: skip
NOT_PROPORTIONAL = [  # the last entry: an lr at which the non-linear part shows
    (T.ASGD, dict(lambd=0.1), lambda lr: gradtx.asgd(lr, lambd=0.1), 0.05),
    (T.Adafactor, {}, lambda lr: gradtx.adafactor(lr), 0.5),
    # Rprop's step sizes scale with the lr until they reach the absolute step_sizes bounds
    (T.Rprop, dict(step_sizes=(1e-4, 0.02)), lambda lr: gradtx.rprop(lr, min_step_size=1e-4, max_step_size=0.02), 0.01),
]  # fmt: skip
M = 0.1  # group 1's lr over group 0's


pytestmark = pytest.mark.usefixtures("torch64")  # torch in float64 (conftest)


def _run(torch_class, kwargs, make, lr, steps=30):
    """Group 1 of torch's groups, chain(opt, multipliers) and partition, each after
    ``steps`` steps."""
    rng = np.random.default_rng(0)
    init = [rng.normal(size=4), rng.normal(size=(3, 4))]
    tensors = [torch.tensor(x, requires_grad=True) for x in init]
    torch_opt = torch_class(
        [{"params": tensors[:1]}, {"params": tensors[1:], "lr": lr * M}], lr=lr, **kwargs
    )
    txs = {
        "multipliers": gradtx.chain(make(lr), gradtx.scale_by_multipliers([1.0, M])),
        "partition": gradtx.partition({"a": make(lr), "b": make(lr * M)}, ["a", "b"]),
    }
    params = {k: [jnp.asarray(x) for x in init] for k in txs}
    states = {k: tx.init(params[k]) for k, tx in txs.items()}
    for k in range(steps):
        for t in tensors:
            t.grad = torch.cos(t.detach() + 0.1 * k) + 0.5 * t.detach()
        torch_opt.step()
        for name, tx in txs.items():
            p = params[name]
            updates, states[name] = tx.update([jnp.cos(x + 0.1 * k) + 0.5 * x for x in p], states[name], p)  # fmt: skip
            params[name] = gradtx.apply_updates(p, updates)
    return tensors[1].detach().numpy(), {k: np.asarray(p[1]) for k, p in params.items()}


@pytest.mark.parametrize(("torch_class", "kwargs", "make"), PROPORTIONAL, ids=lambda x: getattr(x, "__name__", ""))  # fmt: skip
def test_multipliers_equal_torch_groups_where_the_step_is_proportional_to_lr(x64, torch_class, kwargs, make):  # fmt: skip
    theirs, ours = _run(torch_class, kwargs, make, 0.01)
    np.testing.assert_allclose(ours["multipliers"], theirs, rtol=1e-10, atol=0)
    np.testing.assert_allclose(ours["partition"], theirs, rtol=1e-10, atol=0)


@pytest.mark.parametrize(("torch_class", "kwargs", "make", "lr"), NOT_PROPORTIONAL, ids=lambda x: getattr(x, "__name__", ""))  # fmt: skip
def test_asgd_adafactor_and_rprop_groups_need_partition(x64, torch_class, kwargs, make, lr):
    theirs, ours = _run(torch_class, kwargs, make, lr)
    np.testing.assert_allclose(ours["partition"], theirs, rtol=1e-10, atol=0)
    assert np.max(np.abs(ours["multipliers"] - theirs) / np.abs(theirs)) > 1e-3


def test_a_group_added_mid_run_continues_as_torchs_add_param_group(x64):
    """docs/porting_from_pytorch.md's recipe: a partition over the grown params, its state
    from init with each old group's state carried over leaf for leaf."""
    rng = np.random.default_rng(0)
    init = {"w0": rng.normal(size=(3, 2)), "w1": rng.normal(size=2), "z": rng.normal(size=4)}
    grads = [{k: rng.normal(size=v.shape) for k, v in init.items()} for _ in range(10)]
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in init.items()}
    torch_opt = T.Adam([tensors["w0"], tensors["w1"]], lr=1e-2)
    opt = gradtx.partition({"a": gradtx.adam(1e-2)}, {"w0": "a", "w1": "a"})
    params = {k: jnp.asarray(init[k]) for k in ("w0", "w1")}
    state = opt.init(params)
    for k, g in enumerate(grads):
        if k == 5:
            torch_opt.add_param_group({"params": [tensors["z"]], "lr": 3e-2, "betas": (0.8, 0.99)})
            params = {**params, "z": jnp.asarray(init["z"])}
            grown = gradtx.partition(
                {"a": gradtx.adam(1e-2), "b": gradtx.adam(3e-2, b1=0.8, b2=0.99)},
                {"w0": "a", "w1": "a", "z": "b"},
            )
            fresh = grown.init(params)
            state = {
                label: jax.tree.unflatten(jax.tree.structure(fresh[label]), jax.tree.leaves(state[label]))
                if label in state else fresh[label]
                for label in fresh
            }  # fmt: skip
            opt = grown
        for name, t in tensors.items():
            t.grad = torch.tensor(g[name]) if name in params else None
        torch_opt.step()
        updates, state = opt.update({n: jnp.asarray(g[n]) for n in params}, state, params)
        params = gradtx.apply_updates(params, updates)
    for name, value in params.items():
        np.testing.assert_allclose(value, tensors[name].detach().numpy(), rtol=1e-10, atol=0)

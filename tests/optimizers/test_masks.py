"""``mask=``/``mask_fn=`` of sgd, sgdw, radam, rmsprop, adagrad, adadelta and asgd
against torch's two parameter groups, one with ``weight_decay=λ`` and one with 0,
step by step in float64."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import pytorch_optimizer
import torch

import gradtx

T = torch.optim
WD = 0.15
STEPS = 7  # radam with b2 = 0.9 rectifies from step 6 on: both phases are in the run
MASK = {"w": True, "b": False}
SKIP = dict(decoupled_weight_decay=True, untractable="skip", compare=">=")

# name: (the torch optimizer of the groups, its other options, gradtx's optimizer of the
# decay and mask keywords).  Every other hyperparameter is away from its default.
CASES = {
    "sgd": (
        T.SGD,
        dict(lr=0.07, momentum=0.8, dampening=0.25, maximize=True),
        lambda **kw: gradtx.sgd(0.07, 0.8, dampening=0.25, maximize=True, **kw),
    ),
    # torch.optim has no SGDW; gradtx.sgdw is tested against pytorch_optimizer's
    "sgdw": (
        pytorch_optimizer.SGDW,
        dict(lr=0.06, momentum=0.7, nesterov=True),
        lambda **kw: gradtx.sgdw(0.06, 0.7, nesterov=True, **kw),
    ),
    "radam": (
        T.RAdam,
        dict(lr=0.03, betas=(0.85, 0.9), eps=1e-6),
        lambda **kw: gradtx.radam(0.03, 0.85, 0.9, 1e-6, **kw),
    ),
    "radam_decoupled": (
        T.RAdam,
        dict(lr=0.03, betas=(0.85, 0.9), eps=1e-6, decoupled_weight_decay=True),
        lambda **kw: gradtx.radam(0.03, 0.85, 0.9, 1e-6, decoupled_weight_decay=True, **kw),
    ),
    # no step and no decay before step 6, then decoupled decay (the authors' RAdam)
    "radam_skip": (
        pytorch_optimizer.RAdam,
        dict(lr=0.03, betas=(0.85, 0.9), eps=1e-6),
        lambda **kw: gradtx.radam(0.03, 0.85, 0.9, 1e-6, **SKIP, **kw),
    ),
    "rmsprop": (
        T.RMSprop,
        dict(lr=0.02, alpha=0.9, eps=1e-4, momentum=0.6, centered=True),
        lambda **kw: gradtx.rmsprop(0.02, 0.9, 1e-4, momentum=0.6, centered=True, **kw),
    ),
    "rmsprop_plain": (
        T.RMSprop,
        dict(lr=0.02, alpha=0.9, eps=1e-4, maximize=True),
        lambda **kw: gradtx.rmsprop(0.02, 0.9, 1e-4, maximize=True, **kw),
    ),
    # optax's placement of η in the buffer: torch's for a constant learning rate
    "rmsprop_lr_in_momentum": (
        T.RMSprop,
        dict(lr=0.02, alpha=0.9, eps=1e-4, momentum=0.6),
        lambda **kw: gradtx.rmsprop(0.02, 0.9, 1e-4, momentum=0.6, lr_in_momentum=True, **kw),
    ),
    "adagrad": (
        T.Adagrad,
        dict(lr=0.05, lr_decay=0.05, initial_accumulator_value=0.2, eps=1e-6),
        lambda **kw: gradtx.adagrad(
            0.05, lr_decay=0.05, initial_accumulator_value=0.2, eps=1e-6, **kw
        ),
    ),
    "adadelta": (
        T.Adadelta,
        dict(lr=0.8, rho=0.85, eps=1e-5),
        lambda **kw: gradtx.adadelta(0.8, 0.85, 1e-5, **kw),
    ),
    # lambd's decay applies to every leaf; only weight_decay is masked
    "asgd": (
        T.ASGD,
        dict(lr=0.05, lambd=0.05, alpha=0.6, t0=3.0),
        lambda **kw: gradtx.asgd(0.05, 0.05, 0.6, 3.0, **kw),
    ),
}


@pytest.fixture(autouse=True)
def torch64():
    """torch in float64: its default dtype holds ASGD's eta and mu."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    params = {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=(4,))}
    grads = [{k: rng.normal(size=v.shape) for k, v in params.items()} for _ in range(STEPS)]
    return params, grads


def _run_torch(torch_class, kwargs, params, grads):
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    groups = [
        {"params": [tensors["w"]], "weight_decay": WD},
        {"params": [tensors["b"]], "weight_decay": 0.0},
    ]
    opt = torch_class(groups, **kwargs)
    out = []
    for g in grads:
        for k, t in tensors.items():
            t.grad = torch.tensor(g[k])
        opt.step()
        out.append({k: t.detach().numpy().copy() for k, t in tensors.items()})
    return out


def _run_gradtx(tx, params, grads):
    p = {k: jnp.asarray(v) for k, v in params.items()}
    state = tx.init(p)
    out = []
    for g in grads:
        updates, state = tx.update({k: jnp.asarray(v) for k, v in g.items()}, state, p)
        p = gradtx.apply_updates(p, updates)
        out.append({k: np.asarray(v) for k, v in p.items()})
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_mask_matches_torch_groups_with_and_without_decay(x64, name):
    torch_class, kwargs, make = CASES[name]
    params, grads = _problem()
    ref = _run_torch(torch_class, kwargs, params, grads)
    ours = _run_gradtx(make(weight_decay=WD, mask=MASK), params, grads)
    for step, (a, b) in enumerate(zip(ours, ref, strict=True)):
        for k in ("w", "b"):
            assert a[k].dtype == np.float64
            np.testing.assert_allclose(
                a[k], b[k], rtol=1e-10, atol=1e-14, err_msg=f"leaf {k!r} at step {step + 1}"
            )


def test_mask_fn_equals_the_mask_it_returns(x64):
    """On radam's special branch (decoupled decay skipped with the step): ``mask_fn``
    gives the dict mask's params; without a mask ``b`` decays too and ``w`` is unchanged."""
    make = CASES["radam_skip"][2]
    params, grads = _problem(1)
    by_dict = _run_gradtx(make(weight_decay=WD, mask=MASK), params, grads)
    by_fn = _run_gradtx(
        make(weight_decay=WD, mask_fn=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)),
        params,
        grads,
    )
    unmasked = _run_gradtx(make(weight_decay=WD), params, grads)
    for a, b, c in zip(by_dict, by_fn, unmasked, strict=True):
        np.testing.assert_array_equal(a["w"], b["w"])
        np.testing.assert_array_equal(a["b"], b["b"])
        np.testing.assert_array_equal(a["w"], c["w"])
    assert np.max(np.abs(by_dict[-1]["b"] - unmasked[-1]["b"])) > 1e-4

"""``mask=``/``mask_fn=`` of sgd, sgdw, radam, rmsprop, adagrad, adadelta and asgd
against torch's two parameter groups, one with ``weight_decay=λ`` and one with 0,
step by step in float64; and of adabound, amsbound, ranger, madgrad, novograd and
the schedule-free pair, whose leaves evolve independently, against their reference
run twice on the whole tree (with ``λ`` for the decayed leaf, with 0 for the other)."""

from __future__ import annotations

import warnings

import adabound
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
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


pytestmark = pytest.mark.usefixtures("torch64")  # torch in float64 (conftest)


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    params = {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=(4,))}
    grads = [{k: rng.normal(size=v.shape) for k, v in params.items()} for _ in range(STEPS)]
    return params, grads


def _run_torch(torch_class, kwargs, params, grads):
    def groups(tensors):
        w, b = tensors
        return torch_class(
            [{"params": [w], "weight_decay": WD}, {"params": [b], "weight_decay": 0.0}],
            **kwargs,
        )

    assert list(params) == ["w", "b"]
    return _run_torch_optimizer(groups, params, grads)


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


# Optimizers whose leaves evolve independently, each given the whole tree as one group:
# the masked run's "w" is the reference's run with weight_decay=WD, its "b" the
# reference's run with weight_decay=0.  name: (runner of the reference, given the decay,
# the params and the gradients; gradtx's optimizer of the decay and mask keywords).


def _torch_whole_tree(make):
    def run(wd, params, grads):
        with warnings.catch_warnings():  # adabound's add_(scalar, tensor) overloads
            warnings.simplefilter("ignore", UserWarning)
            return _run_torch_optimizer(lambda ts: make(ts, wd), params, grads)

    return run


def _optax_whole_tree(make):
    def run(wd, params, grads):
        with jax.numpy_dtype_promotion("standard"):  # optax is not strict-promotion clean
            return _run_gradtx(make(wd), params, grads)

    return run


def _run_torch_optimizer(make_opt, params, grads):
    """Params after each step of ``make_opt(tensors)``, the params' tensors in order."""
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = make_opt(list(tensors.values()))
    out = []
    for g in grads:
        for k, t in tensors.items():
            t.grad = torch.tensor(g[k])
        opt.step()
        out.append({k: t.detach().numpy().copy() for k, t in tensors.items()})
    return out


def _madgrad_lr(lr, eps):
    """η'_k with (η'_k + eps) sqrt(k + 1) equal to optax's float32 weight, in float64
    (as tests/reference/test_madgrad.py): every other operation then agrees to 1e-10."""

    def schedule(k):
        rounded = (lr + eps) * jnp.sqrt(k + 1)  # optax's expression: float32
        return rounded.astype(jnp.float64) / jnp.sqrt((k + 1).astype(jnp.float64)) - eps

    with jax.numpy_dtype_promotion("standard"):
        return jax.jit(schedule)


BOUND = dict(lr=0.03, final_lr=0.05, betas=(0.8, 0.95), gamma=0.2, eps=1e-7)
INDEPENDENT = {
    "adabound": (
        _torch_whole_tree(lambda ts, wd: adabound.AdaBound(ts, **BOUND, weight_decay=wd)),
        lambda **kw: gradtx.adabound(0.03, 0.05, 0.8, 0.95, 0.2, 1e-7, **kw),
    ),
    "adabound_decoupled": (
        _torch_whole_tree(
            lambda ts, wd: pytorch_optimizer.AdaBound(
                ts, **BOUND, weight_decay=wd, weight_decouple=True
            )
        ),
        lambda **kw: gradtx.adabound(
            0.03, 0.05, 0.8, 0.95, 0.2, 1e-7, decoupled_weight_decay=True, **kw
        ),
    ),
    "amsbound": (
        _torch_whole_tree(
            lambda ts, wd: adabound.AdaBound(ts, **BOUND, weight_decay=wd, amsbound=True)
        ),
        lambda **kw: gradtx.amsbound(0.03, 0.05, 0.8, 0.95, 0.2, 1e-7, **kw),
    ),
    # b2 = 0.9 rectifies at step 6 (strict >), k = 3 syncs at steps 3 and 6, and
    # "w" is centralised (two axes): every stage is in the run
    "ranger": (
        _torch_whole_tree(
            lambda ts, wd: pytorch_optimizer.Ranger(
                ts,
                lr=0.03,
                betas=(0.85, 0.9),
                alpha=0.6,
                k=3,
                eps=1e-6,
                weight_decay=wd,
                degenerated_to_sgd=True,
            )
        ),
        lambda **kw: gradtx.ranger(0.03, 0.85, 0.9, 1e-6, sync_period=3, slow_step_size=0.6, **kw),
    ),
    "madgrad": (
        _optax_whole_tree(lambda wd: optax.contrib.madgrad(0.02, 0.7, wd, 1e-5)),
        lambda **kw: gradtx.madgrad(_madgrad_lr(0.02, 1e-5), 0.7, eps=1e-5, **kw),
    ),
    "novograd": (
        _optax_whole_tree(lambda wd: optax.novograd(0.04, 0.8, 0.4, 1e-5, 1e-7, wd)),
        lambda **kw: gradtx.novograd(0.04, 0.8, 0.4, 1e-5, 1e-7, **kw),
    ),
    "schedule_free_adamw": (
        _optax_whole_tree(
            lambda wd: optax.contrib.schedule_free_adamw(0.05, None, 0.8, 0.95, 1e-6, wd, 1.5)
        ),
        lambda **kw: gradtx.schedule_free_adamw(
            0.05, None, 0.8, 0.95, 1e-6, weight_lr_power=1.5, **kw
        ),
    ),
    "schedule_free_sgd": (
        _optax_whole_tree(lambda wd: optax.contrib.schedule_free_sgd(0.05, None, 0.8, wd, 1.5)),
        lambda **kw: gradtx.schedule_free_sgd(0.05, None, 0.8, weight_lr_power=1.5, **kw),
    ),
}


@pytest.mark.parametrize("name", sorted(INDEPENDENT))
def test_mask_matches_the_reference_with_and_without_decay_leaf_by_leaf(x64, name):
    run_reference, make = INDEPENDENT[name]
    params, grads = _problem(2)
    decayed = run_reference(WD, params, grads)
    plain = run_reference(0.0, params, grads)
    ours = _run_gradtx(make(weight_decay=WD, mask=MASK), params, grads)
    for step, (a, w_ref, b_ref) in enumerate(zip(ours, decayed, plain, strict=True)):
        for k, ref in (("w", w_ref), ("b", b_ref)):
            assert a[k].dtype == np.float64
            np.testing.assert_allclose(
                a[k], ref[k], rtol=1e-10, atol=1e-14, err_msg=f"leaf {k!r} at step {step + 1}"
            )
    # the decay changes "b" in this run: the mask is what keeps it off
    assert np.max(np.abs(decayed[-1]["b"] - plain[-1]["b"])) > 1e-4


@pytest.mark.parametrize(
    ("mask_fn", "shown"),
    [
        (lambda p: {"w": "decay", "b": "no_decay"}, "'no_decay'"),
        (lambda p: {"w": 1, "b": 0}, r"0 for \['b'\]"),
        (lambda p: {"w": True, "b": jnp.asarray(False)}, r"bool\[\] for \['b'\]"),
        (lambda p: jax.tree.map(lambda x: x > 0, p), r"bool\[3\]"),
    ],
)
def test_mask_fn_values_are_checked_as_masks_are(mask_fn, shown):
    # Strings and ints were taken by truthiness ("no_decay" decayed), an elementwise
    # array failed with NumPy's "truth value ... is ambiguous".
    params = {"w": jnp.ones(3), "b": -jnp.ones(3)}
    for opt in (
        gradtx.adamw(0.1, weight_decay=0.5, mask_fn=mask_fn),
        gradtx.masked(gradtx.sgd(0.1), mask_fn=mask_fn),
    ):
        with pytest.raises(
            TypeError, match=rf"mask values must be static Python bools, .* got {shown}"
        ):
            opt.update(params, opt.init(params), params)
    kept = gradtx.masked(gradtx.sgd(0.1), mask_fn=lambda p: {"w": True, "b": np.False_})
    updates, _ = kept.update(params, kept.init(params), params)
    np.testing.assert_allclose(updates["w"], -0.1 * np.ones(3), rtol=1e-6)
    np.testing.assert_array_equal(updates["b"], -np.ones(3))  # unmasked: passed through

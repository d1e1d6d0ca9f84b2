"""Every configuration of torch's own optimizer tests, run in torch and in gradtx.

torch's test suite describes its optimizers in ``optim_db``
(``torch.testing._internal.common_optimizers``): per ``torch.optim`` class, a
list of constructor keywords (``optim_inputs_func``) that its tests run.
This module walks that list and, for each configuration, builds the torch
optimizer with those keywords and the gradtx optimizer with them translated by
``TRANSLATIONS`` (one explicit entry per class: torch's keyword -> gradtx's
argument), runs both for ``STEPS`` steps in float64 from the same params and
asserts, to 1e-10 relative:

* the params after every step;
* the state at the end (``gradtx.to_torch_state_dict`` against torch's
  ``state_dict()["state"]``: moments, step counts, LBFGS's history);
* the hyperparameters (the same dict's param group against torch's), so a
  translation that dropped or misnamed a keyword fails here too.

The gradients are precomputed and shared, except for SparseAdam (torch gets
them as sparse COO tensors, gradtx the same gradients dense, with zeros where
torch has no entry) and LBFGS (both minimise one loss; gradtx's
``update(..., value=, value_fn=)`` is one ``step(closure)``).  Muon runs on
2-D params only, with torch's bfloat16 cast of its Newton-Schulz iteration
removed (as in ``test_muon.py``), so both iterate in float64.  torch's default
dtype is float64 while torch runs (NAdam and ASGD keep scalars in it).

A keyword the table does not know fails its configuration (never a skip), and
``test_the_walk_covers_optim_db`` fails when torch's list shrinks below the 91
configurations of torch 2.13 or names a class the table lacks, so a new torch
configuration is never left out silently.  The implementation flags
``foreach``, ``fused``, ``capturable`` and ``differentiable`` run the same
arithmetic in torch and have no gradtx counterpart
(``docs/porting_from_pytorch.md``): they are passed to torch only.

Needs ``expecttest``, which ``torch.testing._internal`` imports.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.testing._internal.common_optimizers import optim_db

import gradtx
from tests.reference.harness import MIXED_SHAPES
from tests.reference.harness import assert_trajectories_close
from tests.reference.harness import make_problem

STEPS = 10
RTOL, ATOL = 1e-10, 1e-12
MIN_CONFIGS = 91  # torch 2.13's optim_db on CPU
MATRICES = {"v": (5, 2), "w": (3, 4)}  # Muon: 2-D params only, wide and tall
# Compiled (``_compiled_step``): Muon's Newton-Schulz loop costs seconds eagerly, and
# LBFGS's step evaluates the loss inside.  The others run eagerly, which here costs
# less than compiling each configuration.
JITTED = frozenset({"Muon", "LBFGS"})
IMPLEMENTATION_FLAGS = frozenset({"foreach", "fused", "capturable", "differentiable"})


def _float(value):
    """A tensor learning rate (``lr=torch.tensor(0.001)``) is its number."""
    if isinstance(value, torch.Tensor):
        assert value.ndim == 0, f"a tensor hyperparameter that is not a scalar: {value!r}"
        return float(value.item())
    return value


def _names(**names: str | tuple[str, str]) -> dict:
    return names


# torch class -> (gradtx factory, {torch keyword: gradtx argument, or the pair of
# arguments a torch pair is split into}).
TRANSLATIONS: dict[str, tuple[Callable, dict]] = {
    "Adadelta": (
        gradtx.adadelta,
        _names(lr="learning_rate", rho="rho", eps="eps", weight_decay="weight_decay",
               maximize="maximize"),
    ),
    "Adafactor": (
        gradtx.adafactor,
        _names(lr="learning_rate", beta2_decay="beta2_decay", eps="eps", d="d",
               weight_decay="weight_decay", maximize="maximize"),
    ),
    "Adagrad": (
        gradtx.adagrad,
        _names(lr="learning_rate", lr_decay="lr_decay", weight_decay="weight_decay",
               initial_accumulator_value="initial_accumulator_value", eps="eps",
               maximize="maximize"),
    ),
    "Adam": (
        gradtx.adam,
        _names(lr="learning_rate", betas=("b1", "b2"), eps="eps", weight_decay="weight_decay",
               amsgrad="amsgrad", maximize="maximize",
               decoupled_weight_decay="decoupled_weight_decay"),
    ),
    "AdamW": (
        gradtx.adamw,
        _names(lr="learning_rate", betas=("b1", "b2"), eps="eps", weight_decay="weight_decay",
               amsgrad="amsgrad", maximize="maximize"),
    ),
    "Adamax": (
        gradtx.adamax,
        _names(lr="learning_rate", betas=("b1", "b2"), eps="eps", weight_decay="weight_decay",
               maximize="maximize"),
    ),
    "ASGD": (
        gradtx.asgd,
        _names(lr="learning_rate", lambd="lambd", alpha="alpha", t0="t0",
               weight_decay="weight_decay", maximize="maximize"),
    ),
    "LBFGS": (
        gradtx.lbfgs,
        _names(lr="learning_rate", max_iter="max_iter", max_eval="max_eval",
               tolerance_grad="tolerance_grad", tolerance_change="tolerance_change",
               history_size="history_size", line_search_fn="line_search_fn"),
    ),
    "Muon": (
        gradtx.muon,
        _names(lr="learning_rate", weight_decay="weight_decay", momentum="momentum",
               nesterov="nesterov", ns_coefficients="ns_coefficients", eps="eps",
               ns_steps="ns_steps", adjust_lr_fn="adjust_lr_fn"),
    ),
    "NAdam": (
        gradtx.nadam,
        _names(lr="learning_rate", betas=("b1", "b2"), eps="eps", weight_decay="weight_decay",
               momentum_decay="momentum_decay", decoupled_weight_decay="decoupled_weight_decay",
               maximize="maximize"),
    ),
    "RAdam": (
        gradtx.radam,
        _names(lr="learning_rate", betas=("b1", "b2"), eps="eps", weight_decay="weight_decay",
               decoupled_weight_decay="decoupled_weight_decay", maximize="maximize"),
    ),
    "RMSprop": (
        gradtx.rmsprop,
        _names(lr="learning_rate", alpha="decay", eps="eps", weight_decay="weight_decay",
               momentum="momentum", centered="centered", maximize="maximize"),
    ),
    "Rprop": (
        gradtx.rprop,
        _names(lr="learning_rate", etas=("eta_minus", "eta_plus"),
               step_sizes=("min_step_size", "max_step_size"), maximize="maximize"),
    ),
    "SGD": (
        gradtx.sgd,
        _names(lr="learning_rate", momentum="momentum", dampening="dampening",
               weight_decay="weight_decay", nesterov="nesterov", maximize="maximize"),
    ),
    "SparseAdam": (
        gradtx.sparse_adam,
        _names(lr="learning_rate", betas=("b1", "b2"), eps="eps", maximize="maximize"),
    ),
}  # fmt: skip


def translate(cls_name: str, kwargs: dict):
    """The gradtx optimizer for ``torch.optim.<cls_name>(params, **kwargs)``."""
    assert cls_name in TRANSLATIONS, f"torch.optim.{cls_name} has no entry in TRANSLATIONS"
    factory, names = TRANSLATIONS[cls_name]
    unknown = sorted(set(kwargs) - set(names) - IMPLEMENTATION_FLAGS)
    assert not unknown, f"torch.optim.{cls_name}: no translation for {unknown} (add it)"
    args = {}
    for key, value in kwargs.items():
        if key in IMPLEMENTATION_FLAGS:
            continue
        target = names[key]
        if isinstance(target, tuple):
            args.update(zip(target, (_float(v) for v in value), strict=True))
        else:
            args[target] = _float(value)
    return factory(**args)


def _walk():
    """(class name, OptimizerInput) for every configuration of optim_db.

    Made with torch's default dtype float64, as torch runs here: a tensor
    ``lr`` is then float64.  A float32 one (the default default dtype) makes
    torch compute parts of its float64 step in float32 (SparseAdam's
    ``step_size``, Muon's adjusted rate and ``1 - lr * weight_decay``), ~1e-8
    off torch's own step with the same number as a float.
    """
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return [
            (info.optim_cls.__name__, config)
            for info in optim_db
            for config in info.optim_inputs_func(device="cpu", dtype=torch.float64)
        ]
    finally:
        torch.set_default_dtype(old)


CONFIGS = _walk()


def _id(cls_name, config):
    return f"{cls_name}-" + re.sub(r"\W+", "_", config.desc).strip("_")


# ------------------------------------------------------------------------ the problems


def _problem(cls_name):
    """Initial params and per-step gradients (dicts of float64 arrays), and the
    gradients torch gets (the same; sparse COO tensors for SparseAdam)."""
    shapes = MATRICES if cls_name == "Muon" else MIXED_SHAPES
    params, grads = make_problem(0, STEPS, shapes)
    if cls_name != "SparseAdam":
        return params, grads, grads
    rng = np.random.default_rng(1)
    for g in grads:  # an embedding lookup: a few rows of each leaf have entries
        for v in g.values():
            v[rng.random(v.shape[0]) < 0.6] = 0.0
    return params, grads, [{k: torch.tensor(v).to_sparse() for k, v in g.items()} for g in grads]


def _lbfgs_loss(xp):
    """A smooth, non-separable loss of MIXED_SHAPES params in torch or jax.numpy:
    quartic (the Hessian moves), with a cosine and all elements coupled."""
    rng = np.random.default_rng(3)
    convert = torch.tensor if xp is torch else jnp.asarray
    weights = {k: convert(rng.uniform(0.5, 2.0, size=s)) for k, s in MIXED_SHAPES.items()}
    targets = {k: convert(rng.normal(size=s)) for k, s in MIXED_SHAPES.items()}

    def loss(p):
        total = coupling = 0.0
        for k in sorted(p):
            d = p[k] - targets[k]
            total = total + (weights[k] * d**2 + 0.1 * d**4 + 0.2 * xp.cos(p[k])).sum()
            coupling = coupling + d.sum()
        return total + 0.05 * coupling**2

    return loss


def _run_torch(cls, kwargs, params, grads):
    """torch's params after each step and its state dict at the end."""
    keys = sorted(params)  # torch's parameter i is jax.tree.leaves' leaf i
    tensors = {k: torch.tensor(params[k], requires_grad=True) for k in keys}
    opt = cls([tensors[k] for k in keys], **kwargs)
    loss = _lbfgs_loss(torch)

    def closure():
        opt.zero_grad()
        value = loss(tensors)
        value.backward()
        return value

    out = []
    for g in grads:
        if cls is torch.optim.LBFGS:
            opt.step(closure)
        else:
            for k, t in tensors.items():
                t.grad = g[k] if isinstance(g[k], torch.Tensor) else torch.tensor(g[k])
            opt.step()
        out.append({k: t.detach().numpy().copy() for k, t in tensors.items()})
    return out, opt.state_dict()


_COMPILED: dict = {}


def _compiled_step(cls_name, kwargs, tx, state):
    """The compiled step for ``tx``, shared by the configurations of its class
    that differ only in numbers gradtx keeps in the state.

    Such a number (``gradtx.get_hyperparams``: a learning rate, a tolerance,
    Muon's momentum) is an input of the compiled step, read from each
    configuration's own state; every other keyword (a flag, ``ns_steps``,
    ``line_search_fn``) is part of the key.  Were a translated number not read
    from the state, the shared step would use another configuration's value and
    the comparison with torch would fail, not pass.
    """
    _, names = TRANSLATIONS[cls_name]
    held = set(gradtx.get_hyperparams(state))

    def in_state(key):
        target = names.get(key, ())
        targets = target if isinstance(target, tuple) else (target,)
        return bool(targets) and set(targets) <= held

    key = (cls_name, tuple(sorted((k, repr(v)) for k, v in kwargs.items() if not in_state(k))))
    if key in _COMPILED:
        return _COMPILED[key]
    if cls_name == "LBFGS":
        loss = _lbfgs_loss(jnp)

        def step(_, state, p):  # a step(closure): the gradient is the loss's at p
            value, g = jax.value_and_grad(loss)(p)
            return tx.update(g, state, p, value=value, value_fn=loss)

    else:
        step = tx.update
    _COMPILED[key] = jax.jit(step)
    return _COMPILED[key]


def _run_gradtx(cls_name, kwargs, params, grads):
    """gradtx's params after each step and its state at the end, as torch's state dict."""
    tx = translate(cls_name, kwargs)
    # L-BFGS's torch state is one flat vector: its conversion takes the params' order from
    # an OrderedDict (in torch's order, the keys sorted here), and refuses a plain dict
    kind = collections.OrderedDict if cls_name == "LBFGS" else dict
    p = kind((k, jnp.asarray(params[k], jnp.float64)) for k in sorted(params))
    state = tx.init(p)
    step = _compiled_step(cls_name, kwargs, tx, state) if cls_name in JITTED else tx.update
    out = []
    for g in grads:
        u, state = step(kind((k, jnp.asarray(g[k], jnp.float64)) for k in sorted(g)), state, p)
        p = gradtx.apply_updates(p, u)
        out.append({k: np.asarray(v) for k, v in p.items()})
    return out, gradtx.to_torch_state_dict(tx, state, p)


# ------------------------------------------------------------------------ comparisons


def _is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _assert_close(ours, ref, where):
    """Nested state-dict values agree: tensors and floats to RTOL, the rest exactly."""
    if isinstance(ref, torch.Tensor) or isinstance(ours, torch.Tensor):
        a = ours.detach().numpy() if isinstance(ours, torch.Tensor) else np.asarray(ours)
        b = ref.detach().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref)
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=where)
    elif isinstance(ref, (list, tuple)):
        assert isinstance(ours, (list, tuple)) and len(ours) == len(ref), f"{where}: {ours!r}"
        for i, (a, b) in enumerate(zip(ours, ref)):
            _assert_close(a, b, f"{where}[{i}]")
    elif isinstance(ref, dict):
        assert isinstance(ours, dict) and sorted(ours) == sorted(ref), (
            f"{where}: keys {sorted(ours)} != torch's {sorted(ref)}"
        )
        for k in ref:
            _assert_close(ours[k], ref[k], f"{where}[{k!r}]")
    elif _is_number(ref) and _is_number(ours):  # torch's 0 is gradtx's 0.0
        np.testing.assert_allclose(float(ours), ref, rtol=RTOL, atol=ATOL, err_msg=where)
    else:
        assert ours == ref and type(ours) is type(ref), f"{where}: {ours!r} != torch's {ref!r}"


@pytest.mark.parametrize(
    "cls_name,config", CONFIGS, ids=[_id(cls_name, config) for cls_name, config in CONFIGS]
)
def test_matches_torch(x64, torch64, monkeypatch, cls_name, config):
    assert config.params is None, f"{cls_name} {config.desc!r}: param groups are not translated"
    if cls_name == "Muon":  # torch's Newton-Schulz in float64 too
        monkeypatch.setattr(torch.Tensor, "bfloat16", lambda self, *a, **k: self.clone())
    params, grads, torch_grads = _problem(cls_name)
    ours, our_state = _run_gradtx(cls_name, config.kwargs, params, grads)
    ref, ref_state = _run_torch(getattr(torch.optim, cls_name), config.kwargs, params, torch_grads)
    assert_trajectories_close(ours, ref, rtol=RTOL, atol=ATOL)
    for entry in ref_state["state"].values():  # LBFGS's scratch list, rewritten every use
        entry.pop("al", None)
    _assert_close(our_state["state"], ref_state["state"], "state")
    (group,), (ref_group,) = our_state["param_groups"], ref_state["param_groups"]
    drop = IMPLEMENTATION_FLAGS | {"params"}
    _assert_close(
        {k: v for k, v in group.items() if k not in drop},
        {k: _float(v) for k, v in ref_group.items() if k not in drop},
        "param_groups[0]",
    )


def test_the_walk_covers_optim_db():
    classes = {info.optim_cls.__name__ for info in optim_db}
    assert len(CONFIGS) >= MIN_CONFIGS
    assert classes <= set(TRANSLATIONS), f"no translation for {sorted(classes - set(TRANSLATIONS))}"
    for cls_name, config in CONFIGS:  # translate's check, for all of them at once
        _, names = TRANSLATIONS[cls_name]
        unknown = set(config.kwargs) - set(names) - IMPLEMENTATION_FLAGS
        assert not unknown, f"{cls_name} {config.desc!r}: no translation for {sorted(unknown)}"
    ids = [_id(*c) for c in CONFIGS]
    assert len(set(ids)) == len(ids), "two configurations share a test id"

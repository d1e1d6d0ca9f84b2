"""scale_by_multipliers: per-parameter learning rates, against partition and torch groups."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import gradtx


def _transformer_like(seed=0, blocks=12):
    rng = np.random.default_rng(seed)
    block = lambda: {"w": rng.normal(size=(3, 3)), "b": rng.normal(size=(3,))}  # noqa: E731
    return {"embed": rng.normal(size=(5, 3)), "blocks": [block() for _ in range(blocks)],
            "head": rng.normal(size=(3, 2))}  # fmt: skip


def _run(opt, params, grads):
    params = jax.tree.map(jnp.asarray, params)
    state = opt.init(params)
    update = jax.jit(opt.update)
    for g in grads:
        u, state = update(jax.tree.map(jnp.asarray, g), state, params)
        params = gradtx.apply_updates(params, u)
    return params, state


def test_layerwise_decay_over_12_blocks_equals_12_partition_groups(x64):
    params = _transformer_like()
    grads = [_transformer_like(seed) for seed in range(1, 8)]
    lr, decay = 1e-2, 0.8
    # the whole layer-wise decay: one expression
    lr_decay = {"embed": decay**12, "blocks": [decay ** (11 - i) for i in range(12)], "head": 1.0}
    ours, _ = _run(
        gradtx.chain(gradtx.adamw(lr, weight_decay=0.1), gradtx.scale_by_multipliers(lr_decay)),
        params,
        grads,
    )
    groups = {"embed": gradtx.adamw(lr * decay**12, weight_decay=0.1),
              "head": gradtx.adamw(lr, weight_decay=0.1)}  # fmt: skip
    groups |= {
        f"block{i}": gradtx.adamw(lr * decay ** (11 - i), weight_decay=0.1) for i in range(12)
    }
    labels = {"embed": "embed", "blocks": [f"block{i}" for i in range(12)], "head": "head"}
    theirs, _ = _run(gradtx.partition(groups, labels), params, grads)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), ours, theirs)


# torch class, its options, the gradtx optimizer; every step proportional to the lr.
# Muon takes matrices only; SparseAdam's gradients have zero rows (sparse in torch).
TORCH_GROUPS = {
    "AdamW": (torch.optim.AdamW, dict(weight_decay=0.05), gradtx.adamw(1e-2, weight_decay=0.05)),
    "SGD": (
        torch.optim.SGD,
        dict(momentum=0.9, nesterov=True),
        gradtx.sgd(1e-2, 0.9, nesterov=True),
    ),
    "RMSprop": (torch.optim.RMSprop, dict(centered=True), gradtx.rmsprop(1e-2, centered=True)),
    "NAdam": (torch.optim.NAdam, {}, gradtx.nadam(1e-2)),
    "RAdam": (torch.optim.RAdam, {}, gradtx.radam(1e-2)),
    "Adadelta": (torch.optim.Adadelta, {}, gradtx.adadelta(1e-2)),
    "Muon": (torch.optim.Muon, dict(weight_decay=0.1), gradtx.muon(1e-2, weight_decay=0.1)),
    "SparseAdam": (torch.optim.SparseAdam, {}, gradtx.sparse_adam(1e-2)),
}


@pytest.mark.parametrize("name", sorted(TORCH_GROUPS))
def test_multipliers_equal_torch_parameter_groups(x64, torch64, monkeypatch, name):
    """One torch param group per leaf, each with its own lr, is the optimizer chained
    with ``scale_by_multipliers`` (docs/porting_from_pytorch.md's claim)."""
    # torch's Muon casts its Newton-Schulz input to bfloat16; kept in float64 here, as in
    # tests/reference/test_muon.py
    monkeypatch.setattr(torch.Tensor, "bfloat16", lambda self, *a, **k: self.clone())
    torch_class, options, ours_opt = TORCH_GROUPS[name]
    rng = np.random.default_rng(3)
    shapes = {"a": (4, 3), "b": (2, 3), "c": (3, 5)} if name == "Muon" else {"a": (4,), "b": (2, 3), "c": (3,)}  # fmt: skip
    params = {k: rng.normal(size=s) for k, s in shapes.items()}
    grads = [{k: rng.normal(size=v.shape) for k, v in params.items()} for _ in range(20)]
    if name == "SparseAdam":
        for g in grads:
            for v in g.values():
                v[rng.random(v.shape[0]) < 0.4] = 0.0
    scales = {"a": 1.0, "b": 0.3, "c": 0.05}
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = torch_class(
        [{"params": [tensors[k]], "lr": 1e-2 * scales[k]} for k in sorted(params)], **options
    )
    for g in grads:
        for k, t in tensors.items():
            grad = torch.tensor(g[k])
            t.grad = grad.to_sparse() if name == "SparseAdam" else grad
        opt.step()
    ours, _ = _run(gradtx.chain(ours_opt, gradtx.scale_by_multipliers(scales)), params, grads)
    for k, t in tensors.items():
        np.testing.assert_allclose(ours[k], t.detach().numpy(), rtol=1e-10, atol=1e-14)


def test_multipliers_are_settable_hyperparameters_without_retrace():
    traces = []
    opt = gradtx.chain(
        gradtx.sgd(0.1),
        gradtx.scale_by_multipliers(
            {"x": 1.0, "y": gradtx.schedules.exponential_decay(1.0, 1, 0.5)}
        ),
    )

    @jax.jit
    def step(params, state):
        traces.append(1)
        return opt.update(jax.tree.map(jnp.ones_like, params), state, params)

    params = {"x": jnp.zeros(2), "y": jnp.zeros(2)}
    state = opt.init(params)
    u, state = step(params, state)
    np.testing.assert_allclose(u["y"], -0.1)
    u, state = step(params, state)
    np.testing.assert_allclose(u["y"], -0.05)  # the schedule's second value
    state = gradtx.set_hyperparams(state, {"x/multiplier": 0.25})
    u, state = step(params, state)
    np.testing.assert_allclose(u["x"], -0.025)
    assert len(traces) == 1
    assert float(gradtx.get_hyperparams(state)["x/multiplier"]) == 0.25


def test_bad_multipliers_are_errors():
    with pytest.raises(ValueError, match=r"multipliers\[a\]=-1.0\): multipliers\[a\] must be in"):
        gradtx.scale_by_multipliers({"a": -1.0})
    with pytest.raises(TypeError, match="plain callable"):
        gradtx.scale_by_multipliers({"a": lambda t: 1.0})
    tx = gradtx.scale_by_multipliers({"a": 1.0, "b": 2.0})
    with pytest.raises(ValueError, match="multipliers tree does not match"):
        tx.init({"a": jnp.ones(2), "c": jnp.ones(2)})


def test_set_hyperparams_checks_a_multiplier_as_the_constructor_does():
    # a negative or infinite multiplier was stored (NaN only was refused): the
    # state's maker was not recorded, so no range was known
    params = {"a": jnp.ones(2), "b": jnp.ones(2)}
    lr_decay = {"a": 2.0, "b": gradtx.schedules.linear(1.0, 0.0, 10)}
    state = gradtx.chain(gradtx.adam(1e-3), gradtx.scale_by_multipliers(lr_decay)).init(params)
    for key, bad in [("a/multiplier", -1.0), ("a/multiplier", np.inf),
                     ("b/multiplier.init_value", -1.0)]:  # fmt: skip
        with pytest.raises(ValueError, match=rf"^gradtx\.set_hyperparams\({key}="):
            gradtx.set_hyperparams(state, {key: bad})
    state = gradtx.set_hyperparams(state, {"a/multiplier": 0.0})  # the range's edge is in it
    assert float(gradtx.get_hyperparams(state)["a/multiplier"]) == 0.0


def test_key_paths_that_print_alike_are_refused():
    """``{"a/b": x, "a": {"b": y}}`` names both entries ``a/b/multiplier``: one hyperparameter,
    so both leaves were scaled by the same value (0.5 for both here)."""
    with pytest.raises(
        ValueError,
        match=r"^gradtx\.scale_by_multipliers\(multipliers=\.\.\.\): the entries at "
        r"\['a'\]\['b'\] and \['a/b'\] would both be named 'a/b/multiplier'",
    ):
        gradtx.scale_by_multipliers({"a/b": 0.5, "a": {"b": 2.0}})
    # A '/' inside a key that repeats no other path is kept, each entry its own value.
    params = {"a/b": jnp.ones(2), "c": {"d": jnp.ones(2)}}
    opt = gradtx.chain(gradtx.sgd(1.0), gradtx.scale_by_multipliers({"a/b": 0.5, "c": 2.0}))
    updates, state = opt.update(params, opt.init(params), params)
    np.testing.assert_array_equal(updates["a/b"], np.float32(-0.5))
    np.testing.assert_array_equal(updates["c"]["d"], np.float32(-2.0))
    hyper = gradtx.get_hyperparams(state)
    assert (float(hyper["b/multiplier"]), float(hyper["c/multiplier"])) == (0.5, 2.0)

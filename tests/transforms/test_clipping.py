"""clip and clip_by_global_norm against optax and torch.nn.utils, in float64."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import gradtx
from gradtx.transforms.clipping import global_norm
from tests.reference.harness import assert_trajectories_close
from tests.reference.harness import make_problem


def _tree(seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return {"w": scale * rng.normal(size=(3, 4)), "b": scale * rng.normal(size=(5,))}


def _jnp(tree):
    return {k: jnp.asarray(v, jnp.float64) for k, v in tree.items()}


def _torch_grads(tree, fn):
    """Apply a torch.nn.utils clipping function to tensors whose .grad is ``tree``."""
    tensors = {}
    for k, v in tree.items():
        t = torch.zeros(v.shape, dtype=torch.float64, requires_grad=True)
        t.grad = torch.tensor(v, dtype=torch.float64)
        tensors[k] = t
    fn(list(tensors.values()))
    return {k: t.grad.numpy() for k, t in tensors.items()}


@pytest.mark.parametrize("max_delta", [0.0, 0.3, 1.0, 10.0])
def test_clip_matches_optax_and_torch(x64, max_delta):
    g = _tree(0)
    ours, _ = gradtx.clip(max_delta).update(_jnp(g), gradtx.clip(max_delta).init(_jnp(g)))
    with jax.numpy_dtype_promotion("standard"):
        ref, _ = optax.clip(max_delta).update(_jnp(g), optax.EmptyState())
    torch_ref = _torch_grads(g, lambda ps: torch.nn.utils.clip_grad_value_(ps, max_delta))
    for k in g:
        np.testing.assert_array_equal(ours[k], ref[k])
        np.testing.assert_array_equal(ours[k], torch_ref[k])
    assert float(jnp.max(jnp.abs(ours["w"]))) <= max_delta


@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0])
def test_clip_by_global_norm_matches_optax(x64, scale):
    g = _tree(1, scale)
    tx = gradtx.clip_by_global_norm(2.0)
    ours, _ = tx.update(_jnp(g), tx.init(_jnp(g)))
    with jax.numpy_dtype_promotion("standard"):
        ref, _ = optax.clip_by_global_norm(2.0).update(_jnp(g), optax.EmptyState())
    for k in g:
        np.testing.assert_allclose(ours[k], ref[k], rtol=1e-14, atol=0)
    norm = float(optax.tree.norm(ours))
    assert norm <= 2.0 * (1 + 1e-14)
    if scale == 100.0:  # clipped: lands on max_norm exactly (to rounding)
        assert abs(norm - 2.0) < 1e-13
    if scale == 0.01:  # below the bound: bit for bit
        for k in g:
            np.testing.assert_array_equal(ours[k], g[k])


@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0])
def test_clip_by_global_norm_with_torch_eps_matches_torch(x64, scale):
    g = _tree(2, scale)
    tx = gradtx.clip_by_global_norm(2.0, eps=1e-6)
    ours, _ = tx.update(_jnp(g), tx.init(_jnp(g)))
    ref = _torch_grads(g, lambda ps: torch.nn.utils.clip_grad_norm_(ps, 2.0))
    for k in g:
        np.testing.assert_allclose(ours[k], ref[k], rtol=1e-14, atol=0)


def test_torch_eps_is_a_real_difference(x64):
    """Without eps the clipped norm is max_norm; torch's lands 1e-6-relative below."""
    g = _jnp(_tree(3, 10.0))
    a = gradtx.clip_by_global_norm(1.0)
    b = gradtx.clip_by_global_norm(1.0, eps=1e-6)
    na = float(optax.tree.norm(a.update(g, a.init(g))[0]))
    nb = float(optax.tree.norm(b.update(g, b.init(g))[0]))
    assert abs(na - 1.0) < 1e-14
    assert 1e-9 < 1.0 - nb < 1e-6


def test_zero_gradient_does_not_divide_by_zero(x64):
    g = {"w": jnp.zeros(3, jnp.float64)}
    tx = gradtx.clip_by_global_norm(1.0)
    out, _ = tx.update(g, tx.init(g))
    np.testing.assert_array_equal(out["w"], np.zeros(3))


@pytest.mark.parametrize("eps", [None, 1e-6])
def test_a_nan_gradient_makes_every_leaf_nan_as_optax_and_torch(x64, eps):
    """A NaN norm is not "at most max_norm": the other leaves do not pass unclipped
    (a NaN in a frozen leaf, zeroed later in the chain, hid a step of 5x the bound)."""
    g = {"w": jnp.asarray([30.0, 40.0]), "frozen": jnp.asarray([jnp.nan])}
    tx = gradtx.clip_by_global_norm(1.0, eps=eps)
    out, _ = tx.update(g, tx.init(g))
    want, _ = optax.clip_by_global_norm(1.0).update(g, None)
    chex.assert_trees_all_equal(out, want)
    assert bool(jnp.all(jnp.isnan(out["w"])))
    w, frozen = torch.tensor([30.0, 40.0]), torch.tensor([float("nan")])
    w.grad, frozen.grad = w.clone(), frozen.clone()
    torch.nn.utils.clip_grad_norm_([w, frozen], 1.0)
    assert torch.isnan(w.grad).all()


def test_statistics_after_clipping_see_the_clipped_gradient(x64):
    """chain(clip_by_global_norm, Adam's primitives) == clip_grad_norm_ then torch Adam.

    clip is a gradient map, so scale_by_rms (Adam's denominator), which reads
    the chain's ``grads``, sees the clipped gradient as torch's Adam does.
    """
    params, grads = make_problem(4, steps=20, scale=3.0)
    opt = gradtx.chain(
        gradtx.clip_by_global_norm(1.0, eps=1e-6),
        gradtx.add_momentum(0.9, ema=True),
        gradtx.bias_correct(0.9),
        gradtx.scale_by_rms(0.999, 1e-8, bias_correction=True),
        gradtx.scale_by_learning_rate(0.01),
    )
    tensors = [torch.tensor(params[k], requires_grad=True) for k in params]
    topt = torch.optim.Adam(tensors, lr=0.01)
    p, state = _jnp(params), opt.init(_jnp(params))
    update = jax.jit(opt.update)
    ours, ref = [], []
    for g in grads:
        for t, k in zip(tensors, params):
            t.grad = torch.tensor(g[k])
        torch.nn.utils.clip_grad_norm_(tensors, 1.0)
        topt.step()
        ref.append({k: t.detach().numpy().copy() for t, k in zip(tensors, params)})
        u, state = update(_jnp(g), state, p)
        p = gradtx.apply_updates(p, u)
        ours.append({k: np.asarray(v) for k, v in p.items()})
    assert_trajectories_close(ours, ref)


def test_hyperparameters_are_in_state_and_settable(x64):
    opt = gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.clip(0.5), gradtx.adam(1e-3))
    state = opt.init({"w": jnp.zeros(2)})
    hp = gradtx.get_hyperparams(state)
    assert float(hp["max_norm"]) == 1.0 and float(hp["max_delta"]) == 0.5
    assert "eps" in hp and float(hp["eps"]) == 1e-8  # adam's; clip's zero eps is not stored
    state = gradtx.set_hyperparams(state, max_norm=0.1, max_delta=0.01)
    g = {"w": jnp.array([3.0, 4.0], jnp.float64)}
    clip_only = gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.clip(0.5))
    cs = gradtx.set_hyperparams(clip_only.init(g), max_norm=0.1, max_delta=0.01)
    out, _ = clip_only.update(g, cs)
    np.testing.assert_allclose(out["w"], [0.01, 0.01], rtol=1e-15)
    with_eps = gradtx.clip_by_global_norm(1.0, eps=1e-6).init(g)
    assert float(gradtx.get_hyperparams(with_eps)["eps"]) == 1e-6


def test_norm_of_bfloat16_is_taken_in_float32():
    g = {"w": jnp.full((1000,), 3.0, jnp.bfloat16)}
    tx = gradtx.clip_by_global_norm(1.0)
    out, _ = tx.update(g, tx.init(g))
    assert out["w"].dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out["w"], np.float32), 1 / np.sqrt(1000), rtol=1e-2)


def test_float16_updates_are_scaled_in_float32():
    """max_norm / norm cast to float16 first flushed to 0 (max_norm=1e-4 on a norm of
    4e3) or to a coarse subnormal (1e-3: 19% off); the float32 product fits float16."""
    g = jnp.asarray([1e3, -2e3, 5e2, 3e3], jnp.float32)
    for max_norm in (1e-3, 1e-4):
        tx = gradtx.clip_by_global_norm(max_norm)
        want = tx.update(g, tx.init(g))[0].astype(jnp.float16)
        g16 = g.astype(jnp.float16)
        np.testing.assert_array_equal(tx.update(g16, tx.init(g16))[0], want)


def test_clipping_is_a_gradient_map():
    assert isinstance(gradtx.clip(1.0), gradtx.GradientMap)
    assert isinstance(gradtx.clip_by_global_norm(1.0), gradtx.GradientMap)


@pytest.mark.parametrize(
    "make, exc",
    [
        (lambda: gradtx.clip(-1.0), ValueError),
        (lambda: gradtx.clip("a"), TypeError),
        (lambda: gradtx.clip_by_global_norm(0.0), ValueError),
        (lambda: gradtx.clip_by_global_norm(1.0, eps=-1.0), ValueError),
    ],
)
def test_bad_arguments(make, exc):
    with pytest.raises(exc, match="gradtx.clip"):
        make()


def test_clip_by_global_norm_counts_the_imaginary_part_of_complex_leaves(x64):
    """Complex gradients: the norm is of |z| (torch's clip_grad_norm_), not of Re(z)."""
    rng = np.random.default_rng(3)
    g = {"w": rng.normal(size=(3, 4)) + 1j * rng.normal(size=(3, 4)), "b": rng.normal(size=5)}
    tensors = [torch.tensor(v, requires_grad=True) for v in g.values()]
    for t, v in zip(tensors, g.values()):
        t.grad = torch.tensor(v)
    torch.nn.utils.clip_grad_norm_(tensors, 1.0)
    tx = gradtx.clip_by_global_norm(1.0, eps=1e-6)  # torch's eps
    out, _ = tx.update({k: jnp.asarray(v) for k, v in g.items()}, tx.init(g))
    for t, k in zip(tensors, g):
        np.testing.assert_allclose(np.asarray(out[k]), t.grad.numpy(), rtol=1e-13)
    assert float(global_norm({"z": jnp.array([3j, 4 + 0j])}, jnp.float64)) == 5.0


def test_a_float32_max_norm_array_clips_float64_updates_in_float64(x64):
    # optax.inject_hyperparams(..., hyperparam_dtype=float32) hands such a bound: the
    # norm was taken in float32, 3e-8 off optax's
    g = jnp.array([3.0, 4.0, 1e-3])
    tx = gradtx.clip_by_global_norm(jnp.asarray(0.5, jnp.float32))
    with jax.numpy_dtype_promotion("standard"):  # optax mixes the two
        want = optax.clip_by_global_norm(jnp.asarray(0.5, jnp.float32)).update(g, ())[0]
    np.testing.assert_allclose(tx.update(g, tx.init(g))[0], want, rtol=1e-15)

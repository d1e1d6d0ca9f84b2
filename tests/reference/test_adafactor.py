"""Adafactor against torch.optim.Adafactor and optax.adafactor, step by step in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import gradtx
from tests.reference.harness import assert_matches_optax
from tests.reference.harness import assert_matches_torch
from tests.reference.harness import assert_trajectories_close
from tests.reference.harness import make_problem
from tests.reference.harness import run_gradtx

# "k"'s two largest axes are not its last two (torch factors the last two).
TORCH_SHAPES = {"w": (3, 4), "b": (5,), "k": (4, 2, 3), "s": ()}
# optax factors over the two largest axes: "m"'s are its first and last.
OPTAX_SHAPES = {"w": (3, 4), "b": (5,), "k": (2, 3, 2), "s": (), "m": (4, 2, 5)}


def _h(seed):
    rng = np.random.default_rng(600 + seed)
    return dict(
        lr=float(rng.uniform(0.3, 0.9)),  # above 1/√t within 25 steps: ρ_t's cap changes
        beta2_decay=float(rng.uniform(-1.0, -0.3)),
        eps1=float(rng.uniform(1e-4, 1e-2)),
        eps2=float(rng.uniform(0.2, 1.5)),  # bites on some leaves (RMS(θ) ~ 1)
        d=float(rng.uniform(1.0, 2.0)),
        wd=float(rng.uniform(1e-3, 0.2)),
        momentum=float(rng.uniform(0.5, 0.95)),
        rate=float(rng.uniform(1e-3, 0.05)),
        offset=-int(rng.integers(1, 10)),
        eps=float(rng.uniform(1e-10, 1e-4)),
    )


@pytest.mark.parametrize("eps1", [None, "random"])
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_adafactor_matches_torch(x64, eps1, maximize, seed):
    h = _h(seed)
    eps = (None if eps1 is None else h["eps1"], h["eps2"])
    # gradients around eps1, so its floors bite on some coordinates and not on others
    scale = 1.0 if eps1 is None else 2 * h["eps1"]
    assert_matches_torch(
        gradtx.adafactor(h["lr"], h["beta2_decay"], eps, h["d"], h["wd"], maximize=maximize),
        lambda ps: torch.optim.Adafactor(
            ps, lr=h["lr"], beta2_decay=h["beta2_decay"], eps=eps, d=h["d"],
            weight_decay=h["wd"], maximize=maximize,
        ),
        seed,
        shapes=TORCH_SHAPES,
        scale=scale,
    )  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1])
def test_adafactor_torch_defaults_and_small_gradients(x64, seed):
    # Gradients of 1e-9: eps1 (the float64 machine epsilon) floors the RMS.
    assert_matches_torch(
        gradtx.adafactor(), torch.optim.Adafactor, seed, shapes=TORCH_SHAPES, scale=1e-9
    )
    assert_matches_torch(gradtx.adafactor(), torch.optim.Adafactor, seed, shapes=TORCH_SHAPES)


@pytest.mark.parametrize("eps", [(None, 1e-3), (0.0, 1e-3)], ids=["eps1-default", "eps1-0"])
def test_adafactor_at_beta2_decay_0_keeps_a_falling_gradients_square(x64, eps):
    """With beta2_decay = 0 each step's weight is 1: torch's lerp gives v = g² exactly.
    v + 1·(g² - v) cancelled once the gradient fell by 1e4 (5e-9 relative off torch
    after one step) or to 1e-20 (v = 0, and with eps1 = 0 a NaN step)."""
    params = {"b": np.linspace(0.5, 1.5, 5), "w": np.full((2, 3), 0.5)}
    falls = [
        {"b": np.array([10.0, 1, 1, 1, 1]), "w": np.full((2, 3), 3.0)},
        {"b": np.array([1e-4, 1, 1, 1, 1e-20]), "w": np.array([[1e-20, 3, 3], [1e-4, 3, 3]])},
        {"b": np.array([1e-12, 2, 1, 1, 1e-20]), "w": np.full((2, 3), 1e-20)},
    ]
    ts = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    ref = torch.optim.Adafactor(list(ts.values()), lr=0.01, beta2_decay=0.0, eps=eps)
    opt = gradtx.adafactor(0.01, beta2_decay=0.0, eps=eps)
    ours = jax.tree.map(jnp.asarray, params)
    state = opt.init(ours)
    for grads in falls:
        for k, t in ts.items():
            t.grad = torch.tensor(grads[k])
        ref.step()
        updates, state = opt.update(jax.tree.map(jnp.asarray, grads), state, ours)
        ours = gradtx.apply_updates(ours, updates)
        for k, t in ts.items():
            np.testing.assert_allclose(np.asarray(ours[k]), t.detach().numpy(), rtol=1e-12)


OPTAX_CASES = {
    "defaults": (dict(), dict()),
    "unfactored": (dict(factored=False), dict(factored=False)),
    "no-scale-no-clip": (
        dict(multiply_by_parameter_scale=False, clipping_threshold=None),
        dict(multiply_by_parameter_scale=False, clipping_threshold=None),
    ),
    "clip-momentum-decay": ("clip-momentum-decay", None),
    "min-dim": (dict(min_dim_size_to_factor=3), dict(min_dim_size_to_factor=3)),
}


def _optax_kwargs(case, h):
    """(gradtx kwargs, optax kwargs), with optax's values for what gradtx defaults differently."""
    ours, theirs = OPTAX_CASES[case]
    if case == "clip-momentum-decay":
        mask = {"w": True, "b": False, "k": True, "s": False, "m": True}
        ours = dict(
            clipping_threshold=h["d"], momentum=h["momentum"], weight_decay_rate=h["rate"],
            decay_offset=h["offset"], decay_rate=-h["beta2_decay"], mask=mask,
        )  # fmt: skip
        theirs = dict(
            clipping_threshold=h["d"], momentum=h["momentum"], weight_decay_rate=h["rate"],
            decay_offset=h["offset"], decay_rate=np.float64(-h["beta2_decay"]),
            dtype_momentum=jnp.float64, weight_decay_mask=mask,
        )  # fmt: skip
    # optax's defaults where gradtx keeps torch's; decay_rate as a float64 so that optax
    # computes the decay in float64 (for a Python float it computes it in float32).
    ours = dict(learning_rate=h["lr"], eps=h["eps"], weight_decay=0.0, **ours)
    ours.setdefault("min_dim_size_to_factor", 128)
    theirs = dict(learning_rate=h["lr"], eps=h["eps"], **theirs)
    theirs.setdefault("decay_rate", np.float64(0.8))
    return ours, theirs


@pytest.mark.parametrize("case", list(OPTAX_CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_adafactor_matches_optax(x64, case, seed):
    h = _h(seed)
    ours, theirs = _optax_kwargs(case, h)
    if case == "min-dim":
        ours["min_dim_size_to_factor"] = theirs["min_dim_size_to_factor"]
    else:  # factor every leaf of >= 2 axes, so the factored path meets 2-D and 3-D leaves
        ours["min_dim_size_to_factor"] = theirs["min_dim_size_to_factor"] = 2
    assert_matches_optax(
        gradtx.adafactor(convention="optax", **ours),
        optax.adafactor(**theirs),
        seed,
        shapes=OPTAX_SHAPES,
    )


def test_optax_rule_with_the_pair_adds_eps1_squared(x64):
    # eps=(eps1, eps2) under optax's rule: eps1² is optax's eps, eps2 its min_scale.
    params, grads = make_problem(2, 25, OPTAX_SHAPES)
    ours = gradtx.adafactor(0.05, eps=(1e-5, 1e-3), convention="optax")
    theirs = optax.adafactor(0.05, min_dim_size_to_factor=1, decay_rate=np.float64(0.8), eps=1e-10)
    with jax.numpy_dtype_promotion("standard"):
        ref = run_gradtx(theirs, params, grads)
    assert_trajectories_close(run_gradtx(ours, params, grads), ref)
    # eps1=None: each leaf's machine epsilon, so float64's squared.
    ours = gradtx.adafactor(0.05, convention="optax")
    theirs = optax.adafactor(
        0.05,
        min_dim_size_to_factor=1,
        decay_rate=np.float64(0.8),
        eps=np.finfo(np.float64).eps ** 2,
    )
    with jax.numpy_dtype_promotion("standard"):
        ref = run_gradtx(theirs, params, grads)
    assert_trajectories_close(run_gradtx(ours, params, grads), ref)


def test_optax_eps_under_torch_rule_is_eps1_squared(x64):
    params, grads = make_problem(3, 25, TORCH_SHAPES, scale=1e-3)
    a = run_gradtx(gradtx.adafactor(0.1, eps=1e-6), params, grads)
    b = run_gradtx(gradtx.adafactor(0.1, eps=(1e-3, 1e-3)), params, grads)
    assert_trajectories_close(a, b, rtol=1e-14)


def test_machine_epsilon_is_each_leafs():
    params = {"a": jnp.ones((2, 3)), "h": jnp.ones(4, jnp.bfloat16)}
    grads = {"a": jnp.full((2, 3), 1e-9), "h": jnp.full(4, 1e-6, jnp.bfloat16)}
    default = gradtx.adafactor(1.0, weight_decay=0.0)
    u, _ = default.update(grads, default.init(params), params)
    # The RMS floor is eps1 = 2^-23 for float32 and 2^-7 for bfloat16: |U| = g / eps1.
    np.testing.assert_allclose(u["a"], -1e-9 / 2.0**-23, rtol=1e-6)
    np.testing.assert_allclose(np.float32(u["h"]), -(1e-6 / 2.0**-7), rtol=1e-2)


def test_hyperparameters_in_state_and_aliases():
    params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
    names = sorted(gradtx.get_hyperparams(gradtx.adafactor().init(params)))
    assert names == ["beta2_decay", "d", "eps", "learning_rate"]  # 0 decay, eps1=None: not stored
    state = gradtx.adafactor(decay_rate=0.5, clipping_threshold=2.0, eps=1e-30).init(params)
    h = gradtx.get_hyperparams(state)
    assert float(h["beta2_decay"]) == -0.5 and float(h["d"]) == 2.0
    assert float(h["eps"]) == pytest.approx(1e-30)
    h = gradtx.get_hyperparams(gradtx.adafactor(eps=(1e-4, 2e-3)).init(params))
    np.testing.assert_allclose(h["eps"], [1e-4, 2e-3], rtol=1e-6)
    np.testing.assert_allclose(
        gradtx.get_hyperparams(gradtx.adafactor().init(params))["eps"], [1e-3]
    )
    assert "d" not in gradtx.get_hyperparams(gradtx.adafactor(clipping_threshold=None).init(params))
    # optax's names equal torch's: the same optimizer
    a, b = (
        gradtx.adafactor(decay_rate=0.6, clipping_threshold=1.5),
        gradtx.adafactor(beta2_decay=-0.6, d=1.5),
    )
    ha, hb = gradtx.get_hyperparams(a.init(params)), gradtx.get_hyperparams(b.init(params))
    assert ha.keys() == hb.keys()
    for k in ha:
        np.testing.assert_array_equal(ha[k], hb[k])


def test_optax_default_learning_rate_none_is_no_rate_stage(x64):
    # optax.adafactor's default learning_rate=None leaves the rate out (a step of 1).
    ours = gradtx.adafactor(None, eps=1e-30, min_dim_size_to_factor=2, convention="optax")
    theirs = optax.adafactor(min_dim_size_to_factor=2, decay_rate=np.float64(0.8))
    assert_matches_optax(ours, theirs, 3, shapes=OPTAX_SHAPES)
    with pytest.raises(TypeError, match=r"adafactor\(learning_rate=None\): torch's rule"):
        gradtx.adafactor(None)


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        (dict(eps=(1e-3,)), TypeError, r"eps must be a pair \(eps1, eps2\) or a number"),
        (dict(eps=(-1.0, 1e-3)), ValueError, r"eps\[0\]"),
        (dict(eps=(None, None)), TypeError, r"eps\[1\]"),
        (dict(eps=-1e-30), ValueError, "eps must be in"),
        (dict(d=0.5), ValueError, "d must be in"),
        (dict(beta2_decay=0.5), ValueError, "beta2_decay must be in"),
        (dict(decay_rate=-0.5), ValueError, "decay_rate must be in"),
        (dict(clipping_threshold=0.5), ValueError, "clipping_threshold must be in"),
        (dict(decay_rate=0.5, beta2_decay=-0.3), ValueError, "give one of them"),
        (dict(clipping_threshold=2.0, d=3.0), ValueError, "give one of them"),
        (dict(decay_offset=1.5), TypeError, "decay_offset must be an int"),
        (dict(momentum=1.0), ValueError, "momentum must be in"),
        (dict(mask={"w": True}, mask_fn=lambda p: p), ValueError, "mask_fn"),
    ],
)
def test_adafactor_errors(kwargs, exc, message):
    with pytest.raises(exc, match=message) as info:
        gradtx.adafactor(**kwargs)
    assert str(info.value).startswith("gradtx.adafactor(")


def test_inside_another_factorys_body(x64):
    # There the outer factory owns the numbers: no derive, the body folds optax's names.
    @gradtx.factory(counted=True, learning_rate=gradtx.LEARNING_RATE)
    def wrapped(learning_rate=0.1):
        return gradtx.adafactor(learning_rate, decay_rate=0.5, clipping_threshold=None)

    params, grads = make_problem(4, 10, TORCH_SHAPES)
    assert_trajectories_close(
        run_gradtx(wrapped(), params, grads),
        run_gradtx(gradtx.adafactor(0.1, beta2_decay=-0.5, d=None), params, grads),
        rtol=1e-14,
    )
    assert sorted(gradtx.get_hyperparams(wrapped().init(params))) == ["learning_rate"]

"""Prodigy and D-Adapt AdamW against optax.contrib, step by step in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from tests.reference.harness import MIXED_SHAPES
from tests.reference.harness import assert_matches_optax
from tests.reference.harness import assert_matches_optax_on_loss
from tests.reference.harness import make_loss
from tests.reference.harness import make_problem


def _h(seed):
    rng = np.random.default_rng(1900 + seed)
    return dict(
        lr=float(rng.uniform(0.3, 1.5)),
        betas=(float(rng.uniform(0.7, 0.95)), float(rng.uniform(0.9, 0.999))),
        beta3=float(rng.uniform(0.8, 0.99)),
        eps=float(rng.uniform(1e-9, 1e-4)),
        d0=float(rng.uniform(1e-4, 1e-2)),  # large enough for d to grow within 25 steps
        coef=float(rng.uniform(0.5, 2.0)),
        wd=float(rng.uniform(1e-3, 0.1)),
    )


def _schedule(t):
    # The same plain callable on both sides (optax's own schedules round to float32).
    return 1.0 / (1.0 + 0.05 * t.astype(jnp.float64))


@pytest.mark.parametrize("safeguard_warmup", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_prodigy_matches_optax(x64, safeguard_warmup, seed):
    h = _h(seed)
    args = (h["lr"], h["betas"], h["beta3"], h["eps"], h["d0"], h["coef"], h["wd"])
    assert_matches_optax(
        gradtx.prodigy(*args, safeguard_warmup=safeguard_warmup),
        optax.contrib.prodigy(*args, safeguard_warmup=safeguard_warmup),
        seed,
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_prodigy_schedule_default_beta3_and_defaults_match_optax(x64, seed):
    h = _h(seed)
    kw = dict(betas=h["betas"], estim_lr0=h["d0"])  # beta3 = sqrt(b2)
    assert_matches_optax(
        gradtx.prodigy(_schedule, **kw), optax.contrib.prodigy(_schedule, **kw), seed
    )
    assert_matches_optax(gradtx.prodigy(), optax.contrib.prodigy(), seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_dadapt_adamw_matches_optax(x64, seed):
    h = _h(seed)
    args = (h["lr"], h["betas"], h["eps"], h["d0"], h["wd"])
    assert_matches_optax(gradtx.dadapt_adamw(*args), optax.contrib.dadapt_adamw(*args), seed)
    kw = dict(betas=h["betas"], estim_lr0=h["d0"])
    assert_matches_optax(
        gradtx.dadapt_adamw(_schedule, **kw), optax.contrib.dadapt_adamw(_schedule, **kw), seed
    )
    assert_matches_optax(gradtx.dadapt_adamw(), optax.contrib.dadapt_adamw(), seed)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", ["prodigy", "dadapt_adamw"])
def test_on_a_loss_the_estimate_grows_and_matches_optax(x64, name, seed):
    # Gradients of a real loss correlate with the distance travelled, so d grows
    # several-fold within the run: the comparison covers the estimate's updates.
    h = _h(seed)
    kw = dict(betas=h["betas"], estim_lr0=1e-3)
    ours, theirs = getattr(gradtx, name)(**kw), getattr(optax.contrib, name)(**kw)
    assert_matches_optax_on_loss(ours, theirs, seed)
    params, _ = make_problem(seed, 0, MIXED_SHAPES)
    p = {k: jnp.asarray(v) for k, v in params.items()}
    loss, state, update = make_loss(seed), ours.init(p), jax.jit(ours.update)
    for step in range(25):
        grads = jax.grad(loss)(p, step)
        updates, state = update(grads, state, p)
        p = gradtx.apply_updates(p, updates)
    assert float(state.inner_state[0].distance) > 3e-3


def test_betas_is_one_hyperparameter_in_state(x64):
    opt = gradtx.prodigy(betas=(0.8, 0.99))
    state = opt.init({"w": jnp.zeros(3)})
    np.testing.assert_allclose(gradtx.get_hyperparams(state)["betas"], [0.8, 0.99])
    state = gradtx.set_hyperparams(state, betas=(0.9, 0.999))
    np.testing.assert_allclose(gradtx.get_hyperparams(state)["betas"], [0.9, 0.999])
    for bad, exc in [((0.9,), TypeError), (0.9, TypeError), ((0.9, 1.0), ValueError)]:
        with pytest.raises(exc, match=r"^gradtx\.prodigy\(betas(\[1\])?="):
            gradtx.prodigy(betas=bad)


def test_zero_learning_rate_keeps_the_estimate_finite(x64):
    # optax's estimate is 0/0 = NaN here (a zero gradient sum); gradtx's is 0.
    for name in ["prodigy", "dadapt_adamw"]:
        opt = getattr(gradtx, name)(0.0)
        params = {"w": jnp.ones(3)}
        state = opt.init(params)
        for _ in range(3):
            updates, state = opt.update({"w": jnp.ones(3)}, state, params)
        assert float(state.inner_state[0].distance) == 1e-6
        np.testing.assert_array_equal(updates["w"], np.zeros(3))


@pytest.mark.parametrize("make", [gradtx.prodigy, gradtx.dadapt_adamw])
def test_the_initial_estimate_is_bound_not_settable(make):
    # init copies d_0 into the distance estimate: set_hyperparams(estim_lr0=...) was
    # accepted and listed by get_hyperparams, and changed nothing.
    state = make().init({"w": jnp.ones(3)})
    assert "estim_lr0" not in gradtx.get_hyperparams(state)
    with pytest.raises(KeyError, match="unknown hyperparameter 'estim_lr0'"):
        gradtx.set_hyperparams(state, estim_lr0=1e-2)
    assert float(make(estim_lr0=1e-2).init({"w": jnp.ones(3)}).inner_state[0].distance) == (
        pytest.approx(1e-2)
    )


@pytest.mark.parametrize("name", ["prodigy", "dadapt_adamw"])
def test_a_state_continues_alike_in_an_optimizer_built_with_another_initial_estimate(x64, name):
    # Prodigy's sums s and r are in units of 1 / d_0: its update divided by the d_0 the
    # optimizer was built with, so a checkpoint restored into one built with another
    # estim_lr0 mixed units and went elsewhere (d after 30 more steps 0.72 -> 0.22).
    # The state keeps d_0; D-Adaptation's update never read it.
    rng = np.random.default_rng(7)
    target = {k: jnp.asarray(rng.normal(size=shape)) for k, shape in MIXED_SHAPES.items()}
    params = jax.tree.map(jnp.zeros_like, target)

    def grad_fn(p):  # of ½‖p - target‖²
        return jax.tree.map(jnp.subtract, p, target)

    make = getattr(gradtx, name)
    opt = make(1.0, estim_lr0=1e-3)
    state = opt.init(params)
    for _ in range(10):
        updates, state = opt.update(grad_fn(params), state, params)
        params = optax.apply_updates(params, updates)
    runs = []
    for other in (opt, make(1.0, estim_lr0=1e-1)):
        p, s = params, state
        for _ in range(10):
            updates, s = other.update(grad_fn(p), s, p)
            p = optax.apply_updates(p, updates)
        runs.append((p, s))
    (p_same, s_same), (p_other, s_other) = runs
    assert float(s_same.inner_state[0].distance) > 1e-3  # the estimate has grown
    jax.tree.map(np.testing.assert_array_equal, p_other, p_same)
    jax.tree.map(np.testing.assert_array_equal, s_other, s_same)


@pytest.mark.parametrize("name", ["prodigy", "dadapt_adamw"])
def test_betas_as_an_array_of_two_as_optax_takes_them(x64, name):
    betas = np.array([0.85, 0.99])
    ours = getattr(gradtx, name)(betas=betas)
    assert_matches_optax(ours, getattr(optax.contrib, name)(betas=betas), 0)
    assert_matches_optax(getattr(gradtx, name)(betas=jnp.asarray(betas)), ours, 0)
    with pytest.raises(
        TypeError, match=r"betas=array\(\[0.9, 0.9, 0.9\]\)\): betas must be a pair"
    ):
        getattr(gradtx, name)(betas=np.array([0.9, 0.9, 0.9]))

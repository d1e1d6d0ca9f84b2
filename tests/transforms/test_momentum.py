"""add_nesterov_momentum: NAdam's numerator with Dozat's warming momentum schedule;
add_momentum at a step whose momentum is 0 (torch's pause, optax's recurrence)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from gradtx import schedules


def _numpy_nadam_numerator(grads, b1, psi):
    """Written from torch.optim.NAdam's equations (ALGORITHMS.md §13)."""
    m = np.zeros_like(grads[0])
    product = 1.0
    out = []
    for t, g in enumerate(grads, start=1):
        mu = b1 * (1 - 0.5 * 0.96 ** (t * psi))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        product *= mu
        m = b1 * m + (1 - b1) * g
        out.append((1 - mu) / (1 - product) * g + mu_next / (1 - product * mu_next) * m)
    return out, m, product


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("psi", [4e-3, 0.3])
def test_matches_numpy(x64, jit, psi):
    rng = np.random.default_rng(2)
    grads = [rng.normal(size=(3, 2)) for _ in range(8)]
    ref, m, product = _numpy_nadam_numerator(grads, 0.9, psi)
    tx = gradtx.add_nesterov_momentum(0.9, psi)
    state = tx.init(jnp.zeros((3, 2)))
    update = jax.jit(tx.update) if jit else tx.update
    for g, r in zip(grads, ref):
        u, state = update(jnp.asarray(g), state)
        np.testing.assert_allclose(u, r, rtol=1e-12)
    np.testing.assert_allclose(state.inner_state.mu, m, rtol=1e-13)
    np.testing.assert_allclose(state.inner_state.mu_product, product, rtol=1e-13)


def test_huge_momentum_decay_is_constant_momentum_form(x64):
    """ψ = 1e6: μ_t = b1 exactly, optax.nadam's bias-corrected Nesterov EMA."""
    b1 = 0.8
    rng = np.random.default_rng(3)
    grads = [rng.normal(size=4) for _ in range(5)]
    tx = gradtx.add_nesterov_momentum(b1, 1e6)
    state = tx.init(jnp.zeros(4))
    m = np.zeros(4)
    for t, g in enumerate(grads, start=1):
        u, state = tx.update(jnp.asarray(g), state)
        m = b1 * m + (1 - b1) * g
        expected = (1 - b1) / (1 - b1**t) * g + b1 / (1 - b1 ** (t + 1)) * m
        np.testing.assert_allclose(u, expected, rtol=1e-13)
    np.testing.assert_allclose(state.inner_state.mu_product, b1**5, rtol=1e-14)


def test_ignores_grads_keyword_and_extras(x64):
    tx = gradtx.add_nesterov_momentum(0.9)
    g = jnp.array([1.0, -1.0])
    a, _ = tx.update(g, tx.init(g))
    b, _ = tx.update(g, tx.init(g), grads=jnp.array([5.0, 5.0]), value=1.0)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_state_dtypes_stable(dtype):
    params = {"a": jnp.ones((2, 3), dtype), "b": jnp.ones(4, dtype)}
    tx = gradtx.add_nesterov_momentum(0.9, dtype=None)
    state0 = tx.init(params)
    u, state1 = jax.jit(tx.update)(params, state0, params)
    assert jax.tree.structure(state0) == jax.tree.structure(state1)
    for a, b in zip(jax.tree.leaves(state0), jax.tree.leaves(state1)):
        assert a.dtype == b.dtype and a.shape == b.shape
    assert state1.inner_state.mu["a"].dtype == jnp.float32  # also for bfloat16 params
    # Π_t is a scalar in the hyperparameters' precision, not the params'.
    assert state1.inner_state.mu_product.shape == ()
    assert state1.inner_state.mu_product.dtype == jnp.float32
    assert u["b"].dtype == dtype


def test_mu_dtype_option_and_errors():
    tx = gradtx.add_nesterov_momentum(dtype=jnp.float32)
    assert tx.init(jnp.ones(2, jnp.bfloat16)).inner_state.mu.dtype == jnp.float32
    with pytest.raises(ValueError, match=r"gradtx.add_nesterov_momentum\(b1=1.0\)"):
        gradtx.add_nesterov_momentum(1.0)
    with pytest.raises(ValueError, match="momentum_decay must be in"):
        gradtx.add_nesterov_momentum(0.9, -1.0)


@pytest.mark.parametrize("ema", [False, True])
def test_add_momentum_initial_value(x64, ema):
    """``m_0 = c`` (Yogi's 1e-6), by hand; ``None`` and 0 both mean zeros and store nothing."""
    c, d = 0.25, 0.5
    g1, g2 = np.array([1.0, -2.0]), np.array([0.5, 4.0])
    tx = gradtx.add_momentum(d, ema=ema, initial_value=c)
    state = tx.init(jnp.zeros(2))
    np.testing.assert_array_equal(state.inner_state.mu, [c, c])
    u1, state = tx.update(jnp.asarray(g1), state)
    u2, state = tx.update(jnp.asarray(g2), state)
    w = 1 - d if ema else 1.0
    m1 = d * c + w * g1
    np.testing.assert_allclose(u1, m1, rtol=1e-15)
    np.testing.assert_allclose(u2, d * m1 + w * g2, rtol=1e-15)
    assert "initial_value" not in gradtx.get_hyperparams(state)  # read by init only
    for none in (None, 0.0):
        state = gradtx.add_momentum(d, ema=ema, initial_value=none).init(jnp.ones(2))
        np.testing.assert_array_equal(state.inner_state.mu, [0.0, 0.0])
        assert "initial_value" not in gradtx.get_hyperparams(state)


def test_ema_nesterov_is_the_ema_look_ahead(x64):
    """add_momentum(ema=True, nesterov=True) returns decay·m_t + (1 - decay)·u_t."""
    rng = np.random.default_rng(5)
    tx = gradtx.add_momentum(0.8, ema=True, nesterov=True)
    state = tx.init(jnp.zeros(3))
    m = np.zeros(3)
    for _ in range(4):
        u = rng.normal(size=3)
        out, state = tx.update(jnp.asarray(u), state)
        m = 0.8 * m + 0.2 * u
        np.testing.assert_allclose(out, 0.8 * m + 0.2 * u, rtol=1e-14)


# momentum per step: 0 at the third and fourth steps, as a set_hyperparams edit or
# a torch param_groups edit between steps
_MOMENTA = [0.8, 0.7, 0.0, 0.0, 0.6, 0.9]


def _torch_with_momenta(torch_class, kwargs, p0, grads, momenta=_MOMENTA):
    import torch

    t = torch.tensor(p0, requires_grad=True)
    opt = torch_class([t], **kwargs)
    out = []
    for mu, g in zip(momenta, grads, strict=True):
        opt.param_groups[0]["momentum"] = mu
        t.grad = torch.tensor(g)
        opt.step()
        out.append(t.detach().numpy().copy())
    return out


def _gradtx_with_momenta(tx, p0, grads, momenta=_MOMENTA):
    """``momenta=None``: the optimizer's own (a schedule), not set between steps."""
    p = jnp.asarray(p0)
    state = tx.init(p)
    step = jax.jit(tx.update)
    out = []
    for i, g in enumerate(grads):
        if momenta is not None:
            state = gradtx.set_hyperparams(state, momentum=momenta[i])
        u, state = step(jnp.asarray(g), state, p)
        p = gradtx.apply_updates(p, u)
        out.append(np.asarray(p))
    return out


@pytest.mark.parametrize(
    "name",
    ["sgd", "sgd_dampening", "sgd_nesterov", "sgd_l2", "rmsprop", "rmsprop_centered"],
)
def test_zero_momentum_step_pauses_the_buffer_as_torch(x64, torch64, name):
    """torch's SGD and RMSprop skip their buffer at a step whose momentum is 0 (kept for
    later steps, the step undamped); ``pause_at_zero`` under torch's convention."""
    import torch

    cases = {
        "sgd": (torch.optim.SGD, dict(lr=0.1), lambda: gradtx.sgd(0.1, 0.5)),
        "sgd_dampening": (
            torch.optim.SGD,
            dict(lr=0.1, dampening=0.4),
            lambda: gradtx.sgd(0.1, 0.5, dampening=0.4),
        ),
        "sgd_nesterov": (
            torch.optim.SGD,
            dict(lr=0.1, nesterov=True, momentum=0.5),
            lambda: gradtx.sgd(0.1, 0.5, nesterov=True),
        ),
        "sgd_l2": (
            torch.optim.SGD,
            dict(lr=0.1, weight_decay=0.3, dampening=0.2),
            lambda: gradtx.sgd(0.1, 0.5, weight_decay=0.3, dampening=0.2),
        ),
        "rmsprop": (
            torch.optim.RMSprop,
            dict(lr=0.01, alpha=0.9, momentum=0.5),
            lambda: gradtx.rmsprop(0.01, 0.9, momentum=0.5),
        ),
        "rmsprop_centered": (
            torch.optim.RMSprop,
            dict(lr=0.01, alpha=0.9, momentum=0.5, centered=True),
            lambda: gradtx.rmsprop(0.01, 0.9, momentum=0.5, centered=True),
        ),
    }
    torch_class, kwargs, make = cases[name]
    rng = np.random.default_rng(5)
    p0 = rng.normal(size=(3, 2))
    grads = [rng.normal(size=(3, 2)) for _ in _MOMENTA]
    ref = _torch_with_momenta(torch_class, kwargs, p0, grads)
    ours = _gradtx_with_momenta(make(), p0, grads)
    for a, b in zip(ours, ref, strict=True):
        chex.assert_trees_all_close(a, b, rtol=1e-12, atol=1e-15)


def test_zero_momentum_step_under_optax_convention_is_optax_trace(x64):
    """optax's ``trace`` at momentum 0 makes the buffer the step's input."""
    import optax

    rng = np.random.default_rng(6)
    p0 = rng.normal(size=(4,))
    grads = [rng.normal(size=(4,)) for _ in _MOMENTA]
    ref_tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=0.5)
    p = jnp.asarray(p0)
    state = ref_tx.init(p)
    ref = []
    with jax.numpy_dtype_promotion("standard"):
        for mu, g in zip(_MOMENTA, grads, strict=True):
            state.hyperparams["momentum"] = jnp.asarray(mu)
            u, state = ref_tx.update(jnp.asarray(g), state, p)
            p = optax.apply_updates(p, u)
            ref.append(np.asarray(p))
    ours = _gradtx_with_momenta(gradtx.sgd(0.1, 0.5, convention="optax"), p0, grads)
    torch_rule = _gradtx_with_momenta(gradtx.sgd(0.1, 0.5), p0, grads)
    for a, b in zip(ours, ref, strict=True):
        chex.assert_trees_all_close(a, b, rtol=1e-12, atol=1e-15)
    assert np.max(np.abs(torch_rule[-1] - ours[-1])) > 1e-3  # the two rules differ here


def test_zero_momentum_from_a_schedule_pauses_too(x64, torch64):
    """A schedule that passes through 0 (torch's OneCycleLR with base_momentum=0)."""
    import torch

    n = 8
    rng = np.random.default_rng(7)
    p0 = rng.normal(size=(5,))
    grads = [rng.normal(size=(5,)) for _ in range(n)]
    t = torch.tensor(p0, requires_grad=True)
    opt = torch.optim.SGD([t], lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=0.1, total_steps=n, base_momentum=0.0, max_momentum=0.9,
        pct_start=0.25, anneal_strategy="linear",
    )  # fmt: skip
    ref = []
    for g in grads:
        t.grad = torch.tensor(g)
        opt.step()
        sched.step()
        ref.append(t.detach().numpy().copy())
    momentum = schedules.one_cycle_momentum(n, 0.0, 0.9, pct_start=0.25, anneal="linear")
    assert float(momentum(jnp.asarray(1))) == 0.0
    tx = gradtx.sgd(schedules.one_cycle(n, 0.1, pct_start=0.25, anneal="linear"), momentum)
    p = jnp.asarray(p0)
    state = tx.init(p)
    for g, r in zip(grads, ref, strict=True):
        u, state = tx.update(jnp.asarray(g), state, p)
        p = gradtx.apply_updates(p, u)
        chex.assert_trees_all_close(np.asarray(p), r, rtol=1e-12, atol=1e-15)


def test_pause_errors():
    with pytest.raises(ValueError, match=r"gradtx.add_momentum\(pause_at_zero=True\)"):
        gradtx.add_momentum(0.9, ema=True, pause_at_zero=True)


@pytest.mark.parametrize("how", ["set_hyperparams", "schedule"])
def test_damped_buffer_starts_at_the_first_nonzero_momentum(x64, torch64, how):
    """With dampening torch fills its buffer undamped at its first step with momentum
    != 0, here the third: gradtx keeps whether that step has come in the state."""
    import torch

    momenta = [0.0, 0.0, 0.8, 0.0, 0.6, 0.9]
    rng = np.random.default_rng(8)
    p0 = rng.normal(size=(3, 2))
    grads = [rng.normal(size=(3, 2)) for _ in momenta]
    kwargs = dict(lr=0.1, dampening=0.3, weight_decay=0.2)
    ref = _torch_with_momenta(torch.optim.SGD, kwargs, p0, grads, momenta)
    if how == "schedule":
        values = [schedules.constant(v) for v in (0.0, 0.8, 0.0, 0.6, 0.9)]
        tx = gradtx.sgd(0.1, schedules.join(values, [2, 3, 4, 5]), dampening=0.3, weight_decay=0.2)
        ours = _gradtx_with_momenta(tx, p0, grads, None)
    else:
        tx = gradtx.sgd(0.1, 0.5, dampening=0.3, weight_decay=0.2)
        ours = _gradtx_with_momenta(tx, p0, grads, momenta)
    for a, b in zip(ours, ref, strict=True):
        chex.assert_trees_all_close(a, b, rtol=1e-12, atol=1e-15)


_INJECT = optax.inject_hyperparams


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (
            lambda d: gradtx.sgd(0.1, momentum=0.9, accumulator_dtype=d, convention="optax"),
            lambda d: _INJECT(optax.sgd, static_args="accumulator_dtype")(
                0.1, momentum=0.9, accumulator_dtype=d
            ),
        ),
        (
            lambda d: gradtx.sgd(
                0.1, momentum=0.9, nesterov=True, accumulator_dtype=d, convention="optax"
            ),
            lambda d: _INJECT(optax.sgd, static_args=("accumulator_dtype", "nesterov"))(
                0.1, momentum=0.9, nesterov=True, accumulator_dtype=d
            ),
        ),
        (
            lambda d: gradtx.adam(0.1, mu_dtype=d, convention="optax"),
            lambda d: _INJECT(optax.adam, static_args="mu_dtype")(0.1, mu_dtype=d),
        ),
        (
            lambda d: gradtx.nadam(0.1, mu_dtype=d, convention="optax"),
            lambda d: _INJECT(optax.nadam, static_args="mu_dtype")(0.1, mu_dtype=d),
        ),
        (
            lambda d: gradtx.amsgrad(0.1, mu_dtype=d, convention="optax"),
            lambda d: _INJECT(optax.amsgrad, static_args="mu_dtype")(0.1, mu_dtype=d),
        ),
        (
            lambda d: gradtx.adopt(0.1, mu_dtype=d),
            lambda d: _INJECT(  # its clipping function is a callable, not a schedule
                optax.contrib.adopt, static_args=("mu_dtype", "clip_value_fn")
            )(0.1, mu_dtype=d),
        ),
    ],
    ids=["sgd", "sgd-nesterov", "adam", "nadam", "amsgrad", "adopt"],
)
def test_a_narrower_storage_dtype_rounds_the_state_not_the_step(x64, ours, theirs):
    # optax casts mu (accumulator_dtype) for storage only and steps with the moment as
    # computed.  With its hyperparameters injected (arrays of the params' precision,
    # not weak Python floats that would round b1·mu in the storage dtype), the two are
    # the same arithmetic: float64 params, float32 moments, <= 1e-10.
    rng = np.random.default_rng(3)
    params = {"w": jnp.asarray(rng.normal(size=(3, 4))), "b": jnp.asarray(rng.normal(size=5))}
    grads = [jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape)), params)]
    grads += [jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape)), params)]
    grads *= 6
    runs = []
    for tx in (ours(jnp.float32), theirs(jnp.float32)):
        with jax.numpy_dtype_promotion("standard"):  # optax's adopt init too
            p, state, trajectory = params, tx.init(params), []
        for g in grads:
            with jax.numpy_dtype_promotion("standard"):  # optax mixes the two precisions
                u, state = tx.update(g, state, p)
            p = optax.apply_updates(p, u)
            trajectory.append(p)
        runs.append((trajectory, state))
    for a, b in zip(runs[0][0], runs[1][0]):
        chex.assert_trees_all_close(a, b, rtol=1e-10, atol=0)
    # the momentum is still stored narrow: float32 leaves shaped like the params
    shaped = [x for x in jax.tree.leaves(runs[0][1]) if x.shape in ((3, 4), (5,))]
    assert sum(x.dtype == jnp.float32 for x in shaped) >= 2


@pytest.mark.parametrize(
    "decay, message",
    [
        (1.0, r"decay must be in \[0, 1\)"),
        (0.999999999, r"decay rounds to 1.0 stored in float32"),
        (gradtx.schedules.linear(0.5, 1.0, 10), r"the schedule reaches 1 at step 10"),
    ],
)
def test_an_ema_decay_that_is_or_rounds_to_one_is_refused(decay, message):
    # 1 - decay weighs the input: every update was 0, without a word
    with pytest.raises(ValueError, match=rf"^gradtx\.add_momentum\(decay=.*{message}"):
        gradtx.add_momentum(decay, ema=True)
    gradtx.add_momentum(decay)  # a heavy ball may take 1

"""Every schedule's values against torch.optim.lr_scheduler, closed forms and
optax, in float64, under jit, with the schedule's fields stored as arrays (the
way they live in optimizer state)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from gradtx import schedules as S

RTOL = 1e-9


def ours(schedule, n):
    """Values at steps 0..n-1: fields as float64 arrays, count int32, jitted."""
    stored = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), schedule)
    fn = jax.jit(jax.vmap(lambda k, s: s(k), in_axes=(0, None)))
    out = np.asarray(fn(jnp.arange(n, dtype=jnp.int32), stored))
    assert out.dtype == np.float64
    return out


def torch_lrs(make, n, base_lr=1.0):
    """The lr torch applies at each of n optimizer steps (scheduler stepped after each)."""
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = make(opt)
    lrs = []
    for _ in range(n):
        lrs.append(float(opt.param_groups[0]["lr"]))
        opt.step()
        sched.step()
    return np.asarray(lrs)


def assert_close(a, b):
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-15 * np.max(np.abs(b)))


L = torch.optim.lr_scheduler

# name -> (gradtx schedule, torch scheduler factory, base lr, steps)
TORCH_CASES = {
    "multistep": (
        S.piecewise_constant(0.4, {30: 0.3, 80: 0.3, 150: 0.3, 220: 0.3}),
        lambda o: L.MultiStepLR(o, [30, 80, 150, 220], gamma=0.3),
        0.4,
        300,
    ),
    "step": (
        S.exponential_decay(0.4, 25, 0.7, staircase=True),
        lambda o: L.StepLR(o, 25, gamma=0.7),
        0.4,
        300,
    ),
    "exponential": (
        S.exponential_decay(0.4, 1, 0.99),
        lambda o: L.ExponentialLR(o, 0.99),
        0.4,
        400,
    ),
    "polynomial_p2": (
        S.polynomial(0.4, 0.0, 2.0, 250),
        lambda o: L.PolynomialLR(o, total_iters=250, power=2.0),
        0.4,
        300,
    ),
    "polynomial_p05": (
        S.polynomial(0.4, 0.0, 0.5, 200),
        lambda o: L.PolynomialLR(o, total_iters=200, power=0.5),
        0.4,
        250,
    ),
    "linear": (
        S.linear(0.4 * 0.05, 0.4 * 0.9, 120),
        lambda o: L.LinearLR(o, start_factor=0.05, end_factor=0.9, total_iters=120),
        0.4,
        300,
    ),
    "cosine": (
        S.cosine_decay(0.4, 300, alpha=0.1),
        lambda o: L.CosineAnnealingLR(o, T_max=300, eta_min=0.04),
        0.4,
        301,
    ),
    "warmup_cosine": (
        S.warmup_cosine_decay(0.01, 0.5, 50, 300, end_value=0.002),
        lambda o: L.SequentialLR(
            o,
            [
                L.LinearLR(o, start_factor=0.02, end_factor=1.0, total_iters=50),
                L.CosineAnnealingLR(o, T_max=250, eta_min=0.002),
            ],
            milestones=[50],
        ),
        0.5,
        301,
    ),
    "sgdr_mult1": (
        S.sgdr(0.3, 40, min_value=0.01),
        lambda o: L.CosineAnnealingWarmRestarts(o, T_0=40, T_mult=1, eta_min=0.01),
        0.3,
        400,
    ),
    "sgdr_mult2": (
        S.sgdr(0.3, 5, period_mult=2, min_value=0.01),
        lambda o: L.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2, eta_min=0.01),
        0.3,
        400,
    ),
    "sgdr_mult3": (
        S.sgdr(0.3, 3, period_mult=3),
        lambda o: L.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=3),
        0.3,
        400,
    ),
    "inverse_time": (
        S.inverse_time_decay(0.3, 20.0, 0.75),
        lambda o: L.LambdaLR(o, lambda k: (1 + k / 20.0) ** -0.75),
        0.3,
        300,
    ),
    "inverse_sqrt": (
        S.inverse_sqrt_decay(0.3),
        lambda o: L.LambdaLR(o, lambda k: 1 / math.sqrt(k + 1)),
        0.3,
        300,
    ),
}

for mode in ("triangular", "triangular2", "exp_range"):
    gamma = 0.995 if mode == "exp_range" else 1.0
    for down in (None, 30):
        TORCH_CASES[f"cyclic_{mode}_{down}"] = (
            S.cyclical(0.01, 0.2, 20, mode=mode, gamma=gamma, step_size_down=down),
            lambda o, mode=mode, gamma=gamma, down=down: L.CyclicLR(
                o,
                0.01,
                0.2,
                20,
                step_size_down=down,
                mode=mode,
                gamma=gamma,
                cycle_momentum=False,
            ),
            0.01,
            400,
        )

for anneal in ("cos", "linear"):
    for three in (False, True):
        for total, pct in ((300, 0.3), (257, 0.25)):
            TORCH_CASES[f"one_cycle_{anneal}_{three}_{total}"] = (
                S.one_cycle(
                    total,
                    0.2,
                    pct_start=pct,
                    div_factor=20.0,
                    final_div_factor=1e3,
                    anneal=anneal,
                    three_phase=three,
                ),
                lambda o, anneal=anneal, three=three, total=total, pct=pct: L.OneCycleLR(
                    o,
                    0.2,
                    total_steps=total,
                    pct_start=pct,
                    anneal_strategy=anneal,
                    three_phase=three,
                    div_factor=20.0,
                    final_div_factor=1e3,
                    cycle_momentum=False,
                ),
                0.2,
                total,
            )


@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_matches_torch(x64, case):
    schedule, make, base_lr, n = TORCH_CASES[case]
    ref = torch_lrs(make, n, base_lr)
    assert_close(ours(schedule, n), ref)
    # The values vary: a constant schedule would not pass by accident.
    assert np.ptp(ref) > 0


def test_sgdr_restarts(x64):
    """>= 5 restarts inside the tested range, at torch's steps."""
    values = ours(S.sgdr(0.3, 5, period_mult=2), 400)
    restarts = np.flatnonzero(values == 0.3)
    np.testing.assert_array_equal(restarts, [0, 5, 15, 35, 75, 155, 315])


def test_closed_forms(x64):
    k = np.arange(500.0)
    assert_close(ours(S.inverse_time_decay(0.5, 7.0), 500), 0.5 / (1 + k / 7.0))
    assert_close(ours(S.inverse_sqrt_decay(0.5), 500), 0.5 / np.sqrt(k + 1))
    assert_close(ours(S.constant(0.25), 50), np.full(50, 0.25))
    # Smith's symmetric formula for the three modes.
    s, base, high = 15, 0.1, 1.0
    cycle = np.floor(1 + k / (2 * s))
    x = np.abs(k / s - 2 * cycle + 1)
    tri = base + (high - base) * np.maximum(0, 1 - x)
    assert_close(ours(S.cyclical(base, high, s), 500), tri)
    tri2 = base + (high - base) * np.maximum(0, 1 - x) / 2 ** (cycle - 1)
    assert_close(ours(S.cyclical(base, high, s, mode="triangular2"), 500), tri2)
    exp = base + (high - base) * np.maximum(0, 1 - x) * 0.99**k
    assert_close(ours(S.cyclical(base, high, s, mode="exp_range", gamma=0.99), 500), exp)


def _optax(schedule, n):
    # float64 counts: optax divides an int32 count by a Python int, which gives
    # float32, so its exponential_decay would otherwise be float32 under x64.
    with jax.numpy_dtype_promotion("standard"):
        out = jax.vmap(schedule)(jnp.arange(n, dtype=jnp.float64))
    assert out.dtype == jnp.float64
    return np.asarray(out)


OPTAX_CASES = {
    "constant": (S.constant(0.3), lambda: optax.constant_schedule(0.3)),
    "piecewise": (
        S.piecewise_constant(0.3, {10: 0.5, 40: 2.0, 90: 0.1}),
        lambda: optax.piecewise_constant_schedule(0.3, {10: 0.5, 40: 2.0, 90: 0.1}),
    ),
    "exponential": (
        S.exponential_decay(0.3, 7, 0.8, transition_begin=20, end_value=0.01),
        lambda: optax.exponential_decay(0.3, 7, 0.8, transition_begin=20, end_value=0.01),
    ),
    "exponential_staircase_up": (
        S.exponential_decay(0.3, 9, 1.05, staircase=True, end_value=0.9),
        lambda: optax.exponential_decay(0.3, 9, 1.05, staircase=True, end_value=0.9),
    ),
    "polynomial": (
        S.polynomial(0.3, 0.02, 1.7, 150, 25),
        lambda: optax.polynomial_schedule(0.3, 0.02, 1.7, 150, 25),
    ),
    "linear": (
        S.linear(0.0, 0.3, 60, 10),
        lambda: optax.linear_schedule(0.0, 0.3, 60, 10),
    ),
    "cosine": (
        S.cosine_decay(0.3, 150, alpha=0.05, exponent=1.5),
        lambda: optax.cosine_decay_schedule(0.3, 150, alpha=0.05, exponent=1.5),
    ),
    "warmup_cosine": (
        S.warmup_cosine_decay(0.0, 0.3, 30, 160, end_value=0.01, exponent=2.0),
        lambda: optax.warmup_cosine_decay_schedule(0.0, 0.3, 30, 160, 0.01, exponent=2.0),
    ),
    "sgdr": (
        S.sgdr(0.3, 5, period_mult=2),
        lambda: optax.sgdr_schedule(
            [
                dict(init_value=0.3, peak_value=0.3, warmup_steps=0, decay_steps=5 * 2**i)
                for i in range(6)
            ]
        ),
    ),
    "join": (
        S.join([S.linear(0.0, 0.3, 20), S.cosine_decay(0.3, 100), S.constant(0.01)], [20, 120]),
        lambda: optax.join_schedules(
            [
                optax.linear_schedule(0.0, 0.3, 20),
                optax.cosine_decay_schedule(0.3, 100),
                optax.constant_schedule(0.01),
            ],
            [20, 120],
        ),
    ),
}


@pytest.mark.parametrize("case", sorted(OPTAX_CASES))
def test_matches_optax(x64, case):
    schedule, make = OPTAX_CASES[case]
    n = 300
    assert_close(ours(schedule, n), _optax(make(), n))


def test_float32_default(x64):
    """Without x64 the values are float32 and still follow the formula."""
    with jax.enable_x64(False):
        schedule = S.one_cycle(100, 0.1)
        v = jax.jit(lambda k: schedule(k))(jnp.asarray(29, jnp.int32))
        assert v.dtype == jnp.float32
    np.testing.assert_allclose(float(v), 0.1, rtol=1e-6)


def test_join_of_plain_callables_is_plain(x64):
    j = S.join([lambda k: 0.1 * jnp.ones([]), S.constant(0.2)], [5])
    assert not isinstance(j, tuple)
    np.testing.assert_allclose(ours_plain(j, 8), [0.1] * 5 + [0.2] * 3)


def ours_plain(fn, n):
    return np.asarray(jax.jit(jax.vmap(fn))(jnp.arange(n, dtype=jnp.int32)))

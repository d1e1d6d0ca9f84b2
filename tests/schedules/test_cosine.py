"""cosine_decay, warmup_cosine_decay and sgdr against torch and optax (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gradtx import schedules as S
from tests.conftest import xla_compiles
from tests.schedules.helpers import L
from tests.schedules.helpers import assert_close
from tests.schedules.helpers import check_torch
from tests.schedules.helpers import optax_values
from tests.schedules.helpers import ours
from tests.schedules.helpers import torch_lrs

# name -> (gradtx schedule, torch scheduler factory, base lr, steps)
TORCH_CASES = {
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
    # Past T_max torch follows the cosine back up: past_end="cycle", over 3.5 periods.
    "cosine_cycle": (
        S.cosine_decay(0.4, 100, alpha=0.1, past_end="cycle"),
        lambda o: L.CosineAnnealingLR(o, T_max=100, eta_min=0.04),
        0.4,
        700,
    ),
    "cosine_cycle_to_zero": (
        S.cosine_decay(0.4, 37, past_end="cycle"),
        lambda o: L.CosineAnnealingLR(o, T_max=37),
        0.4,
        400,
    ),
    "warmup_cosine_cycle": (
        S.warmup_cosine_decay(0.01, 0.5, 50, 300, end_value=0.002, past_end="cycle"),
        lambda o: L.SequentialLR(
            o,
            [
                L.LinearLR(o, start_factor=0.02, end_factor=1.0, total_iters=50),
                L.CosineAnnealingLR(o, T_max=250, eta_min=0.002),
            ],
            milestones=[50],
        ),
        0.5,
        1200,
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
}


@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_matches_torch(x64, case):
    check_torch(*TORCH_CASES[case])


def test_past_end_hold_is_the_default(x64):
    """The default holds alpha·init after T (optax); torch, and "cycle", rise back to
    init at 2T.  A port that runs past T_max must pass past_end="cycle"."""
    held = ours(S.cosine_decay(0.4, 100, alpha=0.1), 400)
    np.testing.assert_allclose(held[100:], 0.04, rtol=1e-14)
    torch_values = torch_lrs(lambda o: L.CosineAnnealingLR(o, T_max=100, eta_min=0.04), 400, 0.4)
    cycled = ours(S.cosine_decay(0.4, 100, alpha=0.1, past_end="cycle"), 400)
    assert_close(held[:101], torch_values[:101])
    np.testing.assert_allclose([torch_values[200], cycled[200]], 0.4, rtol=1e-12)
    assert np.max(np.abs(held - torch_values)) > 0.35
    warm = ours(S.warmup_cosine_decay(0.0, 0.5, 10, 60, end_value=0.01), 200)
    np.testing.assert_allclose(warm[60:], 0.01, rtol=1e-14)


def test_float32_cosine_past_the_end_keeps_its_digits():
    """Past the end the cosine is taken of t mod 2T (cos of a large float32 t/T was off by
    2e-3 of init_value at t/T ~ 1e4)."""
    counts = np.arange(10_000_000 - 5000, 10_000_000, 13)
    for steps in (7, 1000):
        want = 0.5 * (1 + np.cos(np.pi * (counts % (2 * steps)) / steps))
        with jax.enable_x64(False):
            a = S.cosine_decay(1.0, steps, past_end="cycle")
            b = S.warmup_cosine_decay(0.0, 1.0, 0, steps, past_end="cycle")
            got = [np.asarray(jax.vmap(f)(jnp.asarray(counts, jnp.int32))) for f in (a, b)]
        for g in got:
            np.testing.assert_allclose(g, want, atol=1e-6)


def test_sgdr_restarts(x64):
    """>= 5 restarts inside the tested range, at torch's steps."""
    values = ours(S.sgdr(0.3, 5, period_mult=2), 400)
    restarts = np.flatnonzero(values == 0.3)
    np.testing.assert_array_equal(restarts, [0, 5, 15, 35, 75, 155, 315])


def _sgdr_restarts(first_period, mult, below):
    """Restart steps of torch's integer bookkeeping (T_i = T_0 · m^i), below ``below``."""
    starts, start, period = [], 0, first_period
    while start < below:
        starts.append(start)
        start, period = start + period, period * mult
    return np.asarray(starts), period


@pytest.mark.parametrize("first_period, mult", [(5, 4), (7, 4), (100, 4), (3, 5), (1, 3), (1, 2)])
def test_float32_sgdr_restarts_land_on_torchs_steps_below_2_24(first_period, mult):
    """Every restart below 2^24 is at peak in float32, and the step before it at the end of
    the previous period, as integer bookkeeping says.  The closed form rounded
    ``T_0 (m^n − 1)`` past 2^24 before dividing by m − 1: restart 11 of
    ``sgdr(1, 5, period_mult=4)``, at 6990505, came one step late."""
    starts, _ = _sgdr_restarts(first_period, mult, 2**24)
    periods = first_period * mult ** np.arange(len(starts))
    counts = np.concatenate([starts, starts[1:] - 1])
    # float64 cosine of the exact position in the period
    t_cur = np.concatenate([np.zeros(len(starts)), periods[:-1] - 1.0])
    want = 0.05 + 0.95 * (1 + np.cos(np.pi * t_cur / np.concatenate([periods, periods[:-1]]))) / 2
    with jax.enable_x64(False):
        schedule = S.sgdr(1.0, first_period, period_mult=mult, min_value=0.05)
        got = np.asarray(jax.jit(jax.vmap(schedule))(jnp.asarray(counts, jnp.int32)))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got[: len(starts)], np.float32(1.0))
    np.testing.assert_allclose(got, want, rtol=2e-6)


def test_sgdr_real_period_mult_restarts_at_its_first_period(x64):
    """With a real period_mult the first period still ends at first_period: a jitted
    ``m ** 1.0`` is not always m, and ``sgdr(1, 7, period_mult=1.01)`` was at its low at
    step 7.  Past 64 restarts the closed form takes over, equal to exact bookkeeping."""
    mult = 1.01
    counts = np.arange(3000)
    starts, periods = [0.0], [7.0]
    while starts[-1] + periods[-1] <= counts[-1]:
        starts.append(starts[-1] + periods[-1])
        periods.append(periods[-1] * mult)
    assert len(starts) > 64
    i = np.searchsorted(starts, counts, side="right") - 1
    t_cur = counts - np.asarray(starts)[i]
    want = 0.1 + 0.9 * (1 + np.cos(np.pi * t_cur / np.asarray(periods)[i])) / 2
    schedule = S.sgdr(1.0, 7, period_mult=mult, min_value=0.1)
    # Python-number fields are constants under jit, the case that was off.
    for got in (ours(schedule, len(counts)), jax.jit(jax.vmap(schedule))(jnp.asarray(counts))):
        assert got[7] == 1.0
        np.testing.assert_allclose(got, want, rtol=1e-12)


OPTAX_CASES = {
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
}


@pytest.mark.parametrize("case", sorted(OPTAX_CASES))
def test_matches_optax(x64, case):
    schedule, make = OPTAX_CASES[case]
    assert_close(ours(schedule, 300), optax_values(make(), 300))


BAD = [
    (lambda: S.sgdr(0.1, 0), ValueError, r"gradtx\.schedules\.sgdr\(first_period=0\)"),
    (lambda: S.sgdr(0.1, 5, period_mult=0.5), ValueError, r"sgdr\(period_mult=0\.5\)"),
    (lambda: S.sgdr(0.1, 5, min_value=-1), ValueError, r"sgdr\(min_value=-1\)"),
    (lambda: S.cosine_decay(0.1, 0), ValueError, r"cosine_decay\(decay_steps=0\)"),
    (lambda: S.warmup_cosine_decay(0.0, 0.1, 10, 10), ValueError, r"decay_steps counts"),
    # alpha is a fraction of init_value (optax; torch's eta_min = alpha·init): alpha < 0
    # decayed below zero, into gradient ascent.
    (
        lambda: S.cosine_decay(0.1, 10, alpha=-1.0),
        ValueError,
        r"^gradtx\.schedules\.cosine_decay\(alpha=-1\.0\): alpha must be in \[0, 1\]$",
    ),
    (lambda: S.cosine_decay(0.1, 10, alpha=1.5), ValueError, r"cosine_decay\(alpha=1\.5\)"),
    # NumPy numbers are checked like Python numbers.
    (lambda: S.cosine_decay(0.1, np.array(0)), ValueError, r"cosine_decay\(decay_steps=0\)"),
    (
        lambda: S.cosine_decay(0.1, 10, past_end="wrap"),
        ValueError,
        r"cosine_decay\(past_end='wrap'\): past_end must be one of \('hold', 'cycle'\)",
    ),
    (
        lambda: S.warmup_cosine_decay(0.0, 0.1, 1, 10, past_end=None),
        TypeError,
        r"warmup_cosine_decay\(past_end=None\)",
    ),
    (lambda: S.cosine_decay(0.1, np.array(2.5)), TypeError, r"decay_steps=2\.5\)"),
    (
        lambda: S.warmup_cosine_decay(0.0, 0.1, np.int64(10), np.int64(10)),
        ValueError,
        r"warmup_steps=10, decay_steps=10\): decay_steps counts",
    ),
    (
        lambda: S.warmup_cosine_decay(0.0, 0.1, np.array(12), np.array(10)),
        ValueError,
        r"decay_steps counts",
    ),
]


@pytest.mark.parametrize("i", range(len(BAD)))
def test_bad_arguments(i):
    factory, kind, match = BAD[i]
    with pytest.raises(kind, match=match):
        factory()


def test_float32_values_keep_their_relative_precision_near_a_small_end():
    # JAX's default float32: 1 + cos(πt/T) cancelled near the end (21% off at step
    # 9,999 of 10,000), and a ramp written from its large end cancelled near its small
    # one (4.8% off at step 1 of a 10^6-step warm-up from 0; one_cycle's linear end
    # held 1.6e-3 off).  Exact values in NumPy doubles, as torch computes them.
    T, k = 10_000, np.arange(9_000, 10_000)
    want = 0.5 * (1 + np.cos(np.pi * k / T))
    got = np.asarray(jax.vmap(S.cosine_decay(1.0, T))(jnp.asarray(k)), np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    got = np.asarray(jax.vmap(S.warmup_cosine_decay(0.0, 1.0, 100, T + 100))(jnp.asarray(k + 100)))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    sgdr = S.sgdr(1.0, T, period_mult=1.5)
    np.testing.assert_allclose(np.asarray(jax.vmap(sgdr)(jnp.asarray(k))), want, rtol=1e-6)
    for warm in (S.linear(0.0, 1e-3, 10**6), S.warmup_cosine_decay(0.0, 1e-3, 10**6, 2 * 10**6)):
        assert float(warm(1)) == pytest.approx(1e-9, rel=1e-6)
    start = S.one_cycle(T, 1.0, div_factor=1e4)  # a small start, a cosine rise
    k = np.arange(0, 4)
    want = 1e-4 + (1 - 1e-4) * 0.5 * (1 - np.cos(np.pi * k / 2999))
    np.testing.assert_allclose(np.asarray(jax.vmap(start)(jnp.asarray(k))), want, rtol=1e-6)
    end = S.one_cycle(T, 1.0, anneal="linear")
    assert float(end(T - 1)) == float(end(5 * T)) == pytest.approx(4e-6, rel=1e-6)
    assert float(S.one_cycle(T, 1.0)(T - 2)) == pytest.approx(
        4e-6 + (1 - 4e-6) * 0.5 * (1 + np.cos(np.pi * (T - 2 - 2999) / (T - 1 - 2999))), rel=1e-6
    )


def test_sgdr_derivative_in_period_mult_at_one(x64):
    # At m = 1 the schedule takes its flat branch, which did not depend on m: the
    # derivative was 0.  Restart 1 at T_0 (1 + dm·0), lasting T_0 (1 + dm): at step
    # 1500 of T_0 = 1000 the value ½(1 + cos(π·500/(1000 m))) has derivative π/4.
    def value(m):
        return S.SGDR(jnp.asarray(1.0), jnp.asarray(1000.0), m, jnp.asarray(0.0))(1500)

    assert float(jax.grad(value)(jnp.asarray(1.0))) == pytest.approx(np.pi / 4, rel=1e-12)
    h = 1e-7
    fd = (value(jnp.asarray(1.0 + h)) - value(jnp.asarray(1.0))) / h
    assert float(jax.grad(value)(jnp.asarray(1.0))) == pytest.approx(float(fd), rel=1e-5)
    assert float(value(jnp.asarray(1.0))) == pytest.approx(0.5, rel=1e-15)


@pytest.mark.parametrize("count", [jnp.int32, float], ids=["int-count", "float-count"])
def test_an_eager_sgdr_compiles_its_restart_loop_once(count):
    """A rate printed at each step (torch's ``get_last_lr`` habit) evaluates the schedule
    eagerly; its restart-counting loop was traced and compiled again at every call."""
    schedule = S.sgdr(0.1, 5, period_mult=2)
    schedule(count(3))  # the first call compiles each operation once
    with xla_compiles() as compiles:
        values = [float(schedule(count(k))) for k in (4, 17, 40)]
    assert compiles == []
    # restarts at 5, 15, 35: 4 is late in period 0, 17 and 40 early in periods 2 and 3
    assert values[0] < values[1] and values[0] < values[2]

"""Schedules at every count the int32 step counter reaches (up to 2^31 − 1), and
with traced fields.

A float32 holds whole numbers exactly only up to 2^24: periods and step
boundaries are computed on the integer count, so eager, jitted and optimizer
values equal an exact reference (Python integers and float64) far beyond it.
"""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from gradtx import schedules as S
from tests.schedules.test_common import EXAMPLES

B = 2**24 + 4  # a boundary a float32 holds exactly, where count 2^24 + 3 rounds onto it
BIG = [0, 1, 99, 2**24 + 1, 2**24 + 3, 2**24 + 101, 10**8 + 37, 2**30 + 50, 2**31 - 2, 2**31 - 1]


def _tri(k, up, down):
    """torch CyclicLR's triangle at count k: 0 at each cycle's start, 1 at its peak."""
    x = k % (up + down)
    return x / up if x <= up else (up + down - x) / down


def _cos(r, length):
    return 0.5 * (1 + np.cos(np.pi * r / length))


def _sgdr(k, peak, period, mult, low):
    start = 0
    while start + period <= k:
        start, period = start + period, period * mult
    return low + (peak - low) * _cos(k - start, period)


# name -> (schedule, exact value at a Python int count, counts)
CASES = {
    "cyclical": (S.cyclical(0.01, 0.1, 100), lambda k: 0.01 + 0.09 * _tri(k, 100, 100), BIG),
    "cyclical_asymmetric": (
        S.cyclical(0.01, 0.1, 7, step_size_down=3),
        lambda k: 0.01 + 0.09 * _tri(k, 7, 3),
        BIG,
    ),
    "cosine_decay_cycle": (
        S.cosine_decay(0.1, 70, alpha=0.1, past_end="cycle"),
        lambda k: 0.1 * (0.9 * _cos(k % 140, 70) + 0.1),
        BIG,
    ),
    "warmup_cosine_cycle": (
        S.warmup_cosine_decay(0.0, 0.1, 30, 100, 0.01, past_end="cycle"),
        lambda k: 0.1 * k / 30 if k < 30 else 0.1 * (0.9 * _cos((k - 30) % 140, 70) + 0.1),
        BIG,
    ),
    "sgdr": (S.sgdr(0.1, 100), lambda k: 0.1 * _cos(k % 100, 100), BIG),
    "sgdr_mult": (
        S.sgdr(0.1, 5, period_mult=2, min_value=0.01),
        lambda k: _sgdr(k, 0.1, 5, 2, 0.01),
        # restarts at 5 · (2^n − 1): n = 22 is past 2^24
        BIG + [5 * (2**22 - 1) + d for d in (-1, 0, 1, 3)],
    ),
    "sgdr_mult3": (
        S.sgdr(1.0, 7, period_mult=3),
        lambda k: _sgdr(k, 1.0, 7, 3, 0.0),
        BIG + [7 * (3**16 - 1) // 2 + d for d in (-1, 0, 1)],
    ),
    "piecewise_constant": (
        # boundaries that a float32 holds (optimizer state stores float32 fields)
        S.piecewise_constant(1.0, {B: 0.1, 2**30 + 128: 0.5}),
        lambda k: 1.0 * (0.1 if k >= B else 1) * (0.5 if k >= 2**30 + 128 else 1),
        [B - 2, B - 1, B, B + 1, 2**30 + 127, 2**30 + 128, 2**31 - 1],
    ),
    "constant_warmup": (
        S.constant_warmup(0.1, 0.5, B),
        lambda k: 0.05 if k < B else 0.1,
        [B - 2, B - 1, B, B + 1],
    ),
    "staircase": (
        S.exponential_decay(1.0, 3, 0.5, staircase=True, transition_begin=2**25),
        lambda k: 0.5 ** (max(k - 2**25, 0) // 3),
        [2**25 - 1, 2**25 + 2, 2**25 + 3, 2**25 + 11, 2**25 + 13],
    ),
    # Ramps that start past 2^24: the steps since their start are counted as integers
    # (a float32 count there is a multiple of 2 or 4: 0, 0, 0, 0.5, ... before).
    "linear_from_2_25": (
        S.linear(0.0, 1.0, 8, transition_begin=2**25),
        lambda k: min(max(k - 2**25, 0), 8) / 8,
        [2**25 - 1] + [2**25 + d for d in range(10)],
    ),
    "polynomial_from_2_25": (
        S.polynomial(1.0, 0.0, 0.5, 8, transition_begin=2**25),
        lambda k: (1 - min(max(k - 2**25, 0), 8) / 8) ** 0.5,
        [2**25 + d for d in range(10)],
    ),
    "exponential_from_2_25": (
        S.exponential_decay(1.0, 1, 0.5, transition_begin=2**25),
        lambda k: 0.5 ** max(k - 2**25, 0),
        [2**25 + d for d in range(6)],
    ),
    "warmup_cosine_hold_2_25": (
        S.warmup_cosine_decay(0.0, 1.0, 2**25, 2**25 + 8, 0.0),
        lambda k: k / 2**25 if k < 2**25 else _cos(min(k - 2**25, 8), 8),
        [2**25 + d for d in range(10)],
    ),
    "join": (
        S.join([S.constant(1.0), S.cyclical(0.01, 0.1, 100)], [B]),
        lambda k: 1.0 if k < B else 0.01 + 0.09 * _tri(k - B, 100, 100),
        [B - 2, B - 1, B, B + 37, 10**8 + 37, 2**30 + 50, 2**31 - 2],
    ),
}


def _stored(schedule):
    """The schedule as optimizer state holds it: every field a float32 array."""
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), schedule)


@pytest.mark.parametrize("name", sorted(CASES))
def test_exact_at_large_counts(name):
    schedule, exact, counts = CASES[name]
    want = np.asarray([exact(k) for k in counts])
    ks = jnp.asarray(counts, jnp.int32)
    eager = np.asarray([float(schedule(k)) for k in ks])
    stored = _stored(schedule)
    call = jax.jit(lambda s, k: s(k))
    jitted = np.asarray([float(call(stored, k)) for k in ks])
    np.testing.assert_allclose(eager, want, rtol=2e-6, atol=1e-7)
    # XLA fuses the value formulas under jit (fused multiply-adds): the same up to
    # float32 rounding, not bit for bit, except for the piecewise linear ones.
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(np.asarray([float(stored(k)) for k in ks]), eager, rtol=1e-6)
    if name.startswith(("cyclical", "piecewise", "constant", "staircase")):
        np.testing.assert_array_equal(jitted, eager)
    vmapped = jax.jit(jax.vmap(lambda s, k: s(k), in_axes=(None, 0)))(stored, ks)
    np.testing.assert_allclose(vmapped, want, rtol=2e-6, atol=1e-7)


def test_optimizer_at_large_counts():
    """sgd's update at a count past 2^30, eager and jitted, is the exact rate."""
    opt = gradtx.sgd(S.cyclical(0.01, 0.1, 100))
    params, grads = {"w": jnp.ones(1)}, {"w": jnp.ones(1)}
    for k in (2**30 + 50, 10**8 + 37, 2**31 - 2):
        state = opt.init(params)._replace(count=jnp.asarray(k, jnp.int32))
        eager = -float(opt.update(grads, state)[0]["w"][0])
        jitted = -float(jax.jit(opt.update)(grads, state)[0]["w"][0])
        assert eager == jitted
        np.testing.assert_allclose(eager, 0.01 + 0.09 * _tri(k, 100, 100), rtol=2e-6)


def test_piecewise_boundary_matches_optax_past_2_24():
    ours = gradtx.sgd(S.piecewise_constant(1.0, {B: 0.1}))
    ref = optax.piecewise_constant_schedule(1.0, {B: 0.1})
    params, grads = {"w": jnp.ones(1)}, {"w": jnp.ones(1)}
    for k in (B - 2, B - 1, B, B + 1):
        state = ours.init(params)._replace(count=jnp.asarray(k, jnp.int32))
        got = jax.jit(ours.update)(grads, state)[0]["w"]
        with jax.numpy_dtype_promotion("standard"):
            want = ref(jnp.asarray(k, jnp.int32))
        np.testing.assert_array_equal(got, -want)
        np.testing.assert_array_equal(got, -1.0 if k < B else -np.float32(0.1))


def test_int64_counts(x64):
    """Under x64 the count may be int64: exact past 2^53 too."""
    k = 2**60 + 50
    count = jnp.asarray(k, jnp.int64)
    for schedule, want in (
        (S.cyclical(0.01, 0.1, 100), 0.01 + 0.09 * _tri(k, 100, 100)),
        (S.sgdr(0.1, 5, period_mult=2), _sgdr(k, 0.1, 5, 2, 0.0)),
        # a boundary a float64 holds (float64 spacing at 2^60 is 256)
        (S.piecewise_constant(1.0, {2**60: 0.1}), 0.1),
        (S.piecewise_constant(1.0, {2**60 + 256: 0.1}), 1.0),
    ):
        np.testing.assert_allclose(float(schedule(count)), want, rtol=1e-12)
        np.testing.assert_allclose(float(jax.jit(schedule)(count)), want, rtol=1e-12)


@pytest.mark.parametrize(
    "schedule",
    [S.sgdr(0.1, 4.3), S.sgdr(0.1, 4.3, period_mult=1.5), S.sgdr(0.1, 7, period_mult=1.01)],
    ids=["fractional_period", "fractional_mult", "mult_near_1"],
)
def test_fractional_periods_jit_equals_eager(schedule):
    """A fractional period is float arithmetic, but the same jitted and eager."""
    stored = _stored(schedule)
    ks = jnp.asarray(list(range(0, 3000, 97)) + BIG, jnp.int32)
    call = jax.jit(lambda s, k: s(k))
    jitted = [float(call(stored, k)) for k in ks]
    np.testing.assert_array_equal(jitted, np.asarray([float(stored(k)) for k in ks]))


def _fd(f, x, h=1e-6):
    return (float(f(x + h)) - float(f(x - h))) / (2 * h)


# field given as a float -> schedule, at the count; whole fields take the integer path,
# whose gradient must still be the float formula's.
WHOLE_FIELDS = {
    "cyclical_step_size": (lambda x: S.cyclical(0.01, 0.1, x), 100.0, 1234),
    "cosine_cycle_decay_steps": (lambda x: S.cosine_decay(0.1, x, past_end="cycle"), 70.0, 1234),
    "warmup_cosine_warmup": (
        lambda x: S.warmup_cosine_decay(0.0, 0.1, x, 100, past_end="cycle"),
        30.0,
        1234,
    ),
    "sgdr_first_period": (lambda x: S.sgdr(0.1, x, period_mult=2), 5.0, 1234),
    "sgdr_period_mult": (lambda x: S.sgdr(0.1, 5, period_mult=x), 2.0, 1234),
    "sgdr_flat_first_period": (lambda x: S.sgdr(0.1, x), 100.0, 1234),
}


@pytest.mark.parametrize("name", sorted(WHOLE_FIELDS))
def test_grad_wrt_whole_period_fields(x64, name):
    make, x0, k = WHOLE_FIELDS[name]

    def f(x):
        return make(x)(jnp.asarray(k, jnp.int32))

    g = float(jax.grad(f)(jnp.asarray(x0)))
    assert g != 0
    np.testing.assert_allclose(g, _fd(f, jnp.asarray(x0)), rtol=1e-5)
    np.testing.assert_allclose(float(jax.jit(jax.grad(f))(jnp.asarray(x0))), g, rtol=1e-12)


def test_piecewise_constant_with_a_traced_scale(x64):
    def f(x):
        return S.piecewise_constant(0.1, {3: x, 6: 0.1})(jnp.asarray(5, jnp.int32))

    np.testing.assert_allclose(float(jax.jit(f)(0.5)), 0.05, rtol=1e-12)
    np.testing.assert_allclose(jax.vmap(f)(jnp.asarray([0.5, 0.2])), [0.05, 0.02], rtol=1e-12)
    g = float(jax.grad(f)(0.5))
    np.testing.assert_allclose(g, 0.1, rtol=1e-12)
    np.testing.assert_allclose(g, _fd(f, 0.5), rtol=1e-6)
    # the checks stay for numbers
    with pytest.raises(ValueError):
        S.piecewise_constant(0.1, {3: float("nan")})


def _join(b):
    return S.join([S.linear(0.0, 0.1, 3), S.cosine_decay(0.1, 7)], [b])


def _optax_join(b):
    return optax.join_schedules(
        [optax.linear_schedule(0.0, 0.1, 3), optax.cosine_decay_schedule(0.1, 7)], [b]
    )


def test_join_with_a_traced_boundary(x64):
    counts = jnp.arange(12, dtype=jnp.int32)
    want = jax.vmap(_join(3))(counts)
    got = jax.jit(lambda b: jax.vmap(_join(b))(counts))(jnp.asarray(3, jnp.int32))
    np.testing.assert_allclose(got, want, rtol=1e-12)
    with jax.numpy_dtype_promotion("standard"):
        ref = jax.jit(lambda b: _optax_join(b)(5))(3)
    np.testing.assert_allclose(ref, want[5], rtol=1e-12)
    both = jax.vmap(lambda b: _join(b)(jnp.asarray(5, jnp.int32)))(jnp.asarray([2, 3]))
    np.testing.assert_allclose(both, [float(_join(2)(5)), float(want[5])], rtol=1e-12)


@pytest.mark.parametrize("b", [3.0, 3.3])
def test_grad_wrt_a_join_boundary(x64, b):
    """d/d boundary, whole (the integer path) or fractional (the member at k − b, as
    optax), equals the finite difference and optax's gradient."""
    for k in (4, 5, 7, 9):

        def f(x, k=k):
            return _join(x)(jnp.asarray(k, jnp.int32))

        def ref(x, k=k):
            return _optax_join(x)(jnp.asarray(k, jnp.float64))

        x = jnp.asarray(b)
        with jax.numpy_dtype_promotion("standard"):
            ref_value, ref_grad = float(ref(x)), float(jax.grad(ref)(x))
        g = float(jax.grad(f)(x))
        np.testing.assert_allclose(float(f(x)), ref_value, rtol=1e-12)
        np.testing.assert_allclose(g, ref_grad, rtol=1e-9)
        np.testing.assert_allclose(g, _fd(f, x), rtol=1e-5)


@pytest.mark.parametrize("name", ["cosine_decay", "piecewise_constant", "sgdr", "cyclical"])
def test_a_python_count_beyond_the_default_int_names_the_problem(name):
    # a direct call (plotting a schedule) with 2**31 raised a raw OverflowError
    schedule = {
        "cosine_decay": lambda: S.cosine_decay(0.1, 1000),
        "piecewise_constant": lambda: S.piecewise_constant(0.1, {10: 0.5}),
        "sgdr": lambda: S.sgdr(0.1, 100),
        "cyclical": lambda: S.cyclical(0.01, 0.1, 10),
    }[name]()
    outside = r"count 2147483648 is outside \[-2147483648, 2147483647\]"
    with pytest.raises(ValueError, match=outside):
        schedule(2**31)
    # JAX wrapped a NumPy int64 count to -2^31 without a word (a wrong value, no error)
    with pytest.raises(ValueError, match=outside):
        schedule(np.int64(2**31))
    with pytest.raises(ValueError, match=outside):
        schedule(np.array([3, 2**31], np.int64))
    assert np.isfinite(schedule(2**31 - 1))
    chex.assert_trees_all_equal(schedule(np.int64(12)), schedule(12))


def test_an_integer_value_beyond_int32_is_the_number_given():
    # constant(2**31) raised a raw OverflowError at its first call; a NumPy int64
    # value was wrapped to -2^31 (a negative learning rate)
    for value in (2**31, np.int64(2**31), np.array(2**31, np.int64)):
        chex.assert_trees_all_equal(S.constant(value)(0), jnp.float32(2.0**31))
    params = {"w": jnp.ones(2)}
    # the same through set_hyperparams and a plain callable's value (both wrapped before)
    given = gradtx.set_hyperparams(gradtx.sgd(0.1).init(params), learning_rate=np.int64(2**31))
    for opt, state in [
        (gradtx.sgd(np.int64(2**31)), None),
        (gradtx.sgd(0.1), given),
        (gradtx.sgd(lambda count: np.int64(2**31)), None),
        (gradtx.sgd(lambda count: 2**31), None),  # a Python int: a raw OverflowError
    ]:
        state = opt.init(params) if state is None else state
        updates, _ = opt.update(params, state, params)
        chex.assert_trees_all_equal(updates["w"], jnp.full(2, -(2.0**31), jnp.float32))


def test_a_whole_period_float32_would_round_is_refused_when_stored():
    # a Python int field taken as a float slipped past this check (the restarts moved)
    with pytest.raises(ValueError, match=r"first_period is stored in float32, which rounds it"):
        gradtx.sgd(S.sgdr(0.1, first_period=2**24 + 1))


T_LONG = 2**31 - 128  # a float32 holds it: state keeps it


@pytest.mark.parametrize(
    ("schedule", "exact", "counts"),
    [
        (
            S.linear(1.0, 0.0, T_LONG),
            lambda k: (T_LONG - min(k, T_LONG)) / T_LONG,
            [T_LONG - 3, T_LONG - 2, T_LONG - 1, 2**30 + 50],
        ),
        (
            S.linear(0.5, 0.0, 2**30, transition_begin=2**25 + 4),
            lambda k: 0.5 * (2**30 - (k - 2**25 - 4)) / 2**30,
            [2**30 + 2**25 + d for d in (-40, -1, 0, 1, 2, 3)],
        ),
        (
            S.polynomial(1.0, 0.0, 0.5, 2**30),
            lambda k: ((2**30 - k) / 2**30) ** 0.5,
            [2**30 - 1000, 2**30 - 100, 2**30 - 40, 2**30 - 1],
        ),
        (
            S.polynomial(2.0, 0.0, 2.0, 2**30, transition_begin=5),
            lambda k: 2.0 * ((2**30 + 5 - k) / 2**30) ** 2,
            [2**30 + d for d in (-40, 0, 3, 4)],
        ),
        (
            S.cosine_decay(1.0, 2**30),
            lambda k: math.sin(math.pi * (2**30 - k) / 2**31) ** 2,
            [2**30 - 40, 2**30 - 20, 2**30 - 1],
        ),
        (
            # decay - warmup is not a float32 number: T - t is formed from decay_steps
            S.warmup_cosine_decay(0.0, 1.0, 1000, 2**30),
            lambda k: math.sin(math.pi * (2**30 - k) / (2 * (2**30 - 1000))) ** 2,
            [2**30 - 40, 2**30 - 3, 2**30 - 1],
        ),
        (
            S.warmup_cosine_decay(0.0, 1.0, 2**25, 2**30 + 2**25),
            lambda k: math.sin(math.pi * (2**30 + 2**25 - k) / 2**31) ** 2,
            [2**30 + 2**25 + d for d in (-40, -20, -1)],
        ),
    ],
)
def test_a_long_ramps_last_steps_keep_their_relative_precision(schedule, exact, counts):
    """T - t is formed on the integer count: from the float32 count (a multiple of 128
    near 2^31) linear(1, 0, T) two steps from its end gave 0, a square root's base 40
    steps from its end was 1.3x off, and a cosine was 0 from 20 steps before its end.
    Eager, jitted, stored and in an optimizer."""
    want = np.asarray([exact(k) for k in counts])
    assert np.all(want > 0)
    ks = jnp.asarray(counts, jnp.int32)
    stored = _stored(schedule)
    for got in (
        [schedule(k) for k in ks],
        [jax.jit(lambda s, k: s(k))(stored, k) for k in ks],
        jax.vmap(stored)(ks),
    ):
        np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=2e-6, atol=0)
    opt = gradtx.sgd(schedule)
    params = {"w": jnp.ones(1)}
    for k, w in zip(counts, want):
        state = optax.tree_utils.tree_set(opt.init(params), count=jnp.asarray(k, jnp.int32))
        lr = -jax.jit(opt.update)(params, state)[0]["w"][0]
        np.testing.assert_allclose(float(lr), w, rtol=2e-6, atol=0)


@pytest.mark.parametrize(
    ("make", "field", "exact"),
    [
        (
            lambda b: S.piecewise_constant(1.0, {5: 0.5, b: 0.1}),
            "boundaries[1]",
            lambda k, b: 0.5 if k < b else 0.5 * 0.1,
        ),
        (
            lambda b: S.join([S.constant(1.0), S.constant(0.1)], [b]),
            "boundaries[0]",
            lambda k, b: 1.0 if k < b else 0.1,
        ),
        (
            # the second member restarts its count at step 4: its boundary b is step b + 4
            lambda b: S.join([S.constant(1.0), S.piecewise_constant(1.0, {b: 0.1})], [4]),
            "schedules[1].boundaries[0]",
            lambda k, b: 1.0 if k < b + 4 else 0.1,
        ),
    ],
)
def test_a_boundary_float32_would_round_is_refused_when_stored(make, field, exact):
    """A boundary is a float vector in state, as an int field is a float: 10^8 + 37
    stored as 100000040 kept the rate until step 100000040, so it is refused as
    transition_steps is.  One float32 holds is taken, and float64 holds both."""
    shown = field.replace("[", r"\[").replace("]", r"\]")
    with pytest.raises(
        ValueError,
        match=rf"^gradtx.sgd\(learning_rate.{shown}=100000037\): learning_rate.{shown} is "
        r"stored in float32, which rounds it to 100000040, so the schedule would change at "
        r"step 100000040, not 100000037",
    ):
        gradtx.sgd(make(10**8 + 37))
    b = 10**8 + 40
    opt = gradtx.sgd(make(b))
    params = {"w": jnp.ones(1)}
    for k in (b - 1, b, b + 3, b + 4):
        state = optax.tree_utils.tree_set(opt.init(params), count=jnp.asarray(k, jnp.int32))
        lr = -jax.jit(opt.update)(params, state)[0]["w"][0]
        chex.assert_trees_all_equal(lr, jnp.float32(exact(k, b)))
    with jax.enable_x64(True):
        gradtx.sgd(make(10**8 + 37))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_an_unsigned_count_is_the_signed_count(name):
    """count - transition_begin wrapped round in unsigned arithmetic: a uint32 count
    before a start gave linear's end value, exponential_decay's 0 (review H6)."""
    schedule = EXAMPLES[name](0.2)
    counts = np.arange(40)
    chex.assert_trees_all_equal(
        jax.vmap(schedule)(jnp.asarray(counts, jnp.uint32)), jax.vmap(schedule)(counts)
    )
    chex.assert_trees_all_equal(schedule(np.uint16(7)), schedule(7))
    closed_over = jnp.asarray(7, jnp.uint32)  # concrete inside the trace: read on the host
    chex.assert_trees_all_close(jax.jit(lambda: schedule(closed_over))(), schedule(7), rtol=1e-6)
    for big in (np.uint32(2**32 - 1), jnp.asarray(2**32 - 1, jnp.uint32)):
        with pytest.raises(ValueError, match=r"count 4294967295 is outside \[-2147483648, "):
            schedule(big)
